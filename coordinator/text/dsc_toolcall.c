/*
 * dsc_toolcall.c - the tool-call parser (see dsc_toolcall.h).
 *
 * `buf` holds the text not yet passed on. In TEXT it is a tail that could still become
 * <｜tool▁calls▁begin｜>; in BLOCK and HEAD it is the raw text of the block since the last
 * completed call (markers included), so that a malformed block can go out as content; in ARGS it
 * is the arguments not yet passed on. Every decision depends on the text only, never on where the
 * pieces were cut: a header is malformed when its separator (or its V3 name's end) lies more
 * than DSC_TOOLCALL_MAX_HEADER bytes after its start, however many bytes have arrived, and what
 * goes out as content is the raw text up to a position the text fixes.
 */
#include "dsc_toolcall.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

#define LIT(s) s, (sizeof(s) - 1)

typedef enum { S_TEXT, S_BLOCK, S_HEAD, S_ARGS } state_t;

struct dsc_toolcall {
    dsc_toolcall_sink_t sink;
    void *ctx;
    state_t state;
    int v3;      /* ARGS: the call is in V3's format (arguments end with a ``` fence) */
    int n_calls; /* calls begun */
    int in_call; /* BLOCK: a call of this block completed (what is left may be format) */
    char *buf;
    size_t len, cap;
    size_t pos; /* BLOCK: bytes of buf already read (markers, separators); HEAD: header start */
};

static const char CB[] = DSC_TOOL_CALLS_BEGIN;

dsi_status_t dsc_toolcall_create(const dsc_toolcall_sink_t *sink, void *ctx, dsc_toolcall_t **out)
{
    if (sink == NULL || sink->on_content == NULL || sink->on_call == NULL ||
        sink->on_args == NULL || out == NULL)
        return DSI_ERR_INVALID_ARG;
    dsc_toolcall_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        DSI_ERROR("toolcall: out of memory");
        return DSI_ERR_NOMEM;
    }
    p->sink = *sink;
    p->ctx = ctx;
    *out = p;
    return DSI_OK;
}

void dsc_toolcall_destroy(dsc_toolcall_t *p)
{
    if (p == NULL)
        return;
    free(p->buf);
    free(p);
}

int dsc_toolcall_count(const dsc_toolcall_t *p)
{
    return p->n_calls;
}

static size_t find(const char *s, size_t len, const char *pat, size_t plen)
{
    for (size_t i = 0; i + plen <= len; i++) {
        if (s[i] == pat[0] && memcmp(s + i, pat, plen) == 0)
            return i;
    }
    return SIZE_MAX;
}

/* The longest proper prefix of pat that s ends with. */
static size_t overlap(const char *s, size_t len, const char *pat, size_t plen)
{
    for (size_t k = plen - 1 < len ? plen - 1 : len; k > 0; k--) {
        if (memcmp(s + len - k, pat, k) == 0)
            return k;
    }
    return 0;
}

