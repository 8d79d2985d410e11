/*
 * test_unit_kvcache_io.c - moving a sequence's KV rows between caches (dsn_kvcache_io.h): for
 * each storage type (f32, bf16, fp8) a cache of 150 positions is exported in chunks (out of
 * order) and imported into a cache of another pool: the stored bytes are identical, the length
 * is set only when the last chunk arrived. Between different storage types the rows are
 * converted (f32 -> bf16 equals storing the f32 row as bf16). Corrupt or truncated transfers are
 * refused with a reason and leave the cache without a length: a flipped data byte (checksum), a
 * short chunk, a chunk twice, a misaligned or out-of-range chunk, other layers or row width, an
 * unknown storage type, and a transfer larger than the pool or the sequence's limit.
 * A rounded cache's open block (positions 128..149) travels as f32 records in a chunk of its own,
 * so the receiver holds the sender's f32 rows of it (dsn_kvcache.h, "Open tail").
 * Moved stage boundaries: a 5-layer model split [0,3) + [3,5) is re-split [0,2) + [2,5); each
 * new cache gets its layers from the old holders (one from a copy kept aside, dsn_kvio_stash),
 * by layer range, out of order: the rows equal the originals, the transfer completes only with
 * every layer, and chunks of layers outside the receiver's, or a layer twice, are refused.
 */
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_kvcache_io.h"

#define LAYERS 3
#define ROW    40
#define LEN    150

static float value(int layer, int64_t pos, int j)
{
    return (float)((layer * 7919 + pos * 31 + j * 17) % 2001 - 1000) * 0.01f;
}

/* A cache of the model layers [base, base + n_layers), len positions filled with value(). */
static dsn_kvcache_t *make_slice(dsn_kv_dtype_t dt, int row, int n_layers, int base,
                                 int64_t max_blocks, int64_t len)
{
    dsn_kvpool_t *pool;
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(n_layers, row, dt, max_blocks, &pool), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 4096, &kv), DSI_OK);
    dsn_kvpool_release(pool);
    if (len > 0) {
        float r[ROW + 8];
        DSI_CHECK_INT_EQ(dsn_kvcache_reserve(kv, len), DSI_OK);
        for (int l = 0; l < n_layers; l++)
            for (int64_t p = 0; p < len; p++) {
                for (int j = 0; j < row; j++)
                    r[j] = value(base + l, p, j);
                dsn_kvcache_store(kv, l, p, r);
            }
        kv->length = len;
    }
    return kv;
}

static dsn_kvcache_t *make(dsn_kv_dtype_t dt, int row, int64_t max_blocks, int64_t len)
{
    return make_slice(dt, row, LAYERS, 0, max_blocks, len);
}

typedef struct {
    dsn_kvio_chunk_t meta;
    uint8_t *data;
    size_t bytes;
} chunk_t;

/* Exports src's LEN positions in chunks of `per` positions, the open block of a rounded cache
 * in a chunk of its own (as f32 records); returns how many. */
static int export_all(const dsn_kvcache_t *src, uint32_t per, chunk_t *out)
{
    int n = 0;
    uint32_t open = dsn_kvio_open_first(LEN, src->dtype);
    for (uint32_t first = 0, k; first < LEN; first += k, n++) {
        k = LEN - first < per ? LEN - first : per;
        if (first < open && first + k > open)
            k = open - first;
        dsn_kv_dtype_t rdt = dsn_kvio_record_dtype(src->dtype, first, LEN);
        out[n].bytes = dsn_kvio_bytes(src->n_layers, src->row, rdt, k);
        out[n].data = malloc(out[n].bytes);
        DSI_CHECK_INT_EQ(
            dsn_kvio_export(src, first, k, LEN, out[n].data, out[n].bytes, &out[n].meta), DSI_OK);
    }
    return n;
}

static void free_chunks(chunk_t *c, int n)
{
    for (int i = 0; i < n; i++)
        free(c[i].data);
}

