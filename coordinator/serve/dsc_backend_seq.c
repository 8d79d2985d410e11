/*
 * dsc_backend_seq.c - one request through the cluster: admission and limits at submit, the
 * cluster's tokens through the text stage to the API's events, and cancellation.
 *
 * A sequence is freed once neither side can reach it: the API is detached (terminal event sent or
 * cancel() called) and the cluster is done with it (finish delivered or dsc_cluster_cancel
 * called). dsc_cluster_cancel frees the cluster's record at once, so it must not run inside the
 * cluster's own token callback for that sequence: a stop string found there (or a cancel() that
 * arrives while one runs) marks the sequence cancel_due and a zero-delay timer cancels it right
 * after the callback returns.
 */
#include "dsc_backend_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsg.h"
#include "dsi_log.h"

static void seq_free(dsc_backend_t *b, dsc_backend_seq_t *s)
{
    dsi_list_remove(&s->link);
    b->n_seqs--;
    dsc_backend_text_destroy(s->text);
    free(s);
}

/* No more events go to the API for s. */
static void seq_detach(dsc_backend_t *b, dsc_backend_seq_t *s)
{
    if (!s->attached)
        return;
    s->attached = 0;
    dsc_metric_add(s->started ? b->running : b->queued, -1);
}

/* The cluster must forget s: now, or right after the current cluster callback. */
static void seq_release(dsc_backend_t *b, dsc_backend_seq_t *s)
{
    if (b->in_cluster_cb > 0) {
        s->cancel_due = 1;
        dsc_backend_schedule(b);
        return;
    }
    if (s->in_cluster) {
        dsc_cluster_cancel(b->cluster, s->cluster_id);
        s->in_cluster = 0;
    }
    seq_free(b, s);
}

void dsc_backend_run_deferred(dsc_backend_t *b)
{
    dsi_list_for_each_safe(s, &b->seqs, dsc_backend_seq_t, link) {
        if (s->cancel_due) {
            s->cancel_due = 0;
            seq_release(b, s);
        }
    }
    dsc_backend_refresh_gauges(b);
}

void dsc_backend_drop_all(dsc_backend_t *b)
{
    dsi_list_t *l;
    while ((l = dsi_list_head(&b->seqs)) != NULL) {
        dsc_backend_seq_t *s = dsi_container_of(l, dsc_backend_seq_t, link);
        seq_detach(b, s);
        s->cancel_due = 0;
        seq_release(b, s);
    }
}

static void seq_done(dsc_backend_t *b, dsc_backend_seq_t *s, dsc_api_finish_t finish,
                     const char *reason)
{
    dsc_api_usage_t usage = {s->n_prompt, s->n_generated};
    seq_detach(b, s);
    dsc_backend_count(b->finished, reason);
    s->events->on_done(s->ctx, finish, &usage);
}

static void seq_fail(dsc_backend_t *b, dsc_backend_seq_t *s, dsi_status_t st, const char *why)
{
    seq_detach(b, s);
    dsc_backend_count(b->finished, "error");
    s->events->on_error(s->ctx, st, why);
}

static int is_stop_id(const dsc_backend_seq_t *s, int32_t token)
{
    for (int i = 0; i < s->n_stop_ids; i++) {
        if (s->stop_ids[i] == token)
            return 1;
    }
    return 0;
}

void dsc_backend_fail_all(dsc_backend_t *b, const char *why)
{
    dsi_list_for_each_safe(s, &b->seqs, dsc_backend_seq_t, link) {
        if (!s->attached)
            continue;
        seq_fail(b, s, DSI_ERR_PEER, why);
        seq_release(b, s);
    }
    dsc_backend_refresh_gauges(b);
}

