/*
 * Control-protocol messages: round trip of every type, every field missing / mistyped / unknown,
 * semantic rule violations, truncation at every byte, hostile msgpack headers, random mutations,
 * and the REGISTER proof (SHA-256 / HMAC vectors).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dsi_test.h"
#include "dst_msg.h"
#include "dst_secret.h"

/* ---- valid samples of every type ---------------------------------------------------------- */

static uint32_t submit_route[3] = {0, 5, 2};

static uint8_t ucx_a[100], ucx_b[37];
static int32_t prompt[300];
static int32_t out_tokens[3] = {7, 0, 16777215};
static uint32_t counts[2 * 8];
static float biases[5] = {0.5f, -1.25f, 0.0f, 3.0e38f, -7e-20f};
static char admin_json[] = "{\"epoch\":3,\"nodes\":[{\"name\":\"n-é\"}]}";
static dst_msg_peer_t peer_list[2];
static dst_plan_stage_t stages[2] = {{0, 2}, {2, 4}};
static dst_plan_node_t nodes[3] = {{10, 0, 1000, 900}, {11, 1, 2000, 2000}, {12, 1, 1ull << 40, 5}};
/* 4 layers, first MoE layer 2, 3 experts: 6 slots */
static uint32_t offsets[7] = {0, 1, 3, 4, 5, 6, 8};
static uint32_t holders[8] = {10, 11, 12, 10, 12, 11, 10, 12};

static void sample(dst_msg_type_t type, dst_msg_t *m)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    for (size_t i = 0; i < sizeof(ucx_a); i++)
        ucx_a[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof(ucx_b); i++)
        ucx_b[i] = (uint8_t)(255 - i);
    for (int i = 0; i < 300; i++)
        prompt[i] = i * 431 % 129280;
    for (int i = 0; i < 16; i++)
        counts[i] = (uint32_t)i * 1000003u;
    counts[5] = UINT32_MAX;
    switch (type) {
    case DST_MSG_HELLO:
        for (int i = 0; i < DST_MSG_NONCE_LEN; i++)
            m->hello.nonce[i] = (uint8_t)(i * 3);
        break;
    case DST_MSG_REGISTER:
        snprintf(m->reg.name, sizeof(m->reg.name), "node-é-%d", 3);
        m->reg.mem_budget = 512ull << 30;
        m->reg.cores = 64;
        m->reg.ucx_addr = ucx_a;
        m->reg.ucx_addr_len = sizeof(ucx_a);
        snprintf(m->reg.data_addr, sizeof(m->reg.data_addr), "[::1]:7001");
        memset(m->reg.auth, 0xab, sizeof(m->reg.auth));
        break;
    case DST_MSG_WELCOME:
        m->welcome.node_id = 42;
        m->welcome.heartbeat_ms = 500;
        break;
    case DST_MSG_PLAN:
        m->plan.plan = (dst_plan_t){.epoch = 1ull << 40,
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
        break;
    case DST_MSG_PEERS:
        peer_list[0] = (dst_msg_peer_t){.node_id = 10, .ucx_addr = ucx_a, .ucx_addr_len = 100};
        snprintf(peer_list[0].data_addr, DST_MSG_ADDR_MAX, "10.0.0.1:9000");
        peer_list[1] = (dst_msg_peer_t){.node_id = 11, .ucx_addr = ucx_b, .ucx_addr_len = 37};
        m->peers.epoch = 9;
        m->peers.n_peers = 2;
        m->peers.peers = peer_list;
        break;
    case DST_MSG_READY:
        m->ready.node_id = 3;
        m->ready.epoch = UINT64_MAX;
        break;
    case DST_MSG_HEARTBEAT:
        m->heartbeat.node_id = 1;
        m->heartbeat.seq = 77;
        m->heartbeat.time_ns = 123456789012345ull;
        m->heartbeat.kv_blocks_used = 3;
        m->heartbeat.kv_blocks_total = 40;
        m->heartbeat.preemptions = 2;
        m->heartbeat.kv_blocks_cached = 5;
        m->heartbeat.prompt_tokens = 9000;
        m->heartbeat.prefix_hit_tokens = 4096;
        m->heartbeat.has_spec = 1;
        m->heartbeat.spec = (dst_msg_spec_t){40, 61, 1234567, 7654321, 2, {40, 21}, {21, 0}};
        break;
    case DST_MSG_LOAD_STATS:
        m->load_stats = (dst_msg_load_stats_t){.node_id = 2,
                                               .epoch = 5,
                                               .window_ms = 10000,
                                               .first_layer = 3,
                                               .n_layers = 2,
                                               .n_experts = 8,
                                               .counts = counts};
        break;
    case DST_MSG_DRAIN:
        m->drain.node_id = 4;
        m->drain.deadline_ms = 30000;
        break;
    case DST_MSG_SUBMIT:
        m->submit = (dst_msg_submit_t){.seq_id = 1ull << 50,
                                       .n_tokens = 300,
                                       .tokens = prompt,
                                       .max_tokens = 2048,
                                       .temperature = 0.6f,
                                       .top_p = 0.95f,
                                       .top_k = 40,
                                       .seed = 0xdeadbeefcafeull,
                                       .n_route = 3,
                                       .route = submit_route,
                                       .n_generated = 17,
                                       .fork_of = 5,
                                       .fork_len = 299,
                                       .kv_move = 1,
                                       .no_prefix = 1};
        break;
    case DST_MSG_TOKENS:
        m->tokens = (dst_msg_tokens_t){
            .seq_id = 8, .n_tokens = 3, .tokens = out_tokens, .finish = DST_FINISH_LENGTH};
        break;
    case DST_MSG_CANCEL:
        m->cancel.seq_id = 8;
        break;
    case DST_MSG_SHUTDOWN:
        snprintf(m->shutdown.reason, DST_MSG_TEXT_MAX, "operator asked");
        break;
    case DST_MSG_ERROR:
        dst_msg_error_init(m, DSI_ERR_PROTOCOL, DST_MSG_SUBMIT, "bad %s", "thing");
        break;
    case DST_MSG_BIAS:
        m->bias = (dst_msg_bias_t){.epoch = 4, .layer = 61, .n_biases = 5, .biases = biases};
        break;
    case DST_MSG_ADMIN:
        m->admin.command = DST_ADMIN_DRAIN;
        m->admin.arg = 2;
        memset(m->admin.auth, 0x5a, sizeof(m->admin.auth));
        break;
    case DST_MSG_ADMIN_REPLY:
        m->admin_reply.command = DST_ADMIN_STATUS;
        m->admin_reply.json = admin_json;
        break;
    case DST_MSG_SWITCH:
    case DST_MSG_SWITCHED:
    case DST_MSG_RELEASE:
        m->sw.node_id = 7;
        m->sw.epoch = 1ull << 33;
        break;
    case DST_MSG_KV_MOVE:
        m->kv_move = (dst_msg_kv_move_t){.seq_id = 1ull << 40,
                                         .n_tokens = 4000,
                                         .to = 3,
                                         .to_seq = 77,
                                         .epoch = 1ull << 34,
                                         .first_layer = 2,
                                         .end_layer = 5};
        break;
    case DST_MSG_KV_DONE:
        m->kv_done = (dst_msg_kv_done_t){.node_id = 2, .seq_id = 77, .ok = 0, .bytes = 1ull << 35};
        snprintf(m->kv_done.text, DST_MSG_TEXT_MAX, "no room for 63 blocks: é");
        break;
    default:
        break;
    }
}