/* Whether every stored row of a and b is the same as f32 values. */
static int same_rows(const dsn_kvcache_t *a, const dsn_kvcache_t *b, int64_t n)
{
    float x[ROW], y[ROW];
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = 0; p < n; p++) {
            dsn_kvcache_load(a, l, p, x);
            dsn_kvcache_load(b, l, p, y);
            if (memcmp(x, y, sizeof(x)) != 0)
                return 0;
        }
    return 1;
}

/* Same storage type: chunks in reverse order, the bytes and scales equal. */
static void round_trip(dsn_kv_dtype_t dt)
{
    dsn_kvcache_t *src = make(dt, ROW, 0, LEN), *dst = make(dt, ROW, 8, 0);
    chunk_t c[8];
    int n = export_all(src, DSN_KV_BLOCK, c);
    DSI_CHECK_INT_EQ(n, 3);
    dsn_kvio_rx_t rx;
    char why[256];
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rx, dst, LEN, why, sizeof(why)), DSI_OK);
    for (int i = n - 1; i >= 0; i--) {
        int complete = -1;
        DSI_CHECK_INT_EQ(dsn_kvio_rx_chunk(&rx, dst, &c[i].meta, c[i].data, c[i].bytes, &complete,
                                           why, sizeof(why)),
                         DSI_OK);
        DSI_CHECK_INT_EQ(complete, i == 0);
        DSI_CHECK_INT_EQ(dst->length, i == 0 ? LEN : 0);
    }
    DSI_CHECK(same_rows(src, dst, LEN));
    for (int l = 0; l < LAYERS; l++)
        for (int64_t b = 0; b < 3; b++) {
            int64_t rows = b < 2 ? DSN_KV_BLOCK : LEN - 2 * DSN_KV_BLOCK;
            dsk_matrix_t x = dsn_kvcache_block_matrix(src, l, b, rows, NULL);
            dsk_matrix_t y = dsn_kvcache_block_matrix(dst, l, b, rows, NULL);
            DSI_CHECK(memcmp(x.data, y.data, (size_t)rows * ROW * dsn_kv_dtype_size(dt)) == 0);
            if (dt == DSN_KV_FP8)
                DSI_CHECK(memcmp(dsn_kvcache_block_scales(src, l, b),
                                 dsn_kvcache_block_scales(dst, l, b), rows * sizeof(float)) == 0);
        }
    /* The open block travelled as f32: the receiver's next query reads what the sender's would
     * (the f32 rows, not the rounded ones). */
    float x[ROW], y[ROW];
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = dsn_kvio_open_first(LEN, dt); p < LEN; p++) {
            DSI_CHECK(dsn_kvcache_tail_row(dst, l, p) != NULL);
            dsn_kvcache_load_for(src, l, p, LEN, x);
            dsn_kvcache_load_for(dst, l, p, LEN, y);
            DSI_CHECK(memcmp(x, y, sizeof(x)) == 0);
            DSI_CHECK(x[1] == value(l, p, 1));
        }
    DSI_CHECK_INT_EQ(dsn_kvcache_check(dst->pool, &dst, 1), 0);
    /* The moved cache grows on its own. */
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(dst, LEN + 1), DSI_OK);
    dsn_kvio_rx_free(&rx);
    free_chunks(c, n);
    dsn_kvcache_destroy(src);
    dsn_kvcache_destroy(dst);
}

