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

dsi_status_t dsc_strmap_init(dsc_strmap_t *m, size_t expected)
{
    m->cap = cap_for(expected);
    m->count = 0;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    return m->slots != NULL ? DSI_OK : DSI_ERR_NOMEM;
}

void dsc_strmap_cleanup(dsc_strmap_t *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static size_t strmap_find(const dsc_strmap_t *m, const char *key, size_t len, uint32_t h)
{
    size_t mask = m->cap - 1;
    size_t i = h & mask;
    while (m->slots[i].key != NULL) {
        const dsc_str_slot_t *s = &m->slots[i];
        if (s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int strmap_grow(dsc_strmap_t *m)
{
    dsc_strmap_t bigger = {calloc(m->cap * 2, sizeof(dsc_str_slot_t)), m->cap * 2, m->count};
    if (bigger.slots == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        const dsc_str_slot_t *s = &m->slots[i];
        if (s->key != NULL)
            bigger.slots[strmap_find(&bigger, s->key, s->key_len, s->hash)] = *s;
    }
    free(m->slots);
    *m = bigger;
    return 0;
}

int dsc_strmap_put(dsc_strmap_t *m, const char *key, size_t len, int32_t val, int32_t *old)
{
    if ((m->count + 1) * 2 > m->cap && strmap_grow(m) != 0)
        return -1;
    uint32_t h = dsc_hash_bytes(key, len);
    dsc_str_slot_t *s = &m->slots[strmap_find(m, key, len, h)];
    if (s->key != NULL) {
        if (old != NULL)
            *old = s->val;
        s->val = val;
        return 0;
    }
    *s = (dsc_str_slot_t){key, (uint32_t)len, h, val};
    m->count++;
    return 1;
}

int32_t dsc_strmap_get(const dsc_strmap_t *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return -1;
    const dsc_str_slot_t *s = &m->slots[strmap_find(m, key, len, dsc_hash_bytes(key, len))];
    return s->key != NULL ? s->val : -1;
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
    m->cap = cap_for(expected);
    m->count = 0;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    return m->slots != NULL ? DSI_OK : DSI_ERR_NOMEM;
}

void dsc_pairmap_cleanup(dsc_pairmap_t *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

void dsc_pairmap_put(dsc_pairmap_t *m, int32_t left, int32_t right, uint32_t rank, int32_t merged)
{
    /* Sized by the caller for all merges at init: the table is never more than half full. */
    uint64_t key = pair_key(left, right);
    size_t mask = m->cap - 1;
    size_t i = pair_slot(key, mask);
    while (m->slots[i].key != 0 && m->slots[i].key != key)
        i = (i + 1) & mask;
    if (m->slots[i].key == 0)
        m->count++;
    m->slots[i] = (dsc_pair_slot_t){key, rank, merged};
}

int dsc_pairmap_get(const dsc_pairmap_t *m, int32_t left, int32_t right, uint32_t *rank,
                    int32_t *merged)
{
    uint64_t key = pair_key(left, right);
    size_t mask = m->cap - 1;
    for (size_t i = pair_slot(key, mask); m->slots[i].key != 0; i = (i + 1) & mask) {
        if (m->slots[i].key == key) {
            *rank = m->slots[i].rank;
            *merged = m->slots[i].merged;
            return 1;
        }
    }
    return 0;
}
