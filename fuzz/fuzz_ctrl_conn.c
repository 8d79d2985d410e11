/*
 * fuzz_ctrl_conn - the control connection's frame reader (transport/control/dst_ctrl_conn.c: the
 * header/body state machine, the body buffer grown as bytes arrive, decoding, ERROR replies, the
 * refused-message limit, closing mid-frame) on a real libuv loop.
 *
 * A connection object (dst_ctrl_conn_new, as dst_ctrl_listen makes for an accepted socket) is
 * opened on one end of a socketpair; the harness writes the input into the other end in chunks,
 * running the loop after each so that the reader sees them as separate reads, reads back (and
 * drops) the ERROR replies, then shuts its end and runs the loop until the connection is closed.
 * Input: [1 byte: chunk size c, 0 = all at once][the byte stream]. Checks: on_close runs exactly
 * once; every delivered message passes dst_msg_check; the connection never frees or leaks memory
 * wrongly (ASan, LeakSanitizer).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dst_ctrl.h"
#include "dst_ctrl_impl.h"
#include "fuzz_util.h"

static uv_loop_t loop;
static int closed, msgs;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    signal(SIGPIPE, SIG_IGN);
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    return 0;
}

static void on_msg(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg)
{
    (void)conn, (void)arg;
    char err[256];
    FUZZ_CHECK(dst_msg_check(msg, err, sizeof(err)) == DSI_OK);
    msgs++;
}

static void on_close(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg)
{
    (void)conn, (void)why, (void)arg;
    closed++;
}

/* Reads and drops whatever the connection wrote back. */
static void drain(int fd)
{
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = data[0] ? data[0] : size;
    data++, size--;

    int fds[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    dst_ctrl_opts_t opts;
    dst_ctrl_opts_default(&opts);
    opts.max_frame = 1u << 16; /* a real limit that short inputs can exceed */
    opts.frame_timeout_ms = 0; /* no timers: the harness ends every input itself */
    dst_ctrl_cb_t cb = {.on_msg = on_msg, .on_close = on_close};
    dst_ctrl_conn_t *c = dst_ctrl_conn_new(&loop, &opts, &cb);
    FUZZ_CHECK(c != NULL);
    FUZZ_CHECK(uv_tcp_init(&loop, &c->tcp) == 0);
    c->tcp.data = c;
    c->tcp_inited = 1;
    FUZZ_CHECK(uv_tcp_open(&c->tcp, fds[0]) == 0);
    snprintf(c->peer, sizeof(c->peer), "fuzz");
    closed = msgs = 0;
    dst_ctrl_conn_opened(c);

    size_t off = 0;
    while (off < size && closed == 0) {
        size_t n = size - off < chunk ? size - off : chunk;
        ssize_t w = write(fds[1], data + off, n);
        if (w < 0 && errno != EAGAIN)
            break; /* the connection closed its end */
        if (w > 0)
            off += (size_t)w;
        uv_run(&loop, UV_RUN_NOWAIT);
        drain(fds[1]);
    }
    shutdown(fds[1], SHUT_WR);
    for (int i = 0; i < 1000 && closed == 0; i++) {
        uv_run(&loop, UV_RUN_ONCE);
        drain(fds[1]);
    }
    FUZZ_CHECK(closed == 1);
    /* Let the handles' close callbacks run (the connection frees itself after on_close). */
    uv_run(&loop, UV_RUN_NOWAIT);
    FUZZ_CHECK(closed == 1);
    close(fds[1]);
    return 0;
}
