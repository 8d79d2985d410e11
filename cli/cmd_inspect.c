/*
 * dsinfer inspect: open and validate a model directory and print what a full load needs: the
 * config's key fields, tensor counts, bytes per dtype, mapped bytes and the latent KV cache.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_settings.h"
#include "dsi_log.h"
#include "dsinfer_commands.h"
#include "dsn_checkpoint.h"
#include "dsn_weights.h"

typedef struct {
    uint64_t dtype_bytes[DSN_ST_DTYPE_COUNT];
    uint64_t dtype_count[DSN_ST_DTYPE_COUNT];
    uint64_t tensor_bytes; /* main-model tensors */
    uint64_t mapped_bytes; /* every shard file, whole */
    uint64_t kv_per_token; /* latent KV cache, f32, all layers */
    long long context;
} summary_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer inspect --model DIR [--json] [--max-context N]\n"
            "Validates the checkpoint in DIR and prints its configuration, tensors and the\n"
            "memory a full load needs (weights + latent KV cache for --max-context tokens).\n");
}

static void summarize(const dsn_checkpoint_t *ck, long long context, summary_t *s)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < dsn_checkpoint_count(ck); i++) {
        const dsn_st_tensor_t *t = dsn_checkpoint_at(ck, i);
        s->dtype_bytes[t->dtype] += t->nbytes;
        s->dtype_count[t->dtype]++;
        s->tensor_bytes += t->nbytes;
    }
    const dsn_config_t *c = dsn_checkpoint_config(ck);
    s->mapped_bytes = dsn_checkpoint_mapped_bytes(ck);
    /* Absorbed MLA caches c_kv (kv_lora_rank) and the rotated k_pe (qk_rope_head_dim) per token
     * per layer, in f32. */
    s->kv_per_token = (uint64_t)(c->kv_lora_rank + c->qk_rope_head_dim) * 4 * c->num_hidden_layers;
    s->context = context;
}

static double gib(uint64_t b)
{
    return (double)b / (double)(1ull << 30);
}

static void print_text(const dsn_checkpoint_t *ck, const summary_t *s)
{
    const dsn_config_t *c = dsn_checkpoint_config(ck);
    printf("model        %s\n", dsn_checkpoint_dir(ck));
    int n_moe = 0;
    for (int l = 0; l < c->num_hidden_layers; l++)
        n_moe += dsn_config_is_moe_layer(c, l);
    printf("layers       %d (%d dense, %d MoE) + %d MTP\n", c->num_hidden_layers,
           c->num_hidden_layers - n_moe, n_moe, c->num_nextn_predict_layers);
    printf("hidden       %d, vocab %d, heads %d\n", c->hidden_size, c->vocab_size,
           c->num_attention_heads);
    printf("mla          q_lora %d, kv_lora %d, qk_nope %d, qk_rope %d, v_head %d\n",
           c->q_lora_rank, c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim,
           c->v_head_dim);
    printf("moe          %d routed x %d + %d shared, top-%d of %d groups (keep %d), "
           "scaling %g\n",
           c->n_routed_experts, c->moe_intermediate_size, c->n_shared_experts,
           c->num_experts_per_tok, c->n_group, c->topk_group, (double)c->routed_scaling_factor);
    printf("router       %s scores, %s, %s\n", dsn_config_scoring_name(c->scoring_func),
           dsn_config_topk_method_name(c->topk_method),
           dsn_config_has_router_bias(c)
               ? (c->norm_topk_prob ? "correction bias, normalised" : "correction bias")
               : (c->norm_topk_prob ? "no bias, normalised" : "no bias, not normalised"));
    printf("dense mlp    %d\n", c->intermediate_size);
    if (c->has_yarn)
        printf("rope         theta %g, yarn factor %g over %d positions\n", c->rope_theta,
               c->yarn.factor, c->yarn.original_max_pos);
    else
        printf("rope         theta %g, no scaling\n", c->rope_theta);
    printf("weights      %s\n", c->fp8 ? "fp8 e4m3, 128x128 block scales" : "unquantized");
    printf("tensors      %zu in %zu shard(s); %zu MTP tensors skipped (%.3f GiB)\n",
           dsn_checkpoint_count(ck), dsn_checkpoint_shard_count(ck),
           dsn_checkpoint_skipped_count(ck), gib(dsn_checkpoint_skipped_bytes(ck)));
    for (int d = 0; d < DSN_ST_DTYPE_COUNT; d++) {
        if (s->dtype_count[d])
            printf("  %-9s  %8llu tensors  %14llu bytes  %9.3f GiB\n",
                   dsn_st_dtype_name((dsn_st_dtype_t)d), (unsigned long long)s->dtype_count[d],
                   (unsigned long long)s->dtype_bytes[d], gib(s->dtype_bytes[d]));
    }
    printf("memory       %llu bytes of tensors (%.3f GiB), %llu mapped (%.3f GiB)\n",
           (unsigned long long)s->tensor_bytes, gib(s->tensor_bytes),
           (unsigned long long)s->mapped_bytes, gib(s->mapped_bytes));
    printf("kv cache     %llu bytes per token of context; %lld tokens: %.3f GiB\n",
           (unsigned long long)s->kv_per_token, s->context,
           gib(s->kv_per_token * (uint64_t)s->context));
    printf("full load    %.3f GiB (mapped weights + KV cache for %lld tokens)\n",
           gib(s->mapped_bytes + s->kv_per_token * (uint64_t)s->context), s->context);
}

