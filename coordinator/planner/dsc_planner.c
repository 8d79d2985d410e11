/*
 * dsc_planner.c - stages, layer ranges and expert counts per node (steps 1-3 of dsc_planner.h),
 * the refusal's explanation, and assembling the plan.
 */
#include "dsc_planner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_planner_impl.h"
#include "dsi_log.h"

#define MAX_NODES  4096
#define MAX_BUDGET (1ULL << 50)
#define MAX_KV_TOK (1ULL << 28) /* keeps tokens x layers x row bytes inside uint64_t */
#define LABEL_MAX  96           /* "node ID 'NAME'" */

void dsc_plan_opts_default(dsc_plan_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->format = DSC_WEIGHT_FP8;
    opts->kv_tokens = 32768;
    opts->overhead = 2ULL << 30;
}

uint64_t dsc_planner_mtp_bytes(const dsc_memory_t *mem, const dsc_plan_opts_t *opts)
{
    return opts->mtp ? mem->mtp + opts->kv_tokens * mem->mtp_kv_token : 0;
}

uint32_t dsc_planner_mtp_share(const dsc_memory_t *mem, const dsc_plan_opts_t *opts,
                               uint32_t n_experts, uint32_t k, uint32_t n)
{
    if (!opts->mtp || mem->mtp_experts == 0 || n_experts == 0 || n == 0)
        return 0;
    return n_experts / n + (k < n_experts % n);
}

/* Bytes of one of the MTP layer's routed experts (every MTP layer of the config counted). */
static uint64_t mtp_expert_bytes(const planner_t *p)
{
    return p->n_experts > 0 ? p->mem.mtp_experts / p->n_experts : 0;
}

/* The MTP layer and its cache on a node of the last stage holding `held` of its experts. */
static uint64_t mtp_node_bytes(const planner_t *p, uint32_t held)
{
    uint64_t all = dsc_planner_mtp_bytes(&p->mem, p->opts);
    if (all == 0 || p->n_experts == 0)
        return all;
    return all - p->mem.mtp_experts + (uint64_t)held * mtp_expert_bytes(p);
}

uint32_t dsc_planner_moe_layers(const planner_t *p, uint32_t first, uint32_t end)
{
    uint32_t a = first > p->first_moe ? first : p->first_moe;
    return end > a ? end - a : 0;
}

/* Non-expert bytes of a node in a stage with layers [a, b); on the last stage (of n_last nodes)
 * with the MTP layer, the largest share of its experts too. */
static uint64_t range_fixed(const planner_t *p, uint32_t s, uint32_t n_stages, uint32_t n_last,
                            uint32_t a, uint32_t b)
{
    uint64_t bytes =
        p->opts->overhead +
        dsc_memory_kv_layer(&p->mem, p->opts->kv_tokens, p->mem.kv_token_layer) * (b - a) +
        p->fixed_prefix[b] - p->fixed_prefix[a];
    if (s == 0)
        bytes += p->mem.embed;
    if (s == n_stages - 1)
        bytes += p->mem.head + mtp_node_bytes(p, dsc_planner_mtp_share(&p->mem, p->opts,
                                                                       p->n_experts, 0, n_last));
    return bytes;
}

uint64_t dsc_planner_stage_fixed(const planner_t *p, const layout_t *lay, uint32_t s)
{
    return range_fixed(p, s, lay->n_stages, lay->n_last, lay->cuts[s], lay->cuts[s + 1]);
}

/* ---- step 1: nodes to stages ---- */

static int prev_stage_of(const dst_plan_t *prev, uint32_t id)
{
    int i = prev != NULL ? dsc_plan_node_index(prev, id) : -1;
    return i < 0 ? -1 : (int)prev->nodes[i].stage;
}

/*
 * Equal node counts per stage (+-1). Nodes of a previous plan with the same stage count stay in
 * their stage (up to floor(n / S) each, which leaves enough nodes to fill every stage); equal
 * budgets without history give contiguous blocks; the rest go, largest budget first, to the stage
 * with the fewest nodes, then the least budget.
 */
