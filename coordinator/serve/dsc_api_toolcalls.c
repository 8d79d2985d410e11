/*
 * dsc_api_toolcalls.c - the tool calls of one answer in OpenAI's shapes: message.tool_calls of a
 * whole response ([{"id": "call_...", "type": "function", "function": {"name", "arguments"}}]),
 * or the streamed delta.tool_calls (a call's first delta carries index, id, type, name and
 * arguments ""; the next ones {"index", "function": {"arguments": piece}}). Both are built from
 * the same parser events, so the deltas of a stream put together give the whole response.
 */
#include "dsc_api_impl.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "dsc_toolcall.h"
#include "dsi_log.h"

typedef struct {
    char id[32];
    dsc_api_jbuf_t name, args; /* raw UTF-8 */
} call_t;

struct dsc_api_toolcalls {
    dsc_toolcall_t *parser;
    dsc_api_toolcalls_sink_t sink;
    void *gen;
    int stream, parallel;
    int dropped;   /* calls left out (parallel_tool_calls false) */
    call_t *calls; /* [n] kept calls (a stream keeps only their ids) */
    int n, cap;
    int failed;
    uint64_t rng;
    dsc_api_jbuf_t scratch; /* one delta, or the whole array */
};

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* "call_" and 24 letters and digits, as OpenAI's ids look. */
static void make_id(dsc_api_toolcalls_t *t, char *id)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    memcpy(id, "call_", 5);
    for (int i = 0; i < 24; i++)
        id[5 + i] = alnum[next_rand(&t->rng) % 62];
    id[29] = '\0';
}

static void on_content(void *ctx, const char *text, size_t len)
{
    dsc_api_toolcalls_t *t = ctx;
    t->sink.content(t->gen, text, len);
}

static void on_call(void *ctx, int index, const char *name, size_t len)
{
    dsc_api_toolcalls_t *t = ctx;
    if (index > 0 && !t->parallel) {
        if (t->dropped++ == 0)
            DSI_WARN("api: the model made more than one tool call with parallel_tool_calls "
                     "false: only the first is returned");
        return;
    }
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 4;
        call_t *c = realloc(t->calls, (size_t)cap * sizeof(*c));
        if (c == NULL) {
            t->failed = 1;
            return;
        }
        t->calls = c;
        t->cap = cap;
    }
    call_t *c = &t->calls[t->n++];
    memset(c, 0, sizeof(*c));
    make_id(t, c->id);
    if (!t->stream) {
        dsc_api_jbuf_put(&c->name, name, len);
        return;
    }
    dsc_api_jbuf_t *b = &t->scratch;
    dsc_api_jbuf_reset(b);
    dsc_api_jbuf_printf(b,
                        "[{\"index\":%d,\"id\":\"%s\",\"type\":\"function\",\"function\":"
                        "{\"name\":",
                        index, c->id);
    dsc_api_jbuf_string(b, name, len);
    dsc_api_jbuf_puts(b, ",\"arguments\":\"\"}}]");
    if (b->failed)
        t->failed = 1;
    else
        t->sink.delta(t->gen, b->data);
}

static void on_args(void *ctx, int index, const char *text, size_t len)
{
    dsc_api_toolcalls_t *t = ctx;
    if (index >= t->n || t->failed)
        return; /* a call left out */
    if (!t->stream) {
        dsc_api_jbuf_put(&t->calls[index].args, text, len);
        return;
    }
    dsc_api_jbuf_t *b = &t->scratch;
    dsc_api_jbuf_reset(b);
    dsc_api_jbuf_printf(b, "[{\"index\":%d,\"function\":{\"arguments\":", index);
    dsc_api_jbuf_string(b, text, len);
    dsc_api_jbuf_puts(b, "}}]");
    if (b->failed)
        t->failed = 1;
    else
        t->sink.delta(t->gen, b->data);
}

dsc_api_toolcalls_t *dsc_api_toolcalls_create(const dsc_api_request_t *r, int stream,
                                              const dsc_api_toolcalls_sink_t *sink, void *gen)
{
    static const dsc_toolcall_sink_t events = {on_content, on_call, on_args};
    dsc_api_toolcalls_t *t = calloc(1, sizeof(*t));
    if (t == NULL || dsc_toolcall_create(&events, t, &t->parser) != DSI_OK) {
        DSI_ERROR("api: out of memory for a tool-call parser");
        free(t);
        return NULL;
    }
    t->sink = *sink;
    t->gen = gen;
    t->stream = stream;
    t->parallel = r->parallel_tool_calls;
    t->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)t;
    return t;
}

void dsc_api_toolcalls_destroy(dsc_api_toolcalls_t *t)
{
    if (t == NULL)
        return;
    dsc_toolcall_destroy(t->parser);
    for (int i = 0; i < t->n; i++) {
        dsc_api_jbuf_free(&t->calls[i].name);
        dsc_api_jbuf_free(&t->calls[i].args);
    }
    free(t->calls);
    dsc_api_jbuf_free(&t->scratch);
    free(t);
}

int dsc_api_toolcalls_feed(dsc_api_toolcalls_t *t, const char *text, size_t len)
{
    if (dsc_toolcall_feed(t->parser, text, len) != DSI_OK)
        t->failed = 1;
    return t->failed;
}

dsc_api_finish_t dsc_api_toolcalls_finish(dsc_api_toolcalls_t *t, dsc_api_finish_t finish)
{
    dsc_toolcall_finish(t->parser);
    return t->n > 0 && finish == DSC_API_FINISH_STOP ? DSC_API_FINISH_TOOL_CALLS : finish;
}

const char *dsc_api_toolcalls_json(dsc_api_toolcalls_t *t, int *failed)
{
    dsc_api_jbuf_t *b = &t->scratch;
    *failed = t->failed;
    if (t->n == 0 || t->failed)
        return NULL;
    dsc_api_jbuf_reset(b);
    for (int i = 0; i < t->n; i++) {
        call_t *c = &t->calls[i];
        dsc_api_jbuf_printf(b, "%s{\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":",
                            i ? "," : "[", c->id);
        dsc_api_jbuf_string(b, c->name.data ? c->name.data : "", c->name.len);
        dsc_api_jbuf_puts(b, ",\"arguments\":");
        dsc_api_jbuf_string(b, c->args.data ? c->args.data : "", c->args.len);
        dsc_api_jbuf_puts(b, "}}");
        *failed |= c->name.failed || c->args.failed;
    }
    dsc_api_jbuf_puts(b, "]");
    *failed |= b->failed;
    return *failed ? NULL : b->data;
}
