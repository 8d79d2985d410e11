/*
 * bench_serve_client.c - the load generator's connection: blocking sockets, one keep-alive
 * connection per worker thread, streamed requests whose SSE events are timed as they arrive.
 * Responses are parsed with http-parser (chunked bodies decoded); events with jansson.
 */
#include "bench_serve.h"
#include "dsi_clock.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const vocabulary[] = {
    "time",   "river",  "stone",  "light",  "green",  "window", "paper",  "silver",
    "garden", "north",  "quiet",  "music",  "bridge", "winter", "cloud",  "engine",
    "story",  "yellow", "market", "ocean",  "field",  "table",  "forest", "letter",
    "mirror", "number", "planet", "signal", "summer", "valley", "water",  "wheel",
};

char *bs_prompt(int index, int words)
{
    size_t cap = (size_t)words * 8 + 1;
    char *p = malloc(cap);
    if (p == NULL)
        return NULL;
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(index + 1);
    size_t len = 0;
    p[0] = '\0';
    for (int i = 0; i < words; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: a different text per request */
        const char *w = vocabulary[x % (sizeof(vocabulary) / sizeof(vocabulary[0]))];
        len += (size_t)snprintf(p + len, cap - len, "%s%s", i ? " " : "", w);
    }
    return p;
}

static int connect_to(const bs_target_t *t)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(t->host, t->port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = t->timeout_s};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The state of one response being read. */
typedef struct {
    bs_result_t *res;
    double t0, t_first, t_last;
    int64_t text_events, usage_tokens;
    int complete, keep_alive;
    char *event; /* SSE bytes not yet ending in "\n\n" (or the whole body when not streamed) */
    size_t event_len, event_cap;
} reading_t;

static void on_event(reading_t *r, const char *data, size_t n)
{
    if (n == 6 && memcmp(data, "[DONE]", 6) == 0)
        return;
    json_error_t jerr;
    json_t *v = json_loadb(data, n, JSON_ALLOW_NUL, &jerr); /* U+0000 is valid text */
    if (v == NULL) {
        r->res->stream_error = 1;
        return;
    }
    if (json_object_get(v, "error") != NULL)
        r->res->stream_error = 1;
    json_t *usage = json_object_get(v, "usage");
    if (json_is_object(usage))
        r->usage_tokens = json_integer_value(json_object_get(usage, "completion_tokens"));
    json_t *choice = json_array_get(json_object_get(v, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    json_t *text = delta ? json_object_get(delta, "content") : json_object_get(choice, "text");
    json_t *reasoning = delta ? json_object_get(delta, "reasoning_content") : NULL;
    if (json_string_length(text) > 0 || json_string_length(reasoning) > 0) {
        double t = dsi_now_s();
        if (r->text_events == 0)
            r->t_first = t;
        r->t_last = t;
        r->text_events++;
    }
    json_decref(v);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    reading_t *r = p->data;
    if (r->event_len + len + 1 > r->event_cap) {
        size_t cap = r->event_cap ? r->event_cap * 2 : 4096;
        while (cap < r->event_len + len + 1)
            cap *= 2;
        char *e = realloc(r->event, cap);
        if (e == NULL)
            return -1;
        r->event = e;
        r->event_cap = cap;
    }
    memcpy(r->event + r->event_len, at, len);
    r->event_len += len;
    if (p->status_code != 200)
        return 0; /* an error body: kept whole, not parsed as events */
    /* Hand over every complete "data: ...\n\n" event; keep a partial one. */
    size_t start = 0;
    for (size_t i = 0; i + 1 < r->event_len; i++) {
        if (r->event[i] != '\n' || r->event[i + 1] != '\n')
            continue;
        const char *ev = r->event + start;
        size_t n = i - start;
        if (n >= 6 && memcmp(ev, "data: ", 6) == 0)
            on_event(r, ev + 6, n - 6);
        start = i + 2;
        i++;
    }
    memmove(r->event, r->event + start, r->event_len - start);
    r->event_len -= start;
    return 0;
}

static int on_complete(http_parser *p)
{
    reading_t *r = p->data;
    r->complete = 1;
    r->keep_alive = http_should_keep_alive(p);
    return 0;
}

static int on_headers(http_parser *p)
{
    reading_t *r = p->data;
    r->res->status = (int)p->status_code;
    return p->status_code == 100 ? 0 : 0;
}

static char *request_body(const bs_target_t *t, int index)
{
    char *prompt = bs_prompt(index, t->prompt_len);
    if (prompt == NULL)
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(t->model));
    if (t->chat) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("user"));
        json_object_set_new(m, "content", json_string(prompt));
        json_t *msgs = json_array();
        json_array_append_new(msgs, m);
        json_object_set_new(o, "messages", msgs);
    } else {
        json_object_set_new(o, "prompt", json_string(prompt));
    }
    json_object_set_new(o, "max_tokens", json_integer(t->max_tokens));
    json_object_set_new(o, "temperature", json_real(0));
    json_object_set_new(o, "stream", json_true());
    json_t *so = json_object();
    json_object_set_new(so, "include_usage", json_true());
    json_object_set_new(o, "stream_options", so);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    free(prompt);
    return body;
}

