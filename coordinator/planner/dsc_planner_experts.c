/*
 * dsc_planner_experts.c - which node holds which (layer, expert): per-layer quotas from each
 * node's expert count, replicas of hot experts, keeping experts where the previous plan had
 * them, and the CSR holder lists of dst_plan_t (step 4 of dsc_planner.h).
 */
#include <stdlib.h>
#include <string.h>

#include "dsc_planner_impl.h"
#include "dsi_log.h"

/* One copy of an expert, ordered heaviest first (then by expert id). */
typedef struct {
    double w;   /* expected load of this copy: load / copies of the expert */
    uint32_t e; /* expert id */
    uint8_t done;
} copy_t;

/* The nodes of one stage and the state of the layer being placed. */
typedef struct {
    uint32_t k;       /* nodes in the stage */
    uint32_t E;       /* experts per layer */
    uint32_t *node;   /* [k] indices into plan->nodes */
    uint64_t *target; /* [k] copies still to give over the stage's remaining MoE layers */
    uint32_t *quota;  /* [k] copies the node takes in this layer (left to place) */
    uint32_t *held_n; /* [k] copies actually placed in the stage so far */
    double *nload;    /* [k] expected load placed in this layer */
    uint8_t *held;    /* [k * E] node holds expert in this layer */
    uint8_t *prev;    /* [k * E] previous plan had expert on node in this layer */
    uint32_t *r;      /* [E] copies of each expert */
    double *w;        /* [E] load per copy of each expert */
    uint32_t *first;  /* [E] index in `copies` of the expert's first copy */
    copy_t *copies;   /* [E + redundant] sorted */
    uint32_t n_copies;
} stage_t;

typedef struct {
    uint32_t id, index;
} id_index_t;

static int id_cmp(const void *a, const void *b)
{
    uint32_t x = ((const id_index_t *)a)->id, y = ((const id_index_t *)b)->id;
    return (x > y) - (x < y);
}

static int copy_cmp(const void *a, const void *b)
{
    const copy_t *x = a, *y = b;
    if (x->w != y->w)
        return x->w < y->w ? 1 : -1;
    return (x->e > y->e) - (x->e < y->e);
}

/* Quotas of one layer: each node's remaining target spread evenly over the remaining layers,
 * rounded by largest remainder so that they sum to the layer's copies. */
static void layer_quotas(stage_t *st, uint32_t layers_left, uint32_t per_layer)
{
    uint64_t sum = 0;
    for (uint32_t k = 0; k < st->k; k++) {
        st->quota[k] = (uint32_t)(st->target[k] / layers_left);
        sum += st->quota[k];
    }
    while (sum < per_layer) {
        uint32_t best = UINT32_MAX;
        uint64_t best_rem = 0;
        for (uint32_t k = 0; k < st->k; k++) {
            /* Each node rounds up at most once: only while still at its floor. */
            uint64_t rem = st->target[k] % layers_left;
            int at_floor = st->quota[k] == st->target[k] / layers_left;
            if (at_floor && rem > 0 && st->quota[k] < st->E &&
                (best == UINT32_MAX || rem > best_rem)) {
                best = k;
                best_rem = rem;
            }
        }
        if (best == UINT32_MAX)
            break;
        st->quota[best]++;
        sum++;
    }
    for (uint32_t k = 0; k < st->k; k++)
        st->target[k] -= st->quota[k];
}

/* Replica counts: each extra copy to the expert with the highest load per copy (EPLB). */
static void choose_replicas(stage_t *st, const uint64_t *load, uint32_t redundant)
{
    for (uint32_t e = 0; e < st->E; e++)
        st->r[e] = 1;
    for (uint32_t i = 0; i < redundant && load != NULL; i++) {
        uint32_t best = UINT32_MAX;
        double best_w = -1;
        for (uint32_t e = 0; e < st->E; e++) {
            double w = (double)load[e] / st->r[e];
            if (st->r[e] < st->k && w > best_w) {
                best = e;
                best_w = w;
            }
        }
        if (best == UINT32_MAX)
            break;
        st->r[best]++;
    }
    st->n_copies = 0;
    for (uint32_t e = 0; e < st->E; e++) {
        st->w[e] = load != NULL ? (double)load[e] / st->r[e] : 1.0;
        for (uint32_t c = 0; c < st->r[e]; c++)
            st->copies[st->n_copies++] = (copy_t){.w = st->w[e], .e = e};
    }
    qsort(st->copies, st->n_copies, sizeof(copy_t), copy_cmp);
    for (uint32_t i = st->n_copies; i-- > 0;)
        st->first[st->copies[i].e] = i;
}

