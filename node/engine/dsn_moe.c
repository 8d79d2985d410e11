/*
 * dsn_moe.c - the feed-forward half of a layer: router, routed experts (grouped by expert so each
 * expert's weights stream once for all its tokens), shared expert, and the slot-ordered combine.
 */
#include <string.h>

#include "dsn_engine_impl.h"
#include "dsn_moe.h"

/* y[n, H] = down(silu(gate x) * up x) with the intermediate width of `gate`. */
static void swiglu(dsn_engine_t *e, const dsk_matrix_t *gate, const dsk_matrix_t *up,
                   const dsk_matrix_t *down, const float *x, int64_t n, float *y)
{
    int64_t H = e->cfg->hidden_size, I = gate->rows;
    float *a = e->s.ffn_a, *b = e->s.ffn_b;
    dsn_par_matmul(e, gate, 0, I, x, H, n, a, I);
    dsn_par_matmul(e, up, 0, I, x, H, n, b, I);
    e->ops.silu_mul(a, b, n * I, a);
    dsn_par_matmul(e, down, 0, H, a, I, n, y, H);
}

void dsn_ffn_dense(dsn_engine_t *e, int layer, const float *u, int64_t n, float *y)
{
    const dsn_layer_t *ly = &e->w->layers[layer];
    swiglu(e, &ly->gate, &ly->up, &ly->down, u, n, y);
}

void dsn_moe_route(dsn_engine_t *e, int layer, const float *u, int64_t n, int32_t *experts,
                   float *weights)
{
    const dsn_layer_t *ly = &e->w->layers[layer];
    int64_t E = e->router.n_experts, K = e->router.top_k, H = e->cfg->hidden_size;
    float *logits = e->s.router_logits; /* [n, E], f32 as HF computes them */
    float scratch[2 * DSK_ROUTER_MAX_EXPERTS];
    dsn_par_matmul(e, &ly->router, 0, E, u, H, n, logits, E);
    for (int64_t t = 0; t < n; t++)
        dsk_router_topk(&e->router, logits + t * E, ly->router_bias, scratch, experts + t * K,
                        weights + t * K);
}

int dsn_moe_holds(const dsn_engine_t *e, int layer, int expert)
{
    const dsn_layer_t *ly = &e->w->layers[layer];
    return ly->experts != NULL && ly->experts[expert].present;
}

int64_t dsn_moe_experts(dsn_engine_t *e, int layer, const float *x, const int32_t *pair_token,
                        const int32_t *pair_expert, const float *pair_weight, int64_t n_pairs,
                        float *out)
{
    const dsn_layer_t *ly = &e->w->layers[layer];
    int64_t H = e->cfg->hidden_size, E = e->router.n_experts, K = e->router.top_k, done = 0;
    /* Scratch for n_pairs pairs: pair_index and gather hold tokens * top_k entries. */
    if (dsn_engine_scratch(e, (n_pairs + K - 1) / K, 1) != DSI_OK)
        return -1;
    int32_t *idx = e->s.pair_index;
    /* Counting sort of the pairs by expert, so each expert runs once over all its tokens. */
    int64_t count[DSK_ROUTER_MAX_EXPERTS + 1];
    memset(count, 0, (size_t)(E + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < n_pairs; i++)
        count[pair_expert[i] + 1]++;
    for (int64_t x_ = 0; x_ < E; x_++)
        count[x_ + 1] += count[x_];
    int64_t start[DSK_ROUTER_MAX_EXPERTS + 1];
    memcpy(start, count, (size_t)(E + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < n_pairs; i++)
        idx[start[pair_expert[i]]++] = (int32_t)i;

    for (int64_t ex = 0; ex < E; ex++) {
        int64_t m = count[ex + 1] - count[ex];
        const dsn_expert_t *xp = &ly->experts[ex];
        if (m == 0 || !xp->present)
            continue;
        const int32_t *pairs = idx + count[ex];
        for (int64_t j = 0; j < m; j++)
            memcpy(e->s.gather + j * H, x + (int64_t)pair_token[pairs[j]] * H,
                   (size_t)H * sizeof(float));
        swiglu(e, &xp->gate, &xp->up, &xp->down, e->s.gather, m, e->s.expert_y);
        for (int64_t j = 0; j < m; j++) {
            float w = pair_weight[pairs[j]];
            const float *src = e->s.expert_y + j * H;
            float *dst = out + (int64_t)pairs[j] * H;
            for (int64_t i = 0; i < H; i++)
                dst[i] = w * src[i];
        }
        done += m;
    }
    return done;
}

void dsn_moe_shared(dsn_engine_t *e, int layer, const float *u, int64_t n, float *y)
{
    const dsn_layer_t *ly = &e->w->layers[layer];
    if (ly->shared_gate.data == NULL) {
        memset(y, 0, (size_t)(n * e->cfg->hidden_size) * sizeof(float));
        return;
    }
    swiglu(e, &ly->shared_gate, &ly->shared_up, &ly->shared_down, u, n, y);
}

void dsn_moe_combine(dsn_engine_t *e, int64_t n, const float *slot_out, const float *y_shared,
                     float *h)
{
    int64_t H = e->cfg->hidden_size, K = e->router.top_k;
    for (int64_t t = 0; t < n; t++) {
        float *ht = h + t * H;
        const float *rows = slot_out + t * K * H;
        /* moe = sum of the weighted slot rows in slot order; then h += moe + shared (HF's order
         * of additions). Plain adds, so the result does not depend on the kernel level. */
        for (int64_t i = 0; i < H; i++) {
            float moe = rows[i];
            for (int64_t k = 1; k < K; k++)
                moe += rows[k * H + i];
            ht[i] += moe + y_shared[t * H + i];
        }
    }
}
