/*
 * test_unit_prefix_cache.c - the prefix cache of the KV pool (node/engine/dsn_kvpool.h,
 * dsn_kvcache.h) without a model:
 * - a published chain is found again by a prompt that starts alike, whole blocks only, up to the
 *   limit asked; a block with the same ids under another parent is not (the key is the parent's
 *   registration and all ids, not only a hash); a freed sequence's blocks stay cached and count
 *   as cached, not used; --prefix-cache off drops them and finds nothing;
 * - a write after a truncation into a published block never changes the cached block (copy when
 *   shared, out of the index when only ours);
 * - forks share the published blocks and keep publishing their own;
 * - a randomized workload of sequences drawn from a few prompt families (create + lookup, grow
 *   with publishing, fork, truncate, preempt (clear), destroy) under a small pool limit that
 *   forces evictions: after every step the pool is consistent (used + cached + free, reference
 *   counts equal to the block tables, the LRU list and the index) and every live sequence reads
 *   back exactly the rows its own token ids give (a row is a function of the ids up to its
 *   position, as real KV is), so no step ever shares a wrong block; also with the chain hashes
 *   cut to two bits and to none (every lookup meets colliding entries).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_kvcache.h"

#define LAYERS 2
#define ROW    8
#define B      DSN_KV_BLOCK

/* A row that depends on every id up to pos (like the real KV of a causal model). */
static float value(uint64_t h, int layer, int i)
{
    uint64_t x = h * 0x9e3779b97f4a7c15ULL + (uint64_t)(layer * 131 + i) * 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 31;
    return (float)(x % 100003) / 997.0f;
}

static uint64_t step_hash(uint64_t h, int32_t id)
{
    h ^= (uint64_t)(uint32_t)id + 0x632be59bd9b4e019ULL;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 29);
}

/* Writes the rows of [kv->length, to) from ids (reserve done), records the ids, publishes. */
static void grow(dsn_kvcache_t *kv, const int32_t *ids, int64_t to)
{
    uint64_t h = 0;
    for (int64_t p = 0; p < kv->length; p++)
        h = step_hash(h, ids[p]);
    float row[ROW];
    for (int64_t p = kv->length; p < to; p++) {
        h = step_hash(h, ids[p]);
        for (int l = 0; l < LAYERS; l++) {
            for (int i = 0; i < ROW; i++)
                row[i] = value(h, l, i);
            dsn_kvcache_store(kv, l, p, row);
        }
    }
    DSI_CHECK(dsn_kvcache_set_ids(kv, kv->length, ids + kv->length, to - kv->length) == 0);
    kv->length = to;
    dsn_kvcache_publish(kv);
}

/* Whether every stored row equals what ids give. */
static int rows_ok(const dsn_kvcache_t *kv, const int32_t *ids)
{
    uint64_t h = 0;
    float row[ROW];
    for (int64_t p = 0; p < kv->length; p++) {
        h = step_hash(h, ids[p]);
        for (int l = 0; l < LAYERS; l++) {
            dsn_kvcache_load(kv, l, p, row);
            for (int i = 0; i < ROW; i++)
                if (row[i] != value(h, l, i))
                    return 0;
        }
    }
    return 1;
}

