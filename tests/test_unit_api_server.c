/*
 * test_unit_api_server.c - the OpenAI-compatible API over real HTTP on 127.0.0.1, with a
 * deterministic test backend: it echoes the prompt (or the last chat message) one word per token
 * on a uv timer (a prompt of token ids as the words t<id>, ids below TB_VOCAB); words starting with
 * '~' are "reasoning"; a word FAIL makes the generation fail after its first token. It honours
 * max_tokens, stop strings, a queue limit and a context limit, and counts cancellations.
 *
 * Without arguments: the test. With `--serve PORTFILE [--delay-ms N] [--api-key KEY]
 * [--max-body BYTES]`: a server for other tests (tests/test_cli_bench_serve.sh), until SIGTERM.
 */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <uv.h>

#include "dsc_api.h"
#include "dsi_log.h"
#include "dsi_test.h"
#include "test_unit_http_client.h"

/* ---- the test backend ------------------------------------------------------------------- */

typedef struct tb tb_t;

typedef struct tb_seq {
    uv_timer_t timer;
    tb_t *tb;
    struct tb_seq *prev, *next;
    uint64_t handle;
    const dsc_api_events_t *ev;
    void *ctx;
    char *text;   /* the words to echo, space-separated (owned) */
    char *cursor; /* the next word */
    int n_emitted;
    int max_tokens;
    int64_t prompt_tokens;
    char *stop[DSC_API_MAX_STOP];
    int n_stop;
    char *answer; /* answer text so far (not reasoning), for stop matching */
    size_t answer_len;
    size_t emitted; /* bytes of answer given to on_text */
} tb_seq_t;

struct tb {
    uv_loop_t *loop;
    int delay_ms;
    atomic_int queue_limit;
    int context_tokens;
    atomic_int stopping; /* refuse new work with DSI_ERR_CANCELLED; health "stopping" */
    atomic_int cancels, submits, active;
    uint64_t next_handle;
    tb_seq_t *seqs;
    dsc_metric_series_t *queue_depth; /* an engine-side metric, as a real backend has */
};

static int count_words(const char *s, size_t len)
{
    int n = 0, in_word = 0;
    for (size_t i = 0; i < len; i++) {
        int space = s[i] == ' ' || s[i] == '\n' || s[i] == '\t';
        n += !space && !in_word;
        in_word = !space;
    }
    return n;
}

static void seq_closed(uv_handle_t *h)
{
    tb_seq_t *q = h->data;
    free(q->text);
    free(q->answer);
    for (int i = 0; i < q->n_stop; i++)
        free(q->stop[i]);
    free(q);
}

static void seq_end(tb_seq_t *q)
{
    tb_t *tb = q->tb;
    if (q->prev != NULL)
        q->prev->next = q->next;
    else
        tb->seqs = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    atomic_fetch_sub(&tb->active, 1);
    dsc_metric_set(tb->queue_depth, atomic_load(&tb->active));
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, seq_closed);
}

static int emit_answer(tb_seq_t *q, const char *piece, size_t len, int flush);