static void assign_stages(const planner_t *p, uint32_t n_stages, uint32_t *stage_of)
{
    const dst_plan_t *prev = p->opts->previous;
    if (prev != NULL && prev->n_stages != n_stages)
        prev = NULL;
    uint32_t count[n_stages];
    uint64_t budget[n_stages];
    memset(count, 0, sizeof(count));
    memset(budget, 0, sizeof(budget));
    int equal = 1;
    for (uint32_t i = 0; i < p->n; i++) {
        stage_of[i] = UINT32_MAX;
        equal &= p->nodes[i].mem_budget == p->nodes[0].mem_budget;
    }
    if (prev == NULL && equal) {
        for (uint32_t i = 0; i < p->n; i++)
            stage_of[i] = (uint32_t)((uint64_t)i * n_stages / p->n);
        return;
    }
    uint32_t keep_cap = p->n / n_stages;
    for (uint32_t i = 0; prev != NULL && i < p->n; i++) {
        int ps = prev_stage_of(prev, p->nodes[i].id);
        if (ps >= 0 && count[ps] < keep_cap) {
            stage_of[i] = (uint32_t)ps;
            count[ps]++;
            budget[ps] += p->nodes[i].mem_budget;
        }
    }
    for (;;) {
        /* The unassigned node with the largest budget (lowest index on ties). */
        uint32_t best = UINT32_MAX;
        for (uint32_t i = 0; i < p->n; i++) {
            if (stage_of[i] == UINT32_MAX &&
                (best == UINT32_MAX || p->nodes[i].mem_budget > p->nodes[best].mem_budget))
                best = i;
        }
        if (best == UINT32_MAX)
            break;
        int ps = prev_stage_of(prev, p->nodes[best].id);
        uint32_t to = 0;
        for (uint32_t s = 1; s < n_stages; s++) {
            if (count[s] < count[to] ||
                (count[s] == count[to] &&
                 (budget[s] < budget[to] || (budget[s] == budget[to] && (int)s == ps))))
                to = s;
        }
        stage_of[best] = to;
        count[to]++;
        budget[to] += p->nodes[best].mem_budget;
    }
}

/* ---- step 2: layer ranges ---- */

/*
 * The continuous water level: the smallest use u such that the nodes' room above `fixed` at use
 * u holds `expert_bytes`; a node whose fixed part alone exceeds u stays at fixed / budget.
 */
static double water_use(uint64_t fixed, double expert_bytes, const uint64_t *budgets, uint32_t k)
{
    double floor_use = 0, sum_b = 0;
    for (uint32_t i = 0; i < k; i++) {
        double u = (double)fixed / (double)budgets[i];
        floor_use = u > floor_use ? u : floor_use;
        sum_b += (double)budgets[i];
    }
    if (expert_bytes <= 0)
        return floor_use;
    double lo = 0, hi = floor_use + (expert_bytes + (double)fixed * k) / sum_b;
    for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (lo + hi), room = 0;
        for (uint32_t i = 0; i < k; i++) {
            double r = mid * (double)budgets[i] - (double)fixed;
            room += r > 0 ? r : 0;
        }
        if (room >= expert_bytes)
            hi = mid;
        else
            lo = mid;
    }
    return hi > floor_use ? hi : floor_use;
}

typedef struct {
    uint64_t *budgets; /* nodes' budgets grouped by stage */
    uint32_t *first;   /* [n_stages + 1]: stage s has budgets[first[s] .. first[s + 1]) */
} stage_nodes_t;

static double range_cost(const planner_t *p, const layout_t *lay, const stage_nodes_t *sn,
                         uint32_t s, uint32_t a, uint32_t b)
{
    uint64_t fixed = range_fixed(p, s, lay->n_stages, lay->n_last, a, b);
    double units = (double)dsc_planner_moe_layers(p, a, b) * (p->n_experts + lay->redundant[s]);
    return water_use(fixed, units * (double)p->mem.expert, sn->budgets + sn->first[s],
                     sn->first[s + 1] - sn->first[s]);
}