static void check_basic(void)
{
    dsn_kvpool_t *pool;
    DSI_CHECK(dsn_kvpool_create(LAYERS, ROW, DSN_KV_F32, 0, &pool) == DSI_OK);
    int32_t a[5 * B], b[5 * B];
    for (int i = 0; i < 5 * B; i++)
        a[i] = b[i] = i % 50;
    b[3 * B + 5] = 999; /* b shares a's first three blocks */
    dsn_kvcache_t *x, *y, *z;
    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &x) == DSI_OK);
    DSI_CHECK(dsn_kvcache_reserve(x, 4 * B + 10) == DSI_OK);
    grow(x, a, 4 * B + 10);
    DSI_CHECK_INT_EQ(x->n_published, 4);
    dsn_kvcache_destroy(x);
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(pool, &st);
    DSI_CHECK_INT_EQ(st.used, 0);
    DSI_CHECK_INT_EQ(st.cached, 4); /* the partial fifth block is not kept */
    DSI_CHECK(dsn_kvcache_check(pool, NULL, 0) == 0);

    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &y) == DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_attach_prefix(y, b, 5 * B, 5 * B - 1), 3 * B);
    DSI_CHECK(rows_ok(y, b));
    dsn_kvpool_stats(pool, &st);
    DSI_CHECK_INT_EQ(st.used, 3);
    DSI_CHECK_INT_EQ(st.cached, 1);
    /* the limit: whole blocks only, never beyond it */
    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &z) == DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_attach_prefix(z, a, 4 * B, 4 * B - 1), 3 * B);
    DSI_CHECK_INT_EQ(dsn_kvcache_attach_prefix(z, a, 4 * B, 4 * B), B); /* extends */
    DSI_CHECK(rows_ok(z, a));
    dsn_kvcache_t *both[2] = {y, z};
    DSI_CHECK(dsn_kvcache_check(pool, both, 2) == 0);

    /* same ids, other parent: no hit */
    dsn_kvcache_destroy(z);
    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &z) == DSI_OK);
    int32_t c[2 * B];
    memcpy(c, a + B, sizeof(c)); /* a's second and third blocks at positions 0.. */
    DSI_CHECK_INT_EQ(dsn_kvcache_attach_prefix(z, c, 2 * B, 2 * B), 0);
    dsn_kvcache_destroy(z);

    /* a truncation into a published block, then a write: the cached block stays intact */
    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &z) == DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_attach_prefix(z, a, 4 * B, 4 * B), 4 * B);
    dsn_kvcache_truncate(z, 2 * B + 7);
    int32_t d[3 * B];
    memcpy(d, a, sizeof(d));
    d[2 * B + 7] = 777;
    DSI_CHECK(dsn_kvcache_reserve(z, 3 * B) == DSI_OK);
    grow(z, d, 3 * B);
    DSI_CHECK(rows_ok(z, d));
    DSI_CHECK(rows_ok(y, b)); /* y still shares a's third block */
    dsn_kvcache_t *two[2] = {y, z};
    DSI_CHECK(dsn_kvcache_check(pool, two, 2) == 0);
    dsn_kvcache_t *w;
    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &w) == DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_attach_prefix(w, d, 3 * B, 3 * B), 3 * B); /* z's own block */
    DSI_CHECK(rows_ok(w, d));
    dsn_kvcache_destroy(w);
    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &w) == DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_attach_prefix(w, a, 4 * B, 4 * B), 4 * B); /* a's still */
    DSI_CHECK(rows_ok(w, a));

    /* a fork shares the published blocks and goes on publishing */
    dsn_kvcache_t *f;
    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &f) == DSI_OK);
    DSI_CHECK(dsn_kvcache_copy_prefix(f, w, 4 * B) == DSI_OK);
    DSI_CHECK_INT_EQ(f->n_published, 4);
    int32_t e[5 * B];
    memcpy(e, a, sizeof(e));
    DSI_CHECK(dsn_kvcache_reserve(f, 5 * B) == DSI_OK);
    grow(f, e, 5 * B);
    DSI_CHECK_INT_EQ(f->n_published, 5);
    dsn_kvcache_t *all[4] = {y, z, w, f};
    DSI_CHECK(dsn_kvcache_check(pool, all, 4) == 0);
    for (int i = 0; i < 4; i++)
        dsn_kvcache_destroy(all[i]);

    /* off: the cached blocks go free, nothing is found */
    dsn_kvpool_set_prefix_cache(pool, 0);
    dsn_kvpool_stats(pool, &st);
    DSI_CHECK_INT_EQ(st.cached, 0);
    DSI_CHECK_INT_EQ(st.used, 0);
    DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &w) == DSI_OK);
    DSI_CHECK_INT_EQ(dsn_kvcache_attach_prefix(w, a, 4 * B, 4 * B), 0);
    DSI_CHECK(dsn_kvcache_reserve(w, 2 * B) == DSI_OK);
    grow(w, a, 2 * B);
    DSI_CHECK_INT_EQ(w->n_published, 0);
    dsn_kvcache_destroy(w);
    DSI_CHECK(dsn_kvcache_check(pool, NULL, 0) == 0);
    dsn_kvpool_release(pool);
}

