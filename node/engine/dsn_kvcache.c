#include "dsn_kvcache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

dsi_status_t dsn_kvcache_create(dsn_kvpool_t *pool, int64_t max_tokens, dsn_kvcache_t **out)
{
    if (pool == NULL || max_tokens < 0) {
        DSI_ERROR("KV cache: no pool or a negative limit (%lld)", (long long)max_tokens);
        return DSI_ERR_INVALID_ARG;
    }
    dsn_kvcache_t *kv = calloc(1, sizeof(*kv));
    if (kv == NULL)
        return DSI_ERR_NOMEM;
    dsn_kvpool_retain(pool);
    kv->pool = pool;
    kv->n_layers = dsn_kvpool_layers(pool);
    kv->row = dsn_kvpool_row(pool);
    kv->dtype = dsn_kvpool_dtype(pool);
    kv->max_tokens = max_tokens;
    kv->seal = dsn_kvpool_seal(pool);
    *out = kv;
    return DSI_OK;
}

/* Return blocks [from, n_blocks) to the pool, the last first (registered ones become cached,
 * and the cache evicts the ends of chains before their beginnings). */
static void drop_blocks(dsn_kvcache_t *kv, int64_t from)
{
    for (int64_t b = kv->n_blocks - 1; b >= from; b--)
        dsn_kvpool_put(kv->pool, kv->blocks[b]);
    if (from < kv->n_blocks)
        kv->n_blocks = from;
    kv->capacity = kv->n_blocks * DSN_KV_BLOCK;
    if (kv->n_published > kv->n_blocks)
        kv->n_published = kv->n_blocks;
}

void dsn_kvcache_destroy(dsn_kvcache_t *kv)
{
    if (kv == NULL)
        return;
    drop_blocks(kv, 0);
    dsn_kvcache_tail_free(kv);
    free(kv->blocks);
    free(kv->ids);
    dsn_kvpool_release(kv->pool);
    free(kv);
}

static int64_t blocks_for(int64_t n_tokens)
{
    return (n_tokens + DSN_KV_BLOCK - 1) / DSN_KV_BLOCK;
}

static int table_grow(dsn_kvcache_t *kv, int64_t n)
{
    if (n <= kv->table_cap)
        return 0;
    int64_t cap = kv->table_cap > 0 ? kv->table_cap : 16;
    while (cap < n)
        cap *= 2;
    dsn_kvblock_t **t = realloc(kv->blocks, (size_t)cap * sizeof(*t));
    if (t == NULL)
        return -1;
    kv->blocks = t;
    kv->table_cap = cap;
    return 0;
}

/* Whether the block holding position `length` is shared and would be written. */
static int tail_shared(const dsn_kvcache_t *kv)
{
    int64_t b = kv->length / DSN_KV_BLOCK;
    return b < kv->n_blocks && kv->blocks[b]->refs > 1;
}

int64_t dsn_kvcache_row_blocks_needed(const dsn_kvcache_t *kv, int64_t n_total)
{
    int64_t need = blocks_for(n_total) - kv->n_blocks;
    if (need < 0)
        need = 0;
    if (n_total > kv->length && tail_shared(kv))
        need++;
    return need;
}

int64_t dsn_kvcache_blocks_needed(const dsn_kvcache_t *kv, int64_t n_total)
{
    int64_t need = dsn_kvcache_row_blocks_needed(kv, n_total);
    if (kv->dtype == DSN_KV_F32)
        return need;
    /* reserve's window: the open block to the batch's last */
    int64_t open = kv->length / DSN_KV_BLOCK, hi = blocks_for(n_total);
    return need + dsn_kvcache_tail_needed(kv, (hi > open + 1 ? hi : open + 1) - open);
}

int64_t dsn_kvcache_pool_blocks(const dsn_kvcache_t *kv)
{
    return kv->n_blocks + dsn_kvpool_tail_blocks(kv->pool, kv->tail_cap);
}

static size_t block_data_bytes(const dsn_kvcache_t *kv)
{
    return (size_t)kv->n_layers * DSN_KV_BLOCK * (size_t)kv->row * (size_t)dsn_kv_dtype_size(kv->dtype);
}