static void seq_done(tb_seq_t *q, dsc_api_finish_t finish)
{
    if (q->emitted < q->answer_len)
        emit_answer(q, "", 0, 1); /* the held-back tail was no stop string after all */
    dsc_api_usage_t usage = {.prompt_tokens = q->prompt_tokens, .completion_tokens = q->n_emitted};
    const dsc_api_events_t *ev = q->ev;
    void *ctx = q->ctx;
    seq_end(q);
    ev->on_done(ctx, finish, &usage);
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of a stop string. */
static size_t stop_prefix_tail(const tb_seq_t *q, const char *s, size_t n)
{
    size_t best = 0;
    for (int i = 0; i < q->n_stop; i++) {
        size_t sl = strlen(q->stop[i]);
        for (size_t k = sl - 1; k > best; k--) {
            if (k <= n && memcmp(s + n - k, q->stop[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

/*
 * Add `piece` to the answer and emit what is safe: never a stop string nor anything after it,
 * and hold back a tail that may still become one (as a real backend must). 1 when stopped.
 */
static int emit_answer(tb_seq_t *q, const char *piece, size_t len, int flush)
{
    char *all = realloc(q->answer, q->answer_len + len + 1);
    if (all == NULL)
        return 0;
    memcpy(all + q->answer_len, piece, len);
    q->answer_len += len;
    all[q->answer_len] = '\0';
    q->answer = all;
    char *first = NULL;
    for (int i = 0; i < q->n_stop; i++) {
        char *hit = strstr(all, q->stop[i]);
        if (hit != NULL && (first == NULL || hit < first))
            first = hit;
    }
    size_t upto = first   ? (size_t)(first - all)
                  : flush ? q->answer_len
                          : q->answer_len - stop_prefix_tail(q, all, q->answer_len);
    q->ev->on_text(q->ctx, all + q->emitted, upto - q->emitted, 0, len > 0);
    q->emitted = upto;
    return first != NULL;
}

/* Stopped by a stop string: nothing more is emitted. */
static void seq_end_stopped(tb_seq_t *q)
{
    q->emitted = q->answer_len;
    seq_done(q, DSC_API_FINISH_STOP);
}

static void seq_tick(uv_timer_t *t)
{
    tb_seq_t *q = t->data;
    while (*q->cursor == ' ')
        q->cursor++;
    if (*q->cursor == '\0') {
        seq_done(q, DSC_API_FINISH_STOP);
        return;
    }
    if (q->n_emitted == q->max_tokens) {
        seq_done(q, DSC_API_FINISH_LENGTH);
        return;
    }
    if (q->tb->delay_ms == 0) /* a repeat of 0 means "once": re-arm for the next loop turn */
        uv_timer_start(t, seq_tick, 0, 0);
    char *word = q->cursor;
    size_t len = strcspn(word, " ");
    q->cursor = word + len;
    int first = q->n_emitted == 0;
    q->n_emitted++;
    if (!first && strncmp(word, "FAIL", len) == 0 && len == 4) {
        const dsc_api_events_t *ev = q->ev;
        void *ctx = q->ctx;
        seq_end(q);
        ev->on_error(ctx, DSI_ERR_PEER, "node 2 was lost");
        return;
    }
    char piece[256];
    int is_reasoning = word[0] == '~';
    int n = snprintf(piece, sizeof(piece), "%s%.*s", first ? "" : " ", (int)len - is_reasoning,
                     word + is_reasoning);
    if (is_reasoning) {
        q->ev->on_text(q->ctx, piece, (size_t)n, 1, 1);
    } else if (emit_answer(q, piece, (size_t)n, 0)) {
        seq_end_stopped(q);
    }
}

#define TB_VOCAB 1000

/* Token ids as the words "t<id>" (malloc'ed), each below TB_VOCAB; else the refusal a backend
 * writes, naming prompt[i] or prompt[b][i] in a batch (prompt_index >= 0). */
static dsi_status_t tb_words(const int32_t *ids, size_t n, int prompt_index, char **out,
                             char *message, size_t cap)
{
    *out = calloc(n + 1, 12);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= TB_VOCAB) {
            char name[32] = "prompt";
            if (prompt_index >= 0)
                snprintf(name, sizeof(name), "prompt[%d]", prompt_index);
            snprintf(message, cap, "Invalid value for '%s[%zu]': %d is outside the vocabulary",
                     name, i, ids[i]);
            free(*out);
            *out = NULL;
            return DSI_ERR_BAD_REQUEST;
        }
        sprintf(*out + strlen(*out), i ? " t%d" : "t%d", ids[i]);
    }
    return DSI_OK;
}

static dsi_status_t tb_detokenize(void *self, const int32_t *ids, size_t n_ids, char **text,
                                  size_t *len, char *message, size_t cap)
{
    (void)self;
    dsi_status_t st = tb_words(ids, n_ids, -1, text, message, cap);
    *len = st == DSI_OK ? strlen(*text) : 0;
    return st;
}

static dsi_status_t tb_submit(void *self, const dsc_api_request_t *req,
                              const dsc_api_events_t *events, void *ctx, uint64_t *handle,
                              char *message, size_t cap)
{
    tb_t *tb = self;
    atomic_fetch_add(&tb->submits, 1);
    if (atomic_load(&tb->stopping)) {
        snprintf(message, cap, "the server is shutting down");
        return DSI_ERR_CANCELLED;
    }
    if (atomic_load(&tb->active) >= atomic_load(&tb->queue_limit)) {
        snprintf(message, cap, "the queue is full (%d requests)", atomic_load(&tb->active));
        return DSI_ERR_CAPACITY;
    }
    const char *echo = req->prompt;
    size_t echo_len = req->prompt_len;
    int prompt_tokens = req->prompt ? count_words(req->prompt, req->prompt_len) : 0;
    char *id_words = NULL; /* a prompt of token ids: its words */
    if (req->prompt_ids != NULL) {
        if (tb_words(req->prompt_ids, req->n_prompt_ids, req->prompt_index, &id_words, message,
                     cap) != DSI_OK)
            return DSI_ERR_BAD_REQUEST;
        echo = id_words;
        echo_len = strlen(id_words);
        prompt_tokens = (int)req->n_prompt_ids;
    }
    for (size_t i = 0; i < req->n_messages; i++) {
        prompt_tokens += count_words(req->messages[i].content, req->messages[i].content_len);
        echo = req->messages[i].content;
        echo_len = req->messages[i].content_len;
    }
    if (prompt_tokens > tb->context_tokens) {
        snprintf(message, cap, "the prompt has %d tokens; the context holds %d", prompt_tokens,
                 tb->context_tokens);
        free(id_words);
        return DSI_ERR_TOO_LARGE;
    }
    tb_seq_t *q = calloc(1, sizeof(*q));
    q->tb = tb;
    q->ev = events;
    q->ctx = ctx;
    q->text = strndup(echo, echo_len);
    free(id_words);
    for (char *p = q->text; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    q->cursor = q->text;
    q->max_tokens = req->max_tokens;
    q->prompt_tokens = prompt_tokens;
    for (int i = 0; i < req->n_stop; i++)
        q->stop[q->n_stop++] = strdup(req->stop[i]);
    q->handle = ++tb->next_handle;
    q->next = tb->seqs;
    if (tb->seqs != NULL)
        tb->seqs->prev = q;
    tb->seqs = q;
    uv_timer_init(tb->loop, &q->timer);
    q->timer.data = q;
    /* Events never come from inside submit: the first one is a timer tick away. */
    uv_timer_start(&q->timer, seq_tick, (uint64_t)tb->delay_ms, (uint64_t)tb->delay_ms);
    atomic_fetch_add(&tb->active, 1);
    dsc_metric_set(tb->queue_depth, atomic_load(&tb->active));
    *handle = q->handle;
    return DSI_OK;
}

static void tb_cancel(void *self, uint64_t handle)
{
    tb_t *tb = self;
    for (tb_seq_t *q = tb->seqs; q != NULL; q = q->next) {
        if (q->handle == handle) {
            atomic_fetch_add(&tb->cancels, 1);
            seq_end(q);
            return;
        }
    }
    fprintf(stderr, "cancel of unknown handle %llu\n", (unsigned long long)handle);
    abort(); /* our own invariant: the API never cancels a finished generation */
}

static size_t tb_models(void *self, const char **ids, size_t max)
{
    (void)self;
    if (max > 0)
        ids[0] = "test-model";
    if (max > 1)
        ids[1] = "test-model-r1";
    return 2;
}

static dsc_api_health_t tb_health(void *self)
{
    tb_t *tb = self;
    return atomic_load(&tb->stopping) ? DSC_API_HEALTH_STOPPING : DSC_API_HEALTH_OK;
}

static const dsc_api_backend_ops_t tb_ops = {
    .submit = tb_submit,
    .cancel = tb_cancel,
    .models = tb_models,
    .health = tb_health,
    .detokenize = tb_detokenize,
};

static void tb_init(tb_t *tb, uv_loop_t *loop, dsc_metrics_t *metrics, int delay_ms)
{
    memset(tb, 0, sizeof(*tb));
    tb->loop = loop;
    tb->delay_ms = delay_ms;
    atomic_store(&tb->queue_limit, 64);
    tb->context_tokens = 1000;
    dsc_metric_family_t *f =
        dsc_metrics_gauge(metrics, "dsinfer_queue_depth", "Requests waiting or running", NULL, 0);
    tb->queue_depth = dsc_metric_series(f, NULL);
}

/* ---- the server under test, on its own thread -------------------------------------------- */

typedef struct {
    uv_loop_t loop;
    uv_async_t stop;
    uv_signal_t sigterm, sigint;
    tb_t tb;
    dsc_metrics_t *metrics, *metrics_auth;
    dsc_api_server_t *api, *api_auth; /* the second one demands an API key */
    int port, port_auth;
    pthread_t thread;
} srv_t;

static void srv_shutdown(srv_t *srv)
{
    dsc_api_server_destroy(srv->api, NULL, NULL);
    if (srv->api_auth != NULL)
        dsc_api_server_destroy(srv->api_auth, NULL, NULL);
    uv_close((uv_handle_t *)&srv->stop, NULL);
    if (uv_is_active((uv_handle_t *)&srv->sigterm)) {
        uv_close((uv_handle_t *)&srv->sigterm, NULL);
        uv_close((uv_handle_t *)&srv->sigint, NULL);
    }
}

static void on_stop(uv_async_t *a)
{
    srv_shutdown(a->data);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    srv_shutdown(s->data);
}

static int srv_init(srv_t *srv, int delay_ms, const char *api_key, size_t max_body, int with_auth)
{
    memset(srv, 0, sizeof(*srv));
    uv_loop_init(&srv->loop);
    uv_async_init(&srv->loop, &srv->stop, on_stop);
    srv->stop.data = srv;
    dsc_metrics_create(&srv->metrics);
    tb_init(&srv->tb, &srv->loop, srv->metrics, delay_ms);
    dsc_api_server_config_t cfg;
    dsc_api_server_config_default(&cfg);
    cfg.http.port = 0;
    cfg.http.max_body_bytes = max_body;
    cfg.limits.max_tokens_limit = 500;
    cfg.limits.default_max_tokens = 100;
    cfg.api_key = api_key;
    dsc_api_backend_t backend = {.ops = &tb_ops, .self = &srv->tb};
    if (dsc_api_server_create(&srv->loop, &cfg, backend, srv->metrics, &srv->api) != DSI_OK)
        return -1;
    srv->port = dsc_api_server_port(srv->api);
    if (with_auth) {
        cfg.api_key = "sekret-key";
        dsc_metrics_create(&srv->metrics_auth);
        if (dsc_api_server_create(&srv->loop, &cfg, backend, srv->metrics_auth, &srv->api_auth) !=
            DSI_OK)
            return -1;
        srv->port_auth = dsc_api_server_port(srv->api_auth);
    }
    return 0;
}

static void srv_cleanup(srv_t *srv)
{
    DSI_CHECK_INT_EQ(uv_loop_close(&srv->loop), 0); /* every handle was closed */
    dsc_metrics_destroy(srv->metrics);
    dsc_metrics_destroy(srv->metrics_auth);
}

static void *srv_main(void *arg)
{
    srv_t *srv = arg;
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- client-side helpers ----------------------------------------------------------------- */

static int post(int port, const char *path, const char *body, const char *headers, tc_response_t *r)
{
    return tc_request(port, "POST", path, headers, body, strlen(body), r);
}

static json_t *body_json(const tc_response_t *r)
{
    json_error_t jerr;
    return r->body ? json_loads(r->body, 0, &jerr) : NULL;
}

static const char *jpath(json_t *v, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save;
    for (char *tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(tok)) : json_object_get(v, tok);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long jpath_int(json_t *v, const char *a, const char *b)
{
    return json_integer_value(json_object_get(json_object_get(v, a), b));
}

typedef struct {
    char text[8192], reasoning[8192];
    int events, chunks, done_last, role_first, bad;
    char finish[16], error_code[64];
    long long usage_prompt, usage_completion;
    int has_usage;
} sse_t;

/* Reassemble a streamed response from its SSE events. */
static void sse_parse(const char *body, sse_t *s)
{
    memset(s, 0, sizeof(*s));
    const char *p = body;
    while (p != NULL && *p != '\0') {
        const char *end = strstr(p, "\n\n");
        if (end == NULL || strncmp(p, "data: ", 6) != 0) {
            s->bad++;
            break;
        }
        s->events++;
        size_t n = (size_t)(end - p - 6);
        s->done_last = n == 6 && strncmp(p + 6, "[DONE]", 6) == 0;
        if (!s->done_last) {
            json_error_t jerr;
            json_t *v = json_loadb(p + 6, n, 0, &jerr);
            if (v == NULL) {
                s->bad++;
                break;
            }
            const char *c;
            if (json_object_get(v, "error") != NULL) {
                snprintf(s->error_code, sizeof(s->error_code), "%s",
                         jpath(v, "error.code") ? jpath(v, "error.code") : "null");
            } else if (json_array_size(json_object_get(v, "choices")) == 0) {
                s->has_usage = 1;
                s->usage_prompt = jpath_int(v, "usage", "prompt_tokens");
                s->usage_completion = jpath_int(v, "usage", "completion_tokens");
            } else {
                s->chunks++;
                if (s->chunks == 1 && jpath(v, "choices.0.delta.role") != NULL)
                    s->role_first = 1;
                if ((c = jpath(v, "choices.0.delta.content")) || (c = jpath(v, "choices.0.text")))
                    strncat(s->text, c, sizeof(s->text) - strlen(s->text) - 1);
                if ((c = jpath(v, "choices.0.delta.reasoning_content")))
                    strncat(s->reasoning, c, sizeof(s->reasoning) - strlen(s->reasoning) - 1);
                if ((c = jpath(v, "choices.0.finish_reason")))
                    snprintf(s->finish, sizeof(s->finish), "%s", c);
            }
            json_decref(v);
        }
        p = end + 2;
    }
}

static int wait_atomic(atomic_int *v, int want, int timeout_ms)
{
    for (int i = 0; i < timeout_ms && atomic_load(v) != want; i++)
        usleep(1000);
    return atomic_load(v);
}

/* ---- the tests --------------------------------------------------------------------------- */

static void test_small_endpoints(srv_t *srv)
{
    tc_response_t r;
    DSI_CHECK_INT_EQ(tc_request(srv->port, "GET", "/health", NULL, NULL, 0, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    DSI_CHECK_STR_EQ(r.body, "{\"status\":\"ok\"}");
    tc_response_free(&r);
    tc_request(srv->port, "GET", "/v1/models", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 200);
    json_t *v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "object"), "list");
    DSI_CHECK_STR_EQ(jpath(v, "data.0.id"), "test-model");
    DSI_CHECK_STR_EQ(jpath(v, "data.1.object"), "model");
    json_decref(v);
    tc_response_free(&r);
    tc_request(srv->port, "GET", "/v1/chat/completions", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 405);
    tc_response_free(&r);
}

static void test_completion(srv_t *srv)
{
    tc_response_t r;
    const char *body = "{\"model\":\"test-model\",\"prompt\":\"the quick brown fox\"}";
    DSI_CHECK_INT_EQ(post(srv->port, "/v1/completions", body, NULL, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    DSI_CHECK_STR_EQ(r.content_type, "application/json");
    json_t *v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "object"), "text_completion");
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.text"), "the quick brown fox");
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.finish_reason"), "stop");
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "prompt_tokens"), 4);
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "completion_tokens"), 4);
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "total_tokens"), 8);
    json_decref(v);
    tc_response_free(&r);

    /* Streaming gives the same text, chunk by chunk, then usage, then [DONE]. */
    body = "{\"model\":\"test-model\",\"prompt\":\"the quick brown fox\",\"stream\":true,"
           "\"stream_options\":{\"include_usage\":true}}";
    DSI_CHECK_INT_EQ(post(srv->port, "/v1/completions", body, NULL, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    DSI_CHECK_STR_EQ(r.content_type, "text/event-stream");
    sse_t s;
    sse_parse(r.body, &s);
    DSI_CHECK_INT_EQ(s.bad, 0);
    DSI_CHECK_STR_EQ(s.text, "the quick brown fox");
    DSI_CHECK_STR_EQ(s.finish, "stop");
    DSI_CHECK_INT_EQ(s.chunks, 5); /* 4 words + the finish chunk */
    DSI_CHECK_INT_EQ(s.has_usage, 1);
    DSI_CHECK_INT_EQ(s.usage_completion, 4);
    DSI_CHECK_INT_EQ(s.done_last, 1);
    DSI_CHECK(r.chunks >= 3); /* it arrived in pieces */
    tc_response_free(&r);

    /* max_tokens and stop. */
    body = "{\"model\":\"test-model\",\"prompt\":\"one two three four five\",\"max_tokens\":2}";
    post(srv->port, "/v1/completions", body, NULL, &r);
    v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.text"), "one two");
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.finish_reason"), "length");
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "completion_tokens"), 2);
    json_decref(v);
    tc_response_free(&r);
    body = "{\"model\":\"test-model\",\"prompt\":\"one two three four five\",\"stop\":[\"x\","
           "\"ee f\"],\"stream\":true}";
    post(srv->port, "/v1/completions", body, NULL, &r);
    sse_parse(r.body, &s);
    DSI_CHECK_STR_EQ(s.text, "one two thr");
    DSI_CHECK_STR_EQ(s.finish, "stop");
    DSI_CHECK_INT_EQ(s.has_usage, 0);
    DSI_CHECK_INT_EQ(s.done_last, 1);
    tc_response_free(&r);
}

/* n, best_of and echo over a backend without logprobs; the small endpoints it lacks. */
static void test_choices(srv_t *srv)
{
    tc_response_t r;
    const char *body = "{\"model\":\"test-model\",\"prompt\":\"a b c\",\"n\":3}";
    DSI_CHECK_INT_EQ(post(srv->port, "/v1/completions", body, NULL, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    json_t *v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.text"), "a b c");
    DSI_CHECK_STR_EQ(jpath(v, "choices.2.text"), "a b c");
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "prompt_tokens"), 3);
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "completion_tokens"), 9);
    json_decref(v);
    tc_response_free(&r);
    body = "{\"model\":\"test-model\",\"prompt\":\"a b\",\"best_of\":3,\"echo\":true}";
    post(srv->port, "/v1/completions", body, NULL, &r);
    v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.text"), "a ba b");
    DSI_CHECK(jpath(v, "choices.1.text") == NULL);
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "completion_tokens"), 6);
    json_decref(v);
    tc_response_free(&r);
    body = "{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"x y\"}],"
           "\"n\":2,\"stream\":true}";
    post(srv->port, "/v1/chat/completions", body, NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 200);
    DSI_CHECK(strstr(r.body, "\"index\":1") != NULL);
    DSI_CHECK(strstr(r.body, "[DONE]") != NULL);
    tc_response_free(&r);
    /* The test backend has no tokenizer: 501; models by id. */
    post(srv->port, "/tokenize", "{\"model\":\"test-model\",\"prompt\":\"x\"}", NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 501);
    tc_response_free(&r);
    tc_request(srv->port, "GET", "/v1/models/test-model", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 200);
    v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "id"), "test-model");
    json_decref(v);
    tc_response_free(&r);
    tc_request(srv->port, "GET", "/v1/models/nope/x", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 404);
    v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "error.code"), "model_not_found");
    json_decref(v);
    tc_response_free(&r);
    tc_request(srv->port, "POST", "/v1/models/test-model", NULL, "{}", 2, &r);
    DSI_CHECK_INT_EQ(r.status, 405);
    tc_response_free(&r);
}

