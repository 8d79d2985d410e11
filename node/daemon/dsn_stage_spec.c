/*
 * dsn_stage_spec.c - speculative decoding with the checkpoint's MTP layer on a node that is its
 * plan's only stage (it feeds the tokens and samples them; remote experts are fine), or the last
 * of several.
 *
 * The module's routed experts are spread over the last stage's nodes like a MoE layer's when the
 * plan places them (dst_plan_t.mtp_offsets): its MoE step sends the pairs of experts held
 * elsewhere as DISPATCHes (dsn_dispatch_send, layer num_hidden_layers) and waits for the
 * COMBINEs, serving other nodes' DISPATCHes meanwhile (mtp_wait); this node serves the
 * DISPATCHes of that layer with the module's engine.
 *
 * The decisions are dsn_spec's (node/engine/dsn_spec.h), the forward is the node's own layer loop:
 * the scheduler drafts K tokens per decoding sequence with the module (dsn_spec_draft) and feeds
 * the last token and its drafts, K + 1 positions, in the micro-batch; when the micro-batch leaves
 * the layers, dsn_spec_judge accepts or rejects the drafts from the main model's logits at those
 * positions, rolls the rejected ones back from the caches and emits 1 to K + 1 tokens. Prefill
 * chunks hand their hidden states to the module (dsn_spec_prefilled). The draft distributions of
 * a step live in the dsn_spec_t until its judgement, so one micro-batch with drafts is in flight
 * at a time (prefill chunks run beside it).
 *
 * A sequence with a grammar (structured output) decodes one token at a time, beside the others,
 * through the usual sampling. A fork (one of n choices, sharing the prompt of the first) copies
 * the module's cache of the shared positions with the main one (dsn_stage_spec_fork), so it
 * speculates as the same request alone would.
 */
#include <stdlib.h>
#include <string.h>

#include "dsi_clock.h"
#include "dsi_settings.h"
#include "dsi_log.h"
#include "dsn_compute_impl.h"
#include "dsn_moe.h"
#include "dsn_mtp.h"
#include "dsn_spec.h"

struct dsn_seq_spec {
    dsn_spec_seq_t q;
    dsn_kvcache_t *mtp_kv;
    int32_t feed[DSN_SPEC_MAX_K + 1]; /* the tokens the next verify step feeds */
    int n_feed;                       /* several stages: how many (0: none drafted yet) */
    int64_t drafted_ns;               /* several stages: when they were drafted */
};

struct dsn_node_spec {
    dsn_compute_t *c;
    dsn_mtp_weights_t *w;
    dsn_mtp_t *mtp;
    int layer;             /* the module's layer index (num_hidden_layers) */
    int moe;               /* its decoder layer is a MoE layer */
    int held;              /* its routed experts held here */
    uint32_t *mtp_offsets; /* [E + 1] the holders of its experts as loaded, or NULL: all here */
    uint32_t *mtp_holders;
    dsn_mb_t *mb;          /* the buffers and dispatch state of its MoE step in flight */
    dsn_dispatch_ctx_t dc; /* {c, mb}: the dispatch hook's */
    dsn_spec_t *spec;
    dsn_spec_stats_t reported;              /* the stats as last handed to the queue */
    uint64_t seq_steps, reported_seq_steps; /* verify steps of one sequence each */
    int k;
    int pp;          /* the plan has several stages: this node is the last */
    int32_t *script; /* DSINFER_SPEC_SCRIPT's tokens (script_drafts), or NULL */
    int n_script;
    int busy;         /* a micro-batch with drafts is in flight */
    int64_t start_ns; /* when it started */
    /* scratch, grown to the largest use */
    int cap_seqs;
    dsn_spec_seq_t **seqs; /* [cap_seqs] */
    dsn_seq_t **owner;     /* [cap_seqs] */
    int32_t *drafts;       /* [cap_seqs * K] */
    int32_t *out;          /* [cap_seqs * (K + 1)] */
    int *n_out;            /* [cap_seqs] */
    int *fed;              /* [cap_seqs] several stages: positions verified (0: a first token) */
    int *go;               /* [cap_seqs] several stages: index among the drafted, or -1 */
    int32_t *tokens;       /* [cap_seqs * (K + 1)] */
    int64_t cap_rows;
    int64_t *rows; /* [cap_rows] */
    float *hidden; /* [cap_rows, H] */
    float *logits; /* [cap_rows, V] */
    int64_t cap_out;
    float *out_logits; /* [cap_out, V] for logprobs */
};

/*
 * DSINFER_SPEC_SCRIPT, for tests on models with random weights (whose drafts are nearly always
 * rejected): comma-separated token ids, the output a greedy request is expected to give. On a
 * plan of several stages the last stage then drafts those tokens (the one at each output
 * position) instead of the MTP layer's, so a test chooses which drafts are accepted and which
 * are rejected; the output does not change (the main model judges). 0, or -1 (logged).
 */
