/*
 * dsn_kvpool.h - the per-node pool of latent KV blocks that every sequence's cache draws from.
 *
 * A block holds DSN_KV_BLOCK consecutive positions of one sequence for every layer of the slice:
 * per layer DSN_KV_BLOCK rows of kv_lora_rank + qk_rope_head_dim values ([c_kv, k_pe], see
 * dsn_kvcache.h) in the pool's storage type, and for fp8 one f32 scale per row. All layers of a
 * sequence grow together, so one block table per sequence serves every layer.
 *
 * Blocks are allocated on first use and kept on a free list when released (never returned to the
 * system while the pool lives), up to max_blocks (0: no limit). A block has a reference count:
 * sequences that fork a prefix (dsn_kvcache_copy_prefix) share its full blocks copy-free, and a
 * shared block is copied before anyone writes into it. The pool is thread-safe (one mutex around
 * allocation and reference counts) and reference-counted itself: each cache holds a reference,
 * so the pool outlives the engine that made it while caches remain.
 *
 * Prefix cache: a full block whose DSN_KV_BLOCK token ids are known can be registered under its
 * token prefix (dsn_kvpool_register): its key is the registration of the block before it (its
 * parent; none for the first block) and its own token ids, bucketed by a hash chain
 * (hash(parent hash, ids)). A lookup (dsn_kvpool_lookup) compares the parent's registration
 * serial and all token ids, so a hash collision never shares a wrong block. A registered block
 * whose last reference goes stays cached (refs 0, on an LRU list) instead of going to the free
 * list; an allocation that finds no free block (the limit reached, or without a limit when the
 * cached blocks outnumber the most ever in use at once) evicts the least recently released one.
 * Every block is exactly one of: used (refs > 0), cached (refs 0, registered) or free.
 *
 * Open tails: a cache of rounded storage (bf16, fp8) keeps f32 copies of its open block's rows
 * (dsn_kvcache.h, "Open tail"). Their bytes are charged to the pool in blocks: a tail of n f32
 * blocks takes dsn_kvpool_tail_blocks(n) blocks (2 per f32 block for bf16, 4 for fp8: the
 * f32 bytes rounded up to whole blocks), counted as used while it is held
 * (dsn_kvpool_tail_take / _put). With a limit the memory comes out of the pool's: a tail takes
 * cached blocks' room first, and free blocks' memory goes back to the system so that the blocks
 * with memory plus the tails' blocks never exceed max_blocks. So free + used + cached = total
 * describes all of the KV memory, tails included.
 */
#ifndef DSN_KVPOOL_H
#define DSN_KVPOOL_H

#include <stdint.h>

#include "dsi_status.h"

#define DSN_KV_BLOCK 64 /* positions per block */

/* Storage of cache rows. */
typedef enum {
    DSN_KV_F32 = 0, /* exact */
    DSN_KV_BF16,    /* round to nearest even */
    DSN_KV_FP8,     /* e4m3, one f32 scale per row: scale = amax / 448, q = e4m3(x / scale) */
    DSN_KV_DTYPE_COUNT
} dsn_kv_dtype_t;

/* "f32", "bf16", "fp8"; "?" outside the enum. */
const char *dsn_kv_dtype_name(dsn_kv_dtype_t dt);
/* Parse one of those names; DSI_ERR_INVALID_ARG (logged, naming the value) otherwise. */
dsi_status_t dsn_kv_dtype_parse(const char *s, dsn_kv_dtype_t *out);
/* Bytes of one stored value. */
int dsn_kv_dtype_size(dsn_kv_dtype_t dt);

typedef struct dsn_kvblock {
    uint8_t *data;            /* [n_layers][DSN_KV_BLOCK][row] values */
    float *scales;            /* fp8: [n_layers][DSN_KV_BLOCK] row scales; else NULL */
    int refs;                 /* caches holding it; 0 while free or cached */
    struct dsn_kvblock *next; /* free list */
    int64_t slot;             /* its index in the pool's list of blocks with memory */
    /* prefix cache (guarded by the pool's mutex) */
    int registered;            /* in the prefix index (its ids and key are valid) */
    uint64_t serial;           /* unique per registration (never 0) */
    uint64_t parent_serial;    /* the block before it in its sequence; 0: first block */
    uint64_t hash;             /* hash chain: hash(parent's hash, ids) */
    int32_t *ids;              /* [DSN_KV_BLOCK] token ids (made at the first registration) */
    struct dsn_kvblock *hnext; /* index bucket */
    struct dsn_kvblock *lru_prev, *lru_next; /* cached (refs 0) blocks, least recent first */
} dsn_kvblock_t;

typedef struct dsn_kvpool dsn_kvpool_t;

/* Counters of a pool (one consistent snapshot). */
typedef struct {
    int64_t total;     /* max_blocks, or (no limit) the blocks allocated so far and the tails' */
    int64_t used;      /* blocks held by at least one cache, and the tails' blocks */
    int64_t cached;    /* blocks held by none but kept for the prefix cache (evictable) */
    int64_t free;      /* total - used - cached */
    int64_t allocated; /* blocks that have memory (held + cached + on the free list) */
    int64_t tail;      /* of used: blocks charged to open tails (their memory is the tails') */
    int64_t shared;    /* used blocks held by more than one cache */
    uint64_t block_bytes;
    uint64_t evictions; /* cached blocks reused for something else */
} dsn_kvpool_stats_t;

