/* Data-plane header codec and validation (dst_wire): round trips, real msgpack, hostile bytes. */
#include <msgpack.h>
#include <stdlib.h>

#include "dsi_test.h"
#include "dst_wire.h"

static dst_wire_hdr_t sample_dispatch(void)
{
    dst_wire_hdr_t h = {
        .type = DST_WIRE_DISPATCH,
        .dtype = DST_WIRE_F32,
        .src = 7,
        .epoch = 0x123456789ull,
        .step = 42,
        .micro_batch = 3,
        .layer = 60,
        .n_rows = 4,
        .width = 7168,
        .n_pairs = 5,
    };
    return h;
}

static int hdr_eq(const dst_wire_hdr_t *a, const dst_wire_hdr_t *b)
{
    return a->type == b->type && a->dtype == b->dtype && a->src == b->src && a->epoch == b->epoch &&
           a->step == b->step && a->micro_batch == b->micro_batch && a->layer == b->layer &&
           a->n_rows == b->n_rows && a->width == b->width && a->n_pairs == b->n_pairs;
}

static void test_round_trip(void)
{
    dst_wire_hdr_t h = sample_dispatch(), d;
    uint8_t buf[DST_WIRE_HDR_MAX];
    size_t len;
    const char *why = NULL;
    DSI_CHECK_INT_EQ(dst_wire_hdr_encode(&h, buf, sizeof(buf), &len), DSI_OK);
    DSI_CHECK(len < 64);
    DSI_CHECK_INT_EQ(dst_wire_hdr_decode(buf, len, &d, &why), DSI_OK);
    DSI_CHECK(hdr_eq(&h, &d));
    /* The largest values still fit DST_WIRE_HDR_MAX. */
    dst_wire_hdr_t big = {255,        255,        UINT32_MAX, UINT64_MAX, UINT64_MAX,
                          UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX};
    DSI_CHECK_INT_EQ(dst_wire_hdr_encode(&big, buf, sizeof(buf), &len), DSI_OK);
    DSI_CHECK_INT_EQ(dst_wire_hdr_decode(buf, len, &d, &why), DSI_OK);
    DSI_CHECK(hdr_eq(&big, &d));
    DSI_CHECK_INT_EQ(dst_wire_hdr_encode(&big, buf, 10, &len), DSI_ERR_TOO_LARGE);
}

