/* dsc_cluster_seq.c - the coordinator's sequences: submit, deliver, cancel, re-submit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_log.h"

seq_t *dsc_seq_by_wire(dsc_cluster_t *cl, uint64_t wire_id)
{
    dsi_list_for_each(s, &cl->seqs, seq_t, link) {
        if (s->submitted && s->wire_id == wire_id)
            return s;
    }
    return NULL;
}

/* SUBMIT or CANCEL to each node of the route once. A failure that re-planning does not repair
 * (the message is refused by the encoder, a node's send queue is full) is returned; a lost
 * connection is not: the node's loss re-plans and re-submits. */
static dsi_status_t send_nodes(dsc_cluster_t *cl, const uint32_t *route, uint32_t n,
                               const dst_msg_t *m)
{
    dsi_status_t first = DSI_OK;
    for (uint32_t i = 0; i < n; i++) {
        int dup = 0;
        for (uint32_t j = 0; j < i; j++)
            dup |= route[j] == route[i];
        if (dup)
            continue;
        dsi_status_t st = dsc_cluster_send_node(cl, route[i], m);
        if (st != DSI_OK && st != DSI_ERR_CONNECTION && first == DSI_OK)
            first = st;
    }
    return first;
}

static dsi_status_t send_route(dsc_cluster_t *cl, const seq_t *s, const dst_msg_t *m)
{
    return send_nodes(cl, s->route, s->n_route, m);
}

void dsc_seq_withdraw(dsc_cluster_t *cl, seq_t *s)
{
    s->kv_pending = 0; /* a move into this submission is moot */
    s->move_planned = 0;
    if (!s->submitted)
        return;
    dst_msg_t m = {.type = DST_MSG_CANCEL};
    m.cancel.seq_id = s->wire_id;
    send_route(cl, s, &m);
    s->submitted = 0;
}

/* The SUBMIT of s as it goes to its route now (after a re-plan the tokens produced so far are
 * prefilled with the prompt). */
static void submit_msg(const seq_t *s, dst_msg_t *m)
{
    memset(m, 0, sizeof(*m));
    m->type = DST_MSG_SUBMIT;
    m->submit = s->req;
    m->submit.seq_id = s->wire_id;
    m->submit.tokens = s->tokens;
    m->submit.n_tokens = s->n_prompt + s->n_generated;
    m->submit.max_tokens = s->req.max_tokens - s->n_generated;
    m->submit.n_generated = s->n_generated;
    m->submit.route = (uint32_t *)s->route;
    m->submit.n_route = s->n_route;
}

/* The sequence whose prompt s shares: submitted in this epoch with the same first n_prompt - 1
 * tokens (a re-plan re-submits it first, in arrival order), or NULL. */
static const seq_t *prefix_parent(dsc_cluster_t *cl, const seq_t *s)
{
    if (s->share_prefix_of == 0 || s->n_prompt < 2)
        return NULL;
    dsi_list_for_each(p, &cl->seqs, seq_t, link) {
        if (p->handle != s->share_prefix_of)
            continue;
        if (!p->submitted || p->epoch != cl->plan.epoch || p->n_prompt < s->n_prompt - 1 ||
            memcmp(p->tokens, s->tokens, (s->n_prompt - 1) * sizeof(int32_t)) != 0)
            return NULL;
        return p;
    }
    return NULL;
}

/* Whether s runs on lane l of the current plan. */
static int on_lane(const dsc_cluster_t *cl, const seq_t *s, uint32_t l)
{
    if (!s->submitted || s->epoch != cl->plan.epoch || s->n_route != cl->plan.n_stages)
        return 0;
    for (uint32_t st = 0; st < s->n_route; st++)
        if (s->route[st] != cl->lane_nodes[st * cl->n_lanes + l])
            return 0;
    return 1;
}

/* The lane for a new prompt: the one sent the longest prefix of it (its nodes likely hold those
 * KV blocks), else the least loaded (sequences running on it), in rotation. */
static uint32_t pick_lane(dsc_cluster_t *cl, const seq_t *s)
{
    uint32_t start = cl->next_lane++, n = cl->n_lanes;
    if (n <= 1)
        return 0;
    uint64_t load[64];
    if (n > 64)
        return start % n;
    memset(load, 0, sizeof(load));
    dsi_list_for_each(p, &cl->seqs, seq_t, link) {
        for (uint32_t l = 0; l < n; l++) {
            if (on_lane(cl, p, l)) {
                load[l]++;
                break;
            }
        }
    }
    uint32_t matched = 0;
    uint32_t lane =
        dsc_prefix_route_pick(cl->opts.prefix_routing ? cl->prefix_route : NULL, s->tokens,
                              s->n_prompt + s->n_generated, n, load, start, &matched);
    if (matched > 0)
        DSI_DEBUG("request %llu: lane %u was sent %u tokens of its prefix",
                  (unsigned long long)s->handle, lane, matched);
    return lane;
}