/* A private copy of `src` (whole block) in a new block of kv's pool, or NULL. */
static dsn_kvblock_t *block_copy(dsn_kvcache_t *kv, const dsn_kvblock_t *src, dsi_status_t *st)
{
    dsn_kvblock_t *b = dsn_kvpool_alloc(kv->pool, st);
    if (b == NULL)
        return NULL;
    memcpy(b->data, src->data, block_data_bytes(kv));
    if (kv->dtype == DSN_KV_FP8)
        memcpy(b->scales, src->scales, (size_t)kv->n_layers * DSN_KV_BLOCK * sizeof(float));
    return b;
}

dsi_status_t dsn_kvcache_reserve_blocks(dsn_kvcache_t *kv, int64_t n_total)
{
    if (n_total > kv->max_tokens) {
        DSI_ERROR("sequence of %lld tokens exceeds the context limit of %lld (the model's "
                  "max_position_embeddings or the configured maximum context)",
                  (long long)n_total, (long long)kv->max_tokens);
        return DSI_ERR_CAPACITY;
    }
    dsi_status_t st = DSI_OK;
    if (n_total > kv->length && tail_shared(kv)) {
        int64_t b = kv->length / DSN_KV_BLOCK;
        dsn_kvblock_t *copy = block_copy(kv, kv->blocks[b], &st);
        if (copy == NULL)
            return st;
        dsn_kvpool_put(kv->pool, kv->blocks[b]);
        kv->blocks[b] = copy;
    } else if (n_total > kv->length && kv->length / DSN_KV_BLOCK < kv->n_blocks) {
        /* only ours, but maybe registered (a truncation into a published block): out of the
         * index before it is written */
        dsn_kvpool_unregister(kv->pool, kv->blocks[kv->length / DSN_KV_BLOCK]);
    }
    if (n_total <= kv->capacity)
        return DSI_OK;
    int64_t want = blocks_for(n_total);
    if (table_grow(kv, want) != 0)
        return DSI_ERR_NOMEM;
    while (kv->n_blocks < want) {
        dsn_kvblock_t *b = dsn_kvpool_alloc(kv->pool, &st);
        if (b == NULL)
            return st;
        kv->blocks[kv->n_blocks++] = b;
        kv->capacity = kv->n_blocks * DSN_KV_BLOCK;
    }
    return DSI_OK;
}

dsi_status_t dsn_kvcache_reserve(dsn_kvcache_t *kv, int64_t n_total)
{
    dsi_status_t st = dsn_kvcache_reserve_blocks(kv, n_total);
    if (st != DSI_OK || kv->dtype == DSN_KV_F32)
        return st;
    /* The tail reaches from the open block to the batch's last block (the block before the open
     * one goes: the previous batch can no longer be rolled back). */
    int64_t open = kv->length / DSN_KV_BLOCK, hi = blocks_for(n_total), lo = open;
    if (hi < open + 1)
        hi = open + 1;
    return dsn_kvcache_tail_window(kv, lo, hi);
}

float dsn_kv_row_to_fp8(const float *x, int n, uint8_t *q)
{
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax)
            amax = a;
    }
    float scale = amax > 0.0f && isfinite(amax) ? amax / 448.0f : 1.0f;
    for (int i = 0; i < n; i++)
        q[i] = dsk_f32_to_fp8_e4m3(x[i] / scale);
    return scale;
}

static size_t row_offset(const dsn_kvcache_t *kv, int layer, int64_t r)
{
    return ((size_t)layer * DSN_KV_BLOCK + (size_t)r) * (size_t)kv->row;
}

void dsn_kvcache_store(dsn_kvcache_t *kv, int layer, int64_t pos, const float *row)
{
    dsn_kvblock_t *b = kv->blocks[pos / DSN_KV_BLOCK];
    int64_t r = pos % DSN_KV_BLOCK;
    size_t off = row_offset(kv, layer, r);
    switch (kv->dtype) {
    case DSN_KV_F32:
        memcpy((float *)b->data + off, row, (size_t)kv->row * sizeof(float));
        break;
    case DSN_KV_BF16: {
        uint16_t *d = (uint16_t *)b->data + off;
        for (int i = 0; i < kv->row; i++)
            d[i] = dsk_f32_to_bf16(row[i]);
        break;
    }
    default:
        b->scales[(size_t)layer * DSN_KV_BLOCK + (size_t)r] =
            dsn_kv_row_to_fp8(row, kv->row, b->data + off);
        break;
    }
    dsn_kvcache_tail_put(kv, layer, pos, row);
}

