/*
 * dsn_attention_prefill.c - MLA attention of a prompt chunk in the expanded (non-absorbed) form.
 *
 * For m query tokens of one sequence reaching L cached positions, the absorbed form
 * (dsn_attention.c) costs per head m * (nope + v) * lora multiply-adds for W_UK / W_UV and
 * (lora + rope) * 2 per (query, key) pair; the expanded form expands every position's latent once
 * per head, K_nope[j] = W_UK c_kv[j] and V[j] = W_UV c_kv[j] (L * (nope + v) * lora), and then
 * pays only qk + v per pair: q[t] . [K_nope[j], k_pe[j]] and sum_j P[t, j] V[j]. For a prompt
 * (L close to m) it is the cheaper one from a few dozen tokens on; for a decode step (m = 1) the
 * absorbed one is (dsn_mla_expanded_cheaper).
 *
 * The cached rows are read once as f32 (c_kv and the rotated k_pe, fp8 row scales applied), then
 * each thread takes a range of heads with buffers of its own: K [L, qk], V [L, v] and the scores
 * of a block of queries [DSN_MLA_QB, L]. Causality: a block of queries scores the positions up to
 * its last query's (the rest of the row is masked by the softmax length).
 */
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dsn_engine_impl.h"

#define DSN_MLA_QB 64 /* queries per score block */

int dsn_mla_expanded_cheaper(const dsn_config_t *c, int64_t m, int64_t len)
{
    const dsn_mla_dims_t d = dsn_mla_dims(c);
    int64_t past = len - m;
    if (m < DSN_MLA_EXPANDED_MIN || len > DSN_MLA_EXPANDED_MAX)
        return 0;
    /* Multiply-adds per head; pairs = sum over the queries of their causal lengths. */
    double pairs = (double)m * (double)past + (double)m * (double)(m + 1) / 2;
    double absorbed =
        (double)m * (double)((d.nope + d.vdim) * d.lora) + pairs * 2.0 * (double)(d.lora + d.rope);
    double expanded = (double)len * (double)((d.nope + d.vdim) * d.lora) +
                      (pairs + (double)m * DSN_MLA_QB / 2.0) * (double)(d.nope + d.rope + d.vdim);
    return expanded < absorbed;
}

/* Floats of the per-thread buffers for len positions. */
static size_t slot_floats(const dsn_config_t *c, int64_t len)
{
    const dsn_mla_dims_t d = dsn_mla_dims(c);
    return (size_t)len * (size_t)(d.qk + d.vdim + DSN_MLA_QB);
}

typedef struct {
    dsn_engine_t *e;
    const dsn_layer_t *ly;
    int64_t m, len, pos0; /* query tokens at positions pos0..pos0 + m - 1; len = pos0 + m */
    const float *ckv;     /* [len, kv_row] the cached rows as f32 */
    int n_slots;
} expanded_task_t;