uint32_t dsc_seq_next_lane(dsc_cluster_t *cl, uint32_t *route)
{
    uint32_t lane = cl->next_lane++ % cl->n_lanes;
    for (uint32_t st = 0; st < cl->plan.n_stages; st++)
        route[st] = cl->lane_nodes[st * cl->n_lanes + lane];
    return cl->plan.n_stages;
}

/* Sends s on a lane of the current plan (its prefix parent's, when it shares one); on failure
 * s stays (submitted, so that withdrawing it cancels it where it did arrive). */
static dsi_status_t submit_send(dsc_cluster_t *cl, seq_t *s)
{
    const seq_t *parent = prefix_parent(cl, s);
    if (parent != NULL) {
        s->n_route = parent->n_route;
        memcpy(s->route, parent->route, parent->n_route * sizeof(uint32_t));
    } else {
        uint32_t lane = pick_lane(cl, s);
        s->n_route = cl->plan.n_stages;
        for (uint32_t st = 0; st < s->n_route; st++)
            s->route[st] = cl->lane_nodes[st * cl->n_lanes + lane];
        if (cl->opts.prefix_routing && cl->n_lanes > 1)
            dsc_prefix_route_note(cl->prefix_route, lane, s->tokens, s->n_prompt + s->n_generated);
    }
    s->wire_id = ++cl->next_wire;
    s->epoch = cl->plan.epoch;
    dst_msg_t m;
    submit_msg(s, &m);
    if (parent != NULL) {
        m.submit.fork_of = parent->wire_id;
        m.submit.fork_len = s->n_prompt - 1;
    }
    cl->stats.prefill_tokens += m.submit.n_tokens - m.submit.fork_len;
    cl->stats.shared_tokens += m.submit.fork_len;
    dsi_status_t st = send_route(cl, s, &m);
    s->submitted = 1;
    DSI_DEBUG("request %llu as sequence %llu: %u tokens (%u generated, %u shared with sequence "
              "%llu)",
              (unsigned long long)s->handle, (unsigned long long)s->wire_id, m.submit.n_tokens,
              s->n_generated, m.submit.fork_len, (unsigned long long)m.submit.fork_of);
    return st;
}

/* st of s's SUBMIT: on failure s ends with an error (never leave a request waiting for tokens
 * that cannot come). */
static dsi_status_t submitted(dsc_cluster_t *cl, seq_t *s, dsi_status_t st)
{
    if (st == DSI_OK)
        return DSI_OK;
    DSI_ERROR("request %llu failed: its SUBMIT could not be sent: %s",
              (unsigned long long)s->handle, dsi_status_message(st));
    dsc_seq_deliver(cl, s, NULL, NULL, 0, DST_FINISH_ERROR);
    dsc_seq_end(cl, s);
    return st;
}

dsi_status_t dsc_seq_submit(dsc_cluster_t *cl, seq_t *s)
{
    return submitted(cl, s, submit_send(cl, s));
}

dsi_status_t dsc_seq_submit_moved(dsc_cluster_t *cl, seq_t *s)
{
    uint32_t old_route[DST_MSG_MAX_STAGES], n_old = s->n_route;
    uint64_t old_wire = s->wire_id;
    memcpy(old_route, s->route, n_old * sizeof(uint32_t));
    s->n_route = cl->plan.n_stages;
    memcpy(s->route, s->move_route, s->n_route * sizeof(uint32_t));
    s->wire_id = s->move_wire;
    s->epoch = cl->plan.epoch;
    s->move_planned = 0;
    dst_msg_t m;
    submit_msg(s, &m);
    m.submit.fork_of = old_wire;
    m.submit.fork_len = s->n_prompt + s->n_generated - 1;
    m.submit.kv_move = 1;
    cl->stats.prefill_tokens += m.submit.n_tokens - m.submit.fork_len;
    dsi_status_t st = send_route(cl, s, &m);
    s->submitted = 1;
    /* After the SUBMIT: a node of both lanes copies the rows from the old sequence first. */
    dst_msg_t c = {.type = DST_MSG_CANCEL};
    c.cancel.seq_id = old_wire;
    send_nodes(cl, old_route, n_old, &c);
    DSI_DEBUG("request %llu as sequence %llu: moves from sequence %llu with %u positions of KV "
              "cache",
              (unsigned long long)s->handle, (unsigned long long)s->wire_id,
              (unsigned long long)old_wire, m.submit.fork_len);
    return submitted(cl, s, st);
}

