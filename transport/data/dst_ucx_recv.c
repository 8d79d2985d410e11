/*
 * dst_ucx_recv.c - receiving data-plane messages: validate the header inside the UCX callback,
 * land the payload (kept in place, copied, or pulled by rendezvous into a pool buffer), and
 * deliver complete messages to on_message from the progress loop.
 */
#include <stdio.h>
#include <string.h>

#include "dsi_log.h"
#include "dst_ucx_impl.h"

/*
 * The sending peer: the endpoint UCX names as reply_ep (dst_ucx_send always sets
 * UCP_AM_SEND_FLAG_REPLY, and UCX pairs the two sides' endpoints of one connection, so this is
 * our endpoint to the sender). A message that did not come over one of our endpoints is not from
 * a peer, whatever its header claims.
 */
static int64_t peer_of_ep(const dst_ucx_t *ucx, const ucp_am_recv_param_t *param)
{
    if (!(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) || param->reply_ep == NULL)
        return -1;
    for (uint32_t i = 0; i < ucx->cfg.max_peers; i++) {
        if (ucx->peers[i].ep == param->reply_ep && ucx->peers[i].state == PEER_CONNECTED)
            return i;
    }
    return -1;
}

static void peer_name(char *buf, size_t cap, int64_t peer)
{
    if (peer < 0)
        snprintf(buf, cap, "an unidentified peer");
    else
        snprintf(buf, cap, "peer %lld", (long long)peer);
}

/* Logs and counts a dropped message; the returned status goes back to a rendezvous sender. */
static ucs_status_t reject(dst_ucx_t *ucx, int64_t peer, const char *why, size_t hlen, size_t bytes,
                           ucs_status_t status)
{
    char name[48];
    peer_name(name, sizeof(name), peer);
    DSI_WARN("data plane: rejected a message from %s: %s (header %zu bytes, payload %zu bytes)",
             name, why, hlen, bytes);
    ucx->stats.rx_rejected++;
    return status;
}

static void rndv_done_cb(void *request, ucs_status_t status, size_t length, void *user)
{
    rx_msg_t *m = user;
    dst_ucx_t *ucx = m->ucx;
    (void)length;
    m->status = dst_ucx_status_from_ucs(status);
    ucp_request_free(request);
    ucx->rndv_pending--;
    dsi_list_push_back(&ucx->ready_msgs, &m->link);
}

/* Pulls a rendezvous payload into a pool buffer; on_message sees it once it has arrived. */
static ucs_status_t recv_rndv(dst_ucx_t *ucx, rx_msg_t *m, void *desc, size_t length)
{
    m->buf = pool_get(&ucx->pool, length, &m->buf_size);
    if (m->buf == NULL) {
        int64_t peer = m->peer;
        msg_put(ucx, m);
        return reject(ucx, peer, "receive pool exhausted (pool_bytes)", 0, length,
                      UCS_ERR_EXCEEDS_LIMIT);
    }
    m->data = m->buf;
    ucp_request_param_t param = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.recv_am = rndv_done_cb,
        .user_data = m,
    };
    void *req = ucp_am_recv_data_nbx(ucx->worker, desc, m->buf, length, &param);
    if (UCS_PTR_IS_ERR(req)) {
        DSI_WARN("data plane: rendezvous receive from peer %u failed: %s", m->peer,
                 ucs_status_string(UCS_PTR_STATUS(req)));
        ucx->stats.rx_rejected++;
        pool_put(&ucx->pool, m->buf, m->buf_size);
        msg_put(ucx, m);
        return UCS_OK;
    }
    if (req == NULL) {
        m->status = DSI_OK;
        dsi_list_push_back(&ucx->ready_msgs, &m->link);
    } else {
        ucx->rndv_pending++;
    }
    return UCS_OK;
}

/* Eager data is used in place when UCX lets us keep it and it is aligned, else copied. */
static ucs_status_t recv_eager(dst_ucx_t *ucx, rx_msg_t *m, void *data, size_t length,
                               const ucp_am_recv_param_t *param)
{
    m->status = DSI_OK;
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_DATA) && ((uintptr_t)data % 8) == 0) {
        m->data = data;
        m->ucp_data = data;
        dsi_list_push_back(&ucx->ready_msgs, &m->link);
        return UCS_INPROGRESS;
    }
    m->buf = pool_get(&ucx->pool, length, &m->buf_size);
    if (m->buf == NULL) {
        int64_t peer = m->peer;
        msg_put(ucx, m);
        return reject(ucx, peer, "receive pool exhausted (pool_bytes)", 0, length, UCS_OK);
    }
    memcpy(m->buf, data, length);
    m->data = m->buf;
    dsi_list_push_back(&ucx->ready_msgs, &m->link);
    return UCS_OK;
}

