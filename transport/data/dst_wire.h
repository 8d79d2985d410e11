/*
 * dst_wire.h - the data-plane messages: ACTIVATION, DISPATCH and COMBINE.
 *
 * Every data-plane message is one UCX active message: a small msgpack header (the AM header) and
 * a raw payload (the AM data). The header is a msgpack array of 12 unsigned integers in this
 * fixed order:
 *
 *   [magic, version, type, dtype, src, epoch, step, micro_batch, layer, n_rows, width, n_pairs]
 *
 * magic is DST_WIRE_MAGIC and version DST_WIRE_VERSION; anything else is rejected, so a format
 * change bumps the version. A fixed array (not a map) keeps the header at ~40 bytes and lets the
 * receiver decode it without allocating.
 *
 * The payload is little-endian (host order; every supported host is little-endian). It always
 * starts with the tensor, rows x width elements of `dtype`, row-major; per-row metadata follows
 * at the next multiple of 8 bytes (DST_WIRE_SIDE_ALIGN):
 *
 *   ACTIVATION  hidden states between pipeline stages.
 *               tensor  [n_rows = n_tokens, width = H]   hidden state of each token
 *               side    dst_wire_token_t [n_tokens]       sequence id, position and token id of
 *                                                         each token
 *   DISPATCH    tokens sent to one destination node's experts for one MoE layer.
 *               tensor  [n_rows = n_tokens, width = H]   input of the experts (after
 *                                                         post_attention_layernorm)
 *               side    dst_wire_pair_t [n_pairs]         (token, slot, expert, weight) work items,
 *                                                         strictly increasing in (token, slot)
 *   KV          a chunk of one sequence's latent KV cache rows, moved to the node that continues it
 *               (dtype U8: the rows as the sender's cache stores them, see dsn_kvcache_io.h).
 *               tensor  [n_rows = n_layers * n_tokens, width = bytes of one record]
 *               side    dst_wire_kv_t [1]                 which sequence, positions, layout
 *   COMBINE     the destination's answer to one DISPATCH.
 *               tensor  [n_rows = that DISPATCH's n_pairs, width = H]: row i is
 *                       weight_i * expert_i(x_token_i) in f32 arithmetic, for pair i of the
 *                       DISPATCH, in the DISPATCH's pair order
 *               side    none (n_pairs = 0)
 *
 * COMBINE rows are per (token, slot) rather than summed per token so that the sender adds every
 * token's expert outputs in its own top-k slot order wherever they were computed: the result is
 * then independent of expert placement to the last bit. A COMBINE is matched to its DISPATCH by
 * (src of the COMBINE = destination of the DISPATCH, epoch, step, micro_batch, layer).
 *
 * Validation (dst_wire_hdr_decode + dst_wire_check + dst_wire_check_side) rejects: a header that is
 * not exactly this msgpack array, a wrong magic or version, an unknown type or dtype, zero or
 * out-of-bounds sizes, a payload byte count that differs from dst_wire_payload_bytes(), and
 * DISPATCH pairs out of order or pointing outside the message. Epochs are checked by the
 * transport, which knows the current one.
 */
#ifndef DST_WIRE_H
#define DST_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"

#define DST_WIRE_MAGIC      0x44535457u /* "DSTW" */
#define DST_WIRE_VERSION    2u
#define DST_WIRE_HDR_MAX    96u /* bytes: the encoded header never exceeds this */
#define DST_WIRE_SIDE_ALIGN 8u

/* Bounds every received header must respect (a prefill chunk is at most this many tokens). */
#define DST_WIRE_MAX_TOKENS  65536u
#define DST_WIRE_MAX_WIDTH   65536u
#define DST_WIRE_MAX_TOPK    16u    /* slots per token */
#define DST_WIRE_MAX_EXPERTS 65536u /* expert ids are uint16 */

typedef enum {
    DST_WIRE_ACTIVATION = 1,
    DST_WIRE_DISPATCH = 2,
    DST_WIRE_COMBINE = 3,
    DST_WIRE_KV = 4,
} dst_wire_type_t;

typedef enum {
    DST_WIRE_F32 = 0, /* default */
    DST_WIRE_BF16 = 1,
    DST_WIRE_U8 = 2, /* raw bytes: KV messages only */
} dst_wire_dtype_t;

/* The decoded header. All fields are checked by dst_wire_check() before a message is delivered. */
typedef struct {
    uint8_t type;         /* dst_wire_type_t */
    uint8_t dtype;        /* dst_wire_dtype_t of the tensor */
    uint32_t src;         /* sending node id (written by the transport on send) */
    uint64_t epoch;       /* plan epoch the sender worked in */
    uint64_t step;        /* decode/prefill step id of the sender's micro-batch */
    uint32_t micro_batch; /* micro-batch id within the step */
    uint32_t layer;       /* ACTIVATION: first layer the receiver runs; else the MoE layer */
    uint32_t n_rows;      /* tensor rows: tokens (ACTIVATION, DISPATCH) or pairs (COMBINE) */
    uint32_t width;       /* tensor columns (hidden size H) */
    uint32_t n_pairs;     /* DISPATCH: work items in the side section; 0 otherwise */
} dst_wire_hdr_t;

