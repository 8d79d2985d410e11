/*
 * dsk_avx512_vnni_q4.c - the int8-activation product of the int4 dtypes (I4_G32, I4_G128) at the
 * avx512vnni level for 1..DSK_Q4V_N_MAX tokens, with rows in vector lanes: one 512-bit vpdpbusd
 * multiplies 4 inputs of 16 rows by the same 4 int8 x bytes (a broadcast dword) for one token.
 *
 * The stored int4 rows (dsk.h: 16-byte chunks, byte j = input j low nibble, 16 + j high nibble)
 * are interleaved per call, 16 rows by DSK_Q4V_KC columns at a time, into a panel on the stack:
 * dword m (bytes 4m..4m+3) of the 16 rows' chunk side by side, a 16 x 4 dword transpose of four
 * 64-byte registers (two rounds of vpermt2d). An AND gives inputs 4m..4m+3 of 16 rows, a shift
 * and an AND inputs 16 + 4m..16 + 4m + 3. The panel is then read by every block of up to 8
 * tokens, so the repacking is paid once per weight byte and call whatever the batch.
 *
 * Per group and token: the int32 accumulator starts at -8 * sum(q_x) (the nibble offset), takes
 * the group's vpdpbusd steps, is converted once and added into the 16 rows' f32 totals times
 * (16 row scales, loaded as one vector) x (the token's scale): three instructions per group for
 * 16 rows, where the per-row tile of dsk_act8_tmpl.h spends about five per row. The outputs of one
 * token are 16 consecutive floats of y, stored (masked at the last rows) without a horizontal sum.
 *
 * Same integer math and the same f32 accumulation order over groups as dsk_matmul_a8_ref (each
 * group's fused multiply-add differs from the reference's product-then-add by one rounding);
 * x is quantized by dsk_avx2_act8_quantize (the reference's bits).
 */
#include "dsk_impl.h"
#include "dsk_lanes.h"

#include <immintrin.h>
#include <string.h>

#define Q4V_ROWS   16
#define Q4V_T      8 /* tokens per register block: 2 x 8 accumulators + weights in 32 registers */
#define Q4V_STEPS  (DSK_Q4V_KC / 16) /* 16-byte steps per chunk: 32 int4 or 16 int8 inputs */
#define Q4V_GROUPS (DSK_Q4V_KC / 32) /* groups per chunk, at the smallest group */
#define DSK_INLINE static inline __attribute__((always_inline))

/* The quantized x of up to DSK_Q4V_N_MAX tokens over one chunk of columns. */
typedef struct {
    _Alignas(64) int8_t q[DSK_Q4V_N_MAX][DSK_Q4V_KC];
    float scale[DSK_Q4V_N_MAX][Q4V_GROUPS];  /* per group */
    int32_t corr[DSK_Q4V_N_MAX][Q4V_GROUPS]; /* -bias * sum of the group's q */
} q4v_x_t;

/* 16 rows of one column chunk: the transposed nibble dwords, then the scales by group. */
typedef struct {
    _Alignas(64) uint32_t w[Q4V_STEPS][4][DSK_LANES];
    _Alignas(64) float s[Q4V_GROUPS][Q4V_ROWS];
} q4v_panel_t;

/*
 * The panel of rows[0..16) (pointers to each row's data at the chunk start; rows past the matrix
 * repeat the last row): steps [0, steps), and their scales ws[i][0..ng).
 */
static void q4v_pack(const uint8_t *const *rows, const float *const *ws, int64_t steps, int64_t ng,
                     int flip, const uint8_t *next, int64_t next_rows, int64_t row_bytes,
                     q4v_panel_t *p)
{
    const __m512i f = _mm512_set1_epi8(flip ? (char)0x80 : 0);
    for (int64_t s = 0; s < steps; s++) {
        /*
         * The next block's rows over the same columns, a line of each per 4 steps: 16 short
         * streams of DSK_Q4V_KC / 2 or DSK_Q4V_KC bytes are more than the hardware prefetchers
         * follow (batch 1 streamed at 0.6-0.8x of the per-row tile without this).
         */
        if (s % 4 == 0)
            for (int64_t i = 0; i < next_rows; i++)
                _mm_prefetch((const char *)(next + i * row_bytes + 16 * s), _MM_HINT_T0);
        dsk_lanes_step(rows, 16 * s, f, p->w[s]);
    }
    for (int64_t g = 0; g < ng; g++)
        for (int i = 0; i < Q4V_ROWS; i++)
            p->s[g][i] = ws[i][g];
}

