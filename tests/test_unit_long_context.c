/*
 * A sequence longer than 16384 tokens on a small synthetic model (tiny widths, one layer,
 * max_position_embeddings 163840, YaRN as V3): the engine prefills 17000 tokens in chunks and
 * decodes after them with finite logits, and the rotated k_pe it cached at long positions equals
 * MODEL.md's YaRN RoPE written out here in double precision (frequencies with the YaRN ramp, the
 * attention factor, the angle as the references form it: a float32 product of position and
 * frequency) applied to the token's unrotated k_pe, recomputed from its embedding.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_synth.h"

#define N_TOKENS 17000
#define CHUNK    2048

/* MODEL.md 4.5 in double: inverse frequencies with the YaRN ramp. */
static void yarn_freqs(int dim, double base, const dsk_yarn_t *y, double *out)
{
    double lf = log(y->original_max_pos / (2 * M_PI * y->beta_fast));
    double ls = log(y->original_max_pos / (2 * M_PI * y->beta_slow));
    double low = fmax(floor(dim * lf / (2 * log(base))), 0);
    double high = fmin(ceil(dim * ls / (2 * log(base))), dim - 1);
    if (low == high)
        high += 0.001;
    for (int i = 0; i < dim / 2; i++) {
        double f = pow(base, -2.0 * i / dim);
        double ramp = fmin(fmax((i - low) / (high - low), 0), 1);
        out[i] = y->factor > 1 ? f / y->factor * ramp + f * (1 - ramp) : f;
    }
}

static double get_mscale(double s, double m)
{
    return s <= 1 ? 1.0 : 0.1 * m * log(s) + 1.0;
}

static int32_t token_at(int64_t i, int vocab)
{
    return (int32_t)((i * 7919 + 13) % vocab);
}

int main(void)
{
    const char *dir = dsi_test_tmpdir();
    dsn_synth_opts_t so;
    dsn_synth_opts_init(&so);
    so.layers = 1;
    so.experts = 8;
    if (dsn_synth_write(&so, dir) != DSI_OK) {
        fprintf(stderr, "cannot write the synthetic model\n");
        return 1;
    }
    dsn_checkpoint_t *ck;
    DSI_CHECK_INT_EQ(dsn_checkpoint_open(dir, &ck), DSI_OK);
    const dsn_config_t *cfg = dsn_checkpoint_config(ck);
    DSI_CHECK(cfg->max_position_embeddings > N_TOKENS);
    DSI_CHECK(cfg->has_yarn);
    dsn_slice_t all = dsn_slice_all(cfg);
    dsn_weights_t *w;
    DSI_CHECK_INT_EQ(dsn_weights_load(ck, &all, &w), DSI_OK);
    dsn_engine_t *e;
    DSI_CHECK_INT_EQ(dsn_engine_create(w, dsk_level_detect(), 2, &e), DSI_OK);
    /* f32 storage: the cached k_pe is the engine's rotation, unrounded. */
    DSI_CHECK_INT_EQ(dsn_engine_set_kv(e, DSN_KV_F32, 0), DSI_OK);
    int V = cfg->vocab_size;
    int32_t *tokens = malloc(N_TOKENS * sizeof(int32_t));
    float *logits = malloc((size_t)V * sizeof(float));
    for (int64_t i = 0; i < N_TOKENS; i++)
        tokens[i] = token_at(i, V);
    dsn_kvcache_t *kv;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(e, cfg->max_position_embeddings, &kv), DSI_OK);
    for (int64_t done = 0; done < N_TOKENS;) {
        int n = N_TOKENS - done < CHUNK ? (int)(N_TOKENS - done) : CHUNK;
        dsn_seq_batch_t seq = {kv, done, n};
        DSI_CHECK_INT_EQ(dsn_engine_forward(e, tokens + done, &seq, 1, 0, logits), DSI_OK);
        done += n;
    }
    DSI_CHECK_INT_EQ(kv->length, N_TOKENS);
    for (int step = 0; step < 2; step++) {
        int32_t t = 5 + step;
        dsn_seq_batch_t seq = {kv, kv->length, 1};
        DSI_CHECK_INT_EQ(dsn_engine_forward(e, &t, &seq, 1, 0, logits), DSI_OK);
        int finite = 1;
        for (int i = 0; i < V; i++)
            finite &= isfinite(logits[i]);
        DSI_CHECK(finite);
    }
    DSI_CHECK_INT_EQ(kv->length, N_TOKENS + 2);

    /* k_pe at long positions against the double-precision formula. */
    const dsk_ops_t *ops = dsn_engine_ops(e);
    const dsn_layer_t *ly = &w->layers[0];
    int H = cfg->hidden_size, lora = cfg->kv_lora_rank, rope = cfg->qk_rope_head_dim;
    int row = lora + rope;
    double freqs[64], af = get_mscale(cfg->yarn.factor, cfg->yarn.mscale) /
                           get_mscale(cfg->yarn.factor, cfg->yarn.mscale_all_dim);
    yarn_freqs(rope, cfg->rope_theta, &cfg->yarn, freqs);
    float *x = malloc((size_t)H * sizeof(float)), *a = malloc((size_t)row * sizeof(float));
    float *got = malloc((size_t)row * sizeof(float));
    static const int64_t positions[] = {0, 1, 4095, 4096, 16383, 16384, 16385, 16999};
    int bad = 0;
    for (size_t k = 0; k < sizeof(positions) / sizeof(positions[0]); k++) {
        int64_t pos = positions[k];
        dsk_matrix_row_f32(&w->embed, token_at(pos, V), x);
        ops->rmsnorm(x, ly->input_norm, H, cfg->rms_norm_eps, x);
        ops->matmul[ly->kv_a.dtype](&ly->kv_a, 0, row, x, H, 1, a, row);
        dsn_kvcache_load(kv, 0, pos, got);
        for (int i = 0; i < rope / 2; i++) {
            float angle = (float)pos * (float)freqs[i];
            double c = cos((double)angle) * af, s = sin((double)angle) * af;
            double x0 = a[lora + 2 * i], x1 = a[lora + 2 * i + 1];
            double w0 = x0 * c - x1 * s, w1 = x0 * s + x1 * c;
            double tol = 1e-4 * (fabs(x0) + fabs(x1)) + 1e-6;
            if (fabs(got[lora + 2 * i] - w0) > tol || fabs(got[lora + 2 * i + 1] - w1) > tol) {
                fprintf(stderr, "position %lld pair %d: (%.7g, %.7g), formula (%.7g, %.7g)\n",
                        (long long)pos, i, got[lora + 2 * i], got[lora + 2 * i + 1], w0, w1);
                bad++;
            }
        }
    }
    DSI_CHECK_INT_EQ(bad, 0);
    /* Past the model's positions: a clear error, not a wrong rotation. */
    dsn_kvcache_t *small;
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(e, 1u << 30, &small), DSI_OK);
    DSI_CHECK_INT_EQ(small->max_tokens, cfg->max_position_embeddings);
    DSI_CHECK_INT_EQ(dsn_kvcache_reserve(small, (int64_t)cfg->max_position_embeddings + 1),
                     DSI_ERR_CAPACITY);
    dsn_kvcache_destroy(small);
    free(x);
    free(a);
    free(got);
    free(tokens);
    free(logits);
    dsn_kvcache_destroy(kv);
    dsn_engine_destroy(e);
    dsn_weights_destroy(w);
    dsn_checkpoint_close(ck);
    dsi_test_rmtree(dir);
    return dsi_test_finish();
}
