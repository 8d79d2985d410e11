/*
 * dsn_kvcache_io.h - a sequence's latent KV rows out of one node's cache and into another's, for
 * moving a sequence with its cache when a re-plan gives it a new node (docs/ELASTICITY.md,
 * "KV moves with its sequence").
 *
 * A transfer is the positions [0, total) of every layer of the receiver's slice, cut into chunks
 * that start on a block boundary (DSN_KV_BLOCK positions) and cover a range of layers: the whole
 * slice when sender and receiver hold the same layers, or, when a re-plan moved the stage
 * boundaries, the layers the sender held that the receiver holds now (a receiver may get its
 * layers from several senders). A chunk's data is n_layers * n_tokens records, layer-major (its
 * first layer's tokens first), each dsn_kvio_width() bytes: the row as the sender's
 * cache stores it (f32, bf16 or fp8 values), and for fp8 the row's f32 scale after it. The
 * bytes travel as they are; a receiver whose pool has another storage type converts them
 * (through f32, as dsn_kvcache_store does). A checksum over the data catches corruption.
 *
 * The open block of a rounded cache (dsn_kvcache.h, "Open tail"): the positions
 * [dsn_kvio_open_first(total), total) travel as f32 records (the sender's f32 copies), in chunks
 * of their own, so that the receiver's tail holds what the sender's did and the sequence goes on
 * exactly as it would have where it was. Full blocks travel rounded, as stored.
 *
 * Only the public dsn_kvcache API is used: a receiving cache reserves its blocks, the records
 * are written into them, and its length becomes `total` once every chunk arrived.
 */
#ifndef DSN_KVCACHE_IO_H
#define DSN_KVCACHE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"
#include "dsn_kvcache.h"

/* What describes one chunk (it travels beside the data). */
typedef struct {
    uint32_t first;    /* first position, a multiple of DSN_KV_BLOCK */
    uint32_t n_tokens; /* positions in the chunk, >= 1 */
    uint32_t total;    /* positions of the whole transfer */
    uint32_t n_layers; /* layers in the chunk, >= 1 */
    uint32_t row;      /* values per row (kv_lora_rank + qk_rope_head_dim) */
    uint32_t dtype;    /* dsn_kv_dtype_t of the records */
    uint64_t checksum; /* dsn_kvio_checksum of the data */
    uint32_t layer;    /* the model layer of the chunk's first layer */
} dsn_kvio_chunk_t;

/* Bytes of one record: a row of `dtype` values, and its scale for fp8. */
size_t dsn_kvio_width(int row, dsn_kv_dtype_t dtype);
/* Bytes of a chunk's data. */
size_t dsn_kvio_bytes(int n_layers, int row, dsn_kv_dtype_t dtype, uint32_t n_tokens);
/* Positions per chunk (a multiple of DSN_KV_BLOCK) so that a chunk's data stays near
 * `target_bytes` (at least one block). */
uint32_t dsn_kvio_chunk_tokens(int n_layers, int row, dsn_kv_dtype_t dtype, size_t target_bytes);
/* The first position of a transfer of `total` positions from a cache of storage dtype that
 * travels as f32 records: total rounded down to a block for bf16 and fp8, total for f32. */
uint32_t dsn_kvio_open_first(uint32_t total, dsn_kv_dtype_t dtype);
/* The storage type of the records of a chunk starting at first: f32 from the open block on,
 * else dtype. */
dsn_kv_dtype_t dsn_kvio_record_dtype(dsn_kv_dtype_t dtype, uint32_t first, uint32_t total);
/* A 64-bit checksum of bytes (word-wise multiply-xor; not cryptographic). */
uint64_t dsn_kvio_checksum(const void *data, size_t bytes);

/*
 * Writes positions [first, first + n_tokens) of kv (all stored: first + n_tokens <= kv->length,
 * first a multiple of DSN_KV_BLOCK) into buf (cap >= dsn_kvio_bytes of the records' type,
 * dsn_kvio_record_dtype) and describes them in *meta (total as given). DSI_ERR_INVALID_ARG
 * (logged) for a range the cache does not hold or one that reaches from full blocks into the
 * open block (dsn_kvio_open_first).
 */