/* Cuts minimising the largest stage cost; dynamic programming over (stage, end layer). */
static dsi_status_t choose_cuts(const planner_t *p, layout_t *lay, const stage_nodes_t *sn)
{
    uint32_t S = lay->n_stages, L = p->n_layers;
    double *dp = malloc(sizeof(double) * S * (L + 1));
    uint32_t *arg = malloc(sizeof(uint32_t) * S * (L + 1));
    if (dp == NULL || arg == NULL) {
        free(dp);
        free(arg);
        DSI_ERROR("planner: out of memory for %u stages x %u layers", S, L);
        return DSI_ERR_NOMEM;
    }
    for (uint32_t s = 0; s < S; s++) {
        /* Stage s ends at j; stages after it need at least one layer each. */
        for (uint32_t j = s + 1; j + (S - 1 - s) <= L; j++) {
            double best = -1;
            uint32_t best_i = 0;
            for (uint32_t i = s; i < j; i++) {
                if (s == 0 && i != 0)
                    break;
                double c = range_cost(p, lay, sn, s, i, j);
                if (s > 0 && dp[(s - 1) * (L + 1) + i] > c)
                    c = dp[(s - 1) * (L + 1) + i];
                if (best < 0 || c < best) {
                    best = c;
                    best_i = i;
                }
            }
            dp[s * (L + 1) + j] = best;
            arg[s * (L + 1) + j] = best_i;
        }
    }
    lay->cuts[S] = L;
    for (uint32_t s = S; s-- > 0;)
        lay->cuts[s] = arg[s * (L + 1) + lay->cuts[s + 1]];
    free(dp);
    free(arg);
    return DSI_OK;
}

/* ---- step 3: expert copies per node ---- */

/*
 * Water filling in whole experts: start from the floor of the continuous level, then give one
 * copy at a time to the node whose use grows least. No node gets more copies than there are
 * experts in its stage (a second copy on one node serves nothing). Budgets are not enforced
 * here: an over-budget result is how a refusal finds the node to name.
 */
static void fill_copies(const planner_t *p, layout_t *lay, uint32_t s)
{
    uint64_t fixed = dsc_planner_stage_fixed(p, lay, s);
    uint32_t moe = dsc_planner_moe_layers(p, lay->cuts[s], lay->cuts[s + 1]);
    uint64_t units = (uint64_t)moe * (p->n_experts + lay->redundant[s]);
    uint64_t cap = (uint64_t)moe * p->n_experts, e = p->mem.expert;
    uint64_t budgets[p->n];
    uint32_t k = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        if (lay->stage_of[i] == s)
            budgets[k++] = p->nodes[i].mem_budget;
    }
    double u = water_use(fixed, (double)units * (double)e, budgets, k);
    uint64_t given = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        if (lay->stage_of[i] != s)
            continue;
        double room = u * (double)p->nodes[i].mem_budget - (double)fixed;
        uint64_t c = room > 0 && e > 0 ? (uint64_t)(room / (double)e) : 0;
        c = c > cap ? cap : c;
        c = given + c > units ? units - given : c;
        lay->copies[i] = (uint32_t)c;
        given += c;
    }
    while (given < units) {
        uint32_t best = UINT32_MAX;
        double best_use = 0;
        for (uint32_t i = 0; i < p->n; i++) {
            if (lay->stage_of[i] != s || lay->copies[i] >= cap)
                continue;
            double use =
                (double)(fixed + (lay->copies[i] + 1) * e) / (double)p->nodes[i].mem_budget;
            if (best == UINT32_MAX || use < best_use) {
                best = i;
                best_use = use;
            }
        }
        if (best == UINT32_MAX)
            break; /* cannot happen: redundant copies are capped at experts * (k - 1) */
        lay->copies[best]++;
        given++;
    }
}

