/* bench_opt.c - see bench_opt.h. */
#include "bench_opt.h"

#include <getopt.h>

int bench_opt_usage(int help, bench_usage_fn usage)
{
    usage(help ? stdout : stderr);
    return help ? 0 : 2;
}

int bench_opt_rest(const char *name, int argc, char *const *argv, bench_usage_fn usage)
{
    if (optind >= argc)
        return 0;
    fprintf(stderr, "dsinfer bench %s: unexpected argument '%s'\n", name, argv[optind]);
    usage(stderr);
    return 2;
}
