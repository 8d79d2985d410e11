/*
 * dsc_chat_v31.c - the DeepSeek-V3.1 chat template rendered natively (see dsc_chat.h).
 *
 * Follows the Jinja template of DeepSeek-V3.1's tokenizer_config.json statement by statement; `ns`
 * is the template's namespace object (is_first, is_tool, is_last_user). What V3.1 changed from
 * V3: the `thinking` variable picks "<think>" or "</think>" after "<｜Assistant｜>"; a tool call
 * is NAME<｜tool▁sep｜>ARGUMENTS with no type and no ```json fence; tool outputs are not wrapped
 * in <｜tool▁outputs▁begin｜>; after tool outputs no generation prompt is added (the answer
 * continues the same assistant turn); the request's tools are described at the end of the system
 * prompt, their parameters serialized as transformers' `tojson` does (dsc_chat_tojson).
 */
#include <jansson.h>

#include "dsc_chat_impl.h"
#include "dsi_log.h"

static const char tools_head[] = "## Tools\nYou have access to the following tools:\n";
static const char tools_tail[] =
    "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments"
    "<｜tool▁call▁end｜>{{additional_tool_calls}}<｜tool▁calls▁end｜>\n\nWhere:\n\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters "
    "Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces\n";

/* The tools section: "\n\n## Tools..." appended to the system prompt. */
static dsi_status_t put_tools(sbuf_t *b, const char *text, size_t len)
{
    json_error_t err;
    json_t *tools = json_loadb(text, len, JSON_DECODE_ANY, &err);
    dsi_status_t st = DSI_OK;
    if (json_is_null(tools)) /* "tools": null is no tools, as in the template */
        goto out;
    if (!json_is_array(tools)) {
        DSI_ERROR("chat: tools must be an array%s%s", tools ? "" : ": ", tools ? "" : err.text);
        st = DSI_ERR_BAD_REQUEST;
        goto out;
    }
    puts_(b, "\n\n");
    puts_(b, tools_head);
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        const json_t *fn = json_object_get(t, "function");
        const json_t *name = json_object_get(fn, "name");
        const json_t *desc = json_object_get(fn, "description");
        const json_t *params = json_object_get(fn, "parameters");
        if (!json_is_string(name) || !json_is_string(desc) || params == NULL) {
            DSI_ERROR("chat: tools[%zu]: function.name, function.description (strings) and "
                      "function.parameters are required",
                      i);
            st = DSI_ERR_BAD_REQUEST;
            goto out;
        }
        puts_(b, "\n### ");
        put(b, json_string_value(name), json_string_length(name));
        puts_(b, "\nDescription: ");
        put(b, json_string_value(desc), json_string_length(desc));
        puts_(b, "\n\nParameters: ");
        dsc_chat_tojson(b, params);
        puts_(b, "\n");
    }
    puts_(b, tools_tail);
out:
    json_decref(tools);
    return st;
}

typedef struct {
    int is_first, is_tool, is_last_user;
} ns_t;

/* An assistant message with tool_calls (present and not null, possibly empty). */
static dsi_status_t put_tool_calls(sbuf_t *b, const dsc_chat_message_t *m, size_t i, ns_t *ns)
{
    if (ns->is_last_user)
        puts_(b, "<｜Assistant｜></think>");
    ns->is_last_user = ns->is_first = ns->is_tool = 0;
    for (size_t k = 0; k < m->n_tool_calls; k++) {
        const dsc_chat_tool_call_t *t = &m->tool_calls[k];
        if (t->name == NULL || t->arguments == NULL) {
            DSI_ERROR("chat: message %zu: tool call %zu lacks name or arguments", i, k);
            return DSI_ERR_BAD_REQUEST;
        }
        if (!ns->is_first) {
            if (m->content != NULL)
                put(b, m->content, m->content_len);
            puts_(b, "<｜tool▁calls▁begin｜>");
            ns->is_first = 1;
        }
        puts_(b, "<｜tool▁call▁begin｜>");
        puts_(b, t->name);
        puts_(b, "<｜tool▁sep｜>");
        puts_(b, t->arguments);
        puts_(b, "<｜tool▁call▁end｜>");
    }
    puts_(b, "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>");
    return DSI_OK;
}

