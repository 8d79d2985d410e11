/* dsc_bpe.c - byte-level BPE merges with a heap, plus a per-call word cache (see dsc_bpe.h). */
#include "dsc_bpe.h"

#include <stdlib.h>
#include <string.h>

#include "dsc_tokenizer_impl.h"
#include "dsc_utf8.h"

/* Cache bounds: pieces up to 64 bytes, at most 64k entries (about 5 MB at worst). */
#define CACHE_MAX_KEY   64
#define CACHE_MAX_SLOTS (1u << 17)

struct dsc_bpe_cache_slot {
    uint32_t hash;
    uint32_t key_off, key_len; /* key_len 0 = empty slot (pieces are never empty) */
    uint32_t ids_off, n_ids;
};

dsi_status_t dsc_idvec_push(dsc_idvec_t *vec, int32_t id)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 64;
        int32_t *v = realloc(vec->v, cap * sizeof(*v));
        if (v == NULL)
            return DSI_ERR_NOMEM;
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = id;
    return DSI_OK;
}

void dsc_bpe_ctx_init(dsc_bpe_ctx_t *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
}

void dsc_bpe_ctx_cleanup(dsc_bpe_ctx_t *ctx)
{
    free(ctx->sym);
    free(ctx->prev);
    free(ctx->next);
    free(ctx->heap);
    free(ctx->bl);
    free(ctx->slots);
    free(ctx->keys);
    free(ctx->ids);
    memset(ctx, 0, sizeof(*ctx));
}

static dsi_status_t grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return DSI_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (q == NULL)
        return DSI_ERR_NOMEM;
    *p = q;
    *cap = c;
    return DSI_OK;
}

static dsi_status_t reserve_symbols(dsc_bpe_ctx_t *ctx, size_t n)
{
    if (n <= ctx->cap)
        return DSI_OK;
    size_t c = ctx->cap ? ctx->cap : 64;
    while (c < n)
        c *= 2;
    int32_t *sym = realloc(ctx->sym, c * sizeof(int32_t));
    if (sym != NULL)
        ctx->sym = sym;
    int32_t *prev = realloc(ctx->prev, c * sizeof(int32_t));
    if (prev != NULL)
        ctx->prev = prev;
    int32_t *next = realloc(ctx->next, c * sizeof(int32_t));
    if (next != NULL)
        ctx->next = next;
    if (sym == NULL || prev == NULL || next == NULL)
        return DSI_ERR_NOMEM;
    ctx->cap = c;
    return DSI_OK;
}

/* Min-heap of (rank << 32 | position): lowest rank first, then leftmost, as the reference. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v)
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= last)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

static void push_pair(const dsc_tokenizer_t *tok, dsc_bpe_ctx_t *ctx, size_t *hn, int32_t pos)
{
    uint32_t rank;
    int32_t merged;
    int32_t nx = ctx->next[pos];
    if (nx >= 0 && dsc_pairmap_get(&tok->merges, ctx->sym[pos], ctx->sym[nx], &rank, &merged))
        heap_push(ctx->heap, hn, ((uint64_t)rank << 32) | (uint32_t)pos);
}

/* Initial symbols: one per byte (unknown bytes become unk, fused if asked, or vanish). */
static size_t initial_symbols(const dsc_tokenizer_t *tok, dsc_bpe_ctx_t *ctx,
                              const unsigned char *p, size_t len)
{
    size_t n = 0;
    int pending_unk = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = tok->byte_id[p[i]];
        if (id >= 0) {
            ctx->sym[n++] = id;
            pending_unk = 0;
        } else if (tok->unk_id >= 0 && !(tok->fuse_unk && pending_unk)) {
            ctx->sym[n++] = tok->unk_id;
            pending_unk = 1;
        }
    }
    return n;
}

