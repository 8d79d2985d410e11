/*
 * test_unit_kvtail.c - the open tail of a rounded cache (dsn_kvcache.h, "Open tail"), without an
 * engine: a bf16 and an fp8 cache grow in batches of 1, 5 and 37 positions (reserve, store,
 * advance, as the engine does) past the block boundaries at 64 and 128, sealed every block and
 * every 8 positions. After every batch, the next token reads each earlier row as f32 when it is in
 * the token's seal group and rounded otherwise; the f32 copies take one block between batches (two
 * right after a batch that crossed a boundary); a rollback across the boundary finds the f32 rows
 * again (a truncation two blocks back reads that block rounded); a fork takes the open block's
 * f32 rows; the pool's accounting is consistent. An f32 cache
 * has no tail and reads every row as stored. The tail is charged to the pool in blocks: a pool
 * too small for another tail refuses it with DSI_ERR_CAPACITY, as admission predicts, and its
 * memory comes out of the pool's.
 */
#include <string.h>

#include "dsi_test.h"
#include "dsn_kvcache.h"

#define LAYERS 2
#define ROW    9
#define LEN    200

static float value(int layer, int64_t pos, int j)
{
    return (float)((layer * 7919 + pos * 31 + j * 17) % 2001 - 1000) * 0.013f;
}

/* Whether the token at q reads every row before it as the seal rule says. */
static int reads_ok(const dsn_kvcache_t *kv, int64_t q)
{
    float got[ROW], rounded[ROW];
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = 0; p < q; p++) {
            dsn_kvcache_load_for(kv, l, p, q, got);
            dsn_kvcache_load(kv, l, p, rounded);
            int own = kv->dtype != DSN_KV_F32 && p >= q - q % kv->seal;
            for (int j = 0; j < ROW; j++) {
                float want = own ? value(l, p, j) : rounded[j];
                if (got[j] != want) {
                    fprintf(stderr, "  %s seal %d: row %lld read by %lld: %g, want %g\n",
                            dsn_kv_dtype_name(kv->dtype), kv->seal, (long long)p, (long long)q,
                            got[j], want);
                    return 0;
                }
            }
        }
    return 1;
}

/* A batch of positions [length, to), as the engine writes it. */
static void batch(dsn_kvcache_t *kv, int64_t to)
{
    float row[ROW];
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(kv, to), DSI_OK);
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = kv->length; p < to; p++) {
            for (int j = 0; j < ROW; j++)
                row[j] = value(l, p, j);
            dsn_kvcache_store(kv, l, p, row);
        }
    dsn_kvcache_advance(kv, to);
}

static void grow(dsn_kv_dtype_t dt, int seal)
{
    dsn_kvpool_t *pool;
    dsn_kvcache_t *kv, *fork;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, dt, 0, &pool), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvpool_test_seal(pool, seal), 0);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 4096, &kv), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 4096, &fork), DSI_OK);
    dsn_kvpool_release(pool);
    static const int64_t steps[] = {1, 5, 37};
    for (int i = 0; kv->length < LEN; i++) {
        int64_t from = kv->length, to = from + steps[i % 3];
        batch(kv, to);
        DSI_CHECK(reads_ok(kv, to));
        int crossed = from / DSN_KV_BLOCK != to / DSN_KV_BLOCK;
        DSI_CHECK(kv->tail_cap <= (dt == DSN_KV_F32 ? 0 : crossed ? 2 : 1));
        DSI_CHECK_INT_EQ(dsn_kvcache_check(kv->pool, &kv, 1), 0);
    }
    /* Drafts across 128 rolled back to 126: the f32 rows of 64..125 are there again. */
    dsn_kvcache_clear(kv);
    batch(kv, 100);
    batch(kv, 126);
    batch(kv, 133);
    dsn_kvcache_truncate(kv, 126);
    DSI_CHECK(reads_ok(kv, 126));
    batch(kv, 127);
    DSI_CHECK(reads_ok(kv, 127));
    /* A fork at 150 of a cache of 160 takes the open block's f32 rows. */
    batch(kv, 160);
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(fork, kv, 150), DSI_OK);
    DSI_CHECK(reads_ok(fork, 150));
    dsn_kvcache_t *both[2] = {kv, fork};
    DSI_CHECK_INT_EQ(dsn_kvcache_check(kv->pool, both, 2), 0);
    /* A truncation two blocks back (no rollback does that) finds that block's rows rounded. */
    dsn_kvcache_truncate(kv, 60);
    batch(kv, 61);
    float x[ROW], y[ROW];
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = 0; p < 60; p++) {
            dsn_kvcache_load_for(kv, l, p, 61, x);
            dsn_kvcache_load(kv, l, p, y);
            DSI_CHECK(memcmp(x, y, sizeof(x)) == 0);
        }
    /* Preemption: nothing is left, and the cache grows again from 0. */
    dsn_kvcache_clear(kv);
    DSI_CHECK_INT_EQ(kv->tail_cap, 0);
    batch(kv, 70);
    DSI_CHECK(reads_ok(kv, 70));
    dsn_kvcache_destroy(kv);
    dsn_kvcache_destroy(fork);
}

