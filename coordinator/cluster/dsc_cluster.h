/*
 * dsc_cluster.h - the coordinator's side of the cluster: membership, the plan, and sequences.
 *
 * It listens for control connections. Nodes join (HELLO -> REGISTER with the shared secret's proof
 * -> WELCOME); once `expect_nodes` have joined it plans (dsc_planner), sends every node the PLAN
 * and the PEERS table, and serves when all answered READY. A sequence goes to a lane: one node per
 * pipeline stage (lane l takes the (l mod size)-th node of every stage); every node of the lane
 * gets the SUBMIT with that route. The last stage's TOKENS come back here: they go to the
 * sequence's owner (a callback, or a remote client that sent SUBMIT over the control protocol),
 * back to the lane's stage-0 node when stages differ, and on finish a CANCEL frees the sequence on
 * every node of its lane.
 *
 * Membership may change while serving: a node that joins, drains (DRAIN) or is lost (its
 * connection closes, or no HEARTBEAT within node_timeout_ms) triggers a re-plan over the live
 * nodes; open sequences are re-submitted with the tokens they already produced, so none is lost
 * (dsc_cluster_impl.h). When the live nodes cannot hold the model, requests stay queued until a
 * node joins, at most stall_timeout_ms.
 *
 * Nodes report how many tokens their routing sent to every expert (LOAD_STATS); the coordinator
 * keeps a sliding window of those counts (dsc_load.h), shows the resulting imbalance, and
 * re-places experts with replicas of the hottest ones (EPLB) on request or past a threshold,
 * through the same epoch machinery. It also holds every MoE layer's router bias (dsc_bias.h) and,
 * only when asked, adjusts it to the load. Operators reach it through authenticated ADMIN
 * requests (`dsinfer cluster`). docs/ELASTICITY.md describes all of it.
 *
 * Everything runs on the caller's libuv loop thread.
 */
#ifndef DSC_CLUSTER_H
#define DSC_CLUSTER_H

#include <stdint.h>

#include <uv.h>

#include "dsc_planner.h"
#include "dsi_status.h"
#include "dsn_config.h"
#include "dst_msg.h"
#include "dst_secret.h"

typedef struct dsc_cluster dsc_cluster_t;

/* dsc_cluster_opts_t.redundant_experts: n_experts / 8 replicas per MoE layer. */
#define DSC_REDUNDANT_AUTO UINT32_MAX

typedef struct {
    const char *listen;        /* "127.0.0.1:7000"; port 0 picks one (dsc_cluster_port) */
    uint32_t expect_nodes;     /* plan once this many nodes have joined (>= 1) */
    uint32_t heartbeat_ms;     /* how often nodes send HEARTBEAT */
    uint32_t node_timeout_ms;  /* a node silent this long is declared dead */
    uint32_t stall_timeout_ms; /* queued requests fail if the cluster cannot serve this long */
    dsc_plan_opts_t plan;      /* planner options (stages, weight format, KV reserve) */
    dst_secret_t secret;       /* nodes must prove they know it */
    /* Expert load, EPLB and router biases (docs/ELASTICITY.md). */
    const char *model_dir;          /* checkpoint whose router biases the coordinator holds; NULL:
                                       bias tracking unavailable (e.g. only a config.json) */
    uint32_t load_window_ms;        /* one load window, 10..3600000 */
    uint32_t load_windows;          /* the sliding window: the last this many windows, 1..100000 */
    uint32_t redundant_experts;     /* replicas per MoE layer a rebalance adds (capped by the
                                       planner and by memory); DSC_REDUNDANT_AUTO: n_experts / 8 */
    double rebalance_threshold;     /* 0: off; > 1: rebalance by itself when the cluster's
                                       imbalance figure exceeds it */
    uint32_t rebalance_interval_ms; /* least time between automatic rebalances */
    float online_bias_gamma;        /* 0: biases never change (exact outputs); > 0: the
                                       aux-loss-free rule with this step after every window (needs
                                       model_dir; changes outputs) */
    int live_switch;                /* 1 (default): joins, drains and rebalances switch plans
                                       make-before-break when they can; 0: always restart */
    int prefix_routing;             /* 1 (default): a prompt goes to the lane that was sent the
                                       longest prefix of it (dsc_prefix_route.h); 0: the least
                                       loaded lane */
} dsc_cluster_opts_t;

