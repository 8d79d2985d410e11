/*
 * test_unit_kvpool.c - the paged latent KV cache (node/engine/dsn_kvcache.h, dsn_kvpool.h)
 * without a model:
 * - rows stored and loaded in f32 (exact), bf16 and fp8 against a plain reference of the
 *   rounding (bf16 nearest even; fp8 e4m3 of x / (amax / 448) times the scale);
 * - the block matrices the attention reads hold the same values (fp8 with its row scales);
 * - copy_prefix shares full blocks copy-free, copies the partial one, and a write after a fork
 *   (or after truncate into a shared block) copies the block first, leaving the other intact;
 * - truncate returns blocks (and ignores lengths beyond the cache); the pool's limit gives DSI_ERR_CAPACITY; bad arguments are errors;
 * - a randomized workload of creates, growths, forks, truncations and destroys keeps
 *   used + free = total, used = the blocks the live caches hold (shared ones once), and ends
 *   with every block free (no leak, no double release: the pool aborts on one).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_kvcache.h"

#define LAYERS 3
#define ROW    40

static float value(int layer, int64_t pos, int i)
{
    return sinf((float)(layer * 1000 + pos) * 0.37f + (float)i * 1.3f) * (1.0f + (float)(i % 7));
}

static void fill(dsn_kvcache_t *kv, int64_t from, int64_t to)
{
    float row[ROW];
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = from; p < to; p++) {
            for (int i = 0; i < ROW; i++)
                row[i] = value(l, p, i);
            dsn_kvcache_store(kv, l, p, row);
        }
    kv->length = to;
}

/* The plain reference of what a stored value reads back as. */
static float rounded(dsn_kv_dtype_t dt, const float *row, int i)
{
    if (dt == DSN_KV_F32)
        return row[i];
    if (dt == DSN_KV_BF16) {
        uint32_t u;
        memcpy(&u, &row[i], 4);
        u += 0x7fff + ((u >> 16) & 1);
        u &= 0xffff0000u;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    float amax = 0;
    for (int j = 0; j < ROW; j++)
        amax = fabsf(row[j]) > amax ? fabsf(row[j]) : amax;
    float s = amax > 0 ? amax / 448.0f : 1.0f;
    return dsk_fp8_e4m3_to_f32(dsk_f32_to_fp8_e4m3(row[i] / s)) * s;
}

static void check_rows(const dsn_kvcache_t *kv, int64_t from, int64_t to, const char *what)
{
    float row[ROW], got[ROW];
    int bad = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = from; p < to; p++) {
            for (int i = 0; i < ROW; i++)
                row[i] = value(l, p, i);
            dsn_kvcache_load(kv, l, p, got);
            for (int i = 0; i < ROW; i++)
                bad += got[i] != rounded(kv->dtype, row, i);
        }
    if (bad)
        fprintf(stderr, "%s (%s): %d values differ from the reference rounding\n", what,
                dsn_kv_dtype_name(kv->dtype), bad);
    DSI_CHECK_INT_EQ(bad, 0);
}

static void check_rounding(dsn_kv_dtype_t dt)
{
    dsn_kvpool_t *pool;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, dt, 0, &pool), DSI_OK);
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 1000, &kv), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(kv, 150), DSI_OK);
    DSI_CHECK_INT_EQ(kv->n_blocks, 3);
    DSI_CHECK_INT_EQ(kv->capacity, 3 * DSN_KV_BLOCK);
    fill(kv, 0, 150);
    check_rows(kv, 0, 150, "store/load");
    /* The block matrices: row r of block b, times its scale, is the loaded row. */
    float ones[1] = {1.0f}, got[ROW];
    int bad = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = 0; p < 150; p++) {
            dsk_matrix_t m = dsn_kvcache_block_matrix(kv, l, p / DSN_KV_BLOCK, DSN_KV_BLOCK, ones);
            const float *sc = dsn_kvcache_block_scales(kv, l, p / DSN_KV_BLOCK);
            float ref[ROW];
            dsk_matrix_row_f32(&m, p % DSN_KV_BLOCK, ref);
            dsn_kvcache_load(kv, l, p, got);
            for (int i = 0; i < ROW; i++)
                bad += got[i] != ref[i] * (sc != NULL ? sc[p % DSN_KV_BLOCK] : 1.0f);
        }
    DSI_CHECK_INT_EQ(bad, 0);
    dsn_kvpool_release(pool); /* the cache still holds the pool */
    dsn_kvcache_destroy(kv);
}

static void check_stats(dsn_kvpool_t *pool, int64_t used)
{
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(pool, &st);
    DSI_CHECK_INT_EQ(st.used, used);
    DSI_CHECK_INT_EQ(st.used + st.free, st.total);
}