/* A streamed response's texts by choice index (at most 8) and its finish reasons counted. */
static void sse_by_index(const char *body, char text[8][64], int *finishes)
{
    memset(text, 0, 8 * 64);
    *finishes = 0;
    for (const char *p = strstr(body, "data: {"); p != NULL; p = strstr(p + 1, "data: {")) {
        json_error_t jerr;
        json_t *v = json_loadb(p + 6, strcspn(p + 6, "\n"), 0, &jerr);
        json_t *c = json_array_get(json_object_get(v, "choices"), 0);
        long long i = json_integer_value(json_object_get(c, "index"));
        if (c != NULL && i >= 0 && i < 8) {
            const char *t = json_string_value(json_object_get(c, "text"));
            strncat(text[i], t ? t : "", 63 - strlen(text[i]));
            *finishes += json_is_string(json_object_get(c, "finish_reason"));
        }
        json_decref(v);
    }
}

/* Completions with an array of prompts: each prompt's n choices as indexes prompt * n + i, usage
 * summed, streamed by index, token-id prompts (echoed through detokenize), best_of per prompt,
 * and a token id the backend refuses named with its place in the batch. */
static void test_batch(srv_t *srv)
{
    tc_response_t r;
    const char *body = "{\"model\":\"test-model\",\"prompt\":[\"a b\",\"c\"],\"n\":2}";
    DSI_CHECK_INT_EQ(post(srv->port, "/v1/completions", body, NULL, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    json_t *v = body_json(&r);
    DSI_CHECK_INT_EQ(json_array_size(json_object_get(v, "choices")), 4);
    const char *want[] = {"a b", "a b", "c", "c"};
    for (int i = 0; i < 4; i++) {
        char path[32];
        snprintf(path, sizeof(path), "choices.%d.text", i);
        DSI_CHECK_STR_EQ(jpath(v, path), want[i]);
        json_t *c = json_array_get(json_object_get(v, "choices"), (size_t)i);
        DSI_CHECK_INT_EQ(json_integer_value(json_object_get(c, "index")), i);
    }
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "prompt_tokens"), 3);
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "completion_tokens"), 6);
    json_decref(v);
    tc_response_free(&r);

    body = "{\"model\":\"test-model\",\"prompt\":[\"a b\",\"c\"],\"n\":2,\"stream\":true,"
           "\"echo\":true,\"stream_options\":{\"include_usage\":true}}";
    post(srv->port, "/v1/completions", body, NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 200);
    char text[8][64];
    int finishes;
    sse_by_index(r.body, text, &finishes);
    DSI_CHECK_STR_EQ(text[0], "a ba b");
    DSI_CHECK_STR_EQ(text[1], "a ba b");
    DSI_CHECK_STR_EQ(text[2], "cc");
    DSI_CHECK_STR_EQ(text[3], "cc");
    DSI_CHECK_INT_EQ(finishes, 4);
    DSI_CHECK(strstr(r.body, "\"prompt_tokens\":3,\"completion_tokens\":6") != NULL);
    tc_response_free(&r);

    /* Token ids, one prompt and a batch; echo writes them as the backend detokenizes them. */
    body = "{\"model\":\"test-model\",\"prompt\":[5,6,7],\"echo\":true}";
    post(srv->port, "/v1/completions", body, NULL, &r);
    v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.text"), "t5 t6 t7t5 t6 t7");
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "prompt_tokens"), 3);
    json_decref(v);
    tc_response_free(&r);
    body = "{\"model\":\"test-model\",\"prompt\":[[1,2],[3]],\"best_of\":3}";
    post(srv->port, "/v1/completions", body, NULL, &r);
    v = body_json(&r);
    DSI_CHECK_INT_EQ(json_array_size(json_object_get(v, "choices")), 2);
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.text"), "t1 t2");
    DSI_CHECK_STR_EQ(jpath(v, "choices.1.text"), "t3");
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "prompt_tokens"), 3);
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "completion_tokens"), 9);
    json_decref(v);
    tc_response_free(&r);

    /* An id outside the vocabulary: 400 naming it; what was submitted before is cancelled. */
    int cancels = atomic_load(&srv->tb.cancels);
    body = "{\"model\":\"test-model\",\"prompt\":[[1],[2,3000]],\"n\":2}";
    post(srv->port, "/v1/completions", body, NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 400);
    v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "error.param"), "prompt[1][1]");
    DSI_CHECK_STR_EQ(jpath(v, "error.code"), "invalid_value");
    json_decref(v);
    tc_response_free(&r);
    DSI_CHECK_INT_EQ(atomic_load(&srv->tb.cancels), cancels + 2);
    DSI_CHECK_INT_EQ(wait_atomic(&srv->tb.active, 0, 1000), 0);
    post(srv->port, "/v1/completions", "{\"model\":\"test-model\",\"prompt\":[4,3000]}", NULL, &r);
    v = body_json(&r);
    DSI_CHECK_INT_EQ(r.status, 400);
    DSI_CHECK_STR_EQ(jpath(v, "error.param"), "prompt[1]");
    json_decref(v);
    tc_response_free(&r);
    post(srv->port, "/v1/completions", "{\"model\":\"test-model\",\"prompt\":[\"a\",[1]]}", NULL,
         &r);
    v = body_json(&r);
    DSI_CHECK_INT_EQ(r.status, 400);
    DSI_CHECK_STR_EQ(jpath(v, "error.param"), "prompt[1]");
    json_decref(v);
    tc_response_free(&r);
}

