/*
 * dst_ucx.c - lifetime of the data plane (context, worker, endpoints) and its progress loop on
 * libuv. Sending is in dst_ucx_send.c, receiving and delivery in dst_ucx_recv.c.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_clock.h"
#include "dsi_log.h"
#include "dst_ucx_impl.h"

#define CLOSE_DEADLINE_NS 2000000000ll
/* The longest drive() keeps the loop thread before the loop's other handles run again. */
#define DRIVE_SLICE_NS 2000000ll

void dst_ucx_config_default(dst_ucx_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_peers = 64;
    cfg->max_message_bytes = (size_t)256 << 20;
    cfg->pool_bytes = (size_t)1 << 30;
    cfg->spin_us = 100;
}

dsi_status_t dst_ucx_status_from_ucs(ucs_status_t status)
{
    switch (status) {
    case UCS_OK:
        return DSI_OK;
    case UCS_ERR_CANCELED:
        return DSI_ERR_CANCELLED;
    case UCS_ERR_NO_MEMORY:
        return DSI_ERR_NOMEM;
    case UCS_ERR_REJECTED:
        return DSI_ERR_PROTOCOL; /* the receiver refused our message (see dst_ucx_recv.c) */
    case UCS_ERR_EXCEEDS_LIMIT:
        return DSI_ERR_CAPACITY;
    default:
        return DSI_ERR_PEER;
    }
}

/*
 * The progress loop: progress, deliver what completed, and arm the event fd once nothing is left.
 * It never keeps the loop thread for long: the daemon's heartbeats and control messages run on the
 * same loop, and a node whose loop is held misses its heartbeats and is declared lost. So after
 * DRIVE_SLICE_NS of continuous activity, and whenever ucp_worker_arm() says events are still
 * pending (UCS_ERR_BUSY: a peer stopped half-way through writing into our shared-memory queue
 * keeps it so, with nothing to progress, until it runs again), it goes on from the loop's idle
 * handle instead of looping here; on_idle yields the core first when nothing progressed (on 2
 * shared cores a tight retry starves the peer that has to produce the events).
 */
static void on_idle(uv_idle_t *handle);

static void drive(dst_ucx_t *ucx)
{
    ucx->in_drive = 1;
    int64_t start = dsi_now_ns();
    for (;;) {
        unsigned progressed = ucp_worker_progress(ucx->worker);
        int delivered = 0;
        if (!dsi_list_is_empty(&ucx->done_sends) || !dsi_list_is_empty(&ucx->ready_msgs) ||
            ucx->errors_pending)
            delivered = 1, dst_ucx_deliver(ucx);
        int64_t now = dsi_now_ns();
        if (progressed != 0 || delivered) {
            ucx->last_activity_ns = now;
            if (now - start < DRIVE_SLICE_NS)
                continue;
            uv_idle_start(ucx->idle, on_idle); /* a long burst: let the loop's timers run */
            break;
        }
        if (now - ucx->last_activity_ns < (int64_t)ucx->cfg.spin_us * 1000 ||
            ucx->sends_pending != 0 || ucx->rndv_pending != 0) {
            /*
             * Poll from the loop (other handles still run) instead of sleeping: shortly after
             * activity, and while our transfers are in flight, where a large tcp transfer would
             * otherwise pay a wake-up per socket buffer (measured: 2-3x slower round trips).
             */
            uv_idle_start(ucx->idle, on_idle);
            break;
        }
        ucs_status_t st = ucp_worker_arm(ucx->worker);
        if (st == UCS_OK)
            break;
        if (st != UCS_ERR_BUSY) {
            DSI_ERROR("ucp_worker_arm failed: %s", ucs_status_string(st));
            break;
        }
        uv_idle_start(ucx->idle, on_idle); /* events pending: progress again from the loop */
        break;
    }
    ucx->in_drive = 0;
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    (void)events;
    dst_ucx_t *ucx = handle->data;
    if (status < 0)
        DSI_WARN("uv_poll on the UCX event fd: %s", uv_strerror(status));
    drive(ucx);
}