/* ---- the randomized workload ---- */

#define N      12 /* sequence slots */
#define LIMIT  40 /* pool blocks */
#define MAXLEN (6 * B)
#define FAMS   4

typedef struct {
    dsn_kvcache_t *kv;
    int32_t ids[MAXLEN];
    int64_t target; /* the length it grows to */
} slot_t;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

static void random_ids(unsigned *seed, int32_t *ids, int fams[FAMS][MAXLEN])
{
    /* a family's prefix of a random number of tokens, then a random tail */
    int f = (int)(rnd(seed) % FAMS);
    int keep = (int)(rnd(seed) % (MAXLEN + 1));
    for (int i = 0; i < MAXLEN; i++)
        ids[i] = i < keep ? fams[f][i] : (int32_t)(rnd(seed) % 5);
}

static int live(slot_t *s, dsn_kvcache_t **out)
{
    int n = 0;
    for (int i = 0; i < N; i++)
        if (s[i].kv != NULL)
            out[n++] = s[i].kv;
    return n;
}

static void check_random(dsn_kv_dtype_t dt, unsigned seed0, uint64_t hash_mask)
{
    unsigned seed = seed0;
    dsn_kvpool_t *pool;
    DSI_CHECK(dsn_kvpool_create(LAYERS, ROW, dt, LIMIT, &pool) == DSI_OK);
    dsn_kvpool_test_hash_mask(pool, hash_mask);
    int fams[FAMS][MAXLEN];
    for (int f = 0; f < FAMS; f++)
        for (int i = 0; i < MAXLEN; i++)
            fams[f][i] = (int32_t)(rnd(&seed) % 7);
    slot_t s[N];
    memset(s, 0, sizeof(s));
    int64_t hits = 0, steps = 0, bad_steps = 0, bad_rows = 0;
    for (int it = 0; it < 4000; it++) {
        int i = (int)(rnd(&seed) % N), op = (int)(rnd(&seed) % 10);
        slot_t *x = &s[i];
        if (x->kv == NULL) {
            /* a new sequence: look its prompt up */
            if (dsn_kvcache_create(pool, MAXLEN, &x->kv) != DSI_OK)
                continue;
            random_ids(&seed, x->ids, fams);
            x->target = 1 + (int64_t)(rnd(&seed) % MAXLEN);
            hits += dsn_kvcache_attach_prefix(x->kv, x->ids, x->target, x->target - 1);
        } else if (op < 5) {
            /* grow by a chunk (a full pool: preempt it) */
            int64_t to = x->kv->length + 1 + (int64_t)(rnd(&seed) % 100);
            to = to > x->target ? x->target : to;
            if (to > x->kv->length) {
                if (dsn_kvcache_reserve(x->kv, to) == DSI_OK)
                    grow(x->kv, x->ids, to);
                else
                    dsn_kvcache_clear(x->kv);
            } else if (x->kv->length % B == 0) {
                /* at a block boundary it may extend from the cache */
                hits += dsn_kvcache_attach_prefix(x->kv, x->ids, x->target, x->target);
            }
        } else if (op == 5) {
            /* fork another live sequence's prefix into a new slot */
            int j = (int)(rnd(&seed) % N);
            if (j != i && s[j].kv != NULL && s[j].kv->length > 0) {
                int64_t n = 1 + (int64_t)(rnd(&seed) % s[j].kv->length);
                dsn_kvcache_t *f;
                if (dsn_kvcache_create(pool, MAXLEN, &f) == DSI_OK &&
                    dsn_kvcache_copy_prefix(f, s[j].kv, n) == DSI_OK) {
                    dsn_kvcache_destroy(x->kv);
                    x->kv = f;
                    memcpy(x->ids, s[j].ids, sizeof(x->ids));
                    for (int64_t p = n; p < MAXLEN; p++)
                        x->ids[p] = (int32_t)(rnd(&seed) % 5); /* its own continuation */
                    x->target = s[j].target;
                } else {
                    dsn_kvcache_destroy(f);
                }
            }
        } else if (op == 6) {
            /* truncate (rejected drafts): the positions after it get other ids */
            int64_t n = (int64_t)(rnd(&seed) % (x->kv->length + 1));
            dsn_kvcache_truncate(x->kv, n);
            for (int64_t p = n; p < MAXLEN; p++)
                x->ids[p] = (int32_t)(rnd(&seed) % 5);
        } else if (op == 7) {
            dsn_kvcache_clear(x->kv); /* preempted */
        } else {
            dsn_kvcache_destroy(x->kv); /* finished or cancelled */
            x->kv = NULL;
        }
        dsn_kvcache_t *kv[N];
        int n = live(s, kv);
        steps++;
        bad_steps += dsn_kvcache_check(pool, kv, n) != 0;
        if (dt == DSN_KV_F32)
            for (int k = 0; k < N; k++)
                bad_rows += s[k].kv != NULL && !rows_ok(s[k].kv, s[k].ids);
    }
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(pool, &st);
    fprintf(stderr,
            "%s seed %u hash mask %llx: %lld steps, %lld tokens found cached, %llu evictions\n",
            dsn_kv_dtype_name(dt), seed0, (unsigned long long)hash_mask, (long long)steps,
            (long long)hits, (unsigned long long)st.evictions);
    DSI_CHECK_INT_EQ(bad_steps, 0);
    DSI_CHECK_INT_EQ(bad_rows, 0);
    DSI_CHECK(hits > 0);         /* the families were found again */
    DSI_CHECK(st.evictions > 0); /* and the small pool evicted */
    DSI_CHECK(st.total == LIMIT);
    for (int i = 0; i < N; i++)
        dsn_kvcache_destroy(s[i].kv);
    dsn_kvpool_stats(pool, &st);
    DSI_CHECK_INT_EQ(st.used, 0);
    DSI_CHECK_INT_EQ(st.used + st.cached + st.free, st.total);
    DSI_CHECK(dsn_kvcache_check(pool, NULL, 0) == 0);
    dsn_kvpool_release(pool);
}