/* What we send must be ordinary msgpack that any implementation reads. */
static void test_is_msgpack(void)
{
    dst_wire_hdr_t h = sample_dispatch();
    uint8_t buf[DST_WIRE_HDR_MAX];
    size_t len;
    dst_wire_hdr_encode(&h, buf, sizeof(buf), &len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    DSI_CHECK_INT_EQ(msgpack_unpack_next(&u, (const char *)buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    DSI_CHECK_INT_EQ(off, len);
    DSI_CHECK_INT_EQ(u.data.type, MSGPACK_OBJECT_ARRAY);
    DSI_CHECK_INT_EQ(u.data.via.array.size, 12);
    if (u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 12) {
        DSI_CHECK_INT_EQ(u.data.via.array.ptr[0].via.u64, DST_WIRE_MAGIC);
        DSI_CHECK_INT_EQ(u.data.via.array.ptr[5].via.u64, h.epoch);
        DSI_CHECK_INT_EQ(u.data.via.array.ptr[10].via.u64, 7168);
    }
    msgpack_unpacked_destroy(&u);
}

static void expect_decode_error(const uint8_t *buf, size_t len, const char *what)
{
    dst_wire_hdr_t d;
    const char *why = NULL;
    dsi_status_t st = dst_wire_hdr_decode(buf, len, &d, &why);
    if (st != DSI_ERR_PROTOCOL || why == NULL)
        fprintf(stderr, "decode of %s: expected DSI_ERR_PROTOCOL\n", what);
    DSI_CHECK_INT_EQ(st, DSI_ERR_PROTOCOL);
    DSI_CHECK(why != NULL);
}

static void test_hostile_headers(void)
{
    dst_wire_hdr_t h = sample_dispatch(), d;
    uint8_t buf[DST_WIRE_HDR_MAX], copy[DST_WIRE_HDR_MAX];
    size_t len;
    const char *why;
    dst_wire_hdr_encode(&h, buf, sizeof(buf), &len);
    /* Every truncation fails cleanly (ASan would catch a read past len). */
    int trunc_ok = 1;
    for (size_t n = 0; n < len; n++) {
        uint8_t *t = malloc(n + 1);
        memcpy(t, buf, n);
        if (dst_wire_hdr_decode(n ? t : NULL, n, &d, &why) != DSI_ERR_PROTOCOL)
            trunc_ok = 0;
        free(t);
    }
    DSI_CHECK(trunc_ok);
    /* Trailing garbage, wrong magic, wrong version, a float field, a negative int, a map. */
    memcpy(copy, buf, len);
    copy[len] = 0x01;
    expect_decode_error(copy, len + 1, "trailing byte");
    dst_wire_hdr_t wrong = h;
    uint8_t enc[DST_WIRE_HDR_MAX];
    size_t elen;
    dst_wire_hdr_encode(&wrong, enc, sizeof(enc), &elen);
    enc[1] = 0xce; /* magic is the first field: its bytes follow 0xce */
    enc[2] ^= 0xff;
    expect_decode_error(enc, elen, "bad magic");
    dst_wire_hdr_encode(&h, enc, sizeof(enc), &elen);
    enc[6] = 3; /* version, a positive fixint right after the 5-byte magic */
    expect_decode_error(enc, elen, "version 3");
    const uint8_t floaty[] = {0x9c, 0xce, 0x44, 0x53, 0x54, 0x57, 0x02, 0xca, 0, 0, 0, 0};
    expect_decode_error(floaty, sizeof(floaty), "float field");
    const uint8_t negative[] = {0x9c, 0xce, 0x44, 0x53, 0x54, 0x57, 0x02, 0xff};
    expect_decode_error(negative, sizeof(negative), "negative int");
    const uint8_t map[] = {0x81, 0x01, 0x02};
    expect_decode_error(map, sizeof(map), "map");
    const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    expect_decode_error(huge_array, sizeof(huge_array), "array of 2^32-1");
    /* A type field wider than uint8 must not be truncated into a valid type. */
    dst_wire_hdr_encode(&h, enc, sizeof(enc), &elen);
    uint8_t wide[DST_WIRE_HDR_MAX] = {0x9c, 0xce, 0x44, 0x53, 0x54, 0x57, 0x02, 0xcd, 0x01, 0x02};
    memcpy(wide + 10, enc + 8, elen - 8);
    expect_decode_error(wide, elen + 2, "type 258");
    /* Random bytes never crash or decode; a valid prefix plus noise only must not crash. */
    dsi_test_seed(11);
    int decoded = 0;
    for (int i = 0; i < 20000; i++) {
        uint8_t r[64];
        size_t n = dsi_test_randu() % sizeof(r);
        for (size_t j = 0; j < n; j++)
            r[j] = (uint8_t)dsi_test_randu();
        if (i % 2)
            memcpy(r, buf, n < len ? n / 2 : len / 2); /* a valid prefix, then noise */
        dsi_status_t st = dst_wire_hdr_decode(r, n, &d, &why);
        decoded += i % 2 == 0 && st == DSI_OK;
    }
    DSI_CHECK_INT_EQ(decoded, 0);
}

static void test_check(void)
{
    dst_wire_hdr_t h = sample_dispatch();
    const char *why = NULL;
    size_t tensor = 4u * 7168 * 4;
    DSI_CHECK_INT_EQ(dst_wire_tensor_bytes(&h), tensor);
    DSI_CHECK_INT_EQ(dst_wire_side_offset(&h), tensor);
    DSI_CHECK_INT_EQ(dst_wire_payload_bytes(&h), tensor + 5 * sizeof(dst_wire_pair_t));
    DSI_CHECK_INT_EQ(dst_wire_check(&h, dst_wire_payload_bytes(&h), &why), DSI_OK);
    DSI_CHECK_INT_EQ(dst_wire_check(&h, dst_wire_payload_bytes(&h) - 1, &why), DSI_ERR_PROTOCOL);
    DSI_CHECK_STR_EQ(why, "payload size does not match the header");

    dst_wire_hdr_t b = h;
    b.dtype = DST_WIRE_BF16;
    b.width = 3; /* 4 x 3 x 2 = 24 bytes of tensor: side section at 24 */
    b.n_rows = 1;
    b.n_pairs = 1;
    DSI_CHECK_INT_EQ(dst_wire_side_offset(&b), 8);
    DSI_CHECK_INT_EQ(dst_wire_payload_bytes(&b), 8 + 12);

    dst_wire_hdr_t bad;
    size_t big = (size_t)1 << 40;
    bad = h, bad.type = 9;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, big, &why), DSI_ERR_PROTOCOL);
    DSI_CHECK_STR_EQ(why, "unknown message type");
    bad = h, bad.dtype = 7;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, big, &why), DSI_ERR_PROTOCOL);
    bad = h, bad.width = 0;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, 0, &why), DSI_ERR_PROTOCOL);
    bad = h, bad.n_rows = DST_WIRE_MAX_TOKENS + 1;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, dst_wire_payload_bytes(&bad), &why), DSI_ERR_PROTOCOL);
    DSI_CHECK_STR_EQ(why, "row count out of bounds");
    bad = h, bad.n_pairs = 0;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, dst_wire_payload_bytes(&bad), &why), DSI_ERR_PROTOCOL);
    bad = h, bad.n_pairs = 4 * DST_WIRE_MAX_TOPK + 1;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, dst_wire_payload_bytes(&bad), &why), DSI_ERR_PROTOCOL);
    bad = h, bad.type = DST_WIRE_COMBINE;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, dst_wire_tensor_bytes(&bad), &why), DSI_ERR_PROTOCOL);
    DSI_CHECK_STR_EQ(why, "pairs in a message that carries none");
    bad.n_pairs = 0;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, dst_wire_tensor_bytes(&bad), &why), DSI_OK);
}

