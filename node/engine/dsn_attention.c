/*
 * dsn_attention.c - MLA attention in the absorbed form over the latent KV cache (MODEL.md 4).
 *
 * Per token: c_q = RMSNorm(W_qa x); q = W_qb c_q; a = W_kva x; c_kv = RMSNorm(a[:kv_lora]);
 * k_pe = RoPE(a[kv_lora:]). The cache row of the token is [c_kv, k_pe]. Per head h:
 * qfull[h] = [W_UK[h]^T q_nope[h], RoPE(q_pe[h])], so that score(h, t) = scale * qfull[h] . row[t]
 * (one dot product over kv_lora + rope values); o_lat[h] = sum_t P[h, t] c_kv[t];
 * o[h] = W_UV[h] o_lat[h]; out = W_o concat_h o[h].
 *
 * Work is split over head ranges, so each thread streams a sequence's cache once for all its
 * heads (the score and value products are matrix products with the cache rows as the matrix).
 */
#include <string.h>

#include "dsn_engine_impl.h"

typedef struct {
    dsn_engine_t *e;
    const dsn_layer_t *ly;
    int slice_layer; /* layer index within the slice's caches */
    const dsn_seq_batch_t *seqs;
    int64_t n;           /* query tokens */
    const int32_t *tseq; /* [n] sequence of query token t */
    const int64_t *tpos; /* [n] its position */
} attn_task_t;

/* Of a block's rows [j0, j0 + rows), how many precede `open` (dsn_kvcache_open_from) and are
 * read rounded from the block; the rest come from the f32 tail. */
static int64_t rounded_rows(int64_t open, int64_t j0, int64_t rows)
{
    return open - j0 < rows ? (open > j0 ? open - j0 : 0) : rows;
}

