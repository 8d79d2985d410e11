/*
 * dst_msg_plan.c - the PLAN message's plan: msgpack encoding, decoding and its structural rules.
 *
 * On the wire (after "type" and "v"):
 *   epoch, n_layers, first_moe_layer, n_experts: uint
 *   stages: [{first, end}], nodes: [{id, stage, mem_budget, mem_planned}]
 *   expert_offsets: [uint] ((n_layers - first_moe_layer) * n_experts + 1), expert_holders: [uint]
 *   optional: mtp_offsets: [uint] (n_experts + 1), mtp_holders: [uint] (the MTP layer's experts)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dst_msg_impl.h"

#define TRY(expr)                      \
    do {                               \
        dsi_status_t try_st_ = (expr); \
        if (try_st_ != DSI_OK)         \
            return try_st_;            \
    } while (0)

static int pack_key(msgpack_packer *pk, const char *key)
{
    size_t n = strlen(key);
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, key, n);
}

static int pack_u32s(msgpack_packer *pk, const uint32_t *v, size_t n)
{
    int rc = msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        rc |= msgpack_pack_uint32(pk, v[i]);
    return rc;
}

int dst_msg_plan_pack(msgpack_packer *pk, const dst_plan_t *p)
{
    size_t slots = dst_plan_slots(p);
    int rc = 0;
    rc |= pack_key(pk, "epoch") | msgpack_pack_uint64(pk, p->epoch);
    rc |= pack_key(pk, "n_layers") | msgpack_pack_uint32(pk, p->n_layers);
    rc |= pack_key(pk, "first_moe_layer") | msgpack_pack_uint32(pk, p->first_moe_layer);
    rc |= pack_key(pk, "n_experts") | msgpack_pack_uint32(pk, p->n_experts);
    rc |= pack_key(pk, "stages") | msgpack_pack_array(pk, p->n_stages);
    for (uint32_t i = 0; i < p->n_stages; i++) {
        rc |= msgpack_pack_map(pk, 2);
        rc |= pack_key(pk, "first") | msgpack_pack_uint32(pk, p->stages[i].first_layer);
        rc |= pack_key(pk, "end") | msgpack_pack_uint32(pk, p->stages[i].end_layer);
    }
    rc |= pack_key(pk, "nodes") | msgpack_pack_array(pk, p->n_nodes);
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        const dst_plan_node_t *n = &p->nodes[i];
        rc |= msgpack_pack_map(pk, 4);
        rc |= pack_key(pk, "id") | msgpack_pack_uint32(pk, n->node_id);
        rc |= pack_key(pk, "stage") | msgpack_pack_uint32(pk, n->stage);
        rc |= pack_key(pk, "mem_budget") | msgpack_pack_uint64(pk, n->mem_budget);
        rc |= pack_key(pk, "mem_planned") | msgpack_pack_uint64(pk, n->mem_planned);
    }
    rc |= pack_key(pk, "expert_offsets") | pack_u32s(pk, p->expert_offsets, slots + 1);
    rc |=
        pack_key(pk, "expert_holders") | pack_u32s(pk, p->expert_holders, p->expert_offsets[slots]);
    if (p->mtp_offsets != NULL) {
        rc |= pack_key(pk, "mtp_offsets") | pack_u32s(pk, p->mtp_offsets, p->n_experts + 1);
        rc |= pack_key(pk, "mtp_holders") |
              pack_u32s(pk, p->mtp_holders, p->mtp_offsets[p->n_experts]);
    }
    return rc;
}

static dsi_status_t read_stages(dst_msg_rd_t *rd, dst_plan_t *p)
{
    const msgpack_object *items;
    uint32_t n;
    TRY(dst_msg_rd_array(rd, "stages", DST_MSG_MAX_LAYERS, &items, &n));
    p->stages = dst_msg_arena_alloc(rd->msg, (size_t)n * sizeof(*p->stages));
    if (n > 0 && p->stages == NULL) {
        dst_msg_errf(rd->err, rd->errlen, "PLAN.stages: out of memory");
        return DSI_ERR_NOMEM;
    }
    p->n_stages = n;
    for (uint32_t i = 0; i < n; i++) {
        dst_msg_rd_t sub;
        char where[64];
        snprintf(where, sizeof(where), "PLAN.stages[%u]", (unsigned)i);
        TRY(dst_msg_rd_open(&sub, &items[i], 2, where, rd->msg, rd->err, rd->errlen));
        TRY(dst_msg_rd_u32(&sub, "first", DST_MSG_MAX_LAYERS, &p->stages[i].first_layer));
        TRY(dst_msg_rd_u32(&sub, "end", DST_MSG_MAX_LAYERS, &p->stages[i].end_layer));
        TRY(dst_msg_rd_end(&sub));
    }
    return DSI_OK;
}

static dsi_status_t read_nodes(dst_msg_rd_t *rd, dst_plan_t *p)
{
    const msgpack_object *items;
    uint32_t n;
    TRY(dst_msg_rd_array(rd, "nodes", DST_MSG_MAX_NODES, &items, &n));
    p->nodes = dst_msg_arena_alloc(rd->msg, (size_t)n * sizeof(*p->nodes));
    if (n > 0 && p->nodes == NULL) {
        dst_msg_errf(rd->err, rd->errlen, "PLAN.nodes: out of memory");
        return DSI_ERR_NOMEM;
    }
    p->n_nodes = n;
    for (uint32_t i = 0; i < n; i++) {
        dst_msg_rd_t sub;
        char where[64];
        dst_plan_node_t *node = &p->nodes[i];
        snprintf(where, sizeof(where), "PLAN.nodes[%u]", (unsigned)i);
        TRY(dst_msg_rd_open(&sub, &items[i], 4, where, rd->msg, rd->err, rd->errlen));
        TRY(dst_msg_rd_u32(&sub, "id", UINT32_MAX, &node->node_id));
        TRY(dst_msg_rd_u32(&sub, "stage", UINT32_MAX, &node->stage));
        TRY(dst_msg_rd_u64(&sub, "mem_budget", UINT64_MAX, &node->mem_budget));
        TRY(dst_msg_rd_u64(&sub, "mem_planned", UINT64_MAX, &node->mem_planned));
        TRY(dst_msg_rd_end(&sub));
    }
    return DSI_OK;
}

/* The optional MTP holders: both fields or neither. */
static dsi_status_t read_mtp(dst_msg_rd_t *rd, dst_plan_t *p)
{
    const msgpack_object *off = dst_msg_rd_opt(rd, "mtp_offsets");
    const msgpack_object *hold = dst_msg_rd_opt(rd, "mtp_holders");
    p->mtp_offsets = p->mtp_holders = NULL;
    if (off == NULL && hold == NULL)
        return DSI_OK;
    if (off == NULL || hold == NULL) {
        dst_msg_errf(rd->err, rd->errlen, "PLAN: mtp_offsets and mtp_holders come together");
        return DSI_ERR_PROTOCOL;
    }
    uint32_t n_offsets, n_holders;
    TRY(dst_msg_rd_u32_array(rd, "mtp_offsets", DST_MSG_MAX_EXPERTS + 1, DST_MSG_MAX_HOLDERS,
                             &p->mtp_offsets, &n_offsets));
    TRY(dst_msg_rd_u32_array(rd, "mtp_holders", DST_MSG_MAX_HOLDERS, UINT32_MAX, &p->mtp_holders,
                             &n_holders));
    if (n_offsets != p->n_experts + 1 || p->n_experts == 0) {
        dst_msg_errf(rd->err, rd->errlen, "PLAN.mtp_offsets: %u entries, n_experts + 1 = %u",
                     (unsigned)n_offsets, (unsigned)(p->n_experts + 1));
        return DSI_ERR_PROTOCOL;
    }
    if (p->mtp_offsets[p->n_experts] != n_holders) {
        dst_msg_errf(rd->err, rd->errlen, "PLAN.mtp_holders: %u entries, mtp_offsets ends at %u",
                     (unsigned)n_holders, (unsigned)p->mtp_offsets[p->n_experts]);
        return DSI_ERR_PROTOCOL;
    }
    return DSI_OK;
}

