/*
 * dsk_avx2_bf16.c - the AVX2 product of bf16 weights with one token (decode, and the output
 * head: at V3 widths the largest matrix a decode step reads), replacing the template's tile for
 * n = 1; other n go to the template (dsk_avx2_matmul_f32act).
 *
 * 16 bf16 weights come from one 32-byte load without a shuffle: each dword holds an even weight in
 * its low half and the next odd one in its high half, so the dword masked to its high half is the
 * odd weight as f32 and the dword shifted left by 16 the even one. x is split once per call into
 * its even and odd columns in that lane order (bf16_x_prep), so each 16 weights cost one load, one
 * AND, one shift and two FMAs, where the template widens 8 weights per load (vpmovzxwd) and
 * shifts them. A decode product streams its weights from memory, and the fewer operations per
 * byte keep more of the stream in flight.
 *
 * Only the f32 summation order differs from the template (two lanes' products per accumulator
 * lane); the products are the same exact f32 values.
 */
#include "dsk_impl.h"

#include "dsk_avx2_vocab.h"

#define BF16_R      8     /* rows per tile: 8 accumulator chains */
#define BF16_XCOLS  16384 /* columns of x prepared per pass (64 KiB of stack) */
#define BF16_INLINE static inline __attribute__((always_inline))

/* xp[c + j] = x[c + 2j], xp[c + 8 + j] = x[c + 2j + 1] for every whole 16 columns c; the rest as
 * is. */
static void bf16_x_prep(const float *x, int64_t k, float *xp)
{
    int64_t c = 0;
    for (; c + 16 <= k; c += 16)
        for (int j = 0; j < 8; j++) {
            xp[c + j] = x[c + 2 * j];
            xp[c + 8 + j] = x[c + 2 * j + 1];
        }
    for (; c < k; c++)
        xp[c] = x[c];
}

/*
 * y[i * rs] (add ? += : =) sum_{c in [k0, k1)} W[r + i * rs][c] x[c] for i < R, with x prepared
 * from column k0 (xp[c - k0]).
 */
BF16_INLINE void bf16_tile(const dsk_matrix_t *w, int64_t r, const int R, int64_t rs,
                           const float *xp, int64_t k0, int64_t k1, float *y, int add)
{
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000);
    const uint16_t *row = (const uint16_t *)w->data + r * w->cols;
    const int64_t rstride = rs * w->cols;
    __m256 acc[BF16_R];
    for (int i = 0; i < R; i++)
        acc[i] = _mm256_setzero_ps();
    int64_t c = k0;
    for (; c + 16 <= k1; c += 16) {
        const __m256 xe = _mm256_loadu_ps(xp + (c - k0)), xo = _mm256_loadu_ps(xp + (c - k0) + 8);
        for (int i = 0; i < R; i++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(row + i * rstride + c));
            acc[i] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), xe, acc[i]);
            acc[i] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, hi)), xo, acc[i]);
        }
    }
    for (int i = 0; i < R; i++) {
        float s = v_hsum(acc[i]);
        for (int64_t t = c; t < k1; t++)
            s += dsk_bf16_to_f32(row[i * rstride + t]) * xp[t - k0];
        y[i * rs] = (add ? y[i * rs] : 0.0f) + s;
    }
}

static void bf16_one_token(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, float *y)
{
    _Alignas(32) float xp[BF16_XCOLS];
    const int64_t K = w->cols;
    for (int64_t k0 = 0; k0 < K; k0 += BF16_XCOLS) {
        const int64_t k1 = K - k0 < BF16_XCOLS ? K : k0 + BF16_XCOLS;
        bf16_x_prep(x + k0, k1 - k0, xp);
        DSK_ROW_TILES(r0, r1, BF16_R, dsk_tile_row_stride(K * 2),
                      bf16_tile(w, tile_r, tile_n, tile_s, xp, k0, k1, y + (tile_r - r0), k0 > 0));
    }
}

static void matmul_bf16(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                        int64_t n, float *y, int64_t ldy)
{
    if (n == 1 && r1 > r0 && w->cols > 0)
        bf16_one_token(w, r0, r1, x, y);
    else
        dsk_avx2_matmul_f32act(DSK_DTYPE_BF16, w, r0, r1, x, ldx, n, y, ldy);
}

void dsk_ops_fill_avx2_bf16(dsk_ops_t *ops)
{
    ops->matmul[DSK_DTYPE_BF16] = matmul_bf16;
}
