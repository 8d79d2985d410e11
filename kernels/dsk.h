/*
 * dsk.h - pure compute kernels of dsinfer: no I/O, no globals, no allocation.
 *
 * Every kernel has a readable scalar reference (dsk_<op>_ref in dsk_ref.c) that is always
 * compiled; SIMD variants (one ISA per file: dsk_avx2.c, dsk_avx512.c) override slots of a
 * caller-owned dsk_ops_t. dsk_ops_init() fills a table for a level; dsk_level_detect() reads the
 * CPU (cpuid) and the `kernels` option (dsk_set_options: "scalar", "avx2", "avx512",
 * "avx512vnni"), which can only lower the level, never raise it above what the CPU supports.
 * The one exception is "avx512bf16", a level that changes results (x rounded to bf16) and so is
 * never chosen unless that option names it (and the CPU has AVX512_BF16). The library reads no
 * environment: the programs pass their settings (--kernels, --fp8, --act, or the variables
 * DSINFER_KERNELS, DSINFER_FP8, DSINFER_ACT) through dsk_set_options at start-up.
 *
 * Matrices are row-major [rows, cols] with y = W x (HF / safetensors convention). Activations are
 * f32; weights stay in their stored dtype and are dequantized inside the kernel. The one exception
 * is the product of the integer weight dtypes at few tokens (n <= 4, I8 at avx2 up to 64; at
 * avx512vnni up to 64, with AMX any n: dsk_ops_t.a8_n_max), which by default quantizes the
 * activations to int8 and multiplies in integers (dsk_act_t below; the `act` option f32 turns it
 * off); the other is the opt-in avx512bf16 level, whose BF16 (and batched FP8) matmul rounds x to
 * bf16 (see DSK_LEVEL_AVX512_BF16 and dsk_ops_t.x_bf16). The SIMD matmul variants pack weight
 * panels on the stack (about 72 KiB; avx512bf16 104 KiB with its bf16 copy of x, 168 KiB built with
 * three parts of x; the AVX2 integer and the AVX-512 byte-table fp8 decode 128 KiB of prepared x,
 * the AVX2 I8 token groups about 160 KiB of quantized x): call them from threads with ordinary
 * stacks. docs/KERNELS.md describes the levels and the strategy.
 */
#ifndef DSK_H
#define DSK_H

#include <stddef.h>
#include <stdint.h>

/*
 * Weight storage formats. The first three are what checkpoints hold; the integer formats are made
 * at load (re-quantization, node/engine/dsn_quant.h) for servers with less memory. The integer
 * formats are row-wise: every row has its own f32 scales, one per group of consecutive inputs, so
 * scale_inv is [rows, ceil(cols / group)] and W[r][c] = q * scale_inv[r][c / group].
 *
 * DSK_DTYPE_I8: one int8 q in [-127, 127] per value, rows of `cols` bytes, group 128.
 * DSK_DTYPE_I4_G32 / _G128: q in [-8, 7] stored as q + 8 in a nibble, two per byte. A row is
 * ceil(cols / 32) chunks of 16 bytes; byte j of chunk k holds input 32k + j in its low nibble
 * and input 32k + 16 + j in its high nibble (so one 16-byte load unpacks to 32 inputs in order
 * with an AND and a shift). Inputs past `cols` in the last chunk hold q = 0 (nibble 8).
 */
typedef enum {
    DSK_DTYPE_F32 = 0,
    DSK_DTYPE_BF16,
    DSK_DTYPE_F8_E4M3, /* e4m3fn with a [ceil(rows/128), ceil(cols/128)] f32 scale_inv grid */
    DSK_DTYPE_I8,      /* int8, f32 scale_inv [rows, ceil(cols/128)] */
    DSK_DTYPE_I4_G32,  /* int4 pairs, f32 scale_inv [rows, ceil(cols/32)] */
    DSK_DTYPE_I4_G128, /* int4 pairs, f32 scale_inv [rows, ceil(cols/128)] */
    DSK_DTYPE_COUNT
} dsk_dtype_t;

#define DSK_FP8_BLOCK 128
#define DSK_Q4_CHUNK  32 /* int4 values per 16-byte chunk of a row */