/* The tokens of an attached sequence through the text stage; the finish reason last. */
static void seq_feed(dsc_backend_t *b, dsc_backend_seq_t *s, const int32_t *tokens, uint32_t n,
                     dst_finish_t finish)
{
    if (n > 0 && !s->started) {
        s->started = 1;
        dsc_metric_add(b->queued, -1);
        dsc_metric_add(b->running, 1);
    }
    for (uint32_t i = 0; i < n; i++) {
        s->n_generated++;
        if (i + 1 == n && finish == DST_FINISH_STOP && is_stop_id(s, tokens[i])) {
            s->events->on_text(s->ctx, "", 0, 0, 1); /* counted, no text */
            continue;
        }
        int r = dsc_backend_text_push(s->text, tokens[i], s->events->on_text, s->ctx);
        if (r < 0) {
            seq_fail(b, s, DSI_ERR_NOMEM, "out of memory while decoding the generated text");
            return;
        }
        if (r == 1) {
            seq_done(b, s, DSC_API_FINISH_STOP, "stop_string");
            return;
        }
    }
    if (finish == DST_FINISH_STOP || finish == DST_FINISH_LENGTH) {
        int r = dsc_backend_text_finish(s->text, s->events->on_text, s->ctx);
        if (r < 0)
            seq_fail(b, s, DSI_ERR_NOMEM, "out of memory while decoding the generated text");
        else if (r == 1)
            seq_done(b, s, DSC_API_FINISH_STOP, "stop_string");
        else if (finish == DST_FINISH_STOP)
            seq_done(b, s, DSC_API_FINISH_STOP, "stop");
        else
            seq_done(b, s, DSC_API_FINISH_LENGTH, "length");
    } else if (finish == DST_FINISH_KV_FULL) {
        seq_fail(b, s, DSI_ERR_TOO_LARGE,
                 "the request needs more KV cache than a node's pool holds (its prompt and "
                 "max_tokens; the pool is set by --kv-pool or --mem): ask for fewer tokens");
    } else if (finish != DST_FINISH_NONE) {
        seq_fail(
            b, s, DSI_ERR_PEER,
            finish == DST_FINISH_CANCELLED
                ? "the cluster cancelled the generation (a node is draining or was lost)"
                : "the generation failed on the cluster (a node was lost, ran out of memory or "
                  "computed non-finite logits: see the logs)");
    }
}

static void on_tokens(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    dsc_backend_seq_t *s = ctx;
    dsc_backend_t *b = s->b;
    dsc_metric_add(b->gen_tokens, (double)n);
    if (finish != DST_FINISH_NONE)
        s->in_cluster = 0; /* the cluster frees its record after this call */
    b->in_cluster_cb++;
    if (s->attached)
        seq_feed(b, s, tokens, n, finish);
    b->in_cluster_cb--;
    if (s->attached)
        return;
    if (s->in_cluster) {
        /* We are inside the cluster's callback for s: dsc_cluster_cancel must wait. */
        s->cancel_due = 1;
        dsc_backend_schedule(b);
    } else {
        seq_free(b, s);
    }
}

void dsc_backend_cancel(void *self, uint64_t handle)
{
    dsc_backend_t *b = self;
    dsi_list_for_each(s, &b->seqs, dsc_backend_seq_t, link) {
        if (s->handle == handle && s->attached) {
            DSI_DEBUG("backend: request %llu cancelled by the API", (unsigned long long)handle);
            seq_detach(b, s);
            dsc_backend_count(b->finished, "cancelled");
            seq_release(b, s);
            dsc_backend_refresh_gauges(b);
            return;
        }
    }
}

/* The cluster's id of the open sequence of API handle `handle`, or 0. */
static uint64_t dsc_backend_cluster_id(const dsc_backend_t *b, uint64_t handle)
{
    dsi_list_for_each(s, &b->seqs, dsc_backend_seq_t, link) {
        if (handle != 0 && s->handle == handle && s->in_cluster)
            return s->cluster_id;
    }
    return 0;
}

