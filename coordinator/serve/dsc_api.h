/*
 * dsc_api.h - the OpenAI-compatible API of the coordinator, and the backend interface through which
 * it reaches whatever engine generates the text (single-node engine, distributed runtime, or a test
 * backend).
 *
 * Three parts:
 *   1. The backend interface (dsc_api_backend_ops_t): what an engine implements. The API layer
 *      hands it validated requests and receives text deltas and the end of each generation.
 *   2. Request parsing and response formatting (pure functions on JSON text; no I/O).
 *   3. The API server (dsc_api_server_t): routes of dsc_http bound to a backend and a metrics
 *      registry. `dsinfer serve` / `dsinfer-coordinator` create one on their libuv loop.
 *
 * Threading: everything in this header runs on the loop thread of the server. A backend whose
 * work happens on other threads must hop back to the loop (uv_async_t) before calling an event.
 */
#ifndef DSC_API_H
#define DSC_API_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dsc_http.h"
#include "dsc_metrics.h"
#include "dsi_status.h"

/* ---------------------------------------------------------------------------------------------
 * 1. Requests as the backend sees them
 * ------------------------------------------------------------------------------------------- */

typedef enum {
    DSC_API_KIND_CHAT = 0,   /* POST /v1/chat/completions: `messages` is set */
    DSC_API_KIND_COMPLETION, /* POST /v1/completions: `prompt` or `prompt_ids` is set */
} dsc_api_kind_t;

typedef enum {
    DSC_API_ROLE_SYSTEM = 0,
    DSC_API_ROLE_USER,
    DSC_API_ROLE_ASSISTANT,
    DSC_API_ROLE_TOOL,
} dsc_api_role_t;

#define DSC_API_MAX_STOP         4    /* OpenAI's limit on `stop` strings */
#define DSC_API_MAX_TOP_LOGPROBS 20   /* top_logprobs, and completions' logprobs */
#define DSC_API_MAX_LOGIT_BIAS   1024 /* logit_bias entries */
#define DSC_API_MAX_STOP_IDS     64   /* stop_token_ids */
#define DSC_API_MAX_UNKNOWN      16   /* fields outside the spec reported per request */
#define DSC_API_MAX_N            16   /* n and best_of: choices generated for one request */
#define DSC_API_MAX_PROMPTS      64   /* default of --max-prompts: prompts of one batch */

typedef enum {
    DSC_API_TOOL_CHOICE_NONE = 0, /* no tools, or "none": tool calls are not parsed */
    DSC_API_TOOL_CHOICE_AUTO,     /* the model decides (the default with tools) */
    DSC_API_TOOL_CHOICE_REQUIRED, /* at least one call */
    DSC_API_TOOL_CHOICE_FUNCTION, /* a call of tool_function */
} dsc_api_tool_choice_t;

/* One chat message. All strings are NUL-terminated, valid UTF-8 (checked by the parser). */
typedef struct {
    dsc_api_role_t role;
    const char *content;      /* never NULL; "" when absent or null; text parts concatenated */
    size_t content_len;       /* bytes of content (no NUL inside: "\u0000" is refused) */
    const char *tool_calls;   /* NULL, or the message's `tool_calls` array as compact JSON */
    const char *tool_call_id; /* NULL, or the id a `tool` message answers */
    const char *name;         /* NULL, or the optional participant name */
    const char *reasoning;    /* NULL, or an assistant message's `reasoning_content` */
} dsc_api_message_t;

/* One prompt of a completions request: text, or token ids (one of the two non-NULL). */
typedef struct dsc_api_prompt {
    const char *text; /* valid UTF-8, non-empty */
    size_t len;
    const int32_t *ids; /* [n_ids], n_ids >= 1, ids >= 0 (not yet checked against the vocabulary) */
    size_t n_ids;
} dsc_api_prompt_t;

