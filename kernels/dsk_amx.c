/*
 * dsk_amx.c - AMX (amx_int8) kernels: the int8-activation product of I8, I4_G32 and I4_G128
 * weights for n >= DSK_AMX_N_MIN tokens with tdpbssd (signed x signed bytes into int32 tiles).
 * UNTESTED ON HARDWARE in this project's development machines (none has AMX); the tests
 * (tests/test_kernel_act8_amx.c) run it against the scalar reference wherever the CPU and the
 * kernel grant AMX, and skip loudly elsewhere. dsk_dispatch.c takes these slots only where
 * dsk_amx_available() says so (CPUID, XCR0 and arch_prctl(ARCH_REQ_XCOMP_PERM)).
 *
 * Tiles, per 16 weight rows and 16 tokens:
 *   A (tmm1) 16 tokens x KB bytes of quantized x (rows of the x buffer, stride DSK_AMX_KC);
 *   B (tmm2) KB / 4 rows of 16 weight rows x 4 bytes: the "VNNI layout", dword m of 16 rows side
 *            by side, which is dsk_lanes_step's panel (I8 as stored; int4 unpacked to q - 8);
 *   C (tmm0) 16 tokens x 16 rows of int32: one group's exact integer dot, stored, converted and
 *            added into f32 totals times (row scales) x (token scale), as dsk_matmul_a8_ref.
 * KB = 32 bytes for I4_G32 (one tdpbssd per group) and 64 for I8 / I4_G128 (two per group).
 * The weights are interleaved per call into a panel on the stack (16 rows x DSK_AMX_KC columns),
 * then used by every block of 16 tokens.
 *
 * The tile configuration is a volatile local, written field by field and loaded (ldtilecfg) in
 * the same function as the tile instructions, which release the tiles before returning: gcc at
 * -O3 has been seen to drop a configuration store it believed dead, and the first tile
 * instruction then raises SIGILL. This file is built with -O3 like the other ISA files.
 */
#include "dsk_impl.h"
#include "dsk_lanes.h"

#include <immintrin.h>
#include <string.h>

#define AMX_T     16 /* tokens per A tile */
#define AMX_BROWS (DSK_AMX_KC / 4)

/* The quantized x of up to DSK_AMX_N_BLOCK tokens (whole A tiles: padding rows are zero). */
typedef struct {
    _Alignas(64) int8_t q[DSK_AMX_N_BLOCK][DSK_AMX_KC];
    float scale[DSK_AMX_N_BLOCK][DSK_AMX_KC / 32];
} amx_x_t;

/* 16 weight rows of a column chunk in B-tile layout (signed bytes), and their scales by group. */
typedef struct {
    _Alignas(64) int8_t b[AMX_BROWS][64];
    _Alignas(64) float s[DSK_AMX_KC / 32][DSK_LANES];
} amx_panel_t;

/* The ldtilecfg operand: palette 1, then bytes per row and rows of each tile. */
typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg_t;

/* Packs the panel of 16 rows (see dsk_vnni_lanes_matmul for rows / ws / tails). */
static void amx_pack(int dt, const uint8_t *const *rows, const float *const *ws, int64_t kc,
                     int64_t ng, amx_panel_t *p)
{
    const __m512i zero = _mm512_setzero_si512(), low = _mm512_set1_epi8(0x0f),
                  eight = _mm512_set1_epi8(8);
    if (dt == DSK_DTYPE_I8) {
        const int64_t steps = (kc + 15) / 16, whole = kc % 16 != 0 ? steps - 1 : steps;
        for (int64_t s = 0; s < whole; s++)
            dsk_lanes_step(rows, 16 * s, zero, (uint32_t(*)[DSK_LANES])p->b[4 * s]);
        if (whole < steps) {
            _Alignas(16) uint8_t tail[DSK_LANES][16];
            const uint8_t *trows[DSK_LANES];
            for (int i = 0; i < DSK_LANES; i++) {
                memset(tail[i], 0, 16);
                memcpy(tail[i], rows[i] + 16 * whole, (size_t)(kc - 16 * whole));
                trows[i] = tail[i];
            }
            dsk_lanes_step(trows, 0, zero, (uint32_t(*)[DSK_LANES])p->b[4 * whole]);
        }
        /* B rows past the chunk (up to a whole K step) multiply zero x: clear them anyway */
        for (int64_t r = 4 * steps; r < (kc + 63) / 64 * 16 && r < AMX_BROWS; r++)
            memset(p->b[r], 0, 64);
    } else {
        /* a 16-byte step is 32 inputs: B rows 8s + m (inputs 4m..) and 8s + 4 + m (16 + 4m..) */
        const int64_t steps = (kc + 31) / 32;
        _Alignas(64) uint32_t d[4][DSK_LANES];
        for (int64_t s = 0; s < steps; s++) {
            dsk_lanes_step(rows, 16 * s, zero, d);
            for (int m = 0; m < 4; m++) {
                const __m512i v = _mm512_load_si512(d[m]);
                const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(v, low), eight);
                const __m512i hi =
                    _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi32(v, 4), low), eight);
                _mm512_store_si512(p->b[8 * s + m], lo);
                _mm512_store_si512(p->b[8 * s + 4 + m], hi);
            }
        }
        for (int64_t r = 8 * steps; r < (kc + 63) / 64 * 16 && r < AMX_BROWS; r++)
            memset(p->b[r], 0, 64);
    }
    for (int64_t g = 0; g < ng; g++)
        for (int i = 0; i < DSK_LANES; i++)
            p->s[g][i] = ws[i][g];
}