/* Types in use (retired wire values are skipped by the loops over every type). */
static int type_in_use(int t)
{
    return strcmp(dst_msg_type_name((uint32_t)t), "UNKNOWN") != 0;
}

/* Encodes into a fresh sbuffer (caller destroys it). */
static dsi_status_t encode(const dst_msg_t *m, msgpack_sbuffer *sb)
{
    char err[256];
    msgpack_sbuffer_init(sb);
    dsi_status_t st = dst_msg_encode(m, sb, err, sizeof(err));
    if (st != DSI_OK)
        fprintf(stderr, "  encode %s: %s\n", dst_msg_type_name(m->type), err);
    return st;
}

/* Decoding `buf` must fail with status `want` (0 = any error) and an error text containing
 * `needle` (NULL = any). */
static void expect_fail(const char *what, const char *buf, size_t len, dsi_status_t want,
                        const char *needle)
{
    dst_msg_t m;
    char err[256] = "";
    memset(&m, 0x5a, sizeof(m)); /* must stay untouched */
    dsi_status_t st = dst_msg_decode(buf, len, &m, err, sizeof(err));
    if (st == DSI_OK) {
        fprintf(stderr, "  %s: decoded, expected an error\n", what);
        dst_msg_free(&m);
        DSI_CHECK(0);
        return;
    }
    DSI_CHECK(m.type == (dst_msg_type_t)0x5a5a5a5a);
    if (want != 0 && st != want)
        fprintf(stderr, "  %s: status %s, err %s\n", what, dsi_status_name(st), err);
    if (want != 0)
        DSI_CHECK_INT_EQ(st, want);
    DSI_CHECK(err[0] != 0);
    if (needle != NULL && strstr(err, needle) == NULL) {
        fprintf(stderr, "  %s: error \"%s\" lacks \"%s\"\n", what, err, needle);
        DSI_CHECK(0);
    }
}

/* ---- round trips ---------------------------------------------------------------------------- */

static void test_round_trip(void)
{
    for (int t = DST_MSG_HELLO; t < DST_MSG_TYPE_END; t++) {
        if (!type_in_use(t))
            continue;
        dst_msg_t m, d;
        msgpack_sbuffer a, b;
        char err[256];
        sample((dst_msg_type_t)t, &m);
        DSI_CHECK_INT_EQ(encode(&m, &a), DSI_OK);
        dsi_status_t st = dst_msg_decode(a.data, a.size, &d, err, sizeof(err));
        if (st != DSI_OK)
            fprintf(stderr, "  decode %s: %s\n", dst_msg_type_name(t), err);
        DSI_CHECK_INT_EQ(st, DSI_OK);
        DSI_CHECK_INT_EQ(d.type, t);
        DSI_CHECK_INT_EQ(dst_msg_peek_type(a.data, a.size), t);
        /* Re-encoding the decoded message gives the same bytes: every field survived. */
        DSI_CHECK_INT_EQ(encode(&d, &b), DSI_OK);
        DSI_CHECK_INT_EQ(a.size, b.size);
        DSI_CHECK(a.size == b.size && memcmp(a.data, b.data, a.size) == 0);
        /* The decoded copy owns its arrays: they are not the sample's. */
        if (t == DST_MSG_SUBMIT) {
            DSI_CHECK(d.submit.tokens != prompt);
            DSI_CHECK_INT_EQ(d.submit.n_tokens, 300);
            DSI_CHECK_INT_EQ(d.submit.tokens[299], 299 * 431 % 129280);
            DSI_CHECK_NEAR(d.submit.temperature, 0.6f, 0);
            DSI_CHECK_NEAR(d.submit.top_p, 0.95f, 0);
            DSI_CHECK_INT_EQ(d.submit.seed, 0xdeadbeefcafeull);
            DSI_CHECK_INT_EQ(d.submit.n_generated, 17);
            DSI_CHECK_INT_EQ(d.submit.fork_of, 5);
            DSI_CHECK_INT_EQ(d.submit.fork_len, 299);
            DSI_CHECK_INT_EQ(d.submit.kv_move, 1);
            DSI_CHECK_INT_EQ(d.submit.no_prefix, 1);
        }
        if (t == DST_MSG_KV_MOVE) {
            DSI_CHECK_INT_EQ(d.kv_move.seq_id, 1ull << 40);
            DSI_CHECK_INT_EQ(d.kv_move.n_tokens, 4000);
            DSI_CHECK_INT_EQ(d.kv_move.to, 3);
            DSI_CHECK_INT_EQ(d.kv_move.to_seq, 77);
            DSI_CHECK_INT_EQ(d.kv_move.epoch, 1ull << 34);
            DSI_CHECK_INT_EQ(d.kv_move.first_layer, 2);
            DSI_CHECK_INT_EQ(d.kv_move.end_layer, 5);
        }
        if (t == DST_MSG_KV_DONE) {
            DSI_CHECK_INT_EQ(d.kv_done.bytes, 1ull << 35);
            DSI_CHECK_STR_EQ(d.kv_done.text, "no room for 63 blocks: é");
        }
        if (t == DST_MSG_PLAN) {
            DSI_CHECK(d.plan.plan.expert_holders != holders);
            DSI_CHECK_INT_EQ(d.plan.plan.nodes[2].mem_budget, 1ull << 40);
            DSI_CHECK_INT_EQ(d.plan.plan.expert_offsets[6], 8);
            DSI_CHECK_INT_EQ(d.plan.plan.stages[1].end_layer, 4);
            DSI_CHECK_INT_EQ(d.plan.live, 1);
        }
        if (t == DST_MSG_REGISTER) {
            DSI_CHECK_STR_EQ(d.reg.name, "node-é-3");
            DSI_CHECK_INT_EQ(d.reg.ucx_addr_len, 100);
            DSI_CHECK(memcmp(d.reg.ucx_addr, ucx_a, 100) == 0);
        }
        if (t == DST_MSG_LOAD_STATS)
            DSI_CHECK_INT_EQ(d.load_stats.counts[5], UINT32_MAX);
        if (t == DST_MSG_ERROR) {
            DSI_CHECK_INT_EQ(d.error.code, DSI_ERR_PROTOCOL);
            DSI_CHECK_STR_EQ(d.error.text, "bad thing");
        }
        /* Moving a decoded message: copy the struct, zero the source. */
        dst_msg_t moved = d;
        memset(&d, 0, sizeof(d));
        dst_msg_free(&d);
        dst_msg_free(&moved);
        DSI_CHECK(moved.arena == NULL && moved.type == DST_MSG_NONE);
        msgpack_sbuffer_destroy(&a);
        msgpack_sbuffer_destroy(&b);
    }
    dst_msg_free(NULL);
}