static int read_script(struct dsn_node_spec *ns)
{
    const char *env = dsi_env("DSINFER_SPEC_SCRIPT");
    if (env == NULL || env[0] == 0)
        return 0;
    int n = 1;
    for (const char *p = env; *p; p++)
        n += *p == ',';
    ns->script = malloc((size_t)n * sizeof(int32_t));
    if (ns->script == NULL)
        return -1;
    const char *p = env;
    for (int i = 0; i < n; i++) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end != ',' && *end != 0)) {
            DSI_ERROR("DSINFER_SPEC_SCRIPT: '%s' is not a comma-separated list of token ids", env);
            free(ns->script);
            ns->script = NULL;
            return -1;
        }
        ns->script[i] = (int32_t)v;
        p = end + 1;
    }
    ns->n_script = n;
    DSI_WARN("DSINFER_SPEC_SCRIPT: greedy requests draft the %d tokens given, not the MTP "
             "layer's (a test setting)",
             n);
    return 0;
}

/* The drafts of a greedy sequence whose next output position is g, from the script. */
static void script_drafts(const struct dsn_node_spec *ns, const dsn_seq_t *s, uint32_t g,
                          int32_t *drafts, int kk)
{
    if (ns->script == NULL || s->sampler.params.temperature > 0.0f)
        return;
    for (int k = 0; k < kk && g + (uint32_t)k < (uint32_t)ns->n_script; k++)
        drafts[k] = ns->script[g + (uint32_t)k];
}

/* ---- the module's routed experts on other nodes of the stage ---- */

#define MTP_WAIT_S 60 /* how long the module's MoE step waits for its COMBINEs */

static int mtp_begin(void *ctx, int64_t n, dsn_ffn_step_t **step, dsn_ffn_remote_t *remote)
{
    struct dsn_node_spec *ns = ctx;
    dsn_compute_t *c = ns->c;
    ns->mb = dsn_mb_get(c, 1, n);
    if (ns->mb == NULL)
        return -1;
    ns->mb->layer = ns->layer;
    ns->dc = (dsn_dispatch_ctx_t){c, ns->mb};
    *step = &ns->mb->ffn;
    *remote = (dsn_ffn_remote_t){dsn_dispatch_send, &ns->dc};
    return 0;
}

/*
 * Until every COMBINE of the module's step is in: the compute thread serves other nodes'
 * DISPATCHes (they may be waiting on this node's experts, the module's included), and keeps every
 * other task for after, in order, ahead of the queue. A restart, an orphaning or the stop ends
 * the wait (-1).
 */
static int mtp_wait(void *ctx)
{
    struct dsn_node_spec *ns = ctx;
    dsn_compute_t *c = ns->c;
    dsn_mb_t *mb = ns->mb;
    dsi_list_t later;
    dsi_list_init(&later);
    int rc = 0;
    DSI_DEBUG("MTP layer: %lld tokens wait for the experts of %d other node%s", (long long)mb->n,
              mb->pending, mb->pending == 1 ? "" : "s");
    int64_t since = dsi_now_ns();
    while (mb->pending > 0) {
        dsn_task_t *t = dsn_queue_pop_within(c->queue, 1000);
        if (t == NULL && dsi_now_ns() - since > (int64_t)MTP_WAIT_S * 1000000000) {
            DSI_ERROR("MTP layer: no answer from %d node%s holding its experts within %d s (every "
                      "node of the last stage must run it: --speculative-tokens > 0)",
                      mb->pending, mb->pending == 1 ? "" : "s", MTP_WAIT_S);
            rc = -1;
            break;
        }
        if (t == NULL)
            continue;
        int wire = t->type == DSN_TASK_WIRE && t->gen >= c->gen;
        if (wire && t->hdr.type == DST_WIRE_DISPATCH) {
            dsn_dispatch_serve(c, t);
            dsn_queue_task_put(c->queue, t);
            continue;
        }
        if (wire && t->hdr.type == DST_WIRE_COMBINE && t->hdr.step == mb->id &&
            t->hdr.layer == (uint32_t)ns->layer) {
            dsn_dispatch_combine_into(c, mb, t);
            dsn_queue_task_put(c->queue, t);
            continue;
        }
        dsi_list_push_back(&later, &t->link);
        if (t->type == DSN_TASK_STOP || t->type == DSN_TASK_RELOAD || t->type == DSN_TASK_ORPHAN) {
            rc = -1;
            break;
        }
    }
    while (!dsi_list_is_empty(&later)) {
        dsi_list_t *e = later.prev;
        dsi_list_remove(e);
        dsn_queue_push_first(c->queue, dsi_container_of(e, dsn_task_t, link));
    }
    return rc;
}

static void mtp_end(void *ctx)
{
    struct dsn_node_spec *ns = ctx;
    dsn_mb_put(ns->c, ns->mb);
    ns->mb = NULL;
}

int dsn_stage_spec_layer(const dsn_compute_t *c)
{
    const struct dsn_node_spec *ns = c->spec != NULL ? c->spec : c->mtp_only;
    return ns != NULL && ns->moe ? ns->layer : -1;
}

dsn_engine_t *dsn_stage_spec_engine(dsn_compute_t *c)
{
    struct dsn_node_spec *ns = c->spec != NULL ? c->spec : c->mtp_only;
    return ns != NULL && ns->moe ? dsn_mtp_engine(ns->mtp) : NULL;
}