void dsn_kvcache_load(const dsn_kvcache_t *kv, int layer, int64_t pos, float *out)
{
    const dsn_kvblock_t *b = kv->blocks[pos / DSN_KV_BLOCK];
    int64_t r = pos % DSN_KV_BLOCK;
    size_t off = row_offset(kv, layer, r);
    switch (kv->dtype) {
    case DSN_KV_F32:
        memcpy(out, (const float *)b->data + off, (size_t)kv->row * sizeof(float));
        break;
    case DSN_KV_BF16:
        for (int i = 0; i < kv->row; i++)
            out[i] = dsk_bf16_to_f32(((const uint16_t *)b->data)[off + (size_t)i]);
        break;
    default: {
        float s = b->scales[(size_t)layer * DSN_KV_BLOCK + (size_t)r];
        for (int i = 0; i < kv->row; i++)
            out[i] = dsk_fp8_e4m3_to_f32(b->data[off + (size_t)i]) * s;
        break;
    }
    }
}

dsk_matrix_t dsn_kvcache_block_matrix(const dsn_kvcache_t *kv, int layer, int64_t b, int64_t rows,
                                      const float *ones)
{
    static const dsk_dtype_t kdt[DSN_KV_DTYPE_COUNT] = {DSK_DTYPE_F32, DSK_DTYPE_BF16,
                                                        DSK_DTYPE_F8_E4M3};
    size_t es = (size_t)dsn_kv_dtype_size(kv->dtype);
    const uint8_t *data = kv->blocks[b]->data + row_offset(kv, layer, 0) * es;
    dsk_matrix_t m = {kdt[kv->dtype], rows, kv->row, data,
                      kv->dtype == DSN_KV_FP8 ? ones : NULL, DSK_LAYOUT_ROWS};
    return m;
}

const float *dsn_kvcache_block_scales(const dsn_kvcache_t *kv, int layer, int64_t b)
{
    if (kv->dtype != DSN_KV_FP8)
        return NULL;
    return kv->blocks[b]->scales + (size_t)layer * DSN_KV_BLOCK;
}

dsi_status_t dsn_kvcache_copy_prefix(dsn_kvcache_t *dst, const dsn_kvcache_t *src,
                                     int64_t n_tokens)
{
    if (dst == src || dst->n_layers != src->n_layers || dst->row != src->row ||
        dst->dtype != src->dtype) {
        DSI_ERROR("KV copy: caches of different layouts (%d/%d layers, row %d/%d, %s/%s)",
                  dst->n_layers, src->n_layers, dst->row, src->row,
                  dsn_kv_dtype_name(dst->dtype), dsn_kv_dtype_name(src->dtype));
        return DSI_ERR_INVALID_ARG;
    }
    if (n_tokens < 0 || n_tokens > src->length) {
        DSI_ERROR("KV copy of %lld tokens from a cache holding %lld", (long long)n_tokens,
                  (long long)src->length);
        return DSI_ERR_INVALID_ARG;
    }
    drop_blocks(dst, 0);
    dst->length = 0;
    dst->n_ids = 0;
    dst->n_published = 0;
    dst->tail_first = dst->tail_n = 0;
    int64_t full = n_tokens / DSN_KV_BLOCK, want = blocks_for(n_tokens);
    if (n_tokens > dst->max_tokens) {
        DSI_ERROR("KV copy of %lld tokens into a cache limited to %lld", (long long)n_tokens,
                  (long long)dst->max_tokens);
        return DSI_ERR_CAPACITY;
    }
    if (table_grow(dst, want) != 0)
        return DSI_ERR_NOMEM;
    int same_pool = dst->pool == src->pool;
    dsi_status_t st = DSI_OK;
    for (int64_t b = 0; b < want; b++) {
        dsn_kvblock_t *blk;
        if (same_pool && b < full) {
            blk = src->blocks[b];
            dsn_kvpool_share(dst->pool, blk);
        } else {
            blk = block_copy(dst, src->blocks[b], &st);
            if (blk == NULL) {
                drop_blocks(dst, 0);
                return st;
            }
        }
        dst->blocks[dst->n_blocks++] = blk;
    }
    dst->capacity = dst->n_blocks * DSN_KV_BLOCK;
    dst->length = n_tokens;
    if (same_pool) {
        int64_t pub = src->n_published < full ? src->n_published : full;
        int64_t ids = src->n_ids < n_tokens ? src->n_ids : n_tokens;
        if (dsn_kvcache_set_ids(dst, 0, src->ids, ids) == 0)
            dst->n_published = pub; /* the shared blocks keep their registration */
    }
    /* The open block's f32 rows: src's where it holds them, else the rounded ones. */
    int64_t open = n_tokens / DSN_KV_BLOCK;
    if (dst->dtype != DSN_KV_F32 && n_tokens % DSN_KV_BLOCK != 0) {
        st = dsn_kvcache_tail_window(dst, open, open + 1);
        if (st != DSI_OK) {
            drop_blocks(dst, 0);
            dst->length = 0;
            return st;
        }
        for (int l = 0; l < dst->n_layers; l++)
            for (int64_t pos = open * DSN_KV_BLOCK; pos < n_tokens; pos++) {
                const float *t = dsn_kvcache_tail_row(src, l, pos);
                if (t != NULL)
                    dsn_kvcache_tail_put(dst, l, pos, t);
            }
    }
    return DSI_OK;
}

