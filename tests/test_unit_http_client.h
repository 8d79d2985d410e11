/*
 * test_unit_http_client.h - a blocking HTTP/1.1 client on plain sockets for the HTTP and API
 * tests (header-only: each test program includes it once). Responses are parsed with http-parser
 * (chunked bodies decoded). Every socket has a receive timeout so that a broken server fails a
 * test instead of hanging it.
 */
#ifndef TEST_UNIT_HTTP_CLIENT_H
#define TEST_UNIT_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct {
    int status;   /* 0 when no response came (timeout / closed) */
    int complete; /* the whole message arrived */
    int keep_alive;
    char *body; /* decoded body, NUL-terminated, malloc'ed */
    size_t body_len;
    char content_type[128];
    int chunks; /* on_body calls (pieces of a streamed body) */
    char hdr_field[64];
} tc_response_t;

static inline void tc_response_free(tc_response_t *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* A connected socket to 127.0.0.1:port with a receive timeout of timeout_ms, or -1. */
static inline int tc_connect_timeout(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline int tc_connect(int port)
{
    return tc_connect_timeout(port, 10000);
}

static inline int tc_send(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static inline int tc_send_str(int fd, const char *s)
{
    return tc_send(fd, s, strlen(s));
}

static inline int tc_on_body(http_parser *p, const char *at, size_t len)
{
    tc_response_t *r = p->data;
    char *b = realloc(r->body, r->body_len + len + 1);
    if (b == NULL)
        return -1;
    memcpy(b + r->body_len, at, len);
    r->body = b;
    r->body_len += len;
    r->body[r->body_len] = '\0';
    r->chunks++;
    return 0;
}

static inline int tc_on_header_field(http_parser *p, const char *at, size_t len)
{
    tc_response_t *r = p->data;
    snprintf(r->hdr_field, sizeof(r->hdr_field), "%.*s", (int)len, at);
    return 0;
}

static inline int tc_on_header_value(http_parser *p, const char *at, size_t len)
{
    tc_response_t *r = p->data;
    if (strcasecmp(r->hdr_field, "Content-Type") == 0)
        snprintf(r->content_type, sizeof(r->content_type), "%.*s", (int)len, at);
    return 0;
}

static inline int tc_on_complete(http_parser *p)
{
    tc_response_t *r = p->data;
    r->complete = 1;
    r->status = (int)p->status_code;
    r->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1); /* leave pipelined responses for the next call */
    return 0;
}

static inline int tc_on_headers_complete(http_parser *p)
{
    tc_response_t *r = p->data;
    r->status = (int)p->status_code;
    return p->status_code == 100 ? 0 : 0;
}

/*
 * Read one response from fd (skipping a 100 Continue). Bytes after the response are kept in
 * `carry` for the next call (pass NULL carry for single-response use). Returns 0 when a complete
 * response arrived, -1 otherwise (r->status may still be set from the head).
 */
typedef struct {
    char data[65536];
    size_t len;
} tc_carry_t;

static inline int tc_read_response_carry(int fd, tc_response_t *r, tc_carry_t *carry)
{
    static const http_parser_settings settings = {
        .on_body = tc_on_body,
        .on_header_field = tc_on_header_field,
        .on_header_value = tc_on_header_value,
        .on_headers_complete = tc_on_headers_complete,
        .on_message_complete = tc_on_complete,
    };
    memset(r, 0, sizeof(*r));
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = r;
    char buf[65536];
    for (;;) {
        size_t n;
        if (carry != NULL && carry->len > 0) {
            n = carry->len;
            memcpy(buf, carry->data, n);
            carry->len = 0;
        } else {
            ssize_t got = recv(fd, buf, sizeof(buf), 0);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                http_parser_execute(&p, &settings, buf, 0); /* EOF ends close-delimited bodies */
                return r->complete ? 0 : -1;
            }
            n = (size_t)got;
        }
        size_t used = http_parser_execute(&p, &settings, buf, n);
        if (r->complete && r->status == 100) { /* interim response: read the real one */
            memset(r, 0, sizeof(*r));
            http_parser_init(&p, HTTP_RESPONSE);
            p.data = r;
            if (used < n) {
                if (carry == NULL)
                    return -1; /* the caller must pass a carry for this */
                memcpy(carry->data, buf + used, n - used);
                carry->len = n - used;
            }
            continue;
        }
        if (r->complete) {
            if (carry != NULL && used < n) {
                memcpy(carry->data, buf + used, n - used);
                carry->len = n - used;
            }
            return 0;
        }
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK)
            return -1;
    }
}

static inline int tc_read_response(int fd, tc_response_t *r)
{
    static __thread tc_carry_t carry; /* bytes after a 100 Continue; dropped after the call */
    carry.len = 0;
    return tc_read_response_carry(fd, r, &carry);
}

/* One request on a fresh connection. `headers` are extra lines ending in \r\n (or NULL). */
static inline int tc_request(int port, const char *method, const char *path, const char *headers,
                             const char *body, size_t body_len, tc_response_t *r)
{
    memset(r, 0, sizeof(*r));
    int fd = tc_connect(port);
    if (fd < 0)
        return -1;
    char head[2048];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     method, path, body_len, headers ? headers : "");
    int rc = tc_send(fd, head, (size_t)n);
    if (rc == 0 && body_len > 0)
        rc = tc_send(fd, body, body_len);
    if (rc == 0)
        rc = tc_read_response(fd, r);
    close(fd);
    return rc;
}

/* 1 when the peer closed fd (recv gives 0 or an error) within timeout_ms, discarding data. */
static inline int tc_wait_closed(int fd, int timeout_ms)
{
    char buf[4096];
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 10) > 0) {
            ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
                return 1;
        }
    }
    return 0;
}

#endif
