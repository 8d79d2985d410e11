/*
 * dsc_backend_text.c - the text stage of one generation: stream-decode token ids, split off the
 * thinking block, hold back what could still become a marker or a stop string, emit the rest.
 *
 * Invariant: `pend` holds complete UTF-8 characters (the decoder keeps partial ones) that have
 * not been emitted. Everything before the held-back tail is emitted as soon as it is known not to
 * be part of "</think>" or of a stop string; the tail is at most (longest pattern - 1) bytes.
 */
#include "dsc_backend.h"

#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

#define THINK_END     "</think>"
#define THINK_END_LEN 8

struct dsc_backend_text {
    dsc_decoder_t *dec;
    int reasoning;        /* inside the thinking block */
    int32_t think_end_id; /* id of a *special* "</think>" token (the decoder drops it), or -1 */
    char *stop[DSC_API_MAX_STOP];
    size_t stop_len[DSC_API_MAX_STOP];
    int n_stop;
    char *pend; /* [len] bytes not emitted yet, capacity cap */
    size_t len, cap;
    int32_t pend_tokens; /* tokens pushed whose text has not been (fully) emitted */
    int stopped;
    const dsc_tokenizer_t *tok;
    int keep_tool_markers; /* special <｜tool▁...｜> tokens give their text */
};

void dsc_backend_text_keep_tool_markers(dsc_backend_text_t *t)
{
    t->keep_tool_markers = 1;
}

/* A special tool-call marker's text when kept, else NULL (the decoder decides). */
static const char *kept_marker(const dsc_backend_text_t *t, int32_t id)
{
    static const char prefix[] = "<｜tool";
    if (!t->keep_tool_markers || !dsc_tokenizer_is_special(t->tok, id))
        return NULL;
    const char *s = dsc_tokenizer_token_text(t->tok, id);
    return s != NULL && strncmp(s, prefix, sizeof(prefix) - 1) == 0 ? s : NULL;
}

dsi_status_t dsc_backend_text_create(const dsc_tokenizer_t *tok, int reasoning,
                                     const char *const *stop, int n_stop, dsc_backend_text_t **out)
{
    if (n_stop < 0 || n_stop > DSC_API_MAX_STOP) {
        DSI_ERROR("backend: %d stop strings (at most %d)", n_stop, DSC_API_MAX_STOP);
        return DSI_ERR_INVALID_ARG;
    }
    for (int i = 0; i < n_stop; i++) {
        if (stop[i] == NULL || stop[i][0] == '\0') {
            DSI_ERROR("backend: stop string %d is empty", i);
            return DSI_ERR_INVALID_ARG;
        }
    }
    dsc_backend_text_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        goto err_nomem;
    if (dsc_decoder_create(tok, DSC_DECODE_SKIP_SPECIAL, &t->dec) != DSI_OK)
        goto err_free;
    t->reasoning = reasoning;
    t->tok = tok;
    t->think_end_id = dsc_tokenizer_token_id(tok, THINK_END);
    if (t->think_end_id >= 0 && !dsc_tokenizer_is_special(tok, t->think_end_id))
        t->think_end_id = -1; /* plain text: found by the text search */
    for (int i = 0; i < n_stop; i++) {
        if ((t->stop[i] = strdup(stop[i])) == NULL)
            goto err_free;
        t->stop_len[i] = strlen(stop[i]);
        t->n_stop = i + 1;
    }
    *out = t;
    return DSI_OK;
err_free:
    dsc_backend_text_destroy(t);
err_nomem:
    DSI_ERROR("backend: out of memory for a generation's text stage");
    return DSI_ERR_NOMEM;
}

void dsc_backend_text_destroy(dsc_backend_text_t *t)
{
    if (t == NULL)
        return;
    dsc_decoder_destroy(t->dec);
    for (int i = 0; i < t->n_stop; i++)
        free(t->stop[i]);
    free(t->pend);
    free(t);
}

static int append(dsc_backend_text_t *t, const char *s, size_t n)
{
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 64;
        while (cap < t->len + n)
            cap *= 2;
        char *p = realloc(t->pend, cap);
        if (p == NULL) {
            DSI_ERROR("backend: out of memory buffering generated text");
            return -1;
        }
        t->pend = p;
        t->cap = cap;
    }
    memcpy(t->pend + t->len, s, n);
    t->len += n;
    return 0;
}

