/*
 * dsc_backend_impl.h - internals of the backend shared by its files (dsc_backend.c: lifetime,
 * state, metrics; dsc_backend_seq.c: requests and the cluster's tokens; dsc_backend_prompt.c:
 * request -> token ids). Not for other modules.
 */
#ifndef DSC_BACKEND_IMPL_H
#define DSC_BACKEND_IMPL_H

#include "dsc_backend.h"
#include "dsi_list.h"

/* One admitted request. */
typedef struct dsc_backend_seq {
    dsi_list_t link; /* in backend->seqs */
    dsc_backend_t *b;
    uint64_t handle;     /* the API's id for cancel() */
    uint64_t cluster_id; /* dsc_cluster_submit's id */
    const dsc_api_events_t *events;
    void *ctx;
    dsc_backend_text_t *text;
    int64_t n_prompt, n_generated;
    int attached;   /* the API may still get events (no terminal event, no cancel yet) */
    int in_cluster; /* the cluster may still call back (no finish, no dsc_cluster_cancel yet) */
    int started;    /* the first token came: counted as running, not queued */
    int cancel_due; /* detached while inside a cluster callback: cancel on the next tick */
    /* stop_token_ids: the token that finishes the sequence gives no text (as vLLM) */
    int32_t stop_ids[DSC_API_MAX_STOP_IDS];
    int n_stop_ids;
} dsc_backend_seq_t;

#define DSC_BACKEND_BL_CODES    324 /* code points of the byte-level alphabet */
#define DSC_BACKEND_TOKEN_BYTES 256 /* bytes of one token in logprobs (longer ones are cut) */

struct dsc_backend {
    uv_loop_t *loop;
    dsc_cluster_t *cluster;
    dsc_tokenizer_t *tok;
    dsc_chat_template_t *tpl;
    char *model_id;
    dsc_backend_config_t cfg; /* model_dir / model_id not kept */
    int ever_ready;           /* the cluster was ready once: later not-ready spells are re-plans */
    int stopping;
    dsi_list_t seqs; /* of dsc_backend_seq_t, newest first */
    uint32_t n_seqs; /* in seqs: what admission counts */
    uint64_t next_handle;
    uint64_t seed_state; /* for requests without a seed */
    int in_cluster_cb;   /* > 0 inside dsc_cluster's token callback: cluster calls deferred */
    uv_timer_t tick;     /* refreshes cluster gauges */
    uv_timer_t defer;    /* runs deferred cancels right after the current callback */
    int handles_open;    /* timers not yet closed after destroy */
    /* metrics (series looked up once) */
    dsc_metric_series_t *queued, *running;           /* gauges */
    dsc_metric_series_t *prompt_tokens, *gen_tokens; /* counters */
    dsc_metric_family_t *finished, *rejected;        /* counters by {reason} */
    dsc_metric_series_t *nodes_joined, *nodes_ready, *nodes_dead, *cluster_seqs, *cluster_ready;
    dsc_metric_series_t *replans, *rebalances, *live_switches, *imbalance; /* cluster stats */
    /* speculative decoding (dsc_backend_spec.c): counters fed with the totals' growth */
    dsc_metric_family_t *spec_drafts, *spec_accepted, *spec_acceptance;
    dsc_metric_series_t *spec_steps, *spec_tokens, *spec_draft_s, *spec_verify_s, *spec_per_step;
    dsc_spec_totals_t spec_seen;
    dsc_metric_series_t *prefill_tokens, *shared_tokens; /* counters, from the cluster's stats */
    dsc_metric_series_t *preemptions;
    dsc_metric_series_t *prefix_hit, *prefix_prompt; /* counters: the nodes' prefix caches */
    /* KV moves of a live switch (counters, from the cluster's stats) */
    dsc_metric_series_t *kv_moved_seqs, *kv_moved_bytes, *kv_move_failures, *reprefilled;
    dsc_metric_family_t *kv_blocks;        /* gauge by {node, state}: used / free */
    dsc_metric_family_t *node_preemptions; /* gauge by {node} */
    dsc_metric_family_t *node_prefix_hit;  /* gauge by {node}: its prefix cache's hit tokens */
    dsc_metric_series_t *prefix_misses;    /* counter: re-submissions without prefix reuse */
    dsc_metric_family_t *layer_imbalance;  /* gauge by {layer} */
    dsc_metric_family_t *expert_tokens;    /* gauge by {layer, expert} */
    dsc_metric_series_t **expert_series;   /* [MoE layers * experts], created on first tokens */
    /* generation_config.json's defaults for requests that leave them out */
    struct {
        int has_temperature, has_top_p, has_top_k;
        float temperature, top_p;
        int32_t top_k;
    } gen;
    int16_t bl_inv[DSC_BACKEND_BL_CODES]; /* byte-level code point -> byte, or -1 */
    char lp_bytes[DSC_API_MAX_TOP_LOGPROBS + 1][DSC_BACKEND_TOKEN_BYTES]; /* logprobs scratch */
};

