/*
 * dsinfer run: load a model and generate from one prompt in this process (coordinator and node
 * together: the default path for trying a model).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_cluster.h"
#include "dsi_clock.h"
#include "run_text.h"
#include "dsi_log.h"
#include "dsinfer_commands.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_sampler.h"

typedef struct {
    const char *model;
    int32_t *prompt;
    int n_prompt;
    long long max_tokens;
    dsn_sampling_t sampling;
    int json;
    const char *logits_out;
    long long threads;
    long long prefill_chunk;
    long long local_nodes;
    long long stages;
    const char *coordinator;
    const char *text_prompt, *chat, *system, *chat_template; /* text input (tokenizer) */
    run_text_t text;                                         /* loaded when text is used */
    int has_text;
    dsn_weight_format_t weight_format; /* re-quantize the projections at load */
} run_opts_t;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dsinfer run --model DIR --prompt-ids 5,17,300 [--max-tokens N]\n"
        "                   [--temperature T] [--top-p P] [--top-k K] [--seed S]\n"
        "                   [--json] [--logits-out FILE] [--threads N] [--prefill-chunk N]\n"
        "                   [--local-nodes N [--stages S] | --coordinator HOST:PORT]\n"
        "       dsinfer run --model DIR (--prompt TEXT | --chat TEXT [--system TEXT]\n"
        "                   [--chat-template auto|v3|r1]) [same options]\n"
        "Generates up to N tokens (default 16) after the prompt; stops at the model's eos.\n"
        "--logits-out writes each generated step's logits as little-endian f32 [steps, vocab].\n"
        "--local-nodes N runs a coordinator here and N dsinfer-node processes on loopback\n"
        "(--stages S pipeline stages); --coordinator sends the request to a running one.\n"
        "--weight-format " DSN_WFMT_NAMES " re-quantizes the projections at load\n"
        "(auto: as stored; with --local-nodes the nodes get it through DSINFER_WEIGHT_FORMAT).\n"
        "DSINFER_KERNELS=scalar|avx2|avx512 forces a kernel level.\n");
}