/* Without a limit the cache keeps at most the peak in use (or a floor): memory stays bounded. */
static void check_unlimited(void)
{
    dsn_kvpool_t *pool;
    DSI_CHECK(dsn_kvpool_create(LAYERS, ROW, DSN_KV_BF16, 0, &pool) == DSI_OK);
    static int32_t ids[200 * B];
    for (int r = 0; r < 200; r++) {
        dsn_kvcache_t *kv;
        DSI_CHECK(dsn_kvcache_create(pool, 1 << 20, &kv) == DSI_OK);
        for (int i = 0; i < 2 * B; i++)
            ids[i] = r * 1000 + i; /* every sequence different: nothing is found */
        DSI_CHECK(dsn_kvcache_reserve(kv, 2 * B) == DSI_OK);
        grow(kv, ids, 2 * B);
        dsn_kvcache_destroy(kv);
    }
    dsn_kvpool_stats_t st;
    dsn_kvpool_stats(pool, &st);
    DSI_CHECK(st.allocated <= 64 + 2);
    DSI_CHECK(st.evictions > 0);
    DSI_CHECK(dsn_kvcache_check(pool, NULL, 0) == 0);
    dsn_kvpool_release(pool);
}

int main(void)
{
    check_basic();
    check_random(DSN_KV_F32, 1, UINT64_MAX);
    check_random(DSN_KV_F32, 12345, UINT64_MAX);
    check_random(DSN_KV_F32, 5, 3); /* four hash values: collisions everywhere */
    check_random(DSN_KV_F32, 6, 0); /* one */
    check_random(DSN_KV_BF16, 7, UINT64_MAX);
    check_random(DSN_KV_FP8, 99, UINT64_MAX);
    check_unlimited();
    return dsi_test_finish();
}
