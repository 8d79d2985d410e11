/*
 * dsn_kvcache.h - the latent KV cache of one sequence on one node (absorbed MLA).
 *
 * Per token per layer it stores kv_lora_rank + qk_rope_head_dim f32 values: the normalised latent
 * c_kv followed by the rotated shared k_pe, one contiguous row, so that attention scores for all
 * heads are one matrix product over the rows (see dsn_attention.c). Each layer of the slice has
 * its own [capacity, row] block; capacity grows by doubling (amortised, never per token) up to a
 * limit given at creation.
 */
#ifndef DSN_KVCACHE_H
#define DSN_KVCACHE_H

#include <stdint.h>

#include "dsi_status.h"

typedef struct {
    int n_layers;       /* layers of the slice */
    int row;            /* kv_lora_rank + qk_rope_head_dim */
    int64_t length;     /* tokens stored (positions [0, length)) */
    int64_t capacity;   /* tokens that fit without growing */
    int64_t max_tokens; /* hard limit (the context length) */
    float **layers;     /* [n_layers] -> [capacity, row] f32 */
} dsn_kvcache_t;

/* *out owned by the caller: dsn_kvcache_destroy(). */
dsi_status_t dsn_kvcache_create(int n_layers, int row, int64_t max_tokens, dsn_kvcache_t **out);
void dsn_kvcache_destroy(dsn_kvcache_t *kv);
/* Make room for positions [0, n_total). DSI_ERR_CAPACITY beyond max_tokens, DSI_ERR_NOMEM. */
dsi_status_t dsn_kvcache_reserve(dsn_kvcache_t *kv, int64_t n_total);
/* Row of slice layer `layer` (0-based within the slice) at position pos (< capacity). */
static inline float *dsn_kvcache_row(const dsn_kvcache_t *kv, int layer, int64_t pos)
{
    return kv->layers[layer] + pos * kv->row;
}
/* Forget positions [n_tokens, length) (speculative decoding's rejected drafts); the next batch
 * starts at n_tokens. No effect when n_tokens >= length. */
void dsn_kvcache_truncate(dsn_kvcache_t *kv, int64_t n_tokens);
/*
 * dst's positions [0, n_tokens) become copies of src's (both of the same slice: n_layers and row
 * equal; n_tokens <= src->length): dst->length = n_tokens, whatever dst held is replaced. Used to
 * fork a sequence after its prompt (the n choices of one request). DSI_ERR_INVALID_ARG for
 * mismatched caches or n_tokens beyond src's length, DSI_ERR_CAPACITY / DSI_ERR_NOMEM from
 * dsn_kvcache_reserve.
 */
dsi_status_t dsn_kvcache_copy_prefix(dsn_kvcache_t *dst, const dsn_kvcache_t *src,
                                     int64_t n_tokens);
/* Bytes held. */
uint64_t dsn_kvcache_bytes(const dsn_kvcache_t *kv);

#endif