static void attn_heads(void *arg, int64_t h0, int64_t h1)
{
    attn_task_t *a = arg;
    dsn_engine_t *e = a->e;
    const dsn_config_t *c = e->cfg;
    const dsk_ops_t *ops = &e->ops;
    dsn_scratch_t *s = &e->s;
    const dsk_matrix_t *kv_b = &a->ly->kv_b;
    const dsn_mla_dims_t d = dsn_mla_dims(c);
    int64_t row = e->kv_row, n = a->n, nh = h1 - h0;

    /* Absorb W_UK into the query: qfull[t, h, 0:lora] = W_UK[h]^T q_nope[t, h]. */
    for (int64_t h = h0; h < h1; h++) {
        int64_t r0 = h * (d.nope + d.vdim);
        for (int64_t t = 0; t < n; t++) {
            float *dst = s->qfull + (t * d.heads + h) * row;
            memset(dst, 0, (size_t)d.lora * sizeof(float));
            memcpy(dst + d.lora, s->q + t * d.heads * d.qk + h * d.qk + d.nope,
                   (size_t)d.rope * sizeof(float));
        }
        ops->matmul_t[kv_b->dtype](kv_b, r0, r0 + d.nope, s->q + h * d.qk, d.heads * d.qk, n,
                                   s->qfull + h * row, d.heads * row);
    }

    /* Scores, softmax and the weighted latent sum, token by token over its sequence's cache,
     * block by block (each block's rows are one matrix in the cache's storage type). fp8 rows
     * carry a scale each: applied to the block's scores (q . (s q8) = s (q . q8)) and, after the
     * softmax, to the probabilities that weight the rows. The rows of the token's own seal group
     * (dsn_kvcache.h, "Open tail") are read from the f32 tail instead: the last block is split
     * into its rounded rows [0, f0) and its f32 rows [f0, rows). */
    for (int64_t t = 0; t < n; t++) {
        const dsn_kvcache_t *kv = a->seqs[a->tseq[t]].kv;
        int64_t len = a->tpos[t] + 1, nb = (len + DSN_KV_BLOCK - 1) / DSN_KV_BLOCK;
        int64_t open = dsn_kvcache_open_from(kv, a->tpos[t]);
        float *scores = s->scores + h0 * s->ctx;
        const float *qf = s->qfull + (t * d.heads + h0) * row;
        for (int64_t b = 0; b < nb; b++) {
            int64_t j0 = b * DSN_KV_BLOCK, rows = len - j0 < DSN_KV_BLOCK ? len - j0 : DSN_KV_BLOCK;
            int64_t f0 = rounded_rows(open, j0, rows);
            dsk_matrix_t blk = dsn_kvcache_block_matrix(kv, a->slice_layer, b, rows, e->kv_ones);
            if (f0 > 0)
                ops->matmul[blk.dtype](&blk, 0, f0, qf, row, nh, scores + j0, s->ctx);
            if (f0 < rows) {
                dsk_matrix_t tm = dsn_kvcache_tail_matrix(kv, a->slice_layer, j0 + f0, rows - f0);
                ops->matmul[DSK_DTYPE_F32](&tm, 0, rows - f0, qf, row, nh, scores + j0 + f0,
                                           s->ctx);
            }
            const float *rs = dsn_kvcache_block_scales(kv, a->slice_layer, b);
            if (rs != NULL) {
                for (int64_t h = 0; h < nh; h++)
                    for (int64_t j = 0; j < f0; j++)
                        scores[h * s->ctx + j0 + j] *= rs[j];
            }
        }
        float *olat = s->olat + (t * d.heads + h0) * row;
        for (int64_t h = 0; h < nh; h++) {
            float *sc = scores + h * s->ctx;
            for (int64_t j = 0; j < len; j++)
                sc[j] *= e->softmax_scale;
            ops->softmax(sc, len);
            memset(olat + h * row, 0, (size_t)row * sizeof(float));
        }
        for (int64_t b = 0; b < nb; b++) {
            int64_t j0 = b * DSN_KV_BLOCK, rows = len - j0 < DSN_KV_BLOCK ? len - j0 : DSN_KV_BLOCK;
            int64_t f0 = rounded_rows(open, j0, rows);
            dsk_matrix_t blk = dsn_kvcache_block_matrix(kv, a->slice_layer, b, rows, e->kv_ones);
            const float *rs = dsn_kvcache_block_scales(kv, a->slice_layer, b);
            if (rs != NULL) {
                for (int64_t h = 0; h < nh; h++)
                    for (int64_t j = 0; j < f0; j++)
                        scores[h * s->ctx + j0 + j] *= rs[j];
            }
            if (f0 > 0)
                ops->matmul_t[blk.dtype](&blk, 0, f0, scores + j0, s->ctx, nh, olat, row);
            if (f0 < rows) {
                dsk_matrix_t tm = dsn_kvcache_tail_matrix(kv, a->slice_layer, j0 + f0, rows - f0);
                ops->matmul_t[DSK_DTYPE_F32](&tm, 0, rows - f0, scores + j0 + f0, s->ctx, nh, olat,
                                             row);
            }
        }
    }

    /* o[t, h] = W_UV[h] o_lat[t, h]. */
    for (int64_t h = h0; h < h1; h++) {
        int64_t r0 = h * (d.nope + d.vdim) + d.nope;
        ops->matmul[kv_b->dtype](kv_b, r0, r0 + d.vdim, s->olat + h * row, d.heads * row, n,
                                 s->o + h * d.vdim, d.heads * d.vdim);
    }
}

dsi_status_t dsn_engine_attention(dsn_engine_t *e, int layer, const dsn_seq_batch_t *seqs,
                                  int n_seqs, float *h)
{
    return dsn_engine_attention_rows(e, layer, seqs, n_seqs, h, NULL, 0);
}