static void seq_free(seq_t *s)
{
    free(s->req.sampling.bias_ids);
    free(s->req.sampling.bias_values);
    free(s->req.sampling.stop_ids);
    free((char *)s->req.grammar);
    free(s->tokens);
    free(s);
}

/* Unlinks and frees s without telling its owner. */
static void seq_unlink(dsc_cluster_t *cl, seq_t *s)
{
    dsc_seq_withdraw(cl, s);
    dsi_list_remove(&s->link);
    seq_free(s);
    cl->stats.sequences_active--;
}

/* s->req.sampling = *x with arrays of its own; -1 when out of memory. */
static int copy_sampling(seq_t *s, const dst_msg_sampling_t *x)
{
    dst_msg_sampling_t *d = &s->req.sampling;
    *d = *x;
    d->bias_ids = NULL;
    d->bias_values = NULL;
    d->stop_ids = NULL;
    if (x->n_bias > 0) {
        d->bias_ids = malloc(x->n_bias * sizeof(int32_t));
        d->bias_values = malloc(x->n_bias * sizeof(float));
        if (d->bias_ids == NULL || d->bias_values == NULL)
            return -1;
        memcpy(d->bias_ids, x->bias_ids, x->n_bias * sizeof(int32_t));
        memcpy(d->bias_values, x->bias_values, x->n_bias * sizeof(float));
    }
    if (x->n_stop_ids > 0) {
        d->stop_ids = malloc(x->n_stop_ids * sizeof(int32_t));
        if (d->stop_ids == NULL)
            return -1;
        memcpy(d->stop_ids, x->stop_ids, x->n_stop_ids * sizeof(int32_t));
    }
    return 0;
}

/* Token ids of the controls within the vocabulary; -1 with `why` written otherwise. */
static int check_sampling_ids(const dsc_cluster_t *cl, const dst_msg_sampling_t *x, char *why,
                              size_t cap)
{
    for (uint32_t i = 0; i < x->n_bias; i++) {
        if (x->bias_ids[i] < 0 || x->bias_ids[i] >= cl->cfg.vocab_size) {
            snprintf(why, cap, "logit_bias token %d is outside the model's vocabulary [0, %d)",
                     x->bias_ids[i], cl->cfg.vocab_size);
            return -1;
        }
    }
    for (uint32_t i = 0; i < x->n_stop_ids; i++) {
        if (x->stop_ids[i] < 0 || x->stop_ids[i] >= cl->cfg.vocab_size) {
            snprintf(why, cap, "stop_token_ids token %d is outside the model's vocabulary [0, %d)",
                     x->stop_ids[i], cl->cfg.vocab_size);
            return -1;
        }
    }
    return 0;
}