dsi_status_t dst_msg_plan_read(dst_msg_rd_t *rd, dst_plan_t *p)
{
    uint32_t n_offsets, n_holders;
    TRY(dst_msg_rd_u64(rd, "epoch", UINT64_MAX, &p->epoch));
    TRY(dst_msg_rd_u32(rd, "n_layers", DST_MSG_MAX_LAYERS, &p->n_layers));
    TRY(dst_msg_rd_u32(rd, "first_moe_layer", DST_MSG_MAX_LAYERS, &p->first_moe_layer));
    TRY(dst_msg_rd_u32(rd, "n_experts", DST_MSG_MAX_EXPERTS, &p->n_experts));
    TRY(read_stages(rd, p));
    TRY(read_nodes(rd, p));
    TRY(dst_msg_rd_u32_array(rd, "expert_offsets", DST_MSG_MAX_SLOTS + 1, DST_MSG_MAX_HOLDERS,
                             &p->expert_offsets, &n_offsets));
    TRY(dst_msg_rd_u32_array(rd, "expert_holders", DST_MSG_MAX_HOLDERS, UINT32_MAX,
                             &p->expert_holders, &n_holders));
    /* The struct carries no array lengths: make them agree with what the counts imply now. */
    if (p->first_moe_layer > p->n_layers) {
        dst_msg_errf(rd->err, rd->errlen, "PLAN.first_moe_layer %u > n_layers %u",
                     (unsigned)p->first_moe_layer, (unsigned)p->n_layers);
        return DSI_ERR_PROTOCOL;
    }
    uint64_t slots = (uint64_t)(p->n_layers - p->first_moe_layer) * p->n_experts;
    if ((uint64_t)n_offsets != slots + 1) {
        dst_msg_errf(rd->err, rd->errlen,
                     "PLAN.expert_offsets: %u entries, (n_layers - first_moe_layer) x n_experts "
                     "+ 1 = %llu",
                     (unsigned)n_offsets, (unsigned long long)(slots + 1));
        return DSI_ERR_PROTOCOL;
    }
    if (p->expert_offsets[slots] != n_holders) {
        dst_msg_errf(rd->err, rd->errlen,
                     "PLAN.expert_holders: %u entries, expert_offsets ends at %u",
                     (unsigned)n_holders, (unsigned)p->expert_offsets[slots]);
        return DSI_ERR_PROTOCOL;
    }
    return read_mtp(rd, p);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static dsi_status_t check_shape(const dst_plan_t *p, char *err, size_t errlen)
{
    if (p->n_layers == 0 || p->n_layers > DST_MSG_MAX_LAYERS) {
        dst_msg_errf(err, errlen, "PLAN.n_layers %u not in 1..%u", (unsigned)p->n_layers,
                     DST_MSG_MAX_LAYERS);
        return DSI_ERR_PROTOCOL;
    }
    if (p->first_moe_layer > p->n_layers) {
        dst_msg_errf(err, errlen, "PLAN.first_moe_layer %u > n_layers %u",
                     (unsigned)p->first_moe_layer, (unsigned)p->n_layers);
        return DSI_ERR_PROTOCOL;
    }
    uint32_t n_moe = p->n_layers - p->first_moe_layer;
    if (p->n_experts > DST_MSG_MAX_EXPERTS || (n_moe > 0 && p->n_experts == 0)) {
        dst_msg_errf(err, errlen, "PLAN.n_experts %u not in 1..%u", (unsigned)p->n_experts,
                     DST_MSG_MAX_EXPERTS);
        return DSI_ERR_PROTOCOL;
    }
    if ((uint64_t)n_moe * p->n_experts > DST_MSG_MAX_SLOTS) {
        dst_msg_errf(err, errlen, "PLAN: %u MoE layers x %u experts exceeds %u", (unsigned)n_moe,
                     (unsigned)p->n_experts, DST_MSG_MAX_SLOTS);
        return DSI_ERR_TOO_LARGE;
    }
    if (p->n_stages == 0 || p->n_stages > p->n_layers || p->stages == NULL) {
        dst_msg_errf(err, errlen, "PLAN: %u stages, 1..n_layers (%u) required",
                     (unsigned)p->n_stages, (unsigned)p->n_layers);
        return DSI_ERR_PROTOCOL;
    }
    uint32_t expect = 0;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        const dst_plan_stage_t *st = &p->stages[s];
        if (st->first_layer != expect || st->end_layer <= st->first_layer ||
            st->end_layer > p->n_layers) {
            dst_msg_errf(err, errlen,
                         "PLAN.stages[%u]: [%u, %u) does not continue at layer %u with a "
                         "non-empty range within n_layers",
                         (unsigned)s, (unsigned)st->first_layer, (unsigned)st->end_layer,
                         (unsigned)expect);
            return DSI_ERR_PROTOCOL;
        }
        expect = st->end_layer;
    }
    if (expect != p->n_layers) {
        dst_msg_errf(err, errlen, "PLAN.stages end at layer %u, n_layers is %u", (unsigned)expect,
                     (unsigned)p->n_layers);
        return DSI_ERR_PROTOCOL;
    }
    return DSI_OK;
}