/* Another storage type on the receiver: converted like dsn_kvcache_store of the sender's values. */
static void convert(dsn_kv_dtype_t from, dsn_kv_dtype_t to)
{
    dsn_kvcache_t *src = make(from, ROW, 0, LEN), *dst = make(to, ROW, 0, 0);
    dsn_kvcache_t *want = make(to, ROW, 0, 0);
    float r[ROW];
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(want, LEN), DSI_OK);
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = 0; p < LEN; p++) {
            dsn_kvcache_load_for(src, l, p, LEN, r); /* the open block: its f32 rows */
            dsn_kvcache_store(want, l, p, r);
        }
    want->length = LEN;
    chunk_t c[8];
    int n = export_all(src, 2 * DSN_KV_BLOCK, c), complete = 0;
    DSI_CHECK_INT_EQ(n, 2);
    dsn_kvio_rx_t rx;
    char why[256];
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rx, dst, LEN, why, sizeof(why)), DSI_OK);
    for (int i = 0; i < n; i++)
        DSI_CHECK_INT_EQ(dsn_kvio_rx_chunk(&rx, dst, &c[i].meta, c[i].data, c[i].bytes, &complete,
                                           why, sizeof(why)),
                         DSI_OK);
    DSI_CHECK_INT_EQ(complete, 1);
    DSI_CHECK(same_rows(want, dst, LEN));
    dsn_kvio_rx_free(&rx);
    free_chunks(c, n);
    dsn_kvcache_destroy(src);
    dsn_kvcache_destroy(dst);
    dsn_kvcache_destroy(want);
}

/* One chunk into a fresh transfer must be refused with `needle` in the reason. */
static void refuse(dsn_kvcache_t *dst, const dsn_kvio_chunk_t *m, const void *data, size_t bytes,
                   const char *needle)
{
    dsn_kvio_rx_t rx;
    char why[256] = "";
    int complete = 0;
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rx, dst, LEN, why, sizeof(why)), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvio_rx_chunk(&rx, dst, m, data, bytes, &complete, why, sizeof(why)),
                     DSI_ERR_PROTOCOL);
    DSI_CHECK_INT_EQ(complete, 0);
    DSI_CHECK_INT_EQ(dst->length, 0);
    if (strstr(why, needle) == NULL)
        fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", why, needle);
    DSI_CHECK(strstr(why, needle) != NULL);
    dsn_kvio_rx_free(&rx);
    dsn_kvcache_clear(dst);
}

static void corrupt(void)
{
    dsn_kvcache_t *src = make(DSN_KV_BF16, ROW, 0, LEN), *dst = make(DSN_KV_BF16, ROW, 0, 0);
    chunk_t c[8];
    int n = export_all(src, DSN_KV_BLOCK, c);
    dsn_kvio_chunk_t m = c[1].meta;
    /* a flipped byte */
    c[1].data[100] ^= 0x10;
    refuse(dst, &m, c[1].data, c[1].bytes, "checksum");
    c[1].data[100] ^= 0x10;
    /* truncated */
    refuse(dst, &m, c[1].data, c[1].bytes - 2, "truncated");
    /* misaligned, beyond the transfer, an empty chunk */
    m.first = 10;
    refuse(dst, &m, c[1].data, c[1].bytes, "positions");
    m = c[1].meta;
    m.total = LEN + 64;
    refuse(dst, &m, c[1].data, c[1].bytes, "positions");
    m = c[2].meta;
    m.n_tokens = 0;
    refuse(dst, &m, c[2].data, 0, "positions");
    /* another layout or storage type */
    m = c[1].meta;
    m.n_layers = LAYERS + 1;
    refuse(dst, &m, c[1].data, c[1].bytes, "layers");
    m = c[1].meta;
    m.row = ROW - 1;
    refuse(dst, &m, c[1].data, c[1].bytes, "layers");
    m = c[1].meta;
    m.dtype = 7;
    refuse(dst, &m, c[1].data, c[1].bytes, "storage type");
    m = c[1].meta;
    m.dtype = DSN_KV_F32; /* bf16 bytes claimed as f32: the size does not fit */
    refuse(dst, &m, c[1].data, c[1].bytes, "bytes");
    /* the same chunk twice: the second is refused, and the transfer never completes */
    dsn_kvio_rx_t rx;
    char why[256];
    int complete = 0;
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rx, dst, LEN, why, sizeof(why)), DSI_OK);
    DSI_CHECK_INT_EQ(
        dsn_kvio_rx_chunk(&rx, dst, &c[0].meta, c[0].data, c[0].bytes, &complete, why, sizeof(why)),
        DSI_OK);
    DSI_CHECK_INT_EQ(
        dsn_kvio_rx_chunk(&rx, dst, &c[0].meta, c[0].data, c[0].bytes, &complete, why, sizeof(why)),
        DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(why, "twice") != NULL);
    DSI_CHECK_INT_EQ(complete, 0);
    DSI_CHECK_INT_EQ(dst->length, 0);
    dsn_kvio_rx_free(&rx);
    dsn_kvcache_clear(dst);
    /* no transfer started */
    DSI_CHECK_INT_EQ(
        dsn_kvio_rx_chunk(&rx, dst, &c[0].meta, c[0].data, c[0].bytes, &complete, why, sizeof(why)),
        DSI_ERR_PROTOCOL);
    /* export of positions the cache does not hold */
    uint8_t buf[64];
    DSI_CHECK_INT_EQ(dsn_kvio_export(src, 128, 64, LEN, c[0].data, c[0].bytes, &m),
                     DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvio_export(src, 0, 64, LEN, buf, sizeof(buf), &m), DSI_ERR_INVALID_ARG);
    free_chunks(c, n);
    dsn_kvcache_destroy(src);
    dsn_kvcache_destroy(dst);
}

