/*
 * dsc_api_generate.c - one completion request from body to last byte: parse, check the model,
 * submit to the backend, then turn the backend's events into one JSON response or a stream of
 * SSE chunks, and cancel the backend's work when the client goes away.
 *
 * A generation (dsc_api_gen_t) lives from a successful submit until its HTTP request is
 * finished; `in_backend` says whether the backend may still send events to it.
 */
#include "dsc_api_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

struct dsc_api_gen {
    dsi_list_t link; /* in server->gens */
    dsc_api_server_t *server;
    dsc_http_req_t *req;
    const char *endpoint;
    dsc_api_parsed_t *parsed;
    dsc_api_response_meta_t meta; /* meta.model points into parsed */
    uint64_t handle;
    int in_backend; /* submitted, no terminal event and no cancel yet */
    int stream, include_usage;
    dsc_api_jbuf_t text;               /* non-streaming: the answer so far (raw UTF-8) */
    dsc_api_jbuf_t reasoning;          /* non-streaming: the reasoning so far */
    dsc_api_jbuf_t chunk;              /* streaming: scratch for one SSE event, reused */
    uint64_t t_start, t_first, t_last; /* uv_hrtime() ns */
    int64_t n_tokens;
    int logprobs;               /* the request asked for logprobs */
    dsc_api_lp_t lp;            /* logprobs not yet sent (streaming) or all of them */
    dsc_api_jbuf_t lp_js;       /* scratch: the "logprobs" object */
    dsc_api_toolcalls_t *tools; /* NULL, or the answer's tool calls being parsed */
};

static double secs(uint64_t ns)
{
    return (double)ns * 1e-9;
}

static void gen_free(dsc_api_gen_t *g)
{
    dsi_list_remove(&g->link);
    dsc_api_parsed_destroy(g->parsed);
    dsc_api_jbuf_free(&g->text);
    dsc_api_jbuf_free(&g->reasoning);
    dsc_api_jbuf_free(&g->chunk);
    dsc_api_lp_free(&g->lp);
    dsc_api_jbuf_free(&g->lp_js);
    dsc_api_toolcalls_destroy(g->tools);
    free(g);
}

/* The pending logprobs as a "logprobs" object (NULL when the request has none), then cleared
 * when streaming (each chunk carries its own tokens'). */
static const char *gen_take_logprobs(dsc_api_gen_t *g)
{
    if (!g->logprobs || (g->stream && g->lp.n == 0))
        return NULL;
    dsc_api_jbuf_reset(&g->lp_js);
    dsc_api_lp_write(&g->lp_js, g->meta.kind, &g->lp);
    if (g->stream)
        dsc_api_lp_clear(&g->lp);
    return g->lp_js.failed ? NULL : g->lp_js.data;
}

static void on_logprobs(void *ctx, const dsc_api_logprob_t *lp)
{
    dsc_api_gen_t *g = ctx;
    if (g->logprobs)
        dsc_api_lp_add(&g->lp, g->meta.kind, lp);
}

static void gen_leave_backend(dsc_api_gen_t *g)
{
    if (g->in_backend) {
        g->in_backend = 0;
        dsc_metric_add(g->server->active, -1);
    }
}

/* Write one chunk to the stream; a failed write is the client leaving, handled by on_close. */
static void gen_send_chunk(dsc_api_gen_t *g, const dsc_api_chunk_t *c)
{
    dsc_api_jbuf_reset(&g->chunk);
    dsc_api_chunk_write(&g->chunk, &g->meta, c, g->include_usage);
    if (!g->chunk.failed)
        dsc_http_stream_write(g->req, g->chunk.data, g->chunk.len);
}

static void gen_text(dsc_api_gen_t *g, const char *utf8, size_t len, int is_reasoning);

