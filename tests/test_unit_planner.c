/*
 * test_unit_planner.c - the memory model and the planner: the 671B numbers, plan invariants over
 * cluster shapes, byte balance, refusals that name the node, re-planning that keeps experts in
 * place, EPLB replicas under skewed load, and bad inputs.
 */
#include <stdlib.h>
#include <string.h>

#include "dsc_memory.h"
#include "dsc_planner.h"
#include "dsi_log.h"
#include "dsi_test.h"
#include "dsi_test_plan.h"

#define GiB (1ULL << 30)
#define MiB (1ULL << 20)

static uint32_t holders_of(const dst_plan_t *p, uint32_t layer, uint32_t e, const uint32_t **list)
{
    size_t i = (size_t)(layer - p->first_moe_layer) * p->n_experts + e;
    *list = p->expert_holders + p->expert_offsets[i];
    return p->expert_offsets[i + 1] - p->expert_offsets[i];
}

static int holds(const dst_plan_t *p, uint32_t layer, uint32_t e, uint32_t id)
{
    const uint32_t *h;
    uint32_t n = holders_of(p, layer, e, &h);
    for (uint32_t i = 0; i < n; i++) {
        if (h[i] == id)
            return 1;
    }
    return 0;
}

/* Largest (max - min) of one layer's expert copies over the nodes of its stage. */
static uint32_t layer_spread(const dst_plan_t *p)
{
    uint32_t worst = 0;
    for (uint32_t l = p->first_moe_layer; l < p->n_layers; l++) {
        uint32_t count[64] = {0}, lo = UINT32_MAX, hi = 0;
        for (uint32_t e = 0; e < p->n_experts; e++) {
            const uint32_t *h;
            uint32_t nh = holders_of(p, l, e, &h);
            for (uint32_t j = 0; j < nh; j++)
                count[dsc_plan_node_index(p, h[j])]++;
        }
        for (uint32_t i = 0; i < p->n_nodes; i++) {
            const dst_plan_stage_t *st = &p->stages[p->nodes[i].stage];
            if (l < st->first_layer || l >= st->end_layer)
                continue;
            lo = count[i] < lo ? count[i] : lo;
            hi = count[i] > hi ? count[i] : hi;
        }
        worst = hi - lo > worst ? hi - lo : worst;
    }
    return worst;
}

/* Checks the invariants independently of dsc_plan_check; returns failures found. */
static int verify(const dst_plan_t *p, const dsn_config_t *cfg, const dsc_node_desc_t *nodes,
                  uint32_t n, const dsc_plan_opts_t *opts)
{
    int bad = 0;
    bad += p->n_nodes != n;
    bad += p->stages[0].first_layer != 0;
    bad += p->stages[p->n_stages - 1].end_layer != (uint32_t)cfg->num_hidden_layers;
    for (uint32_t s = 0; s < p->n_stages; s++) {
        bad += p->stages[s].end_layer <= p->stages[s].first_layer;
        if (s > 0)
            bad += p->stages[s].first_layer != p->stages[s - 1].end_layer;
    }
    dsc_memory_t mem;
    dsc_memory_compute(cfg, opts->format, &mem);
    for (uint32_t i = 0; i < n; i++) {
        const dst_plan_node_t *pn = &p->nodes[i];
        bad += pn->node_id != nodes[i].id || pn->mem_budget != nodes[i].mem_budget;
        bad += pn->mem_planned > pn->mem_budget || pn->stage >= p->n_stages;
        dsc_node_usage_t u;
        dsc_plan_node_usage(p, i, cfg, &mem, opts, &u);
        bad += u.total != pn->mem_planned;
    }
    for (uint32_t l = p->first_moe_layer; l < p->n_layers; l++) {
        for (uint32_t e = 0; e < p->n_experts; e++) {
            const uint32_t *h;
            uint32_t nh = holders_of(p, l, e, &h);
            bad += nh == 0;
            for (uint32_t j = 0; j < nh; j++) {
                int k = dsc_plan_node_index(p, h[j]);
                const dst_plan_stage_t *st = k >= 0 ? &p->stages[p->nodes[k].stage] : NULL;
                bad += st == NULL || l < st->first_layer || l >= st->end_layer;
            }
        }
    }
    bad += dsc_plan_check(p) != DSI_OK;
    DSI_CHECK_INT_EQ(bad, 0);
    return bad;
}