/*
 * A validated request. Produced by dsc_api_request_parse; owned by the API layer. The backend may
 * read it only during submit(): it copies (or tokenizes) what it keeps.
 *
 * Sampling: temperature 0 means greedy (top_p/top_k are then irrelevant). top_k 0 = no top-k
 * limit. Without `seed` the backend picks its own (has_seed 0).
 *
 * Stop strings: the backend owns stop handling because it sees the token stream: it stops when
 * the generated text (answer part, not reasoning) contains one of stop[], does not emit the stop
 * string itself nor anything after it, and reports DSC_API_FINISH_STOP. End-of-sequence tokens
 * also give DSC_API_FINISH_STOP. Reaching max_tokens gives DSC_API_FINISH_LENGTH.
 */
typedef struct {
    dsc_api_kind_t kind;
    const char *model; /* the requested model id, one of models() */
    /* DSC_API_KIND_COMPLETION: the prompt as text, or as token ids given by the client (used as
     * they are: no BOS added; the backend checks them against the vocabulary). Exactly one of
     * prompt and prompt_ids is non-NULL for completions; both are NULL for chat. */
    const char *prompt;
    size_t prompt_len;         /* bytes of prompt */
    const int32_t *prompt_ids; /* [n_prompt_ids], n_prompt_ids >= 1, ids >= 0 */
    size_t n_prompt_ids;
    /* The prompts: [n_prompts], more than one for a batch (`prompt` an array of prompts);
     * prompt / prompt_ids above are prompts[0] as parsed. The API layer submits every choice of
     * every prompt with prompt / prompt_ids set to its prompt and prompt_index to its index in
     * the batch, -1 when `prompt` is not an array of prompts: a backend names a refused prompt
     * "prompt[prompt_index]", or "prompt" when it is -1. */
    const struct dsc_api_prompt *prompts;
    int n_prompts;
    int prompt_index;
    /* DSC_API_KIND_CHAT: the backend applies the chat template (dsc_chat.h) and tokenizes */
    const dsc_api_message_t *messages; /* [n_messages], n_messages >= 1; NULL for completions */
    size_t n_messages;
    const char *tools; /* NULL, or the `tools` array as compact JSON (chat) */
    /* NULL, or the grammar the output must match (docs/STRUCTURED_OUTPUT.md): from
     * response_format json_object / json_schema or guided_json / _regex / _choice / _grammar */
    const char *grammar;
    int thinking; /* chat_template_kwargs.thinking (DeepSeek-V3.1's template), default 0 */
    /* Tool calling and prefix continuation (dsc_api_tools.c; docs/API.md, "Tool calling"). */
    int tool_choice;           /* DSC_API_TOOL_CHOICE_* */
    const char *tool_function; /* tool_choice {"type":"function","function":{"name"}}: the name */
    int parallel_tool_calls;   /* default 1; 0: at most one call */
    int parse_tool_calls;      /* tools given and tool_choice not none: calls are parsed */
    int no_generation_prompt;  /* add_generation_prompt false (zeroed: the prompt is added) */
    int continue_final;        /* continue the last (assistant) message: prefix or
                                  continue_final_message */
    /* generation */
    int32_t max_tokens; /* 1..limit; the configured default when not given */
    float temperature;  /* [0, 2], default 1 */
    float top_p;        /* (0, 1], default 1 */
    int32_t top_k;      /* >= 0, default 0 (off) */
    uint64_t seed;      /* valid when has_seed */
    int has_seed;
    const char *stop[DSC_API_MAX_STOP]; /* non-empty UTF-8 strings, [n_stop] */
    int n_stop;
    /* response shape; the backend can ignore these */
    int stream;        /* Server-Sent Events */
    int include_usage; /* stream_options.include_usage */
    /* 1: the client gave max_tokens (or max_completion_tokens); 0: max_tokens is the default,
     * which the backend may lower to what the context has left after the prompt. */
    int max_tokens_given;
    /* 1 when the client gave temperature / top_p / top_k: otherwise the model's
     * generation_config.json may supply them. */
    int temperature_given, top_p_given, top_k_given;
    /* Sampling controls (docs/API.md, "Request parameters"); 0 = off unless said. */
    float presence_penalty, frequency_penalty; /* [-2, 2] */
    float repetition_penalty;                  /* (0, 100]; 0 = not given (1, off) */
    float min_p;                               /* [0, 1] */
    int32_t min_tokens;                        /* 0..max_tokens */
    int ignore_eos;
    const int32_t *bias_ids; /* logit_bias: [n_bias] token ids (not yet checked against the
                              * vocabulary: the backend does) with values in [-100, 100] */
    const float *bias_values;
    int n_bias;
    const int32_t *stop_ids; /* stop_token_ids: [n_stop_ids] */
    int n_stop_ids;
    int logprobs;     /* 1: return each token's logprob */
    int top_logprobs; /* 0..DSC_API_MAX_TOP_LOGPROBS, with logprobs */
    /* Choices (docs/API.md, "Several choices"): n in 1..DSC_API_MAX_N; best_of (completions)
     * in n..DSC_API_MAX_N, = n when not given: best_of choices are generated and the n with the
     * highest cumulative logprob returned; echo (completions): the prompt opens each text. */
    int n, best_of, echo;
    /* Set by the API layer on its copy of the request for each submit() of a request that
     * generates several choices: `choice` (0-based) samples with seed + choice when the request
     * is seeded, and `share_prefix_of`, when nonzero, is the handle of this request's choice 0:
     * the backend shares that choice's prompt KV cache (the prompt is computed once). */
    int choice;
    uint64_t share_prefix_of;
    /* Top-level fields outside the OpenAI spec and our extensions: accepted, and reported by
     * the server (log once per name, a metric); names point into the request. */
    const char *unknown[DSC_API_MAX_UNKNOWN];
    int n_unknown;
} dsc_api_request_t;

