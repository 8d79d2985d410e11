/*
 * dsn_node.c - the node daemon's loop thread: the control connection to the coordinator, the UCX
 * data plane, heartbeats and signals, and the outbox of the compute thread.
 */
#include <signal.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsi_clock.h"
#include "dsi_log.h"
#include "dsi_pool.h"
#include "dsi_settings.h"
#include "dsn_node_impl.h"
#include "dsn_numa.h"

void dsn_node_opts_default(dsn_node_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->mem_budget = 16ULL << 30;
    opts->threads = 0;
    opts->max_batch_tokens = 256;
    opts->max_context = 0; /* the model's max_position_embeddings */
    opts->numa_node = -1;
    opts->kv_dtype = DSN_KV_BF16;
    opts->prefix_cache = 1;
    opts->coordinator_wait_ms = DSN_COORDINATOR_WAIT_MS;
}

static void node_stop(dsn_node_t *node, dsi_status_t why)
{
    if (node->stopping)
        return;
    node->stopping = 1;
    node->exit_status = why;
    uv_stop(&node->loop);
}

/* ---- the slice of the plan ---- */

/* A PLAN message moved onto the heap (msg is left empty); NULL when out of memory (logged). */
static dst_msg_t *plan_take(dst_msg_t *msg)
{
    dst_msg_t *p = malloc(sizeof(*p));
    if (p == NULL) {
        DSI_ERROR("out of memory keeping the plan of epoch %llu",
                  (unsigned long long)msg->plan.plan.epoch);
        return NULL;
    }
    *p = *msg;
    memset(msg, 0, sizeof(*msg));
    return p;
}

/* A deep copy of a PLAN message for the compute thread (through the codec: the plan's arrays
 * live in the decoder's arena); NULL when out of memory (logged). */
static dst_msg_t *plan_copy(const dst_msg_t *m)
{
    char err[256];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dst_msg_t *c = malloc(sizeof(*c));
    dsi_status_t st = c == NULL ? DSI_ERR_NOMEM : dst_msg_encode(m, &sb, err, sizeof(err));
    if (st == DSI_OK)
        st = dst_msg_decode(sb.data, sb.size, c, err, sizeof(err));
    msgpack_sbuffer_destroy(&sb);
    if (st != DSI_OK) {
        DSI_ERROR("cannot copy the plan of epoch %llu: %s", (unsigned long long)m->plan.plan.epoch,
                  dsi_status_message(st));
        free(c);
        return NULL;
    }
    return c;
}

/* Endpoints to every peer of the plan; with drop_others, peers that left it are disconnected
 * (a live switch keeps them until RELEASE: work of the previous plan may still need them). */
static dsi_status_t connect_peers(dsn_node_t *node, const dst_msg_peers_t *peers, int drop_others)
{
    uint8_t wanted[DSN_MAX_PEERS] = {0};
    for (uint32_t i = 0; i < peers->n_peers; i++) {
        const dst_msg_peer_t *pe = &peers->peers[i];
        if (pe->node_id == node->node_id)
            continue;
        if (pe->node_id >= DSN_MAX_PEERS) {
            DSI_ERROR("PEERS names node %u, above this build's limit of %d nodes", pe->node_id,
                      DSN_MAX_PEERS);
            return DSI_ERR_PROTOCOL;
        }
        wanted[pe->node_id] = 1;
        if (node->connected[pe->node_id])
            continue;
        dsi_status_t st = dst_ucx_connect(node->ucx, pe->node_id, pe->ucx_addr, pe->ucx_addr_len);
        if (st != DSI_OK)
            return st;
        node->connected[pe->node_id] = 1;
    }
    for (uint32_t id = 0; id < DSN_MAX_PEERS && drop_others; id++) {
        if (node->connected[id] && !wanted[id]) {
            dst_ucx_disconnect(node->ucx, id);
            node->connected[id] = 0;
        }
    }
    return DSI_OK;
}

/* The stage of node `id` in plan p (-1: not in it), with its layer range. */
static int stage_of(const dst_plan_t *p, uint32_t id, dst_plan_stage_t *range)
{
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        if (p->nodes[i].node_id == id && p->nodes[i].stage < p->n_stages) {
            *range = p->stages[p->nodes[i].stage];
            return (int)p->nodes[i].stage;
        }
    }
    return -1;
}

/* A live plan keeps this node's stage exactly (its sequences' KV caches stay valid): the same
 * stage index, layers and stage count as the current plan, with this node in it. */
static int keeps_stage(const dsn_node_t *node, const dst_plan_t *cur, const dst_plan_t *next)
{
    dst_plan_stage_t a = {0, 0}, b = {0, 0};
    int sa = stage_of(cur, node->node_id, &a), sb = stage_of(next, node->node_id, &b);
    return sa >= 0 && sa == sb && cur->n_stages == next->n_stages &&
           a.first_layer == b.first_layer && a.end_layer == b.end_layer;
}

/* ---- the queue to the compute thread ---- */

