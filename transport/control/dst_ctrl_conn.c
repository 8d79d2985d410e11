/*
 * dst_ctrl_conn.c - one framed connection: reading and validating frames, queued writes, timeouts,
 * and the close sequence (flush, close handles, on_close, free).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dst_ctrl_impl.h"

void dst_ctrl_opts_default(dst_ctrl_opts_t *o)
{
    o->max_frame = 64u << 20;
    o->frame_timeout_ms = 10000;
    o->idle_timeout_ms = 0;
    o->connect_retry_min_ms = 100;
    o->connect_retry_max_ms = 5000;
    o->connect_attempts = 0;
    o->max_send_queue = 256u << 20;
}

dst_ctrl_conn_t *dst_ctrl_conn_new(uv_loop_t *loop, const dst_ctrl_opts_t *opts,
                                   const dst_ctrl_cb_t *cb)
{
    dst_ctrl_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        DSI_ERROR("out of memory for a control connection");
        return NULL;
    }
    c->loop = loop;
    c->opts = *opts;
    if (c->opts.max_frame > UINT32_MAX)
        c->opts.max_frame = UINT32_MAX;
    if (cb != NULL)
        c->cb = *cb;
    dsi_list_init(&c->pending);
    c->why = DSI_OK;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    return c;
}

/* ---- close sequence ------------------------------------------------------------------------- */

void dst_ctrl_conn_maybe_finish(dst_ctrl_conn_t *c)
{
    if (c->closes_pending > 0 || c->gai_pending)
        return;
    if (c->listener != NULL)
        dst_ctrl_listener_forget(c->listener, c);
    if (c->cb.on_close != NULL)
        c->cb.on_close(c, c->why, c->cb.arg);
    dsi_list_t *l;
    while ((l = dsi_list_pop_front(&c->pending)) != NULL) {
        dst_ctrl_frame_t *f = dsi_container_of(l, dst_ctrl_frame_t, link);
        free(f->buf.base);
        free(f);
    }
    free(c->body);
    free(c);
}

void dst_ctrl_conn_handle_closed_cb(uv_handle_t *h)
{
    dst_ctrl_conn_t *c = h->data;
    if (h == (uv_handle_t *)&c->tcp) {
        c->tcp_inited = 0;
        c->tcp_closing = 0;
        if (c->state != CONN_CLOSED) {
            dst_ctrl_connect_tcp_closed(c); /* between two connect attempts */
            return;
        }
    }
    c->closes_pending--;
    dst_ctrl_conn_maybe_finish(c);
}

void dst_ctrl_conn_teardown(dst_ctrl_conn_t *c, dsi_status_t why)
{
    if (c->state == CONN_CLOSED)
        return;
    if (c->why == DSI_OK)
        c->why = why;
    c->state = CONN_CLOSED;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, dst_ctrl_conn_handle_closed_cb);
    c->closes_pending++;
    if (c->tcp_inited) {
        /* A close already under way (between connect attempts) reports here as well. */
        if (!c->tcp_closing)
            uv_close((uv_handle_t *)&c->tcp, dst_ctrl_conn_handle_closed_cb);
        c->tcp_closing = 1;
        c->closes_pending++;
    }
    if (c->gai_pending)
        uv_cancel((uv_req_t *)&c->gai); /* its callback still runs and ends the wait */
}

void dst_ctrl_conn_close_why(dst_ctrl_conn_t *c, dsi_status_t why)
{
    if (c->state == CONN_CLOSING || c->state == CONN_CLOSED)
        return;
    if (c->state != CONN_OPEN || c->queued == 0) {
        dst_ctrl_conn_teardown(c, why);
        return;
    }
    c->why = why;
    c->state = CONN_CLOSING;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_start(&c->timer, dst_ctrl_conn_timer_cb, DST_CTRL_CLOSE_GRACE_MS, 0);
}

void dst_ctrl_conn_close(dst_ctrl_conn_t *c)
{
    dst_ctrl_conn_close_why(c, DSI_OK);
}

