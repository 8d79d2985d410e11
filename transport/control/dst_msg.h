/*
 * dst_msg.h - the control-protocol messages: typed C structs, msgpack encoding, validated decoding.
 *
 * A message body is one msgpack map with string keys: "type" (uint, dst_msg_type_t), "v" (uint,
 * must equal DST_PROTO_VERSION) and the fields of that type, nothing else. docs/PROTOCOL.md lists
 * every message, field, type and rule; the framing (magic, length prefix) lives in dst_ctrl.h.
 *
 * Decoding never trusts its input: every field's presence, msgpack type, range and array length is
 * checked before a C struct is built; unknown, duplicate or missing keys, trailing bytes and
 * nesting deeper than DST_MSG_MAX_DEPTH are errors. Memory use while decoding is bounded by a small
 * multiple of the body's length whatever the body claims.
 *
 * Ownership: a message built by the caller points at the caller's memory; dst_msg_encode only reads
 * it. A message filled by dst_msg_decode owns its arrays (they live in an arena hung off the
 * message) until dst_msg_free. A decoded message may be moved by copying the struct and zeroing the
 * source; dst_msg_free of a zeroed or caller-built message does nothing.
 */
#ifndef DST_MSG_H
#define DST_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "dsi_status.h"
#include "dst_plan.h"

/* The protocol version every body carries in "v"; a different version is refused. */
#define DST_PROTO_VERSION 1

/* Limits checked by decode and encode (docs/PROTOCOL.md, "Limits"). Sizes include the NUL. */
#define DST_MSG_NAME_MAX        64         /* node name */
#define DST_MSG_ADDR_MAX        256        /* "host:port" */
#define DST_MSG_TEXT_MAX        512        /* ERROR text, SHUTDOWN reason */
#define DST_MSG_NONCE_LEN       32         /* HELLO nonce */
#define DST_MSG_AUTH_LEN        32         /* REGISTER auth: HMAC-SHA256 */
#define DST_MSG_MAX_UCX_ADDR    16384      /* bytes of one UCX worker address */
#define DST_MSG_MAX_TOKENS      262144     /* token ids in one SUBMIT or TOKENS */
#define DST_MSG_MAX_TOKEN_ID    16777215   /* token ids are in [0, this] */
#define DST_MSG_MAX_NODES       4096       /* nodes in a PLAN, peers in PEERS */
#define DST_MSG_MAX_LAYERS      1024       /* layers in a PLAN or LOAD_STATS */
#define DST_MSG_MAX_EXPERTS     4096       /* routed experts per layer */
#define DST_MSG_MAX_SLOTS       (1u << 20) /* MoE layers x experts in a PLAN or LOAD_STATS */
#define DST_MSG_MAX_HOLDERS     (1u << 22) /* expert holder entries in a PLAN */
#define DST_MSG_MAX_CORES       65536
#define DST_MSG_MAX_DEPTH       8            /* msgpack nesting of a body */
#define DST_MSG_MAX_STAGES      256          /* pipeline stages in a SUBMIT route */
#define DST_MSG_JSON_MAX        (512u << 10) /* bytes of ADMIN_REPLY.json, NUL included */

/*
 * The numeric request fields of SUBMIT, which a client (the HTTP API, `dsinfer run`) takes from a
 * user: one table of bounds, read by the wire check (dst_msg_check, before a SUBMIT is sent or
 * after one is read) and by the HTTP API's parser, so that every value the API accepts is one the
 * wire carries. A float field is checked after rounding to float32, as it travels (top_p 1e-300
 * is 0 on the wire).
 */
typedef enum {
    DST_BOUND_MAX_TOKENS = 0,
    DST_BOUND_TEMPERATURE,
    DST_BOUND_TOP_P,
    DST_BOUND_TOP_K,
    DST_BOUND_GRAMMAR, /* bytes of SUBMIT.grammar (0 = none) */
    DST_BOUND_END
} dst_bound_id_t;