static void test_memory_671b(void)
{
    dsn_config_t c = dsi_test_cfg_671b();
    dsc_memory_t fp8, bf16, int8, int4, int4g;
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, DSC_WEIGHT_FP8, &fp8), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, DSC_WEIGHT_BF16, &bf16), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, DSC_WEIGHT_INT8, &int8), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, DSC_WEIGHT_INT4, &int4), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, DSC_WEIGHT_INT4_G128, &int4g), DSI_OK);
    /* 671B in the main model, 685B with the MTP layer (the size of the HF release). */
    DSI_CHECK(fp8.params_main > 670000000000ULL && fp8.params_main < 672000000000ULL);
    DSI_CHECK(fp8.params_main + fp8.params_mtp > 684000000000ULL &&
              fp8.params_main + fp8.params_mtp < 686000000000ULL);
    /* fp8: ~1 byte per parameter + bf16 embedding/head + scales: 672-676 GB, ~689 GB with MTP. */
    DSI_CHECK(fp8.total_main > 672000000000ULL && fp8.total_main < 676000000000ULL);
    DSI_CHECK(fp8.total_main + fp8.mtp > 685000000000ULL &&
              fp8.total_main + fp8.mtp < 693000000000ULL);
    DSI_CHECK(bf16.total_main > 2 * fp8.params_main - 1000000000ULL &&
              bf16.total_main < 2 * fp8.params_main + 1000000000ULL);
    DSI_CHECK(int4g.total_main < int4.total_main && int4.total_main < int8.total_main);
    DSI_CHECK(int8.total_main > fp8.total_main && int8.total_main < bf16.total_main);
    /* One expert: 3 x 2048 x 7168 fp8 bytes + 3 x 16 x 56 f32 block scales. */
    DSI_CHECK_INT_EQ(fp8.expert, 3ULL * 2048 * 7168 + 3ULL * 16 * 56 * 4);
    DSI_CHECK_INT_EQ(bf16.expert, 3ULL * 2048 * 7168 * 2);
    /* kv_a_proj [576, 7168]: a partial last row block of 64 rows still has its scales. */
    DSI_CHECK_INT_EQ(dsc_memory_matrix_bytes(DSC_WEIGHT_FP8, 576, 7168),
                     576ULL * 7168 + 5ULL * 56 * 4);
    /* int4 rows are whole 16-byte chunks of 32 values (kernels/dsk.h): 33 values take 32 bytes. */
    DSI_CHECK_INT_EQ(dsc_memory_matrix_bytes(DSC_WEIGHT_INT4, 3, 33), 3ULL * 32 + 3ULL * 2 * 4);
    DSI_CHECK_INT_EQ(fp8.kv_token_layer, (512 + 64) * 4);
    DSI_CHECK_INT_EQ(fp8.embed, 129280ULL * 7168 * 2);
    DSI_CHECK_INT_EQ(fp8.n_moe_layers, 58);

    dsc_weight_format_t f;
    DSI_CHECK_INT_EQ(dsc_weight_format_parse("int4-g128", &f), DSI_OK);
    DSI_CHECK_INT_EQ(f, DSC_WEIGHT_INT4_G128);
    DSI_CHECK_STR_EQ(dsc_weight_format_name(DSC_WEIGHT_BF16), "bf16");
    DSI_CHECK_INT_EQ(dsc_weight_format_parse("fp4", &f), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_weight_format_parse(NULL, &f), DSI_ERR_INVALID_ARG);

    char buf[32];
    DSI_CHECK_STR_EQ(dsc_memory_format_bytes(212ULL * GiB + 400 * MiB, buf, sizeof(buf)),
                     "212.4 GiB");
    DSI_CHECK_STR_EQ(dsc_memory_format_bytes(512, buf, sizeof(buf)), "512 B");

    /* Configs the model cannot describe are refused, naming the field. */
    dsn_config_t bad = c;
    bad.hidden_size = 0;
    DSI_CHECK_INT_EQ(dsc_memory_compute(&bad, DSC_WEIGHT_FP8, &fp8), DSI_ERR_CONFIG);
    bad = c;
    bad.moe_layer_freq = 2;
    DSI_CHECK_INT_EQ(dsc_memory_compute(&bad, DSC_WEIGHT_FP8, &fp8), DSI_ERR_CONFIG);
    bad = c;
    bad.first_k_dense_replace = 62;
    DSI_CHECK_INT_EQ(dsc_memory_compute(&bad, DSC_WEIGHT_FP8, &fp8), DSI_ERR_CONFIG);
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, (dsc_weight_format_t)99, &fp8), DSI_ERR_INVALID_ARG);
}