static void on_text(void *ctx, const char *utf8, size_t len, int is_reasoning, int32_t n_tokens)
{
    dsc_api_gen_t *g = ctx;
    uint64_t now = uv_hrtime();
    if (n_tokens > 0) {
        if (g->n_tokens == 0) {
            g->t_first = now;
            dsc_metric_observe(g->server->ttft, secs(now - g->t_start));
        }
        g->t_last = now;
        g->n_tokens += n_tokens;
    }
    if (g->meta.kind == DSC_API_KIND_COMPLETION)
        is_reasoning = 0; /* raw prompts have no thinking block: keep every byte as text */
    if (len == 0)
        return;
    if (g->tools != NULL && !is_reasoning) { /* the parser hands content back to gen_text */
        dsc_api_toolcalls_feed(g->tools, utf8, len);
        return;
    }
    gen_text(g, utf8, len, is_reasoning);
}

/* Text for the response: kept (whole) or sent as a chunk (stream). */
static void gen_text(dsc_api_gen_t *g, const char *utf8, size_t len, int is_reasoning)
{
    if (!g->stream) {
        dsc_api_jbuf_put(is_reasoning ? &g->reasoning : &g->text, utf8, len);
        return;
    }
    dsc_api_chunk_t c = {.text = utf8, .text_len = len, .is_reasoning = is_reasoning};
    c.logprobs = gen_take_logprobs(g);
    gen_send_chunk(g, &c);
}

static void tools_content(void *gen, const char *text, size_t len)
{
    gen_text(gen, text, len, 0);
}

/* Streaming: one chunk with a delta.tool_calls. */
static void tools_delta(void *gen, const char *tool_calls)
{
    dsc_api_gen_t *g = gen;
    dsc_api_chunk_t c = {.tool_calls = tool_calls};
    c.logprobs = gen_take_logprobs(g);
    gen_send_chunk(g, &c);
}

static void record_done(dsc_api_gen_t *g, const dsc_api_usage_t *usage)
{
    dsc_api_server_t *s = g->server;
    dsc_metric_add(s->prompt_tokens, (double)usage->prompt_tokens);
    dsc_metric_add(s->generated_tokens, (double)usage->completion_tokens);
    if (g->n_tokens >= 2)
        dsc_metric_observe(s->tpot, secs(g->t_last - g->t_first) / (double)(g->n_tokens - 1));
    dsc_metric_observe(s->duration, secs(uv_hrtime() - g->t_start));
}

static void finish_whole(dsc_api_gen_t *g, dsc_api_finish_t finish, const dsc_api_usage_t *usage)
{
    dsc_api_jbuf_t b = {0};
    const char *lp = gen_take_logprobs(g);
    int lp_failed = g->logprobs && (lp == NULL || dsc_api_lp_failed(&g->lp)), tc_failed = 0;
    const char *calls = g->tools != NULL ? dsc_api_toolcalls_json(g->tools, &tc_failed) : NULL;
    if (!g->text.failed && !g->reasoning.failed && !lp_failed && !tc_failed)
        dsc_api_response_write_tc(&b, &g->meta, g->text.data, g->text.len, g->reasoning.data,
                                  g->reasoning.len, calls, lp, finish, usage);
    if (b.failed || g->text.failed || g->reasoning.failed || lp_failed || tc_failed) {
        dsc_api_error_t err;
        dsc_api_error_set(&err, 503, "server_error", NULL, NULL, "out of memory");
        dsc_api_respond_error(g->server, g->req, g->endpoint, &err);
    } else {
        dsc_http_respond(g->req, 200, "application/json", NULL, b.data, b.len);
        dsc_api_count_request(g->server, g->endpoint, 200);
    }
    dsc_api_jbuf_free(&b);
}

static void on_done(void *ctx, dsc_api_finish_t finish, const dsc_api_usage_t *usage)
{
    dsc_api_gen_t *g = ctx;
    gen_leave_backend(g);
    record_done(g, usage);
    if (g->tools != NULL) /* what the parser held back comes out now */
        finish = dsc_api_toolcalls_finish(g->tools, finish);
    if (g->stream) {
        dsc_api_chunk_t c = {.has_finish = 1, .finish = finish};
        c.logprobs = gen_take_logprobs(g);
        gen_send_chunk(g, &c);
        if (g->include_usage) {
            dsc_api_chunk_t u = {.usage = usage};
            gen_send_chunk(g, &u);
        }
        dsc_http_stream_write(g->req, DSC_API_SSE_DONE, strlen(DSC_API_SSE_DONE));
        dsc_http_stream_end(g->req);
        dsc_api_count_request(g->server, g->endpoint, 200);
    } else {
        finish_whole(g, finish, usage);
    }
    gen_free(g);
}

