/*
 * dsk_impl.h - private to kernels/: the per-level table fillers and the shared helpers of the
 * reference kernels. Each ISA file defines one filler that overrides the slots it implements.
 */
#ifndef DSK_IMPL_H
#define DSK_IMPL_H

#include <string.h>

#include "dsk.h"

void dsk_ops_fill_ref(dsk_ops_t *ops);
void dsk_ops_fill_avx2(dsk_ops_t *ops);
/* AVX2 fp8 slots with the integer e4m3 conversion (dsk_avx2_fp8i.c): see dsk_fp8_integer_route. */
void dsk_ops_fill_avx2_fp8i(dsk_ops_t *ops);
/* The AVX2 bf16 matmul slot with its own one-token product (dsk_avx2_bf16.c). */
void dsk_ops_fill_avx2_bf16(dsk_ops_t *ops);
void dsk_ops_fill_avx512(dsk_ops_t *ops);
/* The int8-activation matmul slots of the integer dtypes (dsk_act8_tmpl.h): AVX2 / AVX-512 VNNI. */
void dsk_ops_fill_avx2_act8(dsk_ops_t *ops);
void dsk_ops_fill_avx512_vnni(dsk_ops_t *ops);
/* The vdpbf16ps matmul slots (dsk_avx512_bf16.c), which round x to bf16. */
void dsk_ops_fill_avx512_bf16(dsk_ops_t *ops);
/*
 * The fp8 decode product with e4m3 converted by a byte table (dsk_avx512_vbmi.c, AVX512_VBMI):
 * matmul's contract for F8_E4M3 at any n, the table kernel for n = DSK_FP8_TABLE_N_MAX (one
 * token), dsk_avx512_matmul_f32act at every other n. Exact f32 products, as the F16C route. 128 KiB
 * of stack. dsk_ops_fill_avx512_vbmi puts it in the fp8 matmul slot and sets ops->fp8_table.
 */
#define DSK_FP8_TABLE_N_MAX 1
void dsk_avx512_fp8_table_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                                 int64_t ldx, int64_t n, float *y, int64_t ldy);
/*
 * matmul_t's contract for F8_E4M3 at any n: the byte table for one token (row by row, 256 columns
 * a pass), dsk_avx512_matmul_t_f32act at every other n. The same bits as the F16C route's
 * one-token matmul_t. dsk_ops_fill_avx512_vbmi puts it in the fp8 matmul_t slot.
 */
void dsk_avx512_fp8_table_matmul_t(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                                   int64_t ldx, int64_t n, float *y, int64_t ldy);
void dsk_ops_fill_avx512_vbmi(dsk_ops_t *ops);
/*
 * The f32-activation matmul of a SIMD level, any dtype (dt) and n: the int8-activation slots
 * handle n <= 4 themselves and hand larger n (the packed GEMM) to this.
 */
void dsk_avx2_matmul_f32act(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                            int64_t ldx, int64_t n, float *y, int64_t ldy);
void dsk_avx512_matmul_f32act(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                              int64_t ldx, int64_t n, float *y, int64_t ldy);
/* The matmul_t of the AVX-512 level (f32 activations), any dtype and n. */
void dsk_avx512_matmul_t_f32act(int dt, const dsk_matrix_t *w, int64_t r0, int64_t r1,
                                const float *x, int64_t ldx, int64_t n, float *y, int64_t ldy);

/*
 * dsk_act8_quantize with AVX2 (dsk_avx2_act8.c): the same q, scale and sum bits, 7-10x as fast
 * (the reference's amax and sum run one element at a time). The int8-activation matmuls of AVX2
 * and AVX-512 VNNI quantize x with it; every call quantizes the whole x for its own rows (in
 * parallel over a product's threads, so one quantization's time per product).
 */
void dsk_avx2_act8_quantize(const float *x, int64_t k, int64_t g, int8_t *q, float *scale,
                            int32_t *sum);

/* Columns of x that the int8-activation kernels quantize at a time (4 tokens: 32 KiB of stack). */
#define DSK_A8_KC 8192