dsi_status_t dsn_kvio_export(const dsn_kvcache_t *kv, uint32_t first, uint32_t n_tokens,
                             uint32_t total, void *buf, size_t cap, dsn_kvio_chunk_t *meta);
/* The same for the layers [layer, layer + n_layers) of the model, kv holding the model's layers
 * from `base` (meta->layer = layer). DSI_ERR_INVALID_ARG (logged) for layers kv does not hold. */
dsi_status_t dsn_kvio_export_layers(const dsn_kvcache_t *kv, uint32_t base, uint32_t layer,
                                    uint32_t n_layers, uint32_t first, uint32_t n_tokens,
                                    uint32_t total, void *buf, size_t cap, dsn_kvio_chunk_t *meta);

/*
 * A copy of a sequence's rows that outlives its cache: a node whose slice a re-plan replaces
 * keeps the rows of its open sequences so that it can still send them once the new slice is
 * loaded (docs/ELASTICITY.md, "KV moves with its sequence"). The data is one chunk of every
 * layer and the positions [0, open) as stored, and one of the open block [open, length) as f32.
 */
typedef struct {
    uint32_t base, n_layers; /* the model layers [base, base + n_layers) */
    uint32_t row, dtype, length;
    uint32_t open; /* dsn_kvio_open_first(length, dtype) */
    uint8_t *data; /* dsn_kvio_bytes(n_layers, row, dtype, open) */
    uint8_t *tail; /* dsn_kvio_bytes(n_layers, row, f32, length - open); NULL when none */
    size_t bytes;  /* of data and tail together */
} dsn_kvio_stash_t;

/* Copies the `length` (<= kv->length, >= 1) first positions of kv, which holds the model's
 * layers from base. DSI_ERR_NOMEM, DSI_ERR_INVALID_ARG (logged). */
dsi_status_t dsn_kvio_stash_take(const dsn_kvcache_t *kv, uint32_t base, uint32_t length,
                                 dsn_kvio_stash_t *st);
/* dsn_kvio_export_layers from a stash. */
dsi_status_t dsn_kvio_stash_export(const dsn_kvio_stash_t *st, uint32_t layer, uint32_t n_layers,
                                   uint32_t first, uint32_t n_tokens, uint32_t total, void *buf,
                                   size_t cap, dsn_kvio_chunk_t *meta);
void dsn_kvio_stash_free(dsn_kvio_stash_t *st);

/* A transfer being received into one cache. */
typedef struct {
    uint32_t total;    /* positions expected (of every layer) */
    uint64_t received; /* rows (layer, position) stored so far */
    uint32_t base;     /* the model layer of the cache's first layer: 0 after dsn_kvio_rx_start,
                          set by a caller whose cache holds a later slice */
    int64_t n_blocks;
    uint8_t *got; /* [n_layers][n_blocks] 1 once that layer's block arrived */
} dsn_kvio_rx_t;

/*
 * Starts receiving `total` positions into kv (empty: length 0): its blocks are reserved now.
 * DSI_ERR_CAPACITY when the pool has no room or total exceeds the cache's limit (why says
 * which), DSI_ERR_INVALID_ARG for a cache that is not empty or a total of 0, DSI_ERR_NOMEM.
 * Not logged: the caller names the sequence.
 */
dsi_status_t dsn_kvio_rx_start(dsn_kvio_rx_t *rx, dsn_kvcache_t *kv, uint32_t total, char *why,
                               size_t cap);
/*
 * One chunk (data: `bytes` bytes). Checked before anything is written: the layout against kv
 * (layers within the cache's, row; a storage type of the three, converted when it differs), the
 * range (block aligned, within total, whole blocks but for the last, not received before for
 * any of its layers), the byte count and the checksum. DSI_ERR_PROTOCOL with `why` otherwise (the
 * cache holds no wrong row: nothing counts until the transfer completes). When the last chunk
 * arrives (every layer of every position), kv->length becomes total and *complete is set.
 */
dsi_status_t dsn_kvio_rx_chunk(dsn_kvio_rx_t *rx, dsn_kvcache_t *kv, const dsn_kvio_chunk_t *m,
                               const void *data, size_t bytes, int *complete, char *why,
                               size_t cap);
/* Frees what rx holds (the cache keeps what it received). */
void dsn_kvio_rx_free(dsn_kvio_rx_t *rx);

#endif