/* The merges proper; appends the surviving symbols to out. */
static dsi_status_t merge_word(const dsc_tokenizer_t *tok, dsc_bpe_ctx_t *ctx,
                               const unsigned char *p, size_t len, dsc_idvec_t *out)
{
    dsi_status_t st;
    if ((st = reserve_symbols(ctx, len)) != DSI_OK ||
        (st = grow((void **)&ctx->heap, &ctx->heap_cap, 3 * len + 1, sizeof(uint64_t))) != DSI_OK)
        return st;
    size_t n = initial_symbols(tok, ctx, p, len), hn = 0;
    for (size_t i = 0; i < n; i++) {
        ctx->prev[i] = (int32_t)i - 1;
        ctx->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(tok, ctx, &hn, (int32_t)i);
    while (hn > 0) {
        uint64_t top = heap_pop(ctx->heap, &hn);
        int32_t pos = (int32_t)(uint32_t)top, nx = ctx->next[pos];
        uint32_t rank;
        int32_t merged;
        /* Stale entries: the symbol was merged away, or its pair changed since the push. */
        if (ctx->sym[pos] < 0 || nx < 0 ||
            !dsc_pairmap_get(&tok->merges, ctx->sym[pos], ctx->sym[nx], &rank, &merged) ||
            rank != (uint32_t)(top >> 32))
            continue;
        ctx->sym[pos] = merged;
        ctx->sym[nx] = -1;
        ctx->next[pos] = ctx->next[nx];
        if (ctx->next[nx] >= 0)
            ctx->prev[ctx->next[nx]] = pos;
        if (ctx->prev[pos] >= 0)
            push_pair(tok, ctx, &hn, ctx->prev[pos]);
        push_pair(tok, ctx, &hn, pos);
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = ctx->next[i]) {
        if ((st = dsc_idvec_push(out, ctx->sym[i])) != DSI_OK)
            return st;
    }
    return DSI_OK;
}

/* ignore_merges: a piece whose byte-level form is a vocabulary entry is that one token. */
static int32_t whole_word_id(const dsc_tokenizer_t *tok, dsc_bpe_ctx_t *ctx, const unsigned char *p,
                             size_t len)
{
    uint32_t cps[256];
    dsc_bytelevel_table(cps);
    if (grow((void **)&ctx->bl, &ctx->bl_cap, 2 * len, 1) != DSI_OK)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += dsc_utf8_encode(cps[p[i]], ctx->bl + n);
    return dsc_strmap_get(&tok->vocab, ctx->bl, n);
}

static struct dsc_bpe_cache_slot *cache_find(dsc_bpe_ctx_t *ctx, const char *key, size_t len,
                                             uint32_t h)
{
    size_t mask = ctx->n_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct dsc_bpe_cache_slot *s = &ctx->slots[i];
        if (s->key_len == 0 ||
            (s->hash == h && s->key_len == len && memcmp(ctx->keys + s->key_off, key, len) == 0))
            return s;
    }
}

/* Double the slot table (up to the bound); returns 0 when the cache is full. */
static int cache_make_room(dsc_bpe_ctx_t *ctx)
{
    if ((ctx->n_used + 1) * 2 <= ctx->n_slots)
        return 1;
    if (ctx->n_slots >= CACHE_MAX_SLOTS)
        return 0;
    size_t n = ctx->n_slots ? ctx->n_slots * 2 : 1024;
    struct dsc_bpe_cache_slot *old = ctx->slots;
    size_t old_n = ctx->n_slots;
    ctx->slots = calloc(n, sizeof(*ctx->slots));
    if (ctx->slots == NULL) {
        ctx->slots = old;
        return 0;
    }
    ctx->n_slots = n;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i].key_len != 0)
            *cache_find(ctx, ctx->keys + old[i].key_off, old[i].key_len, old[i].hash) = old[i];
    }
    free(old);
    return 1;
}

static void cache_put(dsc_bpe_ctx_t *ctx, const char *key, size_t len, uint32_t h,
                      const int32_t *ids, size_t n_ids)
{
    if (!cache_make_room(ctx) ||
        grow((void **)&ctx->keys, &ctx->keys_cap, ctx->keys_len + len, 1) != DSI_OK ||
        grow((void **)&ctx->ids, &ctx->ids_cap, ctx->ids_len + n_ids, sizeof(int32_t)) != DSI_OK)
        return; /* a cache that cannot grow just stops caching */
    struct dsc_bpe_cache_slot *s = cache_find(ctx, key, len, h);
    memcpy(ctx->keys + ctx->keys_len, key, len);
    memcpy(ctx->ids + ctx->ids_len, ids, n_ids * sizeof(int32_t));
    *s = (struct dsc_bpe_cache_slot){h, (uint32_t)ctx->keys_len, (uint32_t)len,
                                     (uint32_t)ctx->ids_len, (uint32_t)n_ids};
    ctx->keys_len += len;
    ctx->ids_len += n_ids;
    ctx->n_used++;
}

dsi_status_t dsc_bpe_encode(const dsc_tokenizer_t *tok, dsc_bpe_ctx_t *ctx, const char *piece,
                            size_t len, dsc_idvec_t *out)
{
    const unsigned char *p = (const unsigned char *)piece;
    int cacheable = len <= CACHE_MAX_KEY;
    uint32_t h = 0;
    dsi_status_t st;
    if (len == 1 && tok->byte_id[p[0]] >= 0)
        return dsc_idvec_push(out, tok->byte_id[p[0]]);
    if (cacheable && ctx->n_slots > 0) {
        h = dsc_hash_bytes(piece, len);
        struct dsc_bpe_cache_slot *s = cache_find(ctx, piece, len, h);
        if (s->key_len != 0) {
            for (uint32_t i = 0; i < s->n_ids; i++) {
                if ((st = dsc_idvec_push(out, ctx->ids[s->ids_off + i])) != DSI_OK)
                    return st;
            }
            return DSI_OK;
        }
    } else if (cacheable) {
        h = dsc_hash_bytes(piece, len);
    }
    size_t before = out->n;
    int32_t whole = tok->ignore_merges ? whole_word_id(tok, ctx, p, len) : -1;
    st = whole >= 0 ? dsc_idvec_push(out, whole) : merge_word(tok, ctx, p, len, out);
    if (st == DSI_OK && cacheable)
        cache_put(ctx, piece, len, h, out->v + before, out->n - before);
    return st;
}