static dsi_status_t worker_start(dsn_node_t *node)
{
    node->compute = dsn_compute_create(&node->opts, &node->queue, node->ckpt);
    if (node->compute == NULL)
        return DSI_ERR_NOMEM;
    if (pthread_create(&node->thread, NULL, dsn_worker_main, node->compute) != 0) {
        DSI_ERROR("cannot start the compute thread: %m");
        return DSI_ERR_INTERNAL;
    }
    node->thread_started = 1;
    return DSI_OK;
}

/* A task stamped with the current restart count: the compute thread drops older ones. */
static void push_task(dsn_node_t *node, dsn_task_t *t, int first)
{
    t->gen = node->task_gen;
    if (first)
        dsn_queue_push_first(&node->queue, t);
    else
        dsn_queue_push(&node->queue, t);
}

static void worker_stop(dsn_node_t *node)
{
    if (node->thread_started) {
        dsn_task_t *t = dsn_queue_task_get(&node->queue);
        if (t == NULL)
            abort(); /* cannot stop the thread without memory for the message */
        t->type = DSN_TASK_STOP;
        push_task(node, t, 1); /* what is queued is of no use any more */
        pthread_join(node->thread, NULL);
        node->thread_started = 0;
    }
    dsn_compute_destroy(node->compute);
    node->compute = NULL;
}

/* Loop thread: a re-plan task for the compute thread; RELOAD and PREPARE carry a copy of the
 * newest plan. Both go ahead of everything queued: after a restart that is stale, and loading a
 * live plan's experts early only adds experts (queued work of the current plan still finds its
 * own), so the switch does not wait for the queue. */
static void push_plan_task(dsn_node_t *node, dsn_task_type_t type, uint64_t epoch)
{
    dsn_task_t *t = dsn_queue_task_get(&node->queue);
    if (t != NULL && (type == DSN_TASK_RELOAD || type == DSN_TASK_PREPARE)) {
        t->plan = plan_copy(node->plan);
        if (t->plan == NULL) {
            dsn_queue_task_put(&node->queue, t);
            t = NULL;
        }
    }
    if (t == NULL) {
        DSI_ERROR("out of memory queueing the re-plan of epoch %llu: stopping",
                  (unsigned long long)epoch);
        node_stop(node, DSI_ERR_NOMEM);
        return;
    }
    t->type = type;
    t->epoch = epoch;
    t->node_id = node->node_id;
    push_task(node, t, type == DSN_TASK_RELOAD || type == DSN_TASK_PREPARE);
}

/* ---- control messages ---- */

static void send_msg(dsn_node_t *node, const dst_msg_t *msg)
{
    if (node->ctrl == NULL)
        return;
    dsi_status_t st = dst_ctrl_send(node->ctrl, msg);
    if (st != DSI_OK)
        DSI_ERROR("cannot send %s to the coordinator: %s", dst_msg_type_name(msg->type),
                  dsi_status_message(st));
}

static void on_heartbeat(uv_timer_t *timer)
{
    dsn_node_t *node = timer->data;
    dst_msg_t m = {.type = DST_MSG_HEARTBEAT};
    m.heartbeat.node_id = node->node_id;
    m.heartbeat.seq = ++node->heartbeat_seq;
    m.heartbeat.time_ns = dsi_now_ns();
    if (node->compute != NULL) {
        m.heartbeat.kv_blocks_used = atomic_load_explicit(&node->compute->kv_used,
                                                          memory_order_relaxed);
        m.heartbeat.kv_blocks_total = atomic_load_explicit(&node->compute->kv_total,
                                                           memory_order_relaxed);
        m.heartbeat.preemptions = atomic_load_explicit(&node->compute->kv_preemptions,
                                                       memory_order_relaxed);
        m.heartbeat.kv_blocks_cached =
            atomic_load_explicit(&node->compute->kv_cached, memory_order_relaxed);
        m.heartbeat.prompt_tokens =
            atomic_load_explicit(&node->compute->kv_prompt_tokens, memory_order_relaxed);
        m.heartbeat.prefix_hit_tokens =
            atomic_load_explicit(&node->compute->kv_hit_tokens, memory_order_relaxed);
    }
    m.heartbeat.has_spec = (uint8_t)dsn_queue_spec_take(&node->queue, &m.heartbeat.spec);
    send_msg(node, &m);
}

static void send_register(dsn_node_t *node, const dst_msg_hello_t *hello)
{
    dst_msg_t m = {.type = DST_MSG_REGISTER};
    const void *addr;
    size_t len;
    if (dst_ucx_address(node->ucx, &addr, &len) != DSI_OK) {
        node_stop(node, DSI_ERR_INTERNAL);
        return;
    }
    snprintf(m.reg.name, sizeof(m.reg.name), "%s", node->name);
    m.reg.mem_budget = node->opts.mem_budget;
    m.reg.cores = (uint32_t)(node->opts.threads > 0 ? node->opts.threads : dsi_cpus_available());
    m.reg.ucx_addr = (uint8_t *)addr;
    m.reg.ucx_addr_len = len;
    if (node->orphan && node->ready_epoch != 0) {
        m.reg.held_id = node->held_id;
        m.reg.held_epoch = node->ready_epoch;
    }
    dst_secret_register_auth(&node->secret, hello->nonce, node->name, m.reg.auth);
    send_msg(node, &m);
}

