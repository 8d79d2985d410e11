/*
 * dsn_engine_impl.h - private to the engine's files (dsn_engine.c, dsn_attention.c, dsn_moe.c):
 * the engine struct, its scratch memory, the MLA widths and the parallel matmul helper.
 */
#ifndef DSN_ENGINE_IMPL_H
#define DSN_ENGINE_IMPL_H

#include "dsi_clock.h"
#include "dsn_engine.h"

/* Scratch sized for `tokens` tokens of a batch and `ctx` context positions; grown on demand. */
typedef struct {
    int64_t tokens, ctx;
    float *x;             /* [tokens, H] normalised input */
    float *q;             /* [tokens, heads * qk] */
    float *qa;            /* [tokens, max(q_lora, 1)] */
    float *kva;           /* [tokens, kv_lora + rope] */
    float *qfull;         /* [tokens, heads, row]: absorbed q_nope then rotated q_pe */
    float *olat;          /* [tokens, heads, row]: attention-weighted latent (first kv_lora used) */
    float *o;             /* [tokens, heads * v] */
    float *attn;          /* [tokens, H] o_proj output */
    float *scores;        /* [heads, ctx] */
    float *ffn_a;         /* [tokens * top_k, max(I, n_shared * moe_I, moe_I)] gate */
    float *ffn_b;         /* same, up */
    float *gather;        /* [tokens * top_k, H] expert inputs gathered */
    float *expert_y;      /* [tokens * top_k, H] */
    float *slots;         /* [tokens * top_k, H] per-(token, slot) expert outputs */
    float *shared;        /* [tokens, H] */
    float *router_logits; /* [tokens, E] */
    int32_t *route_experts; /* [tokens * top_k] */
    float *route_weights;   /* [tokens * top_k] */
    int32_t *pair_token;    /* [tokens * top_k] */
    int32_t *pair_index;    /* [tokens * top_k] */
    int32_t *tok_seq;       /* [2 * tokens] sequence index of each token; the second half:
                               of the query rows of dsn_engine_attention_rows */
    int64_t *tok_pos;       /* [2 * tokens] absolute position of each token; the same */
    float *h;               /* [tokens, H] residual stream of dsn_engine_forward */
    int64_t *rows;          /* [tokens] rows whose logits dsn_engine_forward returns */
    float *mla;             /* dsn_mla_expanded's buffers */
    size_t mla_floats;
} dsn_scratch_t;

/* The widths of MLA attention (MODEL.md 4) that the attention files compute with. */
typedef struct {
    int64_t heads; /* query heads */
    int64_t nope;  /* a head's query and key width without position (qk_nope_head_dim) */
    int64_t rope;  /* their rotated part (qk_rope_head_dim; also k_pe in the cache row) */
    int64_t qk;    /* nope + rope */
    int64_t vdim;  /* a head's value width */
    int64_t lora;  /* the latent c_kv (kv_lora_rank) */
} dsn_mla_dims_t;

static inline dsn_mla_dims_t dsn_mla_dims(const dsn_config_t *c)
{
    dsn_mla_dims_t d = {.heads = c->num_attention_heads,
                        .nope = c->qk_nope_head_dim,
                        .rope = c->qk_rope_head_dim,
                        .qk = c->qk_nope_head_dim + c->qk_rope_head_dim,
                        .vdim = c->v_head_dim,
                        .lora = c->kv_lora_rank};
    return d;
}

/* Which form of MLA attention a prompt chunk takes (dsn_engine_set_mla). */
typedef enum {
    DSN_MLA_AUTO = 0,  /* the expanded form where dsn_mla_expanded_cheaper says so */
    DSN_MLA_ABSORBED,  /* always absorbed */
    DSN_MLA_EXPANDED,  /* expanded for every chunk of one sequence (tests) */
} dsn_mla_mode_t;

struct dsn_engine {
    const dsn_weights_t *w;
    const dsn_config_t *cfg;
    dsk_ops_t ops;
    dsi_pool_t *pool;
    int own_pool; /* 0: another engine's (dsn_engine_create_beside) */
    dsn_trace_t trace;
    int64_t *phase_ns;   /* [DSN_PHASE_COUNT] or NULL: dsn_engine_set_phase_clock */
    float *rope_freqs;   /* [rope / 2] */
    float rope_factor;   /* YaRN cos/sin factor */
    float softmax_scale; /* qk^-0.5 * mscale^2 */
    dsk_router_cfg_t router;
    int kv_row;        /* kv_lora + rope */
    dsn_kvpool_t *kvpool; /* where dsn_engine_kvcache_create's caches draw blocks from */
    float *kv_ones;       /* [ceil(kv_row / 128)] 1.0f: the fp8 cache blocks' scale grid */
    int64_t ffn_width; /* widest SwiGLU intermediate */
    dsn_mla_mode_t mla;
    dsn_scratch_t s;
};

/* Force a form of MLA attention (tests compare the two); DSN_MLA_AUTO by default. */
void dsn_engine_set_mla(dsn_engine_t *e, dsn_mla_mode_t mode);

/*
 * The expanded form: fewest query tokens of a chunk, and most positions (its buffers hold every
 * position's K and V of a head per thread, and the cached rows as f32).
 */
#define DSN_MLA_EXPANDED_MIN 16
#define DSN_MLA_EXPANDED_MAX 16384
/* Whether m query tokens reaching len positions cost fewer multiply-adds expanded than absorbed. */
int dsn_mla_expanded_cheaper(const dsn_config_t *c, int64_t m, int64_t len);
/*
 * Attention of the m query tokens of one sequence at positions pos0..pos0 + m - 1 (their KV
 * already stored) in the expanded form: reads s.q (roped) and writes s.o [m, heads * v].
 */
dsi_status_t dsn_mla_expanded(dsn_engine_t *e, const dsn_layer_t *ly, int slice_layer,
                              const dsn_kvcache_t *kv, int64_t pos0, int64_t m);

/* The start of a timed phase (0 when the phase clock is off) and its end. */
static inline int64_t dsn_phase_start(const dsn_engine_t *e)
{
    return e->phase_ns != NULL ? dsi_now_ns() : 0;
}
static inline void dsn_phase_stop(dsn_engine_t *e, dsn_phase_t phase, int64_t start)
{
    if (e->phase_ns != NULL)
        e->phase_ns[phase] += dsi_now_ns() - start;
}

/* Grow the scratch for a batch of `tokens` tokens reaching `ctx` positions. */
dsi_status_t dsn_engine_scratch(dsn_engine_t *e, int64_t tokens, int64_t ctx);

/*
 * Fewest rows per chunk of dsn_par_matmul for a matrix of `cols` columns and n tokens: enough
 * multiply-adds (DSN_CHUNK_WORK) that a chunk outweighs the pool's hand-off, few enough that a
 * V3 expert matrix (2048 x 7168 or 7168 x 2048, 14.7 M weights) splits over 32 threads.
 */
#define DSN_CHUNK_WORK (128 * 1024)
int64_t dsn_par_matmul_grain(int64_t cols, int64_t n);

/* y[t, r - r0] = W[r] . x[t] for r in [r0, r1), rows split over the pool. */
void dsn_par_matmul(dsn_engine_t *e, const dsk_matrix_t *w, int64_t r0, int64_t r1, const float *x,
                    int64_t ldx, int64_t n, float *y, int64_t ldy);

#endif
