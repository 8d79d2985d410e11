/*
 * test_unit_chat.c - the native chat templates against Jinja renderings of the real template, and
 * against golden.json (rendered text and token ids) of the reference.
 *
 * EXPECTED below was produced outside this project by jinja2 3.1.6 rendering the chat_template
 * of ../shared/fixtures/tokenizer/tokenizer_config.json (and, for r1, the same template with R1's
 * two changes: the "</think>" split of earlier answers and the "<think>\n" generation prompt) in
 * the sandboxed environment transformers uses (trim_blocks, lstrip_blocks), for each conversation
 * in both styles, with and without the generation prompt.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_chat.h"
#include "dsc_tokenizer.h"
#include "dsi_test.h"

static const char EXPECTED[] =
#include "test_unit_chat_expected.inc"
    ;

static void check_jinja_renderings(void)
{
    json_error_t err;
    json_t *root = json_loads(EXPECTED, 0, &err);
    DSI_CHECK(root != NULL);
    const json_t *convs = json_object_get(root, "convs"), *msgs;
    const char *name;
    dsc_chat_template_t *tpl[2];
    DSI_CHECK_INT_EQ(dsc_chat_template_create(DSC_CHAT_V3, NULL, &tpl[0]), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_chat_template_create(DSC_CHAT_R1, NULL, &tpl[1]), DSI_OK);
    int n_cases = 0;
    json_object_foreach((json_t *)convs, name, msgs)
    {
        char *text = json_dumps(msgs, JSON_COMPACT);
        for (int style = 0; style < 2; style++) {
            for (int gen = 0; gen < 2; gen++) {
                char key[128];
                snprintf(key, sizeof(key), "%s/%s/%d", name, style ? "r1" : "v3", gen);
                const char *want =
                    json_string_value(json_object_get(json_object_get(root, "expected"), key));
                char *out = NULL;
                size_t len = 0;
                DSI_CHECK_INT_EQ(
                    dsc_chat_render_json(tpl[style], text, strlen(text), gen, &out, &len), DSI_OK);
                DSI_CHECK_STR_EQ(out, want);
                if (out == NULL || want == NULL || strcmp(out, want) != 0)
                    fprintf(stderr, "  case %s\n", key);
                DSI_CHECK_INT_EQ(len, out ? strlen(out) : 0);
                free(out);
                n_cases++;
            }
        }
        free(text);
    }
    DSI_CHECK_INT_EQ(n_cases, 16);
    dsc_chat_template_destroy(tpl[0]);
    dsc_chat_template_destroy(tpl[1]);
    json_decref(root);
}

/* golden.json: rendered text and ids of the reference (transformers + tokenizers). */
static void check_golden(void)
{
    char path[4200];
    json_error_t err;
    const char *dir = dsi_test_fixture("tokenizer");
    snprintf(path, sizeof(path), "%s/golden.json", dir);
    json_t *golden = json_load_file(path, 0, &err);
    dsc_chat_template_t *tpl = NULL;
    dsc_tokenizer_t *tok = NULL;
    DSI_CHECK(golden != NULL);
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dir, DSC_CHAT_AUTO, &tpl), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_tokenizer_load(dir, &tok), DSI_OK);
    if (golden == NULL || tpl == NULL || tok == NULL)
        return;
    DSI_CHECK_INT_EQ(dsc_chat_template_style(tpl), DSC_CHAT_V3);
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(golden, "chat"), i, c)
    {
        char *msgs = json_dumps(json_object_get(c, "messages"), JSON_COMPACT), *out = NULL;
        size_t len, n;
        int32_t *ids = NULL;
        int gen = json_is_true(json_object_get(c, "add_generation_prompt"));
        DSI_CHECK_INT_EQ(dsc_chat_render_json(tpl, msgs, strlen(msgs), gen, &out, &len), DSI_OK);
        DSI_CHECK_STR_EQ(out, json_string_value(json_object_get(c, "text")));
        DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, out, len, 0, &ids, &n), DSI_OK);
        const json_t *want = json_object_get(c, "ids");
        DSI_CHECK_INT_EQ(n, json_array_size(want));
        for (size_t k = 0; k < n && k < json_array_size(want); k++)
            DSI_CHECK_INT_EQ(ids[k], json_integer_value(json_array_get(want, k)));
        free(ids);
        free(out);
        free(msgs);
    }
    dsc_tokenizer_destroy(tok);
    dsc_chat_template_destroy(tpl);
    json_decref(golden);
}

