/*
 * dsn_spec.h - speculative decoding with the model's own MTP module: in one process
 * (dsn_spec_step), and the same drafts, accept / reject decisions and rollback for a node daemon
 * that runs the main model's forward through its own layer loop (dsn_spec_verify_tokens, then
 * dsn_spec_judge).
 *
 * Each step drafts K tokens per sequence with the MTP module (dsn_mtp.h; the first from the main
 * model's last hidden state and the last emitted token, each further one from the module's own
 * output and its previous draft), then the main model verifies all K + 1 positions in one batched
 * forward. Accepted drafts and one more token (the correction at the first rejection, or a bonus
 * token after K acceptances) are emitted: 1 to K + 1 tokens per step. The rejected positions'
 * entries are rolled back in the main and the module's caches (dsn_kvcache_truncate).
 *
 * Lossless. Greedy (temperature 0): a draft is accepted while it equals the argmax, so the tokens
 * are those of decoding one token at a time. Sampling: the draft d is drawn from the module's
 * distribution q, accepted with probability min(1, p(d) / q(d)) where p is the main model's, and
 * at a rejection the token is drawn from the normalised residual max(0, p - q): every token has
 * exactly the model's distribution. p and q both go through the sequence's controls
 * (dsn_sampler_process: bias, min_tokens, penalties over the tokens emitted so far), temperature,
 * top-k, top-p and min-p; q with the counts at the start of the step, each p with the drafts
 * accepted before it counted. Random numbers come from the sequence's seeded stream, so a seed
 * gives the same tokens on every run (not the same as without speculation).
 *
 * Near the end of a sequence's cache (kv->max_tokens) a step drafts and verifies fewer tokens, so
 * a cache sized for the prompt and the tokens to generate is enough.
 *
 * A batch is several sequences; one compute thread uses a dsn_spec_t at a time.
 */
#ifndef DSN_SPEC_H
#define DSN_SPEC_H

#include <stdint.h>

#include "dsn_engine.h"
#include "dsn_mtp.h"
#include "dsn_sampler.h"

#define DSN_SPEC_MAX_K 8 /* the most drafted tokens per step */

/* What happened so far (all sequences). */
typedef struct {
    uint64_t steps;                     /* verify steps */
    uint64_t emitted;                   /* tokens emitted by them */
    uint64_t drafted[DSN_SPEC_MAX_K];   /* drafts made at draft position k (0 = first) */
    uint64_t accepted[DSN_SPEC_MAX_K];  /* and accepted */
    int64_t draft_ns, verify_ns;        /* wall time of the module's and the main model's passes */
} dsn_spec_stats_t;

typedef struct dsn_spec dsn_spec_t;

/* One sequence. Fill kv, mtp_kv (empty caches of the two engines) and sampler; zero the rest
 * (dsn_spec_seq_init). */
typedef struct {
    dsn_kvcache_t *kv;      /* main model's cache */
    dsn_kvcache_t *mtp_kv;  /* the module's (dsn_mtp_kvcache_create) */
    dsn_sampler_t *sampler; /* temperature 0: greedy */
    uint32_t n_generated;   /* tokens emitted (the controls' min_tokens) */
    /* The draft distributions of the step in flight (sampling): NULL keeps them in the
     * dsn_spec_t by the sequence's index in the batch, so the step's verification takes the
     * same batch; dsn_spec_seq_own_dists gives the sequence its own ([K, V], freed by
     * dsn_spec_seq_cleanup), so it may be verified in any batch, alone or with others drafted
     * at other times (a node of a pipeline's last stage). */
    float *dist;
    int32_t last;           /* last token emitted, not yet through the main model; -1 = none */
    /* private: main-model hidden states of positions [pend_pos, kv->length) not yet paired
     * through the module (pend_tok[i] = the token at pend_pos + i + 1, the last one = last) */
    float *pend_h;
    int32_t *pend_tok;
    int n_pend, pend_cap;
    int64_t pend_pos;
} dsn_spec_seq_t;

void dsn_spec_seq_init(dsn_spec_seq_t *q, dsn_kvcache_t *kv, dsn_kvcache_t *mtp_kv,
                       dsn_sampler_t *sampler);
void dsn_spec_seq_cleanup(dsn_spec_seq_t *q);
/* q keeps its own draft distributions from now on (sampling sequences need them; greedy ones
 * have none). DSI_ERR_NOMEM. */
dsi_status_t dsn_spec_seq_own_dists(const dsn_spec_t *s, dsn_spec_seq_t *q);

/*
 * Prefix cache (docs/MEMORY.md): the module's cache is keyed by the same token ids as the main
 * one. Its row at position i pairs the main model's state at i with the token at i + 1, so a
 * registered block's rows are fixed by its key but the last, which depends on the next block's
 * first token. dsn_spec_attach_prefix: q (nothing computed yet, both caches empty) takes the
 * registered blocks continuing ids[0, n_ids) into both caches, up to limit positions, and keeps
 * all their positions but the last (which the caller computes: the module needs the main
 * model's state there), as many as both caches found. Returns the positions q holds now (0: none;
 * never a multiple of DSN_KV_BLOCK). dsn_spec_publish: registers the module cache's full blocks
 * of the positions the main cache holds (with its ids; call when no drafts are in the main cache,
 * after a judgement).
 */