static void on_idle(uv_idle_t *handle)
{
    dst_ucx_t *ucx = handle->data;
    uv_idle_stop(handle);
    /* While spinning, leave the core to the peer we are waiting for (2 shared cores). */
    if (ucp_worker_progress(ucx->worker) == 0)
        sched_yield();
    else
        ucx->last_activity_ns = dsi_now_ns();
    drive(ucx);
}

void dst_ucx_kick(dst_ucx_t *ucx)
{
    if (!ucx->in_drive && !ucx->destroying)
        uv_idle_start(ucx->idle, on_idle);
}

/* Whether a UCX transport list can select shared memory (NULL: UCX's default, which does). */
static int tls_has_shm(const char *tls)
{
    if (tls == NULL)
        return 1;
    static const char *const shm[] = {"all", "shm", "mm", "posix", "sysv", "xpmem"};
    for (size_t i = 0; i < sizeof(shm) / sizeof(shm[0]); i++) {
        if (strstr(tls, shm[i]) != NULL)
            return 1;
    }
    return 0;
}

/* UCX reads UCX_* from the environment; our defaults apply only where it says nothing. */
static dsi_status_t config_read(const dst_ucx_config_t *cfg, ucp_config_t **out)
{
    ucp_config_t *config;
    ucs_status_t st = ucp_config_read(NULL, NULL, &config);
    if (st != UCS_OK) {
        DSI_ERROR("ucp_config_read: %s", ucs_status_string(st));
        return DSI_ERR_INTERNAL;
    }
    if (cfg->tls != NULL && (st = ucp_config_modify(config, "TLS", cfg->tls)) != UCS_OK) {
        DSI_ERROR("UCX transports '%s': %s", cfg->tls, ucs_status_string(st));
        ucp_config_release(config);
        return DSI_ERR_INVALID_ARG;
    }
    if (cfg->net_devices != NULL && getenv("UCX_NET_DEVICES") == NULL &&
        (st = ucp_config_modify(config, "NET_DEVICES", cfg->net_devices)) != UCS_OK) {
        DSI_ERROR("UCX network devices '%s': %s", cfg->net_devices, ucs_status_string(st));
        ucp_config_release(config);
        return DSI_ERR_INVALID_ARG;
    }
    /* Without this, peer error handling silently drops shared memory for tcp (15x slower). */
    /* UCX's own variables (not dsinfer's settings, so read here rather than via dsi_env). */
    const char *tls = cfg->tls != NULL ? cfg->tls : getenv("UCX_TLS");
    if (getenv("UCX_MM_ERROR_HANDLING") == NULL && tls_has_shm(tls) &&
        (st = ucp_config_modify(config, "MM_ERROR_HANDLING", "y")) != UCS_OK)
        DSI_WARN("cannot set UCX MM_ERROR_HANDLING=y (%s): shared memory may fall back to tcp",
                 ucs_status_string(st));
    *out = config;
    return DSI_OK;
}

