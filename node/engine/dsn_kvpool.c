#include "dsn_kvpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

struct dsn_kvpool {
    pthread_mutex_t mu;
    int refs; /* the creator's and one per cache */
    int n_layers, row;
    dsn_kv_dtype_t dtype;
    int64_t max_blocks; /* 0: no limit */
    int64_t used, allocated, shared;
    int64_t tail;   /* of used: blocks charged to the f32 open tails of the caches */
    int64_t tail_k; /* blocks charged per f32 block of a tail (0 for f32 storage) */
    dsn_kvblock_t *free_list;
    dsn_kvblock_t **all; /* every allocated block, for the final free */
    int64_t all_cap;
    /* prefix cache */
    int prefix_on;
    int64_t cached;       /* refs 0, registered: on the LRU list */
    int64_t peak_used;    /* the most blocks ever used at once (the bound without a limit) */
    int64_t n_registered; /* blocks in the index */
    uint64_t next_serial;
    uint64_t evictions;
    uint64_t hash_mask;      /* bits of the chain hashes kept (tests force collisions) */
    int seal;                /* positions per seal group of new caches (tests: < DSN_KV_BLOCK) */
    dsn_kvblock_t **buckets; /* [n_buckets] the index, chained through hnext */
    int64_t n_buckets;       /* a power of two, or 0 */
    dsn_kvblock_t *lru_head, *lru_tail;
};

/* Without a limit, the cache keeps at most this many blocks or the peak in use, the larger. */
#define UNLIMITED_MIN_CACHED 64

const char *dsn_kv_dtype_name(dsn_kv_dtype_t dt)
{
    static const char *const names[DSN_KV_DTYPE_COUNT] = {"f32", "bf16", "fp8"};
    return dt >= 0 && dt < DSN_KV_DTYPE_COUNT ? names[dt] : "?";
}

dsi_status_t dsn_kv_dtype_parse(const char *s, dsn_kv_dtype_t *out)
{
    for (int d = 0; d < DSN_KV_DTYPE_COUNT; d++) {
        if (s != NULL && strcmp(s, dsn_kv_dtype_name((dsn_kv_dtype_t)d)) == 0) {
            *out = (dsn_kv_dtype_t)d;
            return DSI_OK;
        }
    }
    DSI_ERROR("KV cache type '%s' is not one of f32, bf16, fp8", s != NULL ? s : "(none)");
    return DSI_ERR_INVALID_ARG;
}

int dsn_kv_dtype_size(dsn_kv_dtype_t dt)
{
    return dt == DSN_KV_F32 ? 4 : dt == DSN_KV_BF16 ? 2 : 1;
}

uint64_t dsn_kvpool_block_bytes(int n_layers, int row, dsn_kv_dtype_t dtype)
{
    uint64_t rows = (uint64_t)n_layers * DSN_KV_BLOCK;
    uint64_t b = rows * (uint64_t)row * (uint64_t)dsn_kv_dtype_size(dtype);
    if (dtype == DSN_KV_FP8)
        b += rows * sizeof(float);
    return b;
}

dsi_status_t dsn_kvpool_create(int n_layers, int row, dsn_kv_dtype_t dtype, int64_t max_blocks,
                               dsn_kvpool_t **out)
{
    if (n_layers < 0 || row < 1 || dtype < 0 || dtype >= DSN_KV_DTYPE_COUNT || max_blocks < 0) {
        DSI_ERROR("KV pool: invalid layout (%d layers, row %d, type %d, %lld blocks)", n_layers,
                  row, (int)dtype, (long long)max_blocks);
        return DSI_ERR_INVALID_ARG;
    }
    dsn_kvpool_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return DSI_ERR_NOMEM;
    pthread_mutex_init(&p->mu, NULL);
    p->refs = 1;
    p->n_layers = n_layers;
    p->row = row;
    p->dtype = dtype;
    p->max_blocks = max_blocks;
    p->prefix_on = 1;
    p->hash_mask = UINT64_MAX;
    p->seal = DSN_KV_BLOCK;
    p->tail_k = dsn_kvpool_tail_k(n_layers, row, dtype);
    *out = p;
    return DSI_OK;
}