/* Defaults: 127.0.0.1:0, 1 node, 500 ms heartbeats, 2 s node timeout, 60 s stall timeout,
 * default plan options; 1 s load windows, 60 of them, automatic replicas, no automatic
 * rebalance (60 s apart when enabled), no bias changes, no model_dir. The secret is left empty:
 * the caller loads it (dst_secret_load). */
void dsc_cluster_opts_default(dsc_cluster_opts_t *opts);

/* A generation request at the token level. */
typedef struct {
    const int32_t *prompt; /* [n_prompt] token ids < vocab_size */
    uint32_t n_prompt;
    uint32_t max_tokens;
    float temperature, top_p;
    uint32_t top_k;
    uint64_t seed;
    /* NULL, or the grammar the output must match (SUBMIT.grammar, docs/STRUCTURED_OUTPUT.md;
     * NUL-terminated, copied): the last stage masks every token that cannot continue it */
    const char *grammar;
} dsc_cluster_req_t;

/*
 * Tokens of one sequence as they are sampled (n >= 0), with the finish reason on the last call
 * (DST_FINISH_NONE before). Called on the loop thread; after a call with a finish reason nothing
 * more comes for that sequence.
 */
typedef void (*dsc_cluster_token_cb)(void *ctx, const int32_t *tokens, uint32_t n,
                                     dst_finish_t finish);

/*
 * The logprobs of tokens about to be delivered (t->logprob etc., dst_msg.h; t->tokens are the same
 * tokens the token callback gets right after). Valid only during the call.
 */
typedef void (*dsc_cluster_logprobs_cb)(void *ctx, const dst_msg_tokens_t *t);

/* cfg is copied. *out owned by the caller: dsc_cluster_destroy(). */
dsi_status_t dsc_cluster_create(uv_loop_t *loop, const dsn_config_t *cfg,
                                const dsc_cluster_opts_t *opts, dsc_cluster_t **out);
/* Sends SHUTDOWN to every node, stops listening, fails open sequences, frees (the loop must run
 * afterwards so that handles close). */
void dsc_cluster_destroy(dsc_cluster_t *cl);
uint16_t dsc_cluster_port(const dsc_cluster_t *cl);
/* 1 when every node of the plan is READY. */
int dsc_cluster_ready(const dsc_cluster_t *cl);
/* Called once when the cluster becomes ready, and with a status when it cannot (planning refused,
 * a node lost before ready). */
/*
 * Admission of a SUBMIT from a control-port client (`dsinfer run --coordinator`), the same the
 * HTTP API applies: DSI_OK, or a refusal with `message` (NUL-terminated, at most `cap` bytes)
 * sent back in the ERROR. Without a hook, authenticated clients are only held to the wire limits.
 */
typedef dsi_status_t (*dsc_cluster_admit_cb)(void *arg, const dsc_cluster_req_t *req, char *message,
                                             size_t cap);
void dsc_cluster_on_admit(dsc_cluster_t *cl, dsc_cluster_admit_cb cb, void *arg);
/* Open sequences of control-port clients (they count against the same queue limit). */
uint32_t dsc_cluster_client_sequences(const dsc_cluster_t *cl);

void dsc_cluster_on_state(dsc_cluster_t *cl, void (*cb)(void *arg, dsi_status_t st), void *arg);
/*
 * Starts a sequence (queued until the cluster is ready). On DSI_OK *seq_id names it for
 * dsc_cluster_cancel and cb will be called. DSI_ERR_INVALID_ARG for a bad request (token out of
 * the vocabulary, empty prompt), DSI_ERR_UNSUPPORTED when the cluster has failed.
 */
dsi_status_t dsc_cluster_submit(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                dsc_cluster_token_cb cb, void *ctx, uint64_t *seq_id);
/*
 * dsc_cluster_submit with the sampling controls of SUBMIT.sampling (NULL: none; its arrays are
 * copied) and, when they ask for logprobs, lp_cb (may be NULL) called before each token callback
 * that has them.
 */
dsi_status_t dsc_cluster_submit_ex(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                   const dst_msg_sampling_t *sampling, dsc_cluster_token_cb cb,
                                   dsc_cluster_logprobs_cb lp_cb, void *ctx, uint64_t *seq_id);
/*
 * dsc_cluster_submit_ex for a sequence that shares its prompt with `share_prefix_of` (an id
 * dsc_cluster_submit* gave for a sequence submitted just before with the same prompt; 0: none):
 * it goes to the same lane, whose nodes copy that sequence's KV cache of the prompt but its last
 * token instead of computing it (the n choices of one request). When the other sequence has
 * ended, or was not submitted in the same plan, the prompt is computed.
 */