uint32_t dsn_stage_spec_dest(const dsn_compute_t *c, int e, int64_t i)
{
    const struct dsn_node_spec *ns = c->spec;
    if (ns->mtp_offsets == NULL || dsn_moe_holds(dsn_mtp_engine(ns->mtp), ns->layer, e))
        return c->node_id;
    uint32_t a = ns->mtp_offsets[e], b = ns->mtp_offsets[e + 1];
    return ns->mtp_holders[a + (uint32_t)(i % (int64_t)(b - a))];
}

/*
 * The module's experts that plan p gives this node ([E], calloc'ed) with their holders copied
 * into ns, or NULL with *st DSI_OK when p does not place them (all here).
 */
static uint8_t *mtp_mask(struct dsn_node_spec *ns, const dsn_compute_t *c, const dst_plan_t *p,
                         dsi_status_t *st)
{
    uint32_t E = p->n_experts;
    *st = DSI_OK;
    if (p->mtp_offsets == NULL || E == 0 || !ns->moe)
        return NULL;
    uint32_t n_holders = p->mtp_offsets[E];
    uint8_t *mask = calloc(E, 1);
    ns->mtp_offsets = malloc((E + 1) * sizeof(uint32_t));
    ns->mtp_holders = malloc(n_holders * sizeof(uint32_t));
    if (mask == NULL || ns->mtp_offsets == NULL || ns->mtp_holders == NULL) {
        free(mask);
        *st = DSI_ERR_NOMEM;
        return NULL;
    }
    memcpy(ns->mtp_offsets, p->mtp_offsets, (E + 1) * sizeof(uint32_t));
    memcpy(ns->mtp_holders, p->mtp_holders, n_holders * sizeof(uint32_t));
    for (uint32_t e = 0; e < E; e++)
        mask[e] = (uint8_t)dst_plan_holds_mtp(p, e, c->node_id);
    return mask;
}

/* Whether plan p gives node id some of the MTP layer's experts. */
static int plan_gives_mtp(const dst_plan_t *p, uint32_t id)
{
    for (uint32_t e = 0; p->mtp_offsets != NULL && e < p->n_experts; e++) {
        if (dst_plan_holds_mtp(p, e, id))
            return 1;
    }
    return 0;
}

dsi_status_t dsn_stage_spec_load(dsn_compute_t *c, const dst_plan_t *p)
{
    int k = c->opts->speculative_tokens;
    if (!dsn_mtp_present(c->ckpt))
        return DSI_OK;
    /* Speculation off here, but the plan gives this node experts of the layer (the coordinator
     * runs with it): they are loaded all the same, for the nodes that draft. */
    int serve_only = k <= 0;
    if (serve_only && (!c->is_last || !plan_gives_mtp(p, c->node_id)))
        return DSI_OK;
    if (!c->is_last) {
        DSI_INFO("speculative decoding: the last of the plan's %d stages drafts with the MTP "
                 "layer; this node (stage %d) runs the drafts and cuts the rejected ones",
                 c->n_stages, c->stage);
        return DSI_OK;
    }
    struct dsn_node_spec *ns = calloc(1, sizeof(*ns));
    if (ns == NULL)
        return DSI_ERR_NOMEM;
    const dsn_config_t *cfg = &c->weights->cfg;
    ns->c = c;
    ns->k = k;
    ns->pp = !c->is_first;
    ns->layer = cfg->num_hidden_layers;
    dsn_config_t with_mtp = *cfg;
    with_mtp.num_hidden_layers = ns->layer + 1;
    ns->moe = dsn_config_is_moe_layer(&with_mtp, ns->layer);
    if (!serve_only && ns->pp && read_script(ns) != 0) {
        free(ns);
        return DSI_ERR_INVALID_ARG;
    }
    /* The module's routed experts the plan gives this node (all when it does not place them). */
    dsi_status_t st;
    uint8_t *mask = mtp_mask(ns, c, p, &st);
    if (st == DSI_OK)
        st = dsn_mtp_weights_load(c->ckpt, c->opts->weight_format, c->opts->threads, mask, &ns->w);
    free(mask);
    if (st == DSI_OK)
        st = dsn_mtp_create(ns->w, c->engine, &ns->mtp);
    if (st == DSI_OK && !serve_only)
        st = dsn_spec_create(c->engine, ns->mtp, k, &ns->spec);
    if (st == DSI_OK) /* the module's cache joins the prefix cache as the main one does */
        dsn_kvpool_set_prefix_cache(dsn_engine_kvpool(dsn_mtp_engine(ns->mtp)), c->prefix);
    if (serve_only)
        c->mtp_only = ns;
    else
        c->spec = ns;
    if (st != DSI_OK) {
        DSI_ERROR("cannot load the MTP layer for speculative decoding");
        dsn_stage_spec_release(c);
        return st;
    }
    for (int e = 0; ns->moe && e < cfg->n_routed_experts; e++)
        ns->held += dsn_moe_holds(dsn_mtp_engine(ns->mtp), ns->layer, e);
    if (serve_only) {
        DSI_WARN("speculative decoding is off on this node (--speculative-tokens 0), but the plan "
                 "gives it %d of the MTP layer's routed experts: loaded to serve the last stage's "
                 "other nodes",
                 ns->held);
        return DSI_OK;
    }
    if (ns->mtp_offsets != NULL) {
        dsn_mtp_remote_t r = {mtp_begin, mtp_wait, mtp_end, ns};
        dsn_mtp_set_remote(ns->mtp, &r);
    }
    DSI_INFO("speculative decoding: MTP layer loaded, %d draft token%s per step; %d of its %d "
             "routed experts here%s",
             k, k == 1 ? "" : "s", ns->held, ns->moe ? cfg->n_routed_experts : 0,
             ns->moe && ns->held < cfg->n_routed_experts ? ", the others on the stage's other nodes"
                                                         : "");
    return DSI_OK;
}