/* ---------------------------------------------------------------------------------------------
 * 2. The backend interface
 * ------------------------------------------------------------------------------------------- */

typedef enum {
    DSC_API_FINISH_STOP = 0,   /* end-of-sequence token or a stop string */
    DSC_API_FINISH_LENGTH,     /* max_tokens reached (or the context is full) */
    DSC_API_FINISH_TOOL_CALLS, /* the API layer's: the answer ended with tool calls */
} dsc_api_finish_t;

typedef struct {
    int64_t prompt_tokens;     /* tokens of the prompt after the chat template */
    int64_t completion_tokens; /* generated tokens, reasoning included */
} dsc_api_usage_t;

/*
 * Events of one generation, called by the backend on the loop thread, never from inside submit()
 * or cancel() (defer with a uv_async_t / uv_timer_t / uv_idle_t). Every successful submit() gets
 * exactly one terminal event, on_done or on_error, unless the API layer cancels it first; no
 * event follows the terminal one or a cancel().
 */
/* One token's log-probability as the backend reports it: the token's exact bytes (not
 * necessarily complete UTF-8) and log_softmax of the raw logits. */
typedef struct {
    const char *bytes;
    size_t len;
    float logprob;
} dsc_api_token_lp_t;

typedef struct {
    dsc_api_token_lp_t token;
    int n_top; /* the request's top_logprobs */
    dsc_api_token_lp_t top[DSC_API_MAX_TOP_LOGPROBS];
} dsc_api_logprob_t;

typedef struct {
    /*
     * A piece of generated text: `len` bytes of complete UTF-8 characters (the backend holds back
     * a partial character until it is complete), not NUL-terminated, valid only during the call.
     * R1-style models: text inside the thinking block comes with is_reasoning = 1 (without the
     * <think> / </think> markers themselves); the answer after it with is_reasoning = 0.
     * `n_tokens` is how many generated tokens this delta completes (0 when a token's bytes were
     * held back), so that the API can time tokens; the sum over a generation equals
     * usage.completion_tokens.
     */
    void (*on_text)(void *ctx, const char *utf8, size_t len, int is_reasoning, int32_t n_tokens);
    /* The generation ended normally. `usage` is valid only during the call. */
    void (*on_done)(void *ctx, dsc_api_finish_t finish, const dsc_api_usage_t *usage);
    /*
     * The generation failed after submit() accepted it (node lost and not recoverable, ...).
     * `message` is a human-readable cause, valid only during the call; it is shown to the client.
     */
    void (*on_error)(void *ctx, dsi_status_t status, const char *message);
    /*
     * A generated token's logprobs, for requests that ask for them: once per generated token, in
     * order, before the on_text that carries (part of) its text. Valid only during the call.
     */
    void (*on_logprobs)(void *ctx, const dsc_api_logprob_t *lp);
} dsc_api_events_t;

