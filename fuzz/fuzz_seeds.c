/*
 * fuzz_seeds - writes the binary seed inputs of fuzz_ctrl_msg and fuzz_wire with the project's
 * own encoders, so that the seeds are exactly what peers send. Usage: fuzz_seeds <fuzz/corpus>.
 * Its output is committed; run it again only when the wire formats change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dst_ctrl.h"
#include "dst_ctrl_impl.h"
#include "dst_msg.h"
#include "dst_wire.h"

static const char *root;

static void put(const char *harness, const char *name, const void *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s/%s", root, harness, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ---- control frames ---- */

static uint8_t ucx_a[40];
static int32_t prompt[12] = {0, 1, 2, 100, 1000, 16777215, 5, 6, 7, 8, 9, 10};
static uint32_t route[2] = {0, 1};
static int32_t out_tokens[2] = {7, 16777215};
static uint32_t counts[2 * 4] = {1, 2, 3, 4, 0, 0, 4294967295u, 9};
static float biases[4] = {0.5f, -1.25f, 0.0f, 3.0e38f};
static char admin_json[] = "{\"epoch\":3,\"nodes\":[{\"name\":\"n-1\"}]}";
static dst_msg_peer_t peers[2];
static dst_plan_stage_t stages[2] = {{0, 2}, {2, 4}};
static dst_plan_node_t nodes[3] = {{10, 0, 1000, 900}, {11, 1, 2000, 2000}, {12, 1, 1ull << 40, 5}};
static uint32_t offsets[7] = {0, 1, 3, 4, 5, 6, 8}; /* 4 layers, first MoE 2, 3 experts */
static uint32_t holders[8] = {10, 11, 12, 10, 12, 11, 10, 12};

static int sample(dst_msg_type_t type, dst_msg_t *m)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    for (size_t i = 0; i < sizeof(ucx_a); i++)
        ucx_a[i] = (uint8_t)(i * 7 + 1);
    switch (type) {
    case DST_MSG_HELLO:
        memset(m->hello.nonce, 0x11, sizeof(m->hello.nonce));
        return 1;
    case DST_MSG_REGISTER:
        snprintf(m->reg.name, sizeof(m->reg.name), "node-1");
        m->reg.mem_budget = 512ull << 30;
        m->reg.cores = 64;
        m->reg.ucx_addr = ucx_a;
        m->reg.ucx_addr_len = sizeof(ucx_a);
        snprintf(m->reg.data_addr, sizeof(m->reg.data_addr), "[::1]:7001");
        memset(m->reg.auth, 0xab, sizeof(m->reg.auth));
        return 1;
    case DST_MSG_WELCOME:
        m->welcome.node_id = 42;
        m->welcome.heartbeat_ms = 500;
        return 1;
    case DST_MSG_PLAN:
        m->plan.plan = (dst_plan_t){.epoch = 7,
                                    .n_layers = 4,
                                    .first_moe_layer = 2,
                                    .n_experts = 3,
                                    .n_stages = 2,
                                    .stages = stages,
                                    .n_nodes = 3,
                                    .nodes = nodes,
                                    .expert_offsets = offsets,
                                    .expert_holders = holders};
        m->plan.live = 1;
        return 1;
    case DST_MSG_PEERS:
        peers[0] = (dst_msg_peer_t){.node_id = 10, .ucx_addr = ucx_a, .ucx_addr_len = 40};
        snprintf(peers[0].data_addr, DST_MSG_ADDR_MAX, "10.0.0.1:9000");
        peers[1] = (dst_msg_peer_t){.node_id = 11, .ucx_addr = ucx_a, .ucx_addr_len = 3};
        m->peers.epoch = 9;
        m->peers.n_peers = 2;
        m->peers.peers = peers;
        return 1;
    case DST_MSG_READY:
        m->ready.node_id = 3;
        m->ready.epoch = UINT64_MAX;
        return 1;
    case DST_MSG_HEARTBEAT:
        m->heartbeat.node_id = 1;
        m->heartbeat.seq = 77;
        m->heartbeat.time_ns = 123456789012345ull;
        return 1;
    case DST_MSG_LOAD_STATS:
        m->load_stats = (dst_msg_load_stats_t){.node_id = 2,
                                               .epoch = 5,
                                               .window_ms = 10000,
                                               .first_layer = 3,
                                               .n_layers = 2,
                                               .n_experts = 4,
                                               .counts = counts};
        return 1;
    case DST_MSG_DRAIN:
        m->drain.node_id = 4;
        m->drain.deadline_ms = 30000;
        return 1;
    case DST_MSG_SUBMIT:
        m->submit = (dst_msg_submit_t){.seq_id = 1ull << 50,
                                       .n_tokens = 12,
                                       .tokens = prompt,
                                       .max_tokens = 2048,
                                       .temperature = 0.6f,
                                       .top_p = 0.95f,
                                       .top_k = 40,
                                       .seed = 0xdeadbeefcafeull,
                                       .n_route = 2,
                                       .route = route,
                                       .n_generated = 3};
        return 1;
    case DST_MSG_TOKENS:
        m->tokens = (dst_msg_tokens_t){
            .seq_id = 8, .n_tokens = 2, .tokens = out_tokens, .finish = DST_FINISH_LENGTH};
        return 1;
    case DST_MSG_CANCEL:
        m->cancel.seq_id = 8;
        return 1;
    case DST_MSG_SHUTDOWN:
        snprintf(m->shutdown.reason, DST_MSG_TEXT_MAX, "operator asked");
        return 1;
    case DST_MSG_ERROR:
        dst_msg_error_init(m, DSI_ERR_PROTOCOL, DST_MSG_SUBMIT, "bad %s", "thing");
        return 1;
    case DST_MSG_BIAS:
        m->bias = (dst_msg_bias_t){.epoch = 4, .layer = 61, .n_biases = 4, .biases = biases};
        return 1;
    case DST_MSG_ADMIN:
        m->admin.command = DST_ADMIN_DRAIN;
        m->admin.arg = 2;
        memset(m->admin.auth, 0x5a, sizeof(m->admin.auth));
        return 1;
    case DST_MSG_ADMIN_REPLY:
        m->admin_reply.command = DST_ADMIN_STATUS;
        m->admin_reply.json = admin_json;
        return 1;
    case DST_MSG_SWITCH:
    case DST_MSG_SWITCHED:
    case DST_MSG_RELEASE:
        m->sw.node_id = 7;
        m->sw.epoch = 1ull << 33;
        return 1;
    case DST_MSG_KV_MOVE:
        m->kv_move =
            (dst_msg_kv_move_t){.seq_id = 12, .n_tokens = 200, .to = 3, .to_seq = 77, .epoch = 4};
        return 1;
    case DST_MSG_KV_DONE:
        m->kv_done = (dst_msg_kv_done_t){.node_id = 2, .seq_id = 77, .ok = 1, .bytes = 4096};
        return 1;
    default:
        return 0;
    }
}