dsi_status_t dsc_cluster_submit_shared(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                       const dst_msg_sampling_t *sampling, dsc_cluster_token_cb cb,
                                       dsc_cluster_logprobs_cb lp_cb, void *ctx,
                                       uint64_t share_prefix_of, uint64_t *seq_id);
/* Stops a sequence: no callback follows; its state is freed on every node. */
void dsc_cluster_cancel(dsc_cluster_t *cl, uint64_t seq_id);
/* Sends SHUTDOWN to every node now (they exit); the cluster stops serving. */
void dsc_cluster_shutdown(dsc_cluster_t *cl, const char *reason);

/* Speculative decoding summed over the nodes' HEARTBEAT.spec since the coordinator started. */
typedef struct {
    uint64_t steps, emitted, draft_ns, verify_ns;
    uint32_t k; /* draft positions seen */
    uint64_t drafted[DST_MSG_SPEC_MAX_K], accepted[DST_MSG_SPEC_MAX_K];
} dsc_spec_totals_t;

typedef struct {
    uint32_t nodes_joined, nodes_ready, nodes_dead;
    uint64_t sequences_active, sequences_done;
    uint64_t bad_registrations;
    uint64_t replans;       /* plans after the first (joins, drains, losses) */
    uint64_t bytes_moved;   /* expert weight bytes those re-plans moved */
    uint64_t rebalances;    /* of those re-plans, the ones that placed experts by load (EPLB) */
    uint64_t live_switches; /* re-plans completed make-before-break, without a pause */
    uint64_t bias_updates;  /* windows in which the online bias rule moved a bias */
    uint64_t bad_admin;     /* ADMIN requests refused for a wrong proof */
    dsc_spec_totals_t spec; /* speculative decoding on the nodes (their HEARTBEATs) */
    uint64_t prefill_tokens; /* prompt tokens SUBMITs asked the nodes to compute */
    uint64_t shared_tokens;  /* prompt tokens they copied from another sequence instead */
    uint64_t preemptions;   /* sequences a node preempted (KV pool full) and that were re-submitted */
    uint64_t prefix_misses; /* sequences submitted again without prefix reuse (a later stage
                               lacked blocks stage 0 found in its prefix cache) */
    /* prefix cache, from the nodes' HEARTBEATs: prompt tokens stage 0 took, and those it found
     * cached (not computed) */
    uint64_t prefix_prompt_tokens, prefix_hit_tokens;
    uint64_t kv_moved_sequences; /* sequences a live switch moved with their KV cache */
    uint64_t kv_moved_bytes;     /* KV cache bytes those moves carried */
    uint64_t kv_move_failures;   /* moves that failed and fell back to a prefill */
    uint64_t reprefilled;        /* sequences a re-plan submitted again to be prefilled anew */
} dsc_cluster_stats_t;
void dsc_cluster_stats(const dsc_cluster_t *cl, dsc_cluster_stats_t *out);

/* The KV pool of node index i < dsc_cluster_node_slots() as its last HEARTBEAT told; 0 for a
 * slot without a live node. */
typedef struct {
    const char *name;
    uint64_t blocks_used, blocks_total, preemptions;
    uint64_t blocks_cached;             /* held by no sequence, kept for the prefix cache */
    uint64_t prompt_tokens, hit_tokens; /* prefix cache: prompt tokens, found cached */
} dsc_cluster_node_kv_t;
uint32_t dsc_cluster_node_slots(const dsc_cluster_t *cl);
int dsc_cluster_node_kv(const dsc_cluster_t *cl, uint32_t i, dsc_cluster_node_kv_t *out);

/* What the cluster is doing, for /health, refusals and `dsinfer cluster status`. */
typedef enum {
    DSC_CLUSTER_SERVING = 0,       /* every node of the plan is ready */
    DSC_CLUSTER_WAITING_NODES,     /* fewer nodes joined than expected: nothing planned yet */
    DSC_CLUSTER_LOADING,           /* a plan was sent; its nodes are loading it */
    DSC_CLUSTER_PLAN_DOES_NOT_FIT, /* the live nodes lack memory for the model: nothing loads */
    DSC_CLUSTER_NO_NODES,          /* no live node is left */
    DSC_CLUSTER_SHUT_DOWN,         /* SHUTDOWN was sent */
} dsc_cluster_phase_t;