static void test_side(void)
{
    dst_wire_hdr_t h = sample_dispatch();
    h.width = 2;
    h.n_rows = 3;
    h.n_pairs = 3;
    const char *why = NULL;
    /* tensor 3 x 2 f32 = 24 bytes, then 3 pairs */
    uint64_t storage[(24 + 36 + 7) / 8];
    memset(storage, 0, sizeof(storage));
    dst_wire_pair_t *p = (dst_wire_pair_t *)((uint8_t *)storage + 24);
    DSI_CHECK(dst_wire_pairs(&h, storage) == p);
    dst_wire_pair_t good[3] = {{0, 0, 5, 0.5f}, {0, 3, 9, 0.25f}, {2, 1, 200, 1.0f}};
    memcpy(p, good, sizeof(good));
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_OK);
    p[2].token = 3;
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_ERR_PROTOCOL);
    DSI_CHECK_STR_EQ(why, "pair token out of range");
    memcpy(p, good, sizeof(good));
    p[1].slot = 0; /* duplicate (0, 0) */
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_ERR_PROTOCOL);
    memcpy(p, good, sizeof(good));
    p[1].weight = NAN;
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_ERR_PROTOCOL);
    memcpy(p, good, sizeof(good));
    p[0].slot = DST_WIRE_MAX_TOPK;
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_ERR_PROTOCOL);

    dst_wire_hdr_t a = h;
    a.type = DST_WIRE_ACTIVATION;
    a.n_pairs = 0;
    uint64_t act[(24 + 72) / 8];
    memset(act, 0, sizeof(act));
    DSI_CHECK_INT_EQ(dst_wire_payload_bytes(&a), 24 + 72);
    dst_wire_token_t *t = (dst_wire_token_t *)((uint8_t *)act + 24);
    DSI_CHECK(dst_wire_tokens(&a, act) == t);
    DSI_CHECK(dst_wire_pairs(&a, act) == NULL);
    DSI_CHECK_INT_EQ(dst_wire_check_side(&a, act, &why), DSI_OK);
    t[1].rollback = 8; /* a speculative step's rejected drafts: fine */
    DSI_CHECK_INT_EQ(dst_wire_check_side(&a, act, &why), DSI_OK);
    t[1].rollback = DST_WIRE_MAX_ROLLBACK + 1;
    DSI_CHECK_INT_EQ(dst_wire_check_side(&a, act, &why), DSI_ERR_PROTOCOL);
    t[1].rollback = 0;
    t[1].token = -1; /* token ids are never negative */
    DSI_CHECK_INT_EQ(dst_wire_check_side(&a, act, &why), DSI_ERR_PROTOCOL);
    t[1].token = 7;
    t[1].pos = 64;
    t[1].cached = 64; /* positions 0..63 came from the prefix cache: fine */
    DSI_CHECK_INT_EQ(dst_wire_check_side(&a, act, &why), DSI_OK);
    t[1].cached = 65; /* more positions than come before it */
    DSI_CHECK_INT_EQ(dst_wire_check_side(&a, act, &why), DSI_ERR_PROTOCOL);
}