static void push_msg_task(dsn_node_t *node, dsn_task_type_t type, dst_msg_t *msg)
{
    if (!node->ready) {
        DSI_WARN("%s before the node is ready: ignored", dst_msg_type_name(msg->type));
        return;
    }
    dsn_task_t *t = dsn_queue_task_get(&node->queue);
    if (t == NULL) {
        DSI_ERROR("out of memory queueing %s", dst_msg_type_name(msg->type));
        return;
    }
    t->type = type;
    t->msg = *msg; /* move: the caller's copy is zeroed so the transport does not free it */
    memset(msg, 0, sizeof(*msg));
    push_task(node, t, 0);
}

static void on_peers(dsn_node_t *node, const dst_msg_peers_t *peers)
{
    if (node->plan != NULL && node->ready && peers->epoch > node->plan->plan.plan.epoch) {
        /* The peers of a plan that leaves this node out (it drains): the KV rows of its
         * sequences may go to any of them (KV_MOVE), so it connects, keeping every endpoint it
         * has. */
        dsi_status_t st = connect_peers(node, peers, 0);
        if (st != DSI_OK)
            DSI_WARN("cannot reach the peers of plan epoch %llu, which leaves this node out: %s",
                     (unsigned long long)peers->epoch, dsi_status_message(st));
        return;
    }
    if (node->plan == NULL || peers->epoch != node->plan->plan.plan.epoch) {
        DSI_ERROR("PEERS of epoch %llu without its PLAN", (unsigned long long)peers->epoch);
        return;
    }
    if (node->switching) {
        /* Live: both epochs' messages are accepted until RELEASE; READY comes from the compute
         * thread once it loaded the new experts. */
        dsi_status_t st = connect_peers(node, peers, 0);
        if (st != DSI_OK) {
            DSI_ERROR("cannot reach the peers of plan epoch %llu: %s",
                      (unsigned long long)peers->epoch, dsi_status_message(st));
            node_stop(node, st);
            return;
        }
        dst_ucx_set_epochs(node->ucx, node->epoch, peers->epoch);
        node->epoch = peers->epoch;
        push_plan_task(node, DSN_TASK_PREPARE, peers->epoch);
        return;
    }
    /* A restart: the compute thread loads the slice (the loop keeps heartbeating meanwhile) and
     * answers READY through the outbox. */
    dst_ucx_set_epoch(node->ucx, peers->epoch);
    node->epoch = peers->epoch;
    /* A restart that keeps the KV caches (PLAN.live 2) keeps the endpoints to nodes that leave:
     * a draining one still sends its sequences' rows here. */
    dsi_status_t st = connect_peers(node, peers, node->plan->plan.live != 2);
    if (st == DSI_OK && !node->thread_started)
        st = worker_start(node);
    if (st != DSI_OK) {
        DSI_ERROR("cannot serve the plan of epoch %llu: %s", (unsigned long long)peers->epoch,
                  dsi_status_message(st));
        node_stop(node, st);
        return;
    }
    push_plan_task(node, DSN_TASK_RELOAD, peers->epoch);
}

/* SWITCH: route by plan `epoch` (ours, whether we switch to it or joined with it), or retire
 * when it does not include this node (a draining node: no PLAN came for it). */
static void on_switch(dsn_node_t *node, uint64_t epoch)
{
    if (!node->ready || node->plan == NULL || epoch < node->plan->plan.plan.epoch) {
        DSI_WARN("SWITCH to epoch %llu does not apply to this node: ignored",
                 (unsigned long long)epoch);
        return;
    }
    if (epoch > node->plan->plan.plan.epoch)               /* not in that plan: retiring */
        dst_ucx_set_epochs(node->ucx, node->epoch, epoch); /* replies to our last work carry it */
    push_plan_task(node, DSN_TASK_SWITCH, epoch);
}

/* RELEASE: every node switched: drop the previous plan's experts, peers and epoch. */
static void on_release(dsn_node_t *node, uint64_t epoch)
{
    if (!node->switching || epoch != node->plan->plan.plan.epoch) {
        if (node->plan == NULL || epoch != node->plan->plan.plan.epoch)
            DSI_WARN("RELEASE of epoch %llu does not apply to this node: ignored",
                     (unsigned long long)epoch);
        return; /* a node that joined with this plan holds nothing else */
    }
    const dst_plan_t *p = &node->plan->plan.plan;
    push_plan_task(node, DSN_TASK_RELEASE, epoch);
    uint8_t wanted[DSN_MAX_PEERS] = {0};
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        if (p->nodes[i].node_id < DSN_MAX_PEERS)
            wanted[p->nodes[i].node_id] = 1;
    }
    for (uint32_t id = 0; id < DSN_MAX_PEERS; id++) {
        if (node->connected[id] && !wanted[id]) {
            dst_ucx_disconnect(node->ucx, id);
            node->connected[id] = 0;
        }
    }
    dst_ucx_set_epoch(node->ucx, epoch);
    node->switching = 0;
}