dsi_status_t dsc_seq_create(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                            const dst_msg_sampling_t *sampling, seq_t **out, char *why, size_t cap,
                            uint64_t share_prefix_of)
{
    char scratch[160];
    if (why == NULL || cap == 0) {
        why = scratch;
        cap = sizeof(scratch);
    }
    if (req->n_prompt == 0 || req->n_prompt > DST_MSG_MAX_TOKENS || req->max_tokens == 0 ||
        req->max_tokens > DST_MSG_MAX_TOKENS) {
        snprintf(why, cap, "%u prompt tokens and max_tokens %u: each must be in 1..%d",
                 req->n_prompt, req->max_tokens, DST_MSG_MAX_TOKENS);
        DSI_ERROR("request refused: %s", why);
        return DSI_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < req->n_prompt; i++) {
        if (req->prompt[i] < 0 || req->prompt[i] >= cl->cfg.vocab_size) {
            snprintf(why, cap,
                     "prompt token %d (position %u) is outside the model's vocabulary [0, %d)",
                     req->prompt[i], i, cl->cfg.vocab_size);
            DSI_ERROR("request refused: %s", why);
            return DSI_ERR_INVALID_ARG;
        }
    }
    if (sampling != NULL && check_sampling_ids(cl, sampling, why, cap) != 0) {
        DSI_ERROR("request refused: %s", why);
        return DSI_ERR_INVALID_ARG;
    }
    if (cl->shut_down) {
        snprintf(why, cap, "the cluster is shutting down");
        return DSI_ERR_UNSUPPORTED;
    }
    /* The same check the SUBMIT gets when sent, now, so that a request the wire would refuse
     * is refused here instead of queueing (route: a placeholder of one stage). */
    uint32_t route0 = 0;
    dst_msg_t probe = {.type = DST_MSG_SUBMIT};
    probe.submit = (dst_msg_submit_t){.n_tokens = req->n_prompt,
                                      .tokens = (int32_t *)req->prompt,
                                      .max_tokens = req->max_tokens,
                                      .temperature = req->temperature,
                                      .top_p = req->top_p,
                                      .top_k = req->top_k,
                                      .seed = req->seed,
                                      .n_route = 1,
                                      .route = &route0};
    if (sampling != NULL)
        probe.submit.sampling = *sampling;
    if (req->grammar != NULL) {
        probe.submit.grammar = req->grammar;
        probe.submit.grammar_len = (uint32_t)strnlen(req->grammar, DST_MSG_MAX_GRAMMAR + 1);
    }
    dsi_status_t st = dst_msg_check(&probe, why, cap);
    if (st != DSI_OK) {
        DSI_ERROR("request refused: %s", why);
        return DSI_ERR_INVALID_ARG;
    }
    seq_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return DSI_ERR_NOMEM;
    if (sampling != NULL && copy_sampling(s, sampling) != 0) {
        seq_free(s);
        return DSI_ERR_NOMEM;
    }
    if (req->grammar != NULL) {
        s->req.grammar = strdup(req->grammar);
        s->req.grammar_len = probe.submit.grammar_len;
        if (s->req.grammar == NULL) {
            seq_free(s);
            return DSI_ERR_NOMEM;
        }
    }
    s->cap = req->n_prompt + 16;
    s->tokens = malloc(s->cap * sizeof(int32_t));
    if (s->tokens == NULL) {
        seq_free(s);
        return DSI_ERR_NOMEM;
    }
    memcpy(s->tokens, req->prompt, req->n_prompt * sizeof(int32_t));
    s->n_prompt = req->n_prompt;
    s->handle = ++cl->next_handle;
    s->req.max_tokens = req->max_tokens;
    s->req.temperature = req->temperature;
    s->req.top_p = req->top_p;
    s->req.top_k = req->top_k;
    s->req.seed = req->seed;
    s->share_prefix_of = share_prefix_of;
    /* Arrival order, so that queued requests are submitted first come, first served. */
    dsi_list_push_back(&cl->seqs, &s->link);
    cl->stats.sequences_active++;
    /* A drain hold keeps new requests queued (dsc_cluster_replan.c). */
    if (cl->ready && cl->drain_hold == 0 && (st = submit_send(cl, s)) != DSI_OK) {
        DSI_ERROR("request %llu refused: its SUBMIT could not be sent: %s",
                  (unsigned long long)s->handle, dsi_status_message(st));
        seq_unlink(cl, s);
        return st;
    }
    *out = s;
    return DSI_OK;
}

void dsc_seq_deliver(dsc_cluster_t *cl, seq_t *s, const dst_msg_tokens_t *lp, const int32_t *tokens,
                     uint32_t n, dst_finish_t finish)
{
    (void)cl;
    if (n > 0 && finish == DST_FINISH_NONE) {
        if (s->n_prompt + s->n_generated + n > s->cap) {
            uint32_t cap = (s->n_prompt + s->n_generated + n) * 2;
            int32_t *p = realloc(s->tokens, cap * sizeof(int32_t));
            if (p == NULL) {
                DSI_ERROR("out of memory recording the tokens of request %llu",
                          (unsigned long long)s->handle);
                finish = DST_FINISH_ERROR;
            } else {
                s->tokens = p;
                s->cap = cap;
            }
        }
        if (finish == DST_FINISH_NONE) {
            memcpy(s->tokens + s->n_prompt + s->n_generated, tokens, n * sizeof(int32_t));
            s->n_generated += n;
        }
    }
    if (s->client != NULL) {
        dst_msg_t m = {.type = DST_MSG_TOKENS};
        m.tokens.seq_id = s->client_seq;
        m.tokens.tokens = (int32_t *)tokens;
        m.tokens.n_tokens = n;
        m.tokens.finish = (uint8_t)finish;
        if (lp != NULL && lp->logprob != NULL && lp->n_tokens == n) {
            m.tokens.logprob = lp->logprob;
            m.tokens.n_top = lp->n_top;
            m.tokens.top_ids = lp->top_ids;
            m.tokens.top_logprobs = lp->top_logprobs;
        }
        dsc_cluster_send(s->client->conn, &m);
    } else if (s->cb != NULL) {
        if (s->lp_cb != NULL && lp != NULL && lp->logprob != NULL && lp->n_tokens == n && n > 0)
            s->lp_cb(s->ctx, lp);
        s->cb(s->ctx, tokens, n, finish);
    }
}