/* KV: bytes (U8) only, one side record matching the rows. */
static void test_kv(void)
{
    dst_wire_hdr_t h = {
        .type = DST_WIRE_KV, .dtype = DST_WIRE_U8, .epoch = 3, .n_rows = 2 * 5, .width = 13};
    const char *why = NULL;
    DSI_CHECK_INT_EQ(dst_wire_side_offset(&h), 136);
    DSI_CHECK_INT_EQ(dst_wire_payload_bytes(&h), 136 + sizeof(dst_wire_kv_t));
    DSI_CHECK_INT_EQ(sizeof(dst_wire_kv_t), 40);
    DSI_CHECK_INT_EQ(dst_wire_check(&h, dst_wire_payload_bytes(&h), &why), DSI_OK);
    DSI_CHECK_STR_EQ(dst_wire_type_name(DST_WIRE_KV), "KV");
    uint64_t storage[(136 + 40) / 8];
    memset(storage, 0, sizeof(storage));
    dst_wire_kv_t *k = (dst_wire_kv_t *)((uint8_t *)storage + 136);
    DSI_CHECK(dst_wire_kv(&h, storage) == k);
    *k = (dst_wire_kv_t){.seq_id = 9,
                         .first = 64,
                         .n_tokens = 5,
                         .total = 69,
                         .n_layers = 2,
                         .row = 3,
                         .kv_dtype = 1};
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_OK);
    k->n_layers = 3; /* 15 rows claimed, 10 sent */
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_ERR_PROTOCOL);
    DSI_CHECK_STR_EQ(why, "KV record does not match the rows");
    k->n_layers = 2;
    k->total = 68; /* positions past the transfer */
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_ERR_PROTOCOL);
    k->total = 69;
    k->reserved[1] = 1;
    DSI_CHECK_INT_EQ(dst_wire_check_side(&h, storage, &why), DSI_ERR_PROTOCOL);
    DSI_CHECK_STR_EQ(why, "KV record reserved field not 0");
    dst_wire_hdr_t bad = h;
    bad.dtype = DST_WIRE_F32;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, dst_wire_payload_bytes(&bad), &why), DSI_ERR_PROTOCOL);
    bad = h, bad.type = DST_WIRE_ACTIVATION;
    DSI_CHECK_INT_EQ(dst_wire_check(&bad, dst_wire_payload_bytes(&bad), &why), DSI_ERR_PROTOCOL);
    DSI_CHECK_INT_EQ(dst_wire_check(&h, dst_wire_payload_bytes(&h) - 40, &why), DSI_ERR_PROTOCOL);
    DSI_CHECK(dst_wire_kv(&bad, storage) == NULL);
}

int main(void)
{
    test_kv();
    test_round_trip();
    test_is_msgpack();
    test_hostile_headers();
    test_check();
    test_side();
    return dsi_test_finish();
}