DSK_INLINE __m512i q4v_x4(const int8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/*
 * y[t * ldy + i] (+)= the chunk's product for tokens t0 .. t0 + T and the panel's rows i < 16
 * (mask: the rows that exist). spg: 32-input steps per group (1 or 4).
 */
DSK_INLINE void q4v_block(const q4v_panel_t *p, const q4v_x_t *xq, int64_t t0, const int T,
                          const int i8, const int spg, int64_t steps, int64_t ng, __mmask16 mask,
                          float *y, int64_t ldy, int accumulate)
{
    const __m512i low = _mm512_set1_epi8(0x0f);
    const int in_step = i8 ? 16 : 32; /* inputs per 16-byte step */
    __m512 tot[Q4V_T];
    for (int t = 0; t < T; t++)
        tot[t] = accumulate ? _mm512_maskz_loadu_ps(mask, y + (t0 + t) * ldy) : _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512i acc[Q4V_T];
        for (int t = 0; t < T; t++)
            acc[t] = _mm512_set1_epi32(xq->corr[t0 + t][g]);
        const int64_t s1 = (g + 1) * spg < steps ? (g + 1) * spg : steps;
        for (int64_t s = g * spg; s < s1; s++) {
            for (int m = 0; m < 4; m++) {
                const __m512i v = _mm512_load_si512(p->w[s][m]);
                const __m512i lo = i8 ? v : _mm512_and_si512(v, low);
                const __m512i hi = i8 ? v : _mm512_and_si512(_mm512_srli_epi32(v, 4), low);
                for (int t = 0; t < T; t++) {
                    const int8_t *q = xq->q[t0 + t] + in_step * s + 4 * m;
                    acc[t] = _mm512_dpbusd_epi32(acc[t], lo, q4v_x4(q));
                    if (!i8)
                        acc[t] = _mm512_dpbusd_epi32(acc[t], hi, q4v_x4(q + 16));
                }
            }
        }
        const __m512 wsv = _mm512_load_ps(p->s[g]);
        for (int t = 0; t < T; t++)
            tot[t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]),
                                _mm512_mul_ps(wsv, _mm512_set1_ps(xq->scale[t0 + t][g])), tot[t]);
    }
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (t0 + t) * ldy, mask, tot[t]);
}

/* The dtype's constants: I8 (16 inputs a step, groups of 8 steps) or int4 (32, 1 or 4 steps). */
#define Q4V_BLOCK(T_)                                                            \
    do {                                                                         \
        if (dt == DSK_DTYPE_I8)                                                  \
            q4v_block(p, xq, t0, T_, 1, 8, steps, ng, mask, y, ldy, accumulate); \
        else if (dt == DSK_DTYPE_I4_G32)                                         \
            q4v_block(p, xq, t0, T_, 0, 1, steps, ng, mask, y, ldy, accumulate); \
        else                                                                     \
            q4v_block(p, xq, t0, T_, 0, 4, steps, ng, mask, y, ldy, accumulate); \
    } while (0)

