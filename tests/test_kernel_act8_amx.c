/*
 * test_kernel_act8_amx.c - test_kernel_act8.c with the AMX (amx_int8) slots that the avx512vnni
 * level takes from 16 tokens where dsk_amx_available(): the tile kernels against the exact integer
 * math of the scalar reference at n = 16, 17, 33, 64, 65, 130 (whole and partial A tiles, more than
 * one 64-token block) on odd shapes. Skipped loudly (exit 77) without AMX: the project's machines
 * have none, so this has not run on hardware here. Built at -O3 (tests/CMakeLists.txt), the level
 * at which gcc has been seen to drop a tile configuration store.
 */
#include "dsk.h"

#define ACT8_LEVEL DSK_LEVEL_AVX512_VNNI
#define ACT8_AMX   1
#include "test_kernel_act8.c"
