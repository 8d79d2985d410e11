/*
 * dsc_cluster_impl.h - private to the coordinator's cluster files:
 *   dsc_cluster.c       connections, membership (join, drain, loss), the public entry points;
 *   dsc_cluster_replan.c  planning and re-planning (epochs), lanes;
 *   dsc_cluster_switch.c make-before-break re-plans (live switch);
 *   dsc_cluster_seq.c   sequences: submit, tokens, cancel, re-submission after a re-plan;
 *   dsc_load_cluster.c  expert-load windows, online router biases, automatic rebalance;
 *   dsc_load_admin.c    ADMIN requests and the status JSON.
 *
 * Membership changes while serving are handled by re-planning, never by losing requests. When the
 * new plan keeps every remaining node's stage, the switch is live (dsc_cluster_switch.c): the old
 * plan serves while the new one loads. Otherwise (a node died, stages change) it stops the world:
 * every open sequence is cancelled on the nodes, a new plan (kept close to the old one) goes out,
 * and once every live node is READY in the new epoch each sequence is submitted again with its
 * prompt followed by the tokens it already produced, under a fresh wire id (so late TOKENS of the
 * old epoch are ignored). Greedy sequences therefore continue with exactly the tokens they would
 * have produced; sampled ones continue from the same seed (docs/ELASTICITY.md).
 */
#ifndef DSC_CLUSTER_IMPL_H
#define DSC_CLUSTER_IMPL_H

#include "dsc_bias.h"
#include "dsc_cluster.h"
#include "dsc_load.h"
#include "dsc_prefix_route.h"
#include "dsi_list.h"
#include "dst_ctrl.h"

#define DSC_MAX_NODES 1024

typedef enum { PEER_UNKNOWN = 0, PEER_NODE, PEER_CLIENT } peer_kind_t;

/* What the coordinator knows of one control connection. */
typedef struct conn_state {
    dsc_cluster_t *cl;
    dst_ctrl_conn_t *conn;
    peer_kind_t kind;
    int node; /* index into nodes when kind == PEER_NODE */
    int client_ok; /* proved the shared secret (ADMIN client): may SUBMIT */
    uint8_t nonce[DST_MSG_NONCE_LEN];
} conn_state_t;

typedef enum { NODE_JOINED = 0, NODE_READY, NODE_DEAD } node_state_t;

typedef struct {
    uint32_t id; /* == its index in nodes[] */
    char name[DST_MSG_NAME_MAX];
    uint64_t mem_budget;
    uint32_t cores;
    uint8_t *ucx_addr;
    size_t ucx_addr_len;
    node_state_t state;
    int draining; /* asked to leave: not in the next plan; SHUTDOWN once that plan serves */
    conn_state_t *cs;
    uint64_t last_seen_ns;
    uint64_t kv_used, kv_total, preemptions; /* its KV pool, from its last HEARTBEAT */
    uint64_t kv_cached, prompt_tokens, hit_tokens; /* its prefix cache, from the same */
    int next_ready, switched; /* live switch: READY in the next plan; SWITCHED */
    /* A node that outlived its coordinator: its id and epoch under the plan it still holds
     * (REGISTER's held_id / held_epoch; held_epoch 0: none). */
    uint32_t held_id;
    uint64_t held_epoch;
} node_t;

typedef enum { SWITCH_NONE = 0, SWITCH_PREPARE, SWITCH_DRAIN } switch_phase_t;

/* A sequence (request) until its owner has its last token. */
typedef struct seq {
    dsi_list_t link;  /* in cl->seqs */
    uint64_t handle;  /* the owner's id for it (stable) */
    uint64_t wire_id; /* id on the nodes in the current submission (new after a re-plan) */
    uint32_t route[DST_MSG_MAX_STAGES];
    uint32_t n_route;
    int submitted; /* SUBMIT went to the lane's nodes under wire_id */
    dsc_cluster_token_cb cb;
    dsc_cluster_logprobs_cb lp_cb; /* or NULL */
    void *ctx;
    conn_state_t *client; /* remote client that sent SUBMIT, or NULL */
    uint64_t client_seq;  /* the client's id for it */
    int32_t *tokens;      /* [n_prompt + n_generated]: the prompt, then what was delivered */
    uint32_t n_prompt, n_generated, cap;
    dst_msg_submit_t req; /* sampling parameters and max_tokens; req.sampling's arrays owned */
    uint64_t share_prefix_of; /* dsc_cluster_submit_shared's: a handle, or 0 */
    uint64_t epoch;           /* the plan it was last submitted under */
    /* Moving with its KV cache after a live switch (dsc_cluster_kvmove.c): the lane and wire id
     * chosen before SWITCH (move_planned), then the KV_DONE replies still expected from its new
     * nodes, by when, and the bytes they received. */
    int move_planned;
    uint32_t move_route[DST_MSG_MAX_STAGES];
    uint64_t move_wire;
    uint32_t kv_pending;
    uint64_t kv_deadline_ns, kv_bytes;
    /* A restart kept its rows on its nodes (dsc_cluster_kvcarry.c): route, n_route and wire_id
     * are still those of the previous plan, whose layer ranges per stage these are. */
    int carry;
    uint32_t carry_first[DST_MSG_MAX_STAGES], carry_end[DST_MSG_MAX_STAGES];
} seq_t;