/* Nodes: stage in range, planned <= budget, every stage staffed. Fills ids (sorted, unique). */
static dsi_status_t check_nodes(const dst_plan_t *p, uint32_t *ids, char *err, size_t errlen)
{
    uint32_t staffed = 0;
    uint8_t *seen = calloc(p->n_stages, 1);
    if (seen == NULL) {
        dst_msg_errf(err, errlen, "PLAN: out of memory");
        return DSI_ERR_NOMEM;
    }
    dsi_status_t st = DSI_ERR_PROTOCOL;
    for (uint32_t i = 0; i < p->n_nodes; i++) {
        const dst_plan_node_t *n = &p->nodes[i];
        if (n->stage >= p->n_stages) {
            dst_msg_errf(err, errlen, "PLAN.nodes[%u]: stage %u, only %u stages", (unsigned)i,
                         (unsigned)n->stage, (unsigned)p->n_stages);
            goto out;
        }
        if (n->mem_planned > n->mem_budget) {
            dst_msg_errf(err, errlen, "PLAN.nodes[%u]: mem_planned %llu over mem_budget %llu",
                         (unsigned)i, (unsigned long long)n->mem_planned,
                         (unsigned long long)n->mem_budget);
            goto out;
        }
        staffed += !seen[n->stage];
        seen[n->stage] = 1;
        ids[i] = n->node_id;
    }
    if (staffed != p->n_stages) {
        for (uint32_t s = 0; s < p->n_stages; s++) {
            if (!seen[s]) {
                dst_msg_errf(err, errlen, "PLAN.stages[%u]: no node works in it", (unsigned)s);
                break;
            }
        }
        goto out;
    }
    qsort(ids, p->n_nodes, sizeof(*ids), cmp_u32);
    for (uint32_t i = 1; i < p->n_nodes; i++) {
        if (ids[i] == ids[i - 1]) {
            dst_msg_errf(err, errlen, "PLAN.nodes: node id %u appears twice", (unsigned)ids[i]);
            goto out;
        }
    }
    st = DSI_OK;
out:
    free(seen);
    return st;
}

