/*
 * dsc_chat_tools.c - what the V3 / R1 renderers add for tool calling and prefix continuation.
 *
 * The V3 and R1 templates render tool calls and tool outputs but no tool list. The list goes at
 * the end of the system prompt in the format of the DeepSeek-V3 tool template vLLM ships
 * (examples/tool_chat_template_deepseekv3.jinja): a "# Tools" heading, each tool as JSON (the
 * whole {"type": "function", "function": {...}} object, serialized as transformers' `tojson`
 * does: json.dumps with ensure_ascii=False, ", " and ": " separators, keys in the given order)
 * inside <tools></tools>, then the call format of the release. vLLM's template writes its
 * sentences with the template's own whitespace between them; here each ends with a newline.
 * tests/chat_tools_reference.py renders the same text with Jinja.
 */
#include <jansson.h>

#include "dsc_chat_impl.h"
#include "dsi_log.h"

static const char tools_head[] =
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
static const char tools_tail[] =
    "\n</tools>\n\n"
    "For function call returns, you should first print <｜tool▁calls▁begin｜>\n"
    "For each function call, you should return object like:\n"
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜><function_name>\n```json\n"
    "<function_arguments_in_json_format>\n```<｜tool▁call▁end｜>\n"
    "At the end of function call returns, you should print "
    "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>";

dsi_status_t dsc_chat_put_tools_v3(sbuf_t *b, const char *json, size_t len)
{
    json_error_t err;
    json_t *tools = json_loadb(json, len, JSON_DECODE_ANY, &err);
    dsi_status_t st = DSI_OK;
    size_t i;
    json_t *t;
    if (json_is_null(tools) || (json_is_array(tools) && json_array_size(tools) == 0))
        goto out; /* no tools: nothing to describe (vLLM's `{% if tools %}`) */
    if (!json_is_array(tools)) {
        DSI_ERROR("chat: tools must be an array%s%s", tools ? "" : ": ", tools ? "" : err.text);
        st = DSI_ERR_BAD_REQUEST;
        goto out;
    }
    puts_(b, tools_head);
    json_array_foreach(tools, i, t)
    {
        if (!json_is_object(t)) {
            DSI_ERROR("chat: tools[%zu] is not an object", i);
            st = DSI_ERR_BAD_REQUEST;
            goto out;
        }
        puts_(b, "\n");
        dsc_chat_tojson(b, t);
    }
    puts_(b, tools_tail);
out:
    json_decref(tools);
    return st;
}

int dsc_chat_can_continue(const dsc_chat_message_t *msgs, size_t n)
{
    const dsc_chat_message_t *m = n > 0 ? &msgs[n - 1] : NULL;
    if (m != NULL && m->role == DSC_CHAT_ROLE_ASSISTANT && m->content != NULL &&
        m->tool_calls == NULL)
        return 1;
    DSI_ERROR("chat: only a last assistant message with content and without tool calls can be "
              "continued");
    return 0;
}

void dsc_chat_strip_eos(sbuf_t *b)
{
    static const char eos[] = "<｜end▁of▁sentence｜>";
    const size_t n = sizeof(eos) - 1;
    if (!b->failed && b->len >= n && memcmp(b->p + b->len - n, eos, n) == 0) {
        b->len -= n;
        b->p[b->len] = '\0';
    }
}
