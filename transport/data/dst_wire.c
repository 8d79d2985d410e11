/* dst_wire.c - encoding, decoding and validation of data-plane message headers. */
#include "dst_wire.h"

#include <math.h>
#include <msgpack.h>
#include <string.h>

#define HDR_FIELDS 12u

size_t dst_wire_dtype_size(uint8_t dtype)
{
    switch (dtype) {
    case DST_WIRE_F32:
        return 4;
    case DST_WIRE_BF16:
        return 2;
    case DST_WIRE_U8:
        return 1;
    default:
        return 0;
    }
}

const char *dst_wire_type_name(uint8_t type)
{
    switch (type) {
    case DST_WIRE_ACTIVATION:
        return "ACTIVATION";
    case DST_WIRE_DISPATCH:
        return "DISPATCH";
    case DST_WIRE_COMBINE:
        return "COMBINE";
    case DST_WIRE_KV:
        return "KV";
    default:
        return "unknown";
    }
}

/* Bounds keep every product below 2^64: rows <= 2^20, width <= 2^16, dtype <= 4 bytes. */
size_t dst_wire_tensor_bytes(const dst_wire_hdr_t *hdr)
{
    return (size_t)hdr->n_rows * hdr->width * dst_wire_dtype_size(hdr->dtype);
}

size_t dst_wire_side_offset(const dst_wire_hdr_t *hdr)
{
    size_t t = dst_wire_tensor_bytes(hdr);
    return (t + DST_WIRE_SIDE_ALIGN - 1) / DST_WIRE_SIDE_ALIGN * DST_WIRE_SIDE_ALIGN;
}

static size_t side_bytes(const dst_wire_hdr_t *hdr)
{
    switch (hdr->type) {
    case DST_WIRE_ACTIVATION:
        return (size_t)hdr->n_rows * sizeof(dst_wire_token_t);
    case DST_WIRE_DISPATCH:
        return (size_t)hdr->n_pairs * sizeof(dst_wire_pair_t);
    case DST_WIRE_KV:
        return sizeof(dst_wire_kv_t);
    default:
        return 0;
    }
}

size_t dst_wire_payload_bytes(const dst_wire_hdr_t *hdr)
{
    size_t side = side_bytes(hdr);
    return side == 0 ? dst_wire_tensor_bytes(hdr) : dst_wire_side_offset(hdr) + side;
}

/* msgpack-c's packer writes through a callback; this one fills a fixed buffer. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
} fixed_buf_t;

static int fixed_buf_write(void *data, const char *bytes, size_t len)
{
    fixed_buf_t *fb = data;
    if (len > fb->cap - fb->len)
        return -1;
    memcpy(fb->buf + fb->len, bytes, len);
    fb->len += len;
    return 0;
}

dsi_status_t dst_wire_hdr_encode(const dst_wire_hdr_t *hdr, void *buf, size_t cap, size_t *len)
{
    fixed_buf_t fb = {buf, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fixed_buf_write);
    const uint64_t fields[HDR_FIELDS] = {
        DST_WIRE_MAGIC, DST_WIRE_VERSION, hdr->type,  hdr->dtype,  hdr->src,   hdr->epoch,
        hdr->step,      hdr->micro_batch, hdr->layer, hdr->n_rows, hdr->width, hdr->n_pairs,
    };
    int rc = msgpack_pack_array(&pk, HDR_FIELDS);
    for (unsigned i = 0; i < HDR_FIELDS && rc == 0; i++)
        rc = msgpack_pack_uint64(&pk, fields[i]);
    if (rc != 0)
        return DSI_ERR_TOO_LARGE;
    *len = fb.len;
    return DSI_OK;
}

/*
 * A strict decoder for the one shape we accept (an array of unsigned integers). Hand-written
 * rather than msgpack_unpack() because that allocates a zone per message, and because accepting
 * only this shape rejects garbage early with a precise reason.
 */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} reader_t;

static int read_be(reader_t *r, unsigned n, uint64_t *out)
{
    if ((size_t)(r->end - r->p) < n)
        return -1;
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | r->p[i];
    r->p += n;
    *out = v;
    return 0;
}