static void on_ctrl_msg(dst_ctrl_conn_t *conn, dst_msg_t *msg, void *arg)
{
    (void)conn;
    dsn_node_t *node = arg;
    switch (msg->type) {
    case DST_MSG_HELLO:
        send_register(node, &msg->hello);
        break;
    case DST_MSG_WELCOME:
        uv_timer_stop(&node->welcome_timer);
        node->node_id = msg->welcome.node_id;
        node->welcomed = 1;
        node->heartbeat_ms = msg->welcome.heartbeat_ms;
        dst_ucx_set_self_id(node->ucx, node->node_id);
        uv_timer_start(&node->heartbeat, on_heartbeat, node->heartbeat_ms, node->heartbeat_ms);
        if (node->opts.max_context > 0)
            DSI_INFO("registered as node %u (sequences of up to %lld tokens)", node->node_id,
                     (long long)node->opts.max_context);
        else
            DSI_INFO("registered as node %u (sequences up to the model's positions)",
                     node->node_id);
        if (node->orphan) {
            /* Back with a coordinator: tell it which plan this node still serves. */
            node->orphan = 0;
            uv_timer_stop(&node->orphan_timer);
            if (node->ready_epoch != 0 && node->plan != NULL &&
                node->plan->plan.plan.epoch == node->ready_epoch)
                send_msg(node, node->plan);
        }
        break;
    case DST_MSG_PLAN:
        if (node->plan != NULL && msg->plan.plan.epoch <= node->plan->plan.plan.epoch) {
            DSI_WARN("PLAN of epoch %llu is not newer than ours: ignored",
                     (unsigned long long)msg->plan.plan.epoch);
            break;
        }
        /* Make-before-break when the coordinator asks and this node keeps its stage: it keeps
         * serving the current plan while the new one loads. Otherwise a restart: what is queued
         * for the compute thread is stale from now on, and nothing new is taken until READY. */
        node->switching = node->ready && msg->plan.live == 1 && !node->switching &&
                          keeps_stage(node, &node->plan->plan.plan, &msg->plan.plan);
        if (!node->switching) {
            node->ready = 0;
            node->task_gen++;
        }
        dsn_plan_msg_free(&node->plan);
        node->plan = plan_take(msg);
        if (node->plan == NULL)
            node_stop(node, DSI_ERR_NOMEM);
        break;
    case DST_MSG_PEERS:
        on_peers(node, &msg->peers);
        break;
    case DST_MSG_SUBMIT:
        push_msg_task(node, DSN_TASK_SUBMIT, msg);
        break;
    case DST_MSG_TOKENS:
        push_msg_task(node, DSN_TASK_FEEDBACK, msg);
        break;
    case DST_MSG_CANCEL:
        push_msg_task(node, DSN_TASK_CANCEL, msg);
        break;
    case DST_MSG_BIAS:
        push_msg_task(node, DSN_TASK_BIAS, msg);
        break;
    case DST_MSG_KV_MOVE:
        push_msg_task(node, DSN_TASK_KV_MOVE, msg);
        break;
    case DST_MSG_SWITCH:
        on_switch(node, msg->sw.epoch);
        break;
    case DST_MSG_RELEASE:
        on_release(node, msg->sw.epoch);
        break;
    case DST_MSG_HEARTBEAT:
        break;
    case DST_MSG_SHUTDOWN:
        DSI_INFO("shutdown requested: %s", msg->shutdown.reason);
        node_stop(node, DSI_OK);
        break;
    case DST_MSG_ERROR:
        DSI_ERROR("coordinator refused %s: %s", dst_msg_type_name(msg->error.ref_type),
                  msg->error.text);
        if (!node->welcomed)
            node_stop(node, (dsi_status_t)msg->error.code);
        break;
    default:
        DSI_WARN("unexpected %s from the coordinator: ignored", dst_msg_type_name(msg->type));
        break;
    }
}

static void on_orphan_deadline(uv_timer_t *t)
{
    dsn_node_t *node = t->data;
    DSI_ERROR("the coordinator did not come back within %u ms: stopping",
              node->opts.coordinator_wait_ms);
    node_stop(node, DSI_ERR_CONNECTION);
}

static void on_ctrl_close(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg);

/*
 * Whatever accepted the connection never answered as a coordinator (a wrong port: another
 * service, or one that a node's own listener took): close it, which a node that never served
 * a plan reports as an error and stops on, and a node waiting for its lost coordinator retries.
 */