static int parse_opts(int argc, char **argv, run_opts_t *o)
{
    static const struct option longopts[] = {{"model", required_argument, NULL, 'm'},
                                             {"prompt-ids", required_argument, NULL, 'p'},
                                             {"max-tokens", required_argument, NULL, 'n'},
                                             {"temperature", required_argument, NULL, 't'},
                                             {"top-p", required_argument, NULL, 'P'},
                                             {"top-k", required_argument, NULL, 'K'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"logits-out", required_argument, NULL, 'l'},
                                             {"threads", required_argument, NULL, 'T'},
                                             {"prefill-chunk", required_argument, NULL, 'c'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"local-nodes", required_argument, NULL, 'L'},
                                             {"stages", required_argument, NULL, 'S'},
                                             {"coordinator", required_argument, NULL, 'C'},
                                             {"prompt", required_argument, NULL, 'x'},
                                             {"chat", required_argument, NULL, 'X'},
                                             {"system", required_argument, NULL, 'y'},
                                             {"chat-template", required_argument, NULL, 'Y'},
                                             {"weight-format", required_argument, NULL, 'W'},
                                             {NULL, 0, NULL, 0}};
    double v;
    long long i;
    int c;
    o->max_tokens = 16;
    o->sampling.top_p = 1.0f;
    o->prefill_chunk = 256;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 'p':
            free(o->prompt);
            if (cli_parse_int_list("run", "--prompt-ids", optarg, 0, INT32_MAX, &o->prompt,
                                   &o->n_prompt) != 0)
                return 2;
            break;
        case 'n':
            if (cli_parse_int("run", "--max-tokens", optarg, 0, 1 << 24, &o->max_tokens) != 0)
                return 2;
            break;
        case 't':
            if (cli_parse_float("run", "--temperature", optarg, 0, 100, &v) != 0)
                return 2;
            o->sampling.temperature = (float)v;
            break;
        case 'P':
            if (cli_parse_float("run", "--top-p", optarg, 1e-9, 1, &v) != 0)
                return 2;
            o->sampling.top_p = (float)v;
            break;
        case 'K':
            if (cli_parse_int("run", "--top-k", optarg, 0, INT32_MAX, &i) != 0)
                return 2;
            o->sampling.top_k = (int)i;
            break;
        case 's':
            if (cli_parse_int("run", "--seed", optarg, 0, INT64_MAX, &i) != 0)
                return 2;
            o->sampling.seed = (uint64_t)i;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'l':
            o->logits_out = optarg;
            break;
        case 'T':
            if (cli_parse_int("run", "--threads", optarg, 1, 1024, &o->threads) != 0)
                return 2;
            break;
        case 'c':
            if (cli_parse_int("run", "--prefill-chunk", optarg, 1, 1 << 20, &o->prefill_chunk) != 0)
                return 2;
            break;
        case 'L':
            if (cli_parse_int("run", "--local-nodes", optarg, 1, 64, &o->local_nodes) != 0)
                return 2;
            break;
        case 'S':
            if (cli_parse_int("run", "--stages", optarg, 1, 64, &o->stages) != 0)
                return 2;
            break;
        case 'C':
            o->coordinator = optarg;
            break;
        case 'x':
            o->text_prompt = optarg;
            break;
        case 'X':
            o->chat = optarg;
            break;
        case 'y':
            o->system = optarg;
            break;
        case 'Y':
            o->chat_template = optarg;
            break;
        case 'W':
            if (dsn_weight_format_parse(optarg, &o->weight_format) != DSI_OK) {
                fprintf(stderr, "dsinfer run: --weight-format: '%s' is not one of %s\n", optarg,
                        DSN_WFMT_NAMES);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dsinfer run: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->coordinator != NULL && o->local_nodes > 0) {
        fprintf(stderr, "dsinfer run: --local-nodes and --coordinator exclude each other\n");
        return 2;
    }
    if (o->logits_out != NULL && (o->coordinator != NULL || o->local_nodes > 0)) {
        fprintf(stderr, "dsinfer run: --logits-out works in a single process only\n");
        return 2;
    }
    if (o->coordinator != NULL && o->model == NULL)
        o->model = "";
    if ((o->prompt != NULL) + (o->text_prompt != NULL) + (o->chat != NULL) > 1) {
        fprintf(stderr, "dsinfer run: give one of --prompt-ids, --prompt and --chat\n");
        return 2;
    }
    if (o->model != NULL && (o->text_prompt != NULL || o->chat != NULL)) {
        if (run_text_open(o->model, &o->text) != 0)
            return 1;
        o->has_text = 1;
        int rc = o->chat != NULL
                     ? run_text_chat(&o->text, o->model, o->chat_template, o->system, o->chat,
                                     &o->prompt, &o->n_prompt)
                     : run_text_prompt(&o->text, o->text_prompt, &o->prompt, &o->n_prompt);
        if (rc != 0)
            return 1;
    }
    if (o->model == NULL || o->prompt == NULL) {
        fprintf(stderr, "dsinfer run: --model and one of --prompt-ids, --prompt, --chat are "
                        "required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

typedef struct {
    int32_t *tokens;
    int n_tokens;
    const char *finish_reason;
    double load_s, prefill_s, decode_s;
    int streamed; /* text was printed while generating */
    int cluster;  /* generated on a cluster: decode_s is the end-to-end time */
} run_result_t;

/* Prefill the prompt in chunks, then decode one token at a time. */
static int generate(dsn_engine_t *eng, const run_opts_t *o, FILE *logits_file, run_result_t *r)
{
    const dsn_config_t *cfg = &dsn_engine_weights(eng)->cfg;
    int V = cfg->vocab_size;
    int64_t max_ctx = o->n_prompt + o->max_tokens;
    if (max_ctx > cfg->max_position_embeddings) {
        fprintf(stderr,
                "dsinfer run: %d prompt tokens + --max-tokens %lld = %lld tokens, more than the "
                "model's max_position_embeddings (%d)\n",
                o->n_prompt, o->max_tokens, (long long)max_ctx, cfg->max_position_embeddings);
        return 1;
    }
    dsn_kvcache_t *kv = NULL;
    dsn_sampler_t sampler;
    float *logits = malloc((size_t)V * sizeof(float));
    r->tokens = malloc((size_t)(o->max_tokens + 1) * sizeof(int32_t));
    int rc = 1;
    if (logits == NULL || r->tokens == NULL || dsn_sampler_init(&sampler, &o->sampling, V) != 0)
        goto out_free;
    if (dsn_engine_kvcache_create(eng, max_ctx, &kv) != DSI_OK)
        goto out_sampler;

    double t0 = dsi_now_s();
    for (int done = 0; done < o->n_prompt;) {
        int chunk = o->n_prompt - done;
        if (chunk > o->prefill_chunk)
            chunk = (int)o->prefill_chunk;
        dsn_seq_batch_t seq = {kv, done, chunk};
        if (dsn_engine_forward(eng, o->prompt + done, &seq, 1, 0, logits) != DSI_OK)
            goto out_kv;
        done += chunk;
    }
    double t1 = dsi_now_s();
    r->prefill_s = t1 - t0;
    r->finish_reason = "length";
    for (int step = 0; step < o->max_tokens; step++) {
        if (step > 0) {
            dsn_seq_batch_t seq = {kv, kv->length, 1};
            if (dsn_engine_forward(eng, &r->tokens[step - 1], &seq, 1, 0, logits) != DSI_OK)
                goto out_kv;
        }
        if (logits_file != NULL &&
            fwrite(logits, sizeof(float), (size_t)V, logits_file) != (size_t)V) {
            fprintf(stderr, "dsinfer run: --logits-out: write failed: %m\n");
            goto out_kv;
        }
        int32_t tok = dsn_sampler_next(&sampler, logits);
        if (tok < 0) {
            fprintf(stderr,
                    "dsinfer run: step %d: the logits hold NaN or infinite values (broken "
                    "weights or scales in the checkpoint?)\n",
                    step);
            goto out_kv;
        }
        r->tokens[r->n_tokens++] = tok;
        if (o->has_text && !o->json)
            run_text_stream((run_text_t *)&o->text, tok, stdout);
        if (tok == cfg->eos_token_id) {
            r->finish_reason = "stop";
            break;
        }
    }
    r->decode_s = dsi_now_s() - t1;
    rc = 0;
out_kv:
    dsn_kvcache_destroy(kv);
out_sampler:
    dsn_sampler_cleanup(&sampler);
out_free:
    free(logits);
    return rc;
}

static void print_result(const run_opts_t *o, const run_result_t *r)
{
    /* Decode steps after the first token (which comes from the prefill). */
    int steps = r->n_tokens > 1 ? r->n_tokens - 1 : 0;
    if (!o->json) {
        if (o->has_text) {
            /* Single process: streamed while generating; cluster: printed now. */
            if (r->streamed) {
                run_text_flush((run_text_t *)&o->text, stdout);
            } else {
                char *text = run_text_decode((run_text_t *)&o->text, r->tokens, r->n_tokens);
                fputs(text ? text : "", stdout);
                free(text);
            }
        } else {
            for (int i = 0; i < r->n_tokens; i++)
                printf(i ? ",%d" : "%d", r->tokens[i]);
        }
        printf("\n");
        if (r->cluster)
            fprintf(stderr, "%d tokens in %.3f s end to end\n", r->n_tokens, r->decode_s);
        else
            fprintf(stderr,
                    "prefill %d tokens in %.3f s (%.1f tok/s), decode %d steps in %.3f s (%.2f "
                    "tok/s)\n",
                    o->n_prompt, r->prefill_s, o->n_prompt / (r->prefill_s + 1e-12), steps,
                    r->decode_s, steps / (r->decode_s + 1e-12));
        return;
    }
    printf("{\"prompt_tokens\":[");
    for (int i = 0; i < o->n_prompt; i++)
        printf(i ? ",%d" : "%d", o->prompt[i]);
    printf("],\"tokens\":[");
    for (int i = 0; i < r->n_tokens; i++)
        printf(i ? ",%d" : "%d", r->tokens[i]);
    printf("]");
    if (o->has_text) {
        char *text = run_text_decode((run_text_t *)&o->text, r->tokens, r->n_tokens);
        json_t *js = json_string(text ? text : "");
        char *enc = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        printf(",\"text\":%s", enc ? enc : "\"\"");
        free(enc);
        json_decref(js);
        free(text);
    }
    if (r->cluster) {
        /* The cluster's phases overlap across nodes: only the end-to-end time is meaningful. */
        printf(",\"finish_reason\":\"%s\",\"timings\":{\"total_s\":%.6f,"
               "\"tokens_per_s\":%.3f}}\n",
               r->finish_reason, r->decode_s, r->n_tokens / (r->decode_s + 1e-12));
        return;
    }
    printf(",\"finish_reason\":\"%s\",\"timings\":{\"load_s\":%.6f,\"prefill_s\":%.6f,"
           "\"decode_s\":%.6f,\"prefill_tokens_per_s\":%.3f,\"decode_tokens_per_s\":%.3f}}\n",
           r->finish_reason, r->load_s, r->prefill_s, r->decode_s,
           o->n_prompt / (r->prefill_s + 1e-12), steps / (r->decode_s + 1e-12));
}

/* The same generation on a cluster: local node processes or a remote coordinator. */
static int run_on_cluster(const run_opts_t *o, run_result_t *r)
{
    cli_cluster_opts_t co = {.model = o->model,
                             .local_nodes = (int)o->local_nodes,
                             .stages = (uint32_t)o->stages,
                             .node_threads = (int)o->threads,
                             .coordinator = o->coordinator};
    dsc_cluster_req_t req = {o->prompt,
                             (uint32_t)o->n_prompt,
                             (uint32_t)o->max_tokens,
                             o->sampling.temperature,
                             o->sampling.top_p,
                             (uint32_t)o->sampling.top_k,
                             o->sampling.seed};
    cli_gen_result_t res;
    double t0 = dsi_now_s();
    if (cli_cluster_generate(&co, &req, 1, &res) != 0) {
        free(res.tokens);
        return 1;
    }
    r->tokens = res.tokens;
    r->n_tokens = (int)res.n_tokens;
    r->finish_reason = res.finish == DST_FINISH_STOP ? "stop" : "length";
    r->decode_s = dsi_now_s() - t0;
    r->cluster = 1;
    return 0;
}

int dsinfer_cmd_run(int argc, char **argv)
{
    run_opts_t o = {0};
    run_result_t r = {0};
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0) {
        free(o.prompt);
        run_text_close(&o.text);
        return rc;
    }
    if (o.local_nodes > 0 || o.coordinator != NULL) {
        /* The spawned dsinfer-node processes read their default format from the environment. */
        if (o.weight_format != DSN_WFMT_AUTO)
            setenv("DSINFER_WEIGHT_FORMAT", dsn_weight_format_name(o.weight_format), 1);
        rc = run_on_cluster(&o, &r);
        if (rc == 0)
            print_result(&o, &r);
        free(o.prompt);
        free(r.tokens);
        run_text_close(&o.text);
        return rc;
    }
    double t0 = dsi_now_s();
    dsn_checkpoint_t *ckpt = NULL;
    dsn_weights_t *w = NULL;
    dsn_engine_t *eng = NULL;
    FILE *logits_file = NULL;
    rc = 1;
    if (dsn_checkpoint_open(o.model, &ckpt) != DSI_OK)
        goto out;
    const dsn_config_t *cfg = dsn_checkpoint_config(ckpt);
    for (int i = 0; i < o.n_prompt; i++) {
        if (o.prompt[i] >= cfg->vocab_size) {
            fprintf(stderr,
                    "dsinfer run: --prompt-ids: token %d is outside the vocabulary [0, %d)\n",
                    o.prompt[i], cfg->vocab_size);
            rc = 2;
            goto out;
        }
    }
    dsn_slice_t all = dsn_slice_all(cfg);
    if (dsn_weights_load_as(ckpt, &all, o.weight_format, (int)o.threads, &w) != DSI_OK)
        goto out;
    if (dsn_engine_create(w, dsk_level_detect(), (int)o.threads, &eng) != DSI_OK)
        goto out;
    if (o.logits_out != NULL && (logits_file = fopen(o.logits_out, "wb")) == NULL) {
        fprintf(stderr, "dsinfer run: --logits-out %s: %m\n", o.logits_out);
        goto out;
    }
    r.load_s = dsi_now_s() - t0;
    r.streamed = o.has_text && !o.json;
    if (generate(eng, &o, logits_file, &r) != 0)
        goto out;
    if (logits_file != NULL && fclose(logits_file) != 0) {
        logits_file = NULL;
        fprintf(stderr, "dsinfer run: --logits-out %s: %m\n", o.logits_out);
        goto out;
    }
    logits_file = NULL;
    print_result(&o, &r);
    rc = 0;
out:
    if (logits_file != NULL)
        fclose(logits_file);
    dsn_engine_destroy(eng);
    dsn_weights_destroy(w);
    dsn_checkpoint_close(ckpt);
    free(o.prompt);
    free(r.tokens);
    run_text_close(&o.text);
    return rc;
}