typedef struct {
    const char *name; /* the SUBMIT field, also the HTTP API's parameter */
    double lo, hi;    /* inclusive, but lo is excluded when lo_open */
    uint8_t lo_open;
    uint8_t is_float; /* travels as float32 */
    double api_hi;    /* the HTTP API's own cap (OpenAI's range), never above hi */
} dst_bound_t;

extern const dst_bound_t dst_bounds[DST_BOUND_END];

/* Whether x, as the wire carries it (rounded to float32 for a float field), is within the bounds
 * of field id (hi replaced by api_hi when api is nonzero). NaN and infinities never are. */
int dst_bound_ok(dst_bound_id_t id, double x, int api);

/* X(NAME, value): the message types. Values are wire values: never renumber, only append (9,
 * REPLACE_EXPERTS of the first drafts, is retired: never reuse it). */
#define DST_MSG_TYPE_MAP(X) \
    X(HELLO, 1)             \
    X(REGISTER, 2)          \
    X(WELCOME, 3)           \
    X(PLAN, 4)              \
    X(PEERS, 5)             \
    X(READY, 6)             \
    X(HEARTBEAT, 7)         \
    X(LOAD_STATS, 8)        \
    X(DRAIN, 10)            \
    X(SUBMIT, 11)           \
    X(TOKENS, 12)           \
    X(CANCEL, 13)           \
    X(SHUTDOWN, 14)         \
    X(ERROR, 15)            \
    X(BIAS, 16)             \
    X(ADMIN, 17)            \
    X(ADMIN_REPLY, 18)      \
    X(SWITCH, 19)           \
    X(SWITCHED, 20)         \
    X(RELEASE, 21)          \
    X(KV_MOVE, 22)          \
    X(KV_DONE, 23)

typedef enum {
    DST_MSG_NONE = 0, /* never on the wire: a zeroed message */
#define DST_MSG_TYPE_ENUM(name, value) DST_MSG_##name = value,
    DST_MSG_TYPE_MAP(DST_MSG_TYPE_ENUM)
#undef DST_MSG_TYPE_ENUM
        DST_MSG_TYPE_END
} dst_msg_type_t;

/* Why a sequence stopped producing tokens (TOKENS.finish). */
typedef enum {
    DST_FINISH_NONE = 0,      /* more tokens follow */
    DST_FINISH_STOP = 1,      /* an end-of-sequence / stop token was sampled */
    DST_FINISH_LENGTH = 2,    /* max_tokens or the context length was reached */
    DST_FINISH_CANCELLED = 3, /* CANCEL or a drained / failed node */
    DST_FINISH_ERROR = 4,
    /* node -> coordinator only: the sequence lost its KV cache to memory pressure (a node's KV
     * pool ran out of blocks); the coordinator submits it again with the tokens so far. */
    DST_FINISH_PREEMPTED = 5,
    /* the sequence needs more KV blocks than a node's whole pool holds (--kv-pool, --mem) */
    DST_FINISH_KV_FULL = 6,
    /* node -> coordinator only: a later stage of the pipeline lacks KV blocks of the prompt
     * prefix stage 0 took from its prefix cache (evicted there); the coordinator submits the
     * sequence again with no_prefix (docs/MEMORY.md, "Prefix cache"). */
    DST_FINISH_PREFIX_MISS = 7,
    DST_FINISH_END
} dst_finish_t;

/* coordinator -> node, first message on a new connection: the nonce REGISTER must sign. */
typedef struct {
    uint8_t nonce[DST_MSG_NONCE_LEN]; /* random bytes, fresh per connection */
} dst_msg_hello_t;

/* node -> coordinator: join the cluster. */
typedef struct {
    char name[DST_MSG_NAME_MAX];      /* non-empty UTF-8, no control characters */
    uint64_t mem_budget;              /* bytes the node offers for weights + KV cache, > 0 */
    uint32_t cores;                   /* compute threads, 1..DST_MSG_MAX_CORES */
    uint8_t *ucx_addr;                /* [ucx_addr_len] UCX worker address */
    size_t ucx_addr_len;              /* 1..DST_MSG_MAX_UCX_ADDR */
    char data_addr[DST_MSG_ADDR_MAX]; /* "host:port" of the node's UCX listener, or "" */
    uint8_t auth[DST_MSG_AUTH_LEN];   /* dst_secret_register_auth() of the HELLO nonce */
    /* A node that lost its coordinator and serves the slice of a plan it still holds: its id and
     * that plan's epoch there (it sends the PLAN back after WELCOME); held_epoch 0: none. */
    uint32_t held_id;
    uint64_t held_epoch;
} dst_msg_register_t;