/*
 * y[t * ldy + i] (+)= the chunk's product for tokens [t0, t0 + nt) (nt <= 16; the x rows up to 16
 * exist and pad with zeros) and the panel's rows (mask). kb: bytes of one K step (32 or 64),
 * kpg: K steps per group.
 */
static void amx_block(const amx_panel_t *p, const amx_x_t *xq, int64_t t0, int64_t nt, int kb,
                      int kpg, int64_t ksteps, int64_t ng, __mmask16 mask, float *y, int64_t ldy,
                      int accumulate)
{
    volatile amx_cfg_t cfg;
    memset((void *)&cfg, 0, sizeof(cfg));
    cfg.palette_id = 1;
    cfg.rows[0] = AMX_T; /* C: tokens x 16 int32 */
    cfg.colsb[0] = 64;
    cfg.rows[1] = AMX_T; /* A: tokens x kb bytes */
    cfg.colsb[1] = (uint16_t)kb;
    cfg.rows[2] = (uint8_t)(kb / 4); /* B: kb / 4 rows x 16 dwords */
    cfg.colsb[2] = 64;
    _tile_loadconfig((const void *)&cfg);

    __m512 tot[AMX_T];
    for (int t = 0; t < AMX_T; t++)
        tot[t] = accumulate && t < nt ? _mm512_maskz_loadu_ps(mask, y + (t0 + t) * ldy)
                                      : _mm512_setzero_ps();
    _Alignas(64) int32_t c[AMX_T][DSK_LANES];
    for (int64_t g = 0; g < ng; g++) {
        _tile_zero(0);
        const int64_t k1 = (g + 1) * kpg < ksteps ? (g + 1) * kpg : ksteps;
        for (int64_t k = g * kpg; k < k1; k++) {
            _tile_loadd(1, xq->q[t0] + k * kb, DSK_AMX_KC);
            _tile_loadd(2, p->b[k * kb / 4], 64);
            _tile_dpbssd(0, 1, 2);
        }
        _tile_stored(0, c, 64);
        const __m512 wsv = _mm512_load_ps(p->s[g]);
        for (int t = 0; t < AMX_T; t++)
            tot[t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[t])),
                                _mm512_mul_ps(wsv, _mm512_set1_ps(xq->scale[t0 + t][g])), tot[t]);
    }
    _tile_release();
    for (int t = 0; t < nt; t++)
        _mm512_mask_storeu_ps(y + (t0 + t) * ldy, mask, tot[t]);
}