/*
 * How a matrix's values are laid out in memory. DSK_LAYOUT_ROWS (0) is the stored one above.
 * DSK_LAYOUT_Q4_L16 (I4_G32 / I4_G128 only) is made once at load by dsk_q4l_pack for the
 * int8-activation kernels: blocks of 16 rows, and in a block, for each group of the dtype in
 * column order, its 32-input chunks (256 bytes each: dword m, m < 4, of the 16 rows' 16-byte
 * chunk side by side, so uint32 [4][16]) followed by the group's 16 row scales (64 bytes). A
 * block is 16 * (dsk_dtype_row_bytes + 4 * scale_cols) bytes; the last block is padded with
 * rows of q = 0 and scale 0; scale_inv is NULL (the scales are inside). Every slot of every level
 * reads it (the avx2 and avx512vnni int8-activation slots with their own kernels, at every n;
 * the others through the scalar references: slow, for tests), see docs/KERNELS.md.
 */
typedef enum {
    DSK_LAYOUT_ROWS = 0,
    DSK_LAYOUT_Q4_L16,
} dsk_layout_t;

#define DSK_Q4L_ROWS 16 /* rows per block of DSK_LAYOUT_Q4_L16 */

typedef struct {
    dsk_dtype_t dtype;
    int64_t rows, cols;
    const void *data;       /* rows * cols elements of dtype, row-major; not owned */
    const float *scale_inv; /* F8_E4M3 only: [ceil(rows/128), ceil(cols/128)] f32; else NULL */
    dsk_layout_t layout;    /* DSK_LAYOUT_ROWS unless repacked (dsk_q4l_pack) */
} dsk_matrix_t;

typedef enum {
    DSK_LEVEL_SCALAR = 0,
    DSK_LEVEL_AVX2,        /* AVX2 + FMA + F16C */
    DSK_LEVEL_AVX512,      /* AVX-512 F/BW/VL/DQ */
    DSK_LEVEL_AVX512_VNNI, /* the same + AVX512_VNNI: only the int8-activation slots differ */
    /*
     * Opt-in only (DSINFER_KERNELS=avx512bf16; dsk_level_cpu never returns it).
     * AVX-512 + AVX512_BF16 (vdpbf16ps), with the VNNI slots where the CPU also has VNNI: the
     * matmul of BF16 weights, and of F8_E4M3 weights for n >= DSK_BF16X_FP8_MIN tokens, splits x
     * into DSK_BF16X_PARTS bf16 parts (by default one: x rounded to bf16, nearest even),
     * multiplies each weight by every part and accumulates the exact products in f32
     * (dsk_matmul_bf16x_ref models it). With one part each x moves by at most 2^-8 of itself, so
     * a product moves by at most about 2^-8 * sum_c |W[r][c] x[c]| (plus the f32 accumulation's
     * 2e-5 of that sum, and subnormal parts or products flushed to zero), where the f32 path is
     * within 2e-5 of it; p parts: 2^-(8p). On the tiny fixture one part moves logits by up to 3 (a
     * router flip: its gate and lm_head are bf16), far outside the f32 path's 1e-3, hence
     * opt-in; three parts are exact but slower than the f32 path (docs/KERNELS.md).
     */
    DSK_LEVEL_AVX512_BF16,
    DSK_LEVEL_COUNT
} dsk_level_t;

/*
 * The bf16 parts x is split into by the avx512bf16 level's matmul (dsk_matmul_bf16x_ref), fixed
 * at build time (-DDSK_BF16X_PARTS=2 or 3): 1 is 1.5-1.9x the f32 path's arithmetic rate on Zen 4,
 * 2 about 1.0x (x within 2^-16; v2-tiny's routing weights 10x further off than at f32), 3 exact
 * and 0.6-0.8x (docs/KERNELS.md, "BF16 dot products").
 */
#ifndef DSK_BF16X_PARTS
#define DSK_BF16X_PARTS 1
#endif
_Static_assert(DSK_BF16X_PARTS >= 1 && DSK_BF16X_PARTS <= 3, "DSK_BF16X_PARTS is 1, 2 or 3");

/* The avx512bf16 level's FP8 matmul rounds x from this many tokens on (below: f32, exact). */
#define DSK_BF16X_FP8_MIN 8

/*
 * Activations of the decode product (matmul, n <= 4 tokens) of the I8 / I4_G32 / I4_G128 weights.
 * DSK_ACT_I8: each token's x is quantized symmetrically to int8 per group of the weight's group
 * size (128, or 32 for I4_G32), scale = amax / 127, and each group's product is an exact integer
 * dot: y = sum_g w_scale[g] * x_scale[g] * sum_{c in g} q_w[c] * q_x[c] (dsk_matmul_a8_ref).
 * Levels avx2 (vpmaddubsw) and avx512vnni (vpdpbusd) have it; scalar and avx512 stay f32.
 * matmul with n > ops->a8_n_max[dtype] (4 at avx2, I8 64; 64 at avx512vnni, where int4 from 2
 * tokens and I8 from 5 take a kernel with rows in vector lanes; no limit with AMX) and matmul_t
 * always take f32 activations; int4 in DSK_LAYOUT_Q4_L16 takes int8 activations at every n
 * (dsk_ops_t.q4l).
 */
