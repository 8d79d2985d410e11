#include <stdlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "dsk_impl.h"

static const char *level_names[DSK_LEVEL_COUNT] = {"scalar", "avx2", "avx512", "avx512vnni",
                                                   "avx512bf16"};

const char *dsk_level_name(dsk_level_t level)
{
    return level >= 0 && level < DSK_LEVEL_COUNT ? level_names[level] : "unknown";
}

/*
 * The two AVX-512 extensions above the base level, tested on their own: every CPU with
 * AVX512_BF16 so far also has VNNI, but the enum's order (avx512bf16 above avx512vnni) says
 * nothing about the hardware, and a CPU with BF16 alone must neither lose the bf16 slots nor get
 * the VNNI ones.
 */
static int cpu_has_vnni(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

static int cpu_has_vbmi(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi");
#else
    return 0;
#endif
}

static int cpu_has_bf16(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int dsk_amx_available(void)
{
#if defined(__linux__) && defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    const unsigned amx_tile = 1u << 24, amx_int8 = 1u << 25;
    if ((d & amx_tile) == 0 || (d & amx_int8) == 0)
        return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || (c & (1u << 27)) == 0) /* OSXSAVE: xgetbv works */
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const unsigned xtilecfg = 1u << 17, xtiledata = 1u << 18;
    if ((lo & xtilecfg) == 0 || (lo & xtiledata) == 0)
        return 0;
    /* Linux 5.16+: a process must ask for the tile data state before its first tile use */
    const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return 0;
#endif
}

/* AMX where the CPU and the kernel allow it and the tile path passes its self-test (once per
 * process; a failure is said on stderr and the avx512vnni kernels stay). */
static int amx_usable(void)
{
    static _Atomic int usable = -1; /* threads may race to the first check: each gets the same */
    int u = atomic_load(&usable);
    if (u < 0) {
        const int available = dsk_amx_available();
        u = available && dsk_amx_selftest();
        if (!u && available)
            fprintf(stderr, "dsinfer: the AMX kernels disagree with the avx512vnni ones on this "
                            "CPU: AMX is not used\n");
        atomic_store(&usable, u);
    }
    return u;
}

dsk_level_t dsk_level_cpu(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return cpu_has_vnni() ? DSK_LEVEL_AVX512_VNNI : DSK_LEVEL_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return DSK_LEVEL_AVX2;
#endif
    return DSK_LEVEL_SCALAR;
}

/*
 * avx512bf16 sits above avx512vnni in the enum, but a CPU may have BF16 without VNNI (none does
 * so far): what it needs is the AVX-512 base level and AVX512_BF16.
 */
int dsk_level_supported(dsk_level_t level)
{
    if (level == DSK_LEVEL_AVX512_BF16)
        return dsk_level_cpu() >= DSK_LEVEL_AVX512 && cpu_has_bf16();
    return level >= DSK_LEVEL_SCALAR && level <= dsk_level_cpu();
}

/*
 * The options the program gave (dsk_set_options; the CLI reads them from its settings table):
 * "" is the default. Set once at start-up, before any thread reads them.
 */
static char opt_kernels[16], opt_fp8[8], opt_act[8];

static void set_opt(char *dst, size_t cap, const char *v)
{
    if (v == NULL || strcmp(v, "auto") == 0) /* the default */
        v = "";
    snprintf(dst, cap, "%s", strlen(v) < cap ? v : "?"); /* too long for any choice: unknown */
}

void dsk_set_options(const char *kernels, const char *fp8, const char *act)
{
    set_opt(opt_kernels, sizeof(opt_kernels), kernels);
    set_opt(opt_fp8, sizeof(opt_fp8), fp8);
    set_opt(opt_act, sizeof(opt_act), act);
}

dsk_level_t dsk_level_detect(void)
{
    dsk_level_t level = dsk_level_cpu();
    const char *env = opt_kernels;
    if (*env == '\0')
        return level;
    /* the opt-in level: only when named, since it rounds x to bf16 */
    if (strcmp(env, level_names[DSK_LEVEL_AVX512_BF16]) == 0)
        return dsk_level_supported(DSK_LEVEL_AVX512_BF16) ? DSK_LEVEL_AVX512_BF16 : level;
    for (int l = 0; l < DSK_LEVEL_COUNT; l++) {
        if (strcmp(env, level_names[l]) == 0)
            return (dsk_level_t)l < level ? (dsk_level_t)l : level;
    }
    return DSK_LEVEL_SCALAR;
}

int dsk_fp8_integer_route(void)
{
    const char *env = opt_fp8;
    if (strcmp(env, "int") == 0)
        return 1;
    if (strcmp(env, "f16c") == 0)
        return 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_is("amd");
#else
    return 0;
#endif
}

int dsk_fp8_table_route(void)
{
    return strcmp(opt_fp8, "f16c") != 0 && cpu_has_vbmi();
}

dsk_act_t dsk_act_detect(void)
{
    const char *env = opt_act;
    if (*env == '\0' || strcmp(env, "int8") == 0)
        return DSK_ACT_I8;
    return DSK_ACT_F32;
}

void dsk_ops_init(dsk_ops_t *ops, dsk_level_t level)
{
    dsk_ops_init_act(ops, level, dsk_act_detect());
}

void dsk_ops_init_act(dsk_ops_t *ops, dsk_level_t level, dsk_act_t act)
{
    memset(ops, 0, sizeof(*ops));
    dsk_ops_fill_ref(ops);
    ops->level = DSK_LEVEL_SCALAR;
    if (level >= DSK_LEVEL_AVX2 && dsk_level_cpu() >= DSK_LEVEL_AVX2) {
        dsk_ops_fill_avx2(ops);
        dsk_ops_fill_avx2_bf16(ops);
        ops->level = DSK_LEVEL_AVX2;
        ops->fp8_integer = dsk_fp8_integer_route();
        if (ops->fp8_integer)
            dsk_ops_fill_avx2_fp8i(ops);
    }
    if (level >= DSK_LEVEL_AVX512 && dsk_level_cpu() >= DSK_LEVEL_AVX512) {
        dsk_ops_fill_avx512(ops);
        ops->level = DSK_LEVEL_AVX512;
        ops->fp8_integer = 0; /* the AVX-512 fp8 slots convert through F16C or a byte table */
        if (dsk_fp8_table_route())
            dsk_ops_fill_avx512_vbmi(ops); /* fp8, one token; before avx512bf16 reads it */
    }
    /*
     * VNNI adds only the int8-activation slots below to the AVX-512 level; BF16 the vdpbf16ps
     * matmuls. Each is taken where the CPU has that extension (see cpu_has_vnni).
     */
    const int avx512 = ops->level == DSK_LEVEL_AVX512;
    const int vnni = avx512 && level >= DSK_LEVEL_AVX512_VNNI && cpu_has_vnni();
    if (vnni)
        ops->level = DSK_LEVEL_AVX512_VNNI;
    if (avx512 && level >= DSK_LEVEL_AVX512_BF16 && cpu_has_bf16()) {
        dsk_ops_fill_avx512_bf16(ops);
        ops->level = DSK_LEVEL_AVX512_BF16;
    }
    /*
     * int8 activations where the level has them: AVX2 (vpmaddubsw) and AVX-512 VNNI (vpdpbusd).
     * Plain AVX-512 keeps f32 activations (and its own f32 kernels, not AVX2's).
     */
    ops->act = DSK_ACT_F32;
    if (act == DSK_ACT_I8 && ops->level == DSK_LEVEL_AVX2) {
        dsk_ops_fill_avx2_act8(ops);
        ops->act = DSK_ACT_I8;
        ops->q4l = 1; /* int4 repacked at load: dsk_avx2_q4l.c */
    } else if (act == DSK_ACT_I8 && vnni) {
        dsk_ops_fill_avx512_vnni(ops);
        ops->act = DSK_ACT_I8;
        ops->q4l = 1; /* dsk_avx512_vnni_q4l.c */
        if (amx_usable())
            dsk_ops_fill_amx(ops);
    }
}