/* PP x EP shapes on tiny-v3: every expert placed, budgets kept, equal bytes within a stage. */
static void test_shapes_tiny(void)
{
    dsn_config_t c = dsi_test_cfg_tiny();
    dsc_plan_opts_t o;
    dsi_test_plan_opts_small(&o);
    static const uint32_t shapes[][2] = {{2, 1}, {2, 2}, {3, 1}, {3, 3}, {4, 1}, {4, 2}, {4, 4}};
    for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
        uint32_t n = shapes[t][0];
        dsc_node_desc_t nodes[4];
        dsi_test_plan_nodes(nodes, n, 64 * MiB);
        o.n_stages = shapes[t][1];
        dst_plan_t p;
        dsc_plan_report_t rep;
        DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, n, &o, &p, &rep), DSI_OK);
        DSI_CHECK_INT_EQ(p.n_stages, shapes[t][1]);
        verify(&p, &c, nodes, n, &o);
        DSI_CHECK_INT_EQ(rep.expert_copies, 3 * 32);
        DSI_CHECK_INT_EQ(rep.replicas, 0);
        DSI_CHECK(layer_spread(&p) <= 1); /* every layer spread evenly over its stage */
        /* Within a stage of equal budgets, expert counts differ by at most one copy. */
        for (uint32_t s = 0; s < p.n_stages; s++) {
            uint64_t lo = UINT64_MAX, hi = 0;
            for (uint32_t i = 0; i < n; i++) {
                if (p.nodes[i].stage != s)
                    continue;
                lo = p.nodes[i].mem_planned < lo ? p.nodes[i].mem_planned : lo;
                hi = p.nodes[i].mem_planned > hi ? p.nodes[i].mem_planned : hi;
            }
            DSI_CHECK(hi - lo <= rep.mem.expert);
        }
        dsc_plan_cleanup(&p);
    }
    /* Default stage count: one stage when everything fits on every node. */
    dsc_node_desc_t nodes[3];
    dsi_test_plan_nodes(nodes, 3, 64 * MiB);
    o.n_stages = 0;
    dst_plan_t p;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 3, &o, &p, NULL), DSI_OK);
    DSI_CHECK_INT_EQ(p.n_stages, 1);
    dsc_plan_cleanup(&p);
}

/* Unequal budgets: bytes follow the budgets (equal use), and stage counts grow when needed. */
static void test_balance_and_stages(void)
{
    dsn_config_t c = dsi_test_cfg_671b();
    dsc_plan_opts_t o;
    dsc_plan_opts_default(&o);
    dsc_node_desc_t nodes[16];
    dsi_test_plan_nodes(nodes, 8, 128 * GiB);
    dst_plan_t p;
    dsc_plan_report_t rep;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 8, &o, &p, &rep), DSI_OK);
    DSI_CHECK_INT_EQ(p.n_stages, 1);
    verify(&p, &c, nodes, 8, &o);
    DSI_CHECK(rep.max_use < 0.9 && rep.max_use > 0.6);
    DSI_CHECK_INT_EQ(layer_spread(&p), 0); /* 256 experts / 8 nodes: 32 each in every layer */
    dsc_plan_cleanup(&p);

    /* 16 x 48 GiB cannot hold all non-expert weights on every node: more stages. */
    dsi_test_plan_nodes(nodes, 16, 48 * GiB);
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 16, &o, &p, &rep), DSI_OK);
    DSI_CHECK(p.n_stages > 1);
    verify(&p, &c, nodes, 16, &o);
    DSI_CHECK(layer_spread(&p) <= 1);
    /* The fewest stages: one fewer must be refused. */
    uint32_t fewest = p.n_stages;
    dsc_plan_cleanup(&p);
    o.n_stages = fewest - 1;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 16, &o, &p, &rep), DSI_ERR_CAPACITY);
    o.n_stages = 0;

    /* Mixed budgets 2:1: equal use (planned / budget) within one expert's worth. */
    for (uint32_t i = 0; i < 8; i++)
        nodes[i] = (dsc_node_desc_t){.id = 100 + i, .mem_budget = (i % 2 ? 96 : 192) * GiB};
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 8, &o, &p, &rep), DSI_OK);
    verify(&p, &c, nodes, 8, &o);
    double lo = 2, hi = 0;
    for (uint32_t i = 0; i < 8; i++) {
        double use = (double)p.nodes[i].mem_planned / (double)p.nodes[i].mem_budget;
        lo = use < lo ? use : lo;
        hi = use > hi ? use : hi;
    }
    DSI_CHECK(hi - lo < 0.02);
    DSI_CHECK_NEAR(hi, rep.max_use, 1e-12);
    dsc_plan_cleanup(&p);
}