static int send_request(int fd, const bs_target_t *t, const char *body)
{
    char auth[512] = "";
    if (t->api_key != NULL)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", t->api_key);
    char head[1536];
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                     "Accept: text/event-stream\r\n%sContent-Length: %zu\r\n\r\n",
                     t->path, t->host, t->port, auth, strlen(body));
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    return send_all(fd, head, (size_t)n) == 0 && send_all(fd, body, strlen(body)) == 0 ? 0 : -1;
}

/* Read one response; 0 when it came whole. */
static int read_response(int fd, reading_t *r)
{
    static const http_parser_settings settings = {
        .on_body = on_body,
        .on_headers_complete = on_headers,
        .on_message_complete = on_complete,
    };
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = r;
    char buf[16384];
    while (!r->complete) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            r->res->timed_out = 1;
        if (n <= 0) {
            http_parser_execute(&p, &settings, buf, 0); /* EOF ends a close-delimited body */
            break;
        }
        size_t used = http_parser_execute(&p, &settings, buf, (size_t)n);
        if (r->complete && p.status_code == 100) { /* interim: the real response follows */
            r->complete = 0;
            http_parser_init(&p, HTTP_RESPONSE);
            p.data = r;
            if (used < (size_t)n)
                http_parser_execute(&p, &settings, buf + used, (size_t)n - used);
        } else if (used != (size_t)n && !r->complete) {
            break;
        }
    }
    return r->complete ? 0 : -1;
}

/* Run request `index` on *fd (connecting if needed); the connection may be closed after. */
static void run_one(const bs_target_t *t, int index, int *fd, bs_result_t *res)
{
    memset(res, 0, sizeof(*res));
    res->ttft = res->tpot = -1;
    char *body = request_body(t, index);
    reading_t r = {.res = res};
    r.t0 = dsi_now_s();
    int ok = 0;
    for (int attempt = 0; attempt < 2 && !ok && body != NULL; attempt++) {
        if (*fd < 0 && (*fd = connect_to(t)) < 0)
            break;
        /* A kept-alive connection the server closed meanwhile fails at once: retry fresh. */
        if (send_request(*fd, t, body) == 0 && read_response(*fd, &r) == 0)
            ok = 1;
        else if (res->status != 0 || res->timed_out)
            attempt = 2; /* the server answered (or hung): no retry */
        if (!ok || !r.keep_alive) {
            close(*fd);
            *fd = -1;
        }
    }
    res->latency = dsi_now_s() - r.t0;
    if (ok && res->status == 200) {
        res->tokens = r.usage_tokens > 0 ? r.usage_tokens : r.text_events;
        if (r.text_events > 0)
            res->ttft = r.t_first - r.t0;
        if (res->tokens >= 2 && r.text_events >= 2)
            res->tpot = (r.t_last - r.t_first) / (double)(res->tokens - 1);
    } else if (!ok && res->status == 200) {
        res->stream_error = 1; /* the stream broke off */
    }
    free(r.event);
    free(body);
}

void *bs_worker_main(void *arg)
{
    bs_run_t *run = arg;
    int fd = -1;
    for (;;) {
        int i = atomic_fetch_add(&run->next, 1);
        if (i >= run->n_requests)
            break;
        run_one(run->target, i, &fd, &run->results[i]);
        atomic_fetch_add(&run->done, 1);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

char *bs_first_model(const bs_target_t *t)
{
    int fd = connect_to(t);
    if (fd < 0) {
        fprintf(stderr, "dsinfer bench serve: cannot connect to %s:%s: %s\n", t->host, t->port,
                strerror(errno));
        return NULL;
    }
    char auth[512] = "", head[1024], base[512];
    if (t->api_key != NULL)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", t->api_key);
    /* /v1/models sits beside the completions endpoint. */
    snprintf(base, sizeof(base), "%s", t->path);
    char *v1 = strstr(base, "/v1/");
    if (v1 != NULL)
        v1[3] = '\0';
    int n = snprintf(head, sizeof(head),
                     "GET %s/models HTTP/1.1\r\nHost: %s:%s\r\n%sConnection: close\r\n\r\n", base,
                     t->host, t->port, auth);
    bs_result_t res = {0};
    reading_t r = {.res = &res};
    char *id = NULL;
    if (n > 0 && (size_t)n < sizeof(head) && send_all(fd, head, (size_t)n) == 0 &&
        read_response(fd, &r) == 0 && res.status == 200 && r.event != NULL) {
        json_error_t jerr;
        json_t *v = json_loadb(r.event, r.event_len, JSON_ALLOW_NUL, &jerr);
        const char *s =
            json_string_value(json_object_get(json_array_get(json_object_get(v, "data"), 0), "id"));
        if (s != NULL)
            id = strdup(s);
        json_decref(v);
    }
    if (id == NULL)
        fprintf(stderr, "dsinfer bench serve: GET %s/models gave no model (HTTP %d); use --model\n",
                base, res.status);
    free(r.event);
    close(fd);
    return id;
}