/* Builds the whole layout for n_stages; max_use > 1 means some node is over its budget. */
static dsi_status_t build_layout(const planner_t *p, uint32_t n_stages, layout_t *lay)
{
    lay->n_stages = n_stages;
    assign_stages(p, n_stages, lay->stage_of);
    stage_nodes_t sn;
    uint64_t budgets[p->n];
    uint32_t first[n_stages + 1];
    memset(first, 0, sizeof(first));
    for (uint32_t i = 0; i < p->n; i++)
        first[lay->stage_of[i] + 1]++;
    lay->n_last = first[n_stages];
    for (uint32_t s = 0; s < n_stages; s++) {
        first[s + 1] += first[s];
        uint32_t k = first[s + 1] - first[s];
        uint64_t max_r = (uint64_t)p->n_experts * (k - 1);
        lay->redundant[s] =
            p->opts->redundant_experts < max_r ? p->opts->redundant_experts : (uint32_t)max_r;
    }
    uint32_t fill[n_stages];
    memcpy(fill, first, sizeof(fill));
    for (uint32_t i = 0; i < p->n; i++)
        budgets[fill[lay->stage_of[i]]++] = p->nodes[i].mem_budget;
    sn.budgets = budgets;
    sn.first = first;

    /* A re-plan keeps the previous layer ranges while they still fit: nothing moves for them. */
    const dst_plan_t *prev = p->opts->previous;
    int kept = 0;
    if (prev != NULL && prev->n_stages == n_stages) {
        for (uint32_t s = 0; s < n_stages; s++)
            lay->cuts[s] = prev->stages[s].first_layer;
        lay->cuts[n_stages] = p->n_layers;
        kept = 1;
        for (uint32_t s = 0; s < n_stages; s++)
            kept &= range_cost(p, lay, &sn, s, lay->cuts[s], lay->cuts[s + 1]) <= 1.0;
    }
    for (;;) {
        if (!kept) {
            dsi_status_t st = choose_cuts(p, lay, &sn);
            if (st != DSI_OK)
                return st;
        }
        lay->max_use = 0;
        lay->worst = 0;
        for (uint32_t s = 0; s < n_stages; s++)
            fill_copies(p, lay, s);
        for (uint32_t i = 0; i < p->n; i++) {
            uint64_t planned = dsc_planner_stage_fixed(p, lay, lay->stage_of[i]) +
                               (uint64_t)lay->copies[i] * p->mem.expert;
            double use = (double)planned / (double)p->nodes[i].mem_budget;
            if (use > lay->max_use) {
                lay->max_use = use;
                lay->worst = i;
            }
        }
        /* Whole experts may not fit where the continuous estimate did: cut afresh then. */
        if (!kept || lay->max_use <= 1.0)
            return DSI_OK;
        kept = 0;
    }
}

/* ---- validation and explanations ---- */

static dsi_status_t check_inputs(const planner_t *p)
{
    const dsc_plan_opts_t *o = p->opts;
    if (p->n == 0 || p->n > MAX_NODES) {
        DSI_ERROR("planner: %u nodes registered; need 1 to %u", p->n, MAX_NODES);
        return DSI_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < p->n; i++) {
        if (p->nodes[i].mem_budget == 0 || p->nodes[i].mem_budget > MAX_BUDGET) {
            DSI_ERROR("planner: node %u offers a memory budget of %llu bytes; need 1 B to 1 PiB",
                      p->nodes[i].id, (unsigned long long)p->nodes[i].mem_budget);
            return DSI_ERR_INVALID_ARG;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (p->nodes[j].id == p->nodes[i].id) {
                DSI_ERROR("planner: node id %u is registered twice", p->nodes[i].id);
                return DSI_ERR_INVALID_ARG;
            }
        }
    }
    uint32_t max_stages = p->n < p->n_layers ? p->n : p->n_layers;
    if (o->n_stages > max_stages) {
        DSI_ERROR("planner: %u stages requested, but %u nodes and %u layers allow at most %u",
                  o->n_stages, p->n, p->n_layers, max_stages);
        return DSI_ERR_INVALID_ARG;
    }
    if (o->kv_tokens > MAX_KV_TOK || o->overhead > MAX_BUDGET) {
        DSI_ERROR("planner: kv_tokens %llu or overhead %llu bytes is implausibly large",
                  (unsigned long long)o->kv_tokens, (unsigned long long)o->overhead);
        return DSI_ERR_INVALID_ARG;
    }
    if (o->redundant_experts > 0 && o->load == NULL) {
        DSI_ERROR("planner: %u redundant experts requested without load counts to choose them",
                  o->redundant_experts);
        return DSI_ERR_INVALID_ARG;
    }
    const dst_plan_t *prev = o->previous;
    if (prev != NULL) {
        if (prev->n_layers != p->n_layers || prev->first_moe_layer != p->first_moe ||
            prev->n_experts != p->n_experts) {
            DSI_ERROR("planner: previous plan is for %u layers (MoE from %u, %u experts), the "
                      "model has %u (MoE from %u, %u experts)",
                      prev->n_layers, prev->first_moe_layer, prev->n_experts, p->n_layers,
                      p->first_moe, p->n_experts);
            return DSI_ERR_INVALID_ARG;
        }
        if (dsc_plan_check(prev) != DSI_OK)
            return DSI_ERR_INVALID_ARG; /* logged by the check */
    }
    return DSI_OK;
}

