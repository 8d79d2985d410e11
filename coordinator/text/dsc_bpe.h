/*
 * dsc_bpe.h - byte-level BPE of one pre-tokenized piece (internal to the tokenizer).
 *
 * The piece's bytes start as the ids of their byte-level characters; then, as in the reference,
 * the adjacent pair with the lowest merge rank is merged (leftmost first on equal ranks) until no
 * pair merges, using a binary heap so that a 1 MB piece costs n log n, not n^2. Results of
 * short pieces are kept in a bounded per-call cache (text is full of repeated words).
 */
#ifndef DSC_BPE_H
#define DSC_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"

typedef struct dsc_tokenizer dsc_tokenizer_t;

/* A growable id vector. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} dsc_idvec_t;

dsi_status_t dsc_idvec_push(dsc_idvec_t *vec, int32_t id);

struct dsc_bpe_cache_slot;

/* Per-call working memory, reused across pieces; one per thread. */
typedef struct {
    int32_t *sym;         /* [cap] symbol ids */
    int32_t *prev, *next; /* [cap] linked list over symbols; -1 ends */
    uint64_t *heap;       /* [heap_cap] (rank << 32 | position) */
    size_t cap, heap_cap;
    char *bl; /* byte-level form of the piece (ignore_merges lookups) */
    size_t bl_cap;
    struct dsc_bpe_cache_slot *slots; /* [n_slots] open addressing, power of two */
    size_t n_slots, n_used;
    char *keys; /* cached piece bytes */
    size_t keys_len, keys_cap;
    int32_t *ids; /* cached results */
    size_t ids_len, ids_cap;
} dsc_bpe_ctx_t;

void dsc_bpe_ctx_init(dsc_bpe_ctx_t *ctx);
void dsc_bpe_ctx_cleanup(dsc_bpe_ctx_t *ctx);

/* Append the ids of piece[0..len) (len > 0) to `out`. DSI_ERR_NOMEM is the only error. */
dsi_status_t dsc_bpe_encode(const dsc_tokenizer_t *tok, dsc_bpe_ctx_t *ctx, const char *piece,
                            size_t len, dsc_idvec_t *out);

#endif