static uint64_t next_seed(dsc_backend_t *b)
{
    /* splitmix64: distinct, well-mixed seeds for requests that gave none */
    uint64_t z = (b->seed_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static dsi_status_t refuse(dsc_backend_t *b, const char *reason, dsi_status_t st, char *message,
                           size_t cap, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static dsi_status_t refuse(dsc_backend_t *b, const char *reason, dsi_status_t st, char *message,
                           size_t cap, const char *fmt, ...)
{
    if (fmt != NULL && message != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, cap, fmt, ap);
        va_end(ap);
    }
    dsc_backend_count(b->rejected, reason);
    return st;
}

/* Refusals that need no tokenization: shutting down, not ready, admission. */
static dsi_status_t check_state(dsc_backend_t *b, char *message, size_t cap)
{
    if (b->stopping)
        return refuse(b, "not_ready", DSI_ERR_CANCELLED, message, cap,
                      "The server is shutting down.");
    if (!b->ever_ready) {
        dsc_cluster_condition_t c;
        dsc_cluster_condition(b->cluster, &c);
        return refuse(b, "not_ready", DSI_ERR_PEER, message, cap, "The cluster is not ready: %s%s.",
                      c.message, c.phase == DSC_CLUSTER_PLAN_DOES_NOT_FIT ? "" : "; retry shortly");
    }
    /* Control-port clients' sequences share the queue with the HTTP requests'. */
    uint32_t open = b->n_seqs + dsc_cluster_client_sequences(b->cluster);
    if (open >= b->cfg.max_queue)
        return refuse(b, "queue_full", DSI_ERR_CAPACITY, message, cap,
                      "Too many requests: %u sequences are being generated (the server's "
                      "--max-queue); retry shortly.",
                      open);
    return DSI_OK;
}

dsi_status_t dsc_backend_admit_client(void *self, const dsc_cluster_req_t *req, char *message,
                                      size_t cap)
{
    dsc_backend_t *b = self;
    dsi_status_t st = check_state(b, message, cap);
    if (st != DSI_OK)
        return st;
    int64_t ctx_len = b->cfg.max_context, total = (int64_t)req->n_prompt + req->max_tokens;
    if (total > ctx_len)
        return refuse(b, "too_long", DSI_ERR_TOO_LARGE, message, cap,
                      "This model's maximum context length is %lld tokens. However, you "
                      "requested %lld tokens (%u in the prompt, %u for the completion).",
                      (long long)ctx_len, (long long)total, req->n_prompt, req->max_tokens);
    return DSI_OK;
}

dsi_status_t dsc_backend_submit(void *self, const dsc_api_request_t *req,
                                const dsc_api_events_t *events, void *ctx, uint64_t *handle,
                                char *message, size_t message_cap)
{
    dsc_backend_t *b = self;
    /* Each choice of each prompt is a sequence: more than the queue holds could never be
     * admitted. */
    int choices = req->best_of > req->n ? req->best_of : req->n;
    int prompts = req->n_prompts > 1 ? req->n_prompts : 1;
    if (prompts > 1 && (int64_t)choices * prompts > (int64_t)b->cfg.max_queue)
        return refuse(b, "bad_request", DSI_ERR_BAD_REQUEST, message, message_cap,
                      "Invalid value for 'prompt': %d prompts of %d choices each are %lld "
                      "sequences, more than the server's --max-queue of %u.",
                      prompts, choices, (long long)choices * prompts, b->cfg.max_queue);
    if (choices > 1 && (uint32_t)choices > b->cfg.max_queue)
        return refuse(b, "bad_request", DSI_ERR_BAD_REQUEST, message, message_cap,
                      "Invalid value for '%s': %d choices are more than the server's --max-queue "
                      "of %u sequences.",
                      req->best_of > req->n ? "best_of" : "n", choices, b->cfg.max_queue);
    dsi_status_t st = check_state(b, message, message_cap);
    if (st != DSI_OK)
        return st;
    int32_t *ids = NULL;
    size_t n = 0;
    dsc_backend_seq_t *s = NULL;
    st = dsc_backend_prompt_ids(b, req, &ids, &n, message, message_cap);
    if (st != DSI_OK) {
        refuse(b, "bad_request", st, NULL, 0, NULL);
        return st;
    }
    char what[32] = "messages";
    if (req->kind == DSC_API_KIND_COMPLETION && req->prompt_index >= 0)
        snprintf(what, sizeof(what), "prompt[%d]", req->prompt_index);
    else if (req->kind == DSC_API_KIND_COMPLETION)
        snprintf(what, sizeof(what), "prompt");
    if (n == 0) {
        st = refuse(b, "bad_request", DSI_ERR_BAD_REQUEST, message, message_cap,
                    "%s: the prompt has no tokens", what);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= b->cfg.vocab_size) {
            st = refuse(b, "bad_request", DSI_ERR_BAD_REQUEST, message, message_cap,
                        "%s: token %d is outside the model's vocabulary of %d (the tokenizer "
                        "knows more tokens than the model)",
                        what, ids[i], b->cfg.vocab_size);
            goto out;
        }
    }
    int64_t ctx_len = b->cfg.max_context, room = ctx_len - (int64_t)n;
    int64_t max_tokens = req->max_tokens;
    /* Without max_tokens a request gets the rest of the context (as vLLM does), at most the
     * configured default; an explicit max_tokens must fit as asked. */
    if (!req->max_tokens_given && max_tokens > room)
        max_tokens = room;
    if (room < 1) {
        st = refuse(b, "too_long", DSI_ERR_TOO_LARGE, message, message_cap,
                    "This model's maximum context length is %lld tokens. However, the prompt "
                    "('%s') has %zu tokens, which leaves no room for the completion.",
                    (long long)ctx_len, what, n);
        goto out;
    }
    if (max_tokens > room) {
        st = refuse(b, "too_long", DSI_ERR_TOO_LARGE, message, message_cap,
                    "This model's maximum context length is %lld tokens. However, you requested "
                    "%lld tokens (%zu in the %s, %lld for the completion). Lower max_tokens to "
                    "at most %lld, or leave it out to get the rest of the context.",
                    (long long)ctx_len, (long long)n + max_tokens, n, what, (long long)max_tokens,
                    (long long)room);
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        st = DSI_ERR_NOMEM;
        goto out;
    }
    /* R1, and V3.1 in thinking mode, open the answer with a reasoning block. */
    dsc_chat_opts_t topts = {.thinking = req->thinking};
    int reasoning = req->kind == DSC_API_KIND_CHAT && dsc_chat_opens_thinking(b->tpl, &topts);
    if (req->kind == DSC_API_KIND_CHAT && req->continue_final) { /* a continued answer */
        const dsc_api_message_t *last = &req->messages[req->n_messages - 1];
        reasoning =
            dsc_chat_continue_opens_thinking(b->tpl, &topts, last->content, last->content_len);
    }
    if ((st = dsc_backend_text_create(b->tok, reasoning, req->stop, req->n_stop, &s->text)) !=
        DSI_OK)
        goto out;
    if (req->parse_tool_calls) /* the API's tool-call parser needs the markers as text */
        dsc_backend_text_keep_tool_markers(s->text);
    dst_msg_sampling_t sampling;
    if ((st = dsc_backend_sampling(b, req, &sampling, message, message_cap)) != DSI_OK) {
        refuse(b, "bad_request", st, NULL, 0, NULL);
        goto out;
    }
    /* Choice i of a seeded request samples with seed + i (its own random stream). */
    dsc_cluster_req_t creq = {ids,
                              (uint32_t)n,
                              (uint32_t)max_tokens,
                              0,
                              0,
                              0,
                              req->has_seed ? req->seed + (uint64_t)req->choice : next_seed(b),
                              NULL};
    dsc_backend_defaults(b, req, &creq.temperature, &creq.top_p, &creq.top_k);
    creq.grammar = req->grammar;
    char *tool_grammar = NULL; /* tool_choice required or a named function */
    if (req->kind == DSC_API_KIND_CHAT && req->tool_choice >= DSC_API_TOOL_CHOICE_REQUIRED) {
        if ((st = dsc_backend_tool_grammar(b, req, &tool_grammar, message, message_cap)) !=
            DSI_OK) {
            refuse(b, "bad_request", st, NULL, 0, NULL);
            goto out;
        }
        creq.grammar = tool_grammar;
    }
    /* A thinking block first: the grammar constrains the answer after it. */
    char *after_think = NULL;
    if (creq.grammar != NULL && reasoning) {
        if ((st = dsg_after_marker(creq.grammar, strlen(creq.grammar), "</think>", &after_think)) !=
            DSI_OK) {
            free(tool_grammar);
            goto out;
        }
        creq.grammar = after_think;
    }
    s->b = b;
    s->n_stop_ids = req->n_stop_ids;
    if (req->n_stop_ids > 0)
        memcpy(s->stop_ids, req->stop_ids, (size_t)req->n_stop_ids * sizeof(int32_t));
    st = dsc_cluster_submit_shared(b->cluster, &creq, &sampling, on_tokens, dsc_backend_on_logprobs,
                                   s, dsc_backend_cluster_id(b, req->share_prefix_of),
                                   &s->cluster_id);
    free(tool_grammar); /* the cluster keeps its own copies */
    free(after_think);
    if (st != DSI_OK) {
        snprintf(message, message_cap, "the cluster refused the request: %s",
                 dsi_status_message(st));
        goto out;
    }
    s->b = b;
    s->handle = ++b->next_handle;
    s->events = events;
    s->ctx = ctx;
    s->n_prompt = (int64_t)n;
    s->attached = s->in_cluster = 1;
    dsi_list_push_front(&b->seqs, &s->link);
    b->n_seqs++;
    dsc_metric_add(b->queued, 1);
    dsc_metric_add(b->prompt_tokens, (double)n);
    dsc_backend_refresh_gauges(b);
    *handle = s->handle;
    free(ids);
    return DSI_OK;
out:
    if (s != NULL) {
        dsc_backend_text_destroy(s->text);
        free(s);
    }
    free(ids);
    return st;
}