static void on_error(void *ctx, dsi_status_t status, const char *message)
{
    dsc_api_gen_t *g = ctx;
    gen_leave_backend(g);
    dsc_api_error_t err;
    dsc_api_error_from_status(&err, status, message);
    DSI_WARN("api: %s %s failed in the backend: %s (%s)", g->endpoint, g->meta.id,
             message ? message : "", dsi_status_name(status));
    if (!g->stream) {
        dsc_api_respond_error(g->server, g->req, g->endpoint, &err);
    } else {
        /* The status line (200) is sent: the error travels as an event, as OpenAI does. */
        dsc_api_jbuf_reset(&g->chunk);
        dsc_api_jbuf_puts(&g->chunk, "data: ");
        dsc_api_error_write(&g->chunk, &err);
        dsc_api_jbuf_puts(&g->chunk, "\n\n" DSC_API_SSE_DONE);
        if (!g->chunk.failed)
            dsc_http_stream_write(g->req, g->chunk.data, g->chunk.len);
        dsc_http_stream_end(g->req);
        dsc_api_count_request(g->server, g->endpoint, err.http_status);
    }
    gen_free(g);
}

static const dsc_api_events_t gen_events = {
    .on_text = on_text,
    .on_done = on_done,
    .on_error = on_error,
    .on_logprobs = on_logprobs,
};

/* Fields outside the spec: accepted; each name logged once and counted (at most
 * DSC_API_UNKNOWN_NAMES names get their own series, the rest count as "other"). */
#define DSC_API_UNKNOWN_NAMES 64
static void count_unknown(dsc_api_server_t *s, const dsc_api_request_t *r, const char *endpoint)
{
    for (int i = 0; i < r->n_unknown && s->unknown_params != NULL; i++) {
        const char *name = r->unknown[i];
        char label[65];
        snprintf(label, sizeof(label), "%s", name);
        const char *values[1] = {label};
        dsc_metric_series_t *m = dsc_metric_series(s->unknown_params, values);
        if (m != NULL && dsc_metric_value(m) == 0) {
            if (s->n_unknown_names >= DSC_API_UNKNOWN_NAMES) {
                values[0] = "other";
                m = dsc_metric_series(s->unknown_params, values);
            } else {
                s->n_unknown_names++;
                DSI_WARN("api: %s: parameter '%s' is not an OpenAI parameter this server knows: "
                         "accepted and ignored (counted in "
                         "dsinfer_api_unknown_parameters_total; logged once)",
                         endpoint, label);
            }
        }
        if (m != NULL)
            dsc_metric_add(m, 1);
    }
}

/* The client went away (or the server is closing): cancel and finish the request. */
static void on_client_gone(void *arg, dsc_http_req_t *req)
{
    dsc_api_gen_t *g = arg;
    if (g->in_backend) {
        DSI_DEBUG("api: client of %s left: cancelling", g->meta.id);
        gen_leave_backend(g);
        g->server->backend.ops->cancel(g->server->backend.self, g->handle);
    }
    dsc_api_count_request(g->server, g->endpoint, 499); /* nginx's "client closed request" */
    if (g->stream)
        dsc_http_stream_end(req);
    else
        dsc_http_respond(req, 499, "application/json", NULL, "", 0);
    gen_free(g);
}

static int model_known(dsc_api_server_t *s, const char *model)
{
    const char *ids[64];
    size_t n = s->backend.ops->models(s->backend.self, ids, 64);
    for (size_t i = 0; i < n && i < 64; i++) {
        if (strcmp(ids[i], model) == 0)
            return 1;
    }
    return 0;
}