/* ---- per-field corruption via the generic object form --------------------------------------- */

enum { DROP, RETYPE, NEGATE, EXTRA, DUPLICATE };

/* Re-packs the body map of `src` with field `idx` dropped, replaced by nil, replaced by -1,
 * or with an extra / duplicate key. */
static void repack(const msgpack_object *root, uint32_t idx, int how, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(out);
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    uint32_t n = root->via.map.size;
    uint32_t count = how == DROP ? n - 1 : (how == EXTRA || how == DUPLICATE) ? n + 1 : n;
    msgpack_pack_map(&pk, count);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (i == idx && how == DROP)
            continue;
        msgpack_pack_object(&pk, kv->key);
        if (i == idx && how == RETYPE) {
            msgpack_pack_nil(&pk); /* no field of any message may be nil */
        } else if (i == idx && how == NEGATE) {
            msgpack_pack_int64(&pk, -1);
        } else {
            msgpack_pack_object(&pk, kv->val);
        }
    }
    if (how == EXTRA) {
        msgpack_pack_str_with_body(&pk, "bogus\x01", 6);
        msgpack_pack_nil(&pk);
    } else if (how == DUPLICATE) {
        msgpack_pack_object(&pk, root->via.map.ptr[idx].key);
        msgpack_pack_object(&pk, root->via.map.ptr[idx].val);
    }
}

static void expect_decodes(const char *what, const char *buf, size_t len)
{
    dst_msg_t m;
    char err[256] = "";
    dsi_status_t st = dst_msg_decode(buf, len, &m, err, sizeof(err));
    if (st != DSI_OK)
        fprintf(stderr, "  %s: %s\n", what, err);
    DSI_CHECK_INT_EQ(st, DSI_OK);
    if (st == DSI_OK)
        dst_msg_free(&m);
}

static void test_every_field(void)
{
    for (int t = DST_MSG_HELLO; t < DST_MSG_TYPE_END; t++) {
        if (!type_in_use(t))
            continue;
        dst_msg_t m;
        msgpack_sbuffer sb;
        sample((dst_msg_type_t)t, &m);
        encode(&m, &sb);
        msgpack_zone zone;
        msgpack_object root;
        msgpack_zone_init(&zone, 4096);
        size_t off = 0;
        DSI_CHECK_INT_EQ(msgpack_unpack(sb.data, sb.size, &off, &zone, &root),
                         MSGPACK_UNPACK_SUCCESS);
        for (uint32_t i = 0; i < root.via.map.size; i++) {
            char what[96], key[32];
            const msgpack_object *k = &root.via.map.ptr[i].key;
            snprintf(key, sizeof(key), "%.*s", (int)k->via.str.size, k->via.str.ptr);
            msgpack_sbuffer bad;
            snprintf(what, sizeof(what), "%s without %s", dst_msg_type_name(t), key);
            repack(&root, i, DROP, &bad);
            /* REGISTER's held_id / held_epoch and HEARTBEAT's KV pool fields and spec are
             * optional (added later, 0 or absent when left out). */
            if ((t == DST_MSG_REGISTER && strncmp(key, "held_", 5) == 0) ||
                (t == DST_MSG_SUBMIT &&
                 (strcmp(key, "kv_move") == 0 || strcmp(key, "no_prefix") == 0)) ||
                (t == DST_MSG_HEARTBEAT &&
                 (strncmp(key, "kv_", 3) == 0 || strcmp(key, "preemptions") == 0 ||
                  strcmp(key, "prompt_tokens") == 0 || strcmp(key, "prefix_hit_tokens") == 0 ||
                  strcmp(key, "spec") == 0)))
                expect_decodes(what, bad.data, bad.size);
            else
                expect_fail(what, bad.data, bad.size, 0, key);
            msgpack_sbuffer_destroy(&bad);
            snprintf(what, sizeof(what), "%s with %s nil", dst_msg_type_name(t), key);
            repack(&root, i, RETYPE, &bad);
            expect_fail(what, bad.data, bad.size, 0, strcmp(key, "type") ? key : NULL);
            msgpack_sbuffer_destroy(&bad);
            snprintf(what, sizeof(what), "%s with %s = -1", dst_msg_type_name(t), key);
            repack(&root, i, NEGATE, &bad);
            /* ERROR.code is the one signed field: -1 is a valid code there. */
            if (!(t == DST_MSG_ERROR && strcmp(key, "code") == 0))
                expect_fail(what, bad.data, bad.size, 0, NULL);
            msgpack_sbuffer_destroy(&bad);
            snprintf(what, sizeof(what), "%s with %s twice", dst_msg_type_name(t), key);
            repack(&root, i, DUPLICATE, &bad);
            expect_fail(what, bad.data, bad.size, DSI_ERR_PROTOCOL, NULL);
            msgpack_sbuffer_destroy(&bad);
        }
        msgpack_sbuffer bad;
        repack(&root, 0, EXTRA, &bad);
        expect_fail("extra field", bad.data, bad.size, DSI_ERR_PROTOCOL, NULL);
        msgpack_sbuffer_destroy(&bad);
        msgpack_zone_destroy(&zone);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* ---- hand-built bodies -------------------------------------------------------------------------
 */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} body_t;

static void body_begin(body_t *b, uint32_t nfields, uint64_t type, uint64_t version)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&b->pk, nfields + 2);
    msgpack_pack_str_with_body(&b->pk, "type", 4);
    msgpack_pack_uint64(&b->pk, type);
    msgpack_pack_str_with_body(&b->pk, "v", 1);
    msgpack_pack_uint64(&b->pk, version);
}

static void key(body_t *b, const char *k)
{
    msgpack_pack_str_with_body(&b->pk, k, strlen(k));
}

static void kv_u(body_t *b, const char *k, uint64_t v)
{
    key(b, k);
    msgpack_pack_uint64(&b->pk, v);
}

/* A SUBMIT with the given sampling values, temperature as float32 or float64. */
static void submit_body(body_t *b, uint32_t n_tokens, int64_t tok, uint32_t max_tokens, double temp,
                        int temp64, double top_p, uint64_t top_k)
{
    body_begin(b, 9, DST_MSG_SUBMIT, DST_PROTO_VERSION);
    kv_u(b, "seq_id", 1);
    key(b, "tokens");
    msgpack_pack_array(&b->pk, n_tokens);
    for (uint32_t i = 0; i < n_tokens; i++)
        msgpack_pack_int64(&b->pk, tok);
    kv_u(b, "max_tokens", max_tokens);
    key(b, "temperature");
    if (temp64)
        msgpack_pack_double(&b->pk, temp);
    else
        msgpack_pack_float(&b->pk, (float)temp);
    key(b, "top_p");
    msgpack_pack_double(&b->pk, top_p);
    kv_u(b, "top_k", top_k);
    kv_u(b, "seed", 0);
    kv_u(b, "n_generated", 0);
    key(b, "route");
    msgpack_pack_array(&b->pk, 1);
    msgpack_pack_uint32(&b->pk, 0);
}