/* "node 3" or "node 3 'name'" */
static const char *node_label(const dsc_node_desc_t *n, char *buf, size_t size)
{
    if (n->name != NULL && n->name[0] != '\0')
        snprintf(buf, size, "node %u '%s'", n->id, n->name);
    else
        snprintf(buf, size, "node %u", n->id);
    return buf;
}

/* Appends "; each node needs about SHARE: node 0 lacks X, ..." for the nodes under an even
 * share of `need` (at most 4 named, then a count). */
static void explain_shares(const planner_t *p, uint64_t need, char *reason, size_t size)
{
    uint64_t share = (need + p->n - 1) / p->n;
    size_t len = strlen(reason);
    char sb[32], lb[32], name[LABEL_MAX];
    dsc_memory_format_bytes(share, sb, sizeof(sb));
    len += (size_t)snprintf(reason + len, len < size ? size - len : 0,
                            "; each node needs about %s:", sb);
    uint32_t named = 0, more = 0;
    for (uint32_t i = 0; i < p->n && len < size; i++) {
        const dsc_node_desc_t *n = &p->nodes[i];
        if (n->mem_budget >= share)
            continue;
        if (named == 4) {
            more++;
            continue;
        }
        dsc_memory_format_bytes(share - n->mem_budget, lb, sizeof(lb));
        len += (size_t)snprintf(reason + len, size - len, "%s %s lacks %s", named ? "," : "",
                                node_label(n, name, sizeof(name)), lb);
        named++;
    }
    if (more > 0 && len < size)
        snprintf(reason + len, size - len, " and %u more nodes", more);
}

/*
 * The cluster as a whole is too small when the weights once, the KV reserve of every layer once
 * and every node's overhead exceed the sum of the budgets, whatever the layout.
 */
static int explain_total(const planner_t *p, dsc_plan_report_t *rep)
{
    uint64_t redundant = (uint64_t)p->opts->redundant_experts * p->mem.n_moe_layers;
    uint64_t need =
        p->mem.total_main + redundant * p->mem.expert + dsc_planner_mtp_bytes(&p->mem, p->opts) +
        dsc_memory_kv_layer(&p->mem, p->opts->kv_tokens, p->mem.kv_token_layer) * p->n_layers +
        p->opts->overhead * p->n;
    uint64_t have = 0;
    int equal = 1;
    for (uint32_t i = 0; i < p->n; i++) {
        have += p->nodes[i].mem_budget;
        equal &= p->nodes[i].mem_budget == p->nodes[0].mem_budget;
    }
    if (need <= have)
        return 0;
    char a[32], b[32], c[32], d[32], e[32];
    dsc_memory_format_bytes(need, a, sizeof(a));
    dsc_memory_format_bytes(p->mem.total_main + redundant * p->mem.expert, b, sizeof(b));
    dsc_memory_format_bytes(have, c, sizeof(c));
    dsc_memory_format_bytes(p->nodes[0].mem_budget, d, sizeof(d));
    dsc_memory_format_bytes(need - have, e, sizeof(e));
    if (equal)
        snprintf(
            rep->reason, sizeof(rep->reason),
            "the model needs %s (%s of %s weights + KV reserve + overhead); %u nodes x %s = %s "
            "(%s short)",
            a, b, dsc_weight_format_name(p->mem.format), p->n, d, c, e);
    else
        snprintf(
            rep->reason, sizeof(rep->reason),
            "the model needs %s (%s of %s weights + KV reserve + overhead); the %u nodes offer "
            "%s (%s short)",
            a, b, dsc_weight_format_name(p->mem.format), p->n, c, e);
    explain_shares(p, need, rep->reason, sizeof(rep->reason));
    rep->missing_bytes = need - have;
    rep->missing_node = DSC_PLAN_NO_NODE;
    return 1;
}