/* What health() reports. */
typedef enum {
    DSC_API_HEALTH_OK = 0,   /* serving */
    DSC_API_HEALTH_STARTING, /* loading weights / waiting for nodes: 503 */
    DSC_API_HEALTH_DEGRADED, /* serving, but e.g. re-planning after a node loss: 200 */
    DSC_API_HEALTH_STOPPING, /* draining for shutdown: 503 */
    /* The nodes lack memory for the model, nothing loads: 503 (refused requests get the code
     * plan_does_not_fit too). */
    DSC_API_HEALTH_PLAN_DOES_NOT_FIT,
} dsc_api_health_t;

/*
 * The engine behind the API. `self` is the backend object passed to every op. All ops are called
 * on the loop thread.
 */
typedef struct {
    /*
     * Accept a request or refuse it at once. On DSI_OK, *handle is a nonzero id for cancel(), and
     * the events will follow later with `ctx`. Refusals (no event follows), mapped to HTTP:
     *   DSI_ERR_CAPACITY   -> 429  queue full (admission limit)
     *   DSI_ERR_TOO_LARGE  -> 400  context_length_exceeded: prompt (+ max_tokens) over the context
     *   DSI_ERR_NOT_FOUND  -> 404  model_not_found
     *   DSI_ERR_BAD_REQUEST / DSI_ERR_INVALID_ARG / DSI_ERR_BAD_UTF8 / DSI_ERR_UNSUPPORTED -> 400
     *   DSI_ERR_CANCELLED  -> 503  shutting down
     *   peer/link errors, DSI_ERR_NOMEM -> 503; anything else -> 500
     * `message`, if the backend writes it (NUL-terminated, at most message_cap bytes), is the
     * text shown to the client for a refusal; otherwise the status's message is shown.
     */
    dsi_status_t (*submit)(void *self, const dsc_api_request_t *req, const dsc_api_events_t *events,
                           void *ctx, uint64_t *handle, char *message, size_t message_cap);
    /*
     * The client went away (or the server is closing): stop the generation and free its KV cache.
     * Called at most once per handle, only before its terminal event. No event may follow.
     */
    void (*cancel)(void *self, uint64_t handle);
    /*
     * The model ids served, for GET /v1/models and for checking `model`: writes up to `max`
     * static (backend-lifetime) strings to ids[] and returns how many there are in all.
     */
    size_t (*models)(void *self, const char **ids, size_t max);
    /* Current state for GET /health. */
    dsc_api_health_t (*health)(void *self);
    /*
     * Optional (NULL: none). Why health() is not OK, as one sentence with its numbers (what the
     * cluster waits for; which node lacks how much memory), written to buf (NUL-terminated, at
     * most cap bytes; "" when there is nothing to say). Returns the bytes of memory missing
     * (DSC_API_HEALTH_PLAN_DOES_NOT_FIT), else 0.
     */
    uint64_t (*health_detail)(void *self, char *buf, size_t cap);
    /* Optional (NULL: none). The nodes behind the API for GET /health's "nodes": a JSON array
     * as text, malloc'ed (the server frees it), or NULL. */
    char *(*health_nodes)(void *self);
    /*
     * Optional (NULL: POST /tokenize answers 501). The token ids submit() would give the model
     * for req (chat: through the template, with the assistant's opening unless
     * req->no_generation_prompt; completions: BOS first), malloc'ed in *ids. Refusals as
     * submit's, with `message`.
     */
    dsi_status_t (*tokenize)(void *self, const dsc_api_request_t *req, int32_t **ids, size_t *n_ids,
                             char *message, size_t message_cap);
    /*
     * Optional (NULL: POST /detokenize answers 501). The text of ids (special tokens written
     * out), malloc'ed in *text. DSI_ERR_BAD_REQUEST with `message` for an id outside the
     * vocabulary.
     */
    dsi_status_t (*detokenize)(void *self, const int32_t *ids, size_t n_ids, char **text,
                               size_t *len, char *message, size_t message_cap);
    /* Optional (NULL: 0). The context length (prompt + completion tokens) of a sequence. */
    int64_t (*max_model_len)(void *self);
} dsc_api_backend_ops_t;