void dsn_kvcache_truncate(dsn_kvcache_t *kv, int64_t n_tokens)
{
    if (n_tokens < 0 || n_tokens >= kv->length)
        return;
    kv->length = n_tokens;
    if (kv->n_ids > n_tokens)
        kv->n_ids = n_tokens;
    if (kv->n_published > n_tokens / DSN_KV_BLOCK)
        kv->n_published = n_tokens / DSN_KV_BLOCK;
    drop_blocks(kv, blocks_for(n_tokens));
    /* The tail keeps what it holds up to the new open block; a truncation before its window
     * (further back than a block) finds the f32 rows gone: the next reserve gives that block
     * its rounded rows. */
    int64_t open = n_tokens / DSN_KV_BLOCK, end = kv->tail_first + kv->tail_n;
    if (kv->tail_n > 0 && end > open + 1)
        dsn_kvcache_tail_window(kv, kv->tail_first < open + 1 ? kv->tail_first : open + 1,
                                open + 1);
}

void dsn_kvcache_clear(dsn_kvcache_t *kv)
{
    kv->length = 0;
    kv->n_ids = 0;
    kv->n_published = 0;
    drop_blocks(kv, 0);
    dsn_kvcache_tail_free(kv);
}

/* ---- prefix cache ---- */

int dsn_kvcache_set_ids(dsn_kvcache_t *kv, int64_t pos, const int32_t *ids, int64_t n)
{
    if (pos < 0 || pos > kv->n_ids || n <= 0)
        return 0;
    if (pos + n > kv->ids_cap) {
        int64_t cap = kv->ids_cap > 0 ? kv->ids_cap : 256;
        while (cap < pos + n)
            cap *= 2;
        int32_t *t = realloc(kv->ids, (size_t)cap * sizeof(*t));
        if (t == NULL) {
            kv->n_ids = pos;
            return -1;
        }
        kv->ids = t;
        kv->ids_cap = cap;
    }
    memcpy(kv->ids + pos, ids, (size_t)n * sizeof(*ids));
    kv->n_ids = pos + n;
    return 0;
}

int64_t dsn_kvcache_publish(dsn_kvcache_t *kv)
{
    int64_t known = kv->length < kv->n_ids ? kv->length : kv->n_ids;
    int64_t full = known / DSN_KV_BLOCK;
    if (full > kv->n_blocks)
        full = kv->n_blocks;
    while (kv->n_published < full) {
        int64_t b = kv->n_published;
        const dsn_kvblock_t *parent = b > 0 ? kv->blocks[b - 1] : NULL;
        if (dsn_kvpool_register(kv->pool, kv->blocks[b], parent, kv->ids + b * DSN_KV_BLOCK) != 0)
            break;
        kv->n_published++;
    }
    return kv->n_published;
}