/* The struct API with tool calls parsed from OpenAI JSON, as the HTTP backend uses it. */
static void check_struct_api(void)
{
    const char *calls_json = "[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                             "\"arguments\":{\"x\":1}}}]";
    dsc_chat_tool_call_t *calls = NULL;
    size_t n_calls = 0, len;
    DSI_CHECK_INT_EQ(dsc_chat_tool_calls_parse(calls_json, strlen(calls_json), &calls, &n_calls),
                     DSI_OK);
    DSI_CHECK_INT_EQ(n_calls, 1);
    if (calls == NULL)
        return;
    DSI_CHECK_STR_EQ(calls[0].type, "function");
    DSI_CHECK_STR_EQ(calls[0].name, "f");
    DSI_CHECK_STR_EQ(calls[0].arguments, "{\"x\":1}");
    dsc_chat_message_t msgs[] = {
        {DSC_CHAT_ROLE_USER, "a\0b", 3, NULL, 0},
        {DSC_CHAT_ROLE_ASSISTANT, NULL, 0, calls, n_calls},
        {DSC_CHAT_ROLE_TOOL, "ok", 2, NULL, 0},
    };
    dsc_chat_template_t *tpl;
    char *out;
    DSI_CHECK_INT_EQ(dsc_chat_template_create(DSC_CHAT_R1, "<s>", &tpl), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_chat_render(tpl, msgs, 3, 1, &out, &len), DSI_OK);
    static const char want[] = "<s><｜User｜>a\0b<｜Assistant｜><｜tool▁calls▁begin｜><"
                               "｜tool▁call▁begin｜>function<｜tool▁sep｜>f"
                               "\n```json\n{\"x\":1}\n```<｜tool▁call▁end｜><"
                               "｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>ok"
                               "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>";
    DSI_CHECK_INT_EQ(len, sizeof(want) - 1);
    DSI_CHECK(len == sizeof(want) - 1 && memcmp(out, want, len) == 0);
    free(out);
    /* Errors: a user message without content; a tool call without a name; bad JSON. */
    dsc_chat_message_t bad_user = {DSC_CHAT_ROLE_USER, NULL, 0, NULL, 0};
    out = (char *)0x1;
    DSI_CHECK_INT_EQ(dsc_chat_render(tpl, &bad_user, 1, 1, &out, &len), DSI_ERR_BAD_REQUEST);
    DSI_CHECK(out == (char *)0x1);
    dsc_chat_tool_call_t nameless = {"function", NULL, "{}"};
    dsc_chat_message_t bad_call = {DSC_CHAT_ROLE_ASSISTANT, NULL, 0, &nameless, 1};
    DSI_CHECK_INT_EQ(dsc_chat_render(tpl, &bad_call, 1, 1, &out, &len), DSI_ERR_BAD_REQUEST);
    const char *bad_json[] = {"{",
                              "{\"role\":\"user\"}",
                              "[{\"content\":\"x\"}]",
                              "[{\"role\":\"user\",\"content\":5}]",
                              "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]",
                              "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":{}}]"};
    for (int i = 0; i < 6; i++)
        DSI_CHECK_INT_EQ(dsc_chat_render_json(tpl, bad_json[i], strlen(bad_json[i]), 1, &out, &len),
                         DSI_ERR_BAD_REQUEST);
    DSI_CHECK_INT_EQ(dsc_chat_tool_calls_parse("[{\"type\":\"function\"}]", 21, &calls, &n_calls),
                     DSI_ERR_BAD_REQUEST);
    const char *parts = "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"he\"},"
                        "{\"type\":\"text\",\"text\":\"llo\"}]}]";
    DSI_CHECK_INT_EQ(dsc_chat_render_json(tpl, parts, strlen(parts), 0, &out, &len), DSI_OK);
    DSI_CHECK_STR_EQ(out, "<s><｜User｜>hello");
    free(out);
    dsc_chat_template_destroy(tpl);
    free(calls);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* Template selection from a model directory, and the override. */
static void check_load(void)
{
    dsc_chat_template_t *tpl = NULL;
    dsc_chat_style_t style;
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dsi_test_fixture("tiny-v3"), DSC_CHAT_AUTO, &tpl),
                     DSI_OK);
    DSI_CHECK(tpl != NULL && dsc_chat_template_style(tpl) == DSC_CHAT_V3);
    dsc_chat_template_destroy(tpl);
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dsi_test_fixture("tiny-v3"), DSC_CHAT_R1, &tpl),
                     DSI_OK);
    DSI_CHECK(tpl != NULL && dsc_chat_template_style(tpl) == DSC_CHAT_R1);
    dsc_chat_template_destroy(tpl);
    const char *dir = dsi_test_tmpdir();
    tpl = NULL;
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dir, DSC_CHAT_AUTO, &tpl), DSI_ERR_NOT_FOUND);
    DSI_CHECK(tpl == NULL);
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dir, DSC_CHAT_V3, &tpl), DSI_OK);
    dsc_chat_template_destroy(tpl);
    write_file(dir, "tokenizer_config.json",
               "{\"bos_token\":\"<B>\",\"chat_template\":\"{{'<｜User｜>'}}{{'<｜Assistant｜>"
               "<think>\\\\n'}}\"}");
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dir, DSC_CHAT_AUTO, &tpl), DSI_OK);
    DSI_CHECK(tpl != NULL && dsc_chat_template_style(tpl) == DSC_CHAT_R1);
    dsc_chat_template_destroy(tpl);
    write_file(dir, "tokenizer_config.json", "{\"chat_template\":\"{{ messages }}\"}");
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dir, DSC_CHAT_AUTO, &tpl), DSI_ERR_UNSUPPORTED);
    write_file(dir, "tokenizer_config.json", "{\"bos_token\": 7}");
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dir, DSC_CHAT_AUTO, &tpl), DSI_ERR_FORMAT);
    write_file(dir, "tokenizer_config.json", "not json");
    DSI_CHECK_INT_EQ(dsc_chat_template_load(dir, DSC_CHAT_AUTO, &tpl), DSI_ERR_FORMAT);
    dsi_test_rmtree(dir);
    DSI_CHECK_INT_EQ(dsc_chat_style_parse("R1", &style), DSI_OK);
    DSI_CHECK_INT_EQ(style, DSC_CHAT_R1);
    DSI_CHECK_INT_EQ(dsc_chat_style_parse("v4", &style), DSI_ERR_INVALID_ARG);
    DSI_CHECK_STR_EQ(dsc_chat_style_name(DSC_CHAT_V3), "v3");
}

int main(void)
{
    check_jinja_renderings();
    check_golden();
    check_struct_api();
    check_load();
    return dsi_test_finish();
}