/* All n tokens, in blocks of up to Q4V_T, over one packed panel. */
static void q4v_tokens(int dt, const q4v_panel_t *p, const q4v_x_t *xq, int64_t n, int64_t steps,
                       int64_t ng, __mmask16 mask, float *y, int64_t ldy, int accumulate)
{
    for (int64_t t0 = 0; t0 < n; t0 += Q4V_T) {
        switch (n - t0 < Q4V_T ? (int)(n - t0) : Q4V_T) {
        case 1:
            Q4V_BLOCK(1);
            break;
        case 2:
            Q4V_BLOCK(2);
            break;
        case 3:
            Q4V_BLOCK(3);
            break;
        case 4:
            Q4V_BLOCK(4);
            break;
        case 5:
            Q4V_BLOCK(5);
            break;
        case 6:
            Q4V_BLOCK(6);
            break;
        case 7:
            Q4V_BLOCK(7);
            break;
        default:
            Q4V_BLOCK(Q4V_T);
            break;
        }
    }
}

void dsk_vnni_lanes_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                           int64_t ldx, int64_t n, float *y, int64_t ldy)
{
    if (n <= 0 || r1 <= r0 || w->cols == 0)
        return;
    const int dt = w->dtype, i8 = dt == DSK_DTYPE_I8;
    const int64_t K = w->cols, G = dt == DSK_DTYPE_I4_G32 ? 32 : 128;
    const int64_t row_bytes = dsk_dtype_row_bytes(w->dtype, K), sc_cols = (K + G - 1) / G;
    const int64_t bias = i8 ? 128 : 8;
    q4v_x_t xq;
    q4v_panel_t panel;
    int32_t sum[Q4V_GROUPS];
    for (int64_t k0 = 0; k0 < K; k0 += DSK_Q4V_KC) {
        const int64_t kc = K - k0 < DSK_Q4V_KC ? K - k0 : DSK_Q4V_KC;
        const int64_t in_step = i8 ? 16 : 32, steps = (kc + in_step - 1) / in_step;
        const int64_t ng = (kc + G - 1) / G;
        const int64_t byte0 = i8 ? k0 : k0 / 2;
        for (int64_t t = 0; t < n; t++) {
            dsk_avx2_act8_quantize(x + t * ldx + k0, kc, G, xq.q[t], xq.scale[t], sum);
            for (int64_t g = 0; g < ng; g++)
                xq.corr[t][g] = (int32_t)(-bias * sum[g]);
        }
        for (int64_t r = r0; r < r1; r += Q4V_ROWS) {
            const int nr = r1 - r < Q4V_ROWS ? (int)(r1 - r) : Q4V_ROWS;
            const uint8_t *rows[Q4V_ROWS];
            const float *ws[Q4V_ROWS];
            _Alignas(16) uint8_t tail[Q4V_ROWS][16];
            for (int i = 0; i < Q4V_ROWS; i++) {
                const int64_t ri = r + (i < nr ? i : nr - 1);
                rows[i] = (const uint8_t *)w->data + ri * row_bytes + byte0;
                ws[i] = w->scale_inv + ri * sc_cols + k0 / G;
            }
            /*
             * An I8 row is `cols` bytes: the last step of its last chunk may run past it (and past
             * the matrix), so that step is packed from a zero-padded copy (q = 0, byte 0x80 after
             * the flip; x is 0 there too).
             */
            const int64_t whole = i8 && kc % 16 != 0 ? steps - 1 : steps;
            const int64_t next_rows =
                r1 - (r + Q4V_ROWS) < Q4V_ROWS ? r1 - (r + Q4V_ROWS) : Q4V_ROWS;
            q4v_pack(rows, ws, whole, ng, i8,
                     next_rows > 0 ? rows[0] + Q4V_ROWS * row_bytes : rows[0], next_rows, row_bytes,
                     &panel);
            if (whole < steps) {
                const uint8_t *trows[Q4V_ROWS];
                for (int i = 0; i < Q4V_ROWS; i++) {
                    memset(tail[i], 0, 16);
                    memcpy(tail[i], rows[i] + 16 * whole, (size_t)(kc - 16 * whole));
                    trows[i] = tail[i];
                }
                dsk_lanes_step(trows, 0, _mm512_set1_epi8((char)0x80), panel.w[whole]);
            }
            q4v_tokens(dt, &panel, &xq, n, steps, ng, (__mmask16)((1u << nr) - 1), y + (r - r0),
                       ldy, k0 > 0);
        }
    }
}
