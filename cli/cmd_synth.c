/* dsinfer synth: write a synthetic DeepSeek-V3 checkpoint (see node/model/dsn_synth.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli_args.h"
#include "dsinfer_commands.h"
#include "dsn_synth.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer synth --out DIR [options]\n\n"
            "Writes a checkpoint of DeepSeek-V3 architecture with deterministic random weights\n"
            "into DIR (created; must be absent or empty).\n\n"
            "  --preset tiny|v3     tiny: the tiny-v3 fixture's shape (default);\n"
            "                       v3: DeepSeek-V3's real widths with few layers and experts\n"
            "  --layers N           main-model layers (tiny 4, v3 3)\n"
            "  --experts E          routed experts per MoE layer (tiny 32, v3 16)\n"
            "  --vocab V            vocabulary size (tiny 1024, v3 129280; at least 274)\n"
            "  --dtype fp8|bf16     projection weights: FP8 with 128x128 scales (default) or BF16\n"
            "  --seed S             random seed (default 0)\n"
            "  --shard-size BYTES   start a new shard after this many bytes (default 4G;\n"
            "                       one shard gives model.safetensors without an index)\n"
            "  --router-skew X      > 0: router bias and gate favour top-k experts (default 0)\n"
            "  --mtp                add the MTP module (num_nextn_predict_layers 1), as V3/R1 ship it\n");
}

int dsinfer_cmd_synth(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},
        {"preset", required_argument, NULL, 'p'},
        {"layers", required_argument, NULL, 'l'},
        {"experts", required_argument, NULL, 'e'},
        {"vocab", required_argument, NULL, 'v'},
        {"dtype", required_argument, NULL, 'd'},
        {"seed", required_argument, NULL, 's'},
        {"shard-size", required_argument, NULL, 'S'},
        {"router-skew", required_argument, NULL, 'r'},
        {"mtp", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    dsn_synth_opts_t opts;
    dsn_synth_opts_init(&opts);
    const char *out = NULL;
    long long v;
    double x;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'p':
            if (strcmp(optarg, "tiny") == 0) {
                opts.preset = DSN_SYNTH_TINY;
            } else if (strcmp(optarg, "v3") == 0) {
                opts.preset = DSN_SYNTH_V3;
            } else {
                fprintf(stderr, "dsinfer synth: --preset: '%s' is not tiny or v3\n", optarg);
                return 2;
            }
            break;
        case 'l':
            if (cli_parse_int("synth", "--layers", optarg, 1, 256, &v))
                return 2;
            opts.layers = (int)v;
            break;
        case 'e':
            if (cli_parse_int("synth", "--experts", optarg, 2, 1024, &v))
                return 2;
            opts.experts = (int)v;
            break;
        case 'v':
            if (cli_parse_int("synth", "--vocab", optarg, 274, 1 << 24, &v))
                return 2;
            opts.vocab = (int)v;
            break;
        case 'd':
            if (strcmp(optarg, "fp8") == 0) {
                opts.fp8 = 1;
            } else if (strcmp(optarg, "bf16") == 0) {
                opts.fp8 = 0;
            } else {
                fprintf(stderr, "dsinfer synth: --dtype: '%s' is not fp8 or bf16\n", optarg);
                return 2;
            }
            break;
        case 's':
            if (cli_parse_int("synth", "--seed", optarg, 0, (1LL << 62), &v))
                return 2;
            opts.seed = (uint64_t)v;
            break;
        case 'S':
            if (cli_parse_size("synth", "--shard-size", optarg, &opts.shard_size))
                return 2;
            if (opts.shard_size < 4096) {
                fprintf(stderr, "dsinfer synth: --shard-size: at least 4096 bytes\n");
                return 2;
            }
            break;
        case 'r':
            if (cli_parse_float("synth", "--router-skew", optarg, 0, 100, &x))
                return 2;
            opts.router_skew = x;
            break;
        case 'm':
            opts.mtp = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dsinfer synth: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (out == NULL) {
        fprintf(stderr, "dsinfer synth: --out DIR is required\n");
        usage(stderr);
        return 2;
    }
    uint64_t bytes = 0, tensors = 0;
    if (dsn_synth_estimate(&opts, &bytes, &tensors) != DSI_OK)
        return 2;
    fprintf(stderr, "dsinfer synth: writing %llu tensors (%.3f GB) to %s\n",
            (unsigned long long)tensors, (double)bytes / 1e9, out);
    return dsn_synth_write(&opts, out) == DSI_OK ? 0 : 1;
}