/*
 * The avx512vnni integer product with rows in vector lanes (dsk_avx512_vnni_q4.c): matmul's
 * contract for I8 / I4_G32 / I4_G128 and any n <= DSK_Q4V_N_MAX tokens, int8 activations
 * (dsk_matmul_a8_ref's integer math). x is quantized DSK_Q4V_KC columns at a time (about 100 KiB
 * of stack).
 */
#define DSK_Q4V_N_MAX 64
#define DSK_Q4V_KC    1024
void dsk_vnni_lanes_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                           int64_t ldx, int64_t n, float *y, int64_t ldy);
/* The avx512vnni level's int8-activation matmul slot of w->dtype (I8, I4_G32, I4_G128), any n. */
void dsk_vnni_int_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                         int64_t n, float *y, int64_t ldy);

/*
 * int4 weights in DSK_LAYOUT_Q4_L16 (dsk.h), int8 activations, matmul's contract at any n
 * (dsk_avx512_vnni_q4l.c, dsk_avx2_q4l.c): the avx512vnni and avx2 int4 slots send such
 * matrices here. About 90 KiB of stack (x quantized 65536 int8 at a time).
 */
void dsk_vnni_q4l_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                         int64_t n, float *y, int64_t ldy);
void dsk_avx2_q4l_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                         int64_t n, float *y, int64_t ldy);
/*
 * The scalar references of matmul and matmul_t (dsk_ref.c), any dtype and layout: the SIMD slots
 * of the int4 dtypes without a kernel for DSK_LAYOUT_Q4_L16 hand such matrices to them.
 */
void dsk_matmul_ref(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                    int64_t n, float *y, int64_t ldy);
void dsk_matmul_t_ref(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                      int64_t n, float *y, int64_t ldy);

/*
 * AMX (dsk_amx.c; untested on hardware here): the int8-activation product of I8 / I4_G32 /
 * I4_G128 with tdpbssd for n >= DSK_AMX_N_MIN tokens (matmul's contract, any n; x quantized
 * DSK_AMX_KC columns of DSK_AMX_N_BLOCK tokens at a time, about 90 KiB of stack). Call only where
 * dsk_amx_available(). dsk_ops_fill_amx puts it in the integer slots over the avx512vnni ones.
 */
#define DSK_AMX_N_MIN   16
#define DSK_AMX_N_BLOCK 64
#define DSK_AMX_KC      1024
void dsk_amx_int8_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                         int64_t n, float *y, int64_t ldy);
void dsk_ops_fill_amx(dsk_ops_t *ops);
/* 1 when the AMX product agrees with the avx512vnni one on a small matrix (dsk_amx.c). */
int dsk_amx_selftest(void);

/*
 * Decode tiles stream R rows side by side. The hardware prefetchers follow streams within a 4 KiB
 * page, and two rows of one page read side by side look to them like one page read at two places
 * at once: on Zen 3, fp8 7168x2048 (2 KiB rows) streamed at 0.56-0.59 of the bandwidth with
 * adjacent rows and at 0.79-0.81 with rows two apart (docs/PERFORMANCE.md). So a tile takes its
 * rows dsk_tile_row_stride(row bytes) apart: far enough that no two of its streams share a page.
 */
static inline int64_t dsk_tile_row_stride(int64_t row_bytes)
{
    return row_bytes <= 0 || row_bytes >= 4096 ? 1 : (4096 + row_bytes - 1) / row_bytes;
}

/*
 * Runs the statement given after S over the rows [r0, r1) of a decode product as tiles: with
 * tile_r the first row, tile_n the rows (R or 1, constants for the compiler) and tile_s their
 * distance. Groups of R * S rows as S interleaved tiles of rows S apart, then tiles of R adjacent
 * rows, then single rows. With S = 1 the rows are 1 apart as a constant.
 */