static void test_chat(srv_t *srv)
{
    tc_response_t r;
    const char *body = "{\"model\":\"test-model-r1\",\"messages\":[{\"role\":\"system\","
                       "\"content\":\"sys words\"},{\"role\":\"user\",\"content\":\"~let ~me "
                       "~think the answer is \\\"42\\\"\"}],\"temperature\":0.6}";
    DSI_CHECK_INT_EQ(post(srv->port, "/v1/chat/completions", body, NULL, &r), 0);
    DSI_CHECK_INT_EQ(r.status, 200);
    json_t *v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "object"), "chat.completion");
    DSI_CHECK_STR_EQ(jpath(v, "model"), "test-model-r1");
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.message.role"), "assistant");
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.message.reasoning_content"), "let me think");
    DSI_CHECK_STR_EQ(jpath(v, "choices.0.message.content"), " the answer is \"42\"");
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "prompt_tokens"), 9);
    DSI_CHECK_INT_EQ(jpath_int(v, "usage", "completion_tokens"), 7);
    const char *id = jpath(v, "id");
    DSI_CHECK(id != NULL && strncmp(id, "chatcmpl-", 9) == 0);
    json_decref(v);
    tc_response_free(&r);

    body = "{\"model\":\"test-model-r1\",\"messages\":[{\"role\":\"user\",\"content\":\"~let ~me "
           "~think the answer is \\\"42\\\"\"}],\"stream\":true}";
    post(srv->port, "/v1/chat/completions", body, NULL, &r);
    sse_t s;
    sse_parse(r.body, &s);
    DSI_CHECK_INT_EQ(s.bad, 0);
    DSI_CHECK_INT_EQ(s.role_first, 1);
    DSI_CHECK_STR_EQ(s.reasoning, "let me think");
    DSI_CHECK_STR_EQ(s.text, " the answer is \"42\"");
    DSI_CHECK_STR_EQ(s.finish, "stop");
    DSI_CHECK_INT_EQ(s.done_last, 1);
    tc_response_free(&r);

    /* A failure in the backend: 503 JSON, or an error event in a stream. */
    body = "{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"a FAIL b\"}]}";
    post(srv->port, "/v1/chat/completions", body, NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 503);
    v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "error.message"), "node 2 was lost");
    json_decref(v);
    tc_response_free(&r);
    body = "{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"a FAIL b\"}],"
           "\"stream\":true}";
    post(srv->port, "/v1/chat/completions", body, NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 200);
    sse_parse(r.body, &s);
    DSI_CHECK_STR_EQ(s.text, "a");
    DSI_CHECK_STR_EQ(s.error_code, "service_unavailable");
    DSI_CHECK_INT_EQ(s.done_last, 1);
    tc_response_free(&r);
}

