/*
 * dsc_chat.c - the DeepSeek V3 / R1 chat templates rendered natively (see dsc_chat.h).
 *
 * The code follows the Jinja template of DeepSeek-V3's tokenizer_config.json statement by
 * statement; `ns` below is the template's namespace object. Its quirks are kept on purpose: the
 * "first tool call" flag is never reset (only the very first tool call of a conversation opens
 * with <｜tool▁calls▁begin｜>, and only later ones close the block), nor is the "first tool output"
 * flag.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dsc_chat.h"
#include "dsc_chat_impl.h"
#include "dsi_log.h"

#define BOS_DEFAULT "<｜begin▁of▁sentence｜>"

struct dsc_chat_template {
    dsc_chat_style_t style;
    char *bos; /* the bos_token text the template starts with */
};

dsi_status_t dsc_chat_template_create(dsc_chat_style_t style, const char *bos_token,
                                      dsc_chat_template_t **out)
{
    if ((style != DSC_CHAT_V3 && style != DSC_CHAT_R1 && style != DSC_CHAT_V31) || out == NULL)
        return DSI_ERR_INVALID_ARG;
    dsc_chat_template_t *tpl = calloc(1, sizeof(*tpl));
    if (tpl == NULL || (tpl->bos = strdup(bos_token ? bos_token : BOS_DEFAULT)) == NULL) {
        free(tpl);
        return DSI_ERR_NOMEM;
    }
    tpl->style = style;
    *out = tpl;
    return DSI_OK;
}

void dsc_chat_template_destroy(dsc_chat_template_t *tpl)
{
    if (tpl == NULL)
        return;
    free(tpl->bos);
    free(tpl);
}

dsc_chat_style_t dsc_chat_template_style(const dsc_chat_template_t *tpl)
{
    return tpl->style;
}

dsi_status_t dsc_chat_style_parse(const char *name, dsc_chat_style_t *out)
{
    if (name != NULL && strcasecmp(name, "v3") == 0)
        *out = DSC_CHAT_V3;
    else if (name != NULL && strcasecmp(name, "r1") == 0)
        *out = DSC_CHAT_R1;
    else if (name != NULL && strcasecmp(name, "v3.1") == 0)
        *out = DSC_CHAT_V31;
    else if (name != NULL && strcasecmp(name, "auto") == 0)
        *out = DSC_CHAT_AUTO;
    else
        return DSI_ERR_INVALID_ARG;
    return DSI_OK;
}

const char *dsc_chat_style_name(dsc_chat_style_t style)
{
    return style == DSC_CHAT_V3    ? "v3"
           : style == DSC_CHAT_R1  ? "r1"
           : style == DSC_CHAT_V31 ? "v3.1"
                                   : "auto";
}

dsc_chat_role_t dsc_chat_role_parse(const char *name)
{
    static const char *const names[] = {"system", "user", "assistant", "tool"};
    for (int i = 0; i < 4 && name != NULL; i++) {
        if (strcmp(name, names[i]) == 0)
            return (dsc_chat_role_t)i;
    }
    return DSC_CHAT_ROLE_OTHER;
}

/* The text after the last "</think>" (R1 drops earlier turns' reasoning). */
static const char *after_think(const char *s, size_t len, size_t *out_len)
{
    static const char tag[] = "</think>";
    const size_t tl = sizeof(tag) - 1;
    const char *start = s;
    for (size_t i = 0; i + tl <= len; i++) {
        if (s[i] == '<' && memcmp(s + i, tag, tl) == 0)
            start = s + i + tl;
    }
    *out_len = len - (size_t)(start - s);
    return start;
}

int dsc_chat_need_content(const dsc_chat_message_t *m, size_t i)
{
    if (m->content != NULL)
        return 1;
    static const char *const roles[] = {"system", "user", "assistant", "tool", "other"};
    DSI_ERROR("chat: message %zu (%s) has no content", i, roles[m->role]);
    return 0;
}

