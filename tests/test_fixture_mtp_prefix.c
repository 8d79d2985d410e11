/*
 * The prefix cache of a speculating sequence (dsn_spec_attach_prefix, dsn_spec_publish) against
 * ../shared/fixtures/tiny-v3-mtp, f32 caches:
 * - sequence A prefills prompt X and publishes its main and MTP blocks; B's prompt Y shares X's
 *   first two blocks (128 tokens) and differs from the first token after them, so A's MTP row at
 *   position 127 (paired with X's token 128) is not Y's: B takes 127 positions, computes the
 *   rest, and its main and MTP cache rows, logits and greedy speculative tokens equal those of C,
 *   which computes Y from scratch (rows within 1e-4, tokens identical). A's row 127 differs from
 *   C's (the test would see the row reused by mistake);
 * - X again takes all of A's blocks but the last position;
 * - when the MTP layer's cache lost the blocks (evicted) and the main one has them, nothing is
 *   taken (both caches empty) and the sequence computes from scratch.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"
#include "dsi_test_fixture.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_kvcache.h"
#include "dsn_mtp.h"
#include "dsn_sampler.h"
#include "dsn_spec.h"

#define NX    200
#define NY    180
#define STEPS 8

static dsi_fixture_t fx;
static dsn_engine_t *eng;
static dsn_mtp_t *mtp;
static dsn_spec_t *spec;
static int64_t V;

typedef struct {
    dsn_kvcache_t *kv, *mkv;
    dsn_sampler_t sm;
    dsn_spec_seq_t q;
} seq_t;

static void seq_open(seq_t *s)
{
    dsn_sampling_t greedy = {0.0f, 1.0f, 0, 1};
    DSI_CHECK_INT_EQ(dsn_engine_kvcache_create(eng, 512, &s->kv), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_kvcache_create(mtp, 512, &s->mkv), DSI_OK);
    dsn_sampler_init(&s->sm, &greedy, (int)V);
    dsn_spec_seq_init(&s->q, s->kv, s->mkv, &s->sm);
}

static void seq_close(seq_t *s)
{
    dsn_spec_seq_cleanup(&s->q);
    dsn_sampler_cleanup(&s->sm);
    dsn_kvcache_destroy(s->kv);
    dsn_kvcache_destroy(s->mkv);
}

/* Prefill ids[from, n) in one chunk (publishing both caches' blocks) and sample the first
 * token; logits [V]. */
static int32_t prefill(seq_t *s, const int32_t *ids, int from, int n, float *logits)
{
    DSI_CHECK_INT_EQ(dsn_kvcache_set_ids(s->kv, from, ids + from, n - from), 0);
    DSI_CHECK_INT_EQ(dsn_spec_prefill(spec, &s->q, ids + from, n - from, logits), DSI_OK);
    dsn_kvcache_publish(s->kv);
    dsn_spec_publish(&s->q);
    return dsn_spec_first(spec, &s->q, logits);
}

/* Greedy speculative steps: out[STEPS] after first. */
static void decode(seq_t *s, int32_t first, int32_t *out)
{
    int32_t step[DSN_SPEC_MAX_K + 1];
    int n_out, have = 0;
    dsn_spec_seq_t *one = &s->q;
    out[have++] = first;
    for (int guard = 0; guard < 4 * STEPS && have < STEPS; guard++) {
        DSI_CHECK_INT_EQ(dsn_spec_step(spec, &one, 1, step, &n_out, NULL), DSI_OK);
        for (int j = 0; j < n_out && have < STEPS; j++)
            out[have++] = step[j];
    }
    DSI_CHECK_INT_EQ(have, STEPS);
}

/* The largest |difference| of two caches' rows over positions [from, to). */
static double rows_diff(const dsn_kvcache_t *a, const dsn_kvcache_t *b, int64_t from, int64_t to)
{
    float *x = malloc((size_t)a->row * sizeof(float)), *y = malloc((size_t)a->row * sizeof(float));
    double d = 0;
    for (int l = 0; l < a->n_layers; l++) {
        for (int64_t p = from; p < to; p++) {
            dsn_kvcache_load(a, l, p, x);
            dsn_kvcache_load(b, l, p, y);
            for (int i = 0; i < a->row; i++)
                d = fmax(d, fabs((double)x[i] - y[i]));
        }
    }
    free(x);
    free(y);
    return d;
}