/* coordinator -> node: registration accepted. */
typedef struct {
    uint32_t node_id;      /* the node's id in every later message and plan */
    uint32_t heartbeat_ms; /* how often the node sends HEARTBEAT, 1..600000 */
} dst_msg_welcome_t;

/*
 * coordinator -> node: the whole plan; validated as dst_msg_plan_check() says. A live plan is a
 * make-before-break change (docs/ELASTICITY.md): a node serving the previous epoch keeps serving
 * it, loads what the new plan adds beside it, answers READY, and routes by the new plan only on
 * SWITCH. Otherwise the node leaves its epoch (drops its sequences) before loading the new one.
 */
typedef struct {
    dst_plan_t plan;
    uint8_t live; /* 0: a restart; 1: a live switch; 2: a restart that keeps the open sequences'
                     KV rows to send them (KV_MOVE) once every node is READY */
} dst_msg_plan_t;

typedef struct {
    uint32_t node_id;
    uint8_t *ucx_addr;                /* [ucx_addr_len] */
    size_t ucx_addr_len;              /* 1..DST_MSG_MAX_UCX_ADDR */
    char data_addr[DST_MSG_ADDR_MAX]; /* "host:port" or "" */
} dst_msg_peer_t;

/* coordinator -> node: how to reach the other nodes of a plan epoch. */
typedef struct {
    uint64_t epoch;
    uint32_t n_peers;      /* 0..DST_MSG_MAX_NODES */
    dst_msg_peer_t *peers; /* [n_peers], node ids unique */
} dst_msg_peers_t;

/* node -> coordinator: the node holds its slice of plan `epoch` and can serve it. */
typedef struct {
    uint32_t node_id;
    uint64_t epoch;
} dst_msg_ready_t;

/*
 * SWITCH (coordinator -> node): every node of a live plan is READY: route by plan `epoch` from now
 * on (a node not in that plan stops its sequences); answer SWITCHED once no work routed by the
 * previous plan is in flight. RELEASE (coordinator -> node): every node SWITCHED: drop what only
 * the previous plan needed. SWITCHED (node -> coordinator). node_id is the node's own id.
 */
typedef struct {
    uint32_t node_id;
    uint64_t epoch;
} dst_msg_switch_t;

#define DST_MSG_SPEC_MAX_K 8 /* draft positions HEARTBEAT.spec reports */

/* Speculative decoding on a node since its previous HEARTBEAT (docs/SPECULATIVE.md). */
typedef struct {
    uint64_t steps;     /* verify steps, one per sequence (verified together or not) */
    uint64_t emitted;   /* tokens they emitted */
    uint64_t draft_ns;  /* wall time drafting with the MTP layer */
    uint64_t verify_ns; /* wall time of verify steps, from their drafts to their tokens */
    uint32_t k;         /* draft positions below: 1..DST_MSG_SPEC_MAX_K */
    uint32_t drafted[DST_MSG_SPEC_MAX_K];  /* drafts made at position i (0: the first) */
    uint32_t accepted[DST_MSG_SPEC_MAX_K]; /* and accepted */
} dst_msg_spec_t;