typedef struct {
    const char *path, *body, *headers;
    int status;
    const char *code, *param, *message_part;
} bad_http_t;

static void test_bad_inputs(srv_t *srv)
{
    static const bad_http_t cases[] = {
        {"/v1/chat/completions", "{not json", NULL, 400, "invalid_json", NULL, "not valid JSON"},
        {"/v1/chat/completions", "{\"model\":\"test-model\"}", NULL, 400,
         "missing_required_parameter", "messages", "messages"},
        {"/v1/chat/completions",
         "{\"model\":\"gpt-4\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL, 404,
         "model_not_found", "model", "gpt-4"},
        {"/v1/chat/completions",
         "{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"temperature\":\"warm\"}",
         NULL, 400, "invalid_type", "temperature", "number"},
        {"/v1/completions", "{\"model\":\"test-model\",\"prompt\":\"x\",\"max_tokens\":501}", NULL,
         400, "invalid_value", "max_tokens", "501"},
        {"/v1/completions", "{\"model\":\"test-model\",\"prompt\":\"caf\xc3\"}", NULL, 400,
         "invalid_encoding", NULL, "byte offset 35"},
        {"/v1/completions", "{\"model\":\"test-model\",\"prompt\":7}", NULL, 400, "invalid_type",
         "prompt", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bad_http_t *c = &cases[i];
        tc_response_t r;
        DSI_CHECK_INT_EQ(post(srv->port, c->path, c->body, c->headers, &r), 0);
        DSI_CHECK_INT_EQ(r.status, c->status);
        json_t *v = body_json(&r);
        DSI_CHECK(v != NULL && json_object_size(json_object_get(v, "error")) == 4);
        DSI_CHECK_STR_EQ(jpath(v, "error.type"), "invalid_request_error");
        if (c->code)
            DSI_CHECK_STR_EQ(jpath(v, "error.code"), c->code);
        if (c->param)
            DSI_CHECK_STR_EQ(jpath(v, "error.param"), c->param);
        const char *msg = jpath(v, "error.message");
        if (c->message_part && (msg == NULL || strstr(msg, c->message_part) == NULL)) {
            fprintf(stderr, "case %zu: message '%s' lacks '%s'\n", i, msg ? msg : "(null)",
                    c->message_part);
            DSI_CHECK(0);
        }
        json_decref(v);
        tc_response_free(&r);
    }

    /* Prompt longer than the context (the backend's admission check): 400. */
    char *body = malloc(20000);
    int n = snprintf(body, 20000, "{\"model\":\"test-model\",\"prompt\":\"");
    for (int i = 0; i < 1200; i++)
        n += snprintf(body + n, 20000 - (size_t)n, "w ");
    snprintf(body + n, 20000 - (size_t)n, "\"}");
    tc_response_t r;
    post(srv->port, "/v1/completions", body, NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 400);
    json_t *v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "error.code"), "context_length_exceeded");
    DSI_CHECK_STR_EQ(jpath(v, "error.param"), "prompt");
    DSI_CHECK(strstr(jpath(v, "error.message"), "1200 tokens") != NULL);
    json_decref(v);
    tc_response_free(&r);
    free(body);

    /* A body over the size limit: 413 from the HTTP layer, in the same error shape. */
    size_t big_len = 100 * 1024;
    char *big = malloc(big_len + 1);
    memset(big, ' ', big_len);
    big[big_len] = '\0';
    memcpy(big, "{\"model\":\"test-model\",\"prompt\":\"", 32);
    memcpy(big + big_len - 2, "\"}", 2);
    tc_request(srv->port, "POST", "/v1/completions", NULL, big, big_len, &r);
    DSI_CHECK_INT_EQ(r.status, 413);
    v = body_json(&r);
    DSI_CHECK(jpath(v, "error.message") != NULL);
    json_decref(v);
    tc_response_free(&r);
    free(big);
}

