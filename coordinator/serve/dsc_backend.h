/*
 * dsc_backend.h - the text-level backend of the OpenAI API (dsc_api.h) over the cluster runtime
 * (dsc_cluster.h): what turns a validated API request into token ids for the cluster and the
 * cluster's sampled tokens back into text deltas.
 *
 * Per request: render the chat template (V3 or R1) or take the raw completion prompt (BOS
 * prepended), tokenize, check the context limit and the admission limit, submit to the cluster,
 * then stream-decode the tokens (never half a UTF-8 character), split an R1 answer's thinking
 * block off as reasoning text, and apply the stop strings (text that could be the start of one is
 * held back; on a match the text before it is emitted, the generation ends with finish "stop" and
 * the sequence is cancelled on the cluster so that its KV cache is freed).
 *
 * Threading: everything runs on the loop thread of the cluster and the API server (one loop).
 */
#ifndef DSC_BACKEND_H
#define DSC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dsc_api.h"
#include "dsc_chat.h"
#include "dsc_cluster.h"
#include "dsc_metrics.h"
#include "dsc_tokenizer.h"
#include "dsi_status.h"

typedef struct dsc_backend dsc_backend_t;

typedef struct {
    const char *model_dir;       /* tokenizer.json (+ tokenizer_config.json) are read from it */
    const char *model_id;        /* id served by /v1/models; NULL: model_dir's last component */
    dsc_chat_style_t chat_style; /* DSC_CHAT_AUTO: from tokenizer_config.json (V3 if unknown) */
    uint32_t max_queue;          /* sequences admitted at once; more -> 429 (>= 1) */
    uint32_t max_context;        /* prompt + max_tokens limit per sequence (>= 2) */
    int32_t vocab_size;          /* the model's vocabulary: prompt ids must be below it */
    /* Called (after the backend's own bookkeeping) with the cluster's state changes, as
       dsc_cluster_on_state would; may be NULL. */
    void (*on_state)(void *arg, dsi_status_t st);
    void *on_state_arg;
} dsc_backend_config_t;

/* Defaults: model id from the directory, AUTO template, max_queue 64, max_context 163840 (V3's max_position_embeddings). */
void dsc_backend_config_default(dsc_backend_config_t *cfg);

/*
 * Load the tokenizer and chat template of cfg->model_dir and bind to `cluster` (borrowed; it must
 * outlive the backend; the backend takes the cluster's on_state slot). Metric families are
 * registered in `metrics` (borrowed; see docs/API.md "Serving"). Errors: those of
 * dsc_tokenizer_load / dsc_chat_template_load (logged), DSI_ERR_INVALID_ARG for bad limits,
 * DSI_ERR_NOMEM. *out is set only on success.
 */
dsi_status_t dsc_backend_create(uv_loop_t *loop, const dsc_backend_config_t *cfg,
                                dsc_cluster_t *cluster, dsc_metrics_t *metrics,
                                dsc_backend_t **out);
/*
 * Cancel every sequence still in the cluster and free the backend. The API server using it must
 * be destroyed first (it cancels its generations through the backend). The loop must run
 * afterwards so that the backend's timer handle closes; the memory is freed then.
 */
void dsc_backend_destroy(dsc_backend_t *b);

/* The dsc_api_backend_t to give dsc_api_server_create. */
dsc_api_backend_t dsc_backend_api(dsc_backend_t *b);

/*
 * The API limits matching this backend: max_tokens at most max_context - 1, and the same as the
 * default. A request without max_tokens gets the rest of the context (max_context - prompt
 * tokens), at most the default: submit lowers it when the request did not give max_tokens.
 */
void dsc_backend_api_limits(const dsc_backend_t *b, dsc_api_limits_t *limits);

/* Refuse new requests (503) and report "stopping" on /health, for a graceful shutdown. */
void dsc_backend_stop(dsc_backend_t *b);
/* Ends every open request with an error event saying `why` (the cluster is gone for good: a
 * stream gets its error chunk and [DONE] instead of a closed connection). */
void dsc_backend_fail_all(dsc_backend_t *b, const char *why);

/* The model id served (backend-lifetime string) and the chat template style in use. */
const char *dsc_backend_model_id(const dsc_backend_t *b);
dsc_chat_style_t dsc_backend_chat_style(const dsc_backend_t *b);

/* ---------------------------------------------------------------------------------------------
 * The text stage of one generation (used by the backend; exposed for its tests): token ids in,
 * UTF-8 deltas out through a callback of dsc_api_events_t.on_text's shape.
 * ------------------------------------------------------------------------------------------- */

typedef struct dsc_backend_text dsc_backend_text_t;

typedef void (*dsc_backend_emit_cb)(void *ctx, const char *utf8, size_t len, int is_reasoning,
                                    int32_t n_tokens);

/*
 * `reasoning`: the text starts inside a thinking block (an R1 prompt ends with "<think>\n"): it
 * goes out with is_reasoning = 1 until "</think>" (not emitted), the rest as the answer. Stop
 * strings (stop[n_stop], non-empty UTF-8, copied) apply to the answer only. Special tokens (bos,
 * eos) produce no text. The tokenizer must outlive the object.
 */
dsi_status_t dsc_backend_text_create(const dsc_tokenizer_t *tok, int reasoning,
                                     const char *const *stop, int n_stop, dsc_backend_text_t **out);
void dsc_backend_text_destroy(dsc_backend_text_t *t);
/* Keep the text of the tool-call markers (<｜tool▁...｜>) even where the tokenizer marks them
 * special (the decoder skips special tokens), for a request whose tool calls are parsed. */
void dsc_backend_text_keep_tool_markers(dsc_backend_text_t *t);
/*
 * Push one generated token. Text that is complete and cannot be the start of "</think>" (in the
 * thinking block) or of a stop string (in the answer) is emitted at once. Each emission carries
 * the count of the tokens pushed since the previous emission (a token whose text is partly held
 * back is counted with the first piece), so the counts sum to the tokens pushed; a token that
 * leaves nothing held back here but has no text (special, unknown id, part of a character) is
 * counted at once with an empty emission, so that the API times tokens as they come. Returns 1
 * when a stop string matched: the text before it has been emitted and nothing more may be pushed.
 * DSI_ERR_NOMEM is returned as -1 (the generation should fail).
 */
int dsc_backend_text_push(dsc_backend_text_t *t, int32_t id, dsc_backend_emit_cb emit, void *ctx);
/*
 * End of generation (eos or length): flush the decoder and emit everything held back (a partial
 * stop string that never completed is ordinary text). Returns 1 if the flushed text completed a
 * stop string, 0 otherwise, -1 when out of memory.
 */
int dsc_backend_text_finish(dsc_backend_text_t *t, dsc_backend_emit_cb emit, void *ctx);

#endif