static void expect_ok(const char *what, body_t *b)
{
    dst_msg_t m;
    char err[256];
    dsi_status_t st = dst_msg_decode(b->sb.data, b->sb.size, &m, err, sizeof(err));
    if (st != DSI_OK)
        fprintf(stderr, "  %s: %s\n", what, err);
    DSI_CHECK_INT_EQ(st, DSI_OK);
    dst_msg_free(&m);
    msgpack_sbuffer_destroy(&b->sb);
}

static void expect_bad(const char *what, body_t *b, dsi_status_t want, const char *needle)
{
    expect_fail(what, b->sb.data, b->sb.size, want, needle);
    msgpack_sbuffer_destroy(&b->sb);
}

static void test_submit_rules(void)
{
    body_t b;
    submit_body(&b, 4, 5, 10, 0.7, 0, 0.9, 0);
    expect_ok("float32 temperature", &b);
    submit_body(&b, 4, 5, 10, 0.7, 1, 0.9, 0);
    expect_ok("float64 temperature", &b);
    submit_body(&b, 4, 16777215, 10, 0, 1, 1.0, 16777216);
    expect_ok("edge values", &b);
    submit_body(&b, 0, 5, 10, 0.7, 0, 0.9, 0);
    expect_bad("empty prompt", &b, DSI_ERR_PROTOCOL, "SUBMIT.tokens");
    submit_body(&b, 4, -3, 10, 0.7, 0, 0.9, 0);
    expect_bad("negative token", &b, DSI_ERR_PROTOCOL, "SUBMIT.tokens[0]");
    submit_body(&b, 4, 16777216, 10, 0.7, 0, 0.9, 0);
    expect_bad("token id too big", &b, DSI_ERR_PROTOCOL, "out of range");
    submit_body(&b, DST_MSG_MAX_TOKENS + 1, 1, 10, 0.7, 0, 0.9, 0);
    expect_bad("oversize prompt", &b, DSI_ERR_TOO_LARGE, "at most");
    submit_body(&b, 4, 5, 0, 0.7, 0, 0.9, 0);
    expect_bad("max_tokens 0", &b, DSI_ERR_PROTOCOL, "max_tokens");
    submit_body(&b, 4, 5, 10, -0.1, 1, 0.9, 0);
    expect_bad("negative temperature", &b, DSI_ERR_PROTOCOL, "temperature");
    submit_body(&b, 4, 5, 10, 1.0 / 0.0, 1, 0.9, 0);
    expect_bad("infinite temperature", &b, DSI_ERR_PROTOCOL, "temperature");
    submit_body(&b, 4, 5, 10, 0.0 / 0.0, 1, 0.9, 0);
    expect_bad("NaN temperature", &b, DSI_ERR_PROTOCOL, "temperature");
    submit_body(&b, 4, 5, 10, 1e300, 1, 0.9, 0);
    expect_bad("temperature beyond float32", &b, DSI_ERR_PROTOCOL, "temperature");
    submit_body(&b, 4, 5, 10, 0.7, 0, 0.0, 0);
    expect_bad("top_p 0", &b, DSI_ERR_PROTOCOL, "top_p");
    submit_body(&b, 4, 5, 10, 0.7, 0, 1.01, 0);
    expect_bad("top_p > 1", &b, DSI_ERR_PROTOCOL, "top_p");
    submit_body(&b, 4, 5, 10, 0.7, 0, 0.5, 16777217);
    expect_bad("top_k too big", &b, DSI_ERR_PROTOCOL, "top_k");

    body_begin(&b, 0, DST_MSG_SUBMIT, 2);
    expect_bad("future version", &b, DSI_ERR_UNSUPPORTED, "version 2");
    body_begin(&b, 0, 99, DST_PROTO_VERSION);
    expect_bad("unknown type", &b, DSI_ERR_UNSUPPORTED, "unknown message type 99");
    body_begin(&b, 0, 0, DST_PROTO_VERSION);
    expect_bad("type 0", &b, DSI_ERR_UNSUPPORTED, NULL);
    DSI_CHECK_INT_EQ(dst_msg_peek_type(NULL, 0), 0);
}

static void test_register_rules(void)
{
    static const struct {
        const char *name, *addr;
        uint64_t mem;
        uint64_t cores;
        size_t ucx;
        size_t auth;
        const char *needle;
    } cases[] = {
        {"n1", "127.0.0.1:1", 1, 1, 1, 32, NULL},
        {"n1", "", 1, DST_MSG_MAX_CORES, DST_MSG_MAX_UCX_ADDR, 32, NULL},
        {"", "", 1, 1, 1, 32, "name"},
        {"bad\nname", "", 1, 1, 1, 32, "name"},
        {"bad\xff", "", 1, 1, 1, 32, "name"},
        {"\xc0\xaf", "", 1, 1, 1, 32, "name"},     /* overlong '/' */
        {"\xed\xa0\x80", "", 1, 1, 1, 32, "name"}, /* surrogate */
        {"\xc2\x85", "", 1, 1, 1, 32, "name"},     /* C1 control NEL */
        {"n1", "", 0, 1, 1, 32, "mem_budget"},
        {"n1", "", 1, 0, 1, 32, "cores"},
        {"n1", "", 1, DST_MSG_MAX_CORES + 1, 1, 32, "cores"},
        {"n1", "", 1, 1, 0, 32, "ucx_addr"},
        {"n1", "", 1, 1, DST_MSG_MAX_UCX_ADDR + 1, 32, "ucx_addr"},
        {"n1", "", 1, 1, 1, 31, "auth"},
        {"n1", "", 1, 1, 1, 33, "auth"},
        {"n1", "host", 1, 1, 1, 32, "data_addr"},
        {"n1", "host:0", 1, 1, 1, 32, "data_addr"},
        {"n1", "host:65536", 1, 1, 1, 32, "data_addr"},
        {"n1", "::1:80", 1, 1, 1, 32, "data_addr"},
        {"n1", "[::1]:80x", 1, 1, 1, 32, "data_addr"},
    };
    static uint8_t big[DST_MSG_MAX_UCX_ADDR + 64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        body_t b;
        body_begin(&b, 6, DST_MSG_REGISTER, DST_PROTO_VERSION);
        key(&b, "name");
        msgpack_pack_str_with_body(&b.pk, cases[i].name, strlen(cases[i].name));
        kv_u(&b, "mem_budget", cases[i].mem);
        kv_u(&b, "cores", cases[i].cores);
        key(&b, "ucx_addr");
        msgpack_pack_bin_with_body(&b.pk, big, cases[i].ucx);
        key(&b, "data_addr");
        msgpack_pack_str_with_body(&b.pk, cases[i].addr, strlen(cases[i].addr));
        key(&b, "auth");
        msgpack_pack_bin_with_body(&b.pk, big, cases[i].auth);
        char what[64];
        snprintf(what, sizeof(what), "register case %zu", i);
        if (cases[i].needle == NULL)
            expect_ok(what, &b);
        else
            expect_bad(what, &b, 0, cases[i].needle);
    }
    /* A string with a NUL inside, and one longer than the field. */
    body_t b;
    body_begin(&b, 1, DST_MSG_SHUTDOWN, DST_PROTO_VERSION);
    key(&b, "reason");
    msgpack_pack_str_with_body(&b.pk, "a\0b", 3);
    expect_bad("NUL in str", &b, DSI_ERR_PROTOCOL, "NUL");
    body_begin(&b, 1, DST_MSG_SHUTDOWN, DST_PROTO_VERSION);
    key(&b, "reason");
    msgpack_pack_str(&b.pk, DST_MSG_TEXT_MAX);
    memset(big, 'a', DST_MSG_TEXT_MAX);
    msgpack_pack_str_body(&b.pk, big, DST_MSG_TEXT_MAX);
    expect_bad("str too long", &b, DSI_ERR_PROTOCOL, "at most 511");
    /* ERROR.code must be a negative status. */
    body_begin(&b, 3, DST_MSG_ERROR, DST_PROTO_VERSION);
    kv_u(&b, "code", 0);
    kv_u(&b, "ref_type", 0);
    key(&b, "text");
    msgpack_pack_str_with_body(&b.pk, "", 0);
    expect_bad("ERROR code 0", &b, DSI_ERR_PROTOCOL, "ERROR.code");
}

