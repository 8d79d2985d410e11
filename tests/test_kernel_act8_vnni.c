/*
 * test_kernel_act8_vnni.c - test_kernel_act8.c at the avx512vnni level (vpdpbusd); skipped
 * (exit 77) where the CPU lacks AVX-512 VNNI. `--bench` times it.
 */
#include "dsk.h"

#define ACT8_LEVEL DSK_LEVEL_AVX512_VNNI
#include "test_kernel_act8.c"