struct dsc_cluster {
    uv_loop_t *loop;
    dsn_config_t cfg;
    dsc_cluster_opts_t opts;
    dst_ctrl_listener_t *listener;
    uv_timer_t timer;
    node_t nodes[DSC_MAX_NODES];
    uint32_t n_nodes;
    dst_plan_t plan;
    int planned;         /* a plan was sent at least once */
    uint64_t last_epoch; /* the highest epoch sent or held by a node: the next plan's is above */
    /* Before the first plan: the plan nodes that outlived the previous coordinator still serve
     * (the newest one a node sent back), with their old ids; adopted when all of them are back
     * (dsc_cluster_replan.c). has_held 0: none. */
    dst_plan_t held_plan;
    int has_held;
    /* A live switch in progress (dsc_cluster_switch.c). */
    switch_phase_t switch_phase;
    dst_plan_t next_plan;      /* PREPARE: loading beside the current plan */
    dst_plan_t prev_plan;      /* DRAIN: the plan switched away from */
    char deferred_why[96];     /* a membership re-plan asked for during the switch, run after it */
    int release_waits;         /* every node SWITCHED, RELEASE waits for KV moves to end */
    int carry_release;         /* drained nodes' SHUTDOWN waits for the KV moves of a restart */
    int ready;                 /* every node of the current plan is READY: sequences run */
    /* A drain no plan can absorb (dsc_cluster_replan.c, "drain hold"): 1 while new requests wait
     * for the running ones to end, 2 once the draining nodes were released; 0 otherwise. */
    int drain_hold;
    int shut_down;             /* SHUTDOWN sent: nodes leaving is expected, nothing re-plans */
    uint64_t unready_since_ns; /* when serving stopped (re-plan or waiting for nodes) */
    uint32_t n_lanes, next_lane;
    uint32_t *lane_nodes; /* [n_stages][n_lanes] node id of stage s in lane l */
    dsc_prefix_route_t *prefix_route; /* what prompt prefixes went to which lane (this plan) */
    dsi_list_t seqs;      /* of seq_t, in arrival order (first come, first served) */
    uint64_t next_handle, next_wire;
    void (*state_cb)(void *arg, dsi_status_t st);
    void *state_arg;
    dsc_cluster_admit_cb admit_cb; /* SUBMIT of a control-port client */
    void *admit_arg;
    uint64_t unauth_refused; /* SUBMITs refused for no proof since the last WARN about them */
    uint64_t unauth_warn_ns; /* when that WARN was logged (one per 10 s at most) */
    dsc_cluster_stats_t stats;
    /* The last re-plan that stopped serving found no plan (cleared by the next plan sent):
     * the planner's reason, the bytes missing (0: no live node), for dsc_cluster_condition. */
    char plan_error[512];
    uint64_t plan_missing;
    /* Expert load and biases (dsc_load_cluster.c); load is NULL for a model without MoE. */
    dsc_load_t *load;
    dsc_bias_t *bias;        /* NULL: bias tracking unavailable */
    uv_timer_t load_timer;   /* closes a load window every opts.load_window_ms */
    int eplb_active;         /* a rebalance placed experts by load: re-plans keep doing so */
    uint32_t eplb_redundant; /* replicas per layer the last rebalance asked for */
    uint64_t last_rebalance_ns;
    double *layer_imb;              /* [MoE layers] snapshot scratch */
    double *drift_max, *drift_mean; /* [MoE layers] snapshot scratch */
    /* Teardown: the struct is freed once destroyed, its timers closed and no connection left. */
    int destroyed, timer_open, load_timer_open;
    uint32_t open_conns;
};