/* The blocks charged for one f32 block of rows: its bytes rounded up to the pool's blocks. */
static int64_t tail_k(dsn_kv_dtype_t dt)
{
    if (dt == DSN_KV_F32)
        return 0;
    uint64_t f = dsn_kvpool_block_bytes(LAYERS, ROW, DSN_KV_F32);
    uint64_t b = dsn_kvpool_block_bytes(LAYERS, ROW, dt);
    return (int64_t)((f + b - 1) / b);
}

static void check_pool(dsn_kvpool_t *pool, int64_t used, int64_t tail)
{
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(pool, &st);
    DSI_CHECK_INT_EQ(st.used, used);
    DSI_CHECK_INT_EQ(st.tail, tail);
    DSI_CHECK_INT_EQ(st.used + st.free + st.cached, st.total);
    DSI_CHECK(st.allocated + st.tail <= st.total);
}

/* A pool with room for a's rows and tail and one block more: b's first token needs a block and
 * a tail, which admission sees does not fit; reserve refuses it (DSI_ERR_CAPACITY) until a is
 * preempted, then b fits. */
static void tail_limit(dsn_kv_dtype_t dt)
{
    int64_t k = tail_k(dt);
    DSI_CHECK_INT_EQ(k, dt == DSN_KV_BF16 ? 2 : dt == DSN_KV_FP8 ? 3 : 0);
    dsn_kvpool_t *pool;
    dsn_kvcache_t *a, *b;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, dt, 2 + k, &pool), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 4096, &a), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 4096, &b), DSI_OK);
    dsn_kvpool_release(pool);
    /* Every block's memory made, then freed: a tail's bytes take the place of free blocks'. */
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve_blocks(a, (2 + k) * DSN_KV_BLOCK), DSI_OK);
    dsn_kvcache_clear(a);
    check_pool(pool, 0, 0);
    DSI_CHECK_INT_EQ(dsn_kvcache_blocks_needed(a, 10), 1 + k);
    batch(a, 10);
    check_pool(pool, 1 + k, k);
    DSI_CHECK_INT_EQ(dsn_kvcache_blocks_needed(b, 1), 1 + k);
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(pool, &st);
    if (dt != DSN_KV_F32) {
        DSI_CHECK(dsn_kvcache_blocks_needed(b, 1) > st.free + st.cached); /* admission waits */
        DSI_CHECK_INT_EQ(dsn_kvcache_reserve(b, 1), DSI_ERR_CAPACITY);
        DSI_CHECK_INT_EQ(b->tail_cap, 0);
        /* a cannot cross into a new block (a row and a second f32 block): preempted */
        DSI_CHECK(dsn_kvcache_blocks_needed(a, DSN_KV_BLOCK + 1) > st.free + st.cached);
        dsn_kvcache_t *both[2] = {a, b};
        DSI_CHECK_INT_EQ(dsn_kvcache_check(pool, both, 2), 0);
        dsn_kvcache_clear(a);
        check_pool(pool, b->n_blocks, 0);
    } else {
        dsn_kvcache_clear(a);
    }
    batch(b, 1);
    check_pool(pool, 1 + k, k);
    dsn_kvcache_destroy(a);
    dsn_kvcache_destroy(b);
}

int main(void)
{
    static const dsn_kv_dtype_t dts[] = {DSN_KV_F32, DSN_KV_BF16, DSN_KV_FP8};
    for (int d = 0; d < 3; d++) {
        grow(dts[d], DSN_KV_BLOCK);
        grow(dts[d], 8);
        tail_limit(dts[d]);
    }
    /* A seal that does not divide a block is refused. */
    dsn_kvpool_t *pool;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, DSN_KV_BF16, 0, &pool), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvpool_test_seal(pool, 48), -1);
    DSI_CHECK_INT_EQ(dsn_kvpool_test_seal(pool, 0), -1);
    DSI_CHECK_INT_EQ(dsn_kvpool_seal(pool), DSN_KV_BLOCK);
    dsn_kvpool_release(pool);
    return dsi_test_finish();
}
