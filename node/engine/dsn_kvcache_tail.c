/*
 * dsn_kvcache_tail.c - the open tail of a rounded cache: f32 copies of the rows of its last
 * blocks (dsn_kvcache.h, "Open tail").
 *
 * The window is a range of whole blocks [tail_first, tail_first + tail_n) whose rows have an f32
 * copy, laid out like an f32 block: [block][layer][DSN_KV_BLOCK][row]. Between batches it holds
 * the block of position `length` (the open one), and after a batch that crossed into a new block
 * also the block before it, until the next batch starts (so that a rollback of speculative drafts
 * across the boundary finds the f32 rows again); during a batch it reaches to the batch's last
 * block. Its memory follows the window (one block most of the time), reallocated only when the
 * window's size changes: at a block boundary or for a batch of several blocks, never per token.
 * A block that enters the window holding rows already written (a cache forked or truncated into
 * rows whose copies are gone) gets their rounded values. The pool is charged for the memory in
 * blocks (dsn_kvpool_tail_take) before it is allocated, and given them back when it goes.
 */
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_kvcache.h"

static size_t tail_block_floats(const dsn_kvcache_t *kv)
{
    return (size_t)kv->n_layers * DSN_KV_BLOCK * (size_t)kv->row;
}

static float *tail_block(const dsn_kvcache_t *kv, int64_t b)
{
    return kv->tail + (size_t)(b - kv->tail_first) * tail_block_floats(kv);
}

static int in_window(const dsn_kvcache_t *kv, int64_t b)
{
    return b >= kv->tail_first && b < kv->tail_first + kv->tail_n;
}

int64_t dsn_kvcache_open_from(const dsn_kvcache_t *kv, int64_t qpos)
{
    if (kv->dtype == DSN_KV_F32)
        return qpos + 1;
    return qpos - qpos % kv->seal;
}

const float *dsn_kvcache_tail_row(const dsn_kvcache_t *kv, int layer, int64_t pos)
{
    int64_t b = pos / DSN_KV_BLOCK;
    if (kv->dtype == DSN_KV_F32 || !in_window(kv, b))
        return NULL;
    return tail_block(kv, b) +
           ((size_t)layer * DSN_KV_BLOCK + (size_t)(pos % DSN_KV_BLOCK)) * (size_t)kv->row;
}

void dsn_kvcache_tail_put(dsn_kvcache_t *kv, int layer, int64_t pos, const float *row)
{
    float *d = (float *)dsn_kvcache_tail_row(kv, layer, pos);
    if (d != NULL)
        memcpy(d, row, (size_t)kv->row * sizeof(float));
}

void dsn_kvcache_load_for(const dsn_kvcache_t *kv, int layer, int64_t pos, int64_t qpos, float *out)
{
    const float *t =
        pos >= dsn_kvcache_open_from(kv, qpos) ? dsn_kvcache_tail_row(kv, layer, pos) : NULL;
    if (t != NULL)
        memcpy(out, t, (size_t)kv->row * sizeof(float));
    else
        dsn_kvcache_load(kv, layer, pos, out);
}

dsk_matrix_t dsn_kvcache_tail_matrix(const dsn_kvcache_t *kv, int layer, int64_t pos, int64_t rows)
{
    const float *d = dsn_kvcache_tail_row(kv, layer, pos);
    dsk_matrix_t m = {DSK_DTYPE_F32, rows, kv->row, d, NULL, DSK_LAYOUT_ROWS};
    return m;
}

int64_t dsn_kvcache_tail_needed(const dsn_kvcache_t *kv, int64_t n)
{
    int64_t cap = n > 1 ? n : 1;
    return cap > kv->tail_cap ? dsn_kvpool_tail_blocks(kv->pool, cap - kv->tail_cap) : 0;
}

