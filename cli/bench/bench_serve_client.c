/*
 * bench_serve_client.c - the load generator's connection: blocking sockets, one keep-alive
 * connection per worker thread, streamed requests whose SSE events are timed as they arrive.
 * Responses are parsed with http-parser (chunked bodies decoded); events with jansson. Also the
 * URL, GET /v1/models and the plain GET the monitor samples /metrics with.
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

int bs_parse_url(const char *url, int chat, bs_target_t *t)
{
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "dsinfer bench serve: --url: '%s' must start with http:// (no TLS)\n", url);
        return -1;
    }
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hp_len = slash ? (size_t)(slash - h) : strlen(h);
    char hostport[sizeof(t->host)];
    if (hp_len == 0 || hp_len >= sizeof(hostport)) {
        fprintf(stderr, "dsinfer bench serve: --url: no host in '%s'\n", url);
        return -1;
    }
    memcpy(hostport, h, hp_len);
    hostport[hp_len] = '\0';
    char *colon = hostport[0] == '[' ? strstr(hostport, "]:") : strrchr(hostport, ':');
    if (colon != NULL && hostport[0] == '[')
        colon++;
    snprintf(t->port, sizeof(t->port), "%s", colon ? colon + 1 : "80");
    if (colon != NULL)
        *colon = '\0';
    char *host = hostport;
    if (host[0] == '[') { /* [::1] */
        host++;
        host[strcspn(host, "]")] = '\0';
    }
    char *end;
    long port = strtol(t->port, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535 || host[0] == '\0') {
        fprintf(stderr, "dsinfer bench serve: --url: bad host or port in '%s'\n", url);
        return -1;
    }
    snprintf(t->host, sizeof(t->host), "%s", host);
    char base[400];
    snprintf(base, sizeof(base), "%s", slash ? slash : "");
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        base[--bl] = '\0';
    if (bl >= 3 && strcmp(base + bl - 3, "/v1") == 0) /* ".../v1" given: don't double it */
        base[bl - 3] = '\0';
    snprintf(t->path, sizeof(t->path), "%s/v1/%s", base, chat ? "chat/completions" : "completions");
    t->url = url;
    return 0;
}

static int connect_timeout(const bs_target_t *t, int timeout_ms)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(t->host, t->port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000};
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

static int connect_to(const bs_target_t *t)
{
    return connect_timeout(t, t->timeout_s * 1000);
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
    int64_t text_events, usage_tokens, usage_prompt;
    int events_cap; /* of res->events */
    int complete, keep_alive;
    int raw;     /* keep the body whole (not a stream of events) */
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
    if (json_is_object(usage)) {
        r->usage_tokens = json_integer_value(json_object_get(usage, "completion_tokens"));
        json_t *pt = json_object_get(usage, "prompt_tokens");
        if (json_is_integer(pt))
            r->usage_prompt = json_integer_value(pt);
    }
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
        bs_result_t *res = r->res;
        if (res->n_events == r->events_cap) {
            int cap = r->events_cap ? r->events_cap * 2 : 64;
            float *e = realloc(res->events, sizeof(*e) * (size_t)cap);
            if (e != NULL) {
                res->events = e;
                r->events_cap = cap;
            }
        }
        if (res->n_events < r->events_cap)
            res->events[res->n_events++] = (float)(t - r->t0);
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
    if (p->status_code != 200 || r->raw)
        return 0; /* an error body or a plain GET: kept whole, not parsed as events */
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

static char *request_body(const bs_target_t *t, const char *prompt, int max_tokens)
{
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
    json_object_set_new(o, "max_tokens", json_integer(max_tokens));
    json_object_set_new(o, "temperature", json_real(0));
    json_object_set_new(o, "stream", json_true());
    json_t *so = json_object();
    json_object_set_new(so, "include_usage", json_true());
    json_object_set_new(o, "stream_options", so);
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
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

void bs_request_run(const bs_run_t *run, int index, int *fd, bs_result_t *res)
{
    const bs_target_t *t = run->target;
    memset(res, 0, sizeof(*res));
    res->ttft = res->tpot = -1;
    res->prompt_tokens = -1;
    res->level = run->level;
    bs_req_t req = {0};
    char *body = NULL;
    if (bs_plan_request(run->plan, run->first_index + index, &req) == 0)
        body = request_body(t, req.prompt, req.max_tokens);
    res->prompt_words = req.prompt_words;
    res->max_tokens = req.max_tokens;
    free(req.prompt);
    reading_t r = {.res = res};
    r.t0 = dsi_now_s();
    res->start = r.t0 - run->t0;
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
        res->prompt_tokens = r.usage_prompt > 0 ? r.usage_prompt : -1;
        if (r.text_events > 0)
            res->ttft = r.t_first - r.t0;
        if (res->tokens >= 2 && r.text_events >= 2)
            res->tpot = (r.t_last - r.t_first) / (double)(res->tokens - 1);
    } else if (!ok && res->status == 200) {
        res->stream_error = 1; /* the stream broke off */
    }
    /* As the JSON keeps them, so that figures recomputed from it are the summary's. */
    res->start = bs_round9(res->start);
    res->latency = bs_round9(res->latency);
    res->ttft = res->ttft >= 0 ? bs_round9(res->ttft) : -1;
    res->tpot = res->tpot >= 0 ? bs_round9(res->tpot) : -1;
    free(r.event);
    free(body);
}

int bs_http_get(const bs_target_t *t, const char *path, int timeout_ms, char **body)
{
    int fd = connect_timeout(t, timeout_ms);
    if (fd < 0)
        return -1;
    char auth[512] = "", head[1024];
    if (t->api_key != NULL)
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", t->api_key);
    int n = snprintf(head, sizeof(head),
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\n%sConnection: close\r\n\r\n", path, t->host,
                     t->port, auth);
    bs_result_t res = {0};
    reading_t r = {.res = &res, .raw = 1};
    int status = -1;
    if (n > 0 && (size_t)n < sizeof(head) && send_all(fd, head, (size_t)n) == 0 &&
        read_response(fd, &r) == 0 && res.status > 0) {
        status = res.status;
        if (r.event == NULL)
            r.event = calloc(1, 1);
        else
            r.event[r.event_len] = '\0'; /* on_body keeps room for it */
        *body = r.event;
        r.event = NULL;
    }
    free(r.event);
    free(res.events);
    close(fd);
    return status;
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
    reading_t r = {.res = &res, .raw = 1};
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