void dsc_seq_preempted(dsc_cluster_t *cl, seq_t *s)
{
    cl->stats.preemptions++;
    DSI_INFO("request %llu (sequence %llu) preempted by a full KV pool after %u tokens: "
             "submitted again",
             (unsigned long long)s->handle, (unsigned long long)s->wire_id, s->n_generated);
    dsc_seq_withdraw(cl, s);
    /* Submitted again as a sequence of its own: a fork of its parent's prompt would need the
     * blocks the full pool just lacked and could be preempted again at once. */
    s->share_prefix_of = 0;
    if (cl->ready)
        dsc_seq_submit(cl, s);
}

void dsc_seq_prefix_miss(dsc_cluster_t *cl, seq_t *s)
{
    cl->stats.prefix_misses++;
    DSI_INFO("request %llu (sequence %llu): a later stage lacks prompt blocks stage 0 found in "
             "its prefix cache: submitted again without prefix reuse",
             (unsigned long long)s->handle, (unsigned long long)s->wire_id);
    dsc_seq_withdraw(cl, s);
    s->req.no_prefix = 1; /* from now on: a second miss is impossible */
    if (cl->ready)
        dsc_seq_submit(cl, s);
}

void dsc_seq_end(dsc_cluster_t *cl, seq_t *s)
{
    seq_unlink(cl, s);
    cl->stats.sequences_done++;
}

void dsc_seq_withdraw_all(dsc_cluster_t *cl)
{
    dsi_list_for_each(s, &cl->seqs, seq_t, link)
        dsc_seq_withdraw(cl, s);
}

void dsc_seq_submit_all(dsc_cluster_t *cl)
{
    uint32_t resumed = 0, fresh = 0;
    dsi_list_for_each_safe(s, &cl->seqs, seq_t, link) { /* s is freed when its SUBMIT fails */
        if (!s->submitted) {
            cl->stats.reprefilled += s->wire_id != 0; /* it ran before: computed again */
            resumed += s->n_generated > 0;
            fresh += s->n_generated == 0;
            dsc_seq_submit(cl, s);
        }
    }
    if (resumed + fresh > 0)
        DSI_INFO("epoch %llu: submitted %u requests (%u resumed with their generated tokens)",
                 (unsigned long long)cl->plan.epoch, resumed + fresh, resumed);
}

void dsc_seq_fail_all(dsc_cluster_t *cl, const char *why)
{
    dsi_list_t *l;
    while ((l = dsi_list_head(&cl->seqs)) != NULL) {
        seq_t *s = dsi_container_of(l, seq_t, link);
        DSI_ERROR("request %llu failed: %s", (unsigned long long)s->handle, why);
        dsc_seq_deliver(cl, s, NULL, NULL, 0, DST_FINISH_ERROR);
        dsc_seq_end(cl, s);
    }
}

void dsc_seq_free_all(dsc_cluster_t *cl)
{
    dsi_list_t *l;
    while ((l = dsi_list_pop_front(&cl->seqs)) != NULL) {
        seq_t *s = dsi_container_of(l, seq_t, link);
        seq_free(s);
    }
}

dsi_status_t dsc_cluster_submit(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                dsc_cluster_token_cb cb, void *ctx, uint64_t *seq_id)
{
    return dsc_cluster_submit_ex(cl, req, NULL, cb, NULL, ctx, seq_id);
}

dsi_status_t dsc_cluster_submit_ex(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                   const dst_msg_sampling_t *sampling, dsc_cluster_token_cb cb,
                                   dsc_cluster_logprobs_cb lp_cb, void *ctx, uint64_t *seq_id)
{
    return dsc_cluster_submit_shared(cl, req, sampling, cb, lp_cb, ctx, 0, seq_id);
}

dsi_status_t dsc_cluster_submit_shared(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                       const dst_msg_sampling_t *sampling, dsc_cluster_token_cb cb,
                                       dsc_cluster_logprobs_cb lp_cb, void *ctx,
                                       uint64_t share_prefix_of, uint64_t *seq_id)
{
    seq_t *s;
    dsi_status_t st = dsc_seq_create(cl, req, sampling, &s, NULL, 0, share_prefix_of);
    if (st != DSI_OK)
        return st;
    s->cb = cb;
    s->lp_cb = lp_cb;
    s->ctx = ctx;
    *seq_id = s->handle;
    return DSI_OK;
}

void dsc_cluster_cancel(dsc_cluster_t *cl, uint64_t seq_id)
{
    dsi_list_for_each(s, &cl->seqs, seq_t, link) {
        if (s->handle == seq_id) {
            dsc_seq_end(cl, s);
            return;
        }
    }
}