ucs_status_t dst_ucx_am_recv_cb(void *arg, const void *header, size_t header_length, void *data,
                                size_t length, const ucp_am_recv_param_t *param)
{
    dst_ucx_t *ucx = arg;
    int rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    /* Returned to a rejected rendezvous sender, whose send then fails with DSI_ERR_PROTOCOL. */
    ucs_status_t refuse = rndv ? UCS_ERR_REJECTED : UCS_OK;
    int64_t peer = peer_of_ep(ucx, param);
    dst_wire_hdr_t hdr;
    const char *why;

    if (ucx->destroying)
        return refuse;
    if (dst_wire_hdr_decode(header, header_length, &hdr, &why) != DSI_OK ||
        dst_wire_check(&hdr, length, &why) != DSI_OK)
        return reject(ucx, peer, why, header_length, length, refuse);
    if (peer < 0)
        return reject(ucx, peer, "not from an endpoint of a connected peer", header_length, length,
                      refuse);
    if (hdr.src != peer)
        return reject(ucx, peer, "header src is not the sending peer", header_length, length,
                      refuse);
    if (length > ucx->cfg.max_message_bytes)
        return reject(ucx, peer, "payload larger than max_message_bytes", header_length, length,
                      refuse);
    if (hdr.epoch < ucx->epoch_lo || hdr.epoch > ucx->cfg.epoch)
        return reject(ucx, peer, "unknown epoch", header_length, length, refuse);

    rx_msg_t *m = msg_get(ucx);
    if (m == NULL)
        return reject(ucx, peer, "out of memory for a receive record", header_length, length,
                      refuse);
    memset(m, 0, sizeof(*m));
    m->ucx = ucx;
    m->peer = (uint32_t)peer;
    m->hdr = hdr;
    m->bytes = length;
    m->rndv = rndv;
    return rndv ? recv_rndv(ucx, m, data, length) : recv_eager(ucx, m, data, length, param);
}

static void deliver_msg(dst_ucx_t *ucx, rx_msg_t *m)
{
    const char *why;
    if (m->status != DSI_OK) {
        DSI_WARN("data plane: receive of a %s from peer %u failed: %s",
                 dst_wire_type_name(m->hdr.type), m->peer, dsi_status_message(m->status));
        ucx->stats.rx_rejected++;
    } else if (dst_wire_check_side(&m->hdr, m->data, &why) != DSI_OK) {
        reject(ucx, m->peer, why, 0, m->bytes, UCS_OK);
    } else if (!ucx->destroying) {
        ucx->stats.rx_messages++;
        ucx->stats.rx_bytes += m->bytes;
        ucx->stats.rx_rndv += m->rndv != 0;
        ucx->cfg.on_message(ucx, m->peer, &m->hdr, m->data, m->bytes, ucx->cfg.user);
    }
    if (m->ucp_data != NULL)
        ucp_am_data_release(ucx->worker, m->ucp_data);
    if (m->buf != NULL)
        pool_put(&ucx->pool, m->buf, m->buf_size);
    msg_put(ucx, m);
}

static void report_peer_errors(dst_ucx_t *ucx)
{
    for (uint32_t i = 0; i < ucx->cfg.max_peers && ucx->errors_pending > 0; i++) {
        peer_t *peer = &ucx->peers[i];
        if (!peer->error_pending)
            continue;
        peer->error_pending = 0;
        ucx->errors_pending--;
        ucx->stats.peer_errors++;
        DSI_WARN("data plane: peer %u failed: %s", i, ucs_status_string(peer->ucs_error));
        dst_ucx_peer_close(ucx, peer, 1);
        if (!ucx->destroying && ucx->cfg.on_peer_error != NULL)
            ucx->cfg.on_peer_error(ucx, i, DSI_ERR_PEER, ucx->cfg.user);
    }
}

void dst_ucx_deliver(dst_ucx_t *ucx)
{
    dsi_list_t *l;
    while ((l = dsi_list_pop_front(&ucx->done_sends)) != NULL) {
        send_slot_t *s = dsi_container_of(l, send_slot_t, link);
        if (s->status == DSI_OK) {
            ucx->stats.tx_messages++;
            ucx->stats.tx_bytes += s->bytes;
        } else {
            ucx->stats.tx_errors++;
        }
        if (s->cb != NULL)
            s->cb(ucx, s->status, s->arg);
        slot_put(ucx, s);
    }
    while ((l = dsi_list_pop_front(&ucx->ready_msgs)) != NULL)
        deliver_msg(ucx, dsi_container_of(l, rx_msg_t, link));
    if (ucx->errors_pending > 0)
        report_peer_errors(ucx);
}