/* dsc_backend_seq.c: the ops of dsc_api_backend_ops_t that handle requests. */
dsi_status_t dsc_backend_submit(void *self, const dsc_api_request_t *req,
                                const dsc_api_events_t *events, void *ctx, uint64_t *handle,
                                char *message, size_t message_cap);
void dsc_backend_cancel(void *self, uint64_t handle);
/* The cluster's admission hook for control-port clients: the HTTP requests' queue and context
 * limits (dsc_cluster_admit_cb). */
dsi_status_t dsc_backend_admit_client(void *self, const dsc_cluster_req_t *req, char *message,
                                      size_t cap);
/* Cancel on the cluster every sequence marked cancel_due, and free the detached ones. */
void dsc_backend_run_deferred(dsc_backend_t *b);
/* Cancel everything (destroy). */
void dsc_backend_drop_all(dsc_backend_t *b);

/* dsc_backend.c */
void dsc_backend_count(dsc_metric_family_t *family, const char *reason);
/* dsc_backend_spec.c: register the speculative-decoding metrics (0 when out of memory), and
 * bring them up to the cluster's totals. */
int dsc_backend_spec_register(dsc_backend_t *b, dsc_metrics_t *m);
void dsc_backend_spec_refresh(dsc_backend_t *b, const dsc_spec_totals_t *t);
void dsc_backend_refresh_gauges(dsc_backend_t *b);
/* Run dsc_backend_run_deferred as soon as the current callback has returned. */
void dsc_backend_schedule(dsc_backend_t *b);

/*
 * dsc_backend_prompt.c: the prompt's token ids (chat template or raw prompt with BOS). *ids is
 * malloc'ed. On failure `message` (cap bytes) tells the client why.
 */
dsi_status_t dsc_backend_prompt_ids(const dsc_backend_t *b, const dsc_api_request_t *req,
                                    int32_t **ids, size_t *n_ids, char *message, size_t cap);

/* dsc_backend_tokenize.c: the ops tokenize, detokenize and max_model_len. */
dsi_status_t dsc_backend_tokenize(void *self, const dsc_api_request_t *req, int32_t **ids,
                                  size_t *n_ids, char *message, size_t cap);
dsi_status_t dsc_backend_detokenize(void *self, const int32_t *ids, size_t n_ids, char **text,
                                    size_t *len, char *message, size_t cap);
int64_t dsc_backend_max_model_len(void *self);

/*
 * dsc_backend_tools.c: the grammar that forces a tool call (tool_choice required or named) in the
 * format of the model's template (dsc_tool_grammar.h); *gbnf malloc'ed. On failure `message`
 * (cap bytes) tells the client why.
 */
dsi_status_t dsc_backend_tool_grammar(const dsc_backend_t *b, const dsc_api_request_t *req,
                                      char **gbnf, char *message, size_t cap);

/* dsc_backend_params.c */
/* Reads dir/generation_config.json's temperature, top_p and top_k if present (logged). */
void dsc_backend_gen_config_load(dsc_backend_t *b, const char *dir);
/* The request's temperature, top_p and top_k, or generation_config's for those not given. */
void dsc_backend_defaults(const dsc_backend_t *b, const dsc_api_request_t *req, float *temperature,
                          float *top_p, uint32_t *top_k);
/* SUBMIT.sampling of req (arrays borrowed from req); DSI_ERR_BAD_REQUEST with `message` for a
 * token id outside the vocabulary. */
dsi_status_t dsc_backend_sampling(const dsc_backend_t *b, const dsc_api_request_t *req,
                                  dst_msg_sampling_t *out, char *message, size_t cap);
/* The cluster's logprobs callback (ctx: the dsc_backend_seq_t): on_logprobs per token. */
void dsc_backend_on_logprobs(void *ctx, const dst_msg_tokens_t *t);

#endif