typedef struct {
    const dsc_api_backend_ops_t *ops;
    void *self;
} dsc_api_backend_t;

/* ---------------------------------------------------------------------------------------------
 * 3. Parsing, validation, errors and response formatting (pure; no I/O)
 * ------------------------------------------------------------------------------------------- */

/* An error as OpenAI shapes it: {"error": {"message", "type", "param", "code"}}. */
typedef struct {
    int http_status;   /* 400, 401, 404, 405, 408, 413, 429, 500, 503 */
    const char *type;  /* static: "invalid_request_error", "authentication_error", ... */
    const char *code;  /* static or NULL (JSON null): "model_not_found", "invalid_type", ... */
    char param[64];    /* the offending parameter ("messages[2].content") or "" (JSON null) */
    char message[640]; /* human-readable; names the field and the expected type or range */
} dsc_api_error_t;

/* Limits applied while parsing. */
typedef struct {
    int32_t max_tokens_limit;   /* max_tokens above this -> 400 (e.g. the context length) */
    int32_t default_max_tokens; /* used when the request has no max_tokens */
    size_t max_messages;        /* more chat messages -> 400 */
    size_t max_prompts;         /* more prompts in one completions batch -> 400 */
} dsc_api_limits_t;

/* Defaults: max_tokens_limit 32768, default_max_tokens 4096, max_messages 4096, max_prompts
 * DSC_API_MAX_PROMPTS. */
void dsc_api_limits_default(dsc_api_limits_t *limits);

/*
 * Fill *err (status, type, code, param, printf-style message). Returns the HTTP status, so that
 * callers can `return dsc_api_error_set(...)`.
 */
int dsc_api_error_set(dsc_api_error_t *err, int http_status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* The error for a backend status (see submit()), with `message` or the status's own text. */
void dsc_api_error_from_status(dsc_api_error_t *err, dsi_status_t status, const char *message);
/* The error as JSON text, malloc'ed (caller frees), NUL-terminated; NULL when out of memory. */
char *dsc_api_error_json(const dsc_api_error_t *err, size_t *len_out);

/*
 * Check that [data, data + len) is valid UTF-8 (no overlongs, surrogates or values > U+10FFFF).
 * Returns 1 if valid; otherwise 0 and the offset of the first bad byte in *bad_offset.
 */
int dsc_api_utf8_valid(const char *data, size_t len, size_t *bad_offset);

typedef struct dsc_api_parsed dsc_api_parsed_t;

/*
 * Parse and validate a request body of `kind`. On success *out is a new object (free it with
 * dsc_api_parsed_destroy) whose request dsc_api_parsed_request() returns; on failure *err is
 * filled (400 for bad JSON/UTF-8/types/ranges/missing fields) and DSI_ERR_BAD_REQUEST (or
 * DSI_ERR_BAD_UTF8, DSI_ERR_NOMEM) returned. The model id is not checked here (the server knows
 * the backend's models).
 */
dsi_status_t dsc_api_request_parse(dsc_api_kind_t kind, const char *body, size_t len,
                                   const dsc_api_limits_t *limits, dsc_api_parsed_t **out,
                                   dsc_api_error_t *err);
const dsc_api_request_t *dsc_api_parsed_request(const dsc_api_parsed_t *parsed);
void dsc_api_parsed_destroy(dsc_api_parsed_t *parsed);

/* The identity of one response: its id ("chatcmpl-..."/"cmpl-...") and creation time. */
typedef struct {
    dsc_api_kind_t kind;
    char id[48];
    int64_t created; /* Unix seconds */
    const char *model;
} dsc_api_response_meta_t;

/* A fresh id from a process-wide counter and the start time; created = now. */
void dsc_api_response_meta_init(dsc_api_response_meta_t *meta, dsc_api_kind_t kind,
                                const char *model);

/*
 * The non-streaming response (chat.completion or text_completion) with the whole text, the
 * reasoning text (chat only; NULL or empty = no reasoning_content field), finish reason and
 * usage. malloc'ed JSON (caller frees); NULL when out of memory.
 */
char *dsc_api_response_json(const dsc_api_response_meta_t *meta, const char *text, size_t text_len,
                            const char *reasoning, size_t reasoning_len, dsc_api_finish_t finish,
                            const dsc_api_usage_t *usage, size_t *len_out);

/* What one streamed chunk carries. */
typedef struct {
    int role;         /* chat: 1 = the first chunk, delta.role = "assistant" */
    const char *text; /* delta.content / text, or NULL */
    size_t text_len;
    int is_reasoning; /* chat: the text goes to delta.reasoning_content */
    int has_finish;   /* finish_reason set (else JSON null) */
    dsc_api_finish_t finish;
    int index;                    /* the choice's index (n > 1) */
    const dsc_api_usage_t *usage; /* non-NULL: the usage-only chunk (choices: []) */
    const char *logprobs;         /* the choice's "logprobs" object as JSON text, or NULL */
    const char *tool_calls;       /* chat: delta.tool_calls as a JSON array text, or NULL */
} dsc_api_chunk_t;

/*
 * One SSE event "data: {...}\n\n" (chat.completion.chunk or text_completion), malloc'ed (caller
 * frees); NULL when out of memory. The stream ends with DSC_API_SSE_DONE.
 */
char *dsc_api_chunk_sse(const dsc_api_response_meta_t *meta, const dsc_api_chunk_t *chunk,
                        size_t *len_out);
#define DSC_API_SSE_DONE "data: [DONE]\n\n"

/* ---------------------------------------------------------------------------------------------
 * 4. The API server
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    dsc_http_config_t http;  /* listen address and HTTP limits (dsc_http_config_default) */
    dsc_api_limits_t limits; /* request limits (dsc_api_limits_default) */
    const char *api_key;     /* NULL/"" = no authentication; else /v1/ needs
                                "Authorization: Bearer <key>" (401 otherwise). Copied. */
} dsc_api_server_config_t;

