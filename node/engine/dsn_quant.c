/*
 * dsn_quant.c - re-quantization of a slice's projections at load (see dsn_quant.h): plan the
 * arena, convert 128-row bands in parallel, repoint the matrices.
 */
#include "dsi_clock.h"
#include "dsn_quant.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dsi_log.h"
#include "dsi_pool.h"

#define ARENA_ALIGN 64
#define BAND_ROWS   128 /* one fp8 scale band; any row count works for the integer formats */
_Static_assert(BAND_ROWS % DSK_Q4L_ROWS == 0, "a band is whole blocks of repacked int4");

dsk_dtype_t dsn_quant_dtype(dsn_weight_format_t format, dsk_dtype_t stored)
{
    switch (format) {
    case DSN_WFMT_FP8:
        return DSK_DTYPE_F8_E4M3;
    case DSN_WFMT_BF16:
        return DSK_DTYPE_BF16;
    case DSN_WFMT_INT8:
        return DSK_DTYPE_I8;
    case DSN_WFMT_INT4:
        return DSK_DTYPE_I4_G32;
    case DSN_WFMT_INT4_G128:
        return DSK_DTYPE_I4_G128;
    default:
        return stored;
    }
}

/* An anonymous mapping of re-quantized projections. */
struct dsn_qarena {
    struct dsn_qarena *next;
    void *base;
    size_t bytes;
};

/* One matrix to convert. */
typedef struct {
    dsk_matrix_t *m;  /* the weights' matrix, repointed when all bands are done */
    dsk_matrix_t src; /* as loaded from the checkpoint */
    dsk_dtype_t dt;   /* new dtype */
    int q4l;          /* int4 repacked for the int8-activation kernels (DSK_LAYOUT_Q4_L16) */
    size_t data_off;  /* in the arena: values, then scales */
    size_t scale_off;
    int64_t first_band; /* index of its first band over all matrices */
} conv_mat_t;

typedef struct {
    dsn_weight_format_t format;
    const dsn_weights_t *w;
    conv_mat_t *mats;
    int64_t n_mats, cap;
    int64_t bands;
    int64_t max_cols;
    int64_t n_q4l; /* matrices repacked */
    size_t bytes;
    uint8_t *arena;
    dsk_ops_t ops;
    atomic_int failed;
    int grow_failed;
} conv_t;

