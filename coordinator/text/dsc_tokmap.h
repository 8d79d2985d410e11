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

/* One slot of a string map: everything a probe compares is in the slot, one cache line. */
typedef struct {
    const char *key; /* NULL = empty slot */
    uint32_t key_len;
    uint32_t hash; /* full hash, compared before the bytes */
    int32_t val;
} dsc_str_slot_t;

/* Byte string -> int32 value. Keys are borrowed: they must outlive the map. */
typedef struct {
    dsc_str_slot_t *slots; /* [cap], cap a power of two */
    size_t cap;
    size_t count;
} dsc_strmap_t;

dsi_status_t dsc_strmap_init(dsc_strmap_t *m, size_t expected);
void dsc_strmap_cleanup(dsc_strmap_t *m);
/*
 * Insert or overwrite. Returns 1 if the key was new, 0 if it replaced a value (*old set when
 * not NULL), -1 when the map had to grow and could not (out of memory).
 */
int dsc_strmap_put(dsc_strmap_t *m, const char *key, size_t len, int32_t val, int32_t *old);
/* The value of key, or -1. */
int32_t dsc_strmap_get(const dsc_strmap_t *m, const char *key, size_t len);

uint32_t dsc_hash_bytes(const void *data, size_t len);

/* One slot of the merge table: key, rank and result together, so a lookup touches one line. */
typedef struct {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty */
    uint32_t rank;
    int32_t merged;
} dsc_pair_slot_t;

/* A merge: (left id, right id) -> (rank, merged id). */
typedef struct {
    dsc_pair_slot_t *slots; /* [cap] */
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