#define DSK_ROW_TILES(r0, r1, R, S, ...)                                       \
    do {                                                                       \
        int64_t row_ = (r0);                                                   \
        const int64_t stride_ = (S);                                           \
        for (; stride_ > 1 && row_ + (R)*stride_ <= (r1); row_ += (R)*stride_) \
            for (int64_t s_ = 0; s_ < stride_; s_++) {                         \
                const int64_t tile_r = row_ + s_, tile_s = stride_;            \
                const int tile_n = (R);                                        \
                __VA_ARGS__;                                                   \
            }                                                                  \
        for (; row_ + (R) <= (r1); row_ += (R)) {                              \
            const int64_t tile_r = row_, tile_s = 1;                           \
            const int tile_n = (R);                                            \
            __VA_ARGS__;                                                       \
        }                                                                      \
        for (; row_ < (r1); row_++) {                                          \
            const int64_t tile_r = row_, tile_s = 1;                           \
            const int tile_n = 1;                                              \
            __VA_ARGS__;                                                       \
        }                                                                      \
    } while (0)

/* Scale of the 128x128 block holding W[r][c] (1 for non-fp8 matrices). */
static inline float dsk_block_scale(const dsk_matrix_t *w, int64_t r, int64_t c)
{
    if (w->dtype != DSK_DTYPE_F8_E4M3)
        return 1.0f;
    int64_t bcols = (w->cols + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
    return w->scale_inv[(r / DSK_FP8_BLOCK) * bcols + c / DSK_FP8_BLOCK];
}

/* Inputs per scale of a row-wise integer dtype (0 for the others). */
static inline int64_t dsk_q_group(dsk_dtype_t dt)
{
    return dt == DSK_DTYPE_I4_G32 ? 32 : (dt == DSK_DTYPE_I8 || dt == DSK_DTYPE_I4_G128) ? 128 : 0;
}

/*
 * DSK_LAYOUT_Q4_L16 (dsk.h): the address of group g of row block b (the group's chunks, then its
 * 16 scales), and how many chunks the group has.
 */
static inline const uint8_t *dsk_q4l_group(const dsk_matrix_t *w, int64_t b, int64_t g,
                                           int64_t *chunks)
{
    const int64_t cpg = dsk_q_group(w->dtype) / DSK_Q4_CHUNK;
    const int64_t nch = dsk_dtype_row_bytes(w->dtype, w->cols) / 16;
    *chunks = nch - g * cpg < cpg ? nch - g * cpg : cpg;
    return (const uint8_t *)w->data + b * dsk_q4l_block_bytes(w->dtype, w->cols) +
           g * (cpg * 256 + 64);
}

/* The integer q of W[r][c] for the integer dtypes (see dsk.h for the layouts). */
static inline int dsk_q_value(const dsk_matrix_t *w, int64_t r, int64_t c)
{
    if (w->layout == DSK_LAYOUT_Q4_L16) {
        const int64_t g = c / dsk_q_group(w->dtype), k = c / DSK_Q4_CHUNK, j = c % 16;
        int64_t chunks;
        const uint8_t *gp = dsk_q4l_group(w, r / DSK_Q4L_ROWS, g, &chunks);
        const int64_t k0 = g * (dsk_q_group(w->dtype) / DSK_Q4_CHUNK);
        const uint8_t b = gp[(k - k0) * 256 + (j / 4) * 64 + (r % DSK_Q4L_ROWS) * 4 + j % 4];
        return ((c % DSK_Q4_CHUNK) < 16 ? b & 15 : b >> 4) - 8;
    }
    const uint8_t *row = (const uint8_t *)w->data + r * dsk_dtype_row_bytes(w->dtype, w->cols);
    if (w->dtype == DSK_DTYPE_I8)
        return (int8_t)row[c];
    uint8_t b = row[(c / DSK_Q4_CHUNK) * 16 + c % 16];
    return ((c % DSK_Q4_CHUNK) < 16 ? b & 15 : b >> 4) - 8;
}

/* The scale of W[r][c] for the integer dtypes. */
static inline float dsk_q_scale(const dsk_matrix_t *w, int64_t r, int64_t c)
{
    int64_t g = dsk_q_group(w->dtype);
    if (w->layout == DSK_LAYOUT_Q4_L16) {
        int64_t chunks;
        const uint8_t *gp = dsk_q4l_group(w, r / DSK_Q4L_ROWS, c / g, &chunks);
        float s;
        memcpy(&s, gp + chunks * 256 + (r % DSK_Q4L_ROWS) * 4, 4);
        return s;
    }
    return w->scale_inv[r * ((w->cols + g - 1) / g) + c / g];
}

#endif