/* Plans: each case breaks one rule of the valid sample. */
static void test_plan_rules(void)
{
    dst_msg_t m;
    char err[256];
    sample(DST_MSG_PLAN, &m);
    dst_plan_t *p = &m.plan.plan;
    DSI_CHECK_INT_EQ(dst_msg_plan_check(p, err, sizeof(err)), DSI_OK);

    dst_plan_stage_t gap[2] = {{0, 2}, {3, 4}}, short_end[2] = {{0, 2}, {2, 3}};
    dst_plan_node_t lonely[3] = {{10, 0, 9, 9}, {11, 0, 9, 9}, {12, 0, 9, 9}};
    dst_plan_node_t dup[3] = {{10, 0, 9, 9}, {11, 1, 9, 9}, {10, 1, 9, 9}};
    dst_plan_node_t over[3] = {{10, 0, 9, 10}, {11, 1, 9, 9}, {12, 1, 9, 9}};
    dst_plan_node_t badstage[3] = {{10, 0, 9, 9}, {11, 2, 9, 9}, {12, 1, 9, 9}};
    uint32_t empty_slot[7] = {0, 1, 1, 4, 5, 6, 8}, bad_start[7] = {1, 1, 3, 4, 5, 6, 8};
    uint32_t unknown[8] = {10, 11, 13, 10, 12, 11, 10, 12},
             twice[8] = {10, 11, 11, 10, 12, 11, 10, 12};
    struct {
        const char *what;
        dst_plan_t plan;
        const char *needle;
    } cases[] = {
        {"stage gap", *p, "stages[1]"},
        {"stages short", *p, "end at layer 3"},
        {"stage unstaffed", *p, "no node"},
        {"duplicate node", *p, "twice"},
        {"over budget", *p, "mem_budget"},
        {"stage index", *p, "only 2 stages"},
        {"slot without holder", *p, "no holder"},
        {"offsets not from 0", *p, "start at 0"},
        {"unknown holder", *p, "not in the plan"},
        {"holder twice", *p, "listed twice"},
        {"no layers", *p, "n_layers"},
        {"moe past end", *p, "first_moe_layer"},
        {"no experts", *p, "n_experts"},
        {"no stages", *p, "stages"},
    };
    cases[0].plan.stages = gap;
    cases[1].plan.stages = short_end;
    cases[2].plan.nodes = lonely;
    cases[3].plan.nodes = dup;
    cases[4].plan.nodes = over;
    cases[5].plan.nodes = badstage;
    cases[6].plan.expert_offsets = empty_slot;
    cases[7].plan.expert_offsets = bad_start;
    cases[8].plan.expert_holders = unknown;
    cases[9].plan.expert_holders = twice;
    cases[10].plan.n_layers = 0;
    cases[11].plan.first_moe_layer = 5;
    cases[12].plan.n_experts = 0;
    cases[13].plan.n_stages = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = 0;
        dsi_status_t st = dst_msg_plan_check(&cases[i].plan, err, sizeof(err));
        DSI_CHECK(st != DSI_OK);
        if (strstr(err, cases[i].needle) == NULL) {
            fprintf(stderr, "  plan %s: \"%s\" lacks \"%s\"\n", cases[i].what, err,
                    cases[i].needle);
            DSI_CHECK(0);
        }
        /* encode refuses what the peer would refuse */
        dst_msg_t bad = {.type = DST_MSG_PLAN};
        bad.plan.plan = cases[i].plan;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        DSI_CHECK_INT_EQ(dst_msg_encode(&bad, &sb, err, sizeof(err)), DSI_ERR_INVALID_ARG);
        msgpack_sbuffer_destroy(&sb);
    }

    /* The MTP layer's experts (optional): held by nodes of the last stage, one or more each. */
    uint32_t mtp_off[4] = {0, 1, 3, 4}, mtp_hold[4] = {11, 12, 11, 12};
    dst_plan_t mp = *p;
    mp.mtp_offsets = mtp_off;
    mp.mtp_holders = mtp_hold;
    DSI_CHECK_INT_EQ(dst_msg_plan_check(&mp, err, sizeof(err)), DSI_OK);
    {
        dst_msg_t mm = {.type = DST_MSG_PLAN}, md;
        mm.plan.plan = mp;
        msgpack_sbuffer msb;
        DSI_CHECK_INT_EQ(encode(&mm, &msb), DSI_OK);
        DSI_CHECK_INT_EQ(dst_msg_decode(msb.data, msb.size, &md, err, sizeof(err)), DSI_OK);
        DSI_CHECK(md.plan.plan.mtp_offsets != NULL && md.plan.plan.mtp_holders != mtp_hold);
        DSI_CHECK_INT_EQ(md.plan.plan.mtp_offsets[3], 4);
        DSI_CHECK_INT_EQ(md.plan.plan.mtp_holders[2], 11);
        DSI_CHECK(dst_plan_holds_mtp(&md.plan.plan, 1, 12) &&
                  !dst_plan_holds_mtp(&md.plan.plan, 0, 12));
        dst_msg_free(&md);
        msgpack_sbuffer_destroy(&msb);
        /* without them the plan decodes with none */
        DSI_CHECK_INT_EQ(encode(&m, &msb), DSI_OK);
        DSI_CHECK_INT_EQ(dst_msg_decode(msb.data, msb.size, &md, err, sizeof(err)), DSI_OK);
        DSI_CHECK(md.plan.plan.mtp_offsets == NULL && md.plan.plan.mtp_holders == NULL);
        dst_msg_free(&md);
        msgpack_sbuffer_destroy(&msb);
    }
    uint32_t mtp_first_stage[4] = {11, 10, 11, 12}, mtp_twice[4] = {11, 12, 12, 12};
    uint32_t mtp_unheld[4] = {0, 1, 1, 4};
    struct {
        const char *what;
        uint32_t *off, *hold;
        const char *needle;
    } mcases[] = {
        {"MTP holder in stage 0", mtp_off, mtp_first_stage, "not in the last stage"},
        {"MTP holder twice", mtp_off, mtp_twice, "listed twice"},
        {"MTP expert unheld", mtp_unheld, mtp_hold, "no holder"},
        {"MTP offsets alone", mtp_off, NULL, "mtp_holders beside it"},
    };
    for (size_t i = 0; i < sizeof(mcases) / sizeof(mcases[0]); i++) {
        dst_plan_t bp = *p;
        bp.mtp_offsets = mcases[i].off;
        bp.mtp_holders = mcases[i].hold;
        err[0] = 0;
        DSI_CHECK(dst_msg_plan_check(&bp, err, sizeof(err)) != DSI_OK);
        if (strstr(err, mcases[i].needle) == NULL) {
            fprintf(stderr, "  plan %s: \"%s\" lacks \"%s\"\n", mcases[i].what, err,
                    mcases[i].needle);
            DSI_CHECK(0);
        }
    }

    /* A dense-only plan (no MoE layer) has one offset and no holders. */
    dst_plan_t dense = *p;
    uint32_t zero = 0;
    dense.first_moe_layer = 4;
    dense.expert_offsets = &zero;
    dense.expert_holders = NULL;
    DSI_CHECK_INT_EQ(dst_msg_plan_check(&dense, err, sizeof(err)), DSI_OK);
    dst_msg_t dm = {.type = DST_MSG_PLAN}, dd;
    dm.plan.plan = dense;
    msgpack_sbuffer sb;
    DSI_CHECK_INT_EQ(encode(&dm, &sb), DSI_OK);
    DSI_CHECK_INT_EQ(dst_msg_decode(sb.data, sb.size, &dd, err, sizeof(err)), DSI_OK);
    dst_msg_free(&dd);
    msgpack_sbuffer_destroy(&sb);

    /* Offsets array of the wrong length on the wire. */
    body_t b;
    body_begin(&b, 8, DST_MSG_PLAN, DST_PROTO_VERSION);
    kv_u(&b, "epoch", 1);
    kv_u(&b, "n_layers", 1);
    kv_u(&b, "first_moe_layer", 0);
    kv_u(&b, "n_experts", 2);
    key(&b, "stages");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 2);
    kv_u(&b, "first", 0);
    kv_u(&b, "end", 1);
    key(&b, "nodes");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 4);
    kv_u(&b, "id", 1);
    kv_u(&b, "stage", 0);
    kv_u(&b, "mem_budget", 5);
    kv_u(&b, "mem_planned", 5);
    key(&b, "expert_offsets");
    msgpack_pack_array(&b.pk, 2); /* 3 needed */
    msgpack_pack_uint32(&b.pk, 0);
    msgpack_pack_uint32(&b.pk, 1);
    key(&b, "expert_holders");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_uint32(&b.pk, 1);
    expect_bad("offsets length", &b, DSI_ERR_PROTOCOL, "expert_offsets: 2 entries");
}