void dsk_amx_int8_matmul(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                         int64_t n, float *y, int64_t ldy)
{
    if (n <= 0 || r1 <= r0 || w->cols == 0)
        return;
    const int dt = w->dtype;
    const int64_t K = w->cols, G = dt == DSK_DTYPE_I4_G32 ? 32 : 128;
    const int64_t row_bytes = dsk_dtype_row_bytes(w->dtype, K), sc_cols = (K + G - 1) / G;
    const int kb = G == 32 ? 32 : 64, kpg = (int)(G / kb);
    int32_t sum[DSK_AMX_KC / 32];
    amx_x_t xq;
    amx_panel_t panel;
    for (int64_t n0 = 0; n0 < n; n0 += DSK_AMX_N_BLOCK) {
        const int64_t nb = n - n0 < DSK_AMX_N_BLOCK ? n - n0 : DSK_AMX_N_BLOCK;
        const int64_t nb16 = (nb + AMX_T - 1) / AMX_T * AMX_T;
        for (int64_t k0 = 0; k0 < K; k0 += DSK_AMX_KC) {
            const int64_t kc = K - k0 < DSK_AMX_KC ? K - k0 : DSK_AMX_KC;
            const int64_t ng = (kc + G - 1) / G, ksteps = (kc + kb - 1) / kb;
            for (int64_t t = 0; t < nb16; t++) {
                if (t < nb) {
                    dsk_avx2_act8_quantize(x + (n0 + t) * ldx + k0, kc, G, xq.q[t], xq.scale[t],
                                           sum); /* sum unused: tdpbssd is signed x signed */
                    /* the quantizer pads to 32 columns; A tiles read whole K steps */
                    const int64_t k32 = (kc + 31) / 32 * 32;
                    memset(xq.q[t] + k32, 0, (size_t)(ksteps * kb - k32));
                } else {
                    memset(xq.q[t], 0, (size_t)(ksteps * kb));
                    for (int64_t g = 0; g < ng; g++)
                        xq.scale[t][g] = 0.0f;
                }
            }
            for (int64_t r = r0; r < r1; r += DSK_LANES) {
                const int nr = r1 - r < DSK_LANES ? (int)(r1 - r) : DSK_LANES;
                const uint8_t *rows[DSK_LANES];
                const float *ws[DSK_LANES];
                for (int i = 0; i < DSK_LANES; i++) {
                    const int64_t ri = r + (i < nr ? i : nr - 1);
                    rows[i] = (const uint8_t *)w->data + ri * row_bytes +
                              (dt == DSK_DTYPE_I8 ? k0 : k0 / 2);
                    ws[i] = w->scale_inv + ri * sc_cols + k0 / G;
                }
                amx_pack(dt, rows, ws, kc, ng, &panel);
                for (int64_t t0 = 0; t0 < nb; t0 += AMX_T)
                    amx_block(&panel, &xq, t0, nb - t0 < AMX_T ? nb - t0 : AMX_T, kb, kpg, ksteps,
                              ng, (__mmask16)((1u << nr) - 1), y + n0 * ldy + (r - r0), ldy,
                              k0 > 0);
            }
        }
    }
}

/* The int8-activation slots at n >= DSK_AMX_N_MIN tokens; fewer go to the avx512vnni kernels. */
static void matmul_amx(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                       int64_t n, float *y, int64_t ldy)
{
    if (n >= DSK_AMX_N_MIN && w->layout == DSK_LAYOUT_ROWS)
        dsk_amx_int8_matmul(w, r0, r1, x, ldx, n, y, ldy);
    else
        dsk_vnni_int_matmul(w, r0, r1, x, ldx, n, y, ldy);
}

void dsk_ops_fill_amx(dsk_ops_t *ops)
{
    for (int d = DSK_DTYPE_I8; d <= DSK_DTYPE_I4_G128; d++) {
        ops->matmul[d] = matmul_amx;
        ops->a8_n_max[d] = DSK_A8_N_ANY;
    }
    ops->amx = 1;
}

/*
 * The AMX product of one small int8 matrix (48 x 1100: a partial row block, a partial column
 * block) at 16 and 21 tokens against the avx512vnni product of the same int8 activations: the
 * integer sums are exact on both, so the results agree to rounding. Run once before the AMX slots
 * are used, so that a machine where the tile path misbehaves keeps the avx512vnni kernels.
 */
int dsk_amx_selftest(void)
{
    enum { R = 48, K = 1100, N = 21, SC = (K + 127) / 128 };
    static int8_t q[R * K];
    static float sc[R * SC], x[N * K], y_amx[N * R], y_ref[N * R];
    uint32_t s = 12345u;
    for (int i = 0; i < R * K; i++) {
        s = s * 1664525u + 1013904223u;
        q[i] = (int8_t)((int)(s >> 24) % 255 - 127);
    }
    for (int i = 0; i < R * SC; i++)
        sc[i] = 1.0f / (float)(50 + i % 37);
    for (int i = 0; i < N * K; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((int)(s >> 16) % 2001 - 1000) / 1000.0f;
    }
    const dsk_matrix_t w = {DSK_DTYPE_I8, R, K, q, sc, DSK_LAYOUT_ROWS};
    for (int n = 16; n <= N; n += N - 16) {
        dsk_amx_int8_matmul(&w, 0, R, x, K, n, y_amx, R);
        dsk_vnni_int_matmul(&w, 0, R, x, K, n, y_ref, R);
        for (int i = 0; i < n * R; i++) {
            const float d = y_amx[i] - y_ref[i], m = y_ref[i] < 0 ? -y_ref[i] : y_ref[i];
            if (!(d <= 1e-3f * (m + 1.0f) && -d <= 1e-3f * (m + 1.0f)))
                return 0;
        }
    }
    return 1;
}
