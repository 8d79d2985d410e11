/*
 * dsn_moe.h - the feed-forward half of a layer, split so that experts can live anywhere.
 *
 * A MoE layer is: route every token (dsn_moe_route), compute each (token, slot) pair's weighted
 * expert output w_k * E_k(u_t) (rounded to f32, as a COMBINE row carries it) wherever expert k is
 * held (dsn_moe_experts, here for the experts this node holds), then add those rows over the slots
 * in canonical slot order plus the shared expert (dsn_moe_combine). Because every row is computed
 * the same way and the sum order never depends on where an expert ran, any placement gives
 * bit-identical results.
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
 * For every pair i in [0, n_pairs) whose expert is held here:
 *   out[i, H] = pair_weight[i] * E_{pair_expert[i]}(x[pair_token[i]])   with x[n_tokens, H].
 * Expert ids must be < n_routed_experts (the caller validates what came from the network). Pairs
 * whose expert is not held are left untouched. Returns the number of pairs computed, -1 when out
 * of memory.
 */
int64_t dsn_moe_experts(dsn_engine_t *e, int layer, const float *x, const int32_t *pair_token,
                        const int32_t *pair_expert, const float *pair_weight, int64_t n_pairs,
                        float *out);
/* Whether this engine's weights hold routed expert `expert` of `layer`. */
int dsn_moe_holds(const dsn_engine_t *e, int layer, int expert);
/* y[n, H] = shared expert(u) (zero when the model has none). */
void dsn_moe_shared(dsn_engine_t *e, int layer, const float *u, int64_t n, float *y);
/* h[t] += (sum over k in slot order of slot_out[t * top_k + k]) + y_shared[t]. */
void dsn_moe_combine(dsn_engine_t *e, int64_t n, const float *slot_out, const float *y_shared,
                     float *h);
/* The dense SwiGLU layer: y[n, H] = down(silu(gate u) * up u). */
void dsn_ffn_dense(dsn_engine_t *e, int layer, const float *u, int64_t n, float *y);

#endif
