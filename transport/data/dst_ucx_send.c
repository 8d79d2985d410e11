/*
 * dst_ucx_send.c - sending one data-plane message: encode the header into a send slot that lives
 * until UCX completes (UCX 1.13 reads the AM header until then), post ucp_am_send_nbx, and queue
 * the completion for the deliver phase.
 */
#include "dsi_log.h"
#include "dst_ucx_impl.h"

static void send_done_cb(void *request, ucs_status_t status, void *user)
{
    send_slot_t *slot = user;
    dst_ucx_t *ucx = slot->ucx;
    slot->status = dst_ucx_status_from_ucs(status);
    if (status != UCS_OK)
        DSI_WARN("data plane: send of %zu bytes failed: %s", slot->bytes,
                 ucs_status_string(status));
    ucp_request_free(request);
    ucx->sends_pending--;
    dsi_list_push_back(&ucx->done_sends, &slot->link);
}

dsi_status_t dst_ucx_send(dst_ucx_t *ucx, uint32_t peer_id, const dst_wire_hdr_t *hdr,
                          const void *payload, size_t bytes, dst_ucx_send_cb cb, void *arg)
{
    const char *why;
    if (ucx->destroying)
        return DSI_ERR_CANCELLED;
    if (peer_id >= ucx->cfg.max_peers || ucx->peers[peer_id].state != PEER_CONNECTED) {
        DSI_DEBUG("data plane: send to peer %u: not connected", peer_id);
        return DSI_ERR_PEER;
    }
    dst_wire_hdr_t h = *hdr;
    h.src = ucx->cfg.self_id;
    if (dst_wire_check(&h, bytes, &why) != DSI_OK) {
        DSI_ERROR("data plane: send of a %s to peer %u: %s", dst_wire_type_name(h.type), peer_id,
                  why);
        return DSI_ERR_INVALID_ARG;
    }
    send_slot_t *slot = slot_get(ucx);
    if (slot == NULL) {
        DSI_ERROR("data plane: send to peer %u: out of memory for a send slot", peer_id);
        return DSI_ERR_NOMEM;
    }
    size_t hlen;
    dst_wire_hdr_encode(&h, slot->hdr, sizeof(slot->hdr), &hlen); /* cannot overflow */
    slot->ucx = ucx;
    slot->cb = cb;
    slot->arg = arg;
    slot->bytes = bytes;
    slot->status = DSI_OK;
    ucp_request_param_t param = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
        .cb.send = send_done_cb,
        .user_data = slot,
        /* REPLY lets the receiver name the sending endpoint even when the header is garbage. */
        .flags = UCP_AM_SEND_FLAG_REPLY,
    };
    void *req = ucp_am_send_nbx(ucx->peers[peer_id].ep, DST_UCX_AM_ID, slot->hdr, hlen, payload,
                                bytes, &param);
    if (UCS_PTR_IS_ERR(req)) {
        DSI_ERROR("data plane: send to peer %u: %s", peer_id,
                  ucs_status_string(UCS_PTR_STATUS(req)));
        slot_put(ucx, slot);
        return DSI_ERR_PEER;
    }
    if (req == NULL) /* done at once: the callback still runs later */
        dsi_list_push_back(&ucx->done_sends, &slot->link);
    else
        ucx->sends_pending++;
    dst_ucx_kick(ucx);
    return DSI_OK;
}