dsi_status_t dsn_engine_attention_rows(dsn_engine_t *e, int layer, const dsn_seq_batch_t *seqs,
                                       int n_seqs, float *h, const int64_t *rows, int64_t n_rows)
{
    const dsn_config_t *c = e->cfg;
    const dsn_layer_t *ly = &e->w->layers[layer];
    const dsk_ops_t *ops = &e->ops;
    dsn_scratch_t *s = &e->s;
    int64_t n = dsn_batch_tokens(seqs, n_seqs);
    const dsn_mla_dims_t d = dsn_mla_dims(c);
    int64_t H = c->hidden_size, row = e->kv_row;
    int slice_layer = layer - e->w->slice.first_layer;
    int64_t t0 = dsn_phase_start(e);

    for (int64_t t = 0; t < n; t++)
        ops->rmsnorm(h + t * H, ly->input_norm, H, c->rms_norm_eps, s->x + t * H);

    /* Latent KV of every new token, written into the caches at their positions. */
    dsn_par_matmul(e, &ly->kv_a, 0, row, s->x, H, n, s->kva, row);
    for (int64_t t = 0; t < n; t++) {
        float *a = s->kva + t * row;
        int64_t pos = s->tok_pos[t];
        ops->rmsnorm(a, ly->kv_a_norm, d.lora, c->rms_norm_eps, a);
        dsk_rope_apply(a + d.lora, (int)d.rope, e->rope_freqs, e->rope_factor, pos);
        dsn_kvcache_store(seqs[s->tok_seq[t]].kv, slice_layer, pos, a);
    }

    /* The queries, of every token or only of `rows` (ascending): those rows of x move to the
     * front (row i <= rows[i], so the copies never overwrite a row still to move), and their
     * sequences and positions to the tail of tok_seq / tok_pos's room, past the batch. */
    int64_t m = n;
    const int32_t *tseq = s->tok_seq;
    const int64_t *tpos = s->tok_pos;
    if (rows != NULL) {
        m = n_rows;
        int32_t *qseq = s->tok_seq + n;
        int64_t *qpos = s->tok_pos + n;
        for (int64_t i = 0; i < m; i++) {
            if (rows[i] != i)
                memmove(s->x + i * H, s->x + rows[i] * H, (size_t)H * sizeof(float));
            qseq[i] = s->tok_seq[rows[i]];
            qpos[i] = s->tok_pos[rows[i]];
        }
        tseq = qseq;
        tpos = qpos;
    }
    if (c->q_lora_rank > 0) {
        int64_t qa = c->q_lora_rank;
        dsn_par_matmul(e, &ly->q_a, 0, qa, s->x, H, m, s->qa, qa);
        for (int64_t t = 0; t < m; t++)
            ops->rmsnorm(s->qa + t * qa, ly->q_a_norm, qa, c->rms_norm_eps, s->qa + t * qa);
        dsn_par_matmul(e, &ly->q_b, 0, d.heads * d.qk, s->qa, qa, m, s->q, d.heads * d.qk);
    } else {
        dsn_par_matmul(e, &ly->q_proj, 0, d.heads * d.qk, s->x, H, m, s->q, d.heads * d.qk);
    }
    for (int64_t t = 0; t < m; t++)
        for (int64_t hd = 0; hd < d.heads; hd++)
            dsk_rope_apply(s->q + t * d.heads * d.qk + hd * d.qk + d.nope, (int)d.rope,
                           e->rope_freqs, e->rope_factor, tpos[t]);

    /* A prompt chunk of one sequence: the expanded form where it is cheaper. */
    int64_t len = tpos[m - 1] + 1;
    int expanded = rows == NULL && n_seqs == 1 && e->mla != DSN_MLA_ABSORBED &&
                   (e->mla == DSN_MLA_EXPANDED ? len <= DSN_MLA_EXPANDED_MAX
                                               : dsn_mla_expanded_cheaper(c, m, len));
    if (expanded) {
        dsi_status_t st = dsn_mla_expanded(e, ly, slice_layer, seqs[0].kv, seqs[0].pos, m);
        if (st != DSI_OK)
            return st;
    } else {
        attn_task_t task = {e, ly, slice_layer, seqs, m, tseq, tpos};
        dsi_pool_run(e->pool, d.heads, 1, attn_heads, &task);
    }

    dsn_par_matmul(e, &ly->o_proj, 0, H, s->o, d.heads * d.vdim, m, s->attn, H);
    if (rows == NULL) {
        for (int64_t i = 0; i < n * H; i++)
            h[i] += s->attn[i];
    } else {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < H; j++)
                h[rows[i] * H + j] += s->attn[i * H + j];
    }
    dsn_phase_stop(e, DSN_PHASE_ATTENTION, t0);
    return DSI_OK;
}