static void expanded_slot(void *arg, int64_t s0, int64_t s1)
{
    expanded_task_t *a = arg;
    dsn_engine_t *e = a->e;
    const dsn_config_t *c = e->cfg;
    const dsk_ops_t *ops = &e->ops;
    dsn_scratch_t *s = &e->s;
    const dsk_matrix_t *kv_b = &a->ly->kv_b;
    const dsn_mla_dims_t d = dsn_mla_dims(c);
    int64_t row = e->kv_row, len = a->len, m = a->m;
    for (int64_t slot = s0; slot < s1; slot++) {
        float *K = s->mla + (size_t)slot * slot_floats(c, len);
        float *V = K + len * d.qk, *S = V + len * d.vdim;
        int64_t h0 = d.heads * slot / a->n_slots, h1 = d.heads * (slot + 1) / a->n_slots;
        dsk_matrix_t km = {DSK_DTYPE_F32, len, d.qk, K, NULL, DSK_LAYOUT_ROWS};
        dsk_matrix_t vm = {DSK_DTYPE_F32, len, d.vdim, V, NULL, DSK_LAYOUT_ROWS};
        for (int64_t h = h0; h < h1; h++) {
            int64_t r0 = h * (d.nope + d.vdim);
            /* K[j] = [W_UK[h] c_kv[j], k_pe[j]], V[j] = W_UV[h] c_kv[j]. */
            ops->matmul[kv_b->dtype](kv_b, r0, r0 + d.nope, a->ckv, row, len, K, d.qk);
            ops->matmul[kv_b->dtype](kv_b, r0 + d.nope, r0 + d.nope + d.vdim, a->ckv, row, len, V,
                                     d.vdim);
            for (int64_t j = 0; j < len; j++)
                memcpy(K + j * d.qk + d.nope, a->ckv + j * row + d.lora,
                       (size_t)d.rope * sizeof(float));
            for (int64_t t0 = 0; t0 < m; t0 += DSN_MLA_QB) {
                int64_t qb = m - t0 < DSN_MLA_QB ? m - t0 : DSN_MLA_QB;
                int64_t reach = a->pos0 + t0 + qb; /* positions the block's last query sees */
                ops->matmul[DSK_DTYPE_F32](&km, 0, reach, s->q + t0 * d.heads * d.qk + h * d.qk,
                                           d.heads * d.qk, qb, S, len);
                for (int64_t i = 0; i < qb; i++) {
                    float *sc = S + i * len;
                    int64_t n_keys = a->pos0 + t0 + i + 1;
                    for (int64_t j = 0; j < n_keys; j++)
                        sc[j] *= e->softmax_scale;
                    ops->softmax(sc, n_keys);
                    for (int64_t j = n_keys; j < reach; j++)
                        sc[j] = 0.0f;
                    memset(s->o + (t0 + i) * d.heads * d.vdim + h * d.vdim, 0,
                           (size_t)d.vdim * sizeof(float));
                }
                ops->matmul_t[DSK_DTYPE_F32](&vm, 0, reach, S, len, qb,
                                             s->o + t0 * d.heads * d.vdim + h * d.vdim,
                                             d.heads * d.vdim);
            }
        }
    }
}

dsi_status_t dsn_mla_expanded(dsn_engine_t *e, const dsn_layer_t *ly, int slice_layer,
                              const dsn_kvcache_t *kv, int64_t pos0, int64_t m)
{
    const dsn_config_t *c = e->cfg;
    dsn_scratch_t *s = &e->s;
    int64_t len = pos0 + m, row = e->kv_row;
    int n_slots = dsi_pool_threads(e->pool);
    if (n_slots > c->num_attention_heads)
        n_slots = c->num_attention_heads;
    size_t need = (size_t)len * (size_t)row + (size_t)n_slots * slot_floats(c, len);
    if (need > s->mla_floats) {
        float *p = realloc(s->mla, need * sizeof(float));
        if (p == NULL) {
            DSI_ERROR("out of memory for the attention of %lld prompt positions", (long long)len);
            return DSI_ERR_NOMEM;
        }
        s->mla = p;
        s->mla_floats = need;
    }
    /* The cached rows as f32, after the threads' buffers. */
    float *ckv = s->mla + (size_t)n_slots * slot_floats(c, len);
    for (int64_t b = 0; b * DSN_KV_BLOCK < len; b++) {
        int64_t j0 = b * DSN_KV_BLOCK, rows = len - j0 < DSN_KV_BLOCK ? len - j0 : DSN_KV_BLOCK;
        dsk_matrix_t blk = dsn_kvcache_block_matrix(kv, slice_layer, b, rows, e->kv_ones);
        const float *rs = dsn_kvcache_block_scales(kv, slice_layer, b);
        for (int64_t j = 0; j < rows; j++) {
            float *dst = ckv + (j0 + j) * row;
            e->ops.row_f32[blk.dtype](&blk, j, dst);
            if (rs != NULL)
                for (int64_t i = 0; i < row; i++)
                    dst[i] *= rs[j];
        }
    }
    expanded_task_t task = {e, ly, m, len, pos0, ckv, n_slots};
    dsi_pool_run(e->pool, n_slots, 1, expanded_slot, &task);
    return DSI_OK;
}
