/*
 * dsc_api_generate.c - one completion request from body to last byte: parse, check the model,
 * submit to the backend, then turn the backend's events into one JSON response or a stream of
 * SSE chunks, and cancel the backend's work when the client goes away.
 *
 * A generation (dsc_api_gen_t) lives from a successful submit until its HTTP request is
 * finished. It has one choice (dsc_api_choice_t) per backend submit: n, or best_of when larger
 * (docs/API.md, "Several choices"), for each prompt of a batch (completions with an array of
 * prompts, "Prompts and batches"): prompt p's choices are ch[p * per .. p * per + per - 1] and
 * come back as indexes p * n .. p * n + n - 1, as OpenAI numbers them. A choice's `in_backend`
 * says whether the backend may still send it events. The response is written when every choice
 * is done; one failing fails them all.
 */
#include "dsc_api_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

/* One choice of a generation: what the backend's events for one submit() build. */
typedef struct {
    dsc_api_gen_t *g;
    int index;  /* the streamed index: prompt * n_out + sub (best_of, never streamed, ranks) */
    int prompt; /* the prompt's index in the batch (0 without one) */
    int sub;    /* 0..per - 1: the choice among its prompt's (choice 0 computes the prompt) */
    uint64_t handle;
    int in_backend; /* submitted, no terminal event and no cancel yet */
    int done;
    dsc_api_finish_t finish;
    int64_t prompt_tokens, completion_tokens;
    double cum_logprob;       /* sum of the tokens' logprobs (best_of ranks by it) */
    dsc_api_jbuf_t text;      /* non-streaming: the answer so far (raw UTF-8); echo: prompt first */
    dsc_api_jbuf_t reasoning; /* non-streaming: the reasoning so far */
    dsc_api_lp_t lp;          /* logprobs not yet sent (streaming) or all of them */
    dsc_api_jbuf_t lp_js;     /* scratch: the "logprobs" object */
    dsc_api_toolcalls_t *tools; /* NULL, or the answer's tool calls being parsed */
} dsc_api_choice_t;

struct dsc_api_gen {
    dsi_list_t link; /* in server->gens */
    dsc_api_server_t *server;
    dsc_http_req_t *req;
    const char *endpoint;
    dsc_api_parsed_t *parsed;
    dsc_api_response_meta_t meta; /* meta.model points into parsed */
    int active;                   /* counted in the active gauge */
    int stream, include_usage;
    dsc_api_jbuf_t chunk;              /* streaming: scratch for one SSE event, reused */
    uint64_t t_start, t_first, t_last; /* uv_hrtime() ns */
    int64_t n_tokens;                  /* over all choices */
    int logprobs;                      /* the request asked for logprobs */
    int n_out;                         /* choices returned per prompt (n) */
    int per;                           /* choices generated per prompt (best_of; n unless given) */
    int n_prompts;                     /* prompts of the batch (1 without one) */
    int n_choices;                     /* choices generated: n_prompts * per */
    int n_open;                        /* choices without a terminal event */
    char **echo;                       /* echo: each prompt's text (malloc'ed), else NULL */
    size_t *echo_len;
    dsc_api_choice_t ch[]; /* [n_choices] */
};

static double secs(uint64_t ns)
{
    return (double)ns * 1e-9;
}

static void gen_free(dsc_api_gen_t *g)
{
    dsi_list_remove(&g->link);
    dsc_api_parsed_destroy(g->parsed);
    dsc_api_jbuf_free(&g->chunk);
    for (int i = 0; i < g->n_choices; i++) {
        dsc_api_choice_t *c = &g->ch[i];
        dsc_api_jbuf_free(&c->text);
        dsc_api_jbuf_free(&c->reasoning);
        dsc_api_lp_free(&c->lp);
        dsc_api_jbuf_free(&c->lp_js);
        dsc_api_toolcalls_destroy(c->tools);
    }
    for (int i = 0; g->echo != NULL && i < g->n_prompts; i++)
        free(g->echo[i]);
    free(g->echo);
    free(g->echo_len);
    free(g);
}

/* The pending logprobs of a choice as a "logprobs" object (NULL when the request has none), then
 * cleared when streaming (each chunk carries its own tokens'). */
