/*
 * test_unit_chat_v31.c - the native DeepSeek-V3.1 chat template against the Jinja original, byte
 * for byte. tests/chat_v31_reference.py (python3-jinja2) writes a tokenizer_config.json holding
 * V3.1's published chat_template (verbatim; with tools, plus the release's tool description in
 * the system prompt: see that file) into a temporary
 * directory and renders every case below with Jinja the way transformers does; this program loads
 * the directory with dsc_chat_template_load (style detected: v3.1), renders the same cases with
 * dsc_chat_render_json_opts and compares. Cases: thinking off and on, with and without the
 * generation prompt, several system prompts, earlier reasoning dropped, tools described in the
 * system prompt, tool calls with and without content, tool results (one and several, followed by
 * an answer or ending the chat), other roles ignored; and chats the template itself fails on
 * (refused by both). Skipped (77) without python3 and jinja2.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_chat.h"
#include "dsi_test.h"
#include "dsi_test_chat.h"

/* Tools in OpenAI's request format (non-ASCII and nested parameters on purpose). */
#define TOOLS                                                                                     \
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather "   \
    "of a city, in °C\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":" \
    "\"string\",\"description\":\"the city, e.g. Zürich\"},\"days\":{\"type\":\"integer\"}},"    \
    "\"required\":[\"city\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"search\","        \
    "\"description\":\"Web search\",\"parameters\":{}}}]"

#define CALL(id, name, args)                                                  \
    "{\"id\":\"" id "\",\"type\":\"function\",\"function\":{\"name\":\"" name \
    "\",\"arguments\":\"" args "\"}}"

static const char *const cases[] = {
    /* 0: one user turn, non-thinking */
    "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}],\"add_generation_prompt\":true}",
    /* 1: the same in thinking mode */
    "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}],\"add_generation_prompt\":true,"
    "\"thinking\":true}",
    /* 2: explicit thinking false, two system prompts, an earlier answer with its reasoning */
    "{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},{\"role\":\"system\","
    "\"content\":\"Answer in English.\"},{\"role\":\"user\",\"content\":\"2+2?\"},"
    "{\"role\":\"assistant\",\"content\":\"<think>easy</think>4\"},{\"role\":\"user\","
    "\"content\":\"and 3+3?\"}],\"add_generation_prompt\":true,\"thinking\":false}",
    /* 3: thinking on over several turns; a "</think>" in the answer itself stays after the first */
    "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":"
    "\"<think>r1</think>x</think>y\"},{\"role\":\"user\",\"content\":\"b\\nline\"}],"
    "\"add_generation_prompt\":true,\"thinking\":true}",
    /* 4: no generation prompt, the chat ends with an assistant answer */
    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":"
    "\"hello\"}],\"add_generation_prompt\":false}",
    /* 5: tools, two calls without content, two results, the answer, a new question */
    "{\"tools\":" TOOLS ",\"messages\":[{\"role\":\"system\",\"content\":\"Be helpful.\"},"
    "{\"role\":\"user\",\"content\":\"Weather in Paris and Rome?\"},{\"role\":\"assistant\","
    "\"content\":null,\"tool_calls\":[" CALL(
        "c1", "get_weather",
        "{\\\"city\\\": \\\"Paris\\\"}") "," CALL("c2", "get_weather",
                                                  "{\\\"city\\\": \\\"Rome\\\"}") "]},{\"role\":"
                                                                                  "\"tool\",\"tool_"
                                                                                  "call_id\":"
                                                                                  "\"c1\","
                                                                                  "\"content\":"
                                                                                  "\"18\"},{"
                                                                                  "\"role\":"
                                                                                  "\"tool\",\"tool_"
                                                                                  "call_id\":"
                                                                                  "\"c2\","
                                                                                  "\"content\":"
                                                                                  "\"24\"},{"
                                                                                  "\"role\":"
                                                                                  "\"assistant\","
                                                                                  "\"content\":"
                                                                                  "\"Paris 18, "
                                                                                  "Rome "
                                                                                  "24.\"},{"
                                                                                  "\"role\":"
                                                                                  "\"user\","
                                                                                  "\"content\":"
                                                                                  "\"Thanks\"}],"
                                                                                  "\"add_"
                                                                                  "generation_"
                                                                                  "prompt\":true}",
    /* 6: tools without a system prompt; a call with content; the chat ends in a tool result
     * (no generation prompt then) */
    "{\"tools\":" TOOLS ",\"messages\":[{\"role\":\"user\",\"content\":\"Search dsinfer\"},"
    "{\"role\":\"assistant\",\"content\":\"Let me look.\",\"tool_calls\":[" CALL(
        "c1", "search", "{\\\"q\\\":\\\"dsinfer\\\"}") "]},{\"role\":\"tool\",\"content\":"
                                                       "\"a C11 engine\"}],"
                                                       "\"add_generation_prompt\":true}",
    /* 7: tools with thinking on */
    "{\"tools\":" TOOLS ",\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"}],"
    "\"add_generation_prompt\":true,\"thinking\":true}",
    /* 8: tools: null is no tools; other roles are ignored */
    "{\"tools\":null,\"messages\":[{\"role\":\"developer\",\"content\":\"ignored\"},"
    "{\"role\":\"user\",\"content\":\"q\"}],\"add_generation_prompt\":true}",
    /* 9: a user turn after tool results */
    "{\"messages\":[{\"role\":\"user\",\"content\":\"u1\"},{\"role\":\"assistant\",\"content\":"
    "null,\"tool_calls\":[" CALL("c1", "search",
                                 "{}") "]},{\"role\":\"tool\",\"content\":\"r\"},{\"role\":"
                                       "\"user\",\"content\":\"u2\"}],"
                                       "\"add_generation_prompt\":true,\"thinking\":true}",
    /* 10: the template fails on a user message without content */
    "{\"messages\":[{\"role\":\"user\",\"content\":null}],\"add_generation_prompt\":true}",
    /* 11: the template fails on a tool without a description */
    "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
    "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"add_generation_prompt\":true}",
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

