/*
 * fuzz_wire - the data-plane wire header and payload validation (transport/data/dst_wire.c).
 *
 * Input: [1 byte: header length h][h bytes: msgpack header][the rest: payload], checked as the
 * UCX receive path does (dst_ucx_recv.c): dst_wire_hdr_decode, dst_wire_check against the payload
 * length, then dst_wire_check_side on an 8-byte aligned copy of the payload. An accepted message
 * must have a readable tensor and side section inside the payload, pairs in order within the
 * tensor, and its header must re-encode to an equal header.
 */
#include <math.h>
#include <string.h>

#include "dst_wire.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t hlen = data[0];
    if (hlen > size - 1)
        hlen = size - 1;
    const uint8_t *hdr_bytes = data + 1;
    size_t plen = size - 1 - hlen;

    /* Exactly sized copies, so that ASan catches a read one byte past either. */
    uint8_t *hbuf = malloc(hlen ? hlen : 1);
    uint8_t *payload = malloc(plen ? plen : 1); /* malloc: 16-byte aligned, as UCX's buffers */
    FUZZ_CHECK(hbuf != NULL && payload != NULL);
    memcpy(hbuf, hdr_bytes, hlen);
    memcpy(payload, hdr_bytes + hlen, plen);

    dst_wire_hdr_t hdr;
    const char *why = NULL;
    if (dst_wire_hdr_decode(hbuf, hlen, &hdr, &why) != DSI_OK) {
        FUZZ_CHECK(why != NULL);
        goto out;
    }
    /* Round trip of the header. */
    uint8_t enc[DST_WIRE_HDR_MAX];
    size_t elen;
    dst_wire_hdr_t again;
    FUZZ_CHECK(dst_wire_hdr_encode(&hdr, enc, sizeof(enc), &elen) == DSI_OK);
    FUZZ_CHECK(dst_wire_hdr_decode(enc, elen, &again, &why) == DSI_OK);
    FUZZ_CHECK(again.type == hdr.type && again.dtype == hdr.dtype && again.src == hdr.src &&
               again.epoch == hdr.epoch && again.step == hdr.step &&
               again.micro_batch == hdr.micro_batch && again.layer == hdr.layer &&
               again.n_rows == hdr.n_rows && again.width == hdr.width &&
               again.n_pairs == hdr.n_pairs);

    if (dst_wire_check(&hdr, plen, &why) != DSI_OK)
        goto out;
    FUZZ_CHECK(dst_wire_payload_bytes(&hdr) == plen);
    FUZZ_CHECK(dst_wire_tensor_bytes(&hdr) <= plen);
    if (hdr.type != DST_WIRE_COMBINE) /* COMBINE has no side section to align */
        FUZZ_CHECK(dst_wire_side_offset(&hdr) <= plen);
    fuzz_touch(payload, dst_wire_tensor_bytes(&hdr));
    if (dst_wire_check_side(&hdr, payload, &why) != DSI_OK)
        goto out;
    const dst_wire_pair_t *pairs = dst_wire_pairs(&hdr, payload);
    const dst_wire_token_t *tokens = dst_wire_tokens(&hdr, payload);
    if (hdr.type == DST_WIRE_DISPATCH) {
        FUZZ_CHECK(pairs != NULL && tokens == NULL);
        for (uint32_t i = 0; i < hdr.n_pairs; i++) {
            FUZZ_CHECK(pairs[i].token < hdr.n_rows && pairs[i].slot < DST_WIRE_MAX_TOPK);
            FUZZ_CHECK(isfinite(pairs[i].weight));
            if (i > 0)
                FUZZ_CHECK(
                    pairs[i].token > pairs[i - 1].token ||
                    (pairs[i].token == pairs[i - 1].token && pairs[i].slot > pairs[i - 1].slot));
        }
    } else if (hdr.type == DST_WIRE_ACTIVATION) {
        FUZZ_CHECK(tokens != NULL && pairs == NULL);
        for (uint32_t i = 0; i < hdr.n_rows; i++)
            FUZZ_CHECK(tokens[i].rollback <= DST_WIRE_MAX_ROLLBACK && tokens[i].token >= 0 &&
                       tokens[i].cached <= tokens[i].pos);
    } else if (hdr.type == DST_WIRE_KV) {
        const dst_wire_kv_t *k = dst_wire_kv(&hdr, payload);
        FUZZ_CHECK(k != NULL && tokens == NULL && pairs == NULL);
        FUZZ_CHECK((uint64_t)k->n_layers * k->n_tokens == hdr.n_rows);
        FUZZ_CHECK((uint64_t)k->first + k->n_tokens <= k->total);
    } else {
        FUZZ_CHECK(tokens == NULL && pairs == NULL);
    }
out:
    free(hbuf);
    free(payload);
    return 0;
}
