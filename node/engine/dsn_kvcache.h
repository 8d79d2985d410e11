/*
 * dsn_kvcache.h - the latent KV cache of one sequence on one node (absorbed MLA), paged.
 *
 * Per token per layer it stores kv_lora_rank + qk_rope_head_dim values: the normalised latent
 * c_kv followed by the rotated shared k_pe, one row, so that attention scores for all heads are
 * one matrix product over the rows (see dsn_attention.c). Rows live in blocks of DSN_KV_BLOCK
 * positions drawn from a pool (dsn_kvpool.h) in the pool's storage type (f32, bf16 or fp8 with a
 * scale per row); the block table maps position p to block p / DSN_KV_BLOCK, row
 * p % DSN_KV_BLOCK. Blocks are taken as the sequence grows, up to max_tokens positions.
 *
 * Prefix cache: where the token ids of the positions are known (dsn_kvcache_set_ids: the
 * stage that embeds them), full blocks whose rows are all written are registered in the pool
 * under their token prefix (dsn_kvcache_publish), and a new sequence takes the longest chain of
 * registered blocks matching its prompt instead of computing those positions
 * (dsn_kvcache_attach_prefix). A registered or shared block is never written: the block holding
 * position `length` is copied (shared) or taken out of the index (only ours) before a write.
 *
 * Open tail (bf16 and fp8): rounding is per row, so a block's storage gets each row rounded as it
 * is written, and the cache keeps an f32 copy of the rows of its open block (the one holding
 * position `length`; dsn_kvcache_tail.c). A query at position q reads the rows of its own seal
 * group [q - q % seal, q] as f32 and every earlier row rounded; seal is DSN_KV_BLOCK (tests set
 * less: dsn_kvpool_test_seal). So a row is exact for the queries of its own block and rounded
 * for every later one, whatever the batching: a prompt in one chunk or in many, speculative
 * verification and plain decoding read the same values, and a block taken from the prefix cache
 * (full, so sealed) holds exactly what a fresh run's later queries read. f32 storage has no tail.
 */
#ifndef DSN_KVCACHE_H
#define DSN_KVCACHE_H

#include <stdint.h>

#include "dsi_status.h"
#include "dsk.h"
#include "dsn_kvpool.h"

typedef struct {
    dsn_kvpool_t *pool;
    int n_layers;         /* layers of the slice */
    int row;              /* kv_lora_rank + qk_rope_head_dim */
    dsn_kv_dtype_t dtype; /* the pool's */
    int64_t length;       /* tokens stored (positions [0, length)) */
    int64_t capacity;     /* tokens that fit without taking blocks (n_blocks * DSN_KV_BLOCK) */
    int64_t max_tokens;   /* hard limit (the context length) */
    int64_t n_blocks;     /* blocks in the table */
    int64_t table_cap;
    dsn_kvblock_t **blocks; /* [n_blocks] */
    /* prefix cache */
    int32_t *ids; /* [ids_cap] token ids of positions [0, n_ids) where known */
    int64_t n_ids, ids_cap;
    int64_t n_published; /* leading blocks registered in the pool's prefix index */
    /* open tail (not for f32 storage): the f32 rows of blocks [tail_first, tail_first + tail_n) */
    float *tail; /* [tail_cap][n_layers][DSN_KV_BLOCK][row] */
    int64_t tail_first, tail_n, tail_cap;
    int seal; /* positions per seal group: DSN_KV_BLOCK (the pool's dsn_kvpool_seal) */
} dsn_kvcache_t;

/* An empty cache drawing from pool (which it retains). *out: dsn_kvcache_destroy(). */
dsi_status_t dsn_kvcache_create(dsn_kvpool_t *pool, int64_t max_tokens, dsn_kvcache_t **out);
/* Releases its blocks and its pool reference. NULL: no-op. */
void dsn_kvcache_destroy(dsn_kvcache_t *kv);
/*
 * Make room for positions [0, n_total): take blocks, and copy the block holding position
 * `length` if another cache shares it (so writes from there on stay private).
 * DSI_ERR_CAPACITY beyond max_tokens (logged) or when the pool is out of blocks (not logged: the
 * caller decides; the cache is unchanged apart from blocks taken), DSI_ERR_NOMEM.
 */
