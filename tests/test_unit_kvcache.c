/*
 * test_unit_kvcache.c - dsn_kvcache_copy_prefix, the fork of a sequence's KV cache after its
 * prompt (the n choices of one request): the copied rows equal the source's in every layer, the
 * copy's length is the prefix, it grows on its own afterwards without touching the source, a copy
 * into a cache that held other rows replaces them, and mismatched caches or a prefix beyond the
 * source's length are refused. (Over the paged cache, f32 blocks: full blocks are shared by the
 * copy, test_unit_kvpool.c checks that sharing.)
 */
#include <string.h>

#include "dsi_test.h"
#include "dsn_kvcache.h"

#define LAYERS 3
#define ROW    7

static float value(int layer, int64_t pos, int j)
{
    return (float)(layer * 100000 + pos * 10 + j) * 0.5f;
}

static void fill(dsn_kvcache_t *kv, int64_t from, int64_t to, float offset)
{
    float row[ROW];
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(kv, to), DSI_OK);
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = from; p < to; p++) {
            for (int j = 0; j < ROW; j++)
                row[j] = value(l, p, j) + offset;
            dsn_kvcache_store(kv, l, p, row);
        }
    kv->length = to;
}

static int rows_equal(const dsn_kvcache_t *kv, int64_t n, float offset)
{
    float row[ROW];
    for (int l = 0; l < LAYERS; l++)
        for (int64_t p = 0; p < n; p++) {
            dsn_kvcache_load(kv, l, p, row);
            for (int j = 0; j < ROW; j++)
                if (row[j] != value(l, p, j) + offset)
                    return 0;
        }
    return 1;
}

int main(void)
{
    dsn_kvcache_t *src, *dst, *other, *small;
    dsn_kvpool_t *pool, *wide;
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW, DSN_KV_F32, 0, &pool), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvpool_create(LAYERS, ROW + 1, DSN_KV_F32, 0, &wide), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 4096, &src), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 4096, &dst), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(wide, 4096, &other), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_create(pool, 100, &small), DSI_OK);
    dsn_kvpool_release(pool); /* the caches hold the pools */
    dsn_kvpool_release(wide);
    fill(src, 0, 300, 0); /* capacity grows past 64 and 256 */

    /* An empty cache gets the prefix: equal rows, length = prefix. */
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(dst, src, 299), DSI_OK);
    DSI_CHECK_INT_EQ(dst->length, 299);
    DSI_CHECK(dst->capacity >= 299);
    DSI_CHECK(rows_equal(dst, 299, 0));
    /* The fork goes on by itself: the source's rows stay. */
    fill(dst, 299, 700, 1.0f);
    DSI_CHECK(rows_equal(src, 300, 0));
    DSI_CHECK(rows_equal(dst, 299, 0));
    /* A copy into a cache holding other rows replaces them (and shortens it). */
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(dst, src, 10), DSI_OK);
    DSI_CHECK_INT_EQ(dst->length, 10);
    DSI_CHECK(rows_equal(dst, 10, 0));
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(dst, src, 0), DSI_OK);
    DSI_CHECK_INT_EQ(dst->length, 0);

    /* Refusals: beyond the source's length, another row width, itself, beyond dst's limit. */
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(dst, src, 301), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(dst, src, -1), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(other, src, 5), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(src, src, 5), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsn_kvcache_copy_prefix(small, src, 200), DSI_ERR_CAPACITY);
    DSI_CHECK_INT_EQ(small->length, 0);

    dsn_kvcache_destroy(src);
    dsn_kvcache_destroy(dst);
    dsn_kvcache_destroy(other);
    dsn_kvcache_destroy(small);
    return dsi_test_finish();
}