/* s (n bytes) starts with pat: 1; is a proper prefix of it: -1 (wait for more); else 0. */
static int starts(const char *s, size_t n, const char *pat, size_t plen)
{
    if (n >= plen)
        return memcmp(s, pat, plen) == 0;
    return memcmp(s, pat, n) == 0 ? -1 : 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void drop(dsc_toolcall_t *p, size_t n)
{
    if (n == 0)
        return; /* buf may still be NULL */
    memmove(p->buf, p->buf + n, p->len - n);
    p->len -= n;
}

static void content(dsc_toolcall_t *p, size_t n)
{
    if (n > 0)
        p->sink.on_content(p->ctx, p->buf, n);
    drop(p, n);
}

/* The block's raw text up to `upto` goes out as content; the rest is read again as text. */
static void malformed(dsc_toolcall_t *p, size_t upto, const char *why)
{
    DSI_WARN("toolcall: generated tool-call block does not follow the format (%s): its %zu "
             "bytes are returned as content",
             why, upto);
    content(p, upto);
    p->state = S_TEXT;
    p->in_call = 0;
}

static void step_text(dsc_toolcall_t *p, int final, int *more)
{
    size_t at = find(p->buf, p->len, LIT(CB));
    if (at == SIZE_MAX) {
        content(p, p->len - (final ? 0 : overlap(p->buf, p->len, LIT(CB))));
        return;
    }
    content(p, at);
    p->state = S_BLOCK;
    p->pos = sizeof(CB) - 1;
    p->in_call = 0;
    *more = 1;
}

static void step_block(dsc_toolcall_t *p, int final, int *more)
{
    size_t q = p->pos;
    while (q < p->len && is_space(p->buf[q]))
        q++;
    const char *rest = p->buf + q;
    size_t n = p->len - q;
    int cb = starts(rest, n, LIT(DSC_TOOL_CALL_BEGIN)),
        ce = starts(rest, n, LIT(DSC_TOOL_CALLS_END));
    if (cb == 1) {
        p->state = S_HEAD;
        p->pos = q + sizeof(DSC_TOOL_CALL_BEGIN) - 1;
        *more = 1;
    } else if (ce == 1) {
        drop(p, q + sizeof(DSC_TOOL_CALLS_END) - 1); /* the block's markers: format */
        p->state = S_TEXT;
        p->in_call = 0;
        *more = 1;
    } else if (n > 0 && cb == 0 && ce == 0) {
        /* Text after a completed call (V3 may end the block without <｜tool▁calls▁end｜>) is
         * text again, its leading whitespace included; a block without a call is content. */
        if (p->in_call) {
            p->state = S_TEXT;
            p->in_call = 0;
        } else {
            malformed(p, q, "no <｜tool▁call▁begin｜> after <｜tool▁calls▁begin｜>");
        }
        *more = 1;
    } else if (final) {
        /* The text ended here: whitespace after a completed call is format. */
        if (p->in_call && n == 0) {
            p->len = 0;
            p->state = S_TEXT;
        } else {
            malformed(p, p->len, "the text ends inside the block");
        }
    }
}

/* V3's header after the separator: NAME\n```json\n (or ```\n). Returns the bytes it takes
 * (0: wait for more, SIZE_MAX: malformed); *name_len is the name's. */
static size_t v3_header(const char *s, size_t n, size_t limit, int final, size_t *name_len)
{
    size_t nl = find(s, n < limit ? n : limit, "\n", 1);
    if (nl == SIZE_MAX)
        return n >= limit || final ? SIZE_MAX : 0;
    if (nl == 0)
        return SIZE_MAX;
    const char *f = s + nl + 1;
    size_t fn = n - nl - 1;
    int a = starts(f, fn, LIT("```json\n")), b = starts(f, fn, LIT("```\n"));
    *name_len = nl;
    if (a == 1)
        return nl + 1 + 8;
    if (b == 1)
        return nl + 1 + 4;
    return (a == -1 || b == -1) && !final ? 0 : SIZE_MAX;
}

static void step_head(dsc_toolcall_t *p, int final, int *more)
{
    const size_t h = p->pos;
    const char *s = p->buf + h;
    size_t n = p->len - h, sep = find(s, n, LIT(DSC_TOOL_SEP));
    const size_t sl = sizeof(DSC_TOOL_SEP) - 1;
    if (sep == SIZE_MAX || sep > DSC_TOOLCALL_MAX_HEADER) {
        if (n > DSC_TOOLCALL_MAX_HEADER + sl || sep != SIZE_MAX)
            malformed(p, h, "no <｜tool▁sep｜> in the call's header");
        else if (final)
            malformed(p, p->len, "the text ends inside a call's header");
        *more = p->state != S_HEAD;
        return;
    }
    const char *after = s + sep + sl;
    size_t an = n - sep - sl, name_len = sep, take = sep + sl;
    const char *name = s;
    int v3 = 0;
    if (sep == 8 && memcmp(s, "function", 8) == 0) {
        if (an == 0 && !final)
            return;
        v3 = an > 0 && after[0] != '{' && after[0] != '[';
    }
    if (v3) {
        size_t t = v3_header(after, an, DSC_TOOLCALL_MAX_HEADER - sep, final, &name_len);
        if (t == 0)
            return;
        if (t == SIZE_MAX) {
            malformed(p, final ? p->len : h, "no NAME\\n```json\\n after function<｜tool▁sep｜>");
            *more = 1;
            return;
        }
        name = after;
        take += t;
    }
    if (name_len == 0 || find(name, name_len, "\n", 1) != SIZE_MAX ||
        find(name, name_len, "<｜", 4) != SIZE_MAX) {
        malformed(p, h, "the function name is empty or holds a newline or a marker");
        *more = 1;
        return;
    }
    p->sink.on_call(p->ctx, p->n_calls, name, name_len);
    drop(p, h + take);
    p->state = S_ARGS;
    p->v3 = v3;
    *more = 1;
}

static void args(dsc_toolcall_t *p, size_t n)
{
    if (n > 0)
        p->sink.on_args(p->ctx, p->n_calls, p->buf, n);
    drop(p, n);
}

static void step_args(dsc_toolcall_t *p, int final, int *more)
{
    size_t at = find(p->buf, p->len, LIT(DSC_TOOL_CALL_END));
    if (at == SIZE_MAX) {
        if (final) {
            DSI_WARN("toolcall: the text ends inside call %d's arguments: they are returned cut "
                     "off",
                     p->n_calls);
            args(p, p->len);
            p->n_calls++;
            p->state = S_TEXT;
            return;
        }
        size_t keep = p->len - overlap(p->buf, p->len, LIT(DSC_TOOL_CALL_END));
        while (p->v3 && keep > 0 && (is_space(p->buf[keep - 1]) || p->buf[keep - 1] == '`'))
            keep--; /* could be the closing fence */
        args(p, keep);
        return;
    }
    size_t end = at;
    if (p->v3) { /* the closing "\n```" */
        while (end > 0 && is_space(p->buf[end - 1]))
            end--;
        for (int k = 0; k < 3 && end > 0 && p->buf[end - 1] == '`'; k++)
            end--;
        while (end > 0 && is_space(p->buf[end - 1]))
            end--;
    }
    args(p, end);
    drop(p, at - end + sizeof(DSC_TOOL_CALL_END) - 1);
    p->n_calls++;
    p->state = S_BLOCK;
    p->pos = 0;
    p->in_call = 1;
    *more = 1;
}

static void run(dsc_toolcall_t *p, int final)
{
    int more = 1;
    while (more) {
        more = 0;
        switch (p->state) {
        case S_TEXT:
            step_text(p, final, &more);
            break;
        case S_BLOCK:
            step_block(p, final, &more);
            break;
        case S_HEAD:
            step_head(p, final, &more);
            break;
        case S_ARGS:
            step_args(p, final, &more);
            break;
        }
    }
}

dsi_status_t dsc_toolcall_feed(dsc_toolcall_t *p, const char *text, size_t len)
{
    if (len == 0)
        return DSI_OK;
    if (p->len + len > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + len)
            cap *= 2;
        char *b = realloc(p->buf, cap);
        if (b == NULL) {
            DSI_ERROR("toolcall: out of memory buffering %zu bytes", p->len + len);
            return DSI_ERR_NOMEM;
        }
        p->buf = b;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, text, len);
    p->len += len;
    run(p, 0);
    return DSI_OK;
}

dsi_status_t dsc_toolcall_finish(dsc_toolcall_t *p)
{
    run(p, 1);
    return DSI_OK;
}