/* both ways: liveness. A receiver answers a node's HEARTBEAT with one carrying the same seq. */
typedef struct {
    uint32_t node_id;
    uint64_t seq;     /* increases by one per heartbeat of the sender */
    uint64_t time_ns; /* the sender's monotonic clock, for round-trip measurement */
    /* A node's KV pool (optional on the wire: 0 when absent). */
    uint64_t kv_blocks_used, kv_blocks_total; /* blocks held by sequences / the pool's size */
    uint64_t preemptions; /* sequences this node preempted for a full pool, since it started */
    /* Its prefix cache (optional on the wire: 0 when absent): blocks kept for reuse by no
     * sequence, and since it started the prompt tokens it took and those found cached. */
    uint64_t kv_blocks_cached, prompt_tokens, prefix_hit_tokens;
    uint8_t has_spec; /* optional "spec": a node that speculates, since its last HEARTBEAT */
    dst_msg_spec_t spec;
} dst_msg_heartbeat_t;

/* node -> coordinator: tokens routed to each (layer, expert) during a window. */
typedef struct {
    uint32_t node_id;
    uint64_t epoch;       /* plan epoch the counts were taken under */
    uint32_t window_ms;   /* length of the counting window */
    uint32_t first_layer; /* first layer counted (a MoE layer) */
    uint32_t n_layers;    /* 1..DST_MSG_MAX_LAYERS */
    uint32_t n_experts;   /* 1..DST_MSG_MAX_EXPERTS; n_layers * n_experts <= DST_MSG_MAX_SLOTS */
    uint32_t *counts;     /* [n_layers][n_experts] dense, row-major */
} dst_msg_load_stats_t;

/* both ways: the node leaves (node -> coordinator) or is asked to (coordinator -> node). */
typedef struct {
    uint32_t node_id;
    uint32_t deadline_ms; /* finish in-flight work within this; 0 = no deadline */
} dst_msg_drain_t;

/*
 * SUBMIT's optional "sampling" map: the sampling controls beyond temperature / top_p / top_k. A
 * zeroed struct means "none of them" and is not sent, so a SUBMIT without them is the same body
 * as before the map existed. Applied by the last stage in this order: logit_bias, min_tokens
 * (EOS and stop_ids masked), repetition, frequency and presence penalties, temperature, then
 * min_p, top_k and top_p. docs/PROTOCOL.md, SUBMIT.
 */
#define DST_MSG_MAX_BIAS     1024 /* logit_bias entries */
#define DST_MSG_MAX_STOP_IDS 64   /* stop token ids */
#define DST_MSG_MAX_TOP_LP   20   /* top_logprobs */
#define DST_MSG_MAX_GRAMMAR  (1u << 20) /* bytes of SUBMIT.grammar */
typedef struct {
    float presence_penalty;   /* [-2, 2]: minus this for every token generated at least once */
    float frequency_penalty;  /* [-2, 2]: minus this times the token's count in the output */
    float repetition_penalty; /* 0 = off (same as 1), else (0, 100]: HF, prompt + output */
    float min_p;              /* [0, 1]: drop tokens below min_p x the most likely one */
    uint32_t min_tokens;      /* EOS and stop_ids masked until this many were generated */
    uint8_t ignore_eos;       /* 0 or 1: EOS does not finish the sequence */
    uint8_t logprobs;         /* 0 or 1: TOKENS carries each token's logprob */
    uint8_t top_logprobs;     /* 0..DST_MSG_MAX_TOP_LP, and the most likely ones (logprobs 1) */
    uint32_t n_bias;          /* 0..DST_MSG_MAX_BIAS */
    int32_t *bias_ids;        /* [n_bias] token ids, 0..DST_MSG_MAX_TOKEN_ID, unique */
    float *bias_values;       /* [n_bias] [-100, 100] added to the logit */
    uint32_t n_stop_ids;      /* 0..DST_MSG_MAX_STOP_IDS */
    int32_t *stop_ids;        /* [n_stop_ids] token ids that finish the sequence (stop) */
} dst_msg_sampling_t;

/* 1 when s asks for anything (SUBMIT then carries "sampling"). */
int dst_msg_sampling_any(const dst_msg_sampling_t *s);

/* coordinator -> every node of the sequence's route: start a sequence (stage 0 feeds it, the last
 * stage samples it, the stages between run their layers for it). */