int main(void)
{
    if (system("python3 -c 'import jinja2' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIPPED: python3 with jinja2 (Debian's python3-jinja2) is missing\n");
        return 77;
    }
    const char *dir = dsi_test_tmpdir();
    dsi_test_chat_reference(dir, cases, N_CASES, "chat_v31_reference.py", NULL);

    /* The template is recognised from tokenizer_config.json alone. */
    dsc_chat_template_t *tpl = NULL;
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dir, DSC_CHAT_AUTO, &tpl), DSI_OK);
    if (tpl == NULL)
        return dsi_test_finish();
    DSI_CHECK_INT_EQ(dsc_chat_template_style(tpl), DSC_CHAT_V31);
    dsc_chat_opts_t on = {.thinking = 1}, off = {.thinking = 0};
    DSI_CHECK_INT_EQ(dsc_chat_opens_thinking(tpl, &on), 1);
    DSI_CHECK_INT_EQ(dsc_chat_opens_thinking(tpl, &off), 0);
    DSI_CHECK_INT_EQ(dsc_chat_opens_thinking(tpl, NULL), 0);
    dsc_chat_style_t s;
    DSI_CHECK_INT_EQ(dsc_chat_style_parse("v3.1", &s), DSI_OK);
    DSI_CHECK_INT_EQ(s, DSC_CHAT_V31);
    DSI_CHECK_STR_EQ(dsc_chat_style_name(DSC_CHAT_V31), "v3.1");

    for (size_t i = 0; i < N_CASES; i++)
        dsi_test_chat_case(tpl, dir, i, cases[i]);
    dsc_chat_template_destroy(tpl);
    dsi_test_rmtree(dir);
    return dsi_test_finish();
}
