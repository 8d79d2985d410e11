#include "dsc_prefix_route.h"

#include <stdlib.h>
#include <string.h>

/* An entry: lane `lane` was sent the block whose chain hash is `hash`. */
typedef struct entry {
    uint64_t hash;
    uint32_t lane;
    struct entry *hnext;               /* bucket */
    struct entry *lru_prev, *lru_next; /* least recent first */
} entry_t;

struct dsc_prefix_route {
    uint32_t capacity, n;
    entry_t *slab;     /* [capacity] */
    entry_t *free;     /* unused entries (chained through hnext) */
    entry_t **buckets; /* [n_buckets] */
    uint32_t n_buckets;
    entry_t *lru_head, *lru_tail;
};

static uint64_t chain_hash(uint64_t parent, const int32_t *ids)
{
    uint64_t h = parent ^ 0x6a09e667f3bcc909ULL;
    for (int i = 0; i < DSC_PREFIX_BLOCK; i++) {
        h ^= (uint64_t)(uint32_t)ids[i];
        h *= 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    return h != 0 ? h : 1;
}

static entry_t **bucket(dsc_prefix_route_t *r, uint64_t hash, uint32_t lane)
{
    uint64_t k = (hash ^ ((uint64_t)lane * 0xbf58476d1ce4e5b9ULL)) * 0x94d049bb133111ebULL;
    return &r->buckets[(k >> 32) & (r->n_buckets - 1)];
}

dsc_prefix_route_t *dsc_prefix_route_create(uint32_t capacity)
{
    if (capacity < 1)
        capacity = 1;
    dsc_prefix_route_t *r = calloc(1, sizeof(*r));
    uint32_t nb = 16;
    while (nb < capacity && nb < (1u << 30))
        nb *= 2;
    if (r != NULL) {
        r->slab = calloc(capacity, sizeof(*r->slab));
        r->buckets = calloc(nb, sizeof(*r->buckets));
    }
    if (r == NULL || r->slab == NULL || r->buckets == NULL) {
        dsc_prefix_route_destroy(r);
        return NULL;
    }
    r->capacity = capacity;
    r->n_buckets = nb;
    dsc_prefix_route_reset(r);
    return r;
}

void dsc_prefix_route_destroy(dsc_prefix_route_t *r)
{
    if (r == NULL)
        return;
    free(r->slab);
    free(r->buckets);
    free(r);
}

void dsc_prefix_route_reset(dsc_prefix_route_t *r)
{
    memset(r->buckets, 0, r->n_buckets * sizeof(*r->buckets));
    r->free = NULL;
    for (uint32_t i = r->capacity; i-- > 0;) {
        r->slab[i].hnext = r->free;
        r->free = &r->slab[i];
    }
    r->n = 0;
    r->lru_head = r->lru_tail = NULL;
}

uint32_t dsc_prefix_route_entries(const dsc_prefix_route_t *r)
{
    return r->n;
}

static entry_t *find(dsc_prefix_route_t *r, uint64_t hash, uint32_t lane)
{
    for (entry_t *e = *bucket(r, hash, lane); e != NULL; e = e->hnext)
        if (e->hash == hash && e->lane == lane)
            return e;
    return NULL;
}

static void lru_unlink(dsc_prefix_route_t *r, entry_t *e)
{
    if (e->lru_prev != NULL)
        e->lru_prev->lru_next = e->lru_next;
    else
        r->lru_head = e->lru_next;
    if (e->lru_next != NULL)
        e->lru_next->lru_prev = e->lru_prev;
    else
        r->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_append(dsc_prefix_route_t *r, entry_t *e)
{
    e->lru_prev = r->lru_tail;
    e->lru_next = NULL;
    if (r->lru_tail != NULL)
        r->lru_tail->lru_next = e;
    else
        r->lru_head = e;
    r->lru_tail = e;
}

static void drop(dsc_prefix_route_t *r, entry_t *e)
{
    for (entry_t **q = bucket(r, e->hash, e->lane); *q != NULL; q = &(*q)->hnext) {
        if (*q == e) {
            *q = e->hnext;
            break;
        }
    }
    lru_unlink(r, e);
    e->hnext = r->free;
    r->free = e;
    r->n--;
}

/* Whole blocks of a prompt of n tokens a node can take from its cache (not the last token). */
static uint32_t usable_blocks(uint32_t n)
{
    return n > 0 ? (n - 1) / DSC_PREFIX_BLOCK : 0;
}

uint32_t dsc_prefix_route_pick(dsc_prefix_route_t *r, const int32_t *tokens, uint32_t n,
                               uint32_t n_lanes, const uint64_t *load, uint32_t start,
                               uint32_t *matched)
{
    if (n_lanes <= 1) {
        if (matched != NULL) {
            uint32_t m = 0;
            uint64_t h = 0;
            for (uint32_t b = 0; r != NULL && n_lanes == 1 && b < usable_blocks(n); b++) {
                h = chain_hash(h, tokens + (size_t)b * DSC_PREFIX_BLOCK);
                if (find(r, h, 0) == NULL)
                    break;
                m++;
            }
            *matched = m * DSC_PREFIX_BLOCK;
        }
        return 0;
    }
    uint32_t nb = usable_blocks(n), best = start % n_lanes, best_m = 0;
    int have = 0;
    for (uint32_t i = 0; i < n_lanes; i++) {
        uint32_t lane = (start + i) % n_lanes, m = 0;
        uint64_t h = 0;
        for (uint32_t b = 0; r != NULL && b < nb; b++) {
            h = chain_hash(h, tokens + (size_t)b * DSC_PREFIX_BLOCK);
            if (find(r, h, lane) == NULL)
                break;
            m++;
        }
        uint64_t ld = load != NULL ? load[lane] : 0, bl = load != NULL ? load[best] : 0;
        if (!have || m > best_m || (m == best_m && ld < bl)) {
            best = lane;
            best_m = m;
            have = 1;
        }
    }
    if (matched != NULL)
        *matched = best_m * DSC_PREFIX_BLOCK;
    return best;
}

void dsc_prefix_route_note(dsc_prefix_route_t *r, uint32_t lane, const int32_t *tokens, uint32_t n)
{
    uint64_t h = 0;
    for (uint32_t b = 0; b < n / DSC_PREFIX_BLOCK; b++) {
        h = chain_hash(h, tokens + (size_t)b * DSC_PREFIX_BLOCK);
        entry_t *e = find(r, h, lane);
        if (e != NULL) {
            lru_unlink(r, e);
            lru_append(r, e);
            continue;
        }
        if (r->free == NULL)
            drop(r, r->lru_head); /* the least recent entry goes */
        e = r->free;
        r->free = e->hnext;
        e->hash = h;
        e->lane = lane;
        entry_t **q = bucket(r, h, lane);
        e->hnext = *q;
        *q = e;
        lru_append(r, e);
        r->n++;
    }
}
