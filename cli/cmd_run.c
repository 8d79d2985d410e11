/*
 * dsinfer run: load a model and generate from one prompt in this process (coordinator and node
 * together: the default path for trying a model).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_cluster.h"
#include "cli_settings.h"
#include "dsi_clock.h"
#include "run_spec.h"
#include "run_text.h"
#include "dsi_log.h"
#include "dsinfer_commands.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_mtp.h"
#include "dsn_sampler.h"

typedef struct {
    const char *model;
    int32_t *prompt;
    int n_prompt;
    long long max_tokens;
    dsn_sampling_t sampling;
    int json;
    const char *logits_out;
    const char *mtp_logits_out; /* --mtp-logits-out */
    long long spec_k;           /* --speculative-tokens */
    long long threads;
    long long prefill_chunk;
    long long local_nodes;
    const char *coordinator;
    const char *text_prompt, *chat, *system, *chat_template; /* text input (tokenizer) */
    int thinking;    /* --thinking: the template's `thinking` variable (DeepSeek-V3.1) */
    run_text_t text; /* loaded when text is used */
    int has_text;
    dsn_weight_format_t weight_format; /* re-quantize the projections at load */
    dsn_kv_dtype_t kv_dtype;           /* --kv-dtype */
    const cli_mpi_t *mpi;              /* dsinfer-cluster: the node ranks (NULL: none) */
    const dsi_settings_t *settings;
} run_opts_t;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dsinfer run --model DIR (--prompt-ids 5,17,300 | --prompt TEXT | --chat TEXT)\n"
        "                   [--local-nodes N [--stages S] | --coordinator HOST:PORT] [options]\n"
        "Generates up to --max-tokens tokens after the prompt; stops at the model's eos. In\n"
        "this process by default; --local-nodes N runs a coordinator here and N dsinfer-node\n"
        "processes on loopback (every node option goes to them); --coordinator sends the\n"
        "request to a running one.\n");
}