/* One chunk of layers [layer, layer + n) and positions [first, first + k) of a cache (from
 * `base`) or of a stash (st != NULL). */
static chunk_t chunk_of(const dsn_kvcache_t *kv, uint32_t base, const dsn_kvio_stash_t *st,
                        uint32_t layer, uint32_t n, uint32_t first, uint32_t k)
{
    chunk_t c;
    dsn_kv_dtype_t dt = st != NULL ? (dsn_kv_dtype_t)st->dtype : kv->dtype;
    c.bytes = dsn_kvio_bytes((int)n, ROW, dsn_kvio_record_dtype(dt, first, LEN), k);
    c.data = malloc(c.bytes);
    dsi_status_t s =
        st != NULL
            ? dsn_kvio_stash_export(st, layer, n, first, k, LEN, c.data, c.bytes, &c.meta)
            : dsn_kvio_export_layers(kv, base, layer, n, first, k, LEN, c.data, c.bytes, &c.meta);
    DSI_CHECK_INT_EQ(s, DSI_OK);
    DSI_CHECK_INT_EQ(c.meta.layer, layer);
    DSI_CHECK_INT_EQ(c.meta.n_layers, n);
    return c;
}

/* Whether kv (model layers from base) holds value() at every row of its LEN positions. */
static int holds_values(const dsn_kvcache_t *kv, int base, dsn_kv_dtype_t dt)
{
    dsn_kvcache_t *want = make_slice(dt, ROW, kv->n_layers, base, 0, LEN);
    int same = kv->length == LEN;
    float x[ROW], y[ROW];
    for (int l = 0; l < kv->n_layers && same; l++)
        for (int64_t p = 0; p < LEN && same; p++) {
            dsn_kvcache_load_for(kv, l, p, LEN, x); /* the open block: its f32 rows */
            dsn_kvcache_load_for(want, l, p, LEN, y);
            same = memcmp(x, y, sizeof(x)) == 0;
        }
    dsn_kvcache_destroy(want);
    return same;
}

/* Old split A = layers [0,3), B = [3,5); new split C = [0,2), D = [2,5). A's rows were kept
 * aside (its cache is gone: a restart), B's cache is live. */