/* ---- writing -------------------------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status)
{
    dst_ctrl_frame_t *f = (dst_ctrl_frame_t *)req;
    dst_ctrl_conn_t *c = f->conn;
    c->queued -= f->buf.len;
    free(f->buf.base);
    free(f);
    if (status < 0 && status != UV_ECANCELED && c->state != CONN_CLOSED) {
        DSI_WARN("control connection %s: write failed: %s", c->peer, uv_strerror(status));
        dst_ctrl_conn_teardown(c, DSI_ERR_CONNECTION);
        return;
    }
    if (c->state == CONN_CLOSING && c->queued == 0)
        dst_ctrl_conn_teardown(c, c->why);
}

static dsi_status_t frame_write(dst_ctrl_conn_t *c, dst_ctrl_frame_t *f)
{
    int rc = uv_write(&f->req, (uv_stream_t *)&c->tcp, &f->buf, 1, write_cb);
    if (rc != 0) {
        DSI_WARN("control connection %s: write failed: %s", c->peer, uv_strerror(rc));
        c->queued -= f->buf.len;
        free(f->buf.base);
        free(f);
        dst_ctrl_conn_teardown(c, DSI_ERR_CONNECTION);
        return DSI_ERR_CONNECTION;
    }
    return DSI_OK;
}

dsi_status_t dst_ctrl_send(dst_ctrl_conn_t *c, const dst_msg_t *msg)
{
    if (c->state != CONN_OPEN && c->state != CONN_CONNECTING)
        return DSI_ERR_CONNECTION;
    msgpack_sbuffer sb;
    char err[256];
    uint8_t hdr[DST_CTRL_HEADER_LEN] = {0};
    msgpack_sbuffer_init(&sb);
    dsi_status_t st = DSI_ERR_NOMEM;
    if (msgpack_sbuffer_write(&sb, (const char *)hdr, sizeof(hdr)) != 0)
        goto fail;
    st = dst_msg_encode(msg, &sb, err, sizeof(err));
    if (st != DSI_OK) {
        DSI_ERROR("control connection %s: not sending an invalid %s: %s", c->peer,
                  dst_msg_type_name(msg->type), err);
        goto fail;
    }
    size_t body = sb.size - DST_CTRL_HEADER_LEN;
    if (body > c->opts.max_frame) {
        DSI_ERROR("control connection %s: %s of %zu bytes over the frame limit %zu", c->peer,
                  dst_msg_type_name(msg->type), body, c->opts.max_frame);
        st = DSI_ERR_TOO_LARGE;
        goto fail;
    }
    if (c->queued + sb.size > c->opts.max_send_queue) {
        DSI_WARN("control connection %s: send queue full (%zu bytes unsent), %s refused", c->peer,
                 c->queued, dst_msg_type_name(msg->type));
        st = DSI_ERR_CAPACITY;
        goto fail;
    }
    dst_ctrl_frame_t *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        st = DSI_ERR_NOMEM;
        goto fail;
    }
    dst_ctrl_frame_header((uint8_t *)sb.data, (uint32_t)body);
    f->conn = c;
    f->buf = uv_buf_init(sb.data, (unsigned)sb.size);
    msgpack_sbuffer_release(&sb); /* the frame owns the bytes now */
    c->queued += f->buf.len;
    if (c->state == CONN_CONNECTING) {
        dsi_list_push_back(&c->pending, &f->link);
        return DSI_OK;
    }
    return frame_write(c, f);
fail:
    msgpack_sbuffer_destroy(&sb);
    return st;
}