void dsn_kvpool_retain(dsn_kvpool_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->refs++;
    pthread_mutex_unlock(&p->mu);
}

/* A block's memory and the block (NULL: nothing). */
static void block_free(dsn_kvblock_t *b)
{
    if (b == NULL)
        return;
    free(b->data);
    free(b->scales);
    free(b->ids);
    free(b);
}

void dsn_kvpool_release(dsn_kvpool_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (!last)
        return;
    for (int64_t i = 0; i < p->allocated; i++)
        block_free(p->all[i]);
    free(p->all);
    free(p->buckets);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void dsn_kvpool_set_max_blocks(dsn_kvpool_t *p, int64_t max_blocks)
{
    pthread_mutex_lock(&p->mu);
    p->max_blocks = max_blocks > 0 ? max_blocks : 0;
    pthread_mutex_unlock(&p->mu);
}

void dsn_kvpool_stats(dsn_kvpool_t *p, dsn_kvpool_stats_t *out)
{
    pthread_mutex_lock(&p->mu);
    out->total = p->max_blocks > 0 ? p->max_blocks : p->allocated + p->tail;
    if (out->total < p->used)
        out->total = p->used; /* a limit lowered below what is in use */
    out->used = p->used;
    out->cached = p->cached;
    out->free = out->total - out->used - out->cached;
    if (out->free < 0)
        out->free = 0;
    out->evictions = p->evictions;
    out->allocated = p->allocated;
    out->tail = p->tail;
    out->shared = p->shared;
    out->block_bytes = dsn_kvpool_block_bytes(p->n_layers, p->row, p->dtype);
    pthread_mutex_unlock(&p->mu);
}

int dsn_kvpool_layers(const dsn_kvpool_t *p)
{
    return p->n_layers;
}

int dsn_kvpool_seal(const dsn_kvpool_t *p)
{
    return p->seal;
}

int dsn_kvpool_test_seal(dsn_kvpool_t *p, int positions)
{
    if (positions < 1 || DSN_KV_BLOCK % positions != 0)
        return -1;
    p->seal = positions;
    return 0;
}

int dsn_kvpool_row(const dsn_kvpool_t *p)
{
    return p->row;
}

dsn_kv_dtype_t dsn_kvpool_dtype(const dsn_kvpool_t *p)
{
    return p->dtype;
}

int dsn_kvpool_can_alloc(dsn_kvpool_t *p, int64_t n)
{
    pthread_mutex_lock(&p->mu);
    int ok = p->max_blocks == 0 || p->used + n <= p->max_blocks;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* A new block with memory (mutex held). */
static dsn_kvblock_t *block_new(dsn_kvpool_t *p)
{
    if (p->allocated == p->all_cap) {
        int64_t cap = p->all_cap > 0 ? 2 * p->all_cap : 64;
        dsn_kvblock_t **a = realloc(p->all, (size_t)cap * sizeof(*a));
        if (a == NULL)
            return NULL;
        p->all = a;
        p->all_cap = cap;
    }
    dsn_kvblock_t *b = calloc(1, sizeof(*b));
    size_t rows = (size_t)p->n_layers * DSN_KV_BLOCK;
    size_t bytes = rows * (size_t)p->row * (size_t)dsn_kv_dtype_size(p->dtype);
    if (b != NULL)
        b->data = malloc(bytes > 0 ? bytes : 1);
    if (b != NULL && p->dtype == DSN_KV_FP8)
        b->scales = malloc(rows > 0 ? rows * sizeof(float) : 1);
    if (b == NULL || b->data == NULL || (p->dtype == DSN_KV_FP8 && b->scales == NULL)) {
        block_free(b);
        return NULL;
    }
    b->slot = p->allocated;
    p->all[p->allocated++] = b;
    return b;
}

/* Give a free-list block's memory back to the system (mutex held). */
static void block_drop_free(dsn_kvpool_t *p)
{
    dsn_kvblock_t *b = p->free_list;
    p->free_list = b->next;
    dsn_kvblock_t *last = p->all[--p->allocated];
    p->all[b->slot] = last;
    last->slot = b->slot;
    block_free(b);
}

/* ---- the prefix index and the LRU list of cached blocks (mutex held) ---- */

uint64_t dsn_kvpool_chain_hash(uint64_t parent, const int32_t *ids)
{
    uint64_t h = parent ^ 0x6a09e667f3bcc909ULL;
    for (int i = 0; i < DSN_KV_BLOCK; i++) {
        h ^= (uint64_t)(uint32_t)ids[i];
        h *= 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    return h != 0 ? h : 1;
}

static dsn_kvblock_t **bucket_of(dsn_kvpool_t *p, uint64_t hash)
{
    return &p->buckets[hash & (uint64_t)(p->n_buckets - 1)];
}

static void idx_remove(dsn_kvpool_t *p, dsn_kvblock_t *b)
{
    for (dsn_kvblock_t **q = bucket_of(p, b->hash); *q != NULL; q = &(*q)->hnext) {
        if (*q == b) {
            *q = b->hnext;
            break;
        }
    }
    b->hnext = NULL;
    b->registered = 0;
    p->n_registered--;
}

/* Room for one more entry in the index: 0, or -1 when out of memory. */
static int idx_grow(dsn_kvpool_t *p)
{
    if (p->n_registered < p->n_buckets)
        return 0;
    int64_t n = p->n_buckets > 0 ? 2 * p->n_buckets : 256;
    dsn_kvblock_t **nb = calloc((size_t)n, sizeof(*nb));
    if (nb == NULL)
        return -1;
    for (int64_t i = 0; i < p->n_buckets; i++) {
        dsn_kvblock_t *b = p->buckets[i];
        while (b != NULL) {
            dsn_kvblock_t *next = b->hnext;
            dsn_kvblock_t **q = &nb[b->hash & (uint64_t)(n - 1)];
            b->hnext = *q;
            *q = b;
            b = next;
        }
    }
    free(p->buckets);
    p->buckets = nb;
    p->n_buckets = n;
    return 0;
}

static void lru_remove(dsn_kvpool_t *p, dsn_kvblock_t *b)
{
    if (b->lru_prev != NULL)
        b->lru_prev->lru_next = b->lru_next;
    else
        p->lru_head = b->lru_next;
    if (b->lru_next != NULL)
        b->lru_next->lru_prev = b->lru_prev;
    else
        p->lru_tail = b->lru_prev;
    b->lru_prev = b->lru_next = NULL;
    p->cached--;
}

static void lru_push(dsn_kvpool_t *p, dsn_kvblock_t *b)
{
    b->lru_next = NULL;
    b->lru_prev = p->lru_tail;
    if (p->lru_tail != NULL)
        p->lru_tail->lru_next = b;
    else
        p->lru_head = b;
    p->lru_tail = b;
    p->cached++;
}

/* The least recently released cached block, out of the cache (its memory reused). */
static dsn_kvblock_t *evict(dsn_kvpool_t *p)
{
    dsn_kvblock_t *b = p->lru_head;
    if (b == NULL)
        return NULL;
    lru_remove(p, b);
    idx_remove(p, b);
    p->evictions++;
    return b;
}

/* Whether an allocation that finds the free list empty must evict rather than make a block. */
static int must_evict(const dsn_kvpool_t *p)
{
    if (p->cached == 0)
        return 0;
    if (p->max_blocks > 0)
        return p->used + p->cached >= p->max_blocks;
    int64_t keep = p->peak_used > UNLIMITED_MIN_CACHED ? p->peak_used : UNLIMITED_MIN_CACHED;
    return p->cached >= keep;
}

dsn_kvblock_t *dsn_kvpool_alloc(dsn_kvpool_t *p, dsi_status_t *st)
{
    pthread_mutex_lock(&p->mu);
    dsn_kvblock_t *b = NULL;
    if (p->max_blocks > 0 && p->used >= p->max_blocks) {
        *st = DSI_ERR_CAPACITY;
    } else if (p->free_list != NULL) {
        b = p->free_list;
        p->free_list = b->next;
    } else if (must_evict(p)) {
        b = evict(p);
    } else {
        b = block_new(p);
        if (b == NULL)
            b = evict(p); /* out of memory: a cached block is better than failing */
        *st = b != NULL ? DSI_OK : DSI_ERR_NOMEM;
    }
    if (b != NULL) {
        b->next = NULL;
        b->refs = 1;
        p->used++;
        if (p->used > p->peak_used)
            p->peak_used = p->used;
        *st = DSI_OK;
    }
    pthread_mutex_unlock(&p->mu);
    return b;
}

void dsn_kvpool_share(dsn_kvpool_t *p, dsn_kvblock_t *b)
{
    pthread_mutex_lock(&p->mu);
    if (b->refs++ == 1)
        p->shared++;
    pthread_mutex_unlock(&p->mu);
}

void dsn_kvpool_put(dsn_kvpool_t *p, dsn_kvblock_t *b)
{
    pthread_mutex_lock(&p->mu);
    if (b->refs <= 0) {
        pthread_mutex_unlock(&p->mu);
        DSI_ERROR("KV pool: a block released more often than taken");
        abort();
    }
    if (--b->refs == 1)
        p->shared--;
    if (b->refs == 0) {
        p->used--;
        if (b->registered && p->prefix_on) {
            lru_push(p, b); /* kept for the next sequence with this prefix */
        } else {
            if (b->registered)
                idx_remove(p, b);
            b->next = p->free_list;
            p->free_list = b;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

int64_t dsn_kvpool_tail_k(int n_layers, int row, dsn_kv_dtype_t dtype)
{
    uint64_t bb = dsn_kvpool_block_bytes(n_layers, row, dtype);
    uint64_t fb = dsn_kvpool_block_bytes(n_layers, row, DSN_KV_F32);
    return dtype == DSN_KV_F32 || bb == 0 ? 0 : (int64_t)((fb + bb - 1) / bb);
}

int64_t dsn_kvpool_tail_blocks(const dsn_kvpool_t *p, int64_t n)
{
    return n * p->tail_k;
}

dsi_status_t dsn_kvpool_tail_take(dsn_kvpool_t *p, int64_t n)
{
    if (n <= 0)
        return DSI_OK;
    pthread_mutex_lock(&p->mu);
    dsi_status_t st = DSI_OK;
    if (p->max_blocks > 0 && p->used + n > p->max_blocks) {
        st = DSI_ERR_CAPACITY;
    } else if (p->max_blocks > 0) {
        /* The bytes come out of the pool: cached blocks make room, and blocks' memory beyond
         * what the limit leaves goes back to the system. */
        while (p->used + p->cached + n > p->max_blocks && p->cached > 0) {
            dsn_kvblock_t *b = evict(p);
            b->next = p->free_list;
            p->free_list = b;
        }
        while (p->allocated + p->tail + n > p->max_blocks && p->free_list != NULL)
            block_drop_free(p);
    }
    if (st == DSI_OK) {
        p->used += n;
        p->tail += n;
        if (p->used > p->peak_used)
            p->peak_used = p->used;
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

void dsn_kvpool_tail_put(dsn_kvpool_t *p, int64_t n)
{
    if (n <= 0)
        return;
    pthread_mutex_lock(&p->mu);
    if (n > p->tail) {
        pthread_mutex_unlock(&p->mu);
        DSI_ERROR("KV pool: more tail blocks released than taken");
        abort();
    }
    p->used -= n;
    p->tail -= n;
    pthread_mutex_unlock(&p->mu);
}

void dsn_kvpool_set_prefix_cache(dsn_kvpool_t *p, int on)
{
    pthread_mutex_lock(&p->mu);
    p->prefix_on = on != 0;
    if (!p->prefix_on) {
        dsn_kvblock_t *b;
        while ((b = evict(p)) != NULL) {
            p->evictions--; /* not an eviction for room */
            b->next = p->free_list;
            p->free_list = b;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

int dsn_kvpool_prefix_cache(dsn_kvpool_t *p)
{
    pthread_mutex_lock(&p->mu);
    int on = p->prefix_on;
    pthread_mutex_unlock(&p->mu);
    return on;
}

int dsn_kvpool_register(dsn_kvpool_t *p, dsn_kvblock_t *b, const dsn_kvblock_t *parent,
                        const int32_t *ids)
{
    pthread_mutex_lock(&p->mu);
    int rc = -1;
    if (b->registered) {
        rc = 0;
    } else if (p->prefix_on && b->refs > 0 && (parent == NULL || parent->registered) &&
               idx_grow(p) == 0) {
        if (b->ids == NULL)
            b->ids = malloc(DSN_KV_BLOCK * sizeof(int32_t));
        if (b->ids != NULL) {
            memcpy(b->ids, ids, DSN_KV_BLOCK * sizeof(int32_t));
            b->serial = ++p->next_serial;
            b->parent_serial = parent != NULL ? parent->serial : 0;
            b->hash = dsn_kvpool_chain_hash(parent != NULL ? parent->hash : 0, ids) & p->hash_mask;
            dsn_kvblock_t **q = bucket_of(p, b->hash);
            b->hnext = *q;
            *q = b;
            b->registered = 1;
            p->n_registered++;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

dsn_kvblock_t *dsn_kvpool_lookup(dsn_kvpool_t *p, const dsn_kvblock_t *parent, const int32_t *ids)
{
    pthread_mutex_lock(&p->mu);
    dsn_kvblock_t *hit = NULL;
    if (p->prefix_on && p->n_buckets > 0 && (parent == NULL || parent->registered)) {
        uint64_t h = dsn_kvpool_chain_hash(parent != NULL ? parent->hash : 0, ids) & p->hash_mask;
        uint64_t ps = parent != NULL ? parent->serial : 0;
        for (dsn_kvblock_t *b = *bucket_of(p, h); b != NULL && hit == NULL; b = b->hnext) {
            if (b->hash == h && b->parent_serial == ps &&
                memcmp(b->ids, ids, DSN_KV_BLOCK * sizeof(int32_t)) == 0)
                hit = b;
        }
    }
    if (hit != NULL) {
        if (hit->refs == 0) {
            lru_remove(p, hit);
            p->used++;
            if (p->used > p->peak_used)
                p->peak_used = p->used;
        } else if (hit->refs == 1) {
            p->shared++;
        }
        hit->refs++;
    }
    pthread_mutex_unlock(&p->mu);
    return hit;
}

void dsn_kvpool_test_hash_mask(dsn_kvpool_t *p, uint64_t mask)
{
    pthread_mutex_lock(&p->mu);
    p->hash_mask = mask;
    pthread_mutex_unlock(&p->mu);
}

int dsn_kvpool_is_registered(dsn_kvpool_t *p, const dsn_kvblock_t *b)
{
    pthread_mutex_lock(&p->mu);
    int r = b->registered;
    pthread_mutex_unlock(&p->mu);
    return r;
}

void dsn_kvpool_unregister(dsn_kvpool_t *p, dsn_kvblock_t *b)
{
    pthread_mutex_lock(&p->mu);
    if (b->registered)
        idx_remove(p, b);
    pthread_mutex_unlock(&p->mu);
}

#define CHECK(cond, ...)                                     \
    do {                                                     \
        if (!(cond)) {                                       \
            DSI_ERROR("KV pool inconsistent: " __VA_ARGS__); \
            bad = 1;                                         \
        }                                                    \
    } while (0)

int dsn_kvpool_check(dsn_kvpool_t *p, int (*expect_refs)(void *ctx, const dsn_kvblock_t *b),
                     void *ctx)
{
    pthread_mutex_lock(&p->mu);
    int bad = 0;
    int64_t used = 0, cached = 0, freed = 0, shared = 0, registered = 0;
    for (int64_t i = 0; i < p->allocated; i++) {
        const dsn_kvblock_t *b = p->all[i];
        CHECK(b->refs >= 0, "block %lld has %d references", (long long)i, b->refs);
        used += b->refs > 0;
        shared += b->refs > 1;
        cached += b->refs == 0 && b->registered;
        freed += b->refs == 0 && !b->registered;
        registered += b->registered;
        if (expect_refs != NULL) {
            int want = expect_refs(ctx, b);
            CHECK(want == b->refs, "block %lld has %d references, the tables hold it %d times",
                  (long long)i, b->refs, want);
        }
    }
    int64_t n_free = 0, n_lru = 0, n_idx = 0;
    for (const dsn_kvblock_t *b = p->free_list; b != NULL && n_free <= p->allocated; b = b->next) {
        CHECK(b->refs == 0 && !b->registered, "a free-list block is used or registered");
        n_free++;
    }
    const dsn_kvblock_t *prev = NULL;
    for (const dsn_kvblock_t *b = p->lru_head; b != NULL && n_lru <= p->allocated;
         b = b->lru_next) {
        CHECK(b->refs == 0 && b->registered, "an LRU block is used or unregistered");
        CHECK(b->lru_prev == prev, "the LRU list's links disagree");
        prev = b;
        n_lru++;
    }
    CHECK(p->lru_tail == prev, "the LRU list's tail is wrong");
    for (int64_t i = 0; i < p->n_buckets; i++) {
        for (const dsn_kvblock_t *b = p->buckets[i]; b != NULL && n_idx <= p->allocated;
             b = b->hnext) {
            CHECK(b->registered && (uint64_t)i == (b->hash & (uint64_t)(p->n_buckets - 1)),
                  "an index entry is unregistered or in the wrong bucket");
            n_idx++;
        }
    }
    CHECK(used + p->tail == p->used, "%lld blocks used and %lld by tails, counter %lld",
          (long long)used, (long long)p->tail, (long long)p->used);
    for (int64_t i = 0; i < p->allocated; i++)
        CHECK(p->all[i]->slot == i, "block %lld thinks it is at %lld", (long long)i,
              (long long)p->all[i]->slot);
    CHECK(shared == p->shared, "%lld blocks shared, counter %lld", (long long)shared,
          (long long)p->shared);
    CHECK(cached == p->cached && n_lru == cached,
          "%lld blocks cached, %lld on the LRU list, "
          "counter %lld",
          (long long)cached, (long long)n_lru, (long long)p->cached);
    CHECK(freed == n_free, "%lld blocks free, %lld on the free list", (long long)freed,
          (long long)n_free);
    CHECK(registered == p->n_registered && n_idx == registered,
          "%lld blocks registered, %lld in the index, counter %lld", (long long)registered,
          (long long)n_idx, (long long)p->n_registered);
    CHECK(used + cached + freed == p->allocated, "used + cached + free != allocated");
    CHECK(p->max_blocks == 0 || p->allocated + p->tail <= p->max_blocks ||
              p->allocated + p->tail <= p->peak_used,
          "%lld blocks allocated beyond the limit of %lld", (long long)p->allocated,
          (long long)p->max_blocks);
    pthread_mutex_unlock(&p->mu);
    return bad ? -1 : 0;
}