static void on_welcome_deadline(uv_timer_t *t)
{
    dsn_node_t *node = t->data;
    if (node->ctrl == NULL || node->welcomed)
        return;
    DSI_ERROR("%s accepted the connection but sent no coordinator's HELLO and WELCOME within %d s: "
              "is it the --control address of dsinfer-coordinator?",
              node->coordinator, DSN_WELCOME_DEADLINE_MS / 1000);
    dst_ctrl_conn_close(node->ctrl);
}

static void on_ctrl_open(dst_ctrl_conn_t *conn, void *arg)
{
    (void)conn;
    dsn_node_t *node = arg;
    uv_timer_start(&node->welcome_timer, on_welcome_deadline, DSN_WELCOME_DEADLINE_MS, 0);
}

/*
 * The coordinator is gone but this node serves a plan: keep the slice, drop the work (its
 * requests went with the coordinator) and the data-plane endpoints (ids change with the next
 * registration), and connect again until the deadline. A restarted coordinator adopts the plan
 * the nodes still serve, and the slice loads nothing (dsn_replan.c).
 */
static int wait_for_coordinator(dsn_node_t *node)
{
    if (node->opts.coordinator_wait_ms == 0 || node->ready_epoch == 0 || node->draining ||
        node->opts.bootstrap != NULL)
        return 0;
    if (!node->orphan) {
        node->orphan = 1;
        node->held_id = node->node_id;
        uv_timer_start(&node->orphan_timer, on_orphan_deadline, node->opts.coordinator_wait_ms, 0);
    }
    node->welcomed = 0;
    node->ready = 0;
    node->switching = 0;
    node->task_gen++; /* what is queued belongs to the lost coordinator */
    uv_timer_stop(&node->heartbeat);
    for (uint32_t id = 0; id < DSN_MAX_PEERS; id++) {
        if (node->connected[id]) {
            dst_ucx_disconnect(node->ucx, id);
            node->connected[id] = 0;
        }
    }
    dsn_task_t *t = dsn_queue_task_get(&node->queue);
    if (t != NULL) {
        t->type = DSN_TASK_ORPHAN;
        push_task(node, t, 1);
        node->session++;
    }
    dst_ctrl_opts_t copts;
    dst_ctrl_opts_default(&copts);
    dst_ctrl_cb_t cb = {on_ctrl_open, on_ctrl_msg, on_ctrl_close, node};
    if (dst_ctrl_connect(&node->loop, node->coordinator, &copts, &cb, &node->ctrl) != DSI_OK)
        return 0;
    DSI_WARN("lost the coordinator: keeping the slice of plan epoch %llu and connecting to %s "
             "again for up to %u ms",
             (unsigned long long)node->ready_epoch, node->coordinator,
             node->opts.coordinator_wait_ms);
    return 1;
}

static void on_ctrl_close(dst_ctrl_conn_t *conn, dsi_status_t why, void *arg)
{
    (void)conn;
    dsn_node_t *node = arg;
    node->ctrl = NULL;
    if (node->stopping)
        return;
    DSI_ERROR("lost the coordinator: %s", dsi_status_message(why));
    if (!wait_for_coordinator(node))
        node_stop(node, why == DSI_OK ? DSI_ERR_CONNECTION : why);
}

/* ---- data plane ---- */

static void on_wire(dst_ucx_t *ucx, uint32_t peer, const dst_wire_hdr_t *hdr, const void *payload,
                    size_t bytes, void *user)
{
    (void)ucx;
    dsn_node_t *node = user;
    if (!node->ready)
        return;
    dsn_task_t *t = dsn_queue_task_get(&node->queue);
    void *copy = dsn_queue_buf_get(&node->queue, bytes);
    if (t == NULL || copy == NULL) {
        DSI_ERROR("out of memory receiving %s from node %u: dropped", dst_wire_type_name(hdr->type),
                  peer);
        dsn_queue_buf_put(copy);
        dsn_queue_task_put(&node->queue, t);
        return;
    }
    memcpy(copy, payload, bytes);
    t->type = DSN_TASK_WIRE;
    t->peer = peer;
    t->hdr = *hdr;
    t->payload = copy;
    t->bytes = bytes;
    push_task(node, t, 0);
}

static void on_peer_error(dst_ucx_t *ucx, uint32_t peer, dsi_status_t status, void *user)
{
    (void)ucx;
    dsn_node_t *node = user;
    DSI_ERROR("data plane to node %u failed: %s", peer, dsi_status_message(status));
    if (peer < DSN_MAX_PEERS)
        node->connected[peer] = 0; /* the coordinator's next plan decides; reconnect then */
}

/* A KV message (a sequence's rows moving, dsn_kvmove.c) that could not be sent: the move ends
 * now (KV_DONE ok = 0 for the receiving sequence) instead of at the coordinator's deadline. */
typedef struct {
    dsn_node_t *node;
    void *payload;
    uint64_t seq_id;
    uint32_t peer;
} kv_send_t;