static void test_refusals(void)
{
    dsn_config_t c = dsi_test_cfg_671b();
    dsc_plan_opts_t o;
    dsc_plan_opts_default(&o);
    dsc_node_desc_t nodes[8];
    dsi_test_plan_nodes(nodes, 4, 128 * GiB);
    dst_plan_t p;
    memset(&p, 0, sizeof(p));
    dsc_plan_report_t rep;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, &rep), DSI_ERR_CAPACITY);
    DSI_CHECK(strstr(rep.reason, "the model needs") != NULL);
    DSI_CHECK(strstr(rep.reason, "4 nodes x 128.0 GiB = 512.0 GiB") != NULL);
    DSI_CHECK(p.stages == NULL && p.expert_offsets == NULL); /* output untouched */
    /* Each node is named with what it lacks of an even share; the report has the numbers. */
    DSI_CHECK(strstr(rep.reason, "; each node needs about ") != NULL);
    DSI_CHECK(strstr(rep.reason, ": node 0 lacks ") != NULL);
    DSI_CHECK(strstr(rep.reason, ", node 3 lacks ") != NULL);
    DSI_CHECK_INT_EQ(rep.missing_node, DSC_PLAN_NO_NODE);
    DSI_CHECK(rep.missing_bytes > 100 * GiB);

    /* Enough memory in total, but node 12 cannot even hold its runtime overhead. */
    dsn_config_t t = dsi_test_cfg_tiny();
    o.kv_tokens = 1024;
    o.overhead = 4 * MiB;
    for (uint32_t i = 0; i < 3; i++)
        nodes[i] = (dsc_node_desc_t){.id = 10 + i, .mem_budget = 256 * MiB};
    nodes[2].mem_budget = 3 * MiB;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&t, nodes, 3, &o, &p, &rep), DSI_ERR_CAPACITY);
    DSI_CHECK(strncmp(rep.reason, "node 12 needs ", 14) == 0);
    DSI_CHECK(strstr(rep.reason, "more than its 3.0 MiB budget (stage") != NULL);
    DSI_CHECK_INT_EQ(rep.missing_node, 12);
    DSI_CHECK(rep.missing_bytes > 1 * MiB && rep.missing_bytes < 256 * MiB);
    nodes[2].name = "rack2-b"; /* a node's name (as it registered) is given with its id */
    DSI_CHECK_INT_EQ(dsc_planner_plan(&t, nodes, 3, &o, &p, &rep), DSI_ERR_CAPACITY);
    DSI_CHECK(strncmp(rep.reason, "node 12 'rack2-b' needs ", 24) == 0);

    /*
     * 671B on 8 x 90 GiB in one stage: the total fits, each node lacks about 10 GiB (8 stages
     * would fit: every node holds fewer non-expert weights then).
     */
    dsi_test_plan_nodes(nodes, 8, 90 * GiB);
    dsc_plan_opts_default(&o);
    o.n_stages = 1;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 8, &o, &p, &rep), DSI_ERR_CAPACITY);
    DSI_CHECK(strstr(rep.reason, "more than its 90.0 GiB budget") != NULL);
    DSI_CHECK(strstr(rep.reason, "node 0 needs ") == rep.reason);
    DSI_CHECK(strstr(rep.reason, "1856 experts") != NULL);
    o.n_stages = 0;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 8, &o, &p, &rep), DSI_OK);
    DSI_CHECK(p.n_stages > 1);
    verify(&p, &c, nodes, 8, &o);
    dsc_plan_cleanup(&p);
}

/* Removing a node moves only its experts; adding one back moves as few as it must take. */
static void test_replan(void)
{
    dsn_config_t c = dsi_test_cfg_tiny();
    dsc_plan_opts_t o;
    dsi_test_plan_opts_small(&o);
    dsc_node_desc_t nodes[4];
    dsi_test_plan_nodes(nodes, 4, 64 * MiB);
    dst_plan_t p4, p3, back;
    dsc_plan_report_t rep;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p4, &rep), DSI_OK);
    DSI_CHECK_INT_EQ(rep.experts_moved, 96); /* a fresh plan loads everything */

    /* Node 2 leaves. */
    dsc_node_desc_t three[3] = {nodes[0], nodes[1], nodes[3]};
    uint32_t held_by_2 = 0;
    for (uint32_t l = 1; l < 4; l++)
        for (uint32_t e = 0; e < 32; e++)
            held_by_2 += holds(&p4, l, e, 2);
    DSI_CHECK_INT_EQ(held_by_2, 24);
    o.previous = &p4;
    o.epoch = 2;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, three, 3, &o, &p3, &rep), DSI_OK);
    verify(&p3, &c, three, 3, &o);
    DSI_CHECK_INT_EQ(p3.epoch, 2);
    DSI_CHECK_INT_EQ(rep.experts_moved, held_by_2);
    DSI_CHECK_INT_EQ(rep.bytes_moved, held_by_2 * rep.mem.expert);
    int kept = 1;
    for (uint32_t l = 1; l < 4; l++)
        for (uint32_t e = 0; e < 32; e++)
            for (uint32_t j = 0; j < 3; j++)
                kept &= !holds(&p4, l, e, three[j].id) || holds(&p3, l, e, three[j].id);
    DSI_CHECK(kept);

    /* Node 2 comes back: it takes 24 experts, the others shed them, nobody else moves. */
    o.previous = &p3;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &back, &rep), DSI_OK);
    verify(&back, &c, nodes, 4, &o);
    DSI_CHECK_INT_EQ(rep.experts_moved, 24);

    /* A live switch p3 -> back holds both placements: the old nodes still have the 24 experts
     * they shed. That fits their budgets; without the headroom of one shed expert it does not. */
    DSI_CHECK_INT_EQ(dsc_plan_switch_overflow(&p3, &back, &rep.mem), -1);
    int shed = -1;
    for (uint32_t i = 0; i < back.n_nodes && shed < 0; i++) {
        uint32_t id = back.nodes[i].node_id;
        for (uint32_t l = 1; l < 4 && shed < 0; l++)
            for (uint32_t e = 0; e < 32 && shed < 0; e++)
                if (holds(&p3, l, e, id) && !holds(&back, l, e, id))
                    shed = (int)i;
    }
    DSI_CHECK(shed >= 0);
    uint64_t budget = back.nodes[shed].mem_budget;
    back.nodes[shed].mem_budget = back.nodes[shed].mem_planned + rep.mem.expert - 1;
    DSI_CHECK_INT_EQ(dsc_plan_switch_overflow(&p3, &back, &rep.mem), back.nodes[shed].node_id);
    back.nodes[shed].mem_budget = budget;
    /* The joining node holds nothing old: only its plan counts. */
    DSI_CHECK_INT_EQ(dsc_plan_switch_overflow(&back, &back, &rep.mem), -1);

    /* Two stages of two; one node leaves: the stage ranges stay, only its experts move. */
    dsc_plan_cleanup(&p4);
    dsc_plan_cleanup(&p3);
    o.previous = NULL;
    o.n_stages = 2;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p4, &rep), DSI_OK);
    uint32_t held_by_3 = 0;
    for (uint32_t l = 1; l < 4; l++)
        for (uint32_t e = 0; e < 32; e++)
            held_by_3 += holds(&p4, l, e, 3);
    o.previous = &p4;
    o.n_stages = 0;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 3, &o, &p3, &rep), DSI_OK);
    verify(&p3, &c, nodes, 3, &o);
    DSI_CHECK_INT_EQ(p3.n_stages, 2);
    DSI_CHECK_INT_EQ(p3.stages[0].end_layer, p4.stages[0].end_layer);
    DSI_CHECK_INT_EQ(rep.experts_moved, held_by_3);

    /* A previous plan of another model shape is refused. */
    dsn_config_t other = dsi_test_cfg_671b();
    dst_plan_t x;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&other, nodes, 3, &o, &x, &rep), DSI_ERR_INVALID_ARG);
    dsc_plan_cleanup(&p4);
    dsc_plan_cleanup(&p3);
    dsc_plan_cleanup(&back);
}

