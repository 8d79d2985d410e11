/* dsinfer-node: the node daemon. See node/daemon/dsn_node.h and docs/DEPLOY.md. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli_args.h"
#include "dsi_log.h"
#include "dsn_node.h"
#include "dsn_weights.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dsinfer-node --coordinator HOST:PORT --model DIR [--name NAME] [--mem 64G]\n"
        "                    [--threads N] [--secret-file FILE] [--max-batch-tokens N]\n"
        "                    [--max-context N] [--weight-format " DSN_WFMT_NAMES "]\n"
        "                    [--numa-node N]\n"
        "Joins the coordinator (retrying until it answers), loads the slice of the model its\n"
        "plan gives this node, and serves it until SHUTDOWN or SIGTERM. The shared secret comes\n"
        "from --secret-file or DSINFER_SECRET. DSINFER_LOGITS_DIR=DIR makes the last stage\n"
        "append each sampled step's logits to DIR/seq-<id>.f32 (debugging, tests).\n"
        "--max-context N: tokens per sequence at most (default: DSINFER_MAX_CONTEXT, else 16384).\n"
        "--weight-format re-quantizes the slice's projections at load (default:\n"
        "DSINFER_WEIGHT_FORMAT, else auto = as stored).\n"
        "--numa-node N binds the node's threads and memory to NUMA node N: run one node per\n"
        "NUMA node of a server (docs/DEPLOY.md, \"NUMA\"); --threads defaults to its CPUs.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"coordinator", required_argument, NULL, 'c'},
                                             {"model", required_argument, NULL, 'm'},
                                             {"name", required_argument, NULL, 'n'},
                                             {"mem", required_argument, NULL, 'M'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"secret-file", required_argument, NULL, 's'},
                                             {"max-batch-tokens", required_argument, NULL, 'b'},
                                             {"max-context", required_argument, NULL, 'x'},
                                             {"weight-format", required_argument, NULL, 'w'},
                                             {"numa-node", required_argument, NULL, 'N'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    dsn_node_opts_t o;
    dsn_node_opts_default(&o);
    o.logits_dir = getenv("DSINFER_LOGITS_DIR");
    const char *wfmt = getenv("DSINFER_WEIGHT_FORMAT");
    long long v;
    int c;
    const char *ctx = getenv("DSINFER_MAX_CONTEXT"); /* the default of --max-context */
    if (ctx != NULL && ctx[0] != '\0') {
        if (cli_parse_int("node", "DSINFER_MAX_CONTEXT", ctx, 1, 1 << 24, &v) != 0)
            return 2;
        o.max_context = v;
    }
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.coordinator = optarg;
            break;
        case 'm':
            o.model_dir = optarg;
            break;
        case 'n':
            o.name = optarg;
            break;
        case 's':
            o.secret_file = optarg;
            break;
        case 'M':
            if (cli_parse_size("node", "--mem", optarg, &o.mem_budget) != 0)
                return 2;
            break;
        case 't':
            if (cli_parse_int("node", "--threads", optarg, 1, 1024, &v) != 0)
                return 2;
            o.threads = (int)v;
            break;
        case 'b':
            if (cli_parse_int("node", "--max-batch-tokens", optarg, 1, 65536, &v) != 0)
                return 2;
            o.max_batch_tokens = (int)v;
            break;
        case 'x':
            if (cli_parse_int("node", "--max-context", optarg, 1, 1 << 24, &v) != 0)
                return 2;
            o.max_context = v;
            break;
        case 'N':
            if (cli_parse_int("node", "--numa-node", optarg, 0, 1023, &v) != 0)
                return 2;
            o.numa_node = (int)v;
            break;
        case 'w':
            wfmt = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (wfmt != NULL && *wfmt != '\0' &&
        dsn_weight_format_parse(wfmt, &o.weight_format) != DSI_OK) {
        fprintf(stderr, "dsinfer-node: --weight-format: '%s' is not one of %s\n", wfmt,
                DSN_WFMT_NAMES);
        return 2;
    }
    if (o.coordinator == NULL || o.model_dir == NULL) {
        fprintf(stderr, "dsinfer-node: --coordinator and --model are required\n");
        usage(stderr);
        return 2;
    }
    dsi_status_t st = dsn_node_run(&o);
    if (st != DSI_OK)
        fprintf(stderr, "dsinfer-node: exiting: %s (the cause is logged above)\n",
                dsi_status_message(st));
    return st == DSI_OK ? 0 : 1;
}