typedef enum {
    DSK_ACT_F32 = 0,
    DSK_ACT_I8,
} dsk_act_t;

#define DSK_A8_N_ANY 0x7fffffff /* dsk_ops_t.a8_n_max: int8 activations at every n */

/* How a router scores experts (config.json scoring_func). */
typedef enum {
    DSK_SCORE_SIGMOID = 0, /* V3: s = sigmoid(logit) per expert */
    DSK_SCORE_SOFTMAX,     /* V2 family: s = softmax(logits) over all routed experts */
} dsk_score_t;

/* How a router picks experts (config.json topk_method). */
typedef enum {
    DSK_TOPK_NOAUX_TC = 0,  /* V3: groups scored by the sum of their 2 best biased scores */
    DSK_TOPK_GREEDY,        /* plain top-k over all experts; groups ignored */
    DSK_TOPK_GROUP_LIMITED, /* V2: groups scored by their best score, then top-k in kept groups */
} dsk_topk_method_t;

/* Router configuration of one MoE layer. The zero values of the last two fields are V3's. */
typedef struct {
    int n_experts;  /* routed experts, e.g. 256 */
    int n_group;    /* groups of n_experts / n_group consecutive experts */
    int topk_group; /* groups kept */
    int top_k;      /* experts chosen per token, at most DSK_ROUTER_MAX_TOPK */
    int norm_topk;  /* normalise the chosen scores to sum 1 */
    float scaling;  /* routed_scaling_factor, applied after normalisation */
    dsk_score_t scoring;
    dsk_topk_method_t method;
} dsk_router_cfg_t;

#define DSK_ROUTER_MAX_EXPERTS 1024
#define DSK_ROUTER_MAX_TOPK    32

typedef struct {
    /*
     * Matrix product over a row range: for t in [0, n) and r in [r0, r1)
     *   y[t * ldy + (r - r0)] = sum_c W[r][c] * x[t * ldx + c]
     * (c over all w->cols). Each weight element is read once for all n tokens.
     */
    void (*matmul[DSK_DTYPE_COUNT])(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                                    int64_t ldx, int64_t n, float *y, int64_t ldy);
    /*
     * Transposed product over a row range, accumulating: for t in [0, n) and c in [0, w->cols)
     *   y[t * ldy + c] += sum_{r in [r0, r1)} W[r][c] * x[t * ldx + (r - r0)]
     * Used by absorbed MLA (q_abs = W_UK^T q_nope) without a transposed copy of kv_b.
     */
    void (*matmul_t[DSK_DTYPE_COUNT])(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                                      int64_t ldx, int64_t n, float *y, int64_t ldy);
    float (*dot)(const float *a, const float *b, int64_t n);
    /* y[i] += a * x[i] */
    void (*axpy)(float a, const float *x, float *y, int64_t n);
    /* out[i] = w[i] * x[i] / sqrt(mean(x^2) + eps); out may equal x. */
    void (*rmsnorm)(const float *x, const float *w, int64_t n, float eps, float *out);
    /* out[i] = silu(gate[i]) * up[i]; out may equal gate or up. */
    void (*silu_mul)(const float *gate, const float *up, int64_t n, float *out);
    /* In place, numerically stable (max subtracted), f32. */
    void (*softmax)(float *x, int64_t n);
    /*
     * Row r of w dequantized (scales applied): out[c] for c in [0, w->cols). The SIMD version of
     * dsk_matrix_row_f32 (same values: both are exact), for bulk conversion such as re-quantizing
     * weights at load.
     */
    void (*row_f32[DSK_DTYPE_COUNT])(const dsk_matrix_t *w, int64_t r, float *out);
    dsk_level_t level;
    dsk_act_t act; /* what the integer dtypes' decode matmuls use (DSK_ACT_I8 only at the levels
                      that have it) */
    int a8_n_max[DSK_DTYPE_COUNT]; /* matmul[d] takes int8 activations for n <= a8_n_max[d]
                                      tokens (0: never, DSK_A8_N_ANY: every n); see dsk_act_t */
    int amx;         /* the integer slots use AMX (amx_int8) from 16 tokens: dsk_amx_available() */
    int fp8_integer; /* the AVX2 fp8 slots use the integer e4m3 conversion (dsk_fp8_integer_route)
                      */
    int fp8_table;   /* the AVX-512 fp8 matmul of one token converts e4m3 with a byte table
                        (AVX512_VBMI) rather than F16C: dsk_fp8_table_route */
    uint32_t x_bf16; /* bit d set: matmul[d] splits x into bf16 parts (DSK_LEVEL_AVX512_BF16);
                        matmul_t never does */
    int q4l;         /* matmul of I4_G32 / I4_G128 in DSK_LAYOUT_Q4_L16 has a SIMD kernel (int8
                        activations, every n): worth repacking int4 weights at load */
} dsk_ops_t;

