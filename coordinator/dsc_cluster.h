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

typedef struct {
    const char *listen;        /* "127.0.0.1:7000"; port 0 picks one (dsc_cluster_port) */
    uint32_t expect_nodes;     /* plan once this many nodes have joined (>= 1) */
    uint32_t heartbeat_ms;     /* how often nodes send HEARTBEAT */
    uint32_t node_timeout_ms;  /* a node silent this long is declared dead */
    uint32_t stall_timeout_ms; /* queued requests fail if the cluster cannot serve this long */
    dsc_plan_opts_t plan;      /* planner options (stages, weight format, KV reserve) */
    dst_secret_t secret;       /* nodes must prove they know it */
} dsc_cluster_opts_t;

/* Defaults: 127.0.0.1:0, 1 node, 500 ms heartbeats, 2 s node timeout, 60 s stall timeout,
 * default plan options. The secret is left empty: the caller loads it (dst_secret_load). */
void dsc_cluster_opts_default(dsc_cluster_opts_t *opts);

/* A generation request at the token level. */
typedef struct {
    const int32_t *prompt; /* [n_prompt] token ids < vocab_size */
    uint32_t n_prompt;
    uint32_t max_tokens;
    float temperature, top_p;
    uint32_t top_k;
    uint64_t seed;
} dsc_cluster_req_t;

/*
 * Tokens of one sequence as they are sampled (n >= 0), with the finish reason on the last call
 * (DST_FINISH_NONE before). Called on the loop thread; after a call with a finish reason nothing
 * more comes for that sequence.
 */
typedef void (*dsc_cluster_token_cb)(void *ctx, const int32_t *tokens, uint32_t n,
                                     dst_finish_t finish);

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
void dsc_cluster_on_state(dsc_cluster_t *cl, void (*cb)(void *arg, dsi_status_t st), void *arg);
/*
 * Starts a sequence (queued until the cluster is ready). On DSI_OK *seq_id names it for
 * dsc_cluster_cancel and cb will be called. DSI_ERR_INVALID_ARG for a bad request (token out of
 * the vocabulary, empty prompt), DSI_ERR_UNSUPPORTED when the cluster has failed.
 */
dsi_status_t dsc_cluster_submit(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                dsc_cluster_token_cb cb, void *ctx, uint64_t *seq_id);
/* Stops a sequence: no callback follows; its state is freed on every node. */
void dsc_cluster_cancel(dsc_cluster_t *cl, uint64_t seq_id);
/* Sends SHUTDOWN to every node now (they exit); the cluster stops serving. */
void dsc_cluster_shutdown(dsc_cluster_t *cl, const char *reason);

typedef struct {
    uint32_t nodes_joined, nodes_ready, nodes_dead;
    uint64_t sequences_active, sequences_done;
    uint64_t bad_registrations;
    uint64_t replans;     /* plans after the first (joins, drains, losses) */
    uint64_t bytes_moved; /* expert weight bytes those re-plans moved */
} dsc_cluster_stats_t;
void dsc_cluster_stats(const dsc_cluster_t *cl, dsc_cluster_stats_t *out);

#endif