dsi_status_t dsn_kvcache_reserve(dsn_kvcache_t *kv, int64_t n_total);
/* reserve without touching the open tail's window (a transfer sets it: dsn_kvcache_io.c). */
dsi_status_t dsn_kvcache_reserve_blocks(dsn_kvcache_t *kv, int64_t n_total);
/* Blocks that reserve(n_total) would take from the pool now (0 if it fits): rows, and the
 * blocks charged for the open tail's growth (dsn_kvpool.h, "Open tails"). */
int64_t dsn_kvcache_blocks_needed(const dsn_kvcache_t *kv, int64_t n_total);
/* Of those, the rows' blocks only (what reserve_blocks takes). */
int64_t dsn_kvcache_row_blocks_needed(const dsn_kvcache_t *kv, int64_t n_total);
/* Blocks the pool would charge to grow the tail to a window of n f32 blocks (0 if it fits or
 * for f32 storage). */
int64_t dsn_kvcache_tail_needed(const dsn_kvcache_t *kv, int64_t n);
/* Blocks of the pool the cache holds: its table's and its tail's. */
int64_t dsn_kvcache_pool_blocks(const dsn_kvcache_t *kv);
/* Store row[0, kv->row) (f32) of slice layer `layer` at position pos (< capacity): rounded into
 * its block, and as it is into the open tail when its block is in the tail's window. */
void dsn_kvcache_store(dsn_kvcache_t *kv, int layer, int64_t pos, const float *row);
/* The stored (rounded) row at pos as f32: the value queries of later seal groups read. */
void dsn_kvcache_load(const dsn_kvcache_t *kv, int layer, int64_t pos, float *out);
/* The row at pos as the query at qpos (>= pos) reads it: its f32 copy when pos is in the
 * query's seal group (and the copy is held), else the rounded row. */
void dsn_kvcache_load_for(const dsn_kvcache_t *kv, int layer, int64_t pos, int64_t qpos,
                          float *out);
/* The first position that the query at qpos reads unrounded (qpos + 1 for f32 storage: every
 * row is exact, there is no tail). */
int64_t dsn_kvcache_open_from(const dsn_kvcache_t *kv, int64_t qpos);
/* The f32 copy of the row at pos, or NULL (f32 storage, or its block is not in the window). */
const float *dsn_kvcache_tail_row(const dsn_kvcache_t *kv, int layer, int64_t pos);
/* Write only the f32 copy of the row at pos (nothing when its block is not in the window). */
void dsn_kvcache_tail_put(dsn_kvcache_t *kv, int layer, int64_t pos, const float *row);
/* The f32 copies of rows [pos, pos + rows) (one block, all in the window) as a matrix. */
dsk_matrix_t dsn_kvcache_tail_matrix(const dsn_kvcache_t *kv, int layer, int64_t pos, int64_t rows);
/*
 * The tail's window becomes the blocks [lo, hi): copies of blocks in both windows are kept, a
 * block new to it that holds written rows gets their rounded values, the rest go. Its memory is
 * charged to the pool in blocks. DSI_OK; DSI_ERR_CAPACITY when the pool has no room for the
 * growth (not logged) or DSI_ERR_NOMEM (logged): the window is then unchanged. No-op for f32
 * storage.
 */
dsi_status_t dsn_kvcache_tail_window(dsn_kvcache_t *kv, int64_t lo, int64_t hi);
/* length = n_total after a batch wrote positions up to it; the tail keeps the open block and,
 * when the batch crossed into it, the one before it (until the next reserve). */
void dsn_kvcache_advance(dsn_kvcache_t *kv, int64_t n_total);
/* Frees the tail (an empty window) and gives the pool its blocks back. */
void dsn_kvcache_tail_free(dsn_kvcache_t *kv);
/* Bytes of a sequence's tail between batches: one block of f32 rows (0 for f32 storage); a
 * batch of several blocks holds one per block while it runs. */