/* Every slot: offsets monotone, >= 1 holder, holders known and distinct within the slot. */
static dsi_status_t check_experts(const dst_plan_t *p, const uint32_t *ids, char *err,
                                  size_t errlen)
{
    size_t slots = dst_plan_slots(p);
    const uint32_t *off = p->expert_offsets;
    if (off == NULL || off[0] != 0) {
        dst_msg_errf(err, errlen, "PLAN.expert_offsets must start at 0");
        return DSI_ERR_PROTOCOL;
    }
    for (size_t i = 0; i < slots; i++) {
        if (off[i + 1] <= off[i]) {
            dst_msg_errf(err, errlen, "PLAN: expert %zu of MoE layer %u has no holder",
                         i % p->n_experts, (unsigned)(p->first_moe_layer + i / p->n_experts));
            return DSI_ERR_PROTOCOL;
        }
    }
    if (off[slots] > DST_MSG_MAX_HOLDERS) {
        dst_msg_errf(err, errlen, "PLAN: %u expert holders, at most %u", (unsigned)off[slots],
                     DST_MSG_MAX_HOLDERS);
        return DSI_ERR_TOO_LARGE;
    }
    if (slots > 0 && p->expert_holders == NULL) {
        dst_msg_errf(err, errlen, "PLAN.expert_holders missing");
        return DSI_ERR_PROTOCOL;
    }
    /* last[k] = slot + 1 where node ids[k] was last seen: duplicates in O(holders log nodes). */
    uint32_t *last = calloc(p->n_nodes, sizeof(*last));
    if (last == NULL) {
        dst_msg_errf(err, errlen, "PLAN: out of memory");
        return DSI_ERR_NOMEM;
    }
    dsi_status_t st = DSI_OK;
    for (size_t i = 0; i < slots && st == DSI_OK; i++) {
        for (uint32_t h = off[i]; h < off[i + 1]; h++) {
            uint32_t id = p->expert_holders[h];
            const uint32_t *hit = bsearch(&id, ids, p->n_nodes, sizeof(*ids), cmp_u32);
            const char *why = hit == NULL                ? "is not in the plan"
                              : last[hit - ids] == i + 1 ? "is listed twice"
                                                         : NULL;
            if (why != NULL) {
                dst_msg_errf(err, errlen, "PLAN: holder node %u of expert %zu, MoE layer %u %s",
                             (unsigned)id, i % p->n_experts,
                             (unsigned)(p->first_moe_layer + i / p->n_experts), why);
                st = DSI_ERR_PROTOCOL;
                break;
            }
            last[hit - ids] = (uint32_t)(i + 1);
        }
    }
    free(last);
    return st;
}