static const char *choice_take_logprobs(dsc_api_choice_t *c)
{
    dsc_api_gen_t *g = c->g;
    if (!g->logprobs || (g->stream && c->lp.n == 0))
        return NULL;
    dsc_api_jbuf_reset(&c->lp_js);
    dsc_api_lp_write(&c->lp_js, g->meta.kind, &c->lp);
    if (g->stream)
        dsc_api_lp_clear(&c->lp);
    return c->lp_js.failed ? NULL : c->lp_js.data;
}

static void on_logprobs(void *ctx, const dsc_api_logprob_t *lp)
{
    dsc_api_choice_t *c = ctx;
    c->cum_logprob += lp->token.logprob;
    if (c->g->logprobs)
        dsc_api_lp_add(&c->lp, c->g->meta.kind, lp);
}

static void gen_leave_backend(dsc_api_gen_t *g)
{
    if (g->active) {
        g->active = 0;
        dsc_metric_add(g->server->active, -1);
    }
}

/* Cancel every choice still in the backend, the last first: the choices sharing choice 0's
 * prompt leave the nodes before it does. */
static void gen_cancel_choices(dsc_api_gen_t *g)
{
    dsc_api_server_t *s = g->server;
    for (int i = g->n_choices - 1; i >= 0; i--) {
        if (g->ch[i].in_backend) {
            g->ch[i].in_backend = 0;
            s->backend.ops->cancel(s->backend.self, g->ch[i].handle);
        }
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

static void gen_text(dsc_api_choice_t *ch, const char *utf8, size_t len, int is_reasoning);

static void on_text(void *ctx, const char *utf8, size_t len, int is_reasoning, int32_t n_tokens)
{
    dsc_api_choice_t *ch = ctx;
    dsc_api_gen_t *g = ch->g;
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
    if (ch->tools != NULL && !is_reasoning) { /* the parser hands content back to gen_text */
        dsc_api_toolcalls_feed(ch->tools, utf8, len);
        return;
    }
    gen_text(ch, utf8, len, is_reasoning);
}

/* Text for the response: kept (whole) or sent as a chunk (stream). */
static void gen_text(dsc_api_choice_t *ch, const char *utf8, size_t len, int is_reasoning)
{
    dsc_api_gen_t *g = ch->g;
    if (!g->stream) {
        dsc_api_jbuf_put(is_reasoning ? &ch->reasoning : &ch->text, utf8, len);
        return;
    }
    dsc_api_chunk_t c = {.text = utf8, .text_len = len, .is_reasoning = is_reasoning};
    c.index = ch->index;
    c.logprobs = choice_take_logprobs(ch);
    gen_send_chunk(g, &c);
}

static void tools_content(void *choice, const char *text, size_t len)
{
    gen_text(choice, text, len, 0);
}

/* Streaming: one chunk with a delta.tool_calls. */
static void tools_delta(void *choice, const char *tool_calls)
{
    dsc_api_choice_t *ch = choice;
    dsc_api_chunk_t c = {.tool_calls = tool_calls};
    c.index = ch->index;
    c.logprobs = choice_take_logprobs(ch);
    gen_send_chunk(ch->g, &c);
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

/* The choices of prompt p in the order returned, into order[0..per): with best_of the n with
 * the highest cumulative logprob first (ties: lower index); otherwise as generated. */
static void rank_choices(const dsc_api_gen_t *g, int p, int *order)
{
    for (int i = 0; i < g->per; i++)
        order[i] = p * g->per + i;
    if (g->per == g->n_out)
        return;
    for (int i = 1; i < g->per; i++) { /* insertion sort: stable, at most 16 */
        int x = order[i], j = i;
        while (j > 0 && g->ch[order[j - 1]].cum_logprob < g->ch[x].cum_logprob) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
}

static void finish_whole(dsc_api_gen_t *g, const dsc_api_usage_t *usage)
{
    dsc_api_jbuf_t b = {0};
    int n_out = g->n_prompts * g->n_out;
    dsc_api_choice_out_t *out = malloc((size_t)n_out * sizeof(*out));
    int *order = malloc((size_t)g->n_choices * sizeof(*order)),
        failed = out == NULL || order == NULL;
    /* Prompt p's n returned choices at order[p * n ..]: each ranking also writes its per - n
     * others after them, which the next prompt's overwrites (order holds every choice). */
    for (int p = 0; p < g->n_prompts && !failed; p++)
        rank_choices(g, p, order + p * g->n_out);
    for (int i = 0; i < n_out && !failed; i++) {
        dsc_api_choice_t *c = &g->ch[order[i]];
        const char *lp = choice_take_logprobs(c);
        int tc_failed = 0;
        const char *calls = c->tools != NULL ? dsc_api_toolcalls_json(c->tools, &tc_failed) : NULL;
        failed |= c->text.failed || c->reasoning.failed || tc_failed ||
                  (g->logprobs && (lp == NULL || dsc_api_lp_failed(&c->lp)));
        out[i] = (dsc_api_choice_out_t){
            c->text.data, c->text.len, c->reasoning.data, c->reasoning.len, lp, calls, c->finish};
    }
    if (!failed)
        dsc_api_response_write_choices(&b, &g->meta, out, n_out, usage);
    if (b.failed || failed) {
        dsc_api_error_t err;
        dsc_api_error_set(&err, 503, "server_error", NULL, NULL, "out of memory");
        dsc_api_respond_error(g->server, g->req, g->endpoint, &err);
    } else {
        dsc_http_respond(g->req, 200, "application/json", NULL, b.data, b.len);
        dsc_api_count_request(g->server, g->endpoint, 200);
    }
    dsc_api_jbuf_free(&b);
    free(out);
    free(order);
}

static void on_done(void *ctx, dsc_api_finish_t finish, const dsc_api_usage_t *usage)
{
    dsc_api_choice_t *ch = ctx;
    dsc_api_gen_t *g = ch->g;
    ch->in_backend = 0;
    ch->done = 1;
    ch->finish = finish;
    ch->prompt_tokens = usage->prompt_tokens;
    ch->completion_tokens = usage->completion_tokens;
    g->n_open--;
    if (ch->tools != NULL) /* what the parser held back comes out now */
        finish = dsc_api_toolcalls_finish(ch->tools, finish);
    ch->finish = finish;
    if (g->stream) {
        dsc_api_chunk_t c = {.has_finish = 1, .finish = finish};
        c.index = ch->index;
        c.logprobs = choice_take_logprobs(ch);
        gen_send_chunk(g, &c);
    }
    if (g->n_open > 0)
        return;
    /* Every choice is done: usage counts each prompt once and every generated token. */
    dsc_api_usage_t total = {0, 0};
    for (int i = 0; i < g->n_choices; i++) {
        total.prompt_tokens += g->ch[i].sub == 0 ? g->ch[i].prompt_tokens : 0;
        total.completion_tokens += g->ch[i].completion_tokens;
    }
    gen_leave_backend(g);
    record_done(g, &total);
    if (g->stream) {
        if (g->include_usage) {
            dsc_api_chunk_t u = {.usage = &total};
            gen_send_chunk(g, &u);
        }
        dsc_http_stream_write(g->req, DSC_API_SSE_DONE, strlen(DSC_API_SSE_DONE));
        dsc_http_stream_end(g->req);
        dsc_api_count_request(g->server, g->endpoint, 200);
    } else {
        finish_whole(g, &total);
    }
    gen_free(g);
}

static void on_error(void *ctx, dsi_status_t status, const char *message)
{
    dsc_api_choice_t *ch = ctx;
    dsc_api_gen_t *g = ch->g;
    ch->in_backend = 0;
    gen_cancel_choices(g); /* the request fails as a whole */
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
    if (g->active) {
        DSI_DEBUG("api: client of %s left: cancelling", g->meta.id);
        gen_cancel_choices(g);
        gen_leave_backend(g);
    }
    dsc_api_count_request(g->server, g->endpoint, 499); /* nginx's "client closed request" */
    if (g->stream)
        dsc_http_stream_end(req);
    else
        dsc_http_respond(req, 499, "application/json", NULL, "", 0);
    gen_free(g);
}

int dsc_api_model_known(dsc_api_server_t *s, const char *model)
{
    const char *ids[64];
    size_t n = s->backend.ops->models(s->backend.self, ids, 64);
    for (size_t i = 0; i < n && i < 64; i++) {
        if (strcmp(ids[i], model) == 0)
            return 1;
    }
    return 0;
}

/* Hand the request to the backend, once per choice of each prompt (its choice 0 first: the
 * others share its prompt); on refusal cancel what went in and answer the error. Returns 1 when
 * submitted. */
static int gen_submit(dsc_api_gen_t *g)
{
    dsc_api_server_t *s = g->server;
    char message[sizeof(((dsc_api_error_t *)0)->message)] = "";
    const dsc_api_request_t *r = dsc_api_parsed_request(g->parsed);
    dsi_status_t st = DSI_OK;
    int i = 0;
    for (; i < g->n_choices && st == DSI_OK; i++) {
        dsc_api_choice_t *c = &g->ch[i];
        dsc_api_request_t one = *r;
        if (r->kind == DSC_API_KIND_COMPLETION)
            dsc_api_request_set_prompt(&one, c->prompt);
        one.choice = c->sub;
        one.share_prefix_of = c->sub > 0 ? g->ch[i - c->sub].handle : 0;
        if (g->per > g->n_out) { /* best_of ranks by the logprobs */
            one.logprobs = 1;
            one.top_logprobs = r->logprobs ? r->top_logprobs : 0;
        }
        st = s->backend.ops->submit(s->backend.self, &one, &gen_events, &g->ch[i], &g->ch[i].handle,
                                    message, sizeof(message));
        g->ch[i].in_backend = st == DSI_OK;
    }
    if (st == DSI_OK) {
        g->active = 1;
        g->n_open = g->n_choices;
        dsc_metric_add(s->active, 1);
        return 1;
    }
    gen_cancel_choices(g);
    dsc_api_error_t err;
    dsc_api_error_from_status(&err, st, message);
    if (st == DSI_ERR_TOO_LARGE && r->kind == DSC_API_KIND_COMPLETION && r->prompt_index >= 0)
        snprintf(err.param, sizeof(err.param), "prompt[%d]", g->ch[i - 1].prompt);
    else if (st == DSI_ERR_TOO_LARGE)
        snprintf(err.param, sizeof(err.param), "%s",
                 r->kind == DSC_API_KIND_CHAT ? "messages" : "prompt");
    dsc_api_error_name_param(&err, st, message);
    if (err.http_status == 503 &&
        s->backend.ops->health(s->backend.self) == DSC_API_HEALTH_PLAN_DOES_NOT_FIT)
        err.code = "plan_does_not_fit"; /* the reason it cannot serve, not a passing state */
    DSI_DEBUG("api: backend refused %s: %s (%s)", g->endpoint, err.message, dsi_status_name(st));
    dsc_api_respond_error(s, g->req, g->endpoint, &err);
    return 0;
}

/* echo: each prompt's text, the choices' texts opened with it when whole (no event has come
 * yet: they come from the loop, after this call). A prompt of token ids is echoed as the
 * backend's detokenize writes it. Returns 0, or the HTTP status with *err set. */
static int gen_echo(dsc_api_gen_t *g, dsc_api_error_t *err)
{
    dsc_api_server_t *s = g->server;
    const dsc_api_request_t *r = dsc_api_parsed_request(g->parsed);
    g->echo = calloc((size_t)g->n_prompts, sizeof(*g->echo));
    g->echo_len = calloc((size_t)g->n_prompts, sizeof(*g->echo_len));
    if (g->echo == NULL || g->echo_len == NULL)
        return dsc_api_error_set(err, 503, "server_error", NULL, NULL, "out of memory");
    for (int p = 0; p < g->n_prompts; p++) {
        const dsc_api_prompt_t *pr = &r->prompts[p];
        char message[sizeof(err->message)] = "";
        if (pr->text != NULL) {
            g->echo[p] = malloc(pr->len + 1);
            if (g->echo[p] == NULL)
                return dsc_api_error_set(err, 503, "server_error", NULL, NULL, "out of memory");
            memcpy(g->echo[p], pr->text, pr->len + 1);
            g->echo_len[p] = pr->len;
        } else if (s->backend.ops->detokenize == NULL) {
            return dsc_api_error_set(err, 400, "invalid_request_error", "unsupported_parameter",
                                     "echo",
                                     "Unsupported parameter: 'echo' with a prompt of token ids "
                                     "needs a backend that detokenizes.");
        } else {
            dsi_status_t st =
                s->backend.ops->detokenize(s->backend.self, pr->ids, pr->n_ids, &g->echo[p],
                                           &g->echo_len[p], message, sizeof(message));
            if (st != DSI_OK) {
                dsc_api_error_from_status(err, st, message);
                return err->http_status;
            }
        }
    }
    for (int i = 0; i < g->n_choices && !g->stream; i++)
        dsc_api_jbuf_put(&g->ch[i].text, g->echo[g->ch[i].prompt], g->echo_len[g->ch[i].prompt]);
    return 0;
}

static void gen_start_stream(dsc_api_gen_t *g)
{
    dsc_http_stream_begin(g->req, 200, "text/event-stream",
                          "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    for (int i = 0; i < g->n_choices; i++) {
        dsc_api_chunk_t c = {.index = g->ch[i].index};
        if (g->meta.kind == DSC_API_KIND_CHAT) {
            c.role = 1;
            gen_send_chunk(g, &c);
        } else if (g->echo != NULL) { /* the prompt first, as vLLM streams it */
            c.text = g->echo[g->ch[i].prompt];
            c.text_len = g->echo_len[g->ch[i].prompt];
            gen_send_chunk(g, &c);
        }
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
    if (!dsc_api_model_known(s, r->model)) {
        dsc_api_error_set(&err, 404, "invalid_request_error", "model_not_found", "model",
                          "The model '%.128s' does not exist (GET /v1/models lists them).",
                          r->model);
        dsc_api_respond_error(s, req, endpoint, &err);
        dsc_api_parsed_destroy(parsed);
        return;
    }
    int per = r->best_of > r->n ? r->best_of : r->n;
    if (per < 1)
        per = 1;
    int n_prompts = kind == DSC_API_KIND_COMPLETION && r->n_prompts > 1 ? r->n_prompts : 1;
    int n_choices = n_prompts * per;
    dsc_api_gen_t *g = calloc(1, sizeof(*g) + (size_t)n_choices * sizeof(dsc_api_choice_t));
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
    g->n_choices = n_choices;
    g->per = per;
    g->n_prompts = n_prompts;
    g->n_out = r->n > 1 ? r->n : 1;
    for (int i = 0; i < n_choices; i++) {
        g->ch[i].g = g;
        g->ch[i].prompt = i / per;
        g->ch[i].sub = i % per;
        g->ch[i].index = g->ch[i].prompt * g->n_out + g->ch[i].sub;
    }
    g->t_start = uv_hrtime();
    dsc_api_response_meta_init(&g->meta, kind, r->model);
    dsi_list_push_front(&s->gens, &g->link);
    static const dsc_api_toolcalls_sink_t tools_sink = {tools_content, tools_delta};
    for (int i = 0; i < n_choices && r->parse_tool_calls; i++) { /* a parser per choice */
        if ((g->ch[i].tools = dsc_api_toolcalls_create(r, g->stream, &tools_sink, &g->ch[i])) ==
            NULL) {
            dsc_api_error_set(&err, 503, "server_error", NULL, NULL, "out of memory");
            dsc_api_respond_error(s, req, endpoint, &err);
            gen_free(g);
            return;
        }
    }
    if (!gen_submit(g)) {
        gen_free(g);
        return;
    }
    if (r->echo && gen_echo(g, &err) != 0) {
        gen_cancel_choices(g);
        gen_leave_backend(g);
        dsc_api_respond_error(s, req, endpoint, &err);
        gen_free(g);
        return;
    }
    dsc_http_req_on_close(req, on_client_gone, g);
    if (g->stream)
        gen_start_stream(g);
}
