/*
 * fuzz_chat - the chat template renderer (coordinator/text/dsc_chat*.c: dsc_chat_render_json,
 * dsc_chat_tool_calls_parse).
 *
 * Templates: V3 loaded from the real tokenizer_config.json of <fixtures>/tokenizer (as a served
 * model's is), and R1 with the release's BOS. Input: an OpenAI messages JSON array, rendered with
 * both templates, with and without the generation prompt; and parsed as a tool_calls array.
 * Checks: a rendered prompt starts with the BOS text, rendering with the generation prompt
 * succeeds exactly when rendering without it does, and extends that text.
 */
#include <string.h>

#include "dsc_chat.h"
#include "fuzz_util.h"

static dsc_chat_template_t *tpl[2];
static const char bos[] = "<\xef\xbd\x9c"
                          "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/tokenizer", fuzz_fixtures());
    if (dsc_chat_template_load(dir, DSC_CHAT_AUTO, &tpl[0]) != DSI_OK) {
        fuzz_fixture_missing("fuzz_chat", dir);
    }
    FUZZ_CHECK(dsc_chat_template_style(tpl[0]) == DSC_CHAT_V3);
    FUZZ_CHECK(dsc_chat_template_create(DSC_CHAT_R1, bos, &tpl[1]) == DSI_OK);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size ? size : 1); /* exactly sized: no NUL after the text */
    FUZZ_CHECK(json != NULL);
    memcpy(json, data, size);
    for (int t = 0; t < 2; t++) {
        char *out[2] = {NULL, NULL};
        size_t len[2] = {0, 0};
        dsi_status_t st[2];
        for (int agp = 0; agp < 2; agp++) {
            st[agp] = dsc_chat_render_json(tpl[t], json, size, agp, &out[agp], &len[agp]);
            if (st[agp] == DSI_OK) {
                FUZZ_CHECK(out[agp] != NULL && out[agp][len[agp]] == '\0');
                FUZZ_CHECK(len[agp] >= sizeof(bos) - 1 &&
                           memcmp(out[agp], bos, sizeof(bos) - 1) == 0);
            }
        }
        FUZZ_CHECK((st[0] == DSI_OK) == (st[1] == DSI_OK));
        if (st[0] == DSI_OK)
            FUZZ_CHECK(len[1] >= len[0] && memcmp(out[0], out[1], len[0]) == 0);
        free(out[0]);
        free(out[1]);
    }
    dsc_chat_tool_call_t *calls = NULL;
    size_t n = 0;
    if (dsc_chat_tool_calls_parse(json, size, &calls, &n) == DSI_OK) {
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(calls[i].type != NULL && calls[i].name != NULL &&
                       calls[i].arguments != NULL);
        free(calls);
    }
    free(json);
    return 0;
}
