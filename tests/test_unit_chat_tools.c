/*
 * test_unit_chat_tools.c - the tool list and prefix continuation of the chat renderers against
 * Jinja, byte for byte. tests/chat_tools_reference.py (python3-jinja2) renders every case below
 * with the DeepSeek-V3 release template of the fixture tokenizer (its tool calls and tool
 * outputs as the release renders them, and the engine's tool list spliced in after the system
 * prompt: the format of vLLM's DeepSeek-V3 tool template) or with the V3.1 template of
 * tests/chat_v31_reference.py; continued answers as vLLM renders continue_final_message (no
 * generation prompt, the last message's end-of-sentence removed; V3.1's `prefix`). This program
 * renders the same cases with dsc_chat_render_json_opts and compares. Also: R1 keeps the
 * reasoning of a continued answer, which messages can be continued, and when the continued text
 * is still reasoning. Skipped (77) without python3 and jinja2 or without the fixtures.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_chat.h"
#include "dsi_test.h"
#include "dsi_test_chat.h"

#define TOOLS                                                                                     \
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather "   \
    "of a city, in °C\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":" \
    "\"string\",\"description\":\"the city, e.g. Zürich\"},\"days\":{\"type\":\"integer\"}},"    \
    "\"required\":[\"city\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"search\","        \
    "\"description\":\"Web search\",\"parameters\":{}}}]"
#define ODD_TOOLS                                                                              \
    "[{\"type\":\"function\",\"function\":{\"name\":\"odd\",\"description\":\"tab\\there, "    \
    "bell\\u0007, quote \\\" and \\\\ slash / é 漢\",\"parameters\":{\"a\":0.1,\"b\":1e-05," \
    "\"c\":1e16,\"d\":2.0,\"e\":-0.0,\"f\":123.456,\"g\":1.5e-7,\"h\":12345678901234567890.0," \
    "\"i\":-7,\"j\":[true,false,null],\"k\":{},\"l\":[],\"m\":0.0001,\"n\":1e15}}}]"
#define USER(t)   "{\"role\":\"user\",\"content\":\"" t "\"}"
#define SYS(t)    "{\"role\":\"system\",\"content\":\"" t "\"}"
#define ASST(t)   "{\"role\":\"assistant\",\"content\":\"" t "\"}"
#define TOOL(t)   "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"" t "\"}"
#define CALLS(cs) "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[" cs "]}"
#define CALL(name, args)                                                                      \
    "{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"" name "\",\"arguments\":" \
    "\"" args "\"}}"
#define ARGS_PARIS "{\\\"city\\\": \\\"Paris\\\"}"
#define ARGS_ROME  "{\\\"city\\\": \\\"Rome\\\"}"

static const char *const cases[] = {
    /* 0: V3, tools after the system prompt */
    "{\"style\":\"v3\",\"tools\":" TOOLS ",\"messages\":[" SYS("Be brief.") "," USER(
        "Weather in Paris?") "],\"add_generation_prompt\":true}",
    /* 1: V3, tools without a system prompt */
    "{\"style\":\"v3\",\"tools\":" TOOLS
    ",\"messages\":[" USER("hi") "],"
                                 "\"add_generation_prompt\":true}",
    /* 2: V3, two calls, two results, the answer, a new question */
    "{\"style\":\"v3\",\"tools\":" TOOLS
    ",\"messages\":[" USER("Paris and Rome?") "," CALLS(CALL("get_weather", ARGS_PARIS) "," CALL(
        "get_weather",
        ARGS_ROME)) "," TOOL("18") "," TOOL("21") "," ASST("Paris 18, Rome 21.") "," USER("thanks") "],\"add_generation_prompt\":true}",
    /* 3: V3, the chat ends in a tool result (no generation prompt after tool outputs) */
    "{\"style\":\"v3\",\"tools\":" TOOLS ",\"messages\":[" USER("Paris?") "," CALLS(CALL(
        "get_weather", ARGS_PARIS)) "," TOOL("{\\\"t\\\": 18}") "],"
                                                                "\"add_generation_prompt\":true}",
    /* 4: V3, an empty tool list describes nothing */
    "{\"style\":\"v3\",\"tools\":[],\"messages\":[" USER("hi") "],\"add_generation_prompt\":true}",
    /* 5: V3, a continued answer */
    "{\"style\":\"v3\",\"messages\":[" SYS("s") "," USER("Count to 3") "," ASST(
        "1, 2") "],\"continue_final\":true}",
    /* 6: V3, a continued answer after tool outputs */
    "{\"style\":\"v3\",\"tools\":" TOOLS ",\"messages\":[" USER("Paris?") "," CALLS(CALL(
        "get_weather", ARGS_PARIS)) "," TOOL("18") "," ASST("It is") "],"
                                                                     "\"continue_final\":true}",
    /* 7: V3, no generation prompt */
    "{\"style\":\"v3\",\"messages\":[" USER("hi") "],\"add_generation_prompt\":false}",
    /* 8: V3.1, a continued answer, not thinking */
    "{\"style\":\"v3.1\",\"messages\":[" USER("Count to 3") "," ASST(
        "1, 2") "],"
                "\"continue_final\":true}",
    /* 9: V3.1, a continued reasoning (thinking: the prefix opens with <think>) */
    "{\"style\":\"v3.1\",\"thinking\":true,\"messages\":[" USER("Count to 3") "," ASST(
        "Let me count") "],\"continue_final\":true}",
    /* 10: V3.1, tools and a continued answer */
    "{\"style\":\"v3.1\",\"tools\":" TOOLS
    ",\"messages\":[" USER("Paris?") "," ASST("I will call") "],\"continue_final\":true}",
    /* 11, 12: numbers and characters where JSON writers differ: Python's repr of floats,
     * lowercase \u escapes, non-ASCII as is */
    "{\"style\":\"v3\",\"tools\":" ODD_TOOLS
    ",\"messages\":[" USER("x") "],"
                                "\"add_generation_prompt\":true}",
    "{\"style\":\"v3.1\",\"tools\":" ODD_TOOLS
    ",\"messages\":[" USER("x") "],"
                                "\"add_generation_prompt\":true}",
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* What only the engine decides: R1 keeps a continued answer's reasoning, which last messages
 * can be continued, whether the continued text is still reasoning. */