/* Names the most over-committed node of the layout and what its stage asks of it. */
static void explain_node(const planner_t *p, const layout_t *lay, dsc_plan_report_t *rep)
{
    uint32_t w = lay->worst, s = lay->stage_of[w];
    uint32_t a = lay->cuts[s], b = lay->cuts[s + 1];
    uint64_t kv = dsc_memory_kv_layer(&p->mem, p->opts->kv_tokens, p->mem.kv_token_layer) * (b - a);
    uint64_t weights = dsc_planner_stage_fixed(p, lay, s) - kv - p->opts->overhead;
    uint64_t experts = (uint64_t)lay->copies[w] * p->mem.expert;
    uint64_t need = weights + kv + p->opts->overhead + experts;
    char more[32], budget[32], wb[32], kb[32], ob[32], eb[32], name[LABEL_MAX];
    dsc_memory_format_bytes(need - p->nodes[w].mem_budget, more, sizeof(more));
    dsc_memory_format_bytes(p->nodes[w].mem_budget, budget, sizeof(budget));
    dsc_memory_format_bytes(weights, wb, sizeof(wb));
    dsc_memory_format_bytes(kv, kb, sizeof(kb));
    dsc_memory_format_bytes(p->opts->overhead, ob, sizeof(ob));
    dsc_memory_format_bytes(experts, eb, sizeof(eb));
    snprintf(rep->reason, sizeof(rep->reason),
             "%s needs %s more than its %s budget (stage %u of %u: layers %u-%u: weights %s, "
             "KV %s, overhead %s, %u experts %s)",
             node_label(&p->nodes[w], name, sizeof(name)), more, budget, s, lay->n_stages, a, b - 1,
             wb, kb, ob, lay->copies[w], eb);
    rep->missing_bytes = need - p->nodes[w].mem_budget;
    rep->missing_node = p->nodes[w].id;
}

/* ---- assembling ---- */

static dsi_status_t layout_alloc(layout_t *lay, uint32_t n, uint32_t max_stages)
{
    memset(lay, 0, sizeof(*lay));
    lay->cuts = calloc(max_stages + 1, sizeof(uint32_t));
    lay->stage_of = calloc(n, sizeof(uint32_t));
    lay->copies = calloc(n, sizeof(uint32_t));
    lay->redundant = calloc(max_stages, sizeof(uint32_t));
    if (!lay->cuts || !lay->stage_of || !lay->copies || !lay->redundant)
        return DSI_ERR_NOMEM;
    return DSI_OK;
}

static void layout_free(layout_t *lay)
{
    free(lay->cuts);
    free(lay->stage_of);
    free(lay->copies);
    free(lay->redundant);
    memset(lay, 0, sizeof(*lay));
}

static void layout_copy(layout_t *dst, const layout_t *src, uint32_t n)
{
    dst->n_stages = src->n_stages;
    dst->max_use = src->max_use;
    dst->worst = src->worst;
    dst->n_last = src->n_last;
    memcpy(dst->cuts, src->cuts, (src->n_stages + 1) * sizeof(uint32_t));
    memcpy(dst->stage_of, src->stage_of, n * sizeof(uint32_t));
    memcpy(dst->copies, src->copies, n * sizeof(uint32_t));
    memcpy(dst->redundant, src->redundant, src->n_stages * sizeof(uint32_t));
}

/* Tries the stage counts in order (step 1); *best gets the first that fits, else the closest. */
static dsi_status_t search_layouts(const planner_t *p, layout_t *try, layout_t *best)
{
    uint32_t max_stages = p->n < p->n_layers ? p->n : p->n_layers;
    uint32_t order[max_stages + 1], n_order = 0;
    const dst_plan_t *prev = p->opts->previous;
    if (p->opts->n_stages > 0) {
        order[n_order++] = p->opts->n_stages;
    } else {
        if (prev != NULL && prev->n_stages <= max_stages)
            order[n_order++] = prev->n_stages;
        for (uint32_t s = 1; s <= max_stages; s++) {
            if (prev == NULL || s != prev->n_stages)
                order[n_order++] = s;
        }
    }
    best->n_stages = 0;
    for (uint32_t i = 0; i < n_order; i++) {
        dsi_status_t st = build_layout(p, order[i], try);
        if (st != DSI_OK)
            return st;
        if (best->n_stages == 0 || try->max_use < best->max_use)
            layout_copy(best, try, p->n);
        if (try->max_use <= 1.0) {
            layout_copy(best, try, p->n);
            break;
        }
    }
    return DSI_OK;
}

/*
 * The MTP layer's routed experts (with opts->mtp): one copy each, contiguous runs over the last
 * stage's nodes in plan order (the k-th of n gets dsc_planner_mtp_share of them), as the main
 * layers' experts without load counts. A previous plan's table is kept when its holders are all
 * still in the last stage: nodes keep the MTP experts they loaded through a live switch.
 */