/* The MTP layer's experts: offsets monotone from 0, >= 1 holder each, holders nodes of the last
 * stage, distinct within an expert. */
static dsi_status_t check_mtp(const dst_plan_t *p, char *err, size_t errlen)
{
    if (p->mtp_offsets == NULL && p->mtp_holders == NULL)
        return DSI_OK;
    if (p->mtp_offsets == NULL || p->mtp_holders == NULL || p->n_experts == 0 ||
        p->mtp_offsets[0] != 0) {
        dst_msg_errf(err, errlen, "PLAN.mtp_offsets must start at 0 with mtp_holders beside it");
        return DSI_ERR_PROTOCOL;
    }
    for (uint32_t e = 0; e < p->n_experts; e++) {
        const uint32_t *off = p->mtp_offsets;
        if (off[e + 1] <= off[e] || off[e + 1] - off[e] > p->n_nodes) {
            dst_msg_errf(err, errlen, "PLAN: expert %u of the MTP layer has %s", (unsigned)e,
                         off[e + 1] <= off[e] ? "no holder" : "more holders than nodes");
            return DSI_ERR_PROTOCOL;
        }
        for (uint32_t h = off[e]; h < off[e + 1]; h++) {
            uint32_t id = p->mtp_holders[h], k = 0;
            while (k < p->n_nodes && p->nodes[k].node_id != id)
                k++;
            const char *why = k == p->n_nodes                        ? "is not in the plan"
                              : p->nodes[k].stage != p->n_stages - 1 ? "is not in the last stage"
                                                                     : NULL;
            for (uint32_t g = off[e]; why == NULL && g < h; g++)
                why = p->mtp_holders[g] == id ? "is listed twice" : NULL;
            if (why != NULL) {
                dst_msg_errf(err, errlen, "PLAN: holder node %u of expert %u of the MTP layer %s",
                             (unsigned)id, (unsigned)e, why);
                return DSI_ERR_PROTOCOL;
            }
        }
    }
    return DSI_OK;
}

dsi_status_t dst_msg_plan_check(const dst_plan_t *p, char *err, size_t errlen)
{
    TRY(check_shape(p, err, errlen));
    if (p->n_nodes == 0 || p->n_nodes > DST_MSG_MAX_NODES || p->nodes == NULL) {
        dst_msg_errf(err, errlen, "PLAN: %u nodes, 1..%u required", (unsigned)p->n_nodes,
                     DST_MSG_MAX_NODES);
        return DSI_ERR_PROTOCOL;
    }
    uint32_t *ids = malloc((size_t)p->n_nodes * sizeof(*ids));
    if (ids == NULL) {
        dst_msg_errf(err, errlen, "PLAN: out of memory");
        return DSI_ERR_NOMEM;
    }
    dsi_status_t st = check_nodes(p, ids, err, errlen);
    if (st == DSI_OK)
        st = check_experts(p, ids, err, errlen);
    if (st == DSI_OK)
        st = check_mtp(p, err, errlen);
    free(ids);
    return st;
}