/* An assistant message with text: earlier reasoning (up to the first "</think>") is dropped. A
 * continued message (the template's `prefix`) opens with "<think>" in thinking mode. */
static void put_answer(sbuf_t *b, const dsc_chat_message_t *m, int prefix_think, ns_t *ns)
{
    static const char tag[] = "</think>";
    const size_t tl = sizeof(tag) - 1;
    if (ns->is_last_user)
        puts_(b, prefix_think ? "<｜Assistant｜><think>" : "<｜Assistant｜></think>");
    ns->is_last_user = 0;
    const char *c = m->content;
    size_t len = m->content_len;
    if (ns->is_tool) {
        ns->is_tool = 0;
    } else {
        for (size_t k = 0; k + tl <= len; k++)
            if (c[k] == '<' && memcmp(c + k, tag, tl) == 0) {
                c += k + tl;
                len -= k + tl;
                break;
            }
    }
    put(b, c, len);
    puts_(b, "<｜end▁of▁sentence｜>");
}

static dsi_status_t put_turn(sbuf_t *b, const dsc_chat_message_t *m, size_t i, int prefix_think,
                             ns_t *ns)
{
    switch (m->role) {
    case DSC_CHAT_ROLE_USER:
        if (!dsc_chat_need_content(m, i))
            return DSI_ERR_BAD_REQUEST;
        ns->is_tool = ns->is_first = 0;
        ns->is_last_user = 1;
        puts_(b, "<｜User｜>");
        put(b, m->content, m->content_len);
        return DSI_OK;
    case DSC_CHAT_ROLE_ASSISTANT:
        if (m->tool_calls != NULL)
            return put_tool_calls(b, m, i, ns);
        if (!dsc_chat_need_content(m, i))
            return DSI_ERR_BAD_REQUEST;
        put_answer(b, m, prefix_think, ns);
        return DSI_OK;
    case DSC_CHAT_ROLE_TOOL:
        if (!dsc_chat_need_content(m, i))
            return DSI_ERR_BAD_REQUEST;
        ns->is_last_user = 0;
        ns->is_tool = 1;
        puts_(b, "<｜tool▁output▁begin｜>");
        put(b, m->content, m->content_len);
        puts_(b, "<｜tool▁output▁end｜>");
        return DSI_OK;
    default: /* system: in the prompt already; other roles: ignored by the template */
        return DSI_OK;
    }
}

dsi_status_t dsc_chat_render_v31(const char *bos, const dsc_chat_message_t *msgs, size_t n,
                                 int add_generation_prompt, const dsc_chat_opts_t *opts, char **out,
                                 size_t *out_len)
{
    sbuf_t b = {0};
    ns_t ns = {0, 0, 0};
    dsi_status_t st = DSI_OK;
    if ((msgs == NULL && n > 0) || out == NULL || out_len == NULL)
        return DSI_ERR_INVALID_ARG;
    /* The system prompt: system messages joined by blank lines, then the tools. */
    puts_(&b, bos);
    if ((st = dsc_chat_put_system(&b, msgs, n)) != DSI_OK)
        goto fail;
    if (opts->tools_json != NULL && (st = put_tools(&b, opts->tools_json, opts->tools_len)))
        goto fail;
    for (size_t i = 0; i < n && st == DSI_OK; i++)
        st = put_turn(&b, &msgs[i], i, opts->continue_final && opts->thinking && i + 1 == n, &ns);
    if (st != DSI_OK)
        goto fail;
    if (opts->continue_final)
        dsc_chat_strip_eos(&b);
    else if (add_generation_prompt && ns.is_last_user && !ns.is_tool)
        puts_(&b, opts->thinking ? "<｜Assistant｜><think>" : "<｜Assistant｜></think>");
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