uint64_t dsn_kvcache_tail_bytes(int n_layers, int row, dsn_kv_dtype_t dtype);
/*
 * Block b of layer `layer` as a matrix of `rows` (<= DSN_KV_BLOCK) cache rows for the kernels:
 * F32 or BF16, or F8_E4M3 with scale_inv = `ones` (>= ceil(row / 128) values of 1.0f): the
 * per-row scales (dsn_kvcache_block_scales) are applied by the caller.
 */
dsk_matrix_t dsn_kvcache_block_matrix(const dsn_kvcache_t *kv, int layer, int64_t b, int64_t rows,
                                      const float *ones);
/* fp8: the DSN_KV_BLOCK row scales of block b, layer `layer`; NULL for the other types. */
const float *dsn_kvcache_block_scales(const dsn_kvcache_t *kv, int layer, int64_t b);
/*
 * dst holds positions [0, n_tokens) of src (n_tokens <= src->length) and nothing else:
 * dst->length = n_tokens. Full blocks are shared copy-free (reference counts) when both draw from
 * the same pool; the rest is copied. dst's previous content is released. DSI_ERR_INVALID_ARG for
 * mismatched layouts or lengths, DSI_ERR_CAPACITY / DSI_ERR_NOMEM as reserve.
 */
dsi_status_t dsn_kvcache_copy_prefix(dsn_kvcache_t *dst, const dsn_kvcache_t *src,
                                     int64_t n_tokens);
/*
 * Forget positions [n_tokens, length) (speculative decoding's rejected drafts, a reset to 0):
 * length = n_tokens, and blocks wholly past it go back to the pool; the next batch starts at
 * n_tokens. No effect when n_tokens >= length or n_tokens < 0.
 */
void dsn_kvcache_truncate(dsn_kvcache_t *kv, int64_t n_tokens);
/* length = 0 and every block back to the pool, reserved ones included (a preempted sequence). */
void dsn_kvcache_clear(dsn_kvcache_t *kv);
/* ---- prefix cache ---- */
/* The token ids of positions [pos, pos + n) (pos <= n_ids; a gap is ignored). 0, or -1 when out
 * of memory (the ids are then unknown from pos on, which only means no publishing). */
int dsn_kvcache_set_ids(dsn_kvcache_t *kv, int64_t pos, const int32_t *ids, int64_t n);
/* Register the full blocks of [0, min(length, n_ids)) not registered yet; returns how many are
 * registered now. */
int64_t dsn_kvcache_publish(dsn_kvcache_t *kv);
/*
 * Extend the cache with the pool's registered blocks that continue its chain with
 * ids[length, ...) (ids[0, n) is the whole prompt, whose first `length` entries the cache
 * holds), whole blocks only and never beyond limit positions (the caller leaves at least one
 * prompt token to compute). Only a cache whose length is a multiple of DSN_KV_BLOCK, with no
 * block beyond it and every block registered, can extend. Returns the positions added.
 */
int64_t dsn_kvcache_attach_prefix(dsn_kvcache_t *kv, const int32_t *ids, int64_t n, int64_t limit);
/*
 * The pool's consistency (dsn_kvpool_check) with every block's reference count equal to the
 * times the n caches' tables hold it (the caches must be all that hold blocks of the pool).
 * 0 when consistent, -1 (logged) otherwise, or when out of memory.
 */
int dsn_kvcache_check(dsn_kvpool_t *pool, dsn_kvcache_t *const *kv, int n);

/* Bytes of the blocks it holds (shared blocks counted in full) and of its tail. */
uint64_t dsn_kvcache_bytes(const dsn_kvcache_t *kv);

/* ---- row conversion (plain scalar: the store path is per token, not per attention step) ---- */
/* fp8 row: scale = amax / 448 (1 if amax is 0), q[i] = e4m3(x[i] / scale); returns scale. */
float dsn_kv_row_to_fp8(const float *x, int n, uint8_t *q);

#endif
