/*
 * dsc_api_server.c - the API server: routes, authentication, the small endpoints (/v1/models,
 * /health, /metrics), error answers and request metrics. Generations are in dsc_api_generate.c.
 */
#include "dsc_api_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dsi_log.h"

void dsc_api_server_config_default(dsc_api_server_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    dsc_http_config_default(&cfg->http);
    dsc_api_limits_default(&cfg->limits);
}

void dsc_api_count_request(dsc_api_server_t *s, const char *endpoint, int code)
{
    char code_text[16];
    snprintf(code_text, sizeof(code_text), "%d", code);
    const char *labels[2] = {endpoint, code_text};
    dsc_metric_series_t *series = dsc_metric_series(s->requests, labels);
    if (series != NULL)
        dsc_metric_add(series, 1);
}

void dsc_api_respond_error(dsc_api_server_t *s, dsc_http_req_t *req, const char *endpoint,
                           const dsc_api_error_t *err)
{
    const char *extra = NULL;
    if (err->http_status == 401)
        extra = "WWW-Authenticate: Bearer\r\n";
    else if (err->http_status == 429 || err->http_status == 503)
        extra = "Retry-After: 1\r\n";
    dsc_api_jbuf_t b = {0};
    dsc_api_error_write(&b, err);
    if (b.failed)
        dsc_http_respond(req, 503, "application/json", extra, "{}", 2);
    else
        dsc_http_respond(req, err->http_status, "application/json", extra, b.data, b.len);
    dsc_api_jbuf_free(&b);
    dsc_api_count_request(s, endpoint, err->http_status);
}

static void respond_json(dsc_api_server_t *s, dsc_http_req_t *req, const char *endpoint, int status,
                         dsc_api_jbuf_t *b)
{
    if (b->failed) {
        dsc_api_error_t err;
        dsc_api_error_set(&err, 503, "server_error", NULL, NULL, "out of memory");
        dsc_api_respond_error(s, req, endpoint, &err);
    } else {
        dsc_http_respond(req, status, "application/json", NULL, b->data, b->len);
        dsc_api_count_request(s, endpoint, status);
    }
    dsc_api_jbuf_free(b);
}

/* Compares without an early exit, so that timing does not reveal how much of a key matched. */
static int key_equal(const char *given, size_t given_len, const char *key)
{
    size_t key_len = strlen(key);
    unsigned diff = given_len != key_len;
    for (size_t i = 0; i < key_len; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)(i < given_len ? given[i] : 0);
    return diff == 0;
}

/* 1 when the request may go on; otherwise it has been answered with 401. */
static int authorized(dsc_api_server_t *s, dsc_http_req_t *req, const char *endpoint)
{
    if (s->api_key == NULL)
        return 1;
    const char *auth = dsc_http_req_header(req, "Authorization");
    if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *given = auth + 7;
        while (*given == ' ')
            given++;
        size_t len = strlen(given);
        while (len > 0 && given[len - 1] == ' ')
            len--;
        if (key_equal(given, len, s->api_key))
            return 1;
    }
    dsc_api_error_t err;
    dsc_api_error_set(&err, 401, "invalid_request_error", "invalid_api_key", NULL, "%s",
                      auth == NULL ? "Missing API key: send 'Authorization: Bearer <key>'."
                                   : "Incorrect API key provided.");
    dsc_api_respond_error(s, req, endpoint, &err);
    return 0;
}

static void on_chat(void *arg, dsc_http_req_t *req)
{
    dsc_api_server_t *s = arg;
    if (authorized(s, req, "/v1/chat/completions"))
        dsc_api_generate(s, req, DSC_API_KIND_CHAT);
}

static void on_completions(void *arg, dsc_http_req_t *req)
{
    dsc_api_server_t *s = arg;
    if (authorized(s, req, "/v1/completions"))
        dsc_api_generate(s, req, DSC_API_KIND_COMPLETION);
}

static void on_models(void *arg, dsc_http_req_t *req)
{
    dsc_api_server_t *s = arg;
    if (!authorized(s, req, "/v1/models"))
        return;
    const char *ids[64];
    size_t n = s->backend.ops->models(s->backend.self, ids, 64);
    dsc_api_jbuf_t b = {0};
    dsc_api_jbuf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n && i < 64; i++) {
        dsc_api_jbuf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
        dsc_api_jbuf_string(&b, ids[i], strlen(ids[i]));
        dsc_api_jbuf_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"dsinfer\"}",
                            (long long)s->started);
    }
    dsc_api_jbuf_puts(&b, "]}");
    respond_json(s, req, "/v1/models", 200, &b);
}

static void on_model_get(void *arg, dsc_http_req_t *req)
{
    dsc_api_server_t *s = arg;
    if (authorized(s, req, "/v1/models/*"))
        dsc_api_model_get(s, req);
}

static void on_tokenize(void *arg, dsc_http_req_t *req)
{
    dsc_api_server_t *s = arg;
    if (authorized(s, req, "/tokenize"))
        dsc_api_tokenize(s, req);
}