/* ACTIVATION side record, one per token (24 bytes). */
typedef struct {
    uint64_t seq_id; /* the coordinator's sequence id */
    uint32_t pos;    /* position of the token in its sequence */
    /* Speculative decoding (docs/SPECULATIVE.md): on a sequence's first token of a message, the
     * positions the receiver cuts from the end of its cache first (rejected drafts of the step
     * before), 0..DST_WIRE_MAX_ROLLBACK; 0 on every other token. */
    uint32_t rollback;
    /* The token id at this position (stage 0 embedded it): the receiver's prefix cache keys its
     * KV blocks by these ids (docs/MEMORY.md, "Prefix cache"). */
    int32_t token;
    /* Prefix cache on a plan of several stages: on a sequence's first token of a message, the
     * positions [pos - cached, pos) stage 0 took from its prefix cache and does not send (the
     * receiver holds the positions before them): the receiver takes them from its own; 0 on
     * every other token, and when there are none. */
    uint32_t cached;
} dst_wire_token_t;

#define DST_WIRE_MAX_ROLLBACK 8

/* DISPATCH side record, one per (token, slot) this destination must compute (12 bytes). */
typedef struct {
    uint32_t token;  /* row of the DISPATCH tensor, < n_rows */
    uint16_t slot;   /* the token's top-k slot, < DST_WIRE_MAX_TOPK */
    uint16_t expert; /* routed expert id within the layer */
    float weight;    /* routing weight (finite); the COMBINE row is weight * expert(x) */
} dst_wire_pair_t;

/* KV side record, one per message (40 bytes): what the chunk holds. Checked here: n_layers *
 * n_tokens = n_rows, n_tokens <= total, reserved bytes 0; the receiver checks the rest against
 * its cache (dsn_kvio_rx_chunk). */
typedef struct {
    uint64_t seq_id;     /* the sequence on the receiving node */
    uint32_t first;      /* first position of the chunk */
    uint32_t n_tokens;   /* positions in it */
    uint32_t total;      /* positions of the whole transfer */
    uint32_t n_layers;   /* layers of the slice */
    uint32_t row;        /* values per row */
    uint8_t kv_dtype;    /* storage type of the rows: 0 f32, 1 bf16, 2 fp8 */
    uint8_t reserved[3]; /* 0 */
    uint64_t checksum;   /* of the tensor bytes (dsn_kvio_checksum) */
} dst_wire_kv_t;

/* Bytes per element of a wire dtype; 0 for an unknown dtype. */
size_t dst_wire_dtype_size(uint8_t dtype);
/* Static name of a message type ("DISPATCH"), "unknown" otherwise. */
const char *dst_wire_type_name(uint8_t type);

/*
 * Payload layout of a header already within bounds (dst_wire_check): tensor bytes, offset of the
 * side section (tensor bytes rounded up to DST_WIRE_SIDE_ALIGN), total payload bytes.
 */
size_t dst_wire_tensor_bytes(const dst_wire_hdr_t *hdr);
size_t dst_wire_side_offset(const dst_wire_hdr_t *hdr);
size_t dst_wire_payload_bytes(const dst_wire_hdr_t *hdr);

/*
 * Encodes hdr with magic and version into buf (cap >= DST_WIRE_HDR_MAX is always enough) and sets
 * *len. Does not validate hdr. Returns DSI_ERR_TOO_LARGE if cap is too small.
 */
dsi_status_t dst_wire_hdr_encode(const dst_wire_hdr_t *hdr, void *buf, size_t cap, size_t *len);

/*
 * Decodes an untrusted header of len bytes. On success fills *out; on failure returns
 * DSI_ERR_PROTOCOL and sets *why to a static reason (for the caller's log line, which names the
 * peer). Allocates nothing; reads at most len bytes.
 */
dsi_status_t dst_wire_hdr_decode(const void *buf, size_t len, dst_wire_hdr_t *out,
                                 const char **why);

/*
 * Checks a decoded header: known type and dtype, bounds on rows, width and pairs, and that the
 * payload byte count equals dst_wire_payload_bytes(hdr). DSI_ERR_PROTOCOL with *why on failure.
 */
dsi_status_t dst_wire_check(const dst_wire_hdr_t *hdr, size_t payload_bytes, const char **why);

/*
 * Checks the side section of a payload that passed dst_wire_check: DISPATCH pairs strictly
 * increasing in (token, slot), token < n_rows, slot < DST_WIRE_MAX_TOPK, weight finite;
 * ACTIVATION rollback at most DST_WIRE_MAX_ROLLBACK, token ids not negative, cached at most pos.
 * payload must be 8-byte aligned.
 */
dsi_status_t dst_wire_check_side(const dst_wire_hdr_t *hdr, const void *payload, const char **why);

/* The side section of a checked payload (8-byte aligned payload); NULL for the other types. */
const dst_wire_token_t *dst_wire_tokens(const dst_wire_hdr_t *hdr, const void *payload);
const dst_wire_pair_t *dst_wire_pairs(const dst_wire_hdr_t *hdr, const void *payload);
const dst_wire_kv_t *dst_wire_kv(const dst_wire_hdr_t *hdr, const void *payload);

#endif