int64_t dsn_kvcache_attach_prefix(dsn_kvcache_t *kv, const int32_t *ids, int64_t n, int64_t limit)
{
    if (limit > n)
        limit = n;
    if (limit > kv->max_tokens)
        limit = kv->max_tokens;
    if (kv->length % DSN_KV_BLOCK != 0 || kv->n_blocks * DSN_KV_BLOCK != kv->length ||
        kv->n_published != kv->n_blocks || kv->n_ids < kv->length)
        return 0;
    int64_t start = kv->length;
    while ((kv->n_blocks + 1) * DSN_KV_BLOCK <= limit) {
        if (table_grow(kv, kv->n_blocks + 1) != 0)
            break;
        const int32_t *bid = ids + kv->n_blocks * DSN_KV_BLOCK;
        const dsn_kvblock_t *parent = kv->n_blocks > 0 ? kv->blocks[kv->n_blocks - 1] : NULL;
        dsn_kvblock_t *hit = dsn_kvpool_lookup(kv->pool, parent, bid);
        if (hit == NULL)
            break;
        if (dsn_kvcache_set_ids(kv, kv->length, bid, DSN_KV_BLOCK) != 0) {
            dsn_kvpool_put(kv->pool, hit);
            break;
        }
        kv->blocks[kv->n_blocks++] = hit;
        kv->n_published = kv->n_blocks;
        kv->length = kv->n_blocks * DSN_KV_BLOCK;
        kv->capacity = kv->length;
    }
    return kv->length - start;
}

typedef struct {
    const dsn_kvblock_t **held; /* every table entry, sorted */
    size_t n;
} held_t;

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const dsn_kvblock_t *const *)a;
    uintptr_t y = (uintptr_t) * (const dsn_kvblock_t *const *)b;
    return x < y ? -1 : x > y;
}

static int held_count(void *ctx, const dsn_kvblock_t *b)
{
    const held_t *h = ctx;
    size_t lo = 0, hi = h->n;
    while (lo < hi) { /* the first entry >= b */
        size_t mid = (lo + hi) / 2;
        if ((uintptr_t)h->held[mid] < (uintptr_t)b)
            lo = mid + 1;
        else
            hi = mid;
    }
    int c = 0;
    while (lo < h->n && h->held[lo] == b) {
        c++;
        lo++;
    }
    return c;
}

int dsn_kvcache_check(dsn_kvpool_t *pool, dsn_kvcache_t *const *kv, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)kv[i]->n_blocks;
    held_t h = {malloc((total > 0 ? total : 1) * sizeof(*h.held)), 0};
    if (h.held == NULL)
        return -1;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (kv[i]->pool != pool || kv[i]->n_published > kv[i]->n_blocks ||
            kv[i]->length > kv[i]->capacity || kv[i]->capacity != kv[i]->n_blocks * DSN_KV_BLOCK ||
            kv[i]->tail_n > kv[i]->tail_cap || kv[i]->tail_first < 0 ||
            (kv[i]->dtype == DSN_KV_F32 && kv[i]->tail_cap != 0)) {
            DSI_ERROR("KV cache %d inconsistent: %lld positions, %lld blocks, %lld published", i,
                      (long long)kv[i]->length, (long long)kv[i]->n_blocks,
                      (long long)kv[i]->n_published);
            bad = 1;
        }
        for (int64_t b = 0; b < kv[i]->n_blocks; b++) {
            h.held[h.n++] = kv[i]->blocks[b];
            if (b < kv[i]->n_published && !dsn_kvpool_is_registered(pool, kv[i]->blocks[b])) {
                DSI_ERROR("KV cache %d: published block %lld is not registered", i, (long long)b);
                bad = 1;
            }
        }
    }
    qsort(h.held, h.n, sizeof(*h.held), cmp_ptr);
    if (dsn_kvpool_check(pool, held_count, &h) != 0)
        bad = 1;
    int64_t tails = 0;
    for (int i = 0; i < n; i++)
        tails += dsn_kvpool_tail_blocks(pool, kv[i]->tail_cap);
    dsn_kvpool_stats_t ps;
    dsn_kvpool_stats(pool, &ps);
    if (tails != ps.tail) {
        DSI_ERROR("KV pool: the caches' tails hold %lld blocks, the pool counts %lld",
                  (long long)tails, (long long)ps.tail);
        bad = 1;
    }
    free(h.held);
    return bad ? -1 : 0;
}

uint64_t dsn_kvcache_bytes(const dsn_kvcache_t *kv)
{
    return (uint64_t)kv->n_blocks * dsn_kvpool_block_bytes(kv->n_layers, kv->row, kv->dtype) +
           (uint64_t)kv->tail_cap * DSN_KV_BLOCK * (uint64_t)kv->n_layers * (uint64_t)kv->row *
               sizeof(float);
}