static void node_spec_free(struct dsn_node_spec *ns)
{
    if (ns == NULL)
        return;
    dsn_spec_destroy(ns->spec);
    dsn_mtp_destroy(ns->mtp);
    dsn_mtp_weights_destroy(ns->w);
    free(ns->mtp_offsets);
    free(ns->mtp_holders);
    free(ns->script);
    free(ns->seqs);
    free(ns->owner);
    free(ns->drafts);
    free(ns->out);
    free(ns->n_out);
    free(ns->fed);
    free(ns->go);
    free(ns->tokens);
    free(ns->rows);
    free(ns->hidden);
    free(ns->logits);
    free(ns->out_logits);
    free(ns);
}

void dsn_stage_spec_release(dsn_compute_t *c)
{
    node_spec_free(c->spec);
    node_spec_free(c->mtp_only);
    c->spec = c->mtp_only = NULL;
}

int dsn_stage_spec_seq_init(dsn_compute_t *c, dsn_seq_t *s)
{
    /* (the caller leaves out sequences with a grammar) */
    if (c->spec == NULL)
        return 0;
    struct dsn_seq_spec *x = calloc(1, sizeof(*x));
    if (x == NULL ||
        dsn_mtp_kvcache_create(c->spec->mtp, s->kv->max_tokens, &x->mtp_kv) != DSI_OK) {
        free(x);
        return -1;
    }
    dsn_spec_seq_init(&x->q, s->kv, x->mtp_kv, &s->sampler);
    x->q.n_generated = s->n_prior;
    s->spec = x;
    /* Several stages: its drafts are verified when they come back, with whichever others. */
    if (c->spec->pp && s->sampler.params.temperature > 0.0f &&
        dsn_spec_seq_own_dists(c->spec->spec, &x->q) != DSI_OK) {
        dsn_stage_spec_seq_free(s);
        return -1;
    }
    return 0;
}

void dsn_stage_spec_seq_free(dsn_seq_t *s)
{
    if (s->spec == NULL)
        return;
    dsn_spec_seq_cleanup(&s->spec->q);
    dsn_kvcache_destroy(s->spec->mtp_kv);
    free(s->spec);
    s->spec = NULL;
}

void dsn_stage_spec_fork(dsn_compute_t *c, dsn_seq_t *s, const dsn_seq_t *p)
{
    if (s->spec == NULL)
        return;
    /* The module's entry at position i pairs the main model's state at i with the token at
     * i + 1: the first fork_len entries are the shared prompt's when the token at fork_len is
     * the same in both prompts. */
    int64_t n = s->fork_len;
    int same = p->spec != NULL && p->spec->mtp_kv->length >= n && p->prompt != NULL &&
               s->prompt != NULL && n < p->n_prompt && n < s->n_prompt &&
               p->prompt[n] == s->prompt[n];
    if (same && dsn_kvcache_copy_prefix(s->spec->mtp_kv, p->spec->mtp_kv, n) == DSI_OK) {
        s->spec->q.pend_pos = n;
        return;
    }
    DSI_DEBUG("sequence %llu: decodes without speculation (its MTP cache cannot be shared)",
              (unsigned long long)s->id);
    dsn_stage_spec_seq_free(s);
    (void)c;
}

int64_t dsn_stage_spec_prefix(dsn_compute_t *c, dsn_seq_t *s, int64_t n)
{
    (void)c;
    if (s->spec == NULL || n <= 0)
        return n;
    if (s->prompt == NULL)
        return 0;
    return dsn_spec_attach_module(&s->spec->q, s->prompt, s->n_prompt, n);
}

void dsn_stage_spec_publish(const dsn_compute_t *c, dsn_seq_t *s)
{
    /* (after the judgement of the micro-batch: the main cache holds no drafts) */
    if (s->spec != NULL && c->prefix)
        dsn_spec_publish(&s->spec->q);
}

void dsn_stage_spec_drop(dsn_seq_t *s)
{
    if (s->spec == NULL)
        return;
    DSI_DEBUG("sequence %llu: decodes without speculation (its MTP cache lacks the prompt "
              "prefix the prefix cache gave)",
              (unsigned long long)s->id);
    dsn_stage_spec_seq_free(s);
}