static void put(stage_t *st, uint32_t k, uint32_t e)
{
    st->held[(size_t)k * st->E + e] = 1;
    st->quota[k]--;
    st->nload[k] += st->w[e];
}

/* Marks one not yet placed copy of e as placed. */
static void mark_one(stage_t *st, uint32_t e)
{
    for (uint32_t i = st->first[e]; i < st->first[e] + st->r[e]; i++) {
        if (!st->copies[i].done) {
            st->copies[i].done = 1;
            return;
        }
    }
}

/*
 * EPLB's hierarchical step with nodes as the leaves: whole expert groups packed onto nodes,
 * heaviest group first onto the node with the least group load, n_group / k groups each.
 */
static int pack_groups(stage_t *st, const uint64_t *load, uint32_t n_group)
{
    uint32_t k = st->k, E = st->E;
    if (k < 2 || n_group == 0 || E % n_group != 0 || n_group % k != 0)
        return 0;
    for (uint32_t i = 0; i < k; i++) {
        if (st->quota[i] < E / k)
            return 0;
    }
    uint32_t gsize = E / n_group, per_node = n_group / k;
    double gload[n_group], sum[k];
    uint32_t count[k];
    uint8_t used[n_group];
    memset(sum, 0, sizeof(sum));
    memset(count, 0, sizeof(count));
    memset(used, 0, sizeof(used));
    for (uint32_t g = 0; g < n_group; g++) {
        gload[g] = 0;
        for (uint32_t e = g * gsize; e < (g + 1) * gsize; e++)
            gload[g] += (double)load[e];
    }
    for (uint32_t n = 0; n < n_group; n++) {
        uint32_t g = UINT32_MAX, to = UINT32_MAX;
        for (uint32_t i = 0; i < n_group; i++) {
            if (!used[i] && (g == UINT32_MAX || gload[i] > gload[g]))
                g = i;
        }
        for (uint32_t i = 0; i < k; i++) {
            if (count[i] < per_node && (to == UINT32_MAX || sum[i] < sum[to]))
                to = i;
        }
        used[g] = 1;
        count[to]++;
        sum[to] += gload[g];
        for (uint32_t e = g * gsize; e < (g + 1) * gsize; e++) {
            put(st, to, e);
            mark_one(st, e);
        }
    }
    return 1;
}

/*
 * When every node with room already holds e: move some expert f from a node m without e to a
 * node with room, and put e on m. Returns 0 when no such exchange exists.
 */
static int swap_in(stage_t *st, uint32_t e)
{
    uint32_t E = st->E;
    for (uint32_t room = 0; room < st->k; room++) {
        if (st->quota[room] == 0)
            continue;
        for (uint32_t m = 0; m < st->k; m++) {
            if (st->held[(size_t)m * E + e])
                continue;
            for (uint32_t f = 0; f < E; f++) {
                if (st->held[(size_t)m * E + f] && !st->held[(size_t)room * E + f]) {
                    st->held[(size_t)m * E + f] = 0;
                    st->nload[m] -= st->w[f];
                    put(st, room, f);
                    st->held[(size_t)m * E + e] = 1;
                    st->nload[m] += st->w[e];
                    return 1;
                }
            }
        }
    }
    return 0;
}

/*
 * Places the layer's copies: kept ones first (where the previous plan had them), then by the
 * hierarchical or global policy with load counts, or in contiguous runs without them.
 * Returns the number of replicas that found no node (dropped).
 */
static uint32_t place_layer(stage_t *st, const uint64_t *load, int have_prev, uint32_t n_group)
{
    uint32_t E = st->E, dropped = 0;
    if (have_prev) {
        for (uint32_t i = 0; i < st->n_copies; i++) {
            copy_t *c = &st->copies[i];
            uint32_t to = UINT32_MAX;
            for (uint32_t k = 0; k < st->k; k++) {
                size_t at = (size_t)k * E + c->e;
                if (st->prev[at] && !st->held[at] && st->quota[k] > 0 &&
                    (to == UINT32_MAX || st->nload[k] < st->nload[to]))
                    to = k;
            }
            if (to != UINT32_MAX) {
                put(st, to, c->e);
                c->done = 1;
            }
        }
    } else if (load != NULL) {
        pack_groups(st, load, n_group);
    }
    for (uint32_t i = 0; i < st->n_copies; i++) {
        copy_t *c = &st->copies[i];
        if (c->done)
            continue;
        uint32_t to = UINT32_MAX;
        for (uint32_t k = 0; k < st->k; k++) {
            if (st->quota[k] == 0 || st->held[(size_t)k * E + c->e])
                continue;
            if (to == UINT32_MAX || (load != NULL && st->nload[k] < st->nload[to]))
                to = k;
        }
        if (to != UINT32_MAX)
            put(st, to, c->e);
        else if (!swap_in(st, c->e))
            dropped++;
        c->done = 1;
    }
    return dropped;
}