static dsi_status_t place_mtp(const planner_t *p, const layout_t *lay, dst_plan_t *plan)
{
    uint32_t E = p->n_experts, last = lay->n_stages - 1;
    if (dsc_planner_mtp_share(&p->mem, p->opts, E, 0, lay->n_last) == 0)
        return DSI_OK;
    plan->mtp_offsets = malloc((E + 1) * sizeof(uint32_t));
    plan->mtp_holders = malloc(E * sizeof(uint32_t));
    if (plan->mtp_offsets == NULL || plan->mtp_holders == NULL)
        return DSI_ERR_NOMEM;
    const dst_plan_t *prev = p->opts->previous;
    int keep = prev != NULL && prev->mtp_offsets != NULL && prev->n_experts == E &&
               prev->mtp_offsets[E] == E;
    for (uint32_t h = 0; keep && h < E; h++) {
        int i = dsc_plan_node_index(plan, prev->mtp_holders[h]);
        keep = i >= 0 && plan->nodes[i].stage == last;
    }
    if (keep) {
        memcpy(plan->mtp_offsets, prev->mtp_offsets, (E + 1) * sizeof(uint32_t));
        memcpy(plan->mtp_holders, prev->mtp_holders, E * sizeof(uint32_t));
        /* mem_planned counted the contiguous shares: count the kept ones instead. */
        for (uint32_t i = 0, k = 0; i < p->n; i++) {
            if (plan->nodes[i].stage != last)
                continue;
            uint32_t held = 0;
            for (uint32_t e = 0; e < E; e++)
                held += plan->mtp_holders[e] == plan->nodes[i].node_id;
            plan->nodes[i].mem_planned =
                plan->nodes[i].mem_planned -
                mtp_node_bytes(p, dsc_planner_mtp_share(&p->mem, p->opts, E, k++, lay->n_last)) +
                mtp_node_bytes(p, held);
        }
        return DSI_OK;
    }
    uint32_t e = 0, k = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        if (plan->nodes[i].stage != last)
            continue;
        uint32_t share = dsc_planner_mtp_share(&p->mem, p->opts, E, k++, lay->n_last);
        for (uint32_t j = 0; j < share; j++, e++)
            plan->mtp_holders[e] = plan->nodes[i].node_id;
    }
    for (e = 0; e <= E; e++)
        plan->mtp_offsets[e] = e;
    return DSI_OK;
}

static dsi_status_t plan_fill(const planner_t *p, const layout_t *lay, dst_plan_t *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->epoch = p->opts->epoch;
    plan->n_layers = p->n_layers;
    plan->first_moe_layer = p->first_moe;
    plan->n_experts = p->n_experts;
    plan->n_stages = lay->n_stages;
    plan->n_nodes = p->n;
    plan->stages = calloc(lay->n_stages, sizeof(*plan->stages));
    plan->nodes = calloc(p->n, sizeof(*plan->nodes));
    if (plan->stages == NULL || plan->nodes == NULL)
        return DSI_ERR_NOMEM;
    for (uint32_t s = 0; s < lay->n_stages; s++) {
        plan->stages[s].first_layer = lay->cuts[s];
        plan->stages[s].end_layer = lay->cuts[s + 1];
    }
    uint32_t last = lay->n_stages - 1, k = 0;
    uint64_t largest =
        mtp_node_bytes(p, dsc_planner_mtp_share(&p->mem, p->opts, p->n_experts, 0, lay->n_last));
    for (uint32_t i = 0; i < p->n; i++) {
        plan->nodes[i].node_id = p->nodes[i].id;
        plan->nodes[i].stage = lay->stage_of[i];
        plan->nodes[i].mem_budget = p->nodes[i].mem_budget;
        plan->nodes[i].mem_planned = dsc_planner_stage_fixed(p, lay, lay->stage_of[i]);
        if (lay->stage_of[i] == last) /* its own share of the MTP experts, not the largest */
            plan->nodes[i].mem_planned =
                plan->nodes[i].mem_planned - largest +
                mtp_node_bytes(
                    p, dsc_planner_mtp_share(&p->mem, p->opts, p->n_experts, k++, lay->n_last));
    }
    return place_mtp(p, lay, plan);
}