void dst_ctrl_send_error(dst_ctrl_conn_t *c, dsi_status_t code, uint32_t ref_type, const char *fmt,
                         ...)
{
    char text[DST_MSG_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    dst_msg_t m;
    dst_msg_error_init(&m, code, ref_type, "%s", text);
    if (dst_ctrl_send(c, &m) == DSI_OK && c->listener != NULL)
        c->listener->stats.errors_sent++;
}

/* ---- reading -------------------------------------------------------------------------------- */

static void timer_restart(dst_ctrl_conn_t *c, uint32_t ms)
{
    if (ms > 0)
        uv_timer_start(&c->timer, dst_ctrl_conn_timer_cb, ms, 0);
    else
        uv_timer_stop(&c->timer);
}

static int frame_started(const dst_ctrl_conn_t *c)
{
    return c->hdr_got > 0;
}

/* Broken framing: reply, count, close. */
static void frame_error(dst_ctrl_conn_t *c, dsi_status_t st, const char *text)
{
    DSI_ERROR("control connection %s: %s; closing", c->peer, text);
    if (c->listener != NULL)
        c->listener->stats.bad_frames++;
    dst_ctrl_send_error(c, st, 0, "%s", text);
    dst_ctrl_conn_close_why(c, st);
}

static void deliver(dst_ctrl_conn_t *c, const char *body, size_t len)
{
    dst_msg_t msg;
    char err[256];
    dsi_status_t st = dst_msg_decode(body, len, &msg, err, sizeof(err));
    if (st != DSI_OK) {
        uint32_t ref = dst_msg_peek_type(body, len);
        DSI_ERROR("control connection %s: refused a %zu-byte %s message: %s", c->peer, len,
                  ref ? dst_msg_type_name(ref) : "unreadable", err);
        if (c->listener != NULL)
            c->listener->stats.bad_msgs++;
        dst_ctrl_send_error(c, st, ref, "%s", err);
        if (++c->bad_msgs >= DST_CTRL_MAX_BAD_MSGS)
            frame_error(c, DSI_ERR_PROTOCOL, "too many refused messages");
        return;
    }
    if (c->listener != NULL)
        c->listener->stats.msgs_in++;
    if (c->cb.on_msg != NULL)
        c->cb.on_msg(c, &msg, c->cb.arg);
    dst_msg_free(&msg);
}

/* The header is complete: check it and prepare for the body. 0 to go on, -1 when closed. */
static int header_done(dst_ctrl_conn_t *c)
{
    char err[160];
    uint32_t len;
    dsi_status_t st = dst_ctrl_frame_parse(c->hdr, c->opts.max_frame, &len, err, sizeof(err));
    if (st != DSI_OK) {
        frame_error(c, st, err);
        return -1;
    }
    c->body_len = len;
    c->body_got = 0;
    return 0;
}

static int body_reserve(dst_ctrl_conn_t *c, size_t need)
{
    if (need <= c->body_cap)
        return 0;
    size_t cap = c->body_cap ? c->body_cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap > c->body_len)
        cap = c->body_len;
    char *p = realloc(c->body, cap);
    if (p == NULL)
        return -1;
    c->body = p;
    c->body_cap = cap;
    return 0;
}

static void frame_done(dst_ctrl_conn_t *c)
{
    c->hdr_got = 0;
    timer_restart(c, c->opts.idle_timeout_ms);
    deliver(c, c->body, c->body_len);
    /* Keep a small buffer for the next frame, give a big one back. */
    if (c->body_cap > (1u << 20)) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
}