/* *out owned by the caller: dsn_kvpool_release(). max_blocks 0: no limit. */
dsi_status_t dsn_kvpool_create(int n_layers, int row, dsn_kv_dtype_t dtype, int64_t max_blocks,
                               dsn_kvpool_t **out);
/* Drop one reference (the creator's or a cache's); the last frees every block. NULL: no-op. */
void dsn_kvpool_release(dsn_kvpool_t *p);
void dsn_kvpool_retain(dsn_kvpool_t *p);
/* Change the limit (0: none). Blocks already used above a lower limit stay until released. */
void dsn_kvpool_set_max_blocks(dsn_kvpool_t *p, int64_t max_blocks);
void dsn_kvpool_stats(dsn_kvpool_t *p, dsn_kvpool_stats_t *out);
int dsn_kvpool_layers(const dsn_kvpool_t *p);
int dsn_kvpool_row(const dsn_kvpool_t *p);
dsn_kv_dtype_t dsn_kvpool_dtype(const dsn_kvpool_t *p);
/* Positions per seal group of the caches drawing from the pool (dsn_kvcache.h, "Open tail"):
 * DSN_KV_BLOCK. */
int dsn_kvpool_seal(const dsn_kvpool_t *p);
/* Tests: caches created from now on seal every `positions` (a divisor of DSN_KV_BLOCK) instead
 * of every block, so that short sequences cross seal boundaries too. -1 for another value. */
int dsn_kvpool_test_seal(dsn_kvpool_t *p, int positions);
/* Bytes of one block: every layer's rows and scales. */
uint64_t dsn_kvpool_block_bytes(int n_layers, int row, dsn_kv_dtype_t dtype);

/* A block with refs = 1, or NULL when the limit is reached (DSI_ERR_CAPACITY) or out of memory. */
dsn_kvblock_t *dsn_kvpool_alloc(dsn_kvpool_t *p, dsi_status_t *st);
/* refs += 1 (sharing). */
void dsn_kvpool_share(dsn_kvpool_t *p, dsn_kvblock_t *b);
/* refs -= 1; at 0 the block goes back to the free list. */
void dsn_kvpool_put(dsn_kvpool_t *p, dsn_kvblock_t *b);
/* Whether n more blocks can be allocated now (cached blocks count as available: evictable). */
int dsn_kvpool_can_alloc(dsn_kvpool_t *p, int64_t n);
/* Blocks charged for a tail of n f32 blocks (0 for f32 storage). */
int64_t dsn_kvpool_tail_blocks(const dsn_kvpool_t *p, int64_t n);
/* Blocks of `dtype` charged per f32 block of a tail, for a pool of n_layers rows of `row` values
 * (0 for f32 storage). */
int64_t dsn_kvpool_tail_k(int n_layers, int row, dsn_kv_dtype_t dtype);
/* Charge n blocks to a tail (used += n): DSI_ERR_CAPACITY (not logged) when the limit has no
 * room for them even after evicting cached blocks. The caller then allocates the bytes. */
dsi_status_t dsn_kvpool_tail_take(dsn_kvpool_t *p, int64_t n);
/* Return n blocks charged by dsn_kvpool_tail_take (after freeing their bytes). */
void dsn_kvpool_tail_put(dsn_kvpool_t *p, int64_t n);

/* ---- prefix cache ---- */
/* On (the default) or off: off drops every cached block to the free list, and register and
 * lookup do nothing. */
void dsn_kvpool_set_prefix_cache(dsn_kvpool_t *p, int on);
int dsn_kvpool_prefix_cache(dsn_kvpool_t *p);
/* Hash chain of a block: hash(parent hash (0 for the first block), its DSN_KV_BLOCK ids). */
uint64_t dsn_kvpool_chain_hash(uint64_t parent, const int32_t *ids);
/*
 * Register b (held by the caller, all its rows written) under parent (the registered block
 * before it, NULL for a sequence's first block) and ids[DSN_KV_BLOCK]. 0 when registered (or it
 * already was), -1 when not (cache off, parent not registered, out of memory): b stays private.
 */
int dsn_kvpool_register(dsn_kvpool_t *p, dsn_kvblock_t *b, const dsn_kvblock_t *parent,
                        const int32_t *ids);
/* The registered block following parent (NULL: a first block) with these ids, its reference
 * taken (a cached one leaves the LRU list); NULL when there is none. */
dsn_kvblock_t *dsn_kvpool_lookup(dsn_kvpool_t *p, const dsn_kvblock_t *parent, const int32_t *ids);
/* Tests: chain hashes keep only the bits of mask (collisions on purpose; set before any
 * registration). */
void dsn_kvpool_test_hash_mask(dsn_kvpool_t *p, uint64_t mask);
/* Whether b is registered (then it must not be written). */
int dsn_kvpool_is_registered(dsn_kvpool_t *p, const dsn_kvblock_t *b);
/* Take b out of the index (held only by the caller, which will write into it). */
void dsn_kvpool_unregister(dsn_kvpool_t *p, dsn_kvblock_t *b);
/*
 * Consistency: every allocated block is exactly one of used, cached, free; the counters match;
 * the LRU list holds exactly the cached blocks; the index exactly the registered ones. With
 * expect_refs (a block -> expected references, from the block tables of the live caches; NULL:
 * skip), each block's refs equal it. 0 when consistent, else -1 (what is wrong logged).
 */
int dsn_kvpool_check(dsn_kvpool_t *p, int (*expect_refs)(void *ctx, const dsn_kvblock_t *b),
                     void *ctx);

#endif