static size_t align_up(size_t v)
{
    return (v + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static size_t scale_bytes(dsk_dtype_t dt, int64_t rows, int64_t cols)
{
    int64_t sr = dsk_dtype_scale_rows(dt);
    return sr > 0 ? (size_t)((rows + sr - 1) / sr) * (size_t)dsk_dtype_scale_cols(dt, cols) * 4 : 0;
}

/* Whether m is a layer's kv_b, which the engine multiplies transposed (matmul_t). */
static int is_kv_b(const conv_t *cv, const dsk_matrix_t *m)
{
    for (int l = cv->w->slice.first_layer; l < cv->w->slice.end_layer; l++)
        if (m == &cv->w->layers[l].kv_b)
            return 1;
    return 0;
}

/*
 * int4 projections are repacked for the kernels (DSK_LAYOUT_Q4_L16) where the kernel table has
 * kernels for that layout (int8 activations at avx2 or avx512vnni), except kv_b: the engine
 * multiplies it transposed, which only the row layout has a SIMD kernel for.
 */
static int wants_q4l(const conv_t *cv, const dsk_matrix_t *m, dsk_dtype_t dt)
{
    return cv->ops.q4l && (dt == DSK_DTYPE_I4_G32 || dt == DSK_DTYPE_I4_G128) && !is_kv_b(cv, m);
}

/* for_each_projection callback: plan one matrix's place in the arena. */
static void plan_matrix(void *ctx, dsk_matrix_t *m)
{
    conv_t *cv = ctx;
    dsk_dtype_t dt = dsn_quant_dtype(cv->format, m->dtype);
    if (dt == m->dtype || cv->grow_failed)
        return;
    if (cv->n_mats == cv->cap) {
        int64_t cap = cv->cap ? 2 * cv->cap : 256;
        conv_mat_t *p = realloc(cv->mats, (size_t)cap * sizeof(*p));
        if (p == NULL) {
            cv->grow_failed = 1;
            return;
        }
        cv->mats = p;
        cv->cap = cap;
    }
    conv_mat_t *c = &cv->mats[cv->n_mats++];
    c->m = m;
    c->src = *m;
    c->dt = dt;
    c->q4l = wants_q4l(cv, m, dt);
    cv->n_q4l += c->q4l;
    c->data_off = cv->bytes;
    if (c->q4l) { /* values and scales in one block per 16 rows */
        cv->bytes += align_up((size_t)dsk_q4l_bytes(dt, m->rows, m->cols));
        c->scale_off = c->data_off;
    } else {
        cv->bytes += align_up((size_t)m->rows * (size_t)dsk_dtype_row_bytes(dt, m->cols));
        c->scale_off = cv->bytes;
        cv->bytes += align_up(scale_bytes(dt, m->rows, m->cols));
    }
    c->first_band = cv->bands;
    cv->bands += (m->rows + BAND_ROWS - 1) / BAND_ROWS;
    if (m->cols > cv->max_cols)
        cv->max_cols = m->cols;
}

/* The matrix holding band b: the last one whose first band is <= b. */
static int64_t find_matrix(const conv_t *cv, int64_t b)
{
    int64_t lo = 0, hi = cv->n_mats - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (cv->mats[mid].first_band <= b)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static void convert_bands(void *arg, int64_t begin, int64_t end)
{
    conv_t *cv = arg;
    float *buf = malloc((size_t)BAND_ROWS * (size_t)cv->max_cols * sizeof(float));
    /* a band of int4 in the row layout, before repacking: values then scales */
    const int64_t i4_row = dsk_dtype_row_bytes(DSK_DTYPE_I4_G32, cv->max_cols) +
                           4 * dsk_dtype_scale_cols(DSK_DTYPE_I4_G32, cv->max_cols);
    uint8_t *band = cv->n_q4l > 0 ? malloc((size_t)(BAND_ROWS * i4_row)) : NULL;
    if (buf == NULL || (band == NULL && cv->n_q4l > 0)) {
        free(buf);
        free(band);
        atomic_store(&cv->failed, 1);
        return;
    }
    int64_t j = find_matrix(cv, begin);
    for (int64_t b = begin; b < end; b++) {
        while (j + 1 < cv->n_mats && cv->mats[j + 1].first_band <= b)
            j++;
        const conv_mat_t *c = &cv->mats[j];
        const int64_t cols = c->src.cols;
        const int64_t r0 = (b - c->first_band) * BAND_ROWS;
        const int64_t r1 = r0 + BAND_ROWS < c->src.rows ? r0 + BAND_ROWS : c->src.rows;
        for (int64_t r = r0; r < r1; r++)
            cv->ops.row_f32[c->src.dtype](&c->src, r, buf + (r - r0) * cols);
        const int64_t rb = dsk_dtype_row_bytes(c->dt, cols), sc = dsk_dtype_scale_cols(c->dt, cols);
        if (c->q4l) { /* BAND_ROWS is a multiple of 16: the band is whole blocks */
            float *bs = (float *)(band + (r1 - r0) * rb);
            dsk_quantize_rows(c->dt, buf, cols, r1 - r0, cols, band, bs);
            const dsk_matrix_t m = {c->dt, r1 - r0, cols, band, bs, DSK_LAYOUT_ROWS};
            dsk_q4l_pack(&m, cv->arena + c->data_off +
                                 (r0 / DSK_Q4L_ROWS) * dsk_q4l_block_bytes(c->dt, cols));
        } else {
            float *scales = (float *)(cv->arena + c->scale_off);
            scales += c->dt == DSK_DTYPE_F8_E4M3 ? (r0 / DSK_FP8_BLOCK) * sc : r0 * sc;
            dsk_quantize_rows(c->dt, buf, cols, r1 - r0, cols, cv->arena + c->data_off + r0 * rb,
                              scales);
        }
        const int64_t srb = dsk_dtype_row_bytes(c->src.dtype, cols);
        dsn_weights_release_pages((const uint8_t *)c->src.data + r0 * srb,
                                  (size_t)((r1 - r0) * srb));
    }
    free(buf);
    free(band);
}

dsi_status_t dsn_quant_convert(dsn_weights_t *w, dsn_weight_format_t format, int n_threads)
{
    if ((unsigned)format >= DSN_WFMT_COUNT) {
        DSI_ERROR("weight format %d is not one of %s", (int)format, DSN_WFMT_NAMES);
        return DSI_ERR_INVALID_ARG;
    }
    if (format == DSN_WFMT_AUTO)
        return DSI_OK;
    if (w->format != DSN_WFMT_AUTO && format != w->format) {
        DSI_ERROR("weights already re-quantized to %s", dsn_weight_format_name(w->format));
        return DSI_ERR_INVALID_ARG;
    }
    double t0 = dsi_now_s();
    conv_t cv = {.format = format, .w = w};
    dsk_ops_init(&cv.ops, dsk_level_detect()); /* the engine's table: whether to repack int4 */
    dsn_weights_for_each_projection(w, plan_matrix, &cv);
    dsi_status_t st = DSI_OK;
    dsi_pool_t *pool = NULL;
    if (cv.grow_failed) {
        DSI_ERROR("out of memory planning the %s re-quantization", dsn_weight_format_name(format));
        st = DSI_ERR_NOMEM;
        goto out;
    }
    if (cv.n_mats == 0) {
        w->format = format; /* already stored in that format */
        goto out;
    }
    struct dsn_qarena *qa = malloc(sizeof(*qa));
    void *arena = qa == NULL ? MAP_FAILED
                             : mmap(NULL, cv.bytes, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (arena == MAP_FAILED) {
        free(qa);
        DSI_ERROR("cannot map %.1f MiB for the %s weights: %m", (double)cv.bytes / (1 << 20),
                  dsn_weight_format_name(format));
        st = DSI_ERR_NOMEM;
        goto out;
    }
    madvise(arena, cv.bytes, MADV_HUGEPAGE); /* advice only: fewer TLB misses when streaming */
    cv.arena = arena;
    pool = dsi_pool_create(n_threads);
    if (pool == NULL) {
        munmap(arena, cv.bytes);
        free(qa);
        DSI_ERROR("cannot start threads to re-quantize the weights");
        st = DSI_ERR_NOMEM;
        goto out;
    }
    dsi_pool_run(pool, cv.bands, 1, convert_bands, &cv);
    if (atomic_load(&cv.failed)) {
        munmap(arena, cv.bytes);
        free(qa);
        DSI_ERROR("out of memory re-quantizing the weights to %s", dsn_weight_format_name(format));
        st = DSI_ERR_NOMEM;
        goto out;
    }
    mprotect(arena, cv.bytes, PROT_READ); /* weights are read-only from here on */
    uint64_t before = 0, after = 0;
    for (int64_t i = 0; i < cv.n_mats; i++) {
        conv_mat_t *c = &cv.mats[i];
        before += dsk_matrix_bytes(c->src.dtype, c->src.rows, c->src.cols);
        after += dsk_matrix_bytes(c->dt, c->src.rows, c->src.cols);
        c->m->dtype = c->dt;
        c->m->data = cv.arena + c->data_off;
        c->m->scale_inv = dsk_dtype_scale_rows(c->dt) > 0 && !c->q4l
                              ? (const float *)(cv.arena + c->scale_off)
                              : NULL;
        c->m->layout = c->q4l ? DSK_LAYOUT_Q4_L16 : DSK_LAYOUT_ROWS;
    }
    w->weight_bytes = w->weight_bytes - before + after;
    w->format = format;
    *qa = (struct dsn_qarena){w->qarenas, arena, cv.bytes};
    w->qarenas = qa;
    DSI_INFO("weights: %lld projections re-quantized to %s (%.1f -> %.1f MiB) in %.2f s, %d "
             "threads; %lld repacked for the int8-activation kernels",
             (long long)cv.n_mats, dsn_weight_format_name(format), (double)before / (1 << 20),
             (double)after / (1 << 20), dsi_now_s() - t0, dsi_pool_threads(pool),
             (long long)cv.n_q4l);
out:
    dsi_pool_destroy(pool);
    free(cv.mats);
    return st;
}

void dsn_quant_release(dsn_weights_t *w)
{
    while (w->qarenas != NULL) {
        struct dsn_qarena *qa = w->qarenas;
        w->qarenas = qa->next;
        munmap(qa->base, qa->bytes);
        free(qa);
    }
}