static void on_detokenize(void *arg, dsc_http_req_t *req)
{
    dsc_api_server_t *s = arg;
    if (authorized(s, req, "/detokenize"))
        dsc_api_detokenize(s, req);
}

static void on_health(void *arg, dsc_http_req_t *req)
{
    dsc_api_server_t *s = arg;
    static const char *const names[] = {"ok", "starting", "degraded", "stopping",
                                        "plan_does_not_fit"};
    dsc_api_health_t h = s->backend.ops->health(s->backend.self);
    if ((unsigned)h > DSC_API_HEALTH_PLAN_DOES_NOT_FIT)
        h = DSC_API_HEALTH_STARTING;
    int status = h == DSC_API_HEALTH_OK || h == DSC_API_HEALTH_DEGRADED ? 200 : 503;
    char why[sizeof(((dsc_api_error_t *)0)->message)] = "";
    uint64_t missing = 0;
    if (h != DSC_API_HEALTH_OK && s->backend.ops->health_detail != NULL)
        missing = s->backend.ops->health_detail(s->backend.self, why, sizeof(why));
    dsc_api_jbuf_t b = {0};
    dsc_api_jbuf_printf(&b, "{\"status\":\"%s\"", names[h]);
    if (status == 503 && why[0] != '\0') {
        /* The reason in the error shape of every other 503, so probes and clients read it the
         * same way; plan_does_not_fit also gives the bytes missing as a number. */
        dsc_api_error_t err;
        dsc_api_error_set(&err, 503, "server_error",
                          h == DSC_API_HEALTH_PLAN_DOES_NOT_FIT ? "plan_does_not_fit"
                                                                : "service_unavailable",
                          NULL, "%s", why);
        dsc_api_jbuf_t e = {0};
        dsc_api_error_write(&e, &err); /* {"error":{...}}: its member goes into this object */
        b.failed |= e.failed;
        if (!e.failed && e.len > 2) {
            dsc_api_jbuf_puts(&b, ",");
            dsc_api_jbuf_put(&b, e.data + 1, e.len - 2);
        }
        dsc_api_jbuf_free(&e);
        if (missing > 0)
            dsc_api_jbuf_printf(&b, ",\"missing_bytes\":%llu", (unsigned long long)missing);
    } else if (why[0] != '\0') {
        dsc_api_jbuf_puts(&b, ",\"message\":");
        dsc_api_jbuf_string(&b, why, strlen(why));
    }
    char *nodes =
        s->backend.ops->health_nodes ? s->backend.ops->health_nodes(s->backend.self) : NULL;
    if (nodes != NULL) {
        dsc_api_jbuf_puts(&b, ",\"nodes\":");
        dsc_api_jbuf_puts(&b, nodes);
        free(nodes);
    }
    dsc_api_jbuf_puts(&b, "}");
    respond_json(s, req, "/health", status, &b);
}

static void on_metrics(void *arg, dsc_http_req_t *req)
{
    dsc_api_server_t *s = arg;
    dsc_metric_set(s->connections, (double)dsc_http_server_connections(s->http));
    size_t len;
    char *text = dsc_metrics_render(s->metrics, &len);
    if (text == NULL) {
        dsc_api_error_t err;
        dsc_api_error_set(&err, 503, "server_error", NULL, NULL, "out of memory");
        dsc_api_respond_error(s, req, "/metrics", &err);
        return;
    }
    dsc_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
    free(text);
    dsc_api_count_request(s, "/metrics", 200);
}

static int register_metrics(dsc_api_server_t *s)
{
    static const double ttft_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1,     2.5,  5,     10,   20,  40,   80};
    static const double tpot_b[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                                    0.1,   0.15,   0.2,   0.3,  0.5,   1,    2.5};
    static const double dur_b[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320};
    static const char *const req_labels[] = {"endpoint", "code"};
    dsc_metrics_t *m = s->metrics;
    dsc_metric_family_t *f[8];
    s->requests =
        dsc_metrics_counter(m, "dsinfer_http_requests_total",
                            "HTTP requests answered, by endpoint and status code", req_labels, 2);
    f[0] = dsc_metrics_counter(m, "dsinfer_prompt_tokens_total",
                               "Prompt tokens of completed requests", NULL, 0);
    f[1] = dsc_metrics_counter(m, "dsinfer_generation_tokens_total",
                               "Tokens generated for completed requests", NULL, 0);
    f[2] = dsc_metrics_histogram(m, "dsinfer_time_to_first_token_seconds",
                                 "Time from request to the first generated token", NULL, 0, ttft_b,
                                 (int)(sizeof(ttft_b) / sizeof(ttft_b[0])));
    f[3] = dsc_metrics_histogram(m, "dsinfer_time_per_output_token_seconds",
                                 "Mean time per generated token after the first, per request", NULL,
                                 0, tpot_b, (int)(sizeof(tpot_b) / sizeof(tpot_b[0])));
    f[4] = dsc_metrics_histogram(m, "dsinfer_request_duration_seconds",
                                 "Time from request to the end of its completion", NULL, 0, dur_b,
                                 (int)(sizeof(dur_b) / sizeof(dur_b[0])));
    f[5] = dsc_metrics_gauge(m, "dsinfer_http_active_generations",
                             "Requests being generated by the backend", NULL, 0);
    f[6] = dsc_metrics_gauge(m, "dsinfer_http_connections", "Open HTTP connections", NULL, 0);
    static const char *const name_label[] = {"name"};
    s->unknown_params = dsc_metrics_counter(
        m, "dsinfer_api_unknown_parameters_total",
        "Request fields outside the OpenAI spec (accepted and ignored), by name", name_label, 1);
    if (s->requests == NULL || s->unknown_params == NULL)
        return 0;
    dsc_metric_series_t **out[7] = {&s->prompt_tokens, &s->generated_tokens, &s->ttft,
                                    &s->tpot,          &s->duration,         &s->active,
                                    &s->connections};
    for (int i = 0; i < 7; i++) {
        if (f[i] == NULL || (*out[i] = dsc_metric_series(f[i], NULL)) == NULL)
            return 0;
    }
    return 1;
}