/*
 * The kernel options of the program (its settings --kernels, --fp8, --act), each NULL, "" or
 * "auto" for the default: kernels lowers dsk_level_detect(), fp8 forces dsk_fp8_integer_route(),
 * act chooses dsk_act_detect(). Call it at start-up, before threads read them; the last call
 * wins (each call sets all three).
 */
void dsk_set_options(const char *kernels, const char *fp8, const char *act);
/*
 * Row chunks per thread worth giving matmul[dt] at n tokens when a caller splits its rows over
 * threads that claim chunks as they go (dsi_pool_run_dynamic), so that a thread the OS runs late
 * on a shared machine takes fewer chunks instead of holding up the product: 4 for the slots with
 * f32 activations, decode and batched, whose per-call preparation (at most a bf16 split or the
 * fp8 byte table's permutation of x) cost 0-3% in 8 calls instead of one (one thread, CPU time,
 * 2048x7168 and 7168x2048 at 1 and 4 tokens); 1 (one chunk per thread, still claimed) for the
 * int8-activation slots, which quantize all of x in every call (2-15% in 8 calls).
 */
static inline int dsk_matmul_chunks_per_thread(const dsk_ops_t *ops, const dsk_matrix_t *w,
                                               int64_t n)
{
    /* int4 repacked at load always takes int8 activations */
    return n > ops->a8_n_max[w->dtype] && w->layout != DSK_LAYOUT_Q4_L16 ? 4 : 1;
}

/*
 * Highest exact level the CPU supports, lowered by the kernels option if set (unknown values:
 * scalar); kernels=avx512bf16 gives DSK_LEVEL_AVX512_BF16 where the CPU supports it and
 * dsk_level_cpu() elsewhere.
 */
dsk_level_t dsk_level_detect(void);
/*
 * Highest level with f32 activations this CPU supports, ignoring the kernels option: never
 * DSK_LEVEL_AVX512_BF16, which changes results (ask dsk_level_supported).
 */
dsk_level_t dsk_level_cpu(void);
/*
 * Whether AMX int8 tiles can run here: CPUID reports AMX-TILE and AMX-INT8, the OS enables the
 * tile state (XCR0) and the Linux kernel grants this process the tile data
 * (arch_prctl(ARCH_REQ_XCOMP_PERM)); asks the kernel once per call. dsk_ops_init_act takes the AMX
 * slots at level avx512vnni with int8 activations where this is true.
 */
int dsk_amx_available(void);
/* Whether this CPU runs `level`: every level up to dsk_level_cpu(), avx512bf16 if it has it. */
int dsk_level_supported(dsk_level_t level);
const char *dsk_level_name(dsk_level_t level);
/*
 * Whether the AVX2 level converts fp8 with integer ops (exact; e4m3 subnormals become f32
 * subnormals, which AMD cores multiply at full speed and Intel cores through a microcode assist)
 * rather than F16C: yes on AMD CPUs. The fp8 option int|f16c forces either.
 */
int dsk_fp8_integer_route(void);
/*
 * Whether the AVX-512 levels' fp8 matmul of one token converts e4m3 with a byte table
 * (vpermi2b, exact like F16C, fewer instructions): where the CPU has AVX512_VBMI, unless the fp8
 * option is f16c.
 */
int dsk_fp8_table_route(void);
/*
 * The activation format asked for by the act option: f32 gives DSK_ACT_F32, unset or "int8"
 * DSK_ACT_I8; any other value DSK_ACT_F32 (the exact one).
 */