static int parse_opts(const dsi_settings_t *s, const cli_mpi_t *mpi, run_opts_t *o)
{
    o->model = dsi_settings_str(s, DSI_S_MODEL);
    o->max_tokens = dsi_settings_int(s, DSI_S_MAX_TOKENS);
    o->sampling.temperature = (float)dsi_settings_float(s, DSI_S_TEMPERATURE);
    o->sampling.top_p = (float)dsi_settings_float(s, DSI_S_TOP_P);
    o->sampling.top_k = (int)dsi_settings_int(s, DSI_S_TOP_K);
    o->sampling.seed = (uint64_t)dsi_settings_int(s, DSI_S_SEED);
    o->json = (int)dsi_settings_int(s, DSI_S_JSON);
    o->logits_out = dsi_settings_str(s, DSI_S_LOGITS_OUT);
    o->mtp_logits_out = dsi_settings_str(s, DSI_S_MTP_LOGITS_OUT);
    o->spec_k = dsi_settings_int(s, DSI_S_SPECULATIVE_TOKENS);
    o->threads = dsi_settings_int(s, DSI_S_THREADS);
    o->prefill_chunk = dsi_settings_int(s, DSI_S_PREFILL_CHUNK);
    o->local_nodes = dsi_settings_int(s, DSI_S_LOCAL_NODES);
    o->mpi = mpi;
    o->coordinator = dsi_settings_str(s, DSI_S_COORDINATOR);
    o->text_prompt = dsi_settings_str(s, DSI_S_PROMPT);
    o->chat = dsi_settings_str(s, DSI_S_CHAT);
    o->system = dsi_settings_str(s, DSI_S_SYSTEM);
    o->chat_template = dsi_settings_str(s, DSI_S_CHAT_TEMPLATE);
    o->thinking = (int)dsi_settings_int(s, DSI_S_THINKING);
    o->settings = s;
    const char *ids = dsi_settings_str(s, DSI_S_PROMPT_IDS);
    if (ids != NULL &&
        cli_parse_int_list("run", "--prompt-ids", ids, 0, INT32_MAX, &o->prompt, &o->n_prompt) != 0)
        return 2;
    const char *wfmt = dsi_settings_str(s, DSI_S_WEIGHT_FORMAT);
    if (dsn_weight_format_parse(wfmt, &o->weight_format) != DSI_OK) {
        fprintf(stderr, "dsinfer run: --weight-format: '%s' is not one of %s\n", wfmt,
                DSN_WFMT_NAMES);
        return 2;
    }
    if (cli_kv_dtype(s, &o->kv_dtype) != 0)
        return 2;
    if (o->coordinator != NULL && o->local_nodes > 0) {
        fprintf(stderr, "dsinfer run: --local-nodes and --coordinator exclude each other\n");
        return 2;
    }
    if (o->logits_out != NULL && (o->coordinator != NULL || o->local_nodes > 0)) {
        fprintf(stderr, "dsinfer run: --logits-out works in a single process only\n");
        return 2;
    }
    if (o->mtp_logits_out != NULL && (o->coordinator != NULL || o->local_nodes > 0)) {
        fprintf(stderr, "dsinfer run: --mtp-logits-out works in a single process only\n");
        return 2;
    }
    if (o->coordinator != NULL && o->model == NULL)
        o->model = "";
    if ((o->prompt != NULL) + (o->text_prompt != NULL) + (o->chat != NULL) > 1) {
        fprintf(stderr, "%s: give one of --prompt-ids, --prompt and --chat\n", s->command);
        return 2;
    }
    if (o->model != NULL && (o->text_prompt != NULL || o->chat != NULL)) {
        if (run_text_open(o->model, &o->text) != 0)
            return 1;
        o->has_text = 1;
        int rc = o->chat != NULL
                     ? run_text_chat(&o->text, o->model, o->chat_template, o->thinking, o->system,
                                     o->chat, &o->prompt, &o->n_prompt)
                     : run_text_prompt(&o->text, o->text_prompt, &o->prompt, &o->n_prompt);
        if (rc != 0)
            return 1;
    }
    if (o->model == NULL || o->prompt == NULL) {
        fprintf(stderr, "%s: --model and one of --prompt-ids, --prompt, --chat are required\n",
                s->command);
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
    int spec_k;   /* speculative decoding's drafts per step (0: none) */
    dsn_spec_stats_t spec;
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
        if (r->spec_k > 0)
            run_spec_summary(&r->spec, r->spec_k, stderr);
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
           "\"decode_s\":%.6f,\"prefill_tokens_per_s\":%.3f,\"decode_tokens_per_s\":%.3f}",
           r->finish_reason, r->load_s, r->prefill_s, r->decode_s,
           o->n_prompt / (r->prefill_s + 1e-12), steps / (r->decode_s + 1e-12));
    if (r->spec_k > 0) {
        printf(",\"speculative\":{");
        run_spec_json(&r->spec, r->spec_k, stdout);
        printf("}");
    }
    printf("}\n");
}