static void stage_free(stage_t *st)
{
    free(st->node);
    free(st->target);
    free(st->quota);
    free(st->held_n);
    free(st->nload);
    free(st->held);
    free(st->prev);
    free(st->r);
    free(st->w);
    free(st->first);
    free(st->copies);
    memset(st, 0, sizeof(*st));
}

static dsi_status_t stage_alloc(stage_t *st, uint32_t n, uint32_t E, uint32_t max_copies)
{
    memset(st, 0, sizeof(*st));
    st->E = E;
    st->node = calloc(n, sizeof(uint32_t));
    st->target = calloc(n, sizeof(uint64_t));
    st->quota = calloc(n, sizeof(uint32_t));
    st->held_n = calloc(n, sizeof(uint32_t));
    st->nload = calloc(n, sizeof(double));
    st->held = calloc((size_t)n * E, 1);
    st->prev = calloc((size_t)n * E, 1);
    st->r = calloc(E, sizeof(uint32_t));
    st->w = calloc(E, sizeof(double));
    st->first = calloc(E, sizeof(uint32_t));
    st->copies = calloc(max_copies, sizeof(copy_t));
    if (!st->node || !st->target || !st->quota || !st->held_n || !st->nload || !st->held ||
        !st->prev || !st->r || !st->w || !st->first || !st->copies)
        return DSI_ERR_NOMEM;
    return DSI_OK;
}

/* Start of stage s: its nodes and their expert targets. */
static void stage_enter(stage_t *st, const planner_t *p, const layout_t *lay, uint32_t s)
{
    st->k = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        if (lay->stage_of[i] != s)
            continue;
        st->node[st->k] = i;
        st->target[st->k] = lay->copies[i];
        st->held_n[st->k] = 0;
        st->k++;
    }
}

/* Marks in st->prev the nodes of the stage that held the layer's experts in the previous plan. */
static void load_prev(stage_t *st, const dst_plan_t *prev, uint32_t layer, const id_index_t *ids,
                      uint32_t n, const uint32_t *k_of)
{
    memset(st->prev, 0, (size_t)st->k * st->E);
    if (prev == NULL)
        return;
    size_t base = (size_t)(layer - prev->first_moe_layer) * prev->n_experts;
    for (uint32_t e = 0; e < st->E; e++) {
        for (uint32_t h = prev->expert_offsets[base + e]; h < prev->expert_offsets[base + e + 1];
             h++) {
            id_index_t key = {.id = prev->expert_holders[h]};
            const id_index_t *hit = bsearch(&key, ids, n, sizeof(*ids), id_cmp);
            if (hit != NULL && k_of[hit->index] != UINT32_MAX)
                st->prev[(size_t)k_of[hit->index] * st->E + e] = 1;
        }
    }
}

/* Appends the layer's holder lists (ascending node id) to the plan's CSR arrays. */
static void emit_layer(stage_t *st, const dst_plan_t *plan, uint32_t layer_index, uint64_t *n_out,
                       dsc_plan_report_t *rep)
{
    for (uint32_t e = 0; e < st->E; e++) {
        size_t i = (size_t)layer_index * st->E + e;
        plan->expert_offsets[i] = (uint32_t)*n_out;
        uint32_t *list = plan->expert_holders + *n_out, len = 0;
        for (uint32_t k = 0; k < st->k; k++) {
            size_t at = (size_t)k * st->E + e;
            if (!st->held[at])
                continue;
            uint32_t id = plan->nodes[st->node[k]].node_id, j = len++;
            while (j > 0 && list[j - 1] > id) {
                list[j] = list[j - 1];
                j--;
            }
            list[j] = id;
            st->held_n[k]++;
            rep->experts_moved += !st->prev[at];
        }
        *n_out += len;
        plan->expert_offsets[i + 1] = (uint32_t)*n_out;
    }
}

static double layer_imbalance(const stage_t *st)
{
    double sum = 0, max = 0;
    for (uint32_t k = 0; k < st->k; k++) {
        sum += st->nload[k];
        max = st->nload[k] > max ? st->nload[k] : max;
    }
    return sum > 0 ? max / (sum / st->k) : 1.0;
}

