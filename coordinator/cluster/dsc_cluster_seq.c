/* dsc_cluster_seq.c - the coordinator's sequences: submit, deliver, cancel, re-submit. */
#include <stdlib.h>
#include <string.h>

#include "dsc_cluster_impl.h"
#include "dsi_log.h"

seq_t *dsc_seq_by_wire(dsc_cluster_t *cl, uint64_t wire_id)
{
    for (seq_t *s = cl->seqs; s != NULL; s = s->next) {
        if (s->submitted && s->wire_id == wire_id)
            return s;
    }
    return NULL;
}

/* SUBMIT or CANCEL to each node of the route once. A failure that re-planning does not repair
 * (the message is refused by the encoder, a node's send queue is full) is returned; a lost
 * connection is not: the node's loss re-plans and re-submits. */
static dsi_status_t send_route(dsc_cluster_t *cl, const seq_t *s, const dst_msg_t *m)
{
    dsi_status_t first = DSI_OK;
    for (uint32_t i = 0; i < s->n_route; i++) {
        int dup = 0;
        for (uint32_t j = 0; j < i; j++)
            dup |= s->route[j] == s->route[i];
        if (dup)
            continue;
        dsi_status_t st = dsc_cluster_send_node(cl, s->route[i], m);
        if (st != DSI_OK && st != DSI_ERR_CONNECTION && first == DSI_OK)
            first = st;
    }
    return first;
}

void dsc_seq_withdraw(dsc_cluster_t *cl, seq_t *s)
{
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

/* Sends s on a lane of the current plan; on failure s stays (submitted, so that withdrawing it
 * cancels it where it did arrive). */
static dsi_status_t submit_send(dsc_cluster_t *cl, seq_t *s)
{
    uint32_t lane = cl->next_lane++ % cl->n_lanes;
    s->n_route = cl->plan.n_stages;
    for (uint32_t st = 0; st < s->n_route; st++)
        s->route[st] = cl->lane_nodes[st * cl->n_lanes + lane];
    s->wire_id = ++cl->next_wire;
    dst_msg_t m;
    submit_msg(s, &m);
    dsi_status_t st = send_route(cl, s, &m);
    s->submitted = 1;
    DSI_DEBUG("request %llu as sequence %llu: %u tokens (%u generated), lane %u",
              (unsigned long long)s->handle, (unsigned long long)s->wire_id, m.submit.n_tokens,
              s->n_generated, lane);
    return st;
}

dsi_status_t dsc_seq_submit(dsc_cluster_t *cl, seq_t *s)
{
    dsi_status_t st = submit_send(cl, s);
    if (st == DSI_OK)
        return DSI_OK;
    /* Never leave a request waiting for tokens that cannot come. */
    DSI_ERROR("request %llu failed: its SUBMIT could not be sent: %s",
              (unsigned long long)s->handle, dsi_status_message(st));
    dsc_seq_deliver(cl, s, NULL, 0, DST_FINISH_ERROR);
    dsc_seq_end(cl, s);
    return st;
}

/* Unlinks and frees s without telling its owner. */
static void seq_unlink(dsc_cluster_t *cl, seq_t *s)
{
    dsc_seq_withdraw(cl, s);
    for (seq_t **p = &cl->seqs; *p != NULL; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    free(s->tokens);
    free(s);
    cl->stats.sequences_active--;
}

dsi_status_t dsc_seq_create(dsc_cluster_t *cl, const dsc_cluster_req_t *req, seq_t **out)
{
    if (req->n_prompt == 0 || req->n_prompt > DST_MSG_MAX_TOKENS || req->max_tokens == 0 ||
        req->max_tokens > DST_MSG_MAX_TOKENS) {
        DSI_ERROR("request with %u prompt tokens and max_tokens %u refused", req->n_prompt,
                  req->max_tokens);
        return DSI_ERR_INVALID_ARG;
    }
    for (uint32_t i = 0; i < req->n_prompt; i++) {
        if (req->prompt[i] < 0 || req->prompt[i] >= cl->cfg.vocab_size) {
            DSI_ERROR("prompt token %d outside the vocabulary [0, %d)", req->prompt[i],
                      cl->cfg.vocab_size);
            return DSI_ERR_INVALID_ARG;
        }
    }
    if (cl->shut_down)
        return DSI_ERR_UNSUPPORTED;
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
    char why[256];
    dsi_status_t st = dst_msg_check(&probe, why, sizeof(why));
    if (st != DSI_OK) {
        DSI_ERROR("request refused: %s", why);
        return DSI_ERR_INVALID_ARG;
    }
    seq_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return DSI_ERR_NOMEM;
    s->cap = req->n_prompt + 16;
    s->tokens = malloc(s->cap * sizeof(int32_t));
    if (s->tokens == NULL) {
        free(s);
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
    /* Arrival order, so that queued requests are submitted first come, first served. */
    seq_t **tail = &cl->seqs;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = s;
    cl->stats.sequences_active++;
    if (cl->ready && (st = submit_send(cl, s)) != DSI_OK) {
        DSI_ERROR("request %llu refused: its SUBMIT could not be sent: %s",
                  (unsigned long long)s->handle, dsi_status_message(st));
        seq_unlink(cl, s);
        return st;
    }
    *out = s;
    return DSI_OK;
}

void dsc_seq_deliver(dsc_cluster_t *cl, seq_t *s, const int32_t *tokens, uint32_t n,
                     dst_finish_t finish)
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
        dsc_cluster_send(s->client->conn, &m);
    } else if (s->cb != NULL) {
        s->cb(s->ctx, tokens, n, finish);
    }
}

void dsc_seq_end(dsc_cluster_t *cl, seq_t *s)
{
    seq_unlink(cl, s);
    cl->stats.sequences_done++;
}

void dsc_seq_withdraw_all(dsc_cluster_t *cl)
{
    for (seq_t *s = cl->seqs; s != NULL; s = s->next)
        dsc_seq_withdraw(cl, s);
}

void dsc_seq_submit_all(dsc_cluster_t *cl)
{
    uint32_t resumed = 0, fresh = 0;
    for (seq_t *s = cl->seqs, *next; s != NULL; s = next) {
        next = s->next; /* s is freed when its SUBMIT fails */
        if (!s->submitted) {
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
    while (cl->seqs != NULL) {
        seq_t *s = cl->seqs;
        DSI_ERROR("request %llu failed: %s", (unsigned long long)s->handle, why);
        dsc_seq_deliver(cl, s, NULL, 0, DST_FINISH_ERROR);
        dsc_seq_end(cl, s);
    }
}

void dsc_seq_free_all(dsc_cluster_t *cl)
{
    while (cl->seqs != NULL) {
        seq_t *s = cl->seqs;
        cl->seqs = s->next;
        free(s->tokens);
        free(s);
    }
}

dsi_status_t dsc_cluster_submit(dsc_cluster_t *cl, const dsc_cluster_req_t *req,
                                dsc_cluster_token_cb cb, void *ctx, uint64_t *seq_id)
{
    seq_t *s;
    dsi_status_t st = dsc_seq_create(cl, req, &s);
    if (st != DSI_OK)
        return st;
    s->cb = cb;
    s->ctx = ctx;
    *seq_id = s->handle;
    return DSI_OK;
}

void dsc_cluster_cancel(dsc_cluster_t *cl, uint64_t seq_id)
{
    for (seq_t *s = cl->seqs; s != NULL; s = s->next) {
        if (s->handle == seq_id) {
            dsc_seq_end(cl, s);
            return;
        }
    }
}