/* Expected max / mean load per node over layers, from the plan alone. */
static double measured_imbalance(const dst_plan_t *p, const uint64_t *load)
{
    double total = 0;
    for (uint32_t l = p->first_moe_layer; l < p->n_layers; l++) {
        double per[64] = {0}, sum = 0, max = 0;
        for (uint32_t e = 0; e < p->n_experts; e++) {
            const uint32_t *h;
            uint32_t nh = holders_of(p, l, e, &h);
            double w = (double)load[(l - p->first_moe_layer) * p->n_experts + e] / nh;
            for (uint32_t j = 0; j < nh; j++)
                per[h[j]] += w;
        }
        for (uint32_t i = 0; i < p->n_nodes; i++) {
            sum += per[i];
            max = per[i] > max ? per[i] : max;
        }
        total += max / (sum / p->n_nodes);
    }
    return total / (p->n_layers - p->first_moe_layer);
}

static void test_replicas(void)
{
    dsn_config_t c = dsi_test_cfg_tiny();
    dsc_plan_opts_t o;
    dsi_test_plan_opts_small(&o);
    dsc_node_desc_t nodes[4];
    dsi_test_plan_nodes(nodes, 4, 64 * MiB);
    /* Zipf-like skew, a different hot expert per layer. */
    uint64_t load[3 * 32];
    for (uint32_t l = 0; l < 3; l++)
        for (uint32_t e = 0; e < 32; e++)
            load[l * 32 + e] = 100000 / (1 + (e + 32 - 7 * l) % 32) + 10;
    o.load = load;
    dst_plan_t p0, p8;
    dsc_plan_report_t r0, r8;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p0, &r0), DSI_OK);
    o.redundant_experts = 8;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p8, &r8), DSI_OK);
    verify(&p0, &c, nodes, 4, &o);
    verify(&p8, &c, nodes, 4, &o);
    DSI_CHECK_INT_EQ(r8.replicas, 3 * 8);
    DSI_CHECK_INT_EQ(r8.expert_copies, 3 * 40);
    DSI_CHECK(r8.load_imbalance < r0.load_imbalance);
    DSI_CHECK(r0.load_imbalance > 1.5); /* the skew is real */
    DSI_CHECK_NEAR(measured_imbalance(&p8, load), r8.load_imbalance, 1e-9);
    DSI_CHECK_NEAR(measured_imbalance(&p0, load), r0.load_imbalance, 1e-9);
    /* Replicas went to the hottest: load/(copies-1) of a replicated expert >= any single one. */
    for (uint32_t l = 1; l < 4; l++) {
        double min_rep = 1e300, max_single = 0;
        for (uint32_t e = 0; e < 32; e++) {
            const uint32_t *h;
            uint32_t nh = holders_of(&p8, l, e, &h);
            double ld = (double)load[(l - 1) * 32 + e];
            if (nh > 1)
                min_rep = ld / (nh - 1) < min_rep ? ld / (nh - 1) : min_rep;
            else
                max_single = ld > max_single ? ld : max_single;
        }
        DSI_CHECK(min_rep >= max_single);
        /* The hottest expert of the layer is held by every node. */
        const uint32_t *h;
        DSI_CHECK_INT_EQ(holders_of(&p8, l, (7 * (l - 1)) % 32, &h), 4);
    }
    /* Hierarchical policy without replicas: each node holds whole expert groups (8 experts). */
    int whole = 1;
    for (uint32_t l = 1; l < 4; l++)
        for (uint32_t e = 0; e < 32; e++) {
            const uint32_t *h, *g;
            holders_of(&p0, l, e, &h);
            holders_of(&p0, l, e - e % 8, &g);
            whole &= h[0] == g[0];
        }
    DSI_CHECK(whole);
    dsc_plan_cleanup(&p0);
    dsc_plan_cleanup(&p8);
}