static void check_fork(void)
{
    dsn_kvpool_t *pool;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, DSN_KV_F32, 0, &pool), DSI_OK);
    dsn_kvcache_t *a, *b;
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 1000, &a), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 1000, &b), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(a, 150), DSI_OK);
    fill(a, 0, 150);
    check_stats(pool, 3);
    /* 140 tokens: blocks 0 and 1 shared, block 2 (positions 128..139) copied. */
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(b, a, 140), DSI_OK);
    DSI_CHECK_INT_EQ(b->length, 140);
    DSI_CHECK(b->blocks[0] == a->blocks[0] && b->blocks[1] == a->blocks[1]);
    DSI_CHECK(b->blocks[2] != a->blocks[2]);
    check_stats(pool, 4);
    check_rows(b, 0, 140, "forked prefix");
    /* b rolls back into the shared block 1 and writes: block 1 is copied first. */
    dsn_kvcache_truncate(b, 100);
    DSI_CHECK_INT_EQ(b->length, 100);
    DSI_CHECK_INT_EQ(b->n_blocks, 2);
    check_stats(pool, 3);
    DSI_CHECK_INT_EQ(dsn_kvcache_blocks_needed(b, 101), 1);
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(b, 101), DSI_OK);
    DSI_CHECK(b->blocks[1] != a->blocks[1]);
    check_stats(pool, 4);
    float row[ROW];
    for (int i = 0; i < ROW; i++)
        row[i] = -1.0f;
    for (int l = 0; l < LAYERS; l++)
        dsn_kvcache_store(b, l, 100, row);
    b->length = 101;
    check_rows(a, 0, 150, "the source after the fork wrote");
    check_rows(b, 0, 100, "the fork's kept prefix");
    /* A block-aligned fork shares everything; truncate to 0 frees all. */
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(b, a, 128), DSI_OK);
    check_stats(pool, 3);
    dsn_kvcache_truncate(b, 0);
    DSI_CHECK_INT_EQ(b->n_blocks, 0);
    /* Bad arguments. */
    dsn_kvcache_truncate(b, 1); /* beyond the length, or negative: no effect */
    DSI_CHECK_INT_EQ(b->length, 0);
    dsn_kvcache_truncate(a, -1);
    DSI_CHECK_INT_EQ(a->length, 150);
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(b, a, 151), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(a, a, 10), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(a, 1001), DSI_ERR_CAPACITY);
    dsn_kvpool_t *other;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, DSN_KV_BF16, 0, &other), DSI_OK);
    dsn_kvcache_t *c;
    DSI_CHECK_INT_EQ(dsn_kvcache_create(other, 1000, &c), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(c, a, 10), DSI_ERR_INVALID_ARG);
    dsn_kvcache_destroy(c);
    dsn_kvpool_release(other);
    dsn_kv_dtype_t dt;
    DSI_CHECK_INT_EQ(dsn_kv_dtype_parse("fp16", &dt), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kv_dtype_parse("fp8", &dt), DSI_OK);
    DSI_CHECK_INT_EQ(dt, DSN_KV_FP8);
    dsn_kvcache_destroy(a);
    dsn_kvcache_destroy(b);
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(pool, &st);
    DSI_CHECK_INT_EQ(st.used, 0);
    DSI_CHECK_INT_EQ(st.allocated, 4);
    dsn_kvpool_release(pool);
}

/* Rows only (f32 storage has no open tail; a tail's blocks: test_unit_kvtail). */
static void check_limit(void)
{
    dsn_kvpool_t *pool;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, DSN_KV_F32, 4, &pool), DSI_OK);
    dsn_kvcache_t *a, *b;
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 10000, &a), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 10000, &b), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(a, 3 * DSN_KV_BLOCK), DSI_OK);
    DSI_CHECK(dsn_kvpool_can_alloc(pool, 1));
    DSI_CHECK(!dsn_kvpool_can_alloc(pool, 2));
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(b, 2 * DSN_KV_BLOCK), DSI_ERR_CAPACITY);
    DSI_CHECK_INT_EQ(b->n_blocks, 1); /* what it got stays, usable */
    check_stats(pool, 4);
    dsn_kvcache_clear(b); /* a reserved block, length still 0: back to the pool */
    DSI_CHECK_INT_EQ(b->n_blocks, 0);
    check_stats(pool, 3);
    dsn_kvcache_destroy(a);
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(b, 2 * DSN_KV_BLOCK), DSI_OK);
    check_stats(pool, 2);
    dsn_kvcache_destroy(b);
    check_stats(pool, 0);
    dsn_kvpool_release(pool);
}

/* Blocks held by the live caches, each counted once. */
static int64_t distinct_blocks(dsn_kvcache_t **kv, int n)
{
    int64_t count = 0;
    for (int i = 0; i < n; i++) {
        if (kv[i] == NULL)
            continue;
        for (int64_t b = 0; b < kv[i]->n_blocks; b++) {
            int seen = 0;
            for (int j = 0; j <= i && !seen; j++) {
                if (kv[j] == NULL)
                    continue;
                int64_t end = j == i ? b : kv[j]->n_blocks;
                for (int64_t c = 0; c < end && !seen; c++)
                    seen = kv[j]->blocks[c] == kv[i]->blocks[b];
            }
            count += !seen;
        }
    }
    return count;
}

/* Blocks charged to the live caches' open tails. */
static int64_t tail_blocks(dsn_kvpool_t *pool, dsn_kvcache_t **kv, int n)
{
    int64_t t = 0;
    for (int i = 0; i < n; i++)
        t += kv[i] != NULL ? dsn_kvpool_tail_blocks(pool, kv[i]->tail_cap) : 0;
    return t;
}

