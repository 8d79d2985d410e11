/*
 * dsk_lanes.h - private to kernels/, for files built with AVX-512 (F/BW): the 16-row interleave
 * that puts rows in vector lanes. Shared by the avx512vnni integer product (dsk_avx512_vnni_q4.c)
 * and the AMX kernels (dsk_amx.c), whose B tiles have the same layout: dword m of 16 rows side
 * by side (a "VNNI layout" row of 16 x 4 bytes).
 */
#ifndef DSK_LANES_H
#define DSK_LANES_H

#include <immintrin.h>
#include <stdint.h>

#define DSK_LANES 16

/*
 * One 16-byte step of the panel: the bytes rows[i] + off of the 16 rows, dword m of row i to
 * dst[m][i] (a 16 x 4 dword transpose: two rounds of vpermt2d). flip: XOR every byte with 0x80
 * (I8: q + 128, the unsigned operand).
 */
static inline __attribute__((always_inline)) void
dsk_lanes_step(const uint8_t *const *rows, int64_t off, __m512i flip, uint32_t dst[4][DSK_LANES])
{
    /* round 1: dwords m in {0, 1} (lo) or {2, 3} (hi) of rows 0..7 from rows 0..3 and 4..7 */
    const __m512i i1lo =
        _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i i1hi = _mm512_add_epi32(i1lo, _mm512_set1_epi32(2));
    /* round 2: dword m (first index set) or m + 1 of rows 0..15 */
    const __m512i i2a = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i i2b = _mm512_add_epi32(i2a, _mm512_set1_epi32(8));
    __m512i z[4];
    for (int q = 0; q < 4; q++) {
        const uint8_t *const *r = rows + 4 * q;
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(r[0] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r[1] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r[2] + off)), 2);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r[3] + off)), 3);
        z[q] = _mm512_xor_si512(v, flip);
    }
    const __m512i ab_lo = _mm512_permutex2var_epi32(z[0], i1lo, z[1]);
    const __m512i ab_hi = _mm512_permutex2var_epi32(z[0], i1hi, z[1]);
    const __m512i cd_lo = _mm512_permutex2var_epi32(z[2], i1lo, z[3]);
    const __m512i cd_hi = _mm512_permutex2var_epi32(z[2], i1hi, z[3]);
    _mm512_store_si512(dst[0], _mm512_permutex2var_epi32(ab_lo, i2a, cd_lo));
    _mm512_store_si512(dst[1], _mm512_permutex2var_epi32(ab_lo, i2b, cd_lo));
    _mm512_store_si512(dst[2], _mm512_permutex2var_epi32(ab_hi, i2a, cd_hi));
    _mm512_store_si512(dst[3], _mm512_permutex2var_epi32(ab_hi, i2b, cd_hi));
}

#endif