/* Appends one frame (header + body of msg) to buf. */
static size_t frame(const dst_msg_t *m, uint8_t *buf)
{
    msgpack_sbuffer sb;
    char err[256];
    msgpack_sbuffer_init(&sb);
    if (dst_msg_encode(m, &sb, err, sizeof(err)) != DSI_OK) {
        fprintf(stderr, "encode %s: %s\n", dst_msg_type_name(m->type), err);
        exit(1);
    }
    dst_ctrl_frame_header(buf, (uint32_t)sb.size);
    memcpy(buf + DST_CTRL_HEADER_LEN, sb.data, sb.size);
    size_t n = DST_CTRL_HEADER_LEN + sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void ctrl_seeds(void)
{
    static uint8_t all[1 << 16];
    size_t all_len = 0;
    for (int t = 1; t < DST_MSG_TYPE_END; t++) {
        dst_msg_t m;
        if (!sample((dst_msg_type_t)t, &m))
            continue;
        uint8_t buf[8192];
        size_t n = frame(&m, buf);
        char name[64];
        snprintf(name, sizeof(name), "%02d-%s", t, dst_msg_type_name((uint32_t)t));
        put("fuzz_ctrl_msg", name, buf, n);
        if (t == DST_MSG_HELLO || t == DST_MSG_REGISTER || t == DST_MSG_SUBMIT) {
            memcpy(all + all_len, buf, n);
            all_len += n;
        }
    }
    put("fuzz_ctrl_msg", "stream-hello-register-submit", all, all_len);
    /* Edge cases: bad magic, other version, a length over the limit, an empty body, a cut frame. */
    uint8_t hdr[DST_CTRL_HEADER_LEN];
    dst_ctrl_frame_header(hdr, 4);
    hdr[0] = 'X';
    put("fuzz_ctrl_msg", "edge-bad-magic", hdr, sizeof(hdr));
    dst_ctrl_frame_header(hdr, 4);
    hdr[3] = 2;
    put("fuzz_ctrl_msg", "edge-version-2", hdr, sizeof(hdr));
    dst_ctrl_frame_header(hdr, 0xffffffffu);
    put("fuzz_ctrl_msg", "edge-huge-length", hdr, sizeof(hdr));
    dst_ctrl_frame_header(hdr, 0);
    put("fuzz_ctrl_msg", "edge-empty-body", hdr, sizeof(hdr));
    put("fuzz_ctrl_msg", "edge-cut-frame", all, all_len / 2);
}

/* ---- data-plane messages ---- */

static void wire_seed(const char *name, const dst_wire_hdr_t *h, const void *side, size_t side_len)
{
    static uint8_t buf[1 << 16];
    size_t hlen;
    if (dst_wire_hdr_encode(h, buf + 1, DST_WIRE_HDR_MAX, &hlen) != DSI_OK)
        exit(1);
    buf[0] = (uint8_t)hlen;
    size_t tensor = dst_wire_tensor_bytes(h), off = 1 + hlen;
    for (size_t i = 0; i < tensor; i++)
        buf[off + i] = (uint8_t)(i * 13);
    memset(buf + off + tensor, 0, dst_wire_side_offset(h) - tensor);
    if (side_len > 0)
        memcpy(buf + off + dst_wire_side_offset(h), side, side_len);
    size_t total = off + dst_wire_payload_bytes(h);
    if (side_len > 0 && dst_wire_side_offset(h) + side_len != dst_wire_payload_bytes(h)) {
        fprintf(stderr, "%s: side of %zu bytes, payload %zu\n", name, side_len,
                dst_wire_payload_bytes(h));
        exit(1);
    }
    put("fuzz_wire", name, buf, total);
}

static void wire_seeds(void)
{
    dst_wire_hdr_t a = {.type = DST_WIRE_ACTIVATION,
                        .dtype = DST_WIRE_F32,
                        .src = 1,
                        .epoch = 2,
                        .step = 3,
                        .micro_batch = 0,
                        .layer = 2,
                        .n_rows = 2,
                        .width = 3};
    dst_wire_token_t tokens[2] = {{.seq_id = 5, .pos = 0, .token = 10},
                                  {.seq_id = 5, .pos = 1, .token = 11}};
    wire_seed("activation-f32", &a, tokens, sizeof(tokens));
    a.dtype = DST_WIRE_BF16;
    wire_seed("activation-bf16", &a, tokens, sizeof(tokens));
    dst_wire_hdr_t d = {.type = DST_WIRE_DISPATCH,
                        .dtype = DST_WIRE_BF16,
                        .src = 0,
                        .epoch = 1,
                        .step = 9,
                        .micro_batch = 1,
                        .layer = 3,
                        .n_rows = 2,
                        .width = 4,
                        .n_pairs = 3};
    dst_wire_pair_t pairs[3] = {{0, 0, 5, 0.5f}, {0, 3, 31, 0.25f}, {1, 1, 7, 1.5f}};
    wire_seed("dispatch-bf16", &d, pairs, sizeof(pairs));
    d.dtype = DST_WIRE_F32;
    wire_seed("dispatch-f32", &d, pairs, sizeof(pairs));
    dst_wire_hdr_t c = {.type = DST_WIRE_COMBINE,
                        .dtype = DST_WIRE_F32,
                        .src = 2,
                        .epoch = 1,
                        .step = 9,
                        .micro_batch = 1,
                        .layer = 3,
                        .n_rows = 3,
                        .width = 4};
    wire_seed("combine-f32", &c, NULL, 0);
    c.width = 5;
    c.dtype = DST_WIRE_BF16;
    wire_seed("combine-bf16-odd", &c, NULL, 0);
    dst_wire_hdr_t k = {.type = DST_WIRE_KV,
                        .dtype = DST_WIRE_U8,
                        .src = 1,
                        .epoch = 1,
                        .layer = 2,
                        .n_rows = 2 * 3,
                        .width = 10};
    dst_wire_kv_t rec = {.seq_id = 12,
                         .first = 64,
                         .n_tokens = 3,
                         .total = 67,
                         .n_layers = 2,
                         .row = 5,
                         .kv_dtype = 1,
                         .checksum = 0x1234};
    wire_seed("kv-bf16", &k, &rec, sizeof(rec));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <fuzz/corpus>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    ctrl_seeds();
    wire_seeds();
    return 0;
}