static void check_engine_rules(void)
{
    dsc_chat_template_t *r1 = NULL, *v31 = NULL;
    DSI_CHECK_INT_EQ(dsc_chat_template_create(DSC_CHAT_R1, NULL, &r1), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_chat_template_create(DSC_CHAT_V31, NULL, &v31), DSI_OK);
    static const char *const conv = "[" USER("q") "," ASST("<think>a</think>b") "]";
    dsc_chat_opts_t cont = {0, NULL, 0, 1};
    char *out = NULL;
    size_t len = 0;
    DSI_CHECK_INT_EQ(dsc_chat_render_json_opts(r1, conv, strlen(conv), 0, &cont, &out, &len),
                     DSI_OK);
    DSI_CHECK_STR_EQ(out, "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜><think>a</think>b");
    free(out);
    /* not continuable: a user message last, a tool call last */
    static const char *const user_last = "[" USER("q") "]";
    static const char *const call_last = "[" USER("q") "," CALLS(CALL("f", "{}")) "]";
    DSI_CHECK_INT_EQ(
        dsc_chat_render_json_opts(r1, user_last, strlen(user_last), 0, &cont, &out, &len),
        DSI_ERR_BAD_REQUEST);
    DSI_CHECK_INT_EQ(
        dsc_chat_render_json_opts(v31, call_last, strlen(call_last), 0, &cont, &out, &len),
        DSI_ERR_BAD_REQUEST);
    DSI_CHECK_INT_EQ(dsc_chat_continue_opens_thinking(r1, &cont, "<think>\nhm", 10), 1);
    DSI_CHECK_INT_EQ(dsc_chat_continue_opens_thinking(r1, &cont, "<think>x</think>y", 17), 0);
    DSI_CHECK_INT_EQ(dsc_chat_continue_opens_thinking(r1, &cont, "plain", 5), 0);
    dsc_chat_opts_t think = {1, NULL, 0, 1};
    DSI_CHECK_INT_EQ(dsc_chat_continue_opens_thinking(v31, &think, "Let me", 6), 1);
    DSI_CHECK_INT_EQ(dsc_chat_continue_opens_thinking(v31, &cont, "Let me", 6), 0);
    /* a tool list that is not an array of objects */
    dsc_chat_template_t *v3 = NULL;
    DSI_CHECK_INT_EQ(dsc_chat_template_create(DSC_CHAT_V3, NULL, &v3), DSI_OK);
    dsc_chat_opts_t bad = {0, "[1]", 3, 0};
    DSI_CHECK_INT_EQ(
        dsc_chat_render_json_opts(v3, user_last, strlen(user_last), 1, &bad, &out, &len),
        DSI_ERR_BAD_REQUEST);
    dsc_chat_template_destroy(v3);
    dsc_chat_template_destroy(r1);
    dsc_chat_template_destroy(v31);
}

int main(void)
{
    check_engine_rules();
    if (system("python3 -c 'import jinja2' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIPPED: python3 with jinja2 (Debian's python3-jinja2) is missing\n");
        return 77;
    }
    const char *fixture = dsi_test_fixture("tokenizer");
    char fix[4096];
    if (fixture == NULL) {
        fprintf(stderr, "SKIPPED: no fixtures (DSINFER_FIXTURES)\n");
        return 77;
    }
    snprintf(fix, sizeof(fix), "%s", fixture);
    const char *dir = dsi_test_tmpdir();
    char config[4200];
    snprintf(config, sizeof(config), "%s/tokenizer_config.json", fix);
    dsi_test_chat_reference(dir, cases, N_CASES, "chat_tools_reference.py", config);

    /* V3 as the fixture tokenizer's template is detected, V3.1 by style */
    dsc_chat_template_t *tpl[2] = {NULL, NULL};
    DSI_CHECK_INT_EQ(dsc_chat_template_load(fix, DSC_CHAT_AUTO, &tpl[0]), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_chat_template_create(DSC_CHAT_V31, NULL, &tpl[1]), DSI_OK);
    if (tpl[0] != NULL && tpl[1] != NULL) {
        DSI_CHECK_INT_EQ(dsc_chat_template_style(tpl[0]), DSC_CHAT_V3);
        for (size_t i = 0; i < N_CASES; i++)
            dsi_test_chat_case(tpl[strstr(cases[i], "\"style\":\"v3.1\"") != NULL], dir, i,
                               cases[i]);
    }
    dsc_chat_template_destroy(tpl[0]);
    dsc_chat_template_destroy(tpl[1]);
    dsi_test_rmtree(dir);
    return dsi_test_finish();
}