static void kv_send_failed(dsn_node_t *node, uint64_t seq_id, uint32_t peer, dsi_status_t st)
{
    dst_msg_t m = {.type = DST_MSG_KV_DONE};
    m.kv_done.node_id = node->node_id;
    m.kv_done.seq_id = seq_id;
    m.kv_done.ok = 0;
    snprintf(m.kv_done.text, sizeof(m.kv_done.text),
             "node %u could not send its rows to node %u: %s", node->node_id, peer,
             dsi_status_message(st));
    send_msg(node, &m);
}

static void on_sent_kv(dst_ucx_t *ucx, dsi_status_t status, void *arg)
{
    (void)ucx;
    kv_send_t *k = arg;
    if (status != DSI_OK) {
        DSI_ERROR("a KV message to node %u failed: %s", k->peer, dsi_status_message(status));
        kv_send_failed(k->node, k->seq_id, k->peer, status);
    }
    dsn_queue_buf_put(k->payload);
    free(k);
}

static void on_sent(dst_ucx_t *ucx, dsi_status_t status, void *arg)
{
    (void)ucx;
    if (status != DSI_OK)
        DSI_ERROR("a data-plane send failed: %s", dsi_status_message(status));
    dsn_queue_buf_put(arg);
}

static void on_wake(uv_async_t *async)
{
    dsn_node_t *node = async->data;
    dsi_list_t outs;
    dsi_list_init(&outs);
    dsn_queue_take_outbox(&node->queue, &outs);
    dsi_list_t *e;
    while ((e = dsi_list_pop_front(&outs)) != NULL) {
        dsn_out_t *o = dsi_container_of(e, dsn_out_t, link);
        if (o->type != DSN_OUT_FAILED &&
            (o->session != node->session || (!node->welcomed && o->type != DSN_OUT_WIRE))) {
            /* the lost coordinator's work, or a message for a coordinator not registered with
             * yet (it would refuse anything before REGISTER and close the connection) */
            DSI_DEBUG("dropped a stale outbox record (%d) after losing the coordinator", o->type);
        } else if (o->type == DSN_OUT_WIRE && o->hdr.epoch < node->epoch && !node->switching) {
            /* work of an epoch a restart left: nobody accepts it now (the payload goes back with
             * the record) */
        } else if (o->type == DSN_OUT_WIRE && o->hdr.type == DST_WIRE_KV) {
            kv_send_t *k = malloc(sizeof(*k));
            uint64_t seq_id = dst_wire_kv(&o->hdr, o->payload)->seq_id;
            dsi_status_t st = k == NULL ? DSI_ERR_NOMEM : DSI_OK;
            if (k != NULL) {
                *k = (kv_send_t){node, o->payload, seq_id, o->peer};
                st = dst_ucx_send(node->ucx, o->peer, &o->hdr, o->payload, o->bytes, on_sent_kv, k);
            }
            if (st != DSI_OK) {
                free(k);
                DSI_ERROR("cannot send KV to node %u: %s", o->peer, dsi_status_message(st));
                kv_send_failed(node, seq_id, o->peer, st);
            } else {
                o->payload = NULL; /* on_sent_kv returns it to the pool */
            }
        } else if (o->type == DSN_OUT_WIRE) {
            dsi_status_t st = dst_ucx_send(node->ucx, o->peer, &o->hdr, o->payload, o->bytes,
                                           on_sent, o->payload);
            if (st != DSI_OK)
                DSI_ERROR("cannot send %s to node %u: %s", dst_wire_type_name(o->hdr.type), o->peer,
                          dsi_status_message(st));
            else
                o->payload = NULL; /* on_sent returns it to the pool */
        } else if (o->type == DSN_OUT_READY && o->epoch != node->epoch) {
            /* a restart or switch superseded by a newer plan: not worth announcing */
        } else if (o->type == DSN_OUT_READY || o->type == DSN_OUT_SWITCHED) {
            node->ready |= o->type == DSN_OUT_READY; /* a restart serves from now on */
            if (o->type == DSN_OUT_READY)
                node->ready_epoch = o->epoch;
            dst_msg_t m = {.type = o->type == DSN_OUT_READY ? DST_MSG_READY : DST_MSG_SWITCHED};
            if (o->type == DSN_OUT_READY)
                m.ready = (dst_msg_ready_t){node->node_id, o->epoch};
            else
                m.sw = (dst_msg_switch_t){node->node_id, o->epoch};
            send_msg(node, &m);
        } else if (o->type == DSN_OUT_FAILED) {
            node_stop(node, DSI_ERR_INTERNAL);
        } else if (o->type == DSN_OUT_KV_DONE) {
            dst_msg_t m = {.type = DST_MSG_KV_DONE};
            m.kv_done.node_id = node->node_id;
            m.kv_done.seq_id = o->seq_id;
            m.kv_done.ok = o->finish;
            m.kv_done.bytes = o->kv_bytes;
            snprintf(m.kv_done.text, sizeof(m.kv_done.text), "%s", o->text);
            send_msg(node, &m);
        } else if (o->type == DSN_OUT_LOAD) {
            dst_msg_t m = {.type = DST_MSG_LOAD_STATS};
            m.load_stats = (dst_msg_load_stats_t){
                node->node_id,   o->epoch, node->load_window_ms, o->load_first, o->load_layers,
                o->load_experts, o->counts};
            send_msg(node, &m);
        } else {
            dst_msg_t m = {.type = DST_MSG_TOKENS};
            m.tokens.seq_id = o->seq_id;
            m.tokens.n_tokens = o->n_tokens;
            m.tokens.tokens = &o->token;
            m.tokens.finish = o->finish;
            if (o->has_logprob && o->n_tokens > 0) {
                m.tokens.logprob = &o->logprob;
                m.tokens.n_top = o->n_top;
                m.tokens.top_ids = o->top_ids;
                m.tokens.top_logprobs = o->top_logprobs;
            }
            if (o->has_spec) {
                m.tokens.has_spec = 1;
                m.tokens.rollback = o->rollback;
                m.tokens.n_drafts = o->n_drafts;
                memcpy(m.tokens.drafts, o->drafts, o->n_drafts * sizeof(int32_t));
            }
            send_msg(node, &m);
        }
        dsn_queue_out_put(&node->queue, o);
    }
}