typedef struct {
    uint64_t seq_id;
    uint32_t n_tokens;   /* 1..DST_MSG_MAX_TOKENS */
    int32_t *tokens;     /* [n_tokens] prompt ids, 0..DST_MSG_MAX_TOKEN_ID */
    uint32_t max_tokens; /* tokens to generate, 1..DST_MSG_MAX_TOKENS */
    float temperature;   /* 0 (greedy) .. 100, finite */
    float top_p;         /* (0, 1] */
    uint32_t top_k;      /* 0 = no limit, else 1..DST_MSG_MAX_TOKEN_ID + 1 */
    uint64_t seed;       /* sampling RNG seed */
    uint32_t n_route;    /* 1..DST_MSG_MAX_STAGES: one node per pipeline stage */
    uint32_t *route;     /* [n_route] node id that runs the sequence at each stage */
    /* < n_tokens: the last n_generated tokens were sampled by an earlier submission of the same
     * request (a re-plan re-submits it): the sampler continues its random stream after them, so
     * a sampled request goes on exactly as it would have. 0 for a new request. */
    uint32_t n_generated;
    dst_msg_sampling_t sampling; /* optional on the wire: zeroed = absent */
    /* Optional on the wire (absent when fork_len is 0): the first fork_len tokens (< n_tokens)
     * are those of sequence fork_of, submitted before on the same route with the same prompt:
     * every node copies that sequence's KV cache rows of them instead of computing them (the n
     * choices of one request prefill their prompt once). */
    uint64_t fork_of;
    uint32_t fork_len;
    /* Optional (absent when 0; needs fork_len > 0): the sequence moves with its KV cache after a
     * re-plan (docs/ELASTICITY.md). A node that holds fork_of copies its rows as for a fork; any
     * other node of the route receives them from fork_of's previous holder (KV_MOVE) and waits
     * for them before running the sequence. */
    uint8_t kv_move;
    /* Optional (absent when 0): the nodes take none of its prompt from their prefix cache (it
     * is submitted again after a later stage lacked blocks stage 0 had found). */
    uint8_t no_prefix;
    /* Optional: the grammar the output must match (docs/STRUCTURED_OUTPUT.md), NUL-terminated,
     * grammar_len bytes (1..DST_MSG_MAX_GRAMMAR, no NUL inside); NULL / 0 = none, not sent. */
    const char *grammar;
    uint32_t grammar_len;
} dst_msg_submit_t;

/* last-stage node -> coordinator: tokens sampled for a sequence. */
typedef struct {
    uint64_t seq_id;
    uint32_t n_tokens; /* 0..DST_MSG_MAX_TOKENS; 0 only with a finish reason */
    int32_t *tokens;   /* [n_tokens] 0..DST_MSG_MAX_TOKEN_ID */
    uint8_t finish;    /* dst_finish_t */
    /* Optional "logprobs" (SUBMIT asked for them): NULL = absent. log_softmax of the raw logits
     * (before bias, penalties and temperature) of each token, and of the n_top most likely. */
    float *logprob;       /* [n_tokens] or NULL */
    uint32_t n_top;       /* 0..DST_MSG_MAX_TOP_LP */
    int32_t *top_ids;     /* [n_tokens * n_top], most likely first */
    float *top_logprobs;  /* [n_tokens * n_top] */
    /* Optional "spec" (speculative decoding on a plan of several stages, docs/SPECULATIVE.md):
     * on the last TOKENS of a step, for stage 0: how many of the positions the step fed were
     * rejected (every stage cuts them from its cache) and the drafts to feed after the last
     * token. Sent as one array [rollback, drafts...]. */
    uint8_t has_spec;                    /* 0 = absent */
    uint8_t rollback;                    /* 0..DST_MSG_SPEC_MAX_K */
    uint8_t n_drafts;                    /* 0..DST_MSG_SPEC_MAX_K */
    int32_t drafts[DST_MSG_SPEC_MAX_K]; /* [n_drafts] token ids */
} dst_msg_tokens_t;

/* coordinator -> node: stop a sequence. */
typedef struct {
    uint64_t seq_id;
} dst_msg_cancel_t;