dsk_act_t dsk_act_detect(void);
/*
 * Fill *ops with the reference kernels, then the variants of every level up to `level`; the
 * integer dtypes' decode matmuls take int8 activations if `act` is DSK_ACT_I8 and the level has
 * them (ops->act says what was chosen).
 */
void dsk_ops_init_act(dsk_ops_t *ops, dsk_level_t level, dsk_act_t act);
/* dsk_ops_init_act(ops, level, dsk_act_detect()). */
void dsk_ops_init(dsk_ops_t *ops, dsk_level_t level);

/* ---- int8 activations (dsk_act8.c) ---- */
/*
 * Quantize x[0, k) in groups of g inputs (from x[0]): q[c] = round_even(x[c] * 127 / amax) in
 * [-127, 127], scale[j] = amax / 127 and sum[j] = the sum of q over group j (amax over that group;
 * an all-zero group has scale 0). q[k .. ceil(k / 32) * 32) are set to 0. A group holding a NaN or
 * an infinity gets scale NaN, so the products it enters are NaN as with f32 activations.
 */
void dsk_act8_quantize(const float *x, int64_t k, int64_t g, int8_t *q, float *scale, int32_t *sum);
/*
 * The scalar reference of the int8-activation product (matmul's contract; w is I8, I4_G32 or
 * I4_G128; any n): per token and row, float acc += (w_scale * x_scale) * idot per group, in
 * column order, with the exact integer idot of the group.
 */
void dsk_matmul_a8_ref(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x, int64_t ldx,
                       int64_t n, float *y, int64_t ldy);

/*
 * The scalar model of the avx512bf16 level's matmul (matmul's contract; w is BF16 or F8_E4M3,
 * any n): x split into DSK_BF16X_PARTS parts (part p = dsk_f32_to_bf16 of x minus the parts
 * before it; a NaN rest gives 0), each product of a part and the stored weight (the
 * bf16 value; for fp8 the e4m3 value without its block scale) added in column order to an f32
 * sum per 128-column block, and the block sums added to the f32 total, fp8's times their block
 * scale. The SIMD kernel differs from it only in the order of the f32 additions and in
 * flushing subnormals (tests/test_kernel_bf16x.c states the bound).
 */
void dsk_matmul_bf16x_ref(const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                          int64_t ldx, int64_t n, float *y, int64_t ldy);

/* ---- conversions (scalar; used on small tensors and in references) ---- */
float dsk_bf16_to_f32(uint16_t v);
uint16_t dsk_f32_to_bf16(float v); /* round to nearest even; NaN stays NaN */
float dsk_fp8_e4m3_to_f32(uint8_t v);
uint8_t dsk_f32_to_fp8_e4m3(float v); /* round to nearest even, saturating at +-448 */
/* Row `r` of w, dequantized: out[c] for c in [0, w->cols). */
void dsk_matrix_row_f32(const dsk_matrix_t *w, int64_t r, float *out);

/* ---- storage sizes and quantization (dsk_quant.c) ---- */
/* "f32", "bf16", "fp8", "int8", "int4-g32", "int4-g128"; "?" outside the enum. */
const char *dsk_dtype_name(dsk_dtype_t dt);
/* Bytes of one row's values (int4 rows are whole 16-byte chunks). */
int64_t dsk_dtype_row_bytes(dsk_dtype_t dt, int64_t cols);
/* Rows sharing one row of scales: 128 for FP8, 1 for the integer formats, 0 without scales. */
int64_t dsk_dtype_scale_rows(dsk_dtype_t dt);
/* Scales per row of scales (ceil(cols / group)); 0 without scales. */
int64_t dsk_dtype_scale_cols(dsk_dtype_t dt, int64_t cols);
/* Bytes of a [rows, cols] matrix of dtype dt: values plus f32 scales. */
uint64_t dsk_matrix_bytes(dsk_dtype_t dt, int64_t rows, int64_t cols);
/*
 * Quantize f32 rows into dtype dt: src is [n_rows, cols] with row stride ld. Writes rows
 * [0, n_rows) of a matrix of dtype dt: data gets n_rows * dsk_dtype_row_bytes(dt, cols) bytes and
 * scale_inv the scales of those rows (integer formats: n_rows * scale_cols floats). For FP8 the
 * rows are one 128-row block band (n_rows <= 128) and scale_inv is that band's scale_cols floats;
 * BF16 and F32 have no scales (scale_inv unused, may be NULL). Rounding is to nearest (even);
 * integer scales are chosen per group from its largest magnitude (I8: amax / 127; I4: the value
 * of largest magnitude maps to -8). Non-finite inputs are the caller's to avoid.
 */