dsi_status_t dsc_planner_plan(const dsn_config_t *cfg, const dsc_node_desc_t *nodes,
                              uint32_t n_nodes, const dsc_plan_opts_t *opts, dst_plan_t *out,
                              dsc_plan_report_t *report)
{
    dsc_plan_report_t rep;
    memset(&rep, 0, sizeof(rep));
    planner_t p = {.cfg = cfg, .opts = opts, .nodes = nodes, .n = n_nodes};
    layout_t try, best;
    dst_plan_t plan;
    memset(&try, 0, sizeof(try));
    memset(&best, 0, sizeof(best));
    memset(&plan, 0, sizeof(plan));
    dsi_status_t st = dsc_memory_compute(cfg, opts->format, &p.mem);
    if (st != DSI_OK)
        goto out;
    if (opts->kv_token_layer > 0)
        p.mem.kv_token_layer = opts->kv_token_layer;
    p.n_layers = p.mem.n_layers;
    p.first_moe = p.n_layers - p.mem.n_moe_layers;
    p.n_experts = p.mem.n_moe_layers > 0 ? (uint32_t)cfg->n_routed_experts : 0;
    rep.mem = p.mem;
    if (nodes == NULL && n_nodes > 0) {
        DSI_ERROR("planner: node list is NULL");
        st = DSI_ERR_INVALID_ARG;
        goto out;
    }
    st = check_inputs(&p);
    if (st != DSI_OK)
        goto out;
    p.fixed_prefix = malloc((p.n_layers + 1) * sizeof(uint64_t));
    uint32_t max_stages = n_nodes < p.n_layers ? n_nodes : p.n_layers;
    if (p.fixed_prefix == NULL || layout_alloc(&try, n_nodes, max_stages) != DSI_OK ||
        layout_alloc(&best, n_nodes, max_stages) != DSI_OK) {
        DSI_ERROR("planner: out of memory for %u nodes", n_nodes);
        st = DSI_ERR_NOMEM;
        goto free_layouts;
    }
    p.fixed_prefix[0] = 0;
    for (uint32_t l = 0; l < p.n_layers; l++)
        p.fixed_prefix[l + 1] = p.fixed_prefix[l] + dsc_memory_layer_fixed(&p.mem, cfg, l);

    if (explain_total(&p, &rep)) {
        st = DSI_ERR_CAPACITY;
        goto refuse;
    }
    st = search_layouts(&p, &try, &best);
    if (st != DSI_OK)
        goto free_layouts;
    if (best.max_use > 1.0) {
        explain_node(&p, &best, &rep);
        st = DSI_ERR_CAPACITY;
        goto refuse;
    }
    st = plan_fill(&p, &best, &plan);
    if (st == DSI_OK)
        st = dsc_planner_place_experts(&p, &best, &plan, &rep);
    if (st != DSI_OK) {
        if (st == DSI_ERR_NOMEM)
            DSI_ERROR("planner: out of memory building the plan for %u nodes", n_nodes);
        goto free_plan;
    }
    for (uint32_t i = 0; i < n_nodes; i++) {
        double use = (double)plan.nodes[i].mem_planned / (double)plan.nodes[i].mem_budget;
        rep.max_use = use > rep.max_use ? use : rep.max_use;
    }
    *out = plan;
    if (report != NULL)
        *report = rep;
    goto free_layouts;

refuse:
    DSI_ERROR("planner: cannot fit the model: %s", rep.reason);
    if (report != NULL)
        *report = rep;
    goto free_layouts;
free_plan:
    dsc_plan_cleanup(&plan);
free_layouts:
    layout_free(&try);
    layout_free(&best);
    free(p.fixed_prefix);
out:
    return st;
}

int64_t dsc_plan_switch_overflow(const dst_plan_t *cur, const dst_plan_t *next,
                                 const dsc_memory_t *mem)
{
    size_t slots = dst_plan_slots(cur);
    for (uint32_t i = 0; i < next->n_nodes; i++) {
        uint32_t id = next->nodes[i].node_id;
        uint64_t extra = 0;
        for (size_t s = 0; s < slots; s++) {
            if (dst_plan_holds(cur, s, id) && !dst_plan_holds(next, s, id))
                extra += mem->expert;
        }
        if (next->nodes[i].mem_planned + extra > next->nodes[i].mem_budget)
            return id;
    }
    return -1;
}