/* coordinator -> node: exit after closing cleanly. */
typedef struct {
    char reason[DST_MSG_TEXT_MAX]; /* UTF-8, may be "" */
} dst_msg_shutdown_t;

/* both ways: the reply to a message that could not be accepted. */
typedef struct {
    int32_t code;                /* a dsi_status_t, negative */
    uint32_t ref_type;           /* type of the refused message, 0 if unreadable */
    char text[DST_MSG_TEXT_MAX]; /* UTF-8, what was wrong */
} dst_msg_error_t;

/*
 * coordinator -> node: the new e_score_correction_bias of one MoE layer (online bias tracking,
 * docs/ELASTICITY.md). The node applies it between micro-batches; one of another epoch is ignored
 * (the coordinator sends the biases again to every node of a new epoch).
 */
typedef struct {
    uint64_t epoch;    /* the plan epoch it is meant for */
    uint32_t layer;    /* a MoE layer, < DST_MSG_MAX_LAYERS */
    uint32_t n_biases; /* 1..DST_MSG_MAX_EXPERTS: the model's routed experts */
    float *biases;     /* [n_biases] finite f32 */
} dst_msg_bias_t;

/* ADMIN.command values. Wire values: never renumber, only append. */
typedef enum {
    DST_ADMIN_STATUS = 1,    /* the cluster's state as JSON */
    DST_ADMIN_REBALANCE = 2, /* re-place experts by the observed load (EPLB) now */
    DST_ADMIN_DRAIN = 3,     /* move node `arg`'s work elsewhere and release it */
    DST_ADMIN_CLIENT = 4,    /* this connection is a client: it may SUBMIT from now on */
    DST_ADMIN_END
} dst_admin_cmd_t;

/*
 * operator client -> coordinator: an administrative command on a connection that got HELLO.
 * auth = dst_msg_admin_auth() (dst_msg_admin.h) of the connection's nonce, command and arg: a
 * request without the shared secret's proof is refused (ERROR DSI_ERR_AUTH) and logged.
 */
typedef struct {
    uint32_t command;               /* dst_admin_cmd_t */
    uint32_t arg;                   /* DRAIN: the node id; otherwise 0 */
    uint8_t auth[DST_MSG_AUTH_LEN]; /* HMAC-SHA256 proof */
} dst_msg_admin_t;

/* coordinator -> client: an ADMIN command succeeded (a refusal is an ERROR instead). */
typedef struct {
    uint32_t command; /* the ADMIN.command answered */
    char *json;       /* a JSON object: UTF-8, no control characters, < DST_MSG_JSON_MAX bytes */
} dst_msg_admin_reply_t;

/*
 * coordinator -> the node holding sequence seq_id's KV cache at one stage: send the rows of its
 * positions [0, n_tokens) to node `to` (a peer, or this node itself), which continues the
 * sequence as to_seq (its SUBMIT has kv_move): the rows of the model layers [first_layer,
 * end_layer), or with end_layer 0 of every layer the sender holds. Sent before the SWITCH that
 * may retire the sender; after a restart that kept the rows (PLAN.live 2), once every node is
 * READY.
 */
typedef struct {
    uint64_t seq_id;
    uint32_t n_tokens; /* 1..DST_MSG_MAX_TOKENS */
    uint32_t to;       /* the receiving node's id */
    uint64_t to_seq;   /* the sequence's id there, != seq_id */
    uint64_t epoch;    /* the plan the sequence moves to (the KV messages carry it) */
    uint32_t first_layer, end_layer; /* optional: first_layer < end_layer, or both 0 */
} dst_msg_kv_move_t;

/*
 * node -> coordinator: the move of sequence seq_id (its new id) ended on this node: ok 1 on the
 * receiver once every row is installed (bytes received), ok 0 on either side when it cannot be
 * done (text says why; the coordinator falls back to prefilling the sequence again).
 */
typedef struct {
    uint32_t node_id;
    uint64_t seq_id;
    uint8_t ok;    /* 0 or 1 */
    uint64_t bytes;
    char text[DST_MSG_TEXT_MAX]; /* UTF-8, "" when ok */
} dst_msg_kv_done_t;