static void test_auth(srv_t *srv)
{
    const char *body = "{\"model\":\"test-model\",\"prompt\":\"a b\"}";
    tc_response_t r;
    post(srv->port_auth, "/v1/completions", body, NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 401);
    json_t *v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "error.code"), "invalid_api_key");
    json_decref(v);
    tc_response_free(&r);
    post(srv->port_auth, "/v1/completions", body, "Authorization: Bearer wrong\r\n", &r);
    DSI_CHECK_INT_EQ(r.status, 401);
    tc_response_free(&r);
    post(srv->port_auth, "/v1/completions", body, "Authorization: Bearer sekret-ke\r\n", &r);
    DSI_CHECK_INT_EQ(r.status, 401);
    tc_response_free(&r);
    post(srv->port_auth, "/v1/completions", body, "Authorization: Bearer sekret-key\r\n", &r);
    DSI_CHECK_INT_EQ(r.status, 200);
    tc_response_free(&r);
    tc_request(srv->port_auth, "GET", "/v1/models", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 401);
    tc_response_free(&r);
    tc_request(srv->port_auth, "GET", "/health", NULL, NULL, 0, &r); /* open for probes */
    DSI_CHECK_INT_EQ(r.status, 200);
    tc_response_free(&r);
}

/* A streaming request kept open: returns the socket after the first event arrived. */
static int open_stream(int port, int words)
{
    char body[8192];
    int n = snprintf(body, sizeof(body), "{\"model\":\"test-model\",\"stream\":true,\"prompt\":\"");
    for (int i = 0; i < words; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n, "w%d ", i);
    n += snprintf(body + n, sizeof(body) - (size_t)n, "\"}");
    int fd = tc_connect(port);
    char head[256];
    snprintf(head, sizeof(head),
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n);
    tc_send_str(fd, head);
    tc_send(fd, body, (size_t)n);
    char buf[512];
    if (recv(fd, buf, sizeof(buf), 0) <= 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static double metric_value(int port, const char *line_prefix)
{
    tc_response_t r;
    double value = -1;
    if (tc_request(port, "GET", "/metrics", NULL, NULL, 0, &r) == 0 && r.body != NULL) {
        /* A sample line contains the prefix; "# HELP name text" lines must not match. */
        for (const char *p = strstr(r.body, line_prefix); p != NULL;
             p = strstr(p + 1, line_prefix)) {
            const char *line = p;
            while (line > r.body && line[-1] != '\n')
                line--;
            if (line[0] != '#') {
                value = atof(p + strlen(line_prefix));
                break;
            }
        }
    }
    tc_response_free(&r);
    return value;
}

static void test_cancel_and_queue(srv_t *srv)
{
    tb_t *tb = &srv->tb;
    /* A client leaving mid-stream cancels its generation in the backend. */
    int cancels = atomic_load(&tb->cancels);
    int fd = open_stream(srv->port, 200);
    DSI_CHECK(fd >= 0);
    DSI_CHECK_INT_EQ(atomic_load(&tb->active), 1);
    close(fd);
    DSI_CHECK_INT_EQ(wait_atomic(&tb->cancels, cancels + 1, 3000), cancels + 1);
    DSI_CHECK_INT_EQ(wait_atomic(&tb->active, 0, 1000), 0);
    DSI_CHECK_NEAR(metric_value(srv->port, "dsinfer_http_active_generations "), 0, 0);
    DSI_CHECK(metric_value(srv->port, "code=\"499\"} ") >= 1);

    /* Queue full: 429 with Retry-After, while the running ones go on. */
    atomic_store(&tb->queue_limit, 2);
    int a = open_stream(srv->port, 200), b = open_stream(srv->port, 200);
    tc_response_t r;
    post(srv->port, "/v1/completions", "{\"model\":\"test-model\",\"prompt\":\"x\"}", NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 429);
    json_t *v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "error.code"), "queue_full");
    DSI_CHECK_STR_EQ(jpath(v, "error.type"), "rate_limit_error");
    json_decref(v);
    tc_response_free(&r);
    close(a);
    close(b);
    DSI_CHECK_INT_EQ(wait_atomic(&tb->active, 0, 3000), 0);
    atomic_store(&tb->queue_limit, 64);

    /* Shutting down: 503 and /health says so. */
    atomic_store(&tb->stopping, 1);
    post(srv->port, "/v1/completions", "{\"model\":\"test-model\",\"prompt\":\"x\"}", NULL, &r);
    DSI_CHECK_INT_EQ(r.status, 503);
    v = body_json(&r);
    DSI_CHECK_STR_EQ(jpath(v, "error.message"), "the server is shutting down");
    json_decref(v);
    tc_response_free(&r);
    tc_request(srv->port, "GET", "/health", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 503);
    DSI_CHECK_STR_EQ(r.body, "{\"status\":\"stopping\"}");
    tc_response_free(&r);
    atomic_store(&tb->stopping, 0);
}

