/* dsinfer bench <what>: dispatches to the benchmarks listed in bench.h. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli_settings.h"
#include "dsinfer_commands.h"

typedef struct {
    const char *name;
    dsinfer_cmd_fn fn;
    const char *summary;
} bench_entry_t;

static const bench_entry_t benches[] = {
#define DSINFER_BENCH_ENTRY(name, fn, summary) {name, fn, summary},
    DSINFER_BENCHES(DSINFER_BENCH_ENTRY)
#undef DSINFER_BENCH_ENTRY
        {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: dsinfer bench <what> [options]\n\nbenchmarks:\n");
    for (const bench_entry_t *b = benches; b->name != NULL; b++)
        fprintf(out, "  %-12s %s\n", b->name, b->summary);
}

int dsinfer_cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (const bench_entry_t *b = benches; b->name != NULL; b++) {
        if (strcmp(argv[1], b->name) != 0)
            continue;
        /* the kernels run as a node's: DSINFER_KERNELS, DSINFER_FP8, DSINFER_ACT, config file */
        if (cli_kernel_options_env("dsinfer bench") != 0)
            return 2;
        return b->fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "dsinfer bench: unknown benchmark '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