/* A release config from deploy/ (DSINFER_SOURCE is the source tree). */
static dsn_config_t cfg_deploy(const char *name)
{
    const char *src = getenv("DSINFER_SOURCE");
    char path[4096];
    snprintf(path, sizeof(path), "%s/deploy/%s/config.json", src != NULL ? src : "../..", name);
    dsn_config_t c;
    memset(&c, 0, sizeof(c));
    DSI_CHECK_INT_EQ(dsn_config_load(path, &c), DSI_OK);
    return c;
}

/*
 * The V2 family from its release configs: DeepSeek-V2 (236B; 160 experts in 8 groups, 6 per
 * token, 2 shared, softmax router without biases, bf16) and V2-Lite (64 experts, one group): the
 * memory model counts 235.7B / 15.7B parameters and no bias bytes; plans on 4 nodes hold every
 * expert, and redundant experts placed by load lower the imbalance as for V3.
 */
static void test_v2_family(void)
{
    dsn_config_t c = cfg_deploy("deepseek-v2-236b");
    DSI_CHECK_INT_EQ(c.n_routed_experts, 160);
    DSI_CHECK_INT_EQ(c.num_experts_per_tok, 6);
    DSI_CHECK_INT_EQ(c.fp8, 0);
    dsc_memory_t m;
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, DSC_WEIGHT_BF16, &m), DSI_OK);
    DSI_CHECK_INT_EQ(m.router, 160ULL * 5120 * 2); /* bf16 gate, no correction bias */
    DSI_CHECK_INT_EQ(m.n_moe_layers, 59);
    DSI_CHECK_INT_EQ(m.mtp, 0);
    DSI_CHECK(m.params_main > 235.6e9 && m.params_main < 235.8e9);
    DSI_CHECK_INT_EQ(m.shared_experts, 3ULL * 5120 * (2 * 1536) * 2);

    dsc_plan_opts_t o;
    dsc_plan_opts_default(&o);
    o.format = DSC_WEIGHT_BF16;
    dsc_node_desc_t nodes[4];
    dsi_test_plan_nodes(nodes, 4, 256 * GiB);
    enum { L = 59, E = 160 };
    static uint64_t load[L * E];
    for (uint32_t l = 0; l < L; l++)
        for (uint32_t e = 0; e < E; e++)
            load[l * E + e] = 1000000 / (1 + (e + E - 13 * l) % E) + 100;
    o.load = load;
    dst_plan_t p0, p16;
    dsc_plan_report_t r0, r16;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p0, &r0), DSI_OK);
    DSI_CHECK_INT_EQ(verify(&p0, &c, nodes, 4, &o), 0);
    DSI_CHECK_INT_EQ(r0.expert_copies, L * E);
    o.redundant_experts = 16;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p16, &r16), DSI_OK);
    DSI_CHECK_INT_EQ(verify(&p16, &c, nodes, 4, &o), 0);
    DSI_CHECK_INT_EQ(r16.replicas, L * 16);
    DSI_CHECK(r16.load_imbalance < r0.load_imbalance);
    DSI_CHECK_NEAR(measured_imbalance(&p16, load), r16.load_imbalance, 1e-9);
    dsc_plan_cleanup(&p0);
    dsc_plan_cleanup(&p16);
    /* 2 nodes of 128 GiB cannot hold 439 GiB of bf16 weights */
    dsi_test_plan_nodes(nodes, 2, 128 * GiB);
    o.load = NULL;
    o.redundant_experts = 0;
    dsc_plan_report_t rep;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 2, &o, &p0, &rep), DSI_ERR_CAPACITY);

    c = cfg_deploy("deepseek-v2-lite-16b");
    DSI_CHECK_INT_EQ(c.q_lora_rank, 0);
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, DSC_WEIGHT_BF16, &m), DSI_OK);
    DSI_CHECK(m.params_main > 15.6e9 && m.params_main < 15.8e9);
    dsi_test_plan_nodes(nodes, 3, 64 * GiB);
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 3, &o, &p0, &rep), DSI_OK);
    DSI_CHECK_INT_EQ(verify(&p0, &c, nodes, 3, &o), 0);
    DSI_CHECK_INT_EQ(rep.expert_copies, 26 * 64);
    dsc_plan_cleanup(&p0);
}