int dsn_stage_spec_decode_tokens(const dsn_compute_t *c, const dsn_seq_t *s)
{
    if (c->spec == NULL || s->spec == NULL)
        return 1 + s->n_drafts; /* (TOKENS.spec's drafts on a plan of several stages) */
    int64_t room = s->kv->max_tokens - s->kv->length; /* dsn_spec_step_k's bound */
    int64_t n = c->spec->k + 1;
    return (int)(room < n ? (room > 1 ? room : 1) : n);
}

int dsn_stage_spec_can_decode(const dsn_compute_t *c)
{
    return c->spec == NULL || !c->spec->busy;
}

static int grow(void **p, size_t bytes)
{
    void *q = realloc(*p, bytes > 0 ? bytes : 1);
    if (q == NULL)
        return -1;
    *p = q;
    return 0;
}

static int seqs_room(struct dsn_node_spec *ns, int n)
{
    if (n <= ns->cap_seqs)
        return 0;
    size_t m = (size_t)n, W = (size_t)ns->k + 1;
    if (grow((void **)&ns->seqs, m * sizeof(*ns->seqs)) ||
        grow((void **)&ns->owner, m * sizeof(*ns->owner)) ||
        grow((void **)&ns->drafts, m * (W - 1) * sizeof(int32_t)) ||
        grow((void **)&ns->out, m * W * sizeof(int32_t)) ||
        grow((void **)&ns->n_out, m * sizeof(int)) || grow((void **)&ns->fed, m * sizeof(int)) ||
        grow((void **)&ns->go, m * sizeof(int)) ||
        grow((void **)&ns->tokens, m * W * sizeof(int32_t)))
        return -1;
    ns->cap_seqs = n;
    return 0;
}

static int rows_room(dsn_compute_t *c, int64_t n)
{
    struct dsn_node_spec *ns = c->spec;
    if (n <= ns->cap_rows)
        return 0;
    size_t m = (size_t)n, H = (size_t)c->weights->cfg.hidden_size,
           V = (size_t)c->weights->cfg.vocab_size;
    if (grow((void **)&ns->rows, m * sizeof(int64_t)) ||
        grow((void **)&ns->hidden, m * H * sizeof(float)) ||
        grow((void **)&ns->logits, m * V * sizeof(float)))
        return -1;
    ns->cap_rows = n;
    return 0;
}

/* The sequence failed: an error to the coordinator, never scheduled again. */
static void seq_failed(dsn_compute_t *c, dsn_seq_t *s)
{
    dsn_stage_emit_tokens(c, s->id, 0, 0, DST_FINISH_ERROR);
    s->has_next = 0;
    s->done = 1;
}

int dsn_stage_spec_draft(dsn_compute_t *c, dsn_seq_t **pick, int *take, int n_seqs, int *spec)
{
    struct dsn_node_spec *ns = c->spec;
    int n_dec = 0;
    *spec = 0;
    for (int i = 0; i < n_seqs; i++)
        n_dec += pick[i]->fed == pick[i]->n_prompt && pick[i]->spec != NULL;
    if (n_dec == 0)
        return n_seqs;
    dsi_status_t st = seqs_room(ns, n_dec) == 0 ? DSI_OK : DSI_ERR_NOMEM;
    int d = 0;
    for (int i = 0; i < n_seqs && st == DSI_OK; i++) {
        if (pick[i]->fed == pick[i]->n_prompt && pick[i]->spec != NULL)
            ns->seqs[d++] = &pick[i]->spec->q;
    }
    int B = 0;
    if (st == DSI_OK)
        st = dsn_spec_draft(ns->spec, ns->seqs, n_dec, ns->drafts);
    if (st == DSI_OK)
        B = dsn_spec_verify_tokens(ns->spec, ns->seqs, n_dec, ns->drafts, ns->tokens);
    /* The decodes now feed B tokens each; a failed draft fails its sequences. */
    int kept = 0;
    d = 0;
    for (int i = 0; i < n_seqs; i++) {
        dsn_seq_t *s = pick[i];
        int t = take[i];
        if (s->fed == s->n_prompt && s->spec != NULL) {
            if (st != DSI_OK) {
                DSI_ERROR("sequence %llu: drafting with the MTP layer failed",
                          (unsigned long long)s->id);
                seq_failed(c, s);
                continue;
            }
            memcpy(s->spec->feed, ns->tokens + d * B, (size_t)B * sizeof(int32_t));
            d++;
            t = B;
        }
        pick[kept] = s;
        take[kept++] = t;
    }
    if (st == DSI_OK) {
        *spec = 1;
        ns->busy = 1;
        ns->start_ns = dsi_now_ns();
    }
    return kept;
}

void dsn_stage_spec_feed(const dsn_seq_t *s, int32_t *tokens, int take)
{
    memcpy(tokens, s->spec->feed, (size_t)take * sizeof(int32_t));
}

void dsn_stage_spec_abort(dsn_compute_t *c)
{
    if (c->spec != NULL)
        c->spec->busy = 0;
}