dsi_status_t dsc_chat_put_system(sbuf_t *b, const dsc_chat_message_t *msgs, size_t n)
{
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].role != DSC_CHAT_ROLE_SYSTEM)
            continue;
        if (!dsc_chat_need_content(&msgs[i], i))
            return DSI_ERR_BAD_REQUEST;
        if (!first)
            puts_(b, "\n\n");
        put(b, msgs[i].content, msgs[i].content_len);
        first = 0;
    }
    return DSI_OK;
}

static void put_tool_call(sbuf_t *b, const dsc_chat_tool_call_t *t)
{
    puts_(b, t->type);
    puts_(b, "<｜tool▁sep｜>");
    puts_(b, t->name);
    puts_(b, "\n```json\n");
    puts_(b, t->arguments);
    puts_(b, "\n```<｜tool▁call▁end｜>");
}

/* The namespace of the template. */
typedef struct {
    int is_first, is_tool, is_output_first;
} ns_t;

/* `cont`: the message is continued (its reasoning kept, its end dropped by the caller). */
static dsi_status_t render_assistant(const dsc_chat_template_t *tpl, const dsc_chat_message_t *m,
                                     size_t i, int cont, ns_t *ns, sbuf_t *b)
{
    if (m->content == NULL) {
        ns->is_tool = 0;
        for (size_t k = 0; k < m->n_tool_calls; k++) {
            const dsc_chat_tool_call_t *t = &m->tool_calls[k];
            if (t->type == NULL || t->name == NULL || t->arguments == NULL) {
                DSI_ERROR("chat: message %zu: tool call %zu lacks type, name or arguments", i, k);
                return DSI_ERR_BAD_REQUEST;
            }
            if (!ns->is_first) {
                puts_(b, "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>");
                put_tool_call(b, t);
                ns->is_first = 1;
            } else {
                puts_(b, "\n<｜tool▁call▁begin｜>");
                put_tool_call(b, t);
                puts_(b, "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
            }
        }
        return DSI_OK;
    }
    if (ns->is_tool) {
        puts_(b, "<｜tool▁outputs▁end｜>");
        put(b, m->content, m->content_len);
        puts_(b, "<｜end▁of▁sentence｜>");
        ns->is_tool = 0;
        return DSI_OK;
    }
    size_t len = m->content_len;
    const char *c =
        tpl->style == DSC_CHAT_R1 && !cont ? after_think(m->content, len, &len) : m->content;
    puts_(b, "<｜Assistant｜>");
    put(b, c, len);
    puts_(b, "<｜end▁of▁sentence｜>");
    return DSI_OK;
}

static void render_tool(const dsc_chat_message_t *m, ns_t *ns, sbuf_t *b)
{
    ns->is_tool = 1;
    puts_(b, ns->is_output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>"
                                 : "\n<｜tool▁output▁begin｜>");
    put(b, m->content, m->content_len);
    puts_(b, "<｜tool▁output▁end｜>");
    ns->is_output_first = 0;
}

int dsc_chat_opens_thinking(const dsc_chat_template_t *tpl, const dsc_chat_opts_t *opts)
{
    return tpl->style == DSC_CHAT_R1 ||
           (tpl->style == DSC_CHAT_V31 && opts != NULL && opts->thinking);
}

int dsc_chat_continue_opens_thinking(const dsc_chat_template_t *tpl, const dsc_chat_opts_t *opts,
                                     const char *last, size_t len)
{
    static const char open[] = "<think>", close[] = "</think>";
    size_t o = SIZE_MAX, c = SIZE_MAX; /* the last of each */
    for (size_t i = 0; last != NULL && i < len; i++) {
        if (i + 7 <= len && memcmp(last + i, open, 7) == 0)
            o = i;
        if (i + 8 <= len && memcmp(last + i, close, 8) == 0)
            c = i;
    }
    if (tpl->style == DSC_CHAT_V31)
        return opts != NULL && opts->thinking && c == SIZE_MAX;
    return tpl->style == DSC_CHAT_R1 && o != SIZE_MAX && (c == SIZE_MAX || c < o);
}

static dsi_status_t render_v3(const dsc_chat_template_t *tpl, const dsc_chat_message_t *msgs,
                              size_t n, int add_generation_prompt, const dsc_chat_opts_t *opts,
                              char **out, size_t *out_len);

dsi_status_t dsc_chat_render_opts(const dsc_chat_template_t *tpl, const dsc_chat_message_t *msgs,
                                  size_t n, int add_generation_prompt, const dsc_chat_opts_t *opts,
                                  char **out, size_t *out_len)
{
    static const dsc_chat_opts_t none = {0, NULL, 0, 0};
    if (opts == NULL)
        opts = &none;
    if (opts->continue_final && !dsc_chat_can_continue(msgs, n))
        return DSI_ERR_BAD_REQUEST;
    if (tpl != NULL && tpl->style == DSC_CHAT_V31)
        return dsc_chat_render_v31(tpl->bos, msgs, n, add_generation_prompt, opts, out, out_len);
    return render_v3(tpl, msgs, n, add_generation_prompt, opts, out, out_len);
}

dsi_status_t dsc_chat_render(const dsc_chat_template_t *tpl, const dsc_chat_message_t *msgs,
                             size_t n, int add_generation_prompt, char **out, size_t *out_len)
{
    return dsc_chat_render_opts(tpl, msgs, n, add_generation_prompt, NULL, out, out_len);
}

static dsi_status_t render_v3(const dsc_chat_template_t *tpl, const dsc_chat_message_t *msgs,
                              size_t n, int add_generation_prompt, const dsc_chat_opts_t *opts,
                              char **out, size_t *out_len)
{
    sbuf_t b = {0};
    ns_t ns = {0, 0, 1};
    dsi_status_t st = DSI_OK;
    if (tpl == NULL || (msgs == NULL && n > 0) || out == NULL || out_len == NULL)
        return DSI_ERR_INVALID_ARG;
    /* Pass 1: the system prompts, joined by blank lines, come right after BOS. */
    puts_(&b, tpl->bos);
    if ((st = dsc_chat_put_system(&b, msgs, n)) != DSI_OK)
        goto fail;
    if (opts->tools_json != NULL &&
        (st = dsc_chat_put_tools_v3(&b, opts->tools_json, opts->tools_len)) != DSI_OK)
        goto fail;
    /* Pass 2: the turns. */
    for (size_t i = 0; i < n && st == DSI_OK; i++) {
        const dsc_chat_message_t *m = &msgs[i];
        switch (m->role) {
        case DSC_CHAT_ROLE_USER:
            if (!dsc_chat_need_content(m, i)) {
                st = DSI_ERR_BAD_REQUEST;
                break;
            }
            ns.is_tool = 0;
            puts_(&b, "<｜User｜>");
            put(&b, m->content, m->content_len);
            break;
        case DSC_CHAT_ROLE_ASSISTANT:
            st = render_assistant(tpl, m, i, opts->continue_final && i + 1 == n, &ns, &b);
            break;
        case DSC_CHAT_ROLE_TOOL:
            if (!dsc_chat_need_content(m, i)) {
                st = DSI_ERR_BAD_REQUEST;
                break;
            }
            render_tool(m, &ns, &b);
            break;
        default: /* system: done above; other roles: ignored by the template */
            break;
        }
    }
    if (st != DSI_OK)
        goto fail;
    if (opts->continue_final)
        dsc_chat_strip_eos(&b); /* the last message is an assistant answer: no tool outputs */
    else if (ns.is_tool)
        puts_(&b, "<｜tool▁outputs▁end｜>");
    if (add_generation_prompt && !ns.is_tool && !opts->continue_final)
        puts_(&b, tpl->style == DSC_CHAT_R1 ? "<｜Assistant｜><think>\n" : "<｜Assistant｜>");
    if (b.failed) {
        DSI_ERROR("chat: out of memory rendering %zu messages", n);
        st = DSI_ERR_NOMEM;
        goto fail;
    }
    *out = b.p;
    *out_len = b.len;
    return DSI_OK;
fail:
    free(b.p);
    return st;
}