static void resplit(dsn_kv_dtype_t dt)
{
    dsn_kvcache_t *a = make_slice(dt, ROW, 3, 0, 0, LEN), *b = make_slice(dt, ROW, 2, 3, 0, LEN);
    dsn_kvio_stash_t st;
    DSI_CHECK_INT_EQ(dsn_kvio_stash_take(a, 0, LEN, &st), DSI_OK);
    DSI_CHECK_INT_EQ(st.n_layers, 3);
    dsn_kvcache_destroy(a);
    dsn_kvcache_t *c = make_slice(dt, ROW, 2, 0, 0, 0), *d = make_slice(dt, ROW, 3, 2, 0, 0);
    dsn_kvio_rx_t rc, rd;
    char why[256];
    int complete = 0;
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rc, c, LEN, why, sizeof(why)), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rd, d, LEN, why, sizeof(why)), DSI_OK);
    rd.base = 2;
    /* C: layers 0..1 from the stash, whole: its full blocks, then its open block (f32). */
    uint32_t open = dsn_kvio_open_first(LEN, dt);
    chunk_t x = chunk_of(NULL, 0, &st, 0, 2, 0, open);
    DSI_CHECK_INT_EQ(
        dsn_kvio_rx_chunk(&rc, c, &x.meta, x.data, x.bytes, &complete, why, sizeof(why)), DSI_OK);
    free(x.data);
    if (open < LEN) {
        DSI_CHECK_INT_EQ(x.meta.dtype, (uint32_t)dt);
        x = chunk_of(NULL, 0, &st, 0, 2, open, LEN - open);
        DSI_CHECK_INT_EQ(x.meta.dtype, (uint32_t)DSN_KV_F32);
        DSI_CHECK_INT_EQ(
            dsn_kvio_rx_chunk(&rc, c, &x.meta, x.data, x.bytes, &complete, why, sizeof(why)),
            DSI_OK);
        free(x.data);
    }
    DSI_CHECK_INT_EQ(complete, 1);
    DSI_CHECK(holds_values(c, 0, dt));
    /* D: layer 2 from the stash, layers 3..4 from B, in chunks of 64 positions, B's first. */
    chunk_t parts[6];
    int n = 0;
    for (uint32_t f = 0; f < LEN; f += DSN_KV_BLOCK) {
        uint32_t k = LEN - f < DSN_KV_BLOCK ? LEN - f : DSN_KV_BLOCK;
        parts[n++] = chunk_of(b, 3, NULL, 3, 2, f, k);
    }
    for (uint32_t f = 0; f < LEN; f += DSN_KV_BLOCK) {
        uint32_t k = LEN - f < DSN_KV_BLOCK ? LEN - f : DSN_KV_BLOCK;
        parts[n++] = chunk_of(NULL, 0, &st, 2, 1, f, k);
    }
    /* Layers this cache does not hold (below its first, past its last), and a layer twice. */
    chunk_t bad = chunk_of(NULL, 0, &st, 1, 2, 0, DSN_KV_BLOCK);
    DSI_CHECK_INT_EQ(
        dsn_kvio_rx_chunk(&rd, d, &bad.meta, bad.data, bad.bytes, &complete, why, sizeof(why)),
        DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(why, "layers") != NULL);
    dsn_kvio_chunk_t m = parts[0].meta;
    m.layer = 4; /* layers 4..5 of a cache ending at 4 */
    DSI_CHECK_INT_EQ(
        dsn_kvio_rx_chunk(&rd, d, &m, parts[0].data, parts[0].bytes, &complete, why, sizeof(why)),
        DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(why, "layers") != NULL);
    m.layer = UINT32_MAX; /* no wrap-around */
    DSI_CHECK_INT_EQ(
        dsn_kvio_rx_chunk(&rd, d, &m, parts[0].data, parts[0].bytes, &complete, why, sizeof(why)),
        DSI_ERR_PROTOCOL);
    m = parts[0].meta;
    m.n_layers = 0;
    DSI_CHECK_INT_EQ(dsn_kvio_rx_chunk(&rd, d, &m, parts[0].data, 0, &complete, why, sizeof(why)),
                     DSI_ERR_PROTOCOL);
    for (int i = 0; i < n; i++) {
        DSI_CHECK_INT_EQ(dsn_kvio_rx_chunk(&rd, d, &parts[i].meta, parts[i].data, parts[i].bytes,
                                           &complete, why, sizeof(why)),
                         DSI_OK);
        DSI_CHECK_INT_EQ(complete, i == n - 1); /* not before every layer of every position */
        DSI_CHECK_INT_EQ(d->length, i == n - 1 ? LEN : 0);
        if (i == 0) { /* the same rows again: refused, the transfer goes on */
            DSI_CHECK_INT_EQ(dsn_kvio_rx_chunk(&rd, d, &parts[0].meta, parts[0].data,
                                               parts[0].bytes, &complete, why, sizeof(why)),
                             DSI_ERR_PROTOCOL);
            DSI_CHECK(strstr(why, "twice") != NULL);
        }
    }
    DSI_CHECK(holds_values(d, 2, dt));
    /* Exports of layers or positions a cache or a stash does not hold. */
    DSI_CHECK_INT_EQ(dsn_kvio_export_layers(b, 3, 2, 1, 0, 64, LEN, bad.data, bad.bytes, &m),
                     DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvio_export_layers(b, 3, 4, 2, 0, 64, LEN, bad.data, bad.bytes, &m),
                     DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvio_stash_export(&st, 2, 2, 0, 64, LEN, bad.data, bad.bytes, &m),
                     DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvio_stash_export(&st, 0, 1, 128, 64, LEN, bad.data, bad.bytes, &m),
                     DSI_ERR_INVALID_ARG);
    dsn_kvio_stash_t none;
    DSI_CHECK_INT_EQ(dsn_kvio_stash_take(b, 3, LEN + 1, &none), DSI_ERR_INVALID_ARG);
    DSI_CHECK(none.data == NULL);
    for (int i = 0; i < n; i++)
        free(parts[i].data);
    free(bad.data);
    dsn_kvio_stash_free(&st);
    dsn_kvio_rx_free(&rc);
    dsn_kvio_rx_free(&rd);
    dsn_kvcache_destroy(b);
    dsn_kvcache_destroy(c);
    dsn_kvcache_destroy(d);
}