static void print_json(const dsn_checkpoint_t *ck, const summary_t *s)
{
    const dsn_config_t *c = dsn_checkpoint_config(ck);
    json_t *dt = json_object();
    for (int d = 0; d < DSN_ST_DTYPE_COUNT; d++) {
        if (s->dtype_count[d])
            json_object_set_new(dt, dsn_st_dtype_name((dsn_st_dtype_t)d),
                                json_pack("{s:I, s:I}", "tensors", (json_int_t)s->dtype_count[d],
                                          "bytes", (json_int_t)s->dtype_bytes[d]));
    }
    json_t *cfg = json_pack(
        "{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i,"
        " s:i, s:b, s:b}",
        "vocab_size", c->vocab_size, "hidden_size", c->hidden_size, "num_hidden_layers",
        c->num_hidden_layers, "num_nextn_predict_layers", c->num_nextn_predict_layers,
        "first_k_dense_replace", c->first_k_dense_replace, "intermediate_size",
        c->intermediate_size, "moe_intermediate_size", c->moe_intermediate_size, "n_routed_experts",
        c->n_routed_experts, "n_shared_experts", c->n_shared_experts, "num_experts_per_tok",
        c->num_experts_per_tok, "n_group", c->n_group, "topk_group", c->topk_group,
        "num_attention_heads", c->num_attention_heads, "q_lora_rank", c->q_lora_rank,
        "kv_lora_rank", c->kv_lora_rank, "qk_nope_head_dim", c->qk_nope_head_dim,
        "qk_rope_head_dim", c->qk_rope_head_dim, "v_head_dim", c->v_head_dim, "yarn", c->has_yarn,
        "fp8", c->fp8);
    json_object_set_new(cfg, "scoring_func", json_string(dsn_config_scoring_name(c->scoring_func)));
    json_object_set_new(cfg, "topk_method",
                        json_string(dsn_config_topk_method_name(c->topk_method)));
    json_object_set_new(cfg, "norm_topk_prob", json_boolean(c->norm_topk_prob));
    json_object_set_new(cfg, "routed_scaling_factor", json_real(c->routed_scaling_factor));
    json_t *root = json_pack(
        "{s:s, s:o, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:{s:I, s:I, s:I}, s:I}", "model",
        dsn_checkpoint_dir(ck), "config", cfg, "tensors", (json_int_t)dsn_checkpoint_count(ck),
        "shards", (json_int_t)dsn_checkpoint_shard_count(ck), "mtp_tensors_skipped",
        (json_int_t)dsn_checkpoint_skipped_count(ck), "mtp_bytes_skipped",
        (json_int_t)dsn_checkpoint_skipped_bytes(ck), "dtypes", dt, "tensor_bytes",
        (json_int_t)s->tensor_bytes, "mapped_bytes", (json_int_t)s->mapped_bytes, "kv_cache",
        "bytes_per_token", (json_int_t)s->kv_per_token, "context", (json_int_t)s->context, "bytes",
        (json_int_t)(s->kv_per_token * (uint64_t)s->context), "full_load_bytes",
        (json_int_t)(s->mapped_bytes + s->kv_per_token * (uint64_t)s->context));
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(root);
}

int dsinfer_cmd_inspect(int argc, char **argv)
{
    dsi_settings_t set;
    int rc = dsi_settings_parse(&set, DSI_P_INSPECT, argc, argv, usage);
    if (rc != 0) {
        dsi_settings_cleanup(&set);
        return rc == 1 ? 0 : rc; /* 1: --help */
    }
    const char *model = dsi_settings_str(&set, DSI_S_MODEL);
    int as_json = (int)dsi_settings_int(&set, DSI_S_JSON);
    long long context;
    dsn_config_t cfg;
    if (model == NULL) {
        fprintf(stderr, "dsinfer inspect: --model DIR is required\n");
        usage(stderr);
        return 2;
    }
    /* The context of the one rule (cli_max_context); the checkpoint's errors come below. */
    if (cli_config_load(model, NULL, &cfg) != 0 || cli_max_context(&set, &cfg, &context) != 0)
        context = dsi_settings_int(&set, DSI_S_MAX_CONTEXT) > 0
                      ? dsi_settings_int(&set, DSI_S_MAX_CONTEXT)
                      : CLI_CONTEXT_FALLBACK;
    dsn_checkpoint_t *ck = NULL;
    dsi_status_t st = dsn_checkpoint_open(model, &ck);
    if (st != DSI_OK) {
        fprintf(stderr, "dsinfer inspect: %s is not a valid model: %s (details above)\n", model,
                dsi_status_message(st));
        return 1;
    }
    /* The checks `run` and the nodes make before using the tensors: every tensor the config
     * implies (hidden size, heads, LoRA ranks, experts, layers, vocabulary) is present, with its
     * shape and dtype. The weights reference the mapped shards; nothing is converted. */
    dsn_weights_t *w = NULL;
    dsn_slice_t all = dsn_slice_all(dsn_checkpoint_config(ck));
    st = dsn_weights_load(ck, &all, &w);
    dsn_weights_destroy(w);
    if (st != DSI_OK) {
        fprintf(stderr,
                "dsinfer inspect: %s is not a valid model: its tensors do not match "
                "config.json: %s (details above)\n",
                model, dsi_status_message(st));
        dsn_checkpoint_close(ck);
        return 1;
    }
    summary_t s;
    summarize(ck, context, &s);
    if (as_json)
        print_json(ck, &s);
    else
        print_text(ck, &s);
    dsn_checkpoint_close(ck);
    dsi_settings_cleanup(&set);
    return 0;
}