/* The stats since the last report, for the next HEARTBEAT. */
static void report(dsn_compute_t *c)
{
    struct dsn_node_spec *ns = c->spec;
    const dsn_spec_stats_t *now = dsn_spec_stats(ns->spec), *was = &ns->reported;
    dst_msg_spec_t d = {ns->seq_steps - ns->reported_seq_steps,
                        now->emitted - was->emitted,
                        (uint64_t)(now->draft_ns - was->draft_ns),
                        (uint64_t)(now->verify_ns - was->verify_ns),
                        (uint32_t)ns->k,
                        {0},
                        {0}};
    for (int i = 0; i < ns->k && i < DST_MSG_SPEC_MAX_K; i++) {
        d.drafted[i] = (uint32_t)(now->drafted[i] - was->drafted[i]);
        d.accepted[i] = (uint32_t)(now->accepted[i] - was->accepted[i]);
    }
    ns->reported = *now;
    ns->reported_seq_steps = ns->seq_steps;
    dsn_queue_spec_add(c->queue, &d);
}

/* hidden[i] = model.norm(h[rows[i]]) and logits[i] = lm_head of it, for n rows. */
static void states(dsn_compute_t *c, const float *h, const int64_t *rows, int64_t n, float *hidden,
                   float *logits)
{
    const dsn_config_t *cfg = &c->weights->cfg;
    int64_t H = cfg->hidden_size;
    const dsk_ops_t *ops = dsn_engine_ops(c->engine);
    if (hidden != NULL) {
        for (int64_t i = 0; i < n; i++)
            ops->rmsnorm(h + rows[i] * H, c->weights->final_norm, H, cfg->rms_norm_eps,
                         hidden + i * H);
    }
    for (int64_t r0 = 0; r0 < n; r0 += 64) {
        int64_t m = n - r0 < 64 ? n - r0 : 64;
        dsn_engine_head(c->engine, h, rows + r0, m, logits + r0 * cfg->vocab_size);
    }
}

/* A prefill chunk of s (n rows from row t0 of the micro-batch, at position pos) to the module;
 * at the prompt's end, the first token, sampled from the raw logits left in ns->logits (row 0).
 * -1 before the prompt's end or when s failed (reported). */
static int32_t finish_prefill(dsn_compute_t *c, dsn_mb_t *mb, dsn_seq_t *s, int64_t t0, int64_t pos,
                              int n)
{
    struct dsn_node_spec *ns = c->spec;
    int64_t V = c->weights->cfg.vocab_size;
    if (rows_room(c, n) != 0) {
        DSI_ERROR("sequence %llu: out of memory for speculative decoding's hidden states",
                  (unsigned long long)s->id);
        seq_failed(c, s);
        return -1;
    }
    for (int i = 0; i < n; i++)
        ns->rows[i] = t0 + i;
    const dsn_config_t *cfg = &c->weights->cfg;
    const dsk_ops_t *ops = dsn_engine_ops(c->engine);
    int64_t H = cfg->hidden_size;
    for (int i = 0; i < n; i++)
        ops->rmsnorm(mb->h + (t0 + i) * H, c->weights->final_norm, H, cfg->rms_norm_eps,
                     ns->hidden + i * H);
    /* The prompt's tokens: those fed here, or (a later stage) those of SUBMIT. */
    const int32_t *tokens = c->is_first ? mb->tokens + t0 : s->prompt + pos;
    if (dsn_spec_prefilled(ns->spec, &s->spec->q, pos, tokens, n, ns->hidden) != DSI_OK) {
        seq_failed(c, s);
        return -1;
    }
    if (pos + n < (int64_t)s->n_prompt)
        return -1;
    int64_t last = t0 + n - 1;
    states(c, mb->h, &last, 1, NULL, ns->logits);
    if (c->opts->logits_dir != NULL)
        dsn_stage_dump_logits(c->opts->logits_dir, s->id, ns->logits, V);
    /* The row is processed in a copy: ns->logits stays raw for logprobs. */
    int32_t tok = dsn_spec_first(ns->spec, &s->spec->q, ns->logits);
    if (tok < 0) {
        DSI_ERROR("sequence %llu: the logits hold NaN or infinite values (broken weights or "
                  "scales in the checkpoint?): the request ends with an error",
                  (unsigned long long)s->id);
        seq_failed(c, s);
        return -1;
    }
    return tok;
}

static void finish_stages(dsn_compute_t *c, dsn_mb_t *mb);

