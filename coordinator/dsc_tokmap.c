/* dsc_tokmap.c - hash tables of the tokenizer (see dsc_tokmap.h). */
#include "dsc_tokmap.h"

#include <stdlib.h>
#include <string.h>

uint32_t dsc_hash_bytes(const void *data, size_t len)
{
    /* FNV-1a, then a final avalanche so that the low bits used for the slot are well mixed. */
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x7feb352dU;
    h ^= h >> 15;
    return h;
}

static size_t cap_for(size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 1)
        cap <<= 1;
    return cap;
}

static dsi_status_t strmap_alloc(dsc_strmap_t *m, size_t cap)
{
    m->keys = calloc(cap, sizeof(*m->keys));
    m->key_len = calloc(cap, sizeof(*m->key_len));
    m->vals = calloc(cap, sizeof(*m->vals));
    m->hashes = calloc(cap, sizeof(*m->hashes));
    m->cap = cap;
    m->count = 0;
    if (m->keys == NULL || m->key_len == NULL || m->vals == NULL || m->hashes == NULL) {
        dsc_strmap_cleanup(m);
        return DSI_ERR_NOMEM;
    }
    return DSI_OK;
}

dsi_status_t dsc_strmap_init(dsc_strmap_t *m, size_t expected)
{
    return strmap_alloc(m, cap_for(expected));
}

void dsc_strmap_cleanup(dsc_strmap_t *m)
{
    free(m->keys);
    free(m->key_len);
    free(m->vals);
    free(m->hashes);
    memset(m, 0, sizeof(*m));
}

static size_t strmap_find(const dsc_strmap_t *m, const char *key, size_t len, uint32_t h)
{
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->keys[i] != NULL) {
        if (m->hashes[i] == h && m->key_len[i] == len && memcmp(m->keys[i], key, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int strmap_grow(dsc_strmap_t *m)
{
    dsc_strmap_t bigger;
    if (strmap_alloc(&bigger, m->cap * 2) != DSI_OK)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == NULL)
            continue;
        size_t j = strmap_find(&bigger, m->keys[i], m->key_len[i], m->hashes[i]);
        bigger.keys[j] = m->keys[i];
        bigger.key_len[j] = m->key_len[i];
        bigger.vals[j] = m->vals[i];
        bigger.hashes[j] = m->hashes[i];
        bigger.count++;
    }
    dsc_strmap_cleanup(m);
    *m = bigger;
    return 0;
}

int dsc_strmap_put(dsc_strmap_t *m, const char *key, size_t len, int32_t val, int32_t *old)
{
    if ((m->count + 1) * 2 > m->cap && strmap_grow(m) != 0)
        return -1;
    uint32_t h = dsc_hash_bytes(key, len);
    size_t i = strmap_find(m, key, len, h);
    if (m->keys[i] != NULL) {
        if (old != NULL)
            *old = m->vals[i];
        m->vals[i] = val;
        return 0;
    }
    m->keys[i] = key;
    m->key_len[i] = (uint32_t)len;
    m->vals[i] = val;
    m->hashes[i] = h;
    m->count++;
    return 1;
}

int32_t dsc_strmap_get(const dsc_strmap_t *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return -1;
    size_t i = strmap_find(m, key, len, dsc_hash_bytes(key, len));
    return m->keys[i] != NULL ? m->vals[i] : -1;
}

static uint64_t pair_key(int32_t left, int32_t right)
{
    return (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
}

static size_t pair_slot(uint64_t key, size_t mask)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & mask;
}

dsi_status_t dsc_pairmap_init(dsc_pairmap_t *m, size_t expected)
{
    size_t cap = cap_for(expected);
    m->keys = calloc(cap, sizeof(*m->keys));
    m->rank = calloc(cap, sizeof(*m->rank));
    m->merged = calloc(cap, sizeof(*m->merged));
    m->cap = cap;
    m->count = 0;
    if (m->keys == NULL || m->rank == NULL || m->merged == NULL) {
        dsc_pairmap_cleanup(m);
        return DSI_ERR_NOMEM;
    }
    return DSI_OK;
}

void dsc_pairmap_cleanup(dsc_pairmap_t *m)
{
    free(m->keys);
    free(m->rank);
    free(m->merged);
    memset(m, 0, sizeof(*m));
}

void dsc_pairmap_put(dsc_pairmap_t *m, int32_t left, int32_t right, uint32_t rank, int32_t merged)
{
    /* Sized by the caller for all merges at init: the table is never more than half full. */
    uint64_t key = pair_key(left, right);
    size_t mask = m->cap - 1;
    size_t i = pair_slot(key, mask);
    while (m->keys[i] != 0 && m->keys[i] != key)
        i = (i + 1) & mask;
    if (m->keys[i] == 0)
        m->count++;
    m->keys[i] = key;
    m->rank[i] = rank;
    m->merged[i] = merged;
}

int dsc_pairmap_get(const dsc_pairmap_t *m, int32_t left, int32_t right, uint32_t *rank,
                    int32_t *merged)
{
    uint64_t key = pair_key(left, right);
    size_t mask = m->cap - 1;
    size_t i = pair_slot(key, mask);
    while (m->keys[i] != 0) {
        if (m->keys[i] == key) {
            *rank = m->rank[i];
            *merged = m->merged[i];
            return 1;
        }
        i = (i + 1) & mask;
    }
    return 0;
}