static void feed(dst_ctrl_conn_t *c, const char *p, size_t n)
{
    while (n > 0 && c->state == CONN_OPEN) {
        if (!frame_started(c))
            timer_restart(c, c->opts.frame_timeout_ms);
        if (c->hdr_got < DST_CTRL_HEADER_LEN) {
            size_t take = DST_CTRL_HEADER_LEN - c->hdr_got;
            take = take < n ? take : n;
            memcpy(c->hdr + c->hdr_got, p, take);
            c->hdr_got += take, p += take, n -= take;
            if (c->hdr_got < DST_CTRL_HEADER_LEN || header_done(c) != 0)
                continue;
        }
        size_t take = c->body_len - c->body_got;
        take = take < n ? take : n;
        if (body_reserve(c, c->body_got + take) != 0) {
            DSI_ERROR("control connection %s: out of memory for a %zu-byte frame", c->peer,
                      c->body_len);
            dst_ctrl_conn_teardown(c, DSI_ERR_NOMEM);
            return;
        }
        if (take > 0)
            memcpy(c->body + c->body_got, p, take);
        c->body_got += take, p += take, n -= take;
        if (c->body_got == c->body_len)
            frame_done(c);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    dst_ctrl_conn_t *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    dst_ctrl_conn_t *c = s->data;
    if (nread > 0) {
        feed(c, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0 || c->state != CONN_OPEN)
        return;
    if (nread != UV_EOF) {
        DSI_WARN("control connection %s: read failed: %s", c->peer, uv_strerror((int)nread));
        dst_ctrl_conn_teardown(c, DSI_ERR_CONNECTION);
        return;
    }
    if (frame_started(c)) {
        char text[160];
        snprintf(text, sizeof(text), "connection closed mid-frame (%zu of %zu bytes)",
                 c->hdr_got < DST_CTRL_HEADER_LEN ? c->hdr_got : DST_CTRL_HEADER_LEN + c->body_got,
                 c->hdr_got < DST_CTRL_HEADER_LEN ? (size_t)DST_CTRL_HEADER_LEN
                                                  : DST_CTRL_HEADER_LEN + c->body_len);
        frame_error(c, DSI_ERR_PROTOCOL, text);
        return;
    }
    DSI_DEBUG("control connection %s: closed by the peer", c->peer);
    dst_ctrl_conn_close_why(c, DSI_ERR_CONNECTION);
}

void dst_ctrl_conn_timer_cb(uv_timer_t *t)
{
    dst_ctrl_conn_t *c = t->data;
    char text[160];
    switch (c->state) {
    case CONN_CONNECTING:
        dst_ctrl_connect_retry_cb(c);
        return;
    case CONN_CLOSING:
        DSI_WARN("control connection %s: %zu bytes still unsent at close", c->peer, c->queued);
        dst_ctrl_conn_teardown(c, c->why);
        return;
    case CONN_OPEN:
        if (frame_started(c)) {
            snprintf(text, sizeof(text), "frame incomplete after %u ms (%zu of %zu bytes)",
                     (unsigned)c->opts.frame_timeout_ms,
                     c->hdr_got < DST_CTRL_HEADER_LEN ? c->hdr_got
                                                      : DST_CTRL_HEADER_LEN + c->body_got,
                     c->hdr_got < DST_CTRL_HEADER_LEN ? (size_t)DST_CTRL_HEADER_LEN
                                                      : DST_CTRL_HEADER_LEN + c->body_len);
        } else {
            snprintf(text, sizeof(text), "no message for %u ms", (unsigned)c->opts.idle_timeout_ms);
        }
        frame_error(c, DSI_ERR_TIMEOUT, text);
        return;
    case CONN_CLOSED:
        return;
    }
}

void dst_ctrl_conn_opened(dst_ctrl_conn_t *c)
{
    c->state = CONN_OPEN;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (rc != 0) {
        DSI_ERROR("control connection %s: cannot read: %s", c->peer, uv_strerror(rc));
        dst_ctrl_conn_teardown(c, DSI_ERR_CONNECTION);
        return;
    }
    timer_restart(c, c->opts.idle_timeout_ms);
    /* Nothing joins the pending list now: sends while OPEN or closing never queue there. */
    dsi_list_t *l;
    while ((l = dsi_list_pop_front(&c->pending)) != NULL) {
        dst_ctrl_frame_t *f = dsi_container_of(l, dst_ctrl_frame_t, link);
        if (c->state != CONN_OPEN) {
            c->queued -= f->buf.len;
            free(f->buf.base);
            free(f);
        } else {
            frame_write(c, f);
        }
    }
    if (c->state == CONN_OPEN && c->cb.on_open != NULL)
        c->cb.on_open(c, c->cb.arg);
}

const char *dst_ctrl_conn_peer(const dst_ctrl_conn_t *c)
{
    return c->peer;
}

void dst_ctrl_conn_set_data(dst_ctrl_conn_t *c, void *data)
{
    c->data = data;
}

void *dst_ctrl_conn_data(const dst_ctrl_conn_t *c)
{
    return c->data;
}

size_t dst_ctrl_conn_queued(const dst_ctrl_conn_t *c)
{
    return c->queued;
}