/* dsc_cluster.c */
uint64_t dsc_now_ns(void);
/* Send m (failures are logged); a node that is dead or gone counts as sent. */
dsi_status_t dsc_cluster_send(dst_ctrl_conn_t *conn, const dst_msg_t *m);
dsi_status_t dsc_cluster_send_node(dsc_cluster_t *cl, uint32_t id, const dst_msg_t *m);
void dsc_cluster_set_state(dsc_cluster_t *cl, dsi_status_t st);
/* Nodes that are neither dead nor draining. */
int dsc_node_live(const node_t *n);

/* dsc_cluster_replan.c */
/* A PLAN a node sent back after registering: the plan it still serves (kept when it is the
 * newest heard of and nothing was planned yet). */
void dsc_cluster_held_plan(dsc_cluster_t *cl, const node_t *n, const dst_plan_t *p);
/*
 * Plan over the live nodes (kept close to the previous plan) and send it; 0 or -1 (logged).
 * live_ok: a live switch may be used (joins, drains; not after a loss); during a live switch such
 * a re-plan waits for its end, while one without live_ok abandons it.
 */
int dsc_cluster_replan(dsc_cluster_t *cl, const char *why, int live_ok);
/* Entries of the routing record of prompt prefixes per lane (16 bytes of hash and lane each
 * plus links: about 3 MiB). */
#define DSC_PREFIX_ROUTE_ENTRIES 65536

/* The lanes of the current plan. */
dsi_status_t dsc_cluster_build_lanes(dsc_cluster_t *cl);
/* PLAN (with its live flag: 0, 1 or 2 as PLAN.live) and PEERS to the nodes of p; with live 1
 * or 2, PEERS lists the draining nodes p leaves out too (they may send KV rows), and goes to
 * them as well. */
void dsc_cluster_send_plan(dsc_cluster_t *cl, const dst_plan_t *p, int live);
/* A drain hold's step, on the cluster's timer: the draining nodes go once no request runs. */
void dsc_cluster_drain_hold_tick(dsc_cluster_t *cl);
/* SHUTDOWN to draining nodes that are not in the current plan. */
void dsc_cluster_release_drained(dsc_cluster_t *cl);
/* A node answered READY for the current epoch. */
void dsc_cluster_node_ready(dsc_cluster_t *cl, node_t *n);
/* The live nodes as the planner sees them; returns how many. */
uint32_t dsc_cluster_live_descs(const dsc_cluster_t *cl, dsc_node_desc_t *descs);

/* dsc_cluster_switch.c */
/* Node `id` is in the current plan, or in the one a live switch moves to or from. */
int dsc_cluster_involves(const dsc_cluster_t *cl, uint32_t id);
/* Whether `next` can replace the current plan by a live switch. */
int dsc_switch_possible(const dsc_cluster_t *cl, const dst_plan_t *next);
/* Start the live switch to `next` (moved in). */
void dsc_switch_begin(dsc_cluster_t *cl, dst_plan_t *next);
void dsc_switch_on_ready(dsc_cluster_t *cl, node_t *n);    /* READY of the next plan */
void dsc_switch_on_switched(dsc_cluster_t *cl, node_t *n); /* SWITCHED of the current plan */
/* Forget a switch in progress (a stop-the-world re-plan takes over). */
void dsc_switch_abort(dsc_cluster_t *cl);
/* Every node switched and no KV move is in flight: RELEASE, SHUTDOWN to drained nodes. */
void dsc_switch_release(dsc_cluster_t *cl);

/* dsc_cluster_kvmove.c: sequences that move with their KV cache in a live switch */
/* Before SWITCH: every sequence whose lane lost a node gets its new lane; where every old node
 * of it is alive and the sequence has generated, KV_MOVE goes to the old holders (their stage
 * changes node) and the sequence is marked move_planned. */
void dsc_kvmove_begin(dsc_cluster_t *cl);
/* KV_DONE from a node. */
void dsc_kvmove_on_done(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_kv_done_t *m);
/* Moves past their deadline fall back to a prefill; a RELEASE that waited goes out. */
void dsc_kvmove_tick(dsc_cluster_t *cl, uint64_t now);
/* KV moves in flight. */
uint32_t dsc_kvmove_pending(const dsc_cluster_t *cl);
/* During a live switch (after SWITCH): s, submitted under the previous plan, cannot continue
 * where it is: a node of its lane left, or holds another stage or other layers now (its KV
 * cache there is of the old split). dsc_switch_possible allows no such plan today; checked
 * anyway, since a wrong answer would compute with the wrong rows. */
