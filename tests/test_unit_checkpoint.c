/*
 * test_unit_checkpoint.c - dsn_checkpoint on the tiny-v3 fixture: counts, dtypes, shapes, an FP8
 * projection with its scale grid, BF16/F32 vectors, and the typed-access errors.
 * Expected values were read from the fixture with Python's struct module.
 */
#include <stdlib.h>

#include "dsi_test.h"
#include "dsn_checkpoint.h"

static void check_fixture(const dsn_checkpoint_t *ck)
{
    const dsn_config_t *cfg = dsn_checkpoint_config(ck);
    DSI_CHECK_INT_EQ(cfg->hidden_size, 256);
    DSI_CHECK_INT_EQ(cfg->num_hidden_layers, 4);
    DSI_CHECK_INT_EQ(cfg->fp8, 1);
    DSI_CHECK_INT_EQ(dsn_checkpoint_count(ck), 665);
    DSI_CHECK_INT_EQ(dsn_checkpoint_skipped_count(ck), 0);
    DSI_CHECK_INT_EQ(dsn_checkpoint_shard_count(ck), 2);

    int n_fp8 = 0, n_bf16 = 0, n_f32 = 0;
    for (size_t i = 0; i < dsn_checkpoint_count(ck); i++) {
        const dsn_st_tensor_t *t = dsn_checkpoint_at(ck, i);
        n_fp8 += t->dtype == DSN_ST_F8_E4M3;
        n_bf16 += t->dtype == DSN_ST_BF16;
        n_f32 += t->dtype == DSN_ST_F32;
        DSI_CHECK(dsn_checkpoint_find(ck, t->name) == t);
    }
    DSI_CHECK_INT_EQ(n_fp8, 320);
    DSI_CHECK_INT_EQ(n_bf16, 22);
    DSI_CHECK_INT_EQ(n_f32, 323);
    DSI_CHECK(dsn_checkpoint_find(ck, "model.layers.9.mlp.gate.weight") == NULL);
    DSI_CHECK(dsn_checkpoint_at(ck, 100000) == NULL);

    const dsn_st_tensor_t *emb = dsn_checkpoint_find(ck, "model.embed_tokens.weight");
    DSI_CHECK(emb != NULL);
    if (emb != NULL) {
        DSI_CHECK_INT_EQ(emb->dtype, DSN_ST_BF16);
        DSI_CHECK_INT_EQ(emb->n_dims, 2);
        DSI_CHECK_INT_EQ(emb->shape[0], 1024);
        DSI_CHECK_INT_EQ(emb->shape[1], 256);
        DSI_CHECK_INT_EQ(emb->nbytes, 1024 * 256 * 2);
    }

    /* kv_a_proj: 64 + 16 = 80 rows, a partial 128-row block; scale grid [1, 2]. */
    dsk_matrix_t m;
    DSI_CHECK_INT_EQ(
        dsn_checkpoint_matrix(ck, "model.layers.1.self_attn.kv_a_proj_with_mqa", 80, 256, &m),
        DSI_OK);
    DSI_CHECK_INT_EQ(m.dtype, DSK_DTYPE_F8_E4M3);
    DSI_CHECK_INT_EQ(m.rows, 80);
    DSI_CHECK_INT_EQ(m.cols, 256);
    DSI_CHECK(m.scale_inv != NULL);
    if (m.scale_inv != NULL) {
        DSI_CHECK_NEAR(m.scale_inv[0], 0.000597461941652, 1e-12);
        DSI_CHECK_NEAR(m.scale_inv[1], 0.0005163602181710303, 1e-12);
        const uint8_t *w = m.data;
        DSI_CHECK_INT_EQ(w[0], 234);
        DSI_CHECK_INT_EQ(w[79 * 256 + 255], 230);
    }
    /* Typed-access errors: wrong shape, missing tensor, non-matrix dtype. */
    DSI_CHECK_INT_EQ(
        dsn_checkpoint_matrix(ck, "model.layers.1.self_attn.kv_a_proj_with_mqa", 256, 80, &m),
        DSI_ERR_BAD_TENSOR);
    DSI_CHECK_INT_EQ(dsn_checkpoint_matrix(ck, "model.layers.1.self_attn.nothing", 80, 256, &m),
                     DSI_ERR_MISSING_TENSOR);
    DSI_CHECK_INT_EQ(dsn_checkpoint_matrix(ck, "model.embed_tokens", 1024, 256, &m), DSI_OK);
    DSI_CHECK_INT_EQ(m.dtype, DSK_DTYPE_BF16);
    DSI_CHECK(m.scale_inv == NULL);

    float v[256];
    DSI_CHECK_INT_EQ(dsn_checkpoint_vector_f32(ck, "model.norm.weight", 256, v), DSI_OK);
    DSI_CHECK_NEAR(v[0], 1.4765625, 0);
    DSI_CHECK_NEAR(v[1], 0.80078125, 0);
    DSI_CHECK_NEAR(v[2], 0.9375, 0);
    DSI_CHECK_INT_EQ(
        dsn_checkpoint_vector_f32(ck, "model.layers.1.mlp.gate.e_score_correction_bias", 32, v),
        DSI_OK);
    DSI_CHECK_NEAR(v[0], -0.021707531064748764, 1e-9);
    DSI_CHECK_NEAR(v[2], -0.157464861869812, 1e-9);
    DSI_CHECK_INT_EQ(dsn_checkpoint_vector_f32(ck, "model.norm.weight", 255, v),
                     DSI_ERR_BAD_TENSOR);
    DSI_CHECK_INT_EQ(dsn_checkpoint_vector_f32(
                         ck, "model.layers.1.self_attn.kv_a_proj_with_mqa.weight", 80 * 256, v),
                     DSI_ERR_BAD_TENSOR);
    DSI_CHECK_INT_EQ(dsn_checkpoint_vector_f32(ck, "model.nothing", 4, v), DSI_ERR_MISSING_TENSOR);
}

int main(void)
{
    const char *dir = dsi_test_fixture("tiny-v3");
    dsn_checkpoint_t *ck = NULL;
    DSI_CHECK_INT_EQ(dsn_checkpoint_open(dir, &ck), DSI_OK);
    if (ck != NULL) {
        check_fixture(ck);
        dsn_checkpoint_close(ck);
    }
    return dsi_test_finish();
}