/* Answers the HTTP server gave by itself count like the handlers' ("other": not an endpoint). */
static void on_http_answer(void *arg, const char *path, int status)
{
    dsc_api_count_request(arg, path[0] != '\0' ? path : "other", status);
}

static int add_routes(dsc_api_server_t *s)
{
    dsc_http_server_t *h = s->http;
    dsc_http_server_on_answer(h, on_http_answer, s);
    return dsc_http_server_route(h, "POST", "/v1/chat/completions", on_chat, s) == DSI_OK &&
           dsc_http_server_route(h, "POST", "/v1/completions", on_completions, s) == DSI_OK &&
           dsc_http_server_route(h, "GET", "/v1/models", on_models, s) == DSI_OK &&
           dsc_http_server_route(h, "GET", "/v1/models/*", on_model_get, s) == DSI_OK &&
           dsc_http_server_route(h, "POST", "/tokenize", on_tokenize, s) == DSI_OK &&
           dsc_http_server_route(h, "POST", "/detokenize", on_detokenize, s) == DSI_OK &&
           dsc_http_server_route(h, "GET", "/health", on_health, s) == DSI_OK &&
           dsc_http_server_route(h, "GET", "/metrics", on_metrics, s) == DSI_OK;
}

static void on_http_destroyed(void *arg)
{
    dsc_api_server_t *s = arg;
    void (*done_cb)(void *) = s->done_cb;
    void *done_arg = s->done_arg;
    free(s->api_key);
    free(s);
    if (done_cb != NULL)
        done_cb(done_arg);
}

dsi_status_t dsc_api_server_create(uv_loop_t *loop, const dsc_api_server_config_t *cfg,
                                   dsc_api_backend_t backend, dsc_metrics_t *metrics,
                                   dsc_api_server_t **out)
{
    dsi_status_t st = DSI_ERR_NOMEM;
    dsc_api_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        DSI_ERROR("api: out of memory");
        return DSI_ERR_NOMEM;
    }
    s->loop = loop;
    dsi_list_init(&s->gens);
    s->backend = backend;
    s->limits = cfg->limits;
    if (s->limits.default_max_tokens > s->limits.max_tokens_limit)
        s->limits.default_max_tokens = s->limits.max_tokens_limit; /* a default must be allowed */
    s->metrics = metrics;
    s->started = (int64_t)time(NULL);
    if (cfg->api_key != NULL && cfg->api_key[0] != '\0' &&
        (s->api_key = strdup(cfg->api_key)) == NULL)
        goto err_free;
    if (!register_metrics(s)) {
        DSI_ERROR("api: cannot register the API's metrics");
        st = DSI_ERR_INTERNAL;
        goto err_free;
    }
    if ((st = dsc_http_server_create(loop, &cfg->http, &s->http)) != DSI_OK)
        goto err_free;
    if (!add_routes(s)) {
        st = DSI_ERR_NOMEM;
        goto err_http;
    }
    if ((st = dsc_http_server_listen(s->http)) != DSI_OK)
        goto err_http;
    *out = s;
    return DSI_OK;
err_http:
    /* The listener handle may be open: the server frees itself once it is closed. */
    dsc_http_server_destroy(s->http, NULL, NULL);
err_free:
    free(s->api_key);
    free(s);
    return st;
}

int dsc_api_server_port(const dsc_api_server_t *s)
{
    return dsc_http_server_port(s->http);
}

void dsc_api_server_destroy(dsc_api_server_t *s, void (*done_cb)(void *arg), void *arg)
{
    if (s == NULL)
        return;
    s->done_cb = done_cb;
    s->done_arg = arg;
    /* Closing the connections calls each unfinished generation's close callback, which cancels
       it in the backend and frees it. */
    dsc_http_server_destroy(s->http, on_http_destroyed, s);
}