void dsn_stage_spec_finish(dsn_compute_t *c, dsn_mb_t *mb)
{
    if (c->spec->pp) {
        finish_stages(c, mb);
        return;
    }
    struct dsn_node_spec *ns = c->spec;
    int64_t V = c->weights->cfg.vocab_size;
    int n_dec = 0, B = 0, raw_rows = c->opts->logits_dir != NULL;
    int64_t t = 0;
    /* Prefill chunks first; the decodes are gathered in the order they were drafted. */
    for (int i = 0; i < mb->n_seqs; i++) {
        dsn_seq_t *s = mb->seq[i];
        const dsn_seq_batch_t *b = &mb->batch[i];
        if (s->spec == NULL) {
            /* sampled one token at a time (sample_and_report) */
        } else if (b->pos < (int64_t)s->n_prompt) {
            int32_t tok = finish_prefill(c, mb, s, t, b->pos, (int)b->n_tokens);
            if (tok >= 0)
                dsn_stage_report(c, s, tok, s->kv->length, ns->logits, NULL);
        } else if (mb->spec) {
            ns->owner[n_dec] = s;
            ns->seqs[n_dec] = &s->spec->q;
            B = (int)b->n_tokens;
            raw_rows |= s->logprobs;
            n_dec++;
        }
        t += b->n_tokens;
    }
    if (!mb->spec)
        return;
    ns->busy = 0;
    dsn_spec_count_verify(ns->spec, dsi_now_ns() - ns->start_ns);
    int64_t rows = (int64_t)n_dec * B, W = ns->k + 1;
    dsi_status_t st = rows_room(c, rows) == 0 ? DSI_OK : DSI_ERR_NOMEM;
    if (st == DSI_OK && raw_rows && n_dec * W > ns->cap_out) {
        st = grow((void **)&ns->out_logits, (size_t)(n_dec * W * V) * sizeof(float)) == 0
                 ? DSI_OK
                 : DSI_ERR_NOMEM;
        if (st == DSI_OK)
            ns->cap_out = n_dec * W;
    }
    if (st == DSI_OK) {
        int64_t r = 0;
        t = 0;
        for (int i = 0; i < mb->n_seqs; i++) {
            const dsn_seq_batch_t *b = &mb->batch[i];
            int drafted = mb->seq[i]->spec != NULL && b->pos >= (int64_t)mb->seq[i]->n_prompt;
            for (int j = 0; drafted && j < b->n_tokens; j++)
                ns->rows[r++] = t + j;
            t += b->n_tokens;
        }
        states(c, mb->h, ns->rows, rows, ns->hidden, ns->logits);
        st = dsn_spec_judge(ns->spec, ns->seqs, n_dec, ns->drafts, B, ns->logits, ns->hidden,
                            ns->out, ns->n_out, raw_rows ? ns->out_logits : NULL);
    }
    if (st == DSI_OK) {
        ns->seq_steps += (uint64_t)n_dec;
        report(c);
    }
    for (int i = 0; i < n_dec; i++) {
        dsn_seq_t *s = ns->owner[i];
        if (st != DSI_OK) {
            DSI_ERROR("sequence %llu: verifying the drafts failed: the request ends with an "
                      "error",
                      (unsigned long long)s->id);
            seq_failed(c, s);
            continue;
        }
        /* Token j was sampled with j + 1 of the verified positions in the cache. */
        int64_t L = s->kv->length - ns->n_out[i];
        for (int j = 0; j < ns->n_out[i]; j++) {
            int64_t k = (int64_t)i * W + j;
            const float *raw = raw_rows ? ns->out_logits + k * V : NULL;
            if (c->opts->logits_dir != NULL && raw != NULL)
                dsn_stage_dump_logits(c->opts->logits_dir, s->id, raw, V);
            if (dsn_stage_report(c, s, ns->out[k], L + j + 1, raw, NULL) != DST_FINISH_NONE)
                break;
        }
    }
}

/* Room for n rows of raw logits (logprobs, the logits-dir option). */
static int out_room(struct dsn_node_spec *ns, int64_t n, int64_t V)
{
    if (n <= ns->cap_out)
        return 0;
    if (grow((void **)&ns->out_logits, (size_t)(n * V) * sizeof(float)) != 0)
        return -1;
    ns->cap_out = n;
    return 0;
}

/* Whether s goes on after emitting out[0..n) (the first sampled with `length` positions in its
 * cache, each next one with one more): dsn_stage_report's finish reasons, without reporting. */
static int goes_on(const dsn_compute_t *c, const dsn_seq_t *s, const int32_t *out, int n,
                   int64_t length)
{
    for (int j = 0; j < n; j++) {
        if (dsn_stage_finish_of(c, s, out[j], s->generated + (uint32_t)j + 1, length + j) !=
            DST_FINISH_NONE)
            return 0;
    }
    return 1;
}

/*
 * The last of several stages: a micro-batch (an ACTIVATION) left the layers. Prefill chunks go
 * to the module and a prompt's end samples the first token; a decode's positions (its last token
 * and the drafts this node made for it) are judged on their own, since each sequence was drafted
 * when its previous tokens left, with its own number of drafts. Then the sequences that go on are
 * drafted together, and each one's tokens are reported, the last with TOKENS.spec: the positions
 * rejected (every stage cuts them) and the drafts stage 0 feeds next.
 */