static dsi_status_t context_create(dst_ucx_t *ucx)
{
    ucp_config_t *config;
    dsi_status_t rc = config_read(&ucx->cfg, &config);
    if (rc != DSI_OK)
        return rc;
    ucp_params_t params = {
        .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED,
        .features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP,
        .mt_workers_shared = 0,
    };
    ucs_status_t st = ucp_init(&params, config, &ucx->context);
    ucp_config_release(config);
    if (st != UCS_OK) {
        DSI_ERROR("ucp_init: %s", ucs_status_string(st));
        return DSI_ERR_INTERNAL;
    }
    ucp_worker_params_t wparams = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
    };
    st = ucp_worker_create(ucx->context, &wparams, &ucx->worker);
    if (st != UCS_OK) {
        DSI_ERROR("ucp_worker_create: %s", ucs_status_string(st));
        return DSI_ERR_INTERNAL;
    }
    st = ucp_worker_get_address(ucx->worker, &ucx->address, &ucx->address_len);
    if (st != UCS_OK) {
        DSI_ERROR("ucp_worker_get_address: %s", ucs_status_string(st));
        return DSI_ERR_INTERNAL;
    }
    ucp_am_handler_param_t am = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS,
        .id = DST_UCX_AM_ID,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = dst_ucx_am_recv_cb,
        .arg = ucx,
    };
    st = ucp_worker_set_am_recv_handler(ucx->worker, &am);
    if (st != UCS_OK) {
        DSI_ERROR("ucp_worker_set_am_recv_handler: %s", ucs_status_string(st));
        return DSI_ERR_INTERNAL;
    }
    st = ucp_worker_get_efd(ucx->worker, &ucx->efd);
    if (st != UCS_OK) {
        DSI_ERROR("ucp_worker_get_efd: %s", ucs_status_string(st));
        return DSI_ERR_INTERNAL;
    }
    return DSI_OK;
}

static dsi_status_t handles_start(dst_ucx_t *ucx)
{
    ucx->poll = calloc(1, sizeof(*ucx->poll));
    ucx->idle = calloc(1, sizeof(*ucx->idle));
    if (ucx->poll == NULL || ucx->idle == NULL) {
        DSI_ERROR("out of memory for libuv handles");
        return DSI_ERR_NOMEM;
    }
    int rc = uv_poll_init(ucx->loop, ucx->poll, ucx->efd);
    if (rc != 0) {
        DSI_ERROR("uv_poll_init on the UCX event fd %d: %s", ucx->efd, uv_strerror(rc));
        free(ucx->poll);
        ucx->poll = NULL;
        return DSI_ERR_INTERNAL;
    }
    ucx->poll->data = ucx;
    uv_idle_init(ucx->loop, ucx->idle);
    ucx->idle->data = ucx;
    rc = uv_poll_start(ucx->poll, UV_READABLE, on_poll);
    if (rc != 0) {
        DSI_ERROR("uv_poll_start: %s", uv_strerror(rc));
        return DSI_ERR_INTERNAL;
    }
    return DSI_OK;
}

static void handle_free_cb(uv_handle_t *handle)
{
    free(handle);
}

static void handles_close(dst_ucx_t *ucx)
{
    if (ucx->poll != NULL) {
        uv_poll_stop(ucx->poll);
        uv_close((uv_handle_t *)ucx->poll, handle_free_cb);
    }
    if (ucx->idle != NULL) {
        if (ucx->idle->loop != NULL) /* set by uv_idle_init */
            uv_close((uv_handle_t *)ucx->idle, handle_free_cb);
        else
            free(ucx->idle);
    }
    ucx->poll = NULL;
    ucx->idle = NULL;
}