void dsk_quantize_rows(dsk_dtype_t dt, const float *src, int64_t ld, int64_t n_rows, int64_t cols,
                       void *data, float *scale_inv);

/* ---- int4 repacked for the int8-activation kernels (dsk_q4l.c; DSK_LAYOUT_Q4_L16) ---- */
/* Bytes of an I4_G32 / I4_G128 matrix [rows, cols] in DSK_LAYOUT_Q4_L16 (rows padded to 16). */
uint64_t dsk_q4l_bytes(dsk_dtype_t dt, int64_t rows, int64_t cols);
/* Bytes of one block of 16 rows in DSK_LAYOUT_Q4_L16. */
int64_t dsk_q4l_block_bytes(dsk_dtype_t dt, int64_t cols);
/*
 * Repack all rows of src (I4_G32 or I4_G128, DSK_LAYOUT_ROWS) into dst, dsk_q4l_bytes(src->dtype,
 * src->rows, src->cols) bytes: block b of dst holds rows 16b .. 16b + 15 of src. A band of a larger
 * matrix whose first row is a multiple of 16 packs into dst + (first row / 16) * block bytes.
 * Returns -1 (nothing written) if src is not an int4 matrix in DSK_LAYOUT_ROWS, else 0.
 */
int dsk_q4l_pack(const dsk_matrix_t *src, void *dst);

/* ---- RoPE with YaRN (adjacent pairs, float32 angles) ---- */
typedef struct {
    double factor;        /* s; 1 or 0 means no YaRN */
    int original_max_pos; /* L0 */
    double beta_fast, beta_slow;
    double mscale, mscale_all_dim;
} dsk_yarn_t;

/* freqs[i], i < dim/2: YaRN-corrected inverse frequencies (yarn NULL: plain base^(-2i/dim)). */
void dsk_rope_freqs(int dim, double base, const dsk_yarn_t *yarn, float *freqs);
/* The factor YaRN applies to cos and sin: mscale(s, mscale) / mscale(s, mscale_all_dim). */
float dsk_rope_attn_factor(const dsk_yarn_t *yarn);
/* The extra softmax-scale factor m^2, m = 0.1 * mscale_all_dim * ln(s) + 1 (1 without YaRN). */
float dsk_yarn_softmax_mscale(const dsk_yarn_t *yarn);
/*
 * Rotate x[0..dim) in place at position pos: angle_i = (float)pos * freqs[i] in float32;
 * (x[2i], x[2i+1]) -> (x0 c - x1 s, x0 s + x1 c), with c, s scaled by attn_factor.
 */
void dsk_rope_apply(float *x, int dim, const float *freqs, float attn_factor, int64_t pos);
/*
 * The YaRN correction range (MODEL.md 4.5): low = max(floor(corr(beta_fast)), 0),
 * high = min(ceil(corr(beta_slow)), dim - 1), high += 0.001 when equal. V3: 10 and 23.
 * yarn must not be NULL.
 */
void dsk_rope_yarn_range(int dim, double base, const dsk_yarn_t *yarn, double *low, double *high);
/*
 * dsk_rope_apply split in two, so the cos/sin of one position are computed once for all heads:
 * cs[2i] = cos(angle_i) * attn_factor, cs[2i+1] = sin(angle_i) * attn_factor (cs: dim floats);
 * dsk_rope_apply_cs(x, dim, cs) then gives the same bits as dsk_rope_apply.
 */
void dsk_rope_cos_sin(int dim, const float *freqs, float attn_factor, int64_t pos, float *cs);
void dsk_rope_apply_cs(float *x, int dim, const float *cs);

/* ---- MoE router ---- */
/*
 * Route one token: s = sigmoid(logits) (or softmax(logits) with DSK_SCORE_SOFTMAX); choice by
 * s + bias (bias may be NULL) with the top-k method of cfg (group-limited by the sum of each
 * group's 2 best, by each group's best, or plain top-k); weights from the unbiased s (normalised
 * if cfg->norm_topk, times cfg->scaling). Outputs are in canonical slot order: descending biased
 * score, ties broken by the lower expert index.
 * scratch: 2 * cfg->n_experts floats. Returns 0, or -1 when cfg is out of range.
 */
int dsk_router_topk(const dsk_router_cfg_t *cfg, const float *logits, const float *bias,
                    float *scratch, int32_t *experts, float *weights);

#endif
