/*
 * dsc_api_impl.h - internals of the API layer shared by its files: a JSON text writer into a
 * reusable growable buffer (so that streaming a token formats into memory the generation already
 * has, without an allocation per token), and the formatters that write into it. Not for other
 * modules: they use the malloc'ing wrappers of dsc_api.h.
 */
#ifndef DSC_API_IMPL_H
#define DSC_API_IMPL_H

#include <stddef.h>

#include "dsc_api.h"
#include "dsi_list.h"

typedef struct {
    char *data; /* NUL-terminated text, or NULL before the first write */
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
} dsc_api_jbuf_t;

void dsc_api_jbuf_put(dsc_api_jbuf_t *b, const char *s, size_t n);
void dsc_api_jbuf_puts(dsc_api_jbuf_t *b, const char *s);
void dsc_api_jbuf_printf(dsc_api_jbuf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* `s` (n bytes of valid UTF-8) as a quoted, escaped JSON string; NULL writes null. */
void dsc_api_jbuf_string(dsc_api_jbuf_t *b, const char *s, size_t n);
void dsc_api_jbuf_reset(dsc_api_jbuf_t *b); /* len = 0, keeps the memory, clears `failed` */
void dsc_api_jbuf_free(dsc_api_jbuf_t *b);
/* Hand the text over (caller frees) or NULL when an allocation failed; the buffer is emptied. */
char *dsc_api_jbuf_take(dsc_api_jbuf_t *b, size_t *len_out);

/*
 * dsc_api_params.c: the decision for every other top-level field (refusals 400
 * unsupported_parameter), the sampling controls and logprobs options into r, and the names of
 * fields outside the spec into r->unknown. *block (malloc'ed, the caller frees it even on error)
 * holds r's arrays. Returns 0 or the HTTP status with *err set.
 */
struct json_t;
int dsc_api_params_parse(struct json_t *root, dsc_api_kind_t kind, dsc_api_request_t *r,
                         void **block, dsc_api_error_t *err);

/* dsc_api_choices.c: n, best_of and echo into r (after the logprobs options and stream: echo
 * with logprobs, and best_of with stream, are refused). Returns 0 or the HTTP status. */
int dsc_api_choices_parse(struct json_t *root, dsc_api_kind_t kind, dsc_api_request_t *r,
                          dsc_api_error_t *err);

/* dsc_api_vllm.c: vLLM's extensions this server does not implement: 400 unsupported_parameter
 * unless at their no-op value (returns 0 or the HTTP status); dsc_api_vllm_known: the name is
 * one of them for `kind` (not reported as unknown). */
int dsc_api_vllm_check(struct json_t *root, dsc_api_kind_t kind, dsc_api_error_t *err);
int dsc_api_vllm_known(const char *name, dsc_api_kind_t kind);

/*
 * dsc_api_prompt.c: completions' `prompt` (a string, an array of token ids, or a batch of
 * either) into r->prompts, with r->prompt / prompt_ids set to the first. *block (malloc'ed, the
 * caller frees it even on error) holds the arrays. Returns 0 or the HTTP status with *err set.
 */
int dsc_api_prompt_parse(struct json_t *root, const dsc_api_limits_t *lim, dsc_api_request_t *r,
                         void **block, dsc_api_error_t *err);
/* r->prompt / prompt_ids (and prompt_index in a batch) set to prompts[i]. */
void dsc_api_request_set_prompt(dsc_api_request_t *r, int i);

/*
 * dsc_api_grammar.c: response_format and guided_* into r->grammar (grammar text, compiled once to
 * check it). *grammar gets the malloc'ed text the caller frees with the request (NULL: none).
 * Returns 0 or the HTTP status with *err set (400 naming the parameter and what was wrong).
 */
int dsc_api_grammar_parse(struct json_t *root, dsc_api_request_t *r, char **grammar,
                          dsc_api_error_t *err);

/* A choice's "logprobs" being built (dsc_api_logprobs.c): chat uses a; completions a..d for
 * tokens, token_logprobs, top_logprobs and text_offset. Zeroed = empty. */
typedef struct {
    dsc_api_jbuf_t a, b, c, d;
    int n;          /* entries since the last clear */
    int64_t offset; /* completions: text_offset of the next token (code points) */
} dsc_api_lp_t;

void dsc_api_lp_add(dsc_api_lp_t *lp, dsc_api_kind_t kind, const dsc_api_logprob_t *e);
/* Writes the "logprobs" object of the entries since the last clear. */
void dsc_api_lp_write(dsc_api_jbuf_t *out, dsc_api_kind_t kind, const dsc_api_lp_t *lp);
int dsc_api_lp_failed(const dsc_api_lp_t *lp);
void dsc_api_lp_clear(dsc_api_lp_t *lp); /* drops the entries, keeps offset and memory */
void dsc_api_lp_free(dsc_api_lp_t *lp);

/* The formatters behind dsc_api_error_json, dsc_api_response_json and dsc_api_chunk_sse. */
void dsc_api_error_write(dsc_api_jbuf_t *b, const dsc_api_error_t *err);
void dsc_api_response_write(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                            const char *text, size_t text_len, const char *reasoning,
                            size_t reasoning_len, dsc_api_finish_t finish,
                            const dsc_api_usage_t *usage);
/* The same with the choice's "logprobs" object as JSON text (NULL: null). */
void dsc_api_response_write_lp(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                               const char *text, size_t text_len, const char *reasoning,
                               size_t reasoning_len, const char *logprobs, dsc_api_finish_t finish,
                               const dsc_api_usage_t *usage);
/* One choice of a whole response (chat: text is the message content). */
typedef struct {
    const char *text;
    size_t text_len;
    const char *reasoning;
    size_t reasoning_len;
    const char *logprobs;   /* the "logprobs" object as JSON text, or NULL (null) */
    const char *tool_calls; /* chat: the message's "tool_calls" as JSON text, or NULL (none) */
    dsc_api_finish_t finish;
} dsc_api_choice_out_t;
/* The response with n choices, indexed 0..n-1 in the order given. */
void dsc_api_response_write_choices(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                                    const dsc_api_choice_out_t *choices, int n,
                                    const dsc_api_usage_t *usage);
/* With include_usage, every chunk but the usage one carries "usage":null (as OpenAI does). */
void dsc_api_chunk_write(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                         const dsc_api_chunk_t *chunk, int include_usage);

const char *dsc_api_finish_name(dsc_api_finish_t finish); /* "stop", "length", "tool_calls" */

/* The same as dsc_api_response_write_lp with the message's "tool_calls" (a JSON array text, or
 * NULL: none); with tool calls, an empty content is null (as OpenAI writes it). */
void dsc_api_response_write_tc(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                               const char *text, size_t text_len, const char *reasoning,
                               size_t reasoning_len, const char *tool_calls, const char *logprobs,
                               dsc_api_finish_t finish, const dsc_api_usage_t *usage);

/*
 * dsc_api_tools.c: tools, tool_choice, parallel_tool_calls, add_generation_prompt,
 * continue_final_message and the messages' `prefix` into r (after the messages are parsed).
 * Returns 0 or the HTTP status with *err set.
 */
int dsc_api_tools_parse(struct json_t *root, dsc_api_request_t *r, dsc_api_error_t *err);

/*
 * dsc_api_toolcalls.c: the tool calls of one generation's answer. The answer text goes through
 * the parser (dsc_toolcall.h); content comes back through `content`, and when streaming each
 * call's first delta and argument pieces through `delta` (a delta.tool_calls array text); for a
 * whole response the calls are kept for dsc_api_toolcalls_json.
 */
typedef struct dsc_api_toolcalls dsc_api_toolcalls_t;
typedef struct {
    void (*content)(void *gen, const char *text, size_t len);
    void (*delta)(void *gen, const char *tool_calls_json);
} dsc_api_toolcalls_sink_t;
/* NULL when out of memory (logged). */
dsc_api_toolcalls_t *dsc_api_toolcalls_create(const dsc_api_request_t *r, int stream,
                                              const dsc_api_toolcalls_sink_t *sink, void *gen);
void dsc_api_toolcalls_destroy(dsc_api_toolcalls_t *t);
/* Answer text; nonzero when out of memory. */
int dsc_api_toolcalls_feed(dsc_api_toolcalls_t *t, const char *text, size_t len);
/* The end of the answer: what was held back comes out; returns the finish reason to report
 * (tool_calls when calls were made and the generation stopped, else `finish`). */
dsc_api_finish_t dsc_api_toolcalls_finish(dsc_api_toolcalls_t *t, dsc_api_finish_t finish);
/* The whole response's "tool_calls" array text, or NULL when there were none; nonzero
 * *failed when out of memory. */
const char *dsc_api_toolcalls_json(dsc_api_toolcalls_t *t, int *failed);

typedef struct dsc_api_gen dsc_api_gen_t;

/* The API server (dsc_api_server.c: endpoints; dsc_api_generate.c: generations). */
struct dsc_api_server {
    uv_loop_t *loop;
    dsc_http_server_t *http;
    dsc_api_backend_t backend;
    dsc_api_limits_t limits;
    char *api_key;   /* NULL = no authentication */
    int64_t started; /* Unix seconds, the "created" of /v1/models */
    dsi_list_t gens; /* of dsc_api_gen_t: generations whose request is unfinished */
    void (*done_cb)(void *arg);
    void *done_arg;
    /* metrics: series looked up once here, updated per request */
    dsc_metrics_t *metrics;
    dsc_metric_family_t *requests;         /* {endpoint, code} */
    dsc_metric_series_t *prompt_tokens;    /* counter */
    dsc_metric_series_t *generated_tokens; /* counter */
    dsc_metric_series_t *ttft;             /* histogram, seconds */
    dsc_metric_series_t *tpot;             /* histogram, seconds per token after the first */
    dsc_metric_series_t *duration;         /* histogram, seconds from request to last byte */
    dsc_metric_series_t *active;           /* gauge: generations in the backend */
    dsc_metric_series_t *connections;      /* gauge: HTTP connections, set when rendered */
    dsc_metric_family_t *unknown_params;   /* counter {name}: fields outside the spec */
    int n_unknown_names;                   /* names with a series of their own */
};

/* Count a finished request in dsinfer_http_requests_total{endpoint, code}. */
void dsc_api_count_request(dsc_api_server_t *s, const char *endpoint, int code);
/* Answer `err` as OpenAI error JSON (with Retry-After on 429 and 503) and count it. */
void dsc_api_respond_error(dsc_api_server_t *s, dsc_http_req_t *req, const char *endpoint,
                           const dsc_api_error_t *err);
/* Handle POST /v1/chat/completions or /v1/completions (authentication already checked). */
void dsc_api_generate(dsc_api_server_t *s, dsc_http_req_t *req, dsc_api_kind_t kind);

/* dsc_api_tokenize.c: POST /tokenize, POST /detokenize and GET /v1/models/{id} (authentication
 * already checked). */
void dsc_api_tokenize(dsc_api_server_t *s, dsc_http_req_t *req);
void dsc_api_detokenize(dsc_api_server_t *s, dsc_http_req_t *req);
void dsc_api_model_get(dsc_api_server_t *s, dsc_http_req_t *req);
/* 1 when `model` is one of the backend's model ids. */
int dsc_api_model_known(dsc_api_server_t *s, const char *model);

/* dsc_api.c: a backend's refusal "Invalid value for 'NAME': ..." (a token id outside the
 * vocabulary, which only the backend can check) names the parameter of err (code
 * invalid_value); other refusals leave err as it is. */
void dsc_api_error_name_param(dsc_api_error_t *err, dsi_status_t status, const char *message);

/* dsc_api_fields.c: one field of a request object; absent or null = not given (*present 0,
 * *out kept); a wrong type or a value out of [lo, hi] sets err (400 naming the field) and
 * returns nonzero. */
int dsc_api_wrong_type(dsc_api_error_t *err, const char *param, const char *expected);
int dsc_api_get_integer(struct json_t *obj, const char *key, long long lo, long long hi,
                        long long *out, int *present, dsc_api_error_t *err);
int dsc_api_get_bool(struct json_t *obj, const char *key, int *out, dsc_api_error_t *err);

#endif