static void test_other_rules(void)
{
    dst_msg_t m;
    msgpack_sbuffer sb;
    char err[256];
    /* TOKENS without tokens needs a finish reason; finish must be known. */
    sample(DST_MSG_TOKENS, &m);
    m.tokens.n_tokens = 0;
    m.tokens.finish = DST_FINISH_NONE;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    m.tokens.finish = DST_FINISH_STOP;
    DSI_CHECK_INT_EQ(dst_msg_check(&m, err, sizeof(err)), DSI_OK);
    m.tokens.finish = DST_FINISH_END;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    /* TOKENS.spec (speculative decoding across stages): round trip, then its limits. */
    sample(DST_MSG_TOKENS, &m);
    m.tokens.has_spec = 1;
    m.tokens.rollback = 2;
    m.tokens.n_drafts = 3;
    m.tokens.drafts[0] = 5;
    m.tokens.drafts[1] = 129279;
    m.tokens.drafts[2] = 0;
    {
        dst_msg_t d;
        msgpack_sbuffer a;
        DSI_CHECK_INT_EQ(encode(&m, &a), DSI_OK);
        DSI_CHECK_INT_EQ(dst_msg_decode(a.data, a.size, &d, err, sizeof(err)), DSI_OK);
        DSI_CHECK_INT_EQ(d.tokens.has_spec, 1);
        DSI_CHECK_INT_EQ(d.tokens.rollback, 2);
        DSI_CHECK_INT_EQ(d.tokens.n_drafts, 3);
        DSI_CHECK_INT_EQ(d.tokens.drafts[1], 129279);
        dst_msg_free(&d);
        msgpack_sbuffer_destroy(&a);
        m.tokens.n_drafts = 0; /* no drafts (the context's end): still a step's last TOKENS */
        DSI_CHECK_INT_EQ(encode(&m, &a), DSI_OK);
        DSI_CHECK_INT_EQ(dst_msg_decode(a.data, a.size, &d, err, sizeof(err)), DSI_OK);
        DSI_CHECK_INT_EQ(d.tokens.has_spec, 1);
        DSI_CHECK_INT_EQ(d.tokens.n_drafts, 0);
        dst_msg_free(&d);
        msgpack_sbuffer_destroy(&a);
    }
    m.tokens.n_drafts = DST_MSG_SPEC_MAX_K + 1;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "TOKENS.spec") != NULL);
    m.tokens.n_drafts = 1;
    m.tokens.drafts[0] = -1;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    m.tokens.drafts[0] = 1;
    m.tokens.rollback = DST_MSG_SPEC_MAX_K + 1;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    /* PEERS with a node twice. */
    sample(DST_MSG_PEERS, &m);
    peer_list[1].node_id = peer_list[0].node_id;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "twice") != NULL);
    /* SUBMIT claiming every token was generated (a prompt is never empty). */
    sample(DST_MSG_SUBMIT, &m);
    m.submit.n_generated = m.submit.n_tokens;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "n_generated") != NULL);
    /* SUBMIT sharing every token of its prompt (the last one must be computed), or its own. */
    sample(DST_MSG_SUBMIT, &m);
    m.submit.fork_len = m.submit.n_tokens;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "fork_len") != NULL);
    m.submit.fork_len = 1;
    m.submit.fork_of = m.submit.seq_id;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    /* SUBMIT moving rows it has none of; kv_move not a boolean. */
    sample(DST_MSG_SUBMIT, &m);
    m.submit.fork_len = 0;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "kv_move") != NULL);
    m.submit.fork_len = 3;
    m.submit.kv_move = 2;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    m.submit.kv_move = 0;
    m.submit.no_prefix = 2; /* not a boolean */
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "no_prefix") != NULL);
    m.submit.no_prefix = 0;
    DSI_CHECK_INT_EQ(dst_msg_check(&m, err, sizeof(err)), DSI_OK);
    /* KV_MOVE of no rows, beyond the token limit, or to the sequence itself; KV_DONE.ok. */
    sample(DST_MSG_KV_MOVE, &m);
    m.kv_move.n_tokens = 0;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "n_tokens") != NULL);
    m.kv_move.n_tokens = DST_MSG_MAX_TOKENS + 1;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    m.kv_move.n_tokens = 5;
    m.kv_move.to_seq = m.kv_move.seq_id;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "to_seq") != NULL);
    /* KV_MOVE of layers that are no range: the whole slice is both 0. */
    sample(DST_MSG_KV_MOVE, &m);
    m.kv_move.first_layer = 5;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "layers") != NULL);
    m.kv_move.end_layer = 0;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    m.kv_move.first_layer = 0;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_OK);
    sample(DST_MSG_KV_DONE, &m);
    m.kv_done.ok = 2;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    m.kv_done.ok = 1;
    m.kv_done.text[0] = '\x01';
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "text") != NULL);
    DSI_CHECK_STR_EQ(dst_msg_type_name(DST_MSG_KV_MOVE), "KV_MOVE");
    /* PLAN whose live flag is not 0, 1 or 2. */
    sample(DST_MSG_PLAN, &m);
    m.plan.live = 3;
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    DSI_CHECK(strstr(err, "live") != NULL);
    m.plan.live = 2; /* a restart that keeps the KV caches */
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_OK);
    /* LOAD_STATS with counts of the wrong length on the wire. */
    sample(DST_MSG_LOAD_STATS, &m);
    m.load_stats.n_layers = 1;
    encode(&m, &sb); /* encodes 8 counts: valid for 1 x 8 */
    msgpack_sbuffer_destroy(&sb);
    body_t b;
    body_begin(&b, 7, DST_MSG_LOAD_STATS, DST_PROTO_VERSION);
    kv_u(&b, "node_id", 1);
    kv_u(&b, "epoch", 1);
    kv_u(&b, "window_ms", 1);
    kv_u(&b, "first_layer", 3);
    kv_u(&b, "n_layers", 2);
    kv_u(&b, "n_experts", 2);
    key(&b, "counts");
    msgpack_pack_array(&b.pk, 3);
    for (int i = 0; i < 3; i++)
        msgpack_pack_uint32(&b.pk, 1);
    expect_bad("counts length", &b, DSI_ERR_PROTOCOL, "counts: 3 entries");
    /* HEARTBEAT.spec: more drafts accepted than made; counts of two lengths. */
    for (int v = 0; v < 2; v++) {
        body_begin(&b, 4, DST_MSG_HEARTBEAT, DST_PROTO_VERSION);
        kv_u(&b, "node_id", 1);
        kv_u(&b, "seq", 1);
        kv_u(&b, "time_ns", 1);
        key(&b, "spec");
        msgpack_pack_map(&b.pk, 6);
        kv_u(&b, "steps", 3);
        kv_u(&b, "emitted", 4);
        kv_u(&b, "draft_ns", 5);
        kv_u(&b, "verify_ns", 6);
        key(&b, "drafted");
        msgpack_pack_array(&b.pk, 2);
        msgpack_pack_uint32(&b.pk, 3);
        msgpack_pack_uint32(&b.pk, 1);
        key(&b, "accepted");
        msgpack_pack_array(&b.pk, v == 0 ? 2 : 1);
        msgpack_pack_uint32(&b.pk, 1);
        if (v == 0)
            msgpack_pack_uint32(&b.pk, 2);
        expect_bad(v == 0 ? "spec accepted > drafted" : "spec lengths", &b, DSI_ERR_PROTOCOL,
                   v == 0 ? "2 drafts accepted of 1" : "2 drafted and 1 accepted");
    }
    /* WELCOME heartbeat 0 */
    sample(DST_MSG_WELCOME, &m);
    m.welcome.heartbeat_ms = 0;
    msgpack_sbuffer_init(&sb);
    DSI_CHECK_INT_EQ(dst_msg_encode(&m, &sb, err, sizeof(err)), DSI_ERR_INVALID_ARG);
    msgpack_sbuffer_destroy(&sb);
    /* An unterminated caller string is refused, not over-read. */
    sample(DST_MSG_SHUTDOWN, &m);
    memset(m.shutdown.reason, 'x', sizeof(m.shutdown.reason));
    DSI_CHECK(dst_msg_check(&m, err, sizeof(err)) == DSI_ERR_PROTOCOL);
    /* error_init sanitizes control characters and keeps a negative code. */
    dst_msg_error_init(&m, DSI_OK, 0, "line1\nline2\x1b[31m \xff");
    DSI_CHECK_INT_EQ(dst_msg_check(&m, err, sizeof(err)), DSI_OK);
    DSI_CHECK(m.error.code < 0);
    DSI_CHECK(strchr(m.error.text, '\n') == NULL);
    DSI_CHECK_STR_EQ(dst_msg_type_name(DST_MSG_SWITCHED), "SWITCHED");
    DSI_CHECK_STR_EQ(dst_msg_type_name(9), "UNKNOWN"); /* retired: REPLACE_EXPERTS */
    DSI_CHECK_STR_EQ(dst_msg_type_name(1000), "UNKNOWN");
}