int64_t dsn_spec_attach_prefix(dsn_spec_seq_t *q, const int32_t *ids, int64_t n_ids, int64_t limit);
/* The module's part alone: the main cache took n positions (from the pool, by the caller); the
 * module's cache takes what it can of them. Returns the positions both hold then (<= n: the
 * caller cuts the main cache to that); q's pending state is set for them. */
int64_t dsn_spec_attach_module(dsn_spec_seq_t *q, const int32_t *ids, int64_t n_ids, int64_t n);
void dsn_spec_publish(dsn_spec_seq_t *q);

/* k drafts per step, 1 <= k <= DSN_SPEC_MAX_K. The engines are not owned (same weights format
 * and kernel level as each other is not required). */
dsi_status_t dsn_spec_create(dsn_engine_t *main, dsn_mtp_t *mtp, int k, dsn_spec_t **out);
void dsn_spec_destroy(dsn_spec_t *s);
int dsn_spec_k(const dsn_spec_t *s);
const dsn_spec_stats_t *dsn_spec_stats(const dsn_spec_t *s);

/*
 * The next n prompt tokens of sequence q through the main model (a prefill chunk; call again for
 * the next one) and the module. logits (may be NULL): [V] of the chunk's last token.
 */
dsi_status_t dsn_spec_prefill(dsn_spec_t *s, dsn_spec_seq_t *q, const int32_t *tokens, int n,
                              float *logits);
/*
 * The tail of dsn_spec_prefill for a caller that ran the main model itself: the chunk's n tokens
 * went in at position pos; hidden [n, H] their states after model.norm (dsn_spec_main_forward's).
 */
dsi_status_t dsn_spec_prefilled(dsn_spec_t *s, dsn_spec_seq_t *q, int64_t pos,
                                const int32_t *tokens, int n, const float *hidden);
/*
 * The first token after the prompt from the last prefill's logits (processed by the controls and
 * sampled as in every step); recorded as q->last. -1 when the logits hold NaN or infinity.
 */
int32_t dsn_spec_first(dsn_spec_t *s, dsn_spec_seq_t *q, float *logits);

/*
 * One step for n_seqs sequences (each with q->last set): draft, verify, accept, roll back.
 * out[i * (K + 1) + j], j < n_out[i]: sequence i's emitted tokens (1 to K + 1). out_logits (may be
 * NULL): [n_seqs * (K + 1), V] the main model's raw logits that chose each emitted token, in the
 * same layout. An error (logged) leaves the sequences unusable: DSI_ERR_INVALID_ARG also when a
 * row of logits holds NaN or infinity.
 */
dsi_status_t dsn_spec_step(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs, int32_t *out,
                           int *n_out, float *out_logits);

/*
 * The halves of dsn_spec_step, for tests: dsn_spec_draft writes the K drafts of each sequence
 * (drafts[i * K + k]) with the draft distributions kept inside; dsn_spec_verify checks the drafts
 * given (which may differ from those drafted: a test forcing a long accepted run) against the main
 * model, as dsn_spec_step. With drafts that differ from the drafted ones, use greedy sequences.
 */
dsi_status_t dsn_spec_draft(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs,
                            int32_t *drafts);
dsi_status_t dsn_spec_verify(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs,
                             const int32_t *drafts, int32_t *out, int *n_out, float *out_logits);

/*
 * Drafts the next step verifies per sequence: K, fewer when a sequence's cache is near its limit
 * (kv->max_tokens), 0 at the last position.
 */
int dsn_spec_step_k(const dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs);
/*
 * dsn_spec_verify in two halves around a main-model forward the caller runs itself (a node's
 * layer loop): dsn_spec_verify_tokens writes the B = dsn_spec_step_k + 1 tokens of each sequence
 * (q->last, then its drafts) at tokens[i * B ...] and returns B; the caller runs them at positions
 * kv->length .. + B - 1 (committed); dsn_spec_judge then takes their raw logits [n_seqs * B, V]
 * and hidden states after model.norm [n_seqs * B, H], and accepts, rolls back and emits as
 * dsn_spec_verify. The sequences are those given to the dsn_spec_draft that made the drafts, in
 * the same order, with no other dsn_spec_draft on s in between.
 */
int dsn_spec_verify_tokens(const dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs,
                           const int32_t *drafts, int32_t *tokens);
dsi_status_t dsn_spec_judge(dsn_spec_t *s, dsn_spec_seq_t *const *seqs, int n_seqs,
                            const int32_t *drafts, int B, const float *logits,
                            const float *hidden, int32_t *out, int *n_out, float *out_logits);
/* Wall time of a main-model pass run outside dsn_spec, counted in the stats' verify_ns. */
void dsn_spec_count_verify(dsn_spec_t *s, int64_t ns);

/*
 * The main model's pass that also returns its hidden states: dsn_engine_forward with all logits
 * ([n_tokens, V]) and hidden [n_tokens, H] after model.norm (what the module takes). h: scratch
 * [n_tokens, H] for the residual stream.
 */
dsi_status_t dsn_spec_main_forward(dsn_engine_t *e, const int32_t *tokens,
                                   const dsn_seq_batch_t *seqs, int n_seqs, float *h,
                                   float *hidden, float *logits);

/*
 * The module's predictions over a prompt: logits [n - 1, V], row i the draft of token i + 2 from
 * the main model's hidden state at i and token i + 1 (fresh caches; the fixture's pN.mtp.logits).
 */
dsi_status_t dsn_spec_mtp_logits(dsn_engine_t *main, dsn_mtp_t *mtp, const int32_t *tokens, int n,
                                 float *logits);

#endif