/* Weight bytes each node must load that the previous plan did not already put there. */
static void count_moved_bytes(const planner_t *p, const layout_t *lay, const dst_plan_t *plan,
                              dsc_plan_report_t *rep)
{
    const dst_plan_t *prev = p->opts->previous;
    rep->bytes_moved = rep->experts_moved * p->mem.expert;
    for (uint32_t i = 0; i < p->n; i++) {
        uint32_t s = lay->stage_of[i], a = lay->cuts[s], b = lay->cuts[s + 1];
        int j = prev != NULL ? dsc_plan_node_index(prev, plan->nodes[i].node_id) : -1;
        uint32_t pa = 0, pb = 0, ps = UINT32_MAX;
        if (j >= 0) {
            ps = prev->nodes[j].stage;
            pa = prev->stages[ps].first_layer;
            pb = prev->stages[ps].end_layer;
        }
        for (uint32_t l = a; l < b; l++) {
            if (l < pa || l >= pb)
                rep->bytes_moved += dsc_memory_layer_fixed(&p->mem, p->cfg, l);
        }
        if (s == 0 && ps != 0)
            rep->bytes_moved += p->mem.embed;
        if (s == lay->n_stages - 1 && (j < 0 || ps != prev->n_stages - 1))
            rep->bytes_moved += p->mem.head;
    }
}

dsi_status_t dsc_planner_place_experts(const planner_t *p, const layout_t *lay, dst_plan_t *plan,
                                       dsc_plan_report_t *rep)
{
    uint32_t E = p->n_experts, M = p->n_layers - p->first_moe;
    const dst_plan_t *prev = p->opts->previous;
    uint64_t total = 0;
    uint32_t max_red = 0;
    for (uint32_t s = 0; s < lay->n_stages; s++) {
        total += (uint64_t)dsc_planner_moe_layers(p, lay->cuts[s], lay->cuts[s + 1]) *
                 (E + lay->redundant[s]);
        max_red = lay->redundant[s] > max_red ? lay->redundant[s] : max_red;
    }
    if (total > UINT32_MAX) {
        DSI_ERROR("planner: %llu expert copies do not fit the plan's 32-bit holder index",
                  (unsigned long long)total);
        return DSI_ERR_INVALID_ARG;
    }
    plan->expert_offsets = calloc((size_t)M * E + 1, sizeof(uint32_t));
    plan->expert_holders = calloc(total > 0 ? total : 1, sizeof(uint32_t));
    id_index_t *ids = calloc(p->n, sizeof(*ids));
    uint32_t *k_of = calloc(p->n, sizeof(uint32_t));
    stage_t st;
    dsi_status_t status = stage_alloc(&st, p->n, E > 0 ? E : 1, E + max_red + 1);
    if (status != DSI_OK || !plan->expert_offsets || !plan->expert_holders || !ids || !k_of) {
        status = DSI_ERR_NOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < p->n; i++)
        ids[i] = (id_index_t){.id = p->nodes[i].id, .index = i};
    qsort(ids, p->n, sizeof(*ids), id_cmp);

    uint64_t n_out = 0, dropped = 0;
    double imbalance = 0;
    for (uint32_t s = 0; s < lay->n_stages; s++) {
        uint32_t a = lay->cuts[s], b = lay->cuts[s + 1];
        uint32_t layers_left = dsc_planner_moe_layers(p, a, b);
        if (layers_left == 0)
            continue;
        stage_enter(&st, p, lay, s);
        for (uint32_t i = 0; i < p->n; i++)
            k_of[i] = UINT32_MAX;
        for (uint32_t k = 0; k < st.k; k++)
            k_of[st.node[k]] = k;
        for (uint32_t l = b - layers_left; l < b; l++, layers_left--) {
            const uint64_t *load = p->opts->load;
            if (load != NULL)
                load += (size_t)(l - p->first_moe) * E;
            layer_quotas(&st, layers_left, E + lay->redundant[s]);
            choose_replicas(&st, load, lay->redundant[s]);
            memset(st.held, 0, (size_t)st.k * E);
            memset(st.nload, 0, st.k * sizeof(double));
            load_prev(&st, prev, l, ids, p->n, k_of);
            dropped += place_layer(&st, load, prev != NULL, (uint32_t)p->cfg->n_group);
            emit_layer(&st, plan, l - p->first_moe, &n_out, rep);
            imbalance += layer_imbalance(&st);
        }
        for (uint32_t k = 0; k < st.k; k++)
            plan->nodes[st.node[k]].mem_planned += (uint64_t)st.held_n[k] * p->mem.expert;
    }
    if (dropped > 0)
        DSI_WARN("planner: %llu redundant expert copies found no node without that expert; "
                 "planned without them",
                 (unsigned long long)dropped);
    rep->expert_copies = n_out;
    rep->replicas = n_out - (uint64_t)M * E;
    rep->load_imbalance = p->opts->load != NULL && M > 0 ? imbalance / M : 0;
    count_moved_bytes(p, lay, plan, rep);
out:
    stage_free(&st);
    free(ids);
    free(k_of);
    return status;
}