static void finish_stages(dsn_compute_t *c, dsn_mb_t *mb)
{
    struct dsn_node_spec *ns = c->spec;
    int64_t V = c->weights->cfg.vocab_size;
    int K = ns->k, W = K + 1, n = 0, judged = 0, raw_rows = c->opts->logits_dir != NULL;
    int64_t t = 0, oldest = INT64_MAX;
    for (int i = 0; i < mb->n_seqs; i++)
        raw_rows |= mb->seq[i]->spec != NULL && mb->seq[i]->logprobs;
    if (seqs_room(ns, mb->n_seqs) != 0 ||
        (raw_rows && out_room(ns, (int64_t)mb->n_seqs * W, V) != 0)) {
        for (int i = 0; i < mb->n_seqs; i++) {
            if (mb->seq[i]->spec != NULL) {
                DSI_ERROR("sequence %llu: out of memory for speculative decoding",
                          (unsigned long long)mb->seq[i]->id);
                seq_failed(c, mb->seq[i]);
            }
        }
        return;
    }
    for (int i = 0; i < mb->n_seqs; t += mb->batch[i].n_tokens, i++) {
        dsn_seq_t *s = mb->seq[i];
        const dsn_seq_batch_t *b = &mb->batch[i];
        if (s->spec == NULL || s->done)
            continue; /* sampled one token at a time (sample_and_report), or cancelled */
        float *raw = raw_rows ? ns->out_logits + (int64_t)n * W * V : NULL;
        if (b->pos < (int64_t)s->n_prompt) {
            int32_t tok = finish_prefill(c, mb, s, t, b->pos, (int)b->n_tokens);
            if (tok < 0)
                continue;
            if (raw != NULL)
                memcpy(raw, ns->logits, (size_t)V * sizeof(float));
            ns->out[n * W] = tok;
            ns->n_out[n] = 1;
            ns->fed[n] = 0;
            ns->owner[n++] = s;
            continue;
        }
        struct dsn_seq_spec *x = s->spec;
        int B = (int)b->n_tokens;
        if (B != x->n_feed || rows_room(c, B) != 0) {
            DSI_ERROR("sequence %llu: %d positions to verify, %d drafted here (or out of "
                      "memory): the request ends with an error",
                      (unsigned long long)s->id, B, x->n_feed);
            seq_failed(c, s);
            continue;
        }
        for (int j = 0; j < B; j++)
            ns->rows[j] = t + j;
        states(c, mb->h, ns->rows, B, ns->hidden, ns->logits);
        dsn_spec_seq_t *q = &x->q;
        if (dsn_spec_judge(ns->spec, &q, 1, x->feed + 1, B, ns->logits, ns->hidden, ns->out + n * W,
                           ns->n_out + n, raw) != DSI_OK) {
            DSI_ERROR("sequence %llu: verifying the drafts failed: the request ends with an "
                      "error",
                      (unsigned long long)s->id);
            seq_failed(c, s);
            continue;
        }
        DSI_DEBUG("sequence %llu: %d of %d drafts accepted, %d positions cut",
                  (unsigned long long)s->id, ns->n_out[n] - 1, B - 1, B - ns->n_out[n]);
        x->n_feed = 0;
        oldest = x->drafted_ns < oldest ? x->drafted_ns : oldest;
        judged++;
        ns->fed[n] = B;
        ns->owner[n++] = s;
    }
    if (judged > 0) {
        dsn_spec_count_verify(ns->spec, dsi_now_ns() - oldest);
        ns->seq_steps += (uint64_t)judged;
    }
    /* The next drafts of the sequences that go on, together. */
    int d = 0, kk = 0;
    for (int i = 0; i < n; i++) {
        dsn_seq_t *s = ns->owner[i];
        int64_t L = s->kv->length - ns->n_out[i];
        ns->go[i] = -1;
        if (goes_on(c, s, ns->out + i * W, ns->n_out[i], L + 1)) {
            ns->go[i] = d;
            ns->seqs[d++] = &s->spec->q;
        }
    }
    dsi_status_t st = DSI_OK;
    if (d > 0) {
        st = dsn_spec_draft(ns->spec, ns->seqs, d, ns->drafts);
        kk = dsn_spec_step_k(ns->spec, ns->seqs, d);
    }
    int64_t now = dsi_now_ns();
    for (int i = 0; i < n; i++) {
        dsn_seq_t *s = ns->owner[i];
        int g = ns->go[i];
        if (g >= 0 && st != DSI_OK) {
            DSI_ERROR("sequence %llu: drafting with the MTP layer failed",
                      (unsigned long long)s->id);
            seq_failed(c, s);
            continue;
        }
        dsn_spec_next_t next = {
            (uint8_t)(ns->fed[i] > 0 ? ns->fed[i] - ns->n_out[i] : 0), (uint8_t)kk, {0}};
        if (g >= 0) {
            struct dsn_seq_spec *x = s->spec;
            x->feed[0] = x->q.last;
            memcpy(x->feed + 1, ns->drafts + (int64_t)g * K, (size_t)kk * sizeof(int32_t));
            script_drafts(ns, s, s->generated + (uint32_t)ns->n_out[i], x->feed + 1, kk);
            memcpy(next.drafts, x->feed + 1, (size_t)kk * sizeof(int32_t));
            x->n_feed = kk + 1;
            x->drafted_ns = now;
        }
        int64_t L = s->kv->length - ns->n_out[i];
        for (int j = 0; j < ns->n_out[i]; j++) {
            const float *raw = raw_rows ? ns->out_logits + ((int64_t)i * W + j) * V : NULL;
            if (c->opts->logits_dir != NULL && ns->fed[i] > 0)
                dsn_stage_dump_logits(c->opts->logits_dir, s->id, raw, V);
            if (dsn_stage_report(c, s, ns->out[i * W + j], L + j + 1, raw,
                                 j == ns->n_out[i] - 1 ? &next : NULL) != DST_FINISH_NONE)
                break;
        }
    }
    if (n > 0)
        report(c);
}
