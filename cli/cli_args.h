/*
 * cli_args.h - parsing of option values shared by the subcommands. Each parser prints
 * "dsinfer <cmd>: <option>: <why>" on error and returns -1; 0 on success (output set only then).
 */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

#include <stdint.h>

/* A decimal integer within [min, max]. */
int cli_parse_int(const char *cmd, const char *opt, const char *text, long long min, long long max,
                  long long *out);
/* A finite float within [min, max]. */
int cli_parse_float(const char *cmd, const char *opt, const char *text, double min, double max,
                    double *out);
/* One of `names` (a NULL-terminated list): *out gets its index. */
int cli_parse_choice(const char *cmd, const char *opt, const char *text, const char *const *names,
                     int *out);
/* A byte size: digits with an optional K/M/G/T suffix (powers of 1024), e.g. "256G". */
int cli_parse_size(const char *cmd, const char *opt, const char *text, uint64_t *out);
/*
 * A comma-separated list of integers in [min, max] ("5,17,300"). *out is malloc'ed (caller frees),
 * *n_out its length (>= 1).
 */
int cli_parse_int_list(const char *cmd, const char *opt, const char *text, long long min,
                       long long max, int32_t **out, int *n_out);

#endif
