/*
 * dsc_chat_impl.h - what the chat template renderers share: the output buffer and the V3.1
 * renderer (dsc_chat_v31.c), which dsc_chat_render_opts calls for DSC_CHAT_V31.
 */
#ifndef DSC_CHAT_IMPL_H
#define DSC_CHAT_IMPL_H

#include <stdlib.h>
#include <string.h>

#include "dsc_chat.h"

/* A growable output buffer; `failed` sticks after an allocation failure. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} sbuf_t;

static inline void put(sbuf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void puts_(sbuf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

/* dsc_chat_tojson.c: `v` as the templates' tojson filter writes it (Python's json.dumps with
 * ensure_ascii=False). */
struct json_t;
void dsc_chat_tojson(sbuf_t *b, const struct json_t *v);

/* dsc_chat_tools.c: the tools section the V3 and R1 renderers append to the system prompt
 * ("\n\n# Tools..."); DSI_ERR_BAD_REQUEST (logged) when `json` is not an array of objects. */
dsi_status_t dsc_chat_put_tools_v3(sbuf_t *b, const char *json, size_t len);
/* Whether the rendered continuation of a last assistant message is valid: role assistant,
 * content present, no tool calls (logged otherwise). */
int dsc_chat_can_continue(const dsc_chat_message_t *msgs, size_t n);
/* Whether message i has content (logged, naming it, when it has none). */
int dsc_chat_need_content(const dsc_chat_message_t *m, size_t i);
/* The system messages' contents joined by blank lines (both templates' system prompt);
 * DSI_ERR_BAD_REQUEST when one has no content. */
dsi_status_t dsc_chat_put_system(sbuf_t *b, const dsc_chat_message_t *msgs, size_t n);
/* Drop a trailing <｜end▁of▁sentence｜> (the continued message's end). */
void dsc_chat_strip_eos(sbuf_t *b);

/* The V3.1 template with BOS text `bos`; contract as dsc_chat_render_opts. */
dsi_status_t dsc_chat_render_v31(const char *bos, const dsc_chat_message_t *msgs, size_t n,
                                 int add_generation_prompt, const dsc_chat_opts_t *opts, char **out,
                                 size_t *out_len);

#endif