/* ---- hostile bytes ----------------------------------------------------------------------------
 */

static void test_hostile_bytes(void)
{
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
        const char *needle;
    } cases[] = {
        {"array claiming 2^32-1 items", "\xdd\xff\xff\xff\xff", 5, "claims"},
        {"map claiming 2^32-1 pairs", "\xdf\xff\xff\xff\xff\x01", 6, "claims"},
        {"str claiming 4 GiB",
         "\xdb\xff\xff\xff\xff"
         "abc",
         8, "truncated"},
        {"bin claiming 4 GiB", "\xc6\xff\xff\xff\xff", 5, "truncated"},
        {"reserved byte", "\xc1", 1, "0xc1"},
        {"ext type", "\xd4\x01\x02", 3, "ext"},
        {"bare int", "\x05", 1, "expected map"},
        {"two objects", "\x80\x80", 2, "trailing"},
        {"cut array16 header", "\xdc\x00", 2, "truncated"},
        {"nested too deep", "\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x00", 11, "deeper"},
        {"map with int key", "\x81\x01\x02", 3, "missing field"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_fail(cases[i].what, cases[i].bytes, cases[i].len, DSI_ERR_PROTOCOL, cases[i].needle);
    expect_fail("empty", "", 0, DSI_ERR_PROTOCOL, "empty");
    /* A map with more than 32 entries is refused before any field is read. */
    body_t b;
    body_begin(&b, 40, DST_MSG_CANCEL, DST_PROTO_VERSION);
    for (int i = 0; i < 40; i++)
        kv_u(&b, "k", (uint64_t)i);
    expect_bad("40 fields", &b, DSI_ERR_PROTOCOL, "fields");
}

/* Every proper prefix of every valid body fails cleanly. */
static void test_truncation(void)
{
    int failures = 0;
    for (int t = DST_MSG_HELLO; t < DST_MSG_TYPE_END; t++) {
        if (!type_in_use(t))
            continue;
        dst_msg_t m, d;
        msgpack_sbuffer sb;
        char err[256];
        sample((dst_msg_type_t)t, &m);
        encode(&m, &sb);
        for (size_t cut = 0; cut < sb.size; cut++) {
            /* a heap copy of exactly `cut` bytes, so ASan sees any over-read */
            char *copy = malloc(cut ? cut : 1);
            memcpy(copy, sb.data, cut);
            if (dst_msg_decode(copy, cut, &d, err, sizeof(err)) == DSI_OK) {
                failures++;
                dst_msg_free(&d);
            }
            free(copy);
        }
        msgpack_sbuffer_destroy(&sb);
    }
    DSI_CHECK_INT_EQ(failures, 0);
}

/* Random mutations of valid bodies never crash; whatever decodes also re-encodes. */
static void test_mutations(void)
{
    int decoded = 0, reencode_failed = 0;
    dsi_test_seed(12345);
    for (int it = 0; it < 6000; it++) {
        dst_msg_t m, d;
        msgpack_sbuffer sb;
        char err[256];
        int t = DST_MSG_HELLO + it % (DST_MSG_TYPE_END - 1);
        if (!type_in_use(t))
            continue;
        sample((dst_msg_type_t)t, &m);
        encode(&m, &sb);
        size_t len = sb.size;
        char *buf = malloc(len + 8);
        memcpy(buf, sb.data, len);
        int edits = 1 + (int)(dsi_test_randu() % 4);
        for (int e = 0; e < edits; e++) {
            uint32_t r = dsi_test_randu();
            size_t pos = dsi_test_randu() % len;
            if (r % 5 == 0 && len > 1) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1); /* delete a byte */
                len--;
            } else if (r % 5 == 1 && len < sb.size + 8) {
                memmove(buf + pos + 1, buf + pos, len - pos); /* insert a byte */
                buf[pos] = (char)dsi_test_randu();
                len++;
            } else if (r % 5 == 2) {
                buf[pos] ^= (char)(1u << (dsi_test_randu() % 8)); /* flip a bit */
            } else {
                buf[pos] = (char)dsi_test_randu();
            }
        }
        char *exact = malloc(len);
        memcpy(exact, buf, len);
        if (dst_msg_decode(exact, len, &d, err, sizeof(err)) == DSI_OK) {
            decoded++;
            msgpack_sbuffer again;
            if (encode(&d, &again) != DSI_OK)
                reencode_failed++;
            msgpack_sbuffer_destroy(&again);
            dst_msg_free(&d);
        }
        (void)dst_msg_peek_type(exact, len);
        free(exact);
        free(buf);
        msgpack_sbuffer_destroy(&sb);
    }
    printf("mutations: %d of 6000 still decoded (all re-encoded: %s)\n", decoded,
           reencode_failed ? "no" : "yes");
    DSI_CHECK_INT_EQ(reencode_failed, 0);
    /* Pure garbage, too. */
    for (int it = 0; it < 2000; it++) {
        size_t len = 1 + dsi_test_randu() % 64;
        char *g = malloc(len);
        for (size_t i = 0; i < len; i++)
            g[i] = (char)dsi_test_randu();
        dst_msg_t d;
        char err[128];
        if (dst_msg_decode(g, len, &d, err, sizeof(err)) == DSI_OK)
            dst_msg_free(&d);
        free(g);
    }
}