/* Hand the request to the backend; on refusal answer the error. Returns 1 when submitted. */
static int gen_submit(dsc_api_gen_t *g)
{
    dsc_api_server_t *s = g->server;
    char message[sizeof(((dsc_api_error_t *)0)->message)] = "";
    const dsc_api_request_t *r = dsc_api_parsed_request(g->parsed);
    dsi_status_t st = s->backend.ops->submit(s->backend.self, r, &gen_events, g, &g->handle,
                                             message, sizeof(message));
    if (st == DSI_OK) {
        g->in_backend = 1;
        dsc_metric_add(s->active, 1);
        return 1;
    }
    dsc_api_error_t err;
    dsc_api_error_from_status(&err, st, message);
    if (st == DSI_ERR_TOO_LARGE)
        snprintf(err.param, sizeof(err.param), "%s",
                 r->kind == DSC_API_KIND_CHAT ? "messages" : "prompt");
    /* A backend's "Invalid value for 'NAME': ..." names the parameter (a token id outside the
     * vocabulary, which only the backend can check). */
    const char *q = strncmp(message, "Invalid value for '", 19) == 0 ? message + 19 : NULL;
    if (st == DSI_ERR_BAD_REQUEST && q != NULL && strchr(q, '\'') != NULL) {
        snprintf(err.param, sizeof(err.param), "%.*s", (int)(strchr(q, '\'') - q), q);
        err.code = "invalid_value";
    }
    if (err.http_status == 503 &&
        s->backend.ops->health(s->backend.self) == DSC_API_HEALTH_PLAN_DOES_NOT_FIT)
        err.code = "plan_does_not_fit"; /* the reason it cannot serve, not a passing state */
    DSI_DEBUG("api: backend refused %s: %s (%s)", g->endpoint, err.message, dsi_status_name(st));
    dsc_api_respond_error(s, g->req, g->endpoint, &err);
    return 0;
}

static void gen_start_stream(dsc_api_gen_t *g)
{
    dsc_http_stream_begin(g->req, 200, "text/event-stream",
                          "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    if (g->meta.kind == DSC_API_KIND_CHAT) {
        dsc_api_chunk_t c = {.role = 1};
        gen_send_chunk(g, &c);
    }
}

void dsc_api_generate(dsc_api_server_t *s, dsc_http_req_t *req, dsc_api_kind_t kind)
{
    const char *endpoint = kind == DSC_API_KIND_CHAT ? "/v1/chat/completions" : "/v1/completions";
    dsc_api_error_t err;
    size_t len;
    const char *body = dsc_http_req_body(req, &len);
    dsc_api_parsed_t *parsed;
    if (dsc_api_request_parse(kind, body, len, &s->limits, &parsed, &err) != DSI_OK) {
        dsc_api_respond_error(s, req, endpoint, &err);
        return;
    }
    const dsc_api_request_t *r = dsc_api_parsed_request(parsed);
    count_unknown(s, r, endpoint);
    if (!model_known(s, r->model)) {
        dsc_api_error_set(&err, 404, "invalid_request_error", "model_not_found", "model",
                          "The model '%.128s' does not exist (GET /v1/models lists them).",
                          r->model);
        dsc_api_respond_error(s, req, endpoint, &err);
        dsc_api_parsed_destroy(parsed);
        return;
    }
    dsc_api_gen_t *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        dsc_api_error_set(&err, 503, "server_error", NULL, NULL, "out of memory");
        dsc_api_respond_error(s, req, endpoint, &err);
        dsc_api_parsed_destroy(parsed);
        return;
    }
    g->server = s;
    g->req = req;
    g->endpoint = endpoint;
    g->parsed = parsed;
    g->stream = r->stream;
    g->include_usage = r->include_usage;
    g->logprobs = r->logprobs;
    g->t_start = uv_hrtime();
    dsc_api_response_meta_init(&g->meta, kind, r->model);
    dsi_list_push_front(&s->gens, &g->link);
    static const dsc_api_toolcalls_sink_t tools_sink = {tools_content, tools_delta};
    if (r->parse_tool_calls &&
        (g->tools = dsc_api_toolcalls_create(r, g->stream, &tools_sink, g)) == NULL) {
        dsc_api_error_set(&err, 503, "server_error", NULL, NULL, "out of memory");
        dsc_api_respond_error(s, req, endpoint, &err);
        gen_free(g);
        return;
    }
    if (!gen_submit(g)) {
        gen_free(g);
        return;
    }
    dsc_http_req_on_close(req, on_client_gone, g);
    if (g->stream)
        gen_start_stream(g);
}