int dsc_seq_lost(const dsc_cluster_t *cl, const seq_t *s);
/* KV_MOVEs of s (old wire id, old route) to move_route / move_wire in the current plan: for every
 * new stage, the rows of each of its layers from the old stage that held it (old stage i held
 * the layers [first[i], end[i])); with `copy`, a node that keeps a stage's exact layers copies
 * them at the SUBMIT instead. Sets kv_pending; 0, or -1 when a KV_MOVE could not be sent. */
int dsc_kvmove_send(dsc_cluster_t *cl, seq_t *s, const uint32_t *first, const uint32_t *end,
                    int copy);

/* dsc_cluster_kvcarry.c: a restart (stop the world) that keeps the KV caches */
/* Serving stops: sequences that can keep their rows (every node of their lane alive, a token
 * generated) are marked carry and withdrawn without CANCEL; 1 when any was. */
int dsc_kvcarry_hold(dsc_cluster_t *cl);
/* The new plan serves: carried sequences move (KV_MOVE, SUBMIT with kv_move) or, when they
 * cannot, are cancelled where they were and left to be submitted again. */
void dsc_kvcarry_begin(dsc_cluster_t *cl);
/* Planning failed: carried sequences are cancelled where they were (submitted again later). */
void dsc_kvcarry_drop(dsc_cluster_t *cl);

/* dsc_load_cluster.c */
/* The load window, the biases (when opts.model_dir is set) and the window timer. */
dsi_status_t dsc_cluster_load_init(dsc_cluster_t *cl);
/* Stops the window timer (closed asynchronously: load_timer_open drops to 0) and frees. */
void dsc_cluster_load_close(dsc_cluster_t *cl);
void dsc_cluster_on_load_stats(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_load_stats_t *m);
/* Sends every MoE layer's bias that differs from the checkpoint to the nodes of its stage (a new
 * epoch's nodes loaded the checkpoint's). */
void dsc_cluster_push_biases(dsc_cluster_t *cl);

/* dsc_load_admin.c */
void dsc_cluster_on_admin(dsc_cluster_t *cl, conn_state_t *cs, const dst_msg_admin_t *m);

/* dsc_cluster_seq.c */
seq_t *dsc_seq_by_wire(dsc_cluster_t *cl, uint64_t wire_id);
/* A new sequence for req; on refusal (logged) `why` (cap bytes, may be NULL) says what was wrong
 * with the request, naming the value and its limit, for the client. */
dsi_status_t dsc_seq_create(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                            const dst_msg_sampling_t *sampling, seq_t **out, char *why, size_t cap,
                            uint64_t share_prefix_of);
/* SUBMIT on a lane of the current plan; when it cannot be sent (and a re-plan would not repair
 * that) the owner gets an error finish and s is freed: the status says so. */
dsi_status_t dsc_seq_submit(dsc_cluster_t *cl, seq_t *s);
/* The route of the next lane of the current plan into route[]; returns its stages. */
uint32_t dsc_seq_next_lane(dsc_cluster_t *cl, uint32_t *route);
/* s (move_planned) continues on move_route as move_wire with the KV rows of all but its last
 * token moved there (SUBMIT kv_move), and its old submission is cancelled. On a send failure
 * the owner gets an error finish and s is freed (the status says so). */
dsi_status_t dsc_seq_submit_moved(dsc_cluster_t *cl, seq_t *s);
/* Tell the nodes of its lane to drop the sequence's current submission. */
void dsc_seq_withdraw(dsc_cluster_t *cl, seq_t *s);
/* Owner gets the tokens; records them for re-submission. */
void dsc_seq_deliver(dsc_cluster_t *cl, seq_t *s, const dst_msg_tokens_t *lp, const int32_t *tokens,
                     uint32_t n, dst_finish_t finish);
/* A node preempted s (its KV pool is full): withdraw it and submit it again with the tokens so
 * far (stage 0 admits it when blocks are free). */
void dsc_seq_preempted(dsc_cluster_t *cl, seq_t *s);
/* A later stage lacked prefix-cache blocks stage 0 found: s is submitted again with no_prefix. */
void dsc_seq_prefix_miss(dsc_cluster_t *cl, seq_t *s);
/* Cancel on the nodes (if submitted) and free. */
void dsc_seq_end(dsc_cluster_t *cl, seq_t *s);
/* Cancel every submitted sequence on the nodes; they wait for the next epoch. */
void dsc_seq_withdraw_all(dsc_cluster_t *cl);
void dsc_seq_submit_all(dsc_cluster_t *cl);
/* Every open sequence ends with an error. */
void dsc_seq_fail_all(dsc_cluster_t *cl, const char *why);
void dsc_seq_free_all(dsc_cluster_t *cl);

#endif