dsi_status_t dst_ucx_create(uv_loop_t *loop, const dst_ucx_config_t *cfg, dst_ucx_t **out)
{
    if (loop == NULL || cfg == NULL || out == NULL || cfg->on_message == NULL ||
        cfg->max_peers == 0 || cfg->max_message_bytes == 0) {
        DSI_ERROR("dst_ucx_create: loop, on_message, max_peers and max_message_bytes are required");
        return DSI_ERR_INVALID_ARG;
    }
    if (cfg->tls != NULL && strlen(cfg->tls) >= sizeof(((dst_ucx_t *)0)->tls)) {
        DSI_ERROR("dst_ucx_create: transport list '%s' too long", cfg->tls);
        return DSI_ERR_INVALID_ARG;
    }
    dst_ucx_t *ucx = calloc(1, sizeof(*ucx));
    if (ucx == NULL)
        return DSI_ERR_NOMEM;
    dsi_list_init(&ucx->free_slots);
    dsi_list_init(&ucx->free_msgs);
    dsi_list_init(&ucx->done_sends);
    dsi_list_init(&ucx->ready_msgs);
    ucx->loop = loop;
    ucx->cfg = *cfg;
    ucx->epoch_lo = cfg->epoch;
    if (cfg->tls != NULL) {
        snprintf(ucx->tls, sizeof(ucx->tls), "%s", cfg->tls);
        ucx->cfg.tls = ucx->tls;
    }
    ucx->pool.cap_bytes = cfg->pool_bytes;
    ucx->peers = calloc(cfg->max_peers, sizeof(*ucx->peers));
    dsi_status_t rc = DSI_ERR_NOMEM;
    if (ucx->peers == NULL)
        goto err_free;
    for (uint32_t i = 0; i < cfg->max_peers; i++) {
        ucx->peers[i].ucx = ucx;
        ucx->peers[i].id = i;
    }
    rc = context_create(ucx);
    ucx->cfg.net_devices = NULL; /* the caller's string: read above only */
    if (rc != DSI_OK)
        goto err_free;
    rc = handles_start(ucx);
    if (rc != DSI_OK)
        goto err_free;
    /* Arm the fd once (events that arrived before the poll started would be missed otherwise). */
    drive(ucx);
    *out = ucx;
    return DSI_OK;

err_free:
    dst_ucx_destroy(ucx);
    return rc;
}

dsi_status_t dst_ucx_address(dst_ucx_t *ucx, const void **bytes, size_t *len)
{
    *bytes = ucx->address;
    *len = ucx->address_len;
    return DSI_OK;
}

static void ep_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    peer_t *peer = arg;
    (void)ep;
    if (peer->state != PEER_CONNECTED)
        return; /* closing or closed on purpose: the close request reports it */
    peer->state = PEER_FAILED;
    peer->error_pending = 1;
    peer->ucs_error = status;
    peer->ucx->errors_pending++;
}

dsi_status_t dst_ucx_connect(dst_ucx_t *ucx, uint32_t peer_id, const void *addr, size_t len)
{
    if (peer_id >= ucx->cfg.max_peers) {
        DSI_ERROR("connect: peer %u out of range (max_peers %u)", peer_id, ucx->cfg.max_peers);
        return DSI_ERR_INVALID_ARG;
    }
    peer_t *peer = &ucx->peers[peer_id];
    if (peer->state != PEER_NONE || peer->close_req != NULL) {
        DSI_ERROR("connect: peer %u already has an endpoint", peer_id);
        return DSI_ERR_INVALID_ARG;
    }
    if (addr == NULL || len == 0 || len > 65536) {
        DSI_ERROR("connect: peer %u: worker address of %zu bytes", peer_id, len);
        return DSI_ERR_INVALID_ARG;
    }
    ucp_ep_params_t params = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .address = addr,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = ep_error_cb, .arg = peer},
    };
    ucs_status_t st = ucp_ep_create(ucx->worker, &params, &peer->ep);
    if (st != UCS_OK) {
        DSI_ERROR("connect: peer %u: ucp_ep_create: %s", peer_id, ucs_status_string(st));
        peer->ep = NULL;
        return DSI_ERR_CONNECTION;
    }
    peer->state = PEER_CONNECTED;
    dst_ucx_kick(ucx);
    return DSI_OK;
}

static void close_done_cb(void *request, ucs_status_t status, void *user)
{
    peer_t *peer = user;
    if (status != UCS_OK && status != UCS_ERR_CANCELED)
        DSI_DEBUG("peer %u: endpoint closed with %s", peer->id, ucs_status_string(status));
    ucp_request_free(request);
    peer->close_req = NULL;
    peer->state = PEER_NONE;
}

/* Closes peer's endpoint; force after a failure (a flush would wait for a dead peer). */
void dst_ucx_peer_close(dst_ucx_t *ucx, peer_t *peer, int force)
{
    if (peer->ep == NULL)
        return;
    ucp_request_param_t param = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .cb.send = close_done_cb,
        .user_data = peer,
        .flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0,
    };
    void *req = ucp_ep_close_nbx(peer->ep, &param);
    peer->ep = NULL;
    if (UCS_PTR_IS_PTR(req)) {
        peer->close_req = req;
    } else {
        if (UCS_PTR_IS_ERR(req))
            DSI_DEBUG("peer %u: endpoint close: %s", peer->id,
                      ucs_status_string(UCS_PTR_STATUS(req)));
        peer->state = PEER_NONE;
    }
    dst_ucx_kick(ucx);
}