/* The load window ended: the compute thread reports what it counted (between micro-batches). */
static void on_load_window(uv_timer_t *t)
{
    dsn_node_t *node = t->data;
    if (!node->ready)
        return;
    dsn_task_t *task = dsn_queue_task_get(&node->queue);
    if (task == NULL)
        return; /* the counts stay and go with the next window */
    task->type = DSN_TASK_LOAD;
    push_task(node, task, 0);
}

/* DSINFER_LOAD_WINDOW_MS: the counting window, 0 = no load reports. */
static uint32_t load_window_ms(void)
{
    const char *env = dsi_env("DSINFER_LOAD_WINDOW_MS");
    if (env == NULL || env[0] == 0)
        return DSN_LOAD_WINDOW_MS;
    char *end;
    unsigned long v = strtoul(env, &end, 10);
    if (*end != 0 || v > 3600000) {
        DSI_WARN("DSINFER_LOAD_WINDOW_MS=%s is not 0..3600000 ms: using %d", env,
                 DSN_LOAD_WINDOW_MS);
        return DSN_LOAD_WINDOW_MS;
    }
    return (uint32_t)v;
}

static void on_drain_deadline(uv_timer_t *t)
{
    dsn_node_t *node = t->data;
    DSI_WARN("the coordinator did not release this node within the drain deadline: stopping");
    node_stop(node, DSI_OK);
}

/*
 * The first SIGTERM / SIGINT drains: the node asks the coordinator to move its experts and
 * sequences elsewhere and keeps serving until SHUTDOWN (or the deadline). A second one, or one
 * before the node serves, stops at once.
 */
static void on_signal(uv_signal_t *sig, int signum)
{
    dsn_node_t *node = sig->data;
    if (node->draining || !node->ready || node->ctrl == NULL) {
        DSI_INFO("signal %d: stopping", signum);
        node_stop(node, DSI_OK);
        return;
    }
    dst_msg_t m = {.type = DST_MSG_DRAIN};
    m.drain.node_id = node->node_id;
    m.drain.deadline_ms = DSN_DRAIN_DEADLINE_MS;
    if (dst_ctrl_send(node->ctrl, &m) != DSI_OK) {
        /* The coordinator closed first (a signal to every process at once): nothing to drain. */
        DSI_INFO("signal %d: stopping (the coordinator's connection is closed)", signum);
        node_stop(node, DSI_OK);
        return;
    }
    node->draining = 1;
    DSI_INFO("signal %d: draining (asking the coordinator to re-plan without this node)", signum);
    uv_timer_start(&node->drain_timer, on_drain_deadline, DSN_DRAIN_DEADLINE_MS, 0);
}