static void test_bad_inputs(void)
{
    dsn_config_t c = dsi_test_cfg_tiny();
    dsc_plan_opts_t o;
    dsc_plan_opts_default(&o);
    dsc_node_desc_t nodes[4];
    dsi_test_plan_nodes(nodes, 4, 64 * MiB);
    dst_plan_t p;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 0, &o, &p, NULL), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, NULL, 2, &o, &p, NULL), DSI_ERR_INVALID_ARG);
    nodes[1].id = 0;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, NULL), DSI_ERR_INVALID_ARG);
    dsi_test_plan_nodes(nodes, 4, 64 * MiB);
    nodes[3].mem_budget = 0;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, NULL), DSI_ERR_INVALID_ARG);
    dsi_test_plan_nodes(nodes, 4, 64 * MiB);
    o.n_stages = 5; /* only 4 layers and 4 nodes */
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, NULL), DSI_ERR_INVALID_ARG);
    o.n_stages = 0;
    o.redundant_experts = 4; /* no load counts */
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, NULL), DSI_ERR_INVALID_ARG);
    o.redundant_experts = 0;
    o.format = (dsc_weight_format_t)42;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, NULL), DSI_ERR_INVALID_ARG);
    o.format = DSC_WEIGHT_FP8;

    /* dsc_plan_check catches broken plans (as a decoder would hand them over). */
    o.kv_tokens = 1024;
    o.overhead = 1 * MiB;
    o.n_stages = 2;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, NULL), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_OK);
    uint32_t saved = p.expert_holders[0];
    p.expert_holders[0] = 99; /* unknown node */
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_ERR_INVALID_ARG);
    /* A node of the stage that does not own the first MoE layer. */
    uint32_t owner = p.stages[0].end_layer > p.first_moe_layer ? 0 : 1;
    for (uint32_t i = 0; i < p.n_nodes; i++) {
        if (p.nodes[i].stage != owner)
            p.expert_holders[0] = p.nodes[i].node_id;
    }
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_ERR_INVALID_ARG);
    p.expert_holders[0] = saved;
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_OK);
    p.stages[0].end_layer++; /* gap / overlap between stages */
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_ERR_INVALID_ARG);
    p.stages[0].end_layer--;
    p.nodes[1].mem_planned = p.nodes[1].mem_budget + 1;
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_ERR_INVALID_ARG);
    p.nodes[1].mem_planned = 0;
    p.expert_offsets[1] = p.expert_offsets[0]; /* expert 0 of the first MoE layer unheld */
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_ERR_INVALID_ARG);
    dsc_plan_cleanup(&p);
    dsc_plan_cleanup(&p); /* a zeroed plan is fine */
    DSI_CHECK_INT_EQ(dsc_plan_check(NULL), DSI_ERR_INVALID_ARG);
}

/* MTP experts of node id in p (each expert's holders listed once, in the last stage). */
static uint32_t mtp_held(const dst_plan_t *p, uint32_t id)
{
    uint32_t n = 0;
    for (uint32_t e = 0; e < p->n_experts; e++)
        n += (uint32_t)dst_plan_holds_mtp(p, e, id);
    return n;
}

/*
 * With speculative decoding the MTP layer's routed experts are spread over the last stage's nodes
 * (one copy each, contiguous runs), its non-expert part and cache on each of them; every node's
 * MTP bytes count its own experts once, mem_planned agrees, and a re-plan keeps them in place.
 */
