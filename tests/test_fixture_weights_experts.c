/*
 * test_fixture_weights_experts.c - changing the routed experts of a loaded slice (the
 * make-before-break re-plan of docs/ELASTICITY.md): dsn_weights_add_experts gives exactly the
 * matrices a fresh load of the larger set gives (as stored, and re-quantized to int8), and
 * dsn_weights_drop_experts leaves exactly what a fresh load of the smaller set holds, byte counts
 * included. On the tiny-v3 fixture.
 */
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsn_checkpoint.h"
#include "dsn_weights.h"

static const dsn_config_t *cfg;
static size_t n_slots;

/* mask[i] = 1 where pick(expert) holds, over every MoE layer. */
static uint8_t *make_mask(int (*pick)(int e))
{
    uint8_t *m = calloc(n_slots, 1);
    for (size_t i = 0; i < n_slots; i++)
        m[i] = (uint8_t)pick((int)(i % (size_t)cfg->n_routed_experts));
    return m;
}

static int pick_even(int e)
{
    return e % 2 == 0;
}
static int pick_all(int e)
{
    (void)e;
    return 1;
}
static int pick_third(int e)
{
    return e % 3 == 0;
}

static int same_matrix(const dsk_matrix_t *a, const dsk_matrix_t *b)
{
    if (a->dtype != b->dtype || a->rows != b->rows || a->cols != b->cols)
        return 0;
    size_t data = (size_t)a->rows * (size_t)dsk_dtype_row_bytes(a->dtype, a->cols);
    if (memcmp(a->data, b->data, data) != 0)
        return 0;
    int64_t sr = dsk_dtype_scale_rows(a->dtype);
    if (sr <= 0)
        return 1;
    size_t scales =
        (size_t)((a->rows + sr - 1) / sr) * (size_t)dsk_dtype_scale_cols(a->dtype, a->cols);
    return memcmp(a->scale_inv, b->scale_inv, scales * sizeof(float)) == 0;
}

/* w holds exactly the experts of `ref` (a fresh load), with the same matrices and byte count. */
static void check_like(const char *what, const dsn_weights_t *w, const dsn_weights_t *ref)
{
    int bad_presence = 0, bad_matrix = 0;
    for (int l = cfg->first_k_dense_replace; l < cfg->num_hidden_layers; l++) {
        for (int e = 0; e < cfg->n_routed_experts; e++) {
            const dsn_expert_t *x = &w->layers[l].experts[e], *y = &ref->layers[l].experts[e];
            bad_presence += x->present != y->present;
            if (x->present && y->present)
                bad_matrix += !same_matrix(&x->gate, &y->gate) || !same_matrix(&x->up, &y->up) ||
                              !same_matrix(&x->down, &y->down);
        }
    }
    if (bad_presence || bad_matrix || w->weight_bytes != ref->weight_bytes)
        fprintf(stderr, "%s: %d experts held differently, %d differ, bytes %llu vs %llu\n", what,
                bad_presence, bad_matrix, (unsigned long long)w->weight_bytes,
                (unsigned long long)ref->weight_bytes);
    DSI_CHECK_INT_EQ(bad_presence, 0);
    DSI_CHECK_INT_EQ(bad_matrix, 0);
    DSI_CHECK_INT_EQ(w->weight_bytes, ref->weight_bytes);
}

static dsn_weights_t *load(dsn_checkpoint_t *ckpt, const uint8_t *mask, dsn_weight_format_t f)
{
    dsn_slice_t s = dsn_slice_all(cfg);
    s.expert_mask = mask;
    dsn_weights_t *w = NULL;
    DSI_CHECK_INT_EQ(dsn_weights_load_as(ckpt, &s, f, 2, &w), DSI_OK);
    return w;
}

int main(void)
{
    const char *dir = dsi_test_fixture("tiny-v3");
    dsn_checkpoint_t *ckpt;
    if (dsn_checkpoint_open(dir, &ckpt) != DSI_OK) {
        fprintf(stderr, "cannot open the fixture\n");
        return 1;
    }
    cfg = dsn_checkpoint_config(ckpt);
    n_slots = (size_t)(cfg->num_hidden_layers - cfg->first_k_dense_replace) *
              (size_t)cfg->n_routed_experts;
    uint8_t *even = make_mask(pick_even), *all = make_mask(pick_all),
            *third = make_mask(pick_third);
    size_t n_moe = (size_t)(cfg->num_hidden_layers - cfg->first_k_dense_replace);
    size_t odd = n_moe * (size_t)(cfg->n_routed_experts / 2);

    const dsn_weight_format_t formats[] = {DSN_WFMT_AUTO, DSN_WFMT_INT8};
    for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
        const char *name = dsn_weight_format_name(formats[f]);
        dsn_weights_t *w = load(ckpt, even, formats[f]);
        dsn_weights_t *full = load(ckpt, all, formats[f]);
        dsn_weights_t *thirds = load(ckpt, third, formats[f]);
        size_t added = 0;
        DSI_CHECK_INT_EQ(dsn_weights_add_experts(w, ckpt, all, 2, &added), DSI_OK);
        DSI_CHECK_INT_EQ(added, odd);
        check_like(name, w, full);
        /* Adding what is held already adds nothing. */
        DSI_CHECK_INT_EQ(dsn_weights_add_experts(w, ckpt, even, 2, &added), DSI_OK);
        DSI_CHECK_INT_EQ(added, 0);
        size_t dropped = dsn_weights_drop_experts(w, third);
        size_t kept = n_moe * (size_t)((cfg->n_routed_experts + 2) / 3);
        DSI_CHECK_INT_EQ(dropped, n_moe * (size_t)cfg->n_routed_experts - kept);
        check_like(name, w, thirds);
        /* Back to the even set: the experts dropped a moment ago load again. */
        DSI_CHECK_INT_EQ(dsn_weights_add_experts(w, ckpt, even, 2, &added), DSI_OK);
        dsn_weights_drop_experts(w, even);
        dsn_weights_t *evens = load(ckpt, even, formats[f]);
        check_like(name, w, evens);
        printf("%s: added %zu, dropped %zu, re-added %zu experts\n", name, odd, dropped, added);
        dsn_weights_destroy(evens);
        dsn_weights_destroy(thirds);
        dsn_weights_destroy(full);
        dsn_weights_destroy(w);
    }
    free(even);
    free(all);
    free(third);
    dsn_checkpoint_close(ckpt);
    return dsi_test_finish();
}
