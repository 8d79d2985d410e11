/*
 * dsk_transpose8.h - the 8 x 8 transpose of 32-bit lanes in registers, shared by the kernels that
 * pack rows into column panels: r[i] lane j becomes r[j] lane i. Include from a translation unit
 * built with AVX (each file loads and stores around it as its layout needs).
 */
#ifndef DSK_TRANSPOSE8_H
#define DSK_TRANSPOSE8_H

#include <immintrin.h>

static inline __attribute__((always_inline)) void dsk_transpose8(__m256 r[8])
{
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

#endif