static void on_teardown_tick(uv_timer_t *t)
{
    (void)t; /* only wakes the loop while the control connection closes */
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

dsi_status_t dsn_node_run(const dsn_node_opts_t *opts)
{
    dsn_node_t *node = calloc(1, sizeof(*node));
    if (node == NULL)
        return DSI_ERR_NOMEM;
    node->opts = *opts;
    if (opts->name != NULL)
        snprintf(node->name, sizeof(node->name), "%s", opts->name);
    else {
        char host[48] = "node";
        gethostname(host, sizeof(host) - 1);
        snprintf(node->name, sizeof(node->name), "%s-%d", host, (int)getpid());
    }
    dsi_log_set_tag(node->name);
    uv_loop_init(&node->loop);
    /* First, so that every thread started later (UCX, compute, pools) inherits the binding. */
    dsi_status_t st = dsn_queue_init(&node->queue, &node->wake);
    if (st == DSI_OK)
        st = dsn_numa_bind(opts->numa_node);
    if (st == DSI_OK)
        st = dst_secret_load(opts->secret_file, &node->secret);
    if (st == DSI_OK)
        st = dsn_checkpoint_open(opts->model_dir, &node->ckpt);
    if (st != DSI_OK)
        goto out;

    dst_ucx_config_t ucfg;
    dst_ucx_config_default(&ucfg);
    ucfg.max_peers = DSN_MAX_PEERS;
    ucfg.on_message = on_wire;
    ucfg.on_peer_error = on_peer_error;
    ucfg.user = node;
    /* The data plane listens where the control plane is: the interface that reaches the
     * coordinator (a loopback cluster stays on lo). Unknown (MPI bootstrap, a routed address):
     * every interface, as UCX does by default; UCX_NET_DEVICES overrides both. */
    char netdev[IF_NAMESIZE + 1];
    if (opts->coordinator != NULL && opts->bootstrap == NULL &&
        dst_ctrl_addr_netdev(opts->coordinator, netdev, sizeof(netdev)) == DSI_OK) {
        ucfg.net_devices = netdev;
        DSI_DEBUG("data plane on network device %s (where the coordinator is)", netdev);
    }
    st = dst_ucx_create(&node->loop, &ucfg, &node->ucx);
    if (st != DSI_OK)
        goto out;

    uv_async_init(&node->loop, &node->wake, on_wake);
    node->wake.data = node;
    uv_timer_init(&node->loop, &node->heartbeat);
    node->heartbeat.data = node;
    uv_timer_init(&node->loop, &node->drain_timer);
    node->drain_timer.data = node;
    uv_timer_init(&node->loop, &node->load_timer);
    node->load_timer.data = node;
    uv_timer_init(&node->loop, &node->orphan_timer);
    node->orphan_timer.data = node;
    uv_timer_init(&node->loop, &node->welcome_timer);
    node->welcome_timer.data = node;
    node->load_window_ms = load_window_ms();
    if (node->load_window_ms > 0)
        uv_timer_start(&node->load_timer, on_load_window, node->load_window_ms,
                       node->load_window_ms);
    uv_signal_init(&node->loop, &node->sigterm);
    uv_signal_init(&node->loop, &node->sigint);
    node->sigterm.data = node->sigint.data = node;
    uv_signal_start(&node->sigterm, on_signal, SIGTERM);
    uv_signal_start(&node->sigint, on_signal, SIGINT);

    char coordinator[DST_MSG_ADDR_MAX];
    snprintf(coordinator, sizeof(coordinator), "%s", opts->coordinator ? opts->coordinator : "");
    if (opts->bootstrap != NULL) {
        const void *addr;
        size_t len;
        st = dst_ucx_address(node->ucx, &addr, &len);
        if (st == DSI_OK)
            st = opts->bootstrap(opts->bootstrap_arg, addr, len, coordinator, sizeof(coordinator));
        if (st != DSI_OK)
            goto out_handles;
    }
    dst_ctrl_opts_t copts;
    dst_ctrl_opts_default(&copts);
    dst_ctrl_cb_t cb = {on_ctrl_open, on_ctrl_msg, on_ctrl_close, node};
    snprintf(node->coordinator, sizeof(node->coordinator), "%s", coordinator);
    st = dst_ctrl_connect(&node->loop, coordinator, &copts, &cb, &node->ctrl);
    if (st != DSI_OK)
        goto out_handles;
    DSI_INFO("connecting to the coordinator at %s", coordinator);
    uv_run(&node->loop, UV_RUN_DEFAULT);
    st = node->exit_status;

out_handles:
    worker_stop(node);
    on_wake(&node->wake); /* free what the compute thread left in the outbox */
    /* Stopping already: a SIGTERM from now on (a launcher signalling every rank at once) must
     * not kill the process halfway through its teardown. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    uv_timer_stop(&node->heartbeat);
    uv_timer_stop(&node->orphan_timer);
    uv_timer_stop(&node->welcome_timer);
    if (node->ctrl != NULL)
        dst_ctrl_conn_close(node->ctrl);
    /* The control connection may still be flushing its last frames: let it close its own
     * handles (closing them under it would close them twice). Its grace timer ends the flush; the
     * drain timer, re-armed as a tick, bounds the wait should no close ever report. */
    uv_timer_start(&node->drain_timer, on_teardown_tick, 50, 50);
    double teardown_start = dsi_now_s();
    while (node->ctrl != NULL && dsi_now_s() - teardown_start < 10.0)
        uv_run(&node->loop, UV_RUN_ONCE);
    uv_timer_stop(&node->drain_timer);
    dst_ucx_destroy(node->ucx);
    node->ucx = NULL;
    uv_walk(&node->loop, close_walk, NULL);
    uv_run(&node->loop, UV_RUN_DEFAULT);
out:
    dst_ucx_destroy(node->ucx);
    uv_loop_close(&node->loop);
    worker_stop(node); /* when the loop never ran: nothing started, the state is freed */
    dsn_queue_cleanup(&node->queue);
    dsn_checkpoint_close(node->ckpt);
    dsn_plan_msg_free(&node->plan);
    free(node);
    return st;
}