dsi_status_t dsn_kvcache_tail_window(dsn_kvcache_t *kv, int64_t lo, int64_t hi)
{
    if (kv->dtype == DSN_KV_F32)
        return DSI_OK;
    if (hi < lo)
        hi = lo;
    size_t bf = tail_block_floats(kv);
    int64_t n = hi - lo;
    /* Keep the rows of the blocks in both windows: move them to their new place first. */
    int64_t k0 = lo > kv->tail_first ? lo : kv->tail_first;
    int64_t k1 = hi < kv->tail_first + kv->tail_n ? hi : kv->tail_first + kv->tail_n;
    if (n > kv->tail_cap || kv->tail_cap > (n > 1 ? n : 1)) {
        /* Grow for a batch; shrink back after it. The pool is charged for the bytes first. */
        int64_t cap = n > 1 ? n : 1;
        int64_t grow = dsn_kvcache_tail_needed(kv, n);
        dsi_status_t st = dsn_kvpool_tail_take(kv->pool, grow);
        if (st != DSI_OK)
            return st;
        float *t = malloc((size_t)cap * bf * sizeof(float));
        if (t == NULL) {
            dsn_kvpool_tail_put(kv->pool, grow);
            DSI_ERROR("out of memory for the f32 rows of %lld open KV blocks", (long long)n);
            return DSI_ERR_NOMEM;
        }
        if (k0 < k1)
            memcpy(t + (size_t)(k0 - lo) * bf, tail_block(kv, k0),
                   (size_t)(k1 - k0) * bf * sizeof(float));
        free(kv->tail);
        if (cap < kv->tail_cap)
            dsn_kvpool_tail_put(kv->pool, dsn_kvpool_tail_blocks(kv->pool, kv->tail_cap - cap));
        kv->tail = t;
        kv->tail_cap = cap;
    } else if (k0 < k1 && k0 != lo) {
        memmove(kv->tail + (size_t)(k0 - lo) * bf, tail_block(kv, k0),
                (size_t)(k1 - k0) * bf * sizeof(float));
    }
    kv->tail_first = lo;
    kv->tail_n = n;
    /* Blocks new to the window that hold written rows get their rounded values. */
    for (int64_t b = lo; b < hi; b++) {
        if ((b >= k0 && b < k1) || b * DSN_KV_BLOCK >= kv->length)
            continue;
        int64_t end = (b + 1) * DSN_KV_BLOCK < kv->length ? (b + 1) * DSN_KV_BLOCK : kv->length;
        for (int l = 0; l < kv->n_layers; l++)
            for (int64_t pos = b * DSN_KV_BLOCK; pos < end; pos++)
                dsn_kvcache_load(kv, l, pos, (float *)dsn_kvcache_tail_row(kv, l, pos));
    }
    return DSI_OK;
}

void dsn_kvcache_advance(dsn_kvcache_t *kv, int64_t n_total)
{
    kv->length = n_total;
    int64_t open = n_total / DSN_KV_BLOCK;
    int64_t lo = in_window(kv, open - 1) ? open - 1 : open;
    int64_t hi = open + 1 < kv->tail_first + kv->tail_n ? open + 1 : kv->tail_first + kv->tail_n;
    if (lo < kv->tail_first)
        lo = kv->tail_first;
    /* Only narrows (no block enters, nothing charged): never fails. */
    if (kv->tail_n > 0)
        dsn_kvcache_tail_window(kv, lo, hi > lo ? hi : lo);
}

void dsn_kvcache_tail_free(dsn_kvcache_t *kv)
{
    free(kv->tail);
    dsn_kvpool_tail_put(kv->pool, dsn_kvpool_tail_blocks(kv->pool, kv->tail_cap));
    kv->tail = NULL;
    kv->tail_first = kv->tail_n = kv->tail_cap = 0;
}

uint64_t dsn_kvcache_tail_bytes(int n_layers, int row, dsn_kv_dtype_t dtype)
{
    if (dtype == DSN_KV_F32)
        return 0;
    return (uint64_t)n_layers * DSN_KV_BLOCK * (uint64_t)row * sizeof(float);
}
