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
 * each thread takes a range of heads with buffers of its own: K [nk, qk], V [nk, v] and the scores
 * of a block of queries [DSN_MLA_QB, L]. Causality: a block of queries scores the positions up to
 * its last query's (the rest of the row is masked by the softmax length).
 *
 * A rounded cache (dsn_kvcache.h, "Open tail") shows a query the rows of its own seal group as f32
 * and the earlier ones rounded, so a chunk that crosses seal groups needs some rows in both forms:
 * the rows are the rounded ones [0, nr) (nr: the last query's seal start) followed by the f32 ones
 * [f0, L) (f0: the first query's seal start), nk = nr + L - f0, and each block of queries (within
 * one seal group, starting at g) scores rounded [0, g) and f32 [g, reach). With f32 storage
 * nr = L and there are no f32 copies.
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

/* Floats of the per-thread buffers for nk expanded rows and len positions. */
static size_t slot_floats(const dsn_config_t *c, int64_t nk, int64_t len)
{
    const dsn_mla_dims_t d = dsn_mla_dims(c);
    return (size_t)nk * (size_t)(d.qk + d.vdim) + (size_t)len * DSN_MLA_QB;
}

typedef struct {
    dsn_engine_t *e;
    const dsn_layer_t *ly;
    int64_t m, len, pos0; /* query tokens at positions pos0..pos0 + m - 1; len = pos0 + m */
    const dsn_kvcache_t *kv;
    int64_t nr, f0;   /* rounded rows [0, nr), then f32 rows [f0, len) */
    const float *ckv; /* [nr + len - f0, kv_row] those rows as f32 */
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
    int64_t row = e->kv_row, len = a->len, m = a->m, nr = a->nr, f0 = a->f0;
    int64_t nk = nr + len - f0;
    for (int64_t slot = s0; slot < s1; slot++) {
        float *K = s->mla + (size_t)slot * slot_floats(c, nk, len);
        float *V = K + nk * d.qk, *S = V + nk * d.vdim;
        int64_t h0 = d.heads * slot / a->n_slots, h1 = d.heads * (slot + 1) / a->n_slots;
        dsk_matrix_t km = {DSK_DTYPE_F32, nk, d.qk, K, NULL, DSK_LAYOUT_ROWS};
        dsk_matrix_t vm = {DSK_DTYPE_F32, nk, d.vdim, V, NULL, DSK_LAYOUT_ROWS};
        for (int64_t h = h0; h < h1; h++) {
            int64_t r0 = h * (d.nope + d.vdim);
            /* K[j] = [W_UK[h] c_kv[j], k_pe[j]], V[j] = W_UV[h] c_kv[j]. */
            ops->matmul[kv_b->dtype](kv_b, r0, r0 + d.nope, a->ckv, row, nk, K, d.qk);
            ops->matmul[kv_b->dtype](kv_b, r0 + d.nope, r0 + d.nope + d.vdim, a->ckv, row, nk, V,
                                     d.vdim);
            for (int64_t j = 0; j < nk; j++)
                memcpy(K + j * d.qk + d.nope, a->ckv + j * row + d.lora,
                       (size_t)d.rope * sizeof(float));
            for (int64_t t0 = 0; t0 < m;) {
                /* A block of queries [t0, t0 + qb) within one seal group, which starts at g. */
                int64_t g = f0 < len ? dsn_kvcache_open_from(a->kv, a->pos0 + t0) : len;
                int64_t qb = m - t0 < DSN_MLA_QB ? m - t0 : DSN_MLA_QB;
                if (f0 < len && g + a->kv->seal - (a->pos0 + t0) < qb)
                    qb = g + a->kv->seal - (a->pos0 + t0);
                int64_t reach = a->pos0 + t0 + qb;  /* positions the block's last query sees */
                int64_t gr = g < reach ? g : reach; /* rounded keys [0, gr), f32 [gr, reach) */
                const float *qt = s->q + t0 * d.heads * d.qk + h * d.qk;
                ops->matmul[DSK_DTYPE_F32](&km, 0, gr, qt, d.heads * d.qk, qb, S, len);
                if (gr < reach)
                    ops->matmul[DSK_DTYPE_F32](&km, nr + gr - f0, nr + reach - f0, qt,
                                               d.heads * d.qk, qb, S + gr, len);
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
                float *ot = s->o + t0 * d.heads * d.vdim + h * d.vdim;
                ops->matmul_t[DSK_DTYPE_F32](&vm, 0, gr, S, len, qb, ot, d.heads * d.vdim);
                if (gr < reach)
                    ops->matmul_t[DSK_DTYPE_F32](&vm, nr + gr - f0, nr + reach - f0, S + gr, len,
                                                 qb, ot, d.heads * d.vdim);
                t0 += qb;
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
    /* Rounded rows [0, nr), then the f32 copies [f0, len) (none for f32 storage). */
    int64_t nr = len, f0 = len;
    if (kv->dtype != DSN_KV_F32) {
        nr = dsn_kvcache_open_from(kv, len - 1);
        f0 = dsn_kvcache_open_from(kv, pos0);
    }
    int64_t nk = nr + len - f0;
    size_t need = (size_t)nk * (size_t)row + (size_t)n_slots * slot_floats(c, nk, len);
    if (need > s->mla_floats) {
        float *p = realloc(s->mla, need * sizeof(float));
        if (p == NULL) {
            DSI_ERROR("out of memory for the attention of %lld prompt positions", (long long)len);
            return DSI_ERR_NOMEM;
        }
        s->mla = p;
        s->mla_floats = need;
    }
    /* The rows as f32, after the threads' buffers. */
    float *ckv = s->mla + (size_t)n_slots * slot_floats(c, nk, len);
    for (int64_t b = 0; b * DSN_KV_BLOCK < nr; b++) {
        int64_t j0 = b * DSN_KV_BLOCK, rows = nr - j0 < DSN_KV_BLOCK ? nr - j0 : DSN_KV_BLOCK;
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
    for (int64_t j = f0; j < len; j++)
        memcpy(ckv + (nr + j - f0) * row, dsn_kvcache_tail_row(kv, slice_layer, j),
               (size_t)row * sizeof(float));
    expanded_task_t task = {e, ly, m, len, pos0, kv, nr, f0, ckv, n_slots};
    dsi_pool_run(e->pool, n_slots, 1, expanded_slot, &task);
    return DSI_OK;
}