typedef struct {
    int port, id, ok;
} client_t;

static void *client_main(void *arg)
{
    client_t *c = arg;
    for (int k = 0; k < 4; k++) {
        char prompt[256], body[512];
        snprintf(prompt, sizeof(prompt), "client %d request %d says hello to everyone", c->id, k);
        int stream = k % 2;
        snprintf(body, sizeof(body),
                 "{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]"
                 ",\"stream\":%s}",
                 prompt, stream ? "true" : "false");
        tc_response_t r;
        if (post(c->port, "/v1/chat/completions", body, NULL, &r) != 0 || r.status != 200) {
            tc_response_free(&r);
            continue;
        }
        if (stream) {
            sse_t s;
            sse_parse(r.body, &s);
            c->ok += strcmp(s.text, prompt) == 0 && s.done_last;
        } else {
            json_t *v = body_json(&r);
            const char *t = jpath(v, "choices.0.message.content");
            c->ok += t != NULL && strcmp(t, prompt) == 0;
            json_decref(v);
        }
        tc_response_free(&r);
    }
    return NULL;
}

static void test_concurrency(srv_t *srv)
{
    enum { N = 16 };
    client_t c[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        c[i] = (client_t){.port = srv->port, .id = i};
        pthread_create(&t[i], NULL, client_main, &c[i]);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok += c[i].ok;
    }
    DSI_CHECK_INT_EQ(ok, N * 4);
}