void dst_ucx_disconnect(dst_ucx_t *ucx, uint32_t peer_id)
{
    if (peer_id >= ucx->cfg.max_peers)
        return;
    peer_t *peer = &ucx->peers[peer_id];
    if (peer->state != PEER_CONNECTED)
        return;
    peer->state = PEER_CLOSING;
    dst_ucx_peer_close(ucx, peer, 0);
}

void dst_ucx_set_epoch(dst_ucx_t *ucx, uint64_t epoch)
{
    dst_ucx_set_epochs(ucx, epoch, epoch);
}

void dst_ucx_set_epochs(dst_ucx_t *ucx, uint64_t lo, uint64_t hi)
{
    ucx->epoch_lo = lo < hi ? lo : hi;
    ucx->cfg.epoch = hi;
}

void dst_ucx_set_self_id(dst_ucx_t *ucx, uint32_t self_id)
{
    ucx->cfg.self_id = self_id;
}

void dst_ucx_stats(const dst_ucx_t *ucx, dst_ucx_stats_t *out)
{
    *out = ucx->stats;
}

static int closes_pending(const dst_ucx_t *ucx)
{
    for (uint32_t i = 0; i < ucx->cfg.max_peers; i++) {
        if (ucx->peers[i].close_req != NULL)
            return 1;
    }
    return 0;
}

/* Closes every endpoint, progressing until done or the deadline: the peers must progress too. */
static void endpoints_close(dst_ucx_t *ucx)
{
    for (uint32_t i = 0; i < ucx->cfg.max_peers; i++) {
        peer_t *peer = &ucx->peers[i];
        if (peer->ep != NULL) {
            int force = peer->state == PEER_FAILED;
            peer->state = PEER_CLOSING;
            dst_ucx_peer_close(ucx, peer, force);
        }
    }
    int64_t deadline = dsi_now_ns() + CLOSE_DEADLINE_NS;
    while ((closes_pending(ucx) || ucx->sends_pending || ucx->rndv_pending) &&
           dsi_now_ns() < deadline) {
        if (ucp_worker_progress(ucx->worker) == 0)
            sched_yield();
    }
    if (closes_pending(ucx) || ucx->sends_pending || ucx->rndv_pending)
        DSI_WARN("data plane shutdown: gave up waiting for endpoints to close (%u sends, %u "
                 "receives pending)",
                 ucx->sends_pending, ucx->rndv_pending);
}

static void lists_free(dst_ucx_t *ucx)
{
    dsi_list_t *l;
    while ((l = dsi_list_pop_front(&ucx->free_slots)) != NULL)
        free(dsi_container_of(l, send_slot_t, link));
    while ((l = dsi_list_pop_front(&ucx->free_msgs)) != NULL)
        free(dsi_container_of(l, rx_msg_t, link));
}

void dst_ucx_destroy(dst_ucx_t *ucx)
{
    if (ucx == NULL)
        return;
    ucx->destroying = 1;
    if (ucx->worker != NULL) {
        endpoints_close(ucx);
        dst_ucx_deliver(ucx); /* send callbacks; messages are released without delivery */
    }
    handles_close(ucx);
    if (ucx->address != NULL)
        ucp_worker_release_address(ucx->worker, ucx->address);
    if (ucx->worker != NULL)
        ucp_worker_destroy(ucx->worker);
    if (ucx->context != NULL)
        ucp_cleanup(ucx->context);
    lists_free(ucx);
    pool_cleanup(&ucx->pool);
    free(ucx->peers);
    free(ucx);
}