static int read_uint(reader_t *r, uint64_t *out)
{
    if (r->p >= r->end)
        return -1;
    uint8_t tag = *r->p++;
    if (tag <= 0x7f) {
        *out = tag;
        return 0;
    }
    switch (tag) {
    case 0xcc:
        return read_be(r, 1, out);
    case 0xcd:
        return read_be(r, 2, out);
    case 0xce:
        return read_be(r, 4, out);
    case 0xcf:
        return read_be(r, 8, out);
    default:
        return -1;
    }
}

static int read_array_len(reader_t *r, uint64_t *out)
{
    if (r->p >= r->end)
        return -1;
    uint8_t tag = *r->p++;
    if ((tag & 0xf0) == 0x90) {
        *out = tag & 0x0f;
        return 0;
    }
    if (tag == 0xdc)
        return read_be(r, 2, out);
    if (tag == 0xdd)
        return read_be(r, 4, out);
    return -1;
}

dsi_status_t dst_wire_hdr_decode(const void *buf, size_t len, dst_wire_hdr_t *out, const char **why)
{
    reader_t r = {buf, (const uint8_t *)buf + len};
    uint64_t n, f[HDR_FIELDS];
    if (buf == NULL || len == 0) {
        *why = "empty header";
        return DSI_ERR_PROTOCOL;
    }
    if (read_array_len(&r, &n) != 0 || n != HDR_FIELDS) {
        *why = "header is not a msgpack array of 12 fields";
        return DSI_ERR_PROTOCOL;
    }
    for (unsigned i = 0; i < HDR_FIELDS; i++) {
        if (read_uint(&r, &f[i]) != 0) {
            *why = "header field is not an unsigned integer";
            return DSI_ERR_PROTOCOL;
        }
    }
    if (r.p != r.end) {
        *why = "trailing bytes after the header";
        return DSI_ERR_PROTOCOL;
    }
    if (f[0] != DST_WIRE_MAGIC) {
        *why = "bad magic";
        return DSI_ERR_PROTOCOL;
    }
    if (f[1] != DST_WIRE_VERSION) {
        *why = "unsupported wire version";
        return DSI_ERR_PROTOCOL;
    }
    /* Fields wider than their struct member would be truncated silently: reject them. */
    if (f[2] > UINT8_MAX || f[3] > UINT8_MAX || f[4] > UINT32_MAX || f[7] > UINT32_MAX ||
        f[8] > UINT32_MAX || f[9] > UINT32_MAX || f[10] > UINT32_MAX || f[11] > UINT32_MAX) {
        *why = "header field out of range";
        return DSI_ERR_PROTOCOL;
    }
    dst_wire_hdr_t h = {
        .type = (uint8_t)f[2],
        .dtype = (uint8_t)f[3],
        .src = (uint32_t)f[4],
        .epoch = f[5],
        .step = f[6],
        .micro_batch = (uint32_t)f[7],
        .layer = (uint32_t)f[8],
        .n_rows = (uint32_t)f[9],
        .width = (uint32_t)f[10],
        .n_pairs = (uint32_t)f[11],
    };
    *out = h;
    return DSI_OK;
}

static dsi_status_t reject(const char **why, const char *reason)
{
    *why = reason;
    return DSI_ERR_PROTOCOL;
}