int main(void)
{
    dsi_fixture_open(&fx, "tiny-v3-mtp");
    dsn_slice_t all = dsn_slice_all(fx.cfg);
    dsn_weights_t *w = NULL;
    dsn_mtp_weights_t *mw = NULL;
    DSI_CHECK_INT_EQ(dsn_weights_load_as(fx.ckpt, &all, DSN_WFMT_AUTO, 2, &w), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_weights_load(fx.ckpt, DSN_WFMT_AUTO, 2, NULL, &mw), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_engine_create(w, dsk_level_cpu(), 2, &eng), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_mtp_create(mw, eng, &mtp), DSI_OK);
    DSI_CHECK_INT_EQ(dsn_spec_create(eng, mtp, 2, &spec), DSI_OK);
    V = fx.cfg->vocab_size;
    float *la = malloc((size_t)V * sizeof(float)), *lb = malloc((size_t)V * sizeof(float)),
          *lc = malloc((size_t)V * sizeof(float));
    int32_t x[NX], y[NY];
    for (int i = 0; i < NX; i++)
        x[i] = (i * 37 + 11) % (int)V;
    for (int i = 0; i < NY; i++)
        y[i] = i < 128 ? x[i] : (i * 53 + 7) % (int)V;
    DSI_CHECK(y[128] != x[128]);

    seq_t a;
    seq_open(&a);
    prefill(&a, x, 0, NX, la);
    DSI_CHECK(a.mkv->n_published >= 2);

    /* X again: every block of A's but the last position of the last one (and never the
     * prompt's last token). */
    seq_t b, c;
    seq_open(&b);
    int64_t took = dsn_spec_attach_prefix(&b.q, x, NX, NX - 1);
    DSI_CHECK_INT_EQ(took, (NX - 1) / 64 * 64 - 1);
    seq_close(&b);

    /* B takes 127 positions, C computes Y from scratch. */
    seq_open(&b);
    took = dsn_spec_attach_prefix(&b.q, y, NY, NY - 1);
    DSI_CHECK_INT_EQ(took, 127);
    DSI_CHECK_INT_EQ(b.kv->length, 127);
    DSI_CHECK_INT_EQ(b.mkv->length, 127);
    int32_t fb = prefill(&b, y, (int)took, NY, lb);
    seq_open(&c);
    int32_t fc = prefill(&c, y, 0, NY, lc);
    double dmain = rows_diff(b.kv, c.kv, 0, NY);
    double dmtp = rows_diff(b.mkv, c.mkv, 0, c.mkv->length);
    double dlog = 0;
    for (int64_t i = 0; i < V; i++)
        dlog = fmax(dlog, fabs((double)lb[i] - lc[i]));
    double dwrong = rows_diff(a.mkv, c.mkv, 127, 128);
    printf("B (127 positions cached) vs C (none): main rows %.2e, MTP rows %.2e, logits %.2e; "
           "A's MTP row 127 vs C's %.2e\n",
           dmain, dmtp, dlog, dwrong);
    DSI_CHECK_INT_EQ(b.mkv->length, c.mkv->length);
    DSI_CHECK(dmain <= 1e-4 && dmtp <= 1e-4 && dlog <= 1e-3);
    DSI_CHECK(dwrong > 1e-2); /* reusing A's row would have been seen */
    DSI_CHECK_INT_EQ(fb, fc);
    int32_t tb[STEPS], tc[STEPS];
    decode(&b, fb, tb);
    decode(&c, fc, tc);
    DSI_CHECK(memcmp(tb, tc, sizeof(tb)) == 0);
    DSI_CHECK(dsn_kvcache_check(dsn_engine_kvpool(eng), (dsn_kvcache_t *const[]){a.kv, b.kv, c.kv},
                                3) == 0);
    DSI_CHECK(dsn_kvcache_check(dsn_engine_kvpool(dsn_mtp_engine(mtp)),
                                (dsn_kvcache_t *const[]){a.mkv, b.mkv, c.mkv}, 3) == 0);
    seq_close(&b);
    seq_close(&c);

    /* The MTP cache's blocks evicted, the main ones kept: nothing is taken. */
    seq_close(&a);
    dsn_kvpool_t *mp = dsn_engine_kvpool(dsn_mtp_engine(mtp));
    dsn_kvpool_set_prefix_cache(mp, 0);
    dsn_kvpool_set_prefix_cache(mp, 1);
    seq_open(&b);
    took = dsn_spec_attach_prefix(&b.q, y, NY, NY - 1);
    DSI_CHECK_INT_EQ(took, 0);
    DSI_CHECK_INT_EQ(b.kv->length, 0);
    DSI_CHECK_INT_EQ(b.mkv->length, 0);
    fb = prefill(&b, y, 0, NY, lb);
    DSI_CHECK_INT_EQ(fb, fc);
    seq_close(&b);

    free(la);
    free(lb);
    free(lc);
    dsn_spec_destroy(spec);
    dsn_mtp_destroy(mtp);
    dsn_engine_destroy(eng);
    dsn_mtp_weights_destroy(mw);
    dsn_weights_destroy(w);
    dsi_fixture_close(&fx);
    return dsi_test_finish();
}