void dsc_api_server_config_default(dsc_api_server_config_t *cfg);

/*
 * Apply option `name` (without the dashes) with `value` to cfg: listen, api-key, max-body,
 * max-header, request-timeout, idle-timeout, max-connections, max-tokens-limit,
 * default-max-tokens, max-prompts (their flags, defaults and help are in the programs' settings
 * table, util/dsi_settings_table.h). Sizes take K/M/G suffixes; times are milliseconds.
 * DSI_ERR_NOT_FOUND when `name` is none of them (nothing logged: the host may own it);
 * DSI_ERR_INVALID_ARG (logged, naming the option) for a bad value. `value` must outlive cfg
 * (api-key is not copied until dsc_api_server_create).
 */
dsi_status_t dsc_api_server_config_option(dsc_api_server_config_t *cfg, const char *name,
                                          const char *value);

typedef struct dsc_api_server dsc_api_server_t;

/*
 * Create the server on `loop` and start listening (cfg->http.host:port; port 0 picks a free
 * port, see dsc_api_server_port). Serves POST /v1/chat/completions, POST /v1/completions,
 * GET /v1/models, GET /v1/models/{id}, POST /tokenize, POST /detokenize, GET /health and
 * GET /metrics. The backend and the metrics registry are borrowed
 * and must outlive the server; the server registers its own metric families in `metrics`
 * (requests, tokens, latency histograms; see docs/API.md) and the backend may register others
 * (queue depth, per-node state, per-expert counts) in the same registry.
 */
dsi_status_t dsc_api_server_create(uv_loop_t *loop, const dsc_api_server_config_t *cfg,
                                   dsc_api_backend_t backend, dsc_metrics_t *metrics,
                                   dsc_api_server_t **out);
/* The bound TCP port. */
int dsc_api_server_port(const dsc_api_server_t *server);
/*
 * Stop listening, cancel every running generation (backend cancel()), close all connections,
 * and free the server; `done_cb(arg)` runs on the loop once all handles are closed (may be NULL).
 */
void dsc_api_server_destroy(dsc_api_server_t *server, void (*done_cb)(void *arg), void *arg);

#endif
