/*
 * dst_msg_scan.c - a structural pass over raw msgpack bytes before msgpack_unpack sees them.
 *
 * msgpack_unpack allocates room for an array or map as soon as it reads the count in its header,
 * so five bytes claiming 4 billion elements would make it ask for ~100 GB. This pass walks the
 * bytes without allocating and refuses any container claiming more elements than bytes remain
 * (every element takes at least one byte), nesting deeper than DST_MSG_MAX_DEPTH, ext types, the
 * reserved byte 0xc1, truncation and trailing bytes. After it, unpacking needs at most
 * len * sizeof(msgpack_object) bytes.
 */
#include <stdint.h>
#include <string.h>

#include "dst_msg_scan.h"

#include "dst_msg_impl.h"

static uint64_t be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * Classifies the head at p (avail bytes): head length, payload bytes that follow it, and the number
 * of child objects (arrays n, maps 2n). Returns 0, or -1 when the head itself is cut off or
 * invalid.
 */
static int head(const unsigned char *p, size_t avail, size_t *hlen, uint64_t *payload,
                uint64_t *children, const char **why)
{
    unsigned char c = p[0];
    *payload = 0;
    *children = 0;
    *hlen = 1;
    size_t lenbytes = 0; /* bytes of a big-endian length after the tag */
    int kind = 0;        /* 0 scalar, 1 bytes (str/bin), 2 array, 3 map */
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
        return 0;
    if (c >= 0x80 && c <= 0x8f) {
        *children = 2u * (c & 0x0f);
        return 0;
    }
    if (c >= 0x90 && c <= 0x9f) {
        *children = c & 0x0f;
        return 0;
    }
    if (c >= 0xa0 && c <= 0xbf) {
        *payload = c & 0x1f;
        return 0;
    }
    switch (c) {
    case 0xca:
        *payload = 4;
        return 0;
    case 0xcb:
        *payload = 8;
        return 0;
    case 0xcc:
    case 0xd0:
        *payload = 1;
        return 0;
    case 0xcd:
    case 0xd1:
        *payload = 2;
        return 0;
    case 0xce:
    case 0xd2:
        *payload = 4;
        return 0;
    case 0xcf:
    case 0xd3:
        *payload = 8;
        return 0;
    case 0xc4:
    case 0xd9:
        lenbytes = 1, kind = 1;
        break;
    case 0xc5:
    case 0xda:
        lenbytes = 2, kind = 1;
        break;
    case 0xc6:
    case 0xdb:
        lenbytes = 4, kind = 1;
        break;
    case 0xdc:
        lenbytes = 2, kind = 2;
        break;
    case 0xdd:
        lenbytes = 4, kind = 2;
        break;
    case 0xde:
        lenbytes = 2, kind = 3;
        break;
    case 0xdf:
        lenbytes = 4, kind = 3;
        break;
    case 0xc1:
        *why = "reserved byte 0xc1";
        return -1;
    default: /* 0xc7..0xc9, 0xd4..0xd8: ext types, never used by this protocol */
        *why = "ext type";
        return -1;
    }
    if (avail < 1 + lenbytes) {
        *why = "truncated";
        return -1;
    }
    uint64_t n = be(p + 1, lenbytes);
    *hlen = 1 + lenbytes;
    if (kind == 1)
        *payload = n;
    else if (kind == 2)
        *children = n;
    else
        *children = 2 * n;
    return 0;
}

dsi_status_t dst_msg_scan(const char *buf, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t off = 0;
    /* left[d]: objects still to read at depth d; depth 0 is the single top-level object. */
    uint64_t left[DST_MSG_MAX_DEPTH + 2];
    int depth = 0;
    left[0] = 1;
    while (depth >= 0) {
        if (left[depth] == 0) {
            depth--;
            continue;
        }
        if (off >= len) {
            dst_msg_errf(err, errlen, "body truncated at byte %zu", off);
            return DSI_ERR_PROTOCOL;
        }
        size_t hlen;
        uint64_t payload, children;
        const char *why = "invalid";
        if (head(p + off, len - off, &hlen, &payload, &children, &why) != 0) {
            dst_msg_errf(err, errlen, "body: %s at byte %zu", why, off);
            return DSI_ERR_PROTOCOL;
        }
        left[depth]--;
        off += hlen;
        if (payload > len - off) {
            dst_msg_errf(err, errlen, "body truncated: %llu bytes claimed at byte %zu, %zu left",
                         (unsigned long long)payload, off - hlen, len - off);
            return DSI_ERR_PROTOCOL;
        }
        off += (size_t)payload;
        if (children > 0) {
            if (children > len - off) {
                dst_msg_errf(err, errlen,
                             "body: container at byte %zu claims %llu elements, %zu bytes left",
                             off - hlen, (unsigned long long)children, len - off);
                return DSI_ERR_PROTOCOL;
            }
            if (depth + 1 > DST_MSG_MAX_DEPTH) {
                dst_msg_errf(err, errlen, "body nested deeper than %d", DST_MSG_MAX_DEPTH);
                return DSI_ERR_PROTOCOL;
            }
            left[++depth] = children;
        }
    }
    if (off != len) {
        dst_msg_errf(err, errlen, "%zu trailing bytes after the body", len - off);
        return DSI_ERR_PROTOCOL;
    }
    return DSI_OK;
}