typedef struct dst_msg_arena dst_msg_arena_t;

typedef struct {
    dst_msg_type_t type;
    union {
        dst_msg_hello_t hello;
        dst_msg_register_t reg;
        dst_msg_welcome_t welcome;
        dst_msg_plan_t plan;
        dst_msg_peers_t peers;
        dst_msg_ready_t ready;
        dst_msg_heartbeat_t heartbeat;
        dst_msg_load_stats_t load_stats;
        dst_msg_drain_t drain;
        dst_msg_submit_t submit;
        dst_msg_tokens_t tokens;
        dst_msg_cancel_t cancel;
        dst_msg_shutdown_t shutdown;
        dst_msg_error_t error;
        dst_msg_bias_t bias;
        dst_msg_admin_t admin;
        dst_msg_admin_reply_t admin_reply;
        dst_msg_switch_t sw; /* SWITCH, SWITCHED, RELEASE */
        dst_msg_kv_move_t kv_move;
        dst_msg_kv_done_t kv_done;
    };
    dst_msg_arena_t *arena; /* decode's allocations; NULL for a caller-built message */
} dst_msg_t;

/* Static name of a type ("PLAN"), or "UNKNOWN" for a value outside the table. */
const char *dst_msg_type_name(uint32_t type);

/*
 * Appends the msgpack body of `msg` to `out` (the framing is dst_ctrl's). The message is checked
 * with dst_msg_check first, so a peer never receives what it would refuse. On error nothing
 * useful was appended (the caller discards `out`) and `err` says why.
 * DSI_ERR_INVALID_ARG for an invalid message, DSI_ERR_NOMEM.
 */
dsi_status_t dst_msg_encode(const dst_msg_t *msg, msgpack_sbuffer *out, char *err, size_t errlen);

/*
 * Decodes one body of `len` bytes (the whole buffer: trailing bytes are an error) into `out`.
 * On success *out owns its arrays until dst_msg_free(out); `buf` may be freed at once.
 * On failure *out is untouched and `err` (NUL-terminated, may be truncated) names the field and
 * the problem: DSI_ERR_PROTOCOL (malformed body, bad field), DSI_ERR_UNSUPPORTED (unknown type or
 * version), DSI_ERR_TOO_LARGE (an array over its limit), DSI_ERR_NOMEM.
 */
dsi_status_t dst_msg_decode(const char *buf, size_t len, dst_msg_t *out, char *err, size_t errlen);

/*
 * The "type" of a body that dst_msg_decode refused, to put in ERROR.ref_type: 0 when the body is
 * not a msgpack map with an unsigned "type". Never fails otherwise.
 */
uint32_t dst_msg_peek_type(const char *buf, size_t len);

/*
 * Semantic validation of a message as decode applies it after parsing (ranges, array lengths,
 * cross-field rules, the plan's structure). DSI_OK or DSI_ERR_PROTOCOL / DSI_ERR_TOO_LARGE /
 * DSI_ERR_UNSUPPORTED with `err` naming the field.
 */
dsi_status_t dst_msg_check(const dst_msg_t *msg, char *err, size_t errlen);

/*
 * The rules a plan obeys (stages contiguous and covering [0, n_layers), every stage has a node,
 * node ids unique, offsets monotone and matching the holders, every expert held by >= 1 distinct
 * known node). Shared with the planner, which can check its own output.
 */
dsi_status_t dst_msg_plan_check(const dst_plan_t *plan, char *err, size_t errlen);

/* Frees what decode allocated and zeroes *msg. A NULL, zeroed or caller-built message is fine. */
void dst_msg_free(dst_msg_t *msg);

/*
 * Fills an ERROR message (caller-built, nothing to free): code, the refused type and a printf text
 * (truncated to fit; control characters replaced so that it passes validation).
 */
void dst_msg_error_init(dst_msg_t *msg, dsi_status_t code, uint32_t ref_type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
