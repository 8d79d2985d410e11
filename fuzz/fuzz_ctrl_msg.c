/*
 * fuzz_ctrl_msg - control-protocol frames and message bodies (transport/control:
 * dst_ctrl_frame_parse, dst_msg_decode and its readers, dst_msg_check, dst_msg_peek_type).
 *
 * Input: a byte stream as a control connection receives it: frames of an 8-byte header ("DSC",
 * version, big-endian length) and a msgpack body, one after the other, cut where the connection
 * reader (dst_ctrl_conn.c) would stop: at a framing error or at an incomplete frame. Every body is
 * decoded; a refused one must leave an error text, an accepted one must pass dst_msg_check,
 * re-encode, decode again and re-encode to the same bytes (the encoding is canonical).
 */
#include <string.h>

#include "dst_ctrl.h"
#include "dst_ctrl_impl.h"
#include "dst_msg.h"
#include "fuzz_util.h"

/* Smaller than the 64 MiB default so that a claimed length is checked against a real limit. */
#define FUZZ_MAX_FRAME (1u << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

static void encode(const dst_msg_t *m, msgpack_sbuffer *sb)
{
    char err[256] = "";
    msgpack_sbuffer_init(sb);
    dsi_status_t st = dst_msg_encode(m, sb, err, sizeof(err));
    if (st != DSI_OK)
        fuzz_note("re-encoding a decoded %s failed: %s", dst_msg_type_name(m->type), err);
    FUZZ_CHECK(st == DSI_OK);
}

static void body(const char *buf, size_t len)
{
    dst_msg_t msg;
    char err[256];
    err[0] = '\0';
    memset(&msg, 0, sizeof(msg));
    if (dst_msg_decode(buf, len, &msg, err, sizeof(err)) != DSI_OK) {
        FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
        FUZZ_CHECK(msg.type == DST_MSG_NONE && msg.arena == NULL); /* untouched on failure */
        (void)dst_msg_type_name(dst_msg_peek_type(buf, len));
        return;
    }
    FUZZ_CHECK(dst_msg_peek_type(buf, len) == (uint32_t)msg.type);
    FUZZ_CHECK(dst_msg_check(&msg, err, sizeof(err)) == DSI_OK);
    msgpack_sbuffer a, b;
    encode(&msg, &a);
    dst_msg_t again;
    memset(&again, 0, sizeof(again));
    dsi_status_t st = dst_msg_decode(a.data, a.size, &again, err, sizeof(err));
    if (st != DSI_OK)
        fuzz_note("decoding a re-encoded %s failed: %s", dst_msg_type_name(msg.type), err);
    FUZZ_CHECK(st == DSI_OK);
    encode(&again, &b);
    FUZZ_CHECK(a.size == b.size && memcmp(a.data, b.data, a.size) == 0);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    dst_msg_free(&again);
    dst_msg_free(&msg);
    FUZZ_CHECK(msg.type == DST_MSG_NONE && msg.arena == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (size - off >= DST_CTRL_HEADER_LEN) {
        uint32_t len = 0;
        char err[160];
        if (dst_ctrl_frame_parse(data + off, FUZZ_MAX_FRAME, &len, err, sizeof(err)) != DSI_OK)
            break; /* broken framing closes the connection */
        FUZZ_CHECK(len <= FUZZ_MAX_FRAME);
        off += DST_CTRL_HEADER_LEN;
        if (size - off < len)
            break; /* incomplete frame: the reader waits (and times out) */
        /* An exactly sized copy, as the reader's body buffer, so ASan sees any overread. */
        char *copy = malloc(len ? len : 1);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, data + off, len);
        body(copy, len);
        free(copy);
        off += len;
    }
    return 0;
}