typedef struct {
    dsc_cluster_phase_t phase;
    uint32_t nodes_live, nodes_expected; /* live = joined, neither dead nor draining */
    uint32_t nodes_ready, nodes_planned; /* READY nodes of the current plan, and its nodes */
    uint64_t missing_bytes;              /* PLAN_DOES_NOT_FIT: memory the nodes lack */
    char message[640]; /* one sentence with the numbers ("node 1 'b' needs 3.2 GiB more ...") */
} dsc_cluster_condition_t;
void dsc_cluster_condition(const dsc_cluster_t *cl, dsc_cluster_condition_t *out);
/* "serving", "waiting_for_nodes", "loading", "plan_does_not_fit", "no_nodes", "shut_down". */
const char *dsc_cluster_phase_name(dsc_cluster_phase_t phase);

/*
 * Asks node `node_id` to leave: its experts and sequences move to the other nodes (a re-plan),
 * then it gets SHUTDOWN. DSI_ERR_NOT_FOUND (no live node of that id), DSI_ERR_UNSUPPORTED (the
 * cluster shut down). Draining a draining node is DSI_OK and does nothing.
 */
dsi_status_t dsc_cluster_drain(dsc_cluster_t *cl, uint32_t node_id);

typedef struct {
    uint64_t epoch;             /* the new plan's */
    double imbalance_before;    /* the window's figure under the plan replaced */
    double imbalance_after;     /* the same counts under the new plan */
    uint32_t redundant_experts; /* replicas per MoE layer asked of the planner */
    uint64_t replicas;          /* redundant copies placed over all layers */
    uint64_t experts_moved;     /* expert copies a node did not have before */
    uint64_t bytes_moved;       /* weight bytes nodes must load for the new plan */
} dsc_rebalance_report_t;

/*
 * EPLB now: plans the live nodes from scratch with the sliding window's counts as the load and
 * redundant experts (hierarchical group packing when the stage's node count divides n_group,
 * replicas to the highest load per copy, copies packed heaviest first onto the least-loaded
 * node), keeping the stage count, and switches to it like any re-plan (open requests continue
 * with unchanged tokens). Later membership re-plans keep placing by load. `out` (optional) says
 * what changed. DSI_ERR_UNSUPPORTED (not serving: not planned yet, re-planning, shut down),
 * DSI_ERR_NOT_FOUND (no load counted yet), DSI_ERR_CAPACITY (the planner refused); the cause is
 * logged and the current plan keeps serving.
 */
dsi_status_t dsc_cluster_rebalance(dsc_cluster_t *cl, const char *why, dsc_rebalance_report_t *out);

/* The load statistics, for /metrics exporters and tests. */
typedef struct {
    uint32_t first_layer;          /* model index of the first MoE layer */
    uint32_t n_layers;             /* MoE layers (0: the model has none) */
    uint32_t n_experts;            /* routed experts per layer */
    uint32_t window_ms;            /* one window */
    uint32_t n_windows;            /* windows in the sliding window */
    const uint64_t *counts;        /* [n_layers * n_experts] pairs routed over the sliding window */
    uint64_t total;                /* their sum */
    double imbalance;              /* the cluster's figure under the current plan; 0 = no data */
    const double *layer_imbalance; /* [n_layers], 0 = no data for that layer */
    int bias_available;            /* the coordinator holds the router biases */
    float bias_gamma;              /* the online rule's step, 0 = off */
    const double *bias_drift_max;  /* [n_layers] max |b - b0|, NULL without biases */
    const double *bias_drift_mean; /* [n_layers] mean |b - b0|, NULL without biases */
} dsc_cluster_load_t;

/*
 * Fills *out; its arrays belong to the cluster and stay valid until the loop runs again (or the
 * next snapshot). Loop thread only.
 */
void dsc_cluster_load_snapshot(dsc_cluster_t *cl, dsc_cluster_load_t *out);

/*
 * The cluster's state as one JSON object (what `dsinfer cluster status --json` prints): epoch,
 * nodes (id, name, state, stage, experts held, memory), stages, per-layer and cluster imbalance,
 * bias drift, re-plan counts and bytes moved, and the condition (state, message, missing_bytes:
 * dsc_cluster_condition). Malloc'ed, the caller frees; NULL when out of
 * memory.
 */
char *dsc_cluster_status_json(dsc_cluster_t *cl);
/* The nodes' part of it, for GET /health: a JSON array of {id, name, state, memory_budget}
 * (state: joined, ready, draining, drained, dead), malloc'ed (caller frees); NULL when out of
 * memory. */
char *dsc_cluster_nodes_json(dsc_cluster_t *cl);

#endif