/* The same generation on a cluster: local node processes or a remote coordinator. */
static int run_on_cluster(const run_opts_t *o, run_result_t *r)
{
    /* Refuse token ids the model lacks before starting anything, as the one-process run does
     * (without --model the coordinator checks them and names the id). */
    dsn_config_t cfg;
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", o->model);
    if (o->model[0] != '\0' && dsn_config_load(path, &cfg) == DSI_OK) {
        for (int i = 0; i < o->n_prompt; i++) {
            if (o->prompt[i] >= cfg.vocab_size) {
                fprintf(stderr,
                        "dsinfer run: --prompt-ids: token %d is outside the vocabulary [0, %d)\n",
                        o->prompt[i], cfg.vocab_size);
                return 2;
            }
        }
    }
    cli_cluster_opts_t co = {.model = o->model,
                             .local_nodes = (int)o->local_nodes,
                             .stages = (uint32_t)dsi_settings_int(o->settings, DSI_S_STAGES),
                             .coordinator = o->coordinator,
                             .mpi_nodes = o->mpi != NULL ? o->mpi->nodes : 0,
                             .mpi_listen = o->mpi != NULL ? o->mpi->listen : NULL,
                             .mpi_host = o->mpi != NULL ? o->mpi->host : NULL,
                             .settings = o->settings};
    cli_node_args_t na;
    if (o->coordinator == NULL) {
        /* The coordinator here: the context rule and the nodes' options. */
        dsn_config_t model_cfg;
        long long ctx;
        int rc = cli_config_load(o->model, NULL, &model_cfg);
        if (rc == 0)
            rc = cli_max_context(o->settings, &model_cfg, &ctx);
        if (rc == 0 && o->local_nodes > 0)
            rc = cli_node_args(o->settings, ctx, (int)o->local_nodes, &na);
        if (rc != 0)
            return rc;
        co.kv_tokens = (uint64_t)ctx;
        co.node_args = o->local_nodes > 0 ? na.argv : NULL;
    }
    dsc_cluster_req_t req = {o->prompt,
                             (uint32_t)o->n_prompt,
                             (uint32_t)o->max_tokens,
                             o->sampling.temperature,
                             o->sampling.top_p,
                             (uint32_t)o->sampling.top_k,
                             o->sampling.seed,
                             NULL};
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

int cli_run(const dsi_settings_t *s, const cli_mpi_t *mpi)
{
    run_opts_t o = {0};
    run_result_t r = {0};
    int rc = parse_opts(s, mpi, &o);
    if (rc != 0) {
        free(o.prompt);
        run_text_close(&o.text);
        return rc;
    }
    if (o.local_nodes > 0 || o.coordinator != NULL || o.mpi != NULL) {
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
    dsn_mtp_weights_t *mw = NULL;
    dsn_mtp_t *mtp = NULL;
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
    if (dsn_engine_create(w, dsk_level_detect(), (int)o.threads, &eng) != DSI_OK ||
        dsn_engine_set_kv(eng, o.kv_dtype, 0) != DSI_OK)
        goto out;
    if (o.logits_out != NULL && (logits_file = fopen(o.logits_out, "wb")) == NULL) {
        fprintf(stderr, "dsinfer run: --logits-out %s: %m\n", o.logits_out);
        goto out;
    }
    if (o.mtp_logits_out != NULL && !dsn_mtp_present(ckpt)) {
        fprintf(stderr, "dsinfer run: --mtp-logits-out: %s has no MTP layer "
                        "(num_nextn_predict_layers = %d)\n",
                o.model, cfg->num_nextn_predict_layers);
        rc = 2;
        goto out;
    }
    if ((o.spec_k > 0 || o.mtp_logits_out != NULL) && dsn_mtp_present(ckpt)) {
        if (dsn_mtp_weights_load(ckpt, o.weight_format, (int)o.threads, NULL, &mw) != DSI_OK ||
            dsn_mtp_create(mw, eng, &mtp) != DSI_OK)
            goto out;
    }
    if (o.mtp_logits_out != NULL &&
        run_spec_mtp_logits(eng, mtp, o.prompt, o.n_prompt, o.mtp_logits_out) != 0)
        goto out;
    r.load_s = dsi_now_s() - t0;
    r.streamed = o.has_text && !o.json;
    if (mtp != NULL && o.spec_k > 0) {
        run_spec_opts_t so = {o.prompt,           o.n_prompt,       o.max_tokens,
                              o.prefill_chunk,    o.sampling,       (int)o.spec_k,
                              logits_file,        r.streamed ? &o.text : NULL, cfg->eos_token_id};
        run_spec_result_t sr = {0};
        int grc = run_spec_generate(eng, mtp, &so, &sr);
        r.tokens = sr.tokens;
        r.n_tokens = sr.n_tokens;
        r.finish_reason = sr.finish_reason;
        r.prefill_s = sr.prefill_s;
        r.decode_s = sr.decode_s;
        r.spec = sr.stats;
        r.spec_k = (int)o.spec_k;
        if (grc != 0)
            goto out;
    } else if (generate(eng, &o, logits_file, &r) != 0) {
        goto out;
    }
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
    dsn_mtp_destroy(mtp);
    dsn_mtp_weights_destroy(mw);
    dsn_engine_destroy(eng);
    dsn_weights_destroy(w);
    dsn_checkpoint_close(ckpt);
    free(o.prompt);
    free(r.tokens);
    run_text_close(&o.text);
    return rc;
}

int dsinfer_cmd_run(int argc, char **argv)
{
    dsi_settings_t s;
    int rc = dsi_settings_parse(&s, DSI_P_RUN, argc, argv, usage);
    if (rc == 0) {
        cli_kernel_options(&s);
        rc = cli_run(&s, NULL);
    } else if (rc == 1)
        rc = 0; /* --help */
    dsi_settings_cleanup(&s);
    return rc;
}