/* First offset of pat in buf, or SIZE_MAX. */
static size_t find(const char *buf, size_t len, const char *pat, size_t plen)
{
    for (size_t i = 0; i + plen <= len; i++) {
        if (buf[i] == pat[0] && memcmp(buf + i, pat, plen) == 0)
            return i;
    }
    return SIZE_MAX;
}

/* The longest proper prefix of pat that buf ends with (0 if none). Since pat is valid UTF-8, the
   tail it marks starts on a character boundary. */
static size_t tail_overlap(const char *buf, size_t len, const char *pat, size_t plen)
{
    size_t k = plen - 1 < len ? plen - 1 : len;
    for (; k > 0; k--) {
        if (memcmp(buf + len - k, pat, k) == 0)
            return k;
    }
    return 0;
}

/* Emit the first n pending bytes (with the pending token count) and drop them. */
static void emit_head(dsc_backend_text_t *t, size_t n, int reasoning, dsc_backend_emit_cb emit,
                      void *ctx)
{
    if (n == 0)
        return;
    emit(ctx, t->pend, n, reasoning, t->pend_tokens);
    t->pend_tokens = 0;
    memmove(t->pend, t->pend + n, t->len - n);
    t->len -= n;
}

static void drop_head(dsc_backend_text_t *t, size_t n)
{
    memmove(t->pend, t->pend + n, t->len - n);
    t->len -= n;
}

/* Emit what is safe; with `final` nothing is held back. Returns 1 on a stop-string match. */
static int process(dsc_backend_text_t *t, int final, dsc_backend_emit_cb emit, void *ctx)
{
    while (t->reasoning) {
        size_t at = find(t->pend, t->len, THINK_END, THINK_END_LEN);
        if (at == SIZE_MAX) {
            size_t hold = final ? 0 : tail_overlap(t->pend, t->len, THINK_END, THINK_END_LEN);
            emit_head(t, t->len - hold, 1, emit, ctx);
            return 0;
        }
        emit_head(t, at, 1, emit, ctx);
        drop_head(t, THINK_END_LEN);
        t->reasoning = 0;
    }
    size_t best = SIZE_MAX, hold = 0;
    for (int i = 0; i < t->n_stop; i++) {
        size_t at = find(t->pend, t->len, t->stop[i], t->stop_len[i]);
        if (at < best)
            best = at;
        size_t h = tail_overlap(t->pend, t->len, t->stop[i], t->stop_len[i]);
        if (h > hold)
            hold = h;
    }
    if (best != SIZE_MAX) {
        emit_head(t, best, 0, emit, ctx);
        if (t->pend_tokens > 0) /* the tokens that made the stop string */
            emit(ctx, "", 0, 0, t->pend_tokens);
        t->pend_tokens = 0;
        t->len = 0;
        t->stopped = 1;
        return 1;
    }
    emit_head(t, t->len - (final ? 0 : hold), 0, emit, ctx);
    return 0;
}

int dsc_backend_text_push(dsc_backend_text_t *t, int32_t id, dsc_backend_emit_cb emit, void *ctx)
{
    if (t->stopped)
        return 1;
    t->pend_tokens++;
    if (id == t->think_end_id && t->reasoning) {
        /* A special marker token: everything before it was reasoning. */
        emit_head(t, t->len, 1, emit, ctx);
        t->reasoning = 0;
        return 0;
    }
    const char *text = kept_marker(t, id);
    size_t n = text != NULL ? strlen(text) : 0;
    if (text == NULL)
        dsc_decoder_push(t->dec, id, &text, &n);
    if (n > 0 && append(t, text, n) != 0)
        return -1;
    int r = process(t, 0, emit, ctx);
    if (r == 0 && t->len == 0 && t->pend_tokens > 0) {
        /* A token without text of ours held back (special, unknown, or bytes the decoder keeps
           for a partial character): count it now, so that token timing (TTFT) stays true. */
        emit(ctx, "", 0, t->reasoning, t->pend_tokens);
        t->pend_tokens = 0;
    }
    return r;
}

int dsc_backend_text_finish(dsc_backend_text_t *t, dsc_backend_emit_cb emit, void *ctx)
{
    if (t->stopped)
        return 1;
    const char *text;
    size_t n;
    dsc_decoder_flush(t->dec, &text, &n);
    if (n > 0 && append(t, text, n) != 0)
        return -1;
    if (process(t, 1, emit, ctx) == 1)
        return 1;
    if (t->pend_tokens > 0)
        emit(ctx, "", 0, t->reasoning, t->pend_tokens);
    t->pend_tokens = 0;
    return 0;
}