/* ---- secret -----------------------------------------------------------------------------------
 */

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_secret(void)
{
    uint8_t d[32];
    char h[65];
    dst_sha256("abc", 3, d);
    hex(d, 32, h);
    DSI_CHECK_STR_EQ(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    dst_sha256(two, strlen(two), d);
    hex(d, 32, h);
    DSI_CHECK_STR_EQ(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* RFC 4231 test cases 2 and 6 (key longer than a block). */
    const char *data = "what do ya want for nothing?";
    dst_hmac_sha256("Jefe", 4, data, strlen(data), d);
    hex(d, 32, h);
    DSI_CHECK_STR_EQ(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    uint8_t key131[131];
    memset(key131, 0xaa, sizeof(key131));
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    dst_hmac_sha256(key131, sizeof(key131), d6, strlen(d6), d);
    hex(d, 32, h);
    DSI_CHECK_STR_EQ(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    dst_secret_t s;
    setenv(DST_SECRET_ENV, "correct horse battery staple", 1);
    DSI_CHECK_INT_EQ(dst_secret_load(NULL, &s), DSI_OK);
    DSI_CHECK_INT_EQ(s.len, 28);
    uint8_t nonce[DST_MSG_NONCE_LEN], nonce2[DST_MSG_NONCE_LEN], auth[DST_MSG_AUTH_LEN];
    DSI_CHECK_INT_EQ(dst_secret_nonce(nonce), DSI_OK);
    DSI_CHECK_INT_EQ(dst_secret_nonce(nonce2), DSI_OK);
    DSI_CHECK(memcmp(nonce, nonce2, sizeof(nonce)) != 0);
    dst_secret_register_auth(&s, nonce, "node-1", auth);
    DSI_CHECK_INT_EQ(dst_secret_register_verify(&s, nonce, "node-1", auth), 1);
    DSI_CHECK_INT_EQ(dst_secret_register_verify(&s, nonce2, "node-1", auth), 0);
    DSI_CHECK_INT_EQ(dst_secret_register_verify(&s, nonce, "node-2", auth), 0);
    dst_secret_t other = s;
    other.bytes[0] ^= 1;
    DSI_CHECK_INT_EQ(dst_secret_register_verify(&other, nonce, "node-1", auth), 0);
    setenv(DST_SECRET_ENV, "short", 1);
    DSI_CHECK_INT_EQ(dst_secret_load(NULL, &s), DSI_ERR_AUTH);
    unsetenv(DST_SECRET_ENV);
    DSI_CHECK_INT_EQ(dst_secret_load(NULL, &s), DSI_ERR_NOT_FOUND);

    const char *dir = dsi_test_tmpdir();
    char path[512];
    snprintf(path, sizeof(path), "%s/secret", dir);
    FILE *f = fopen(path, "w");
    fputs("0123456789abcdef0123\n", f);
    fclose(f);
    chmod(path, 0644);
    DSI_CHECK_INT_EQ(dst_secret_load(path, &s), DSI_ERR_AUTH); /* world-readable */
    chmod(path, 0600);
    DSI_CHECK_INT_EQ(dst_secret_load(path, &s), DSI_OK);
    DSI_CHECK_INT_EQ(s.len, 20); /* newline dropped */
    snprintf(path, sizeof(path), "%s/missing", dir);
    DSI_CHECK_INT_EQ(dst_secret_load(path, &s), DSI_ERR_IO);
    dsi_test_rmtree(dir);
}

int main(void)
{
    test_round_trip();
    test_every_field();
    test_submit_rules();
    test_register_rules();
    test_plan_rules();
    test_other_rules();
    test_hostile_bytes();
    test_truncation();
    test_mutations();
    test_secret();
    return dsi_test_finish();
}