/* No room: a pool of 2 blocks cannot take 150 positions; a cache limited to 100 neither. */
static void no_room(void)
{
    dsn_kvcache_t *dst = make(DSN_KV_FP8, ROW, 2, 0);
    dsn_kvio_rx_t rx;
    char why[256] = "";
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rx, dst, LEN, why, sizeof(why)), DSI_ERR_CAPACITY);
    DSI_CHECK(strstr(why, "no room") != NULL);
    DSI_CHECK_INT_EQ(dst->n_blocks, 0);
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rx, dst, 0, why, sizeof(why)), DSI_ERR_INVALID_ARG);
    dsn_kvcache_destroy(dst);
    dsn_kvpool_t *pool;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, DSN_KV_F32, 0, &pool), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 100, &dst), DSI_OK);
    dsn_kvpool_release(pool);
    DSI_CHECK_INT_EQ(dsn_kvio_rx_start(&rx, dst, LEN, why, sizeof(why)), DSI_ERR_CAPACITY);
    DSI_CHECK(strstr(why, "limit") != NULL);
    dsn_kvcache_destroy(dst);
    /* chunk sizes: whole blocks, at least one */
    DSI_CHECK_INT_EQ(dsn_kvio_chunk_tokens(LAYERS, ROW, DSN_KV_F32, 1), DSN_KV_BLOCK);
    DSI_CHECK_INT_EQ(dsn_kvio_chunk_tokens(LAYERS, ROW, DSN_KV_F32,
                                           4 * dsn_kvio_bytes(LAYERS, ROW, DSN_KV_F32, 64)),
                     4 * DSN_KV_BLOCK);
}

int main(void)
{
    round_trip(DSN_KV_F32);
    round_trip(DSN_KV_BF16);
    round_trip(DSN_KV_FP8);
    convert(DSN_KV_F32, DSN_KV_BF16);
    convert(DSN_KV_BF16, DSN_KV_FP8);
    convert(DSN_KV_FP8, DSN_KV_F32);
    corrupt();
    no_room();
    resplit(DSN_KV_F32);
    resplit(DSN_KV_BF16);
    resplit(DSN_KV_FP8);
    return dsi_test_finish();
}
