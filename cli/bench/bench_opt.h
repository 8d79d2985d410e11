/*
 * bench_opt.h - the option-parsing endings every `dsinfer bench <what>` shares: --help, an unknown
 * option or a missing value, and arguments left over after the options.
 */
#ifndef DSINFER_BENCH_OPT_H
#define DSINFER_BENCH_OPT_H

#include <stdio.h>

/* A benchmark's usage text, written to out. */
typedef void (*bench_usage_fn)(FILE *out);

/*
 * For a getopt_long answer the benchmark's own options do not handle: its --help (help nonzero)
 * prints the usage on stdout and is exit code 0; anything else (an unknown option or a missing
 * value, which getopt_long has named already) prints it on stderr and is exit code 2.
 */
int bench_opt_usage(int help, bench_usage_fn usage);
/*
 * After the options (argv[optind..]): an argument left over prints "dsinfer bench <name>:
 * unexpected argument '<arg>'" and the usage on stderr and is exit code 2; none is 0.
 */
int bench_opt_rest(const char *name, int argc, char *const *argv, bench_usage_fn usage);

#endif
