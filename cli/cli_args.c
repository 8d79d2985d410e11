#include "cli_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_int(const char *cmd, const char *opt, const char *text, long long min, long long max,
                  long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        fprintf(stderr, "dsinfer %s: %s: '%s' is not an integer\n", cmd, opt, text);
        return -1;
    }
    if (v < min || v > max) {
        fprintf(stderr, "dsinfer %s: %s: %lld is outside [%lld, %lld]\n", cmd, opt, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *text, double min, double max,
                    double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v)) {
        fprintf(stderr, "dsinfer %s: %s: '%s' is not a number\n", cmd, opt, text);
        return -1;
    }
    if (v < min || v > max) {
        fprintf(stderr, "dsinfer %s: %s: %g is outside [%g, %g]\n", cmd, opt, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_choice(const char *cmd, const char *opt, const char *text, const char *const *names,
                     int *out)
{
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    fprintf(stderr, "dsinfer %s: %s: '%s' is not one of", cmd, opt, text);
    for (int i = 0; names[i] != NULL; i++)
        fprintf(stderr, "%s %s", i > 0 ? "," : "", names[i]);
    fprintf(stderr, "\n");
    return -1;
}

int cli_parse_size(const char *cmd, const char *opt, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    uint64_t mult = 1;
    if (errno == 0 && end != text) {
        switch (*end) {
        case 'K':
        case 'k':
            mult = 1ULL << 10;
            end++;
            break;
        case 'M':
        case 'm':
            mult = 1ULL << 20;
            end++;
            break;
        case 'G':
        case 'g':
            mult = 1ULL << 30;
            end++;
            break;
        case 'T':
        case 't':
            mult = 1ULL << 40;
            end++;
            break;
        default:
            break;
        }
        if (*end == 'i' || *end == 'B')
            end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
    }
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0) || v * (double)mult > 1.8e19) {
        fprintf(stderr, "dsinfer %s: %s: '%s' is not a size (e.g. 512M, 256G)\n", cmd, opt, text);
        return -1;
    }
    *out = (uint64_t)(v * (double)mult);
    return 0;
}

int cli_parse_int_list(const char *cmd, const char *opt, const char *text, long long min,
                       long long max, int32_t **out, int *n_out)
{
    int cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    int32_t *vals = malloc((size_t)cap * sizeof(*vals));
    if (vals == NULL)
        return -1;
    int n = 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno != 0 || end == p || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "dsinfer %s: %s: '%s' is not a comma-separated list of integers\n", cmd,
                    opt, text);
            free(vals);
            return -1;
        }
        if (v < min || v > max) {
            fprintf(stderr, "dsinfer %s: %s: %lld is outside [%lld, %lld]\n", cmd, opt, v, min,
                    max);
            free(vals);
            return -1;
        }
        vals[n++] = (int32_t)v;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    *out = vals;
    *n_out = n;
    return 0;
}