static void test_mtp_experts(void)
{
    dsn_config_t c = dsi_test_cfg_tiny();
    c.num_nextn_predict_layers = 1;
    dsc_plan_opts_t o;
    dsi_test_plan_opts_small(&o);
    o.mtp = 1;
    dsc_node_desc_t nodes[6];
    dsi_test_plan_nodes(nodes, 6, 64 * MiB);
    dst_plan_t p, q;
    dsc_plan_report_t rep;
    dsc_memory_t mem;
    DSI_CHECK_INT_EQ(dsc_memory_compute(&c, o.format, &mem), DSI_OK);
    uint64_t per_expert = mem.mtp_experts / 32, whole = dsc_planner_mtp_bytes(&mem, &o);
    DSI_CHECK(per_expert > 0 && per_expert == mem.expert);

    /* 2 stages x 3 nodes: 11 + 11 + 10 experts on the last stage, none on stage 0. */
    o.n_stages = 2;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 6, &o, &p, &rep), DSI_OK);
    verify(&p, &c, nodes, 6, &o);
    DSI_CHECK(p.mtp_offsets != NULL && p.mtp_holders != NULL);
    DSI_CHECK_INT_EQ(p.mtp_offsets[32], 32); /* one holder each */
    uint32_t shares[6], total = 0;
    uint64_t mtp_bytes = 0;
    for (uint32_t i = 0; i < 6; i++) {
        shares[i] = mtp_held(&p, p.nodes[i].node_id);
        total += shares[i];
        dsc_node_usage_t u;
        dsc_plan_node_usage(&p, i, &c, &rep.mem, &o, &u);
        DSI_CHECK_INT_EQ(u.mtp_experts, shares[i]);
        if (p.nodes[i].stage == 1) {
            DSI_CHECK_INT_EQ(u.mtp, whole - mem.mtp_experts + shares[i] * per_expert);
            mtp_bytes += u.mtp;
        } else {
            DSI_CHECK_INT_EQ(shares[i], 0);
            DSI_CHECK_INT_EQ(u.mtp, 0);
        }
    }
    DSI_CHECK_INT_EQ(total, 32);
    DSI_CHECK_INT_EQ(shares[3], 11);
    DSI_CHECK_INT_EQ(shares[4], 11);
    DSI_CHECK_INT_EQ(shares[5], 10);
    /* Counted once per holder: the stage's MTP bytes are its non-expert part per node plus
     * every expert once. */
    DSI_CHECK_INT_EQ(mtp_bytes, 3 * (whole - mem.mtp_experts) + mem.mtp_experts);

    /* A re-plan without node 1 (stage 0) keeps the MTP experts where they were. */
    dsc_node_desc_t five[5] = {nodes[0], nodes[2], nodes[3], nodes[4], nodes[5]};
    o.previous = &p;
    o.n_stages = 0;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, five, 5, &o, &q, &rep), DSI_OK);
    verify(&q, &c, five, 5, &o);
    DSI_CHECK(q.mtp_offsets != NULL);
    DSI_CHECK(memcmp(q.mtp_holders, p.mtp_holders, 32 * sizeof(uint32_t)) == 0);
    dsc_plan_cleanup(&q);
    /* Without node 5 (a holder) they are spread afresh over the last stage's nodes. */
    dsc_node_desc_t rest[5] = {nodes[0], nodes[1], nodes[2], nodes[3], nodes[4]};
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, rest, 5, &o, &q, &rep), DSI_OK);
    verify(&q, &c, rest, 5, &o);
    total = 0;
    for (uint32_t i = 0; i < 5; i++)
        total += mtp_held(&q, q.nodes[i].node_id);
    DSI_CHECK_INT_EQ(total, 32);
    DSI_CHECK_INT_EQ(mtp_held(&q, 5), 0);
    dsc_plan_cleanup(&q);
    o.previous = NULL;

    /* The plan check refuses an MTP holder outside the last stage, or an unheld expert. */
    uint32_t saved = p.mtp_holders[0];
    p.mtp_holders[0] = p.nodes[0].node_id;
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_ERR_INVALID_ARG);
    p.mtp_holders[0] = saved;
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_OK);
    p.mtp_offsets[1] = 0;
    DSI_CHECK_INT_EQ(dsc_plan_check(&p), DSI_ERR_INVALID_ARG);
    dsc_plan_cleanup(&p);

    /* One node: it holds the whole layer, counted as before. */
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 1, &o, &p, &rep), DSI_OK);
    verify(&p, &c, nodes, 1, &o);
    DSI_CHECK_INT_EQ(mtp_held(&p, 0), 32);
    dsc_node_usage_t u;
    dsc_plan_node_usage(&p, 0, &c, &rep.mem, &o, &u);
    DSI_CHECK_INT_EQ(u.mtp, whole);
    dsc_plan_cleanup(&p);

    /* Without speculative decoding (or without the layer) the plan places nothing of it. */
    o.mtp = 0;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, &rep), DSI_OK);
    DSI_CHECK(p.mtp_offsets == NULL && p.mtp_holders == NULL);
    dsc_plan_cleanup(&p);
    o.mtp = 1;
    c.num_nextn_predict_layers = 0;
    DSI_CHECK_INT_EQ(dsc_planner_plan(&c, nodes, 4, &o, &p, &rep), DSI_OK);
    DSI_CHECK(p.mtp_offsets == NULL);
    dsc_plan_cleanup(&p);
}

int main(void)
{
    test_memory_671b();
    test_shapes_tiny();
    test_balance_and_stages();
    test_refusals();
    test_replan();
    test_replicas();
    test_v2_family();
    test_bad_inputs();
    test_mtp_experts();
    return dsi_test_finish();
}
