/*
 * dsn_moe.h - the feed-forward half of a layer, split so that experts can live anywhere.
 *
 * A MoE layer is: route every token (dsn_moe_route), compute each (token, slot) pair's expert
 * output E_k(u_t) unweighted wherever expert k is held (dsn_moe_experts, here for the experts this
 * node holds), then sum w_k * E_k(u_t) over the slots in canonical slot order plus the shared
 * expert (dsn_moe_combine). Because the sum order never depends on where an expert ran, any
 * placement gives bit-identical results.
 */
#ifndef DSN_MOE_H
#define DSN_MOE_H

#include <stdint.h>

#include "dsn_engine.h"

/* experts/weights [n, top_k]: routing of u[n, H] (already normalised by post_attention_layernorm).
 */
void dsn_moe_route(dsn_engine_t *e, int layer, const float *u, int64_t n, int32_t *experts,
                   float *weights);
/*
 * For every pair i in [0, n_pairs) whose expert is held here: out[i, H] =
 * E_{expert[i]}(x[token[i]]) with x[n_tokens, H]. Pairs whose expert is not held are left
 * untouched. Returns the number of pairs computed.
 */
int64_t dsn_moe_experts(dsn_engine_t *e, int layer, const float *x, const int32_t *pair_token,
                        const int32_t *pair_expert, int64_t n_pairs, float *out);
/* y[n, H] = shared expert(u) (zero when the model has none). */
void dsn_moe_shared(dsn_engine_t *e, int layer, const float *u, int64_t n, float *y);
/* h[t] += y_shared[t] + sum_k weights[t, k] * slot_out[t * top_k + k] in slot order. */
void dsn_moe_combine(dsn_engine_t *e, int64_t n, const float *weights, const float *slot_out,
                     const float *y_shared, float *h);
/* The dense SwiGLU layer: y[n, H] = down(silu(gate u) * up u). */
void dsn_ffn_dense(dsn_engine_t *e, int layer, const float *u, int64_t n, float *y);

#endif
