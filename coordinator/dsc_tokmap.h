/*
 * dsc_tokmap.h - the tokenizer's hash tables (internal): byte string -> id, and token pair ->
 * merge. Open addressing with linear probing, sized to a power of two at least twice the
 * entry count, so lookups stay O(1) on the encode hot path. Built once at load, then read-only.
 */
#ifndef DSC_TOKMAP_H
#define DSC_TOKMAP_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"

/* Byte string -> int32 value. Keys are borrowed: they must outlive the map. */
typedef struct {
    const char **keys; /* [cap]; NULL = empty slot */
    uint32_t *key_len; /* [cap] */
    int32_t *vals;     /* [cap] */
    uint32_t *hashes;  /* [cap] full hash, compared before the bytes */
    size_t cap;        /* power of two */
    size_t count;
} dsc_strmap_t;

dsi_status_t dsc_strmap_init(dsc_strmap_t *m, size_t expected);
void dsc_strmap_cleanup(dsc_strmap_t *m);
/*
 * Insert or overwrite. Returns 1 if the key was new, 0 if it replaced a value (*old set when
 * not NULL). Never fails: the map was sized for `expected` entries and grows itself otherwise
 * (growth may fail with -1 on out of memory).
 */
int dsc_strmap_put(dsc_strmap_t *m, const char *key, size_t len, int32_t val, int32_t *old);
/* The value of key, or -1. */
int32_t dsc_strmap_get(const dsc_strmap_t *m, const char *key, size_t len);

uint32_t dsc_hash_bytes(const void *data, size_t len);

/* A merge: (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t *keys;  /* [cap] (left << 32 | right) + 1; 0 = empty */
    uint32_t *rank;  /* [cap] */
    int32_t *merged; /* [cap] */
    size_t cap;
    size_t count;
} dsc_pairmap_t;

dsi_status_t dsc_pairmap_init(dsc_pairmap_t *m, size_t expected);
void dsc_pairmap_cleanup(dsc_pairmap_t *m);
/* Insert or overwrite (later merges of the same pair win, as in the reference). */
void dsc_pairmap_put(dsc_pairmap_t *m, int32_t left, int32_t right, uint32_t rank, int32_t merged);
/* 1 and *rank / *merged when the pair merges, else 0. */
int dsc_pairmap_get(const dsc_pairmap_t *m, int32_t left, int32_t right, uint32_t *rank,
                    int32_t *merged);

#endif