/* A batch of positions [length, to) as the engine writes it: reserve, store, advance. Whether
 * it succeeded is exactly whether the blocks it needs were free or cached (admission's rule). */
static dsi_status_t random_batch(dsn_kvpool_t *pool, dsn_kvcache_t *k, int64_t to, int *violations)
{
    static const float row[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(pool, &st);
    int fits = dsn_kvcache_blocks_needed(k, to) <= st.free + st.cached;
    dsi_status_t rc = dsn_kvcache_reserve(k, to);
    *violations += fits != (rc == DSI_OK) || (rc != DSI_OK && rc != DSI_ERR_CAPACITY);
    if (rc != DSI_OK)
        return rc;
    for (int l = 0; l < 2; l++)
        for (int64_t p = k->length; p < to; p++)
            dsn_kvcache_store(k, l, p, row);
    dsn_kvcache_advance(k, to);
    return DSI_OK;
}

/*
 * Random sequences of one pool with a limit: open, grow in batches across block boundaries,
 * speculate and roll back, fork, preempt, finish. After every step, free + used + cached =
 * total, used is the distinct blocks of the tables plus the tails' blocks, the blocks with memory
 * and the tails' stay within the limit, and every reference count matches the tables.
 */
static void check_random(dsn_kv_dtype_t dt)
{
    enum { N = 12, STEPS = 3000, LIMIT = 24 };
    dsn_kvpool_t *pool;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(2, 8, dt, LIMIT, &pool), DSI_OK);
    dsn_kvcache_t *kv[N] = {0};
    unsigned seed = 12345;
    int violations = 0, capacity_hits = 0;
    for (int step = 0; step < STEPS; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % N), op = (int)((seed >> 20) % 7);
        if (kv[i] == NULL) {
            if (dsn_kvcache_create(pool, 2000, &kv[i]) != DSI_OK)
                violations++;
            continue;
        }
        dsn_kvcache_t *k = kv[i];
        if (op == 0 || op == 1) { /* grow */
            int64_t to = k->length + 1 + (int64_t)((seed >> 4) % 150);
            if (to > 2000)
                to = 2000;
            capacity_hits += random_batch(pool, k, to, &violations) == DSI_ERR_CAPACITY;
        } else if (op == 2) { /* fork another's prefix */
            int j = (int)((seed >> 12) % N);
            if (kv[j] != NULL && j != i) {
                int64_t n = kv[j]->length > 0 ? (int64_t)((seed >> 3) % (uint64_t)(kv[j]->length + 1)) : 0;
                dsi_status_t st = dsn_kvcache_copy_prefix(k, kv[j], n);
                violations += st != DSI_OK && st != DSI_ERR_CAPACITY;
            }
        } else if (op == 3) { /* roll back */
            int64_t n = k->length > 0 ? (int64_t)((seed >> 5) % (uint64_t)(k->length + 1)) : 0;
            dsn_kvcache_truncate(k, n);
            violations += k->length != n;
        } else if (op == 4) { /* speculate 1 + 1..5 drafts, keep 1..all of them */
            int64_t from = k->length, d = 2 + (int64_t)((seed >> 4) % 5);
            if (from + d <= 2000 && random_batch(pool, k, from + d, &violations) == DSI_OK)
                dsn_kvcache_truncate(k, from + 1 + (int64_t)((seed >> 11) % (uint64_t)d));
        } else if (op == 5) { /* preempt */
            dsn_kvcache_clear(k);
            violations += k->n_blocks != 0 || k->tail_cap != 0;
        } else { /* finish */
            dsn_kvcache_destroy(k);
            kv[i] = NULL;
        }
        dsn_kvpool_stats_t st;
        dsn_kvpool_stats(pool, &st);
        violations += st.used + st.free + st.cached != st.total || st.total != LIMIT ||
                      st.used != distinct_blocks(kv, N) + tail_blocks(pool, kv, N) ||
                      st.tail != tail_blocks(pool, kv, N) || st.allocated + st.tail > LIMIT ||
                      (dt == DSN_KV_F32 && st.tail != 0);
        dsn_kvcache_t *live[N];
        int n_live = 0;
        for (int j = 0; j < N; j++)
            if (kv[j] != NULL)
                live[n_live++] = kv[j];
        violations += dsn_kvcache_check(pool, live, n_live) != 0;
    }
    for (int i = 0; i < N; i++)
        dsn_kvcache_destroy(kv[i]);
    check_stats(pool, 0);
    DSI_CHECK_INT_EQ(violations, 0);
    DSI_CHECK(capacity_hits > 0); /* the limit was reached and handled */
    dsn_kvpool_release(pool);
}

int main(void)
{
    for (int d = 0; d < DSN_KV_DTYPE_COUNT; d++)
        check_rounding((dsn_kv_dtype_t)d);
    check_fork();
    check_limit();
    for (int d = 0; d < DSN_KV_DTYPE_COUNT; d++)
        check_random((dsn_kv_dtype_t)d);
    return dsi_test_finish();
}