static void test_metrics(srv_t *srv)
{
    tc_response_t r;
    tc_request(srv->port, "GET", "/metrics", NULL, NULL, 0, &r);
    DSI_CHECK_INT_EQ(r.status, 200);
    DSI_CHECK(strstr(r.content_type, "text/plain") != NULL);
    const char *want[] = {
        "dsinfer_http_requests_total{endpoint=\"/v1/chat/completions\",code=\"200\"} ",
        "dsinfer_http_requests_total{endpoint=\"/v1/completions\",code=\"429\"} 1\n",
        "dsinfer_http_requests_total{endpoint=\"/v1/chat/completions\",code=\"404\"} 1\n",
        "# TYPE dsinfer_time_to_first_token_seconds histogram\n",
        "dsinfer_time_per_output_token_seconds_bucket{le=\"+Inf\"} ",
        "dsinfer_prompt_tokens_total ",
        "dsinfer_generation_tokens_total ",
        "dsinfer_queue_depth 0\n", /* registered by the backend in the same registry */
        "dsinfer_http_connections 1\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (r.body == NULL || strstr(r.body, want[i]) == NULL) {
            fprintf(stderr, "/metrics lacks: %s\n", want[i]);
            DSI_CHECK(0);
        }
    }
    tc_response_free(&r);
    /* 16 clients x 4 + the single ones above: every request counted once. */
    DSI_CHECK(metric_value(srv->port, "dsinfer_time_to_first_token_seconds_count ") >= 64);
    DSI_CHECK(metric_value(srv->port, "dsinfer_generation_tokens_total ") >= 64 * 7);
}

static int run_tests(void)
{
    srv_t srv;
    if (srv_init(&srv, 2, NULL, 64 * 1024, 1) != 0) {
        fprintf(stderr, "cannot start the servers\n");
        return 1;
    }
    pthread_create(&srv.thread, NULL, srv_main, &srv);
    test_small_endpoints(&srv);
    test_completion(&srv);
    test_chat(&srv);
    test_choices(&srv);
    test_batch(&srv);
    test_bad_inputs(&srv);
    test_auth(&srv);
    test_cancel_and_queue(&srv);
    test_concurrency(&srv);
    test_metrics(&srv);

    /* Destroying the server while a stream runs cancels it in the backend. */
    int cancels = atomic_load(&srv.tb.cancels);
    int fd = open_stream(srv.port, 300);
    DSI_CHECK(fd >= 0);
    uv_async_send(&srv.stop);
    pthread_join(srv.thread, NULL);
    DSI_CHECK_INT_EQ(atomic_load(&srv.tb.cancels), cancels + 1);
    DSI_CHECK_INT_EQ(atomic_load(&srv.tb.active), 0);
    close(fd);
    srv_cleanup(&srv);
    return dsi_test_finish();
}

/* --serve PORTFILE: a server for shell tests, until SIGTERM or SIGINT. */
static int serve(int argc, char **argv)
{
    const char *portfile = argv[2], *key = NULL;
    int delay_ms = 2;
    size_t max_body = 4u << 20;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--delay-ms") == 0)
            delay_ms = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--api-key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--max-body") == 0)
            max_body = (size_t)atol(argv[i + 1]);
    }
    srv_t srv;
    if (srv_init(&srv, delay_ms, key, max_body, 0) != 0)
        return 1;
    uv_signal_init(&srv.loop, &srv.sigterm);
    uv_signal_init(&srv.loop, &srv.sigint);
    srv.sigterm.data = srv.sigint.data = &srv;
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", portfile);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return 1;
    fprintf(f, "%d\n", srv.port);
    fclose(f);
    rename(tmp, portfile); /* appears whole */
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv.loop);
    dsc_metrics_destroy(srv.metrics);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--serve") == 0)
        return serve(argc, argv);
    dsi_log_set_level(DSI_LOG_LEVEL_WARN);
    return run_tests();
}