dsi_status_t dst_wire_check(const dst_wire_hdr_t *hdr, size_t payload_bytes, const char **why)
{
    if (hdr->type < DST_WIRE_ACTIVATION || hdr->type > DST_WIRE_KV)
        return reject(why, "unknown message type");
    if (dst_wire_dtype_size(hdr->dtype) == 0)
        return reject(why, "unknown payload dtype");
    if ((hdr->type == DST_WIRE_KV) != (hdr->dtype == DST_WIRE_U8))
        return reject(why, "KV messages, and only they, carry bytes (dtype U8)");
    if (hdr->width == 0 || hdr->width > DST_WIRE_MAX_WIDTH)
        return reject(why, "width out of bounds");
    uint32_t max_rows = hdr->type == DST_WIRE_COMBINE ? DST_WIRE_MAX_TOKENS * DST_WIRE_MAX_TOPK
                                                      : DST_WIRE_MAX_TOKENS;
    if (hdr->n_rows == 0 || hdr->n_rows > max_rows)
        return reject(why, "row count out of bounds");
    if (hdr->type == DST_WIRE_DISPATCH) {
        if (hdr->n_pairs == 0 || (uint64_t)hdr->n_pairs > (uint64_t)hdr->n_rows * DST_WIRE_MAX_TOPK)
            return reject(why, "pair count out of bounds");
    } else if (hdr->n_pairs != 0) {
        return reject(why, "pairs in a message that carries none");
    }
    if (payload_bytes != dst_wire_payload_bytes(hdr))
        return reject(why, "payload size does not match the header");
    return DSI_OK;
}

static dsi_status_t check_pairs(const dst_wire_hdr_t *hdr, const dst_wire_pair_t *pairs,
                                const char **why)
{
    uint64_t prev = 0;
    for (uint32_t i = 0; i < hdr->n_pairs; i++) {
        const dst_wire_pair_t *p = &pairs[i];
        if (p->token >= hdr->n_rows)
            return reject(why, "pair token out of range");
        if (p->slot >= DST_WIRE_MAX_TOPK)
            return reject(why, "pair slot out of range");
        if (!isfinite(p->weight))
            return reject(why, "pair weight not finite");
        uint64_t key = (uint64_t)p->token * DST_WIRE_MAX_TOPK + p->slot + 1;
        if (key <= prev)
            return reject(why, "pairs not strictly increasing in (token, slot)");
        prev = key;
    }
    return DSI_OK;
}

dsi_status_t dst_wire_check_side(const dst_wire_hdr_t *hdr, const void *payload, const char **why)
{
    if (hdr->type == DST_WIRE_DISPATCH)
        return check_pairs(hdr, dst_wire_pairs(hdr, payload), why);
    if (hdr->type == DST_WIRE_KV) {
        const dst_wire_kv_t *k = dst_wire_kv(hdr, payload);
        if ((uint64_t)k->n_layers * k->n_tokens != hdr->n_rows || k->n_tokens > k->total ||
            (uint64_t)k->first + k->n_tokens > k->total)
            return reject(why, "KV record does not match the rows");
        if (k->reserved[0] != 0 || k->reserved[1] != 0 || k->reserved[2] != 0)
            return reject(why, "KV record reserved field not 0");
    }
    if (hdr->type == DST_WIRE_ACTIVATION) {
        const dst_wire_token_t *t = dst_wire_tokens(hdr, payload);
        for (uint32_t i = 0; i < hdr->n_rows; i++) {
            if (t[i].rollback > DST_WIRE_MAX_ROLLBACK)
                return reject(why, "token record rollback above DST_WIRE_MAX_ROLLBACK");
            if (t[i].token < 0)
                return reject(why, "token record with a negative token id");
            if (t[i].cached > t[i].pos)
                return reject(why, "token record's cached positions exceed its position");
        }
    }
    return DSI_OK;
}

const dst_wire_token_t *dst_wire_tokens(const dst_wire_hdr_t *hdr, const void *payload)
{
    if (hdr->type != DST_WIRE_ACTIVATION)
        return NULL;
    return (const dst_wire_token_t *)((const uint8_t *)payload + dst_wire_side_offset(hdr));
}

const dst_wire_pair_t *dst_wire_pairs(const dst_wire_hdr_t *hdr, const void *payload)
{
    if (hdr->type != DST_WIRE_DISPATCH)
        return NULL;
    return (const dst_wire_pair_t *)((const uint8_t *)payload + dst_wire_side_offset(hdr));
}

const dst_wire_kv_t *dst_wire_kv(const dst_wire_hdr_t *hdr, const void *payload)
{
    if (hdr->type != DST_WIRE_KV)
        return NULL;
    return (const dst_wire_kv_t *)((const uint8_t *)payload + dst_wire_side_offset(hdr));
}
