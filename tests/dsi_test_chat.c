/*
 * dsi_test_chat.c - the chat renderers against Jinja (dsi_test_chat.h).
 */
#include "dsi_test_chat.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_test.h"

int dsi_test_chat_reference(const char *dir, const char *const *cases, size_t n, const char *script,
                            const char *arg)
{
    char path[4200], cmd[12800];
    snprintf(path, sizeof(path), "%s/cases.json", dir);
    FILE *f = fopen(path, "w");
    DSI_CHECK(f != NULL);
    if (f == NULL)
        return -1;
    fputs("[", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s\n", i ? "," : "", cases[i]);
    fputs("]", f);
    fclose(f);
    const char *src = getenv("DSINFER_SOURCE");
    snprintf(cmd, sizeof(cmd), "python3 '%s/tests/%s' %s%s%s'%s'", src != NULL ? src : "../..",
             script, arg != NULL ? "'" : "", arg != NULL ? arg : "", arg != NULL ? "' " : "", dir);
    int rc = system(cmd);
    DSI_CHECK_INT_EQ(rc, 0);
    return rc == 0 ? 0 : -1;
}

void dsi_test_chat_case(const dsc_chat_template_t *tpl, const char *dir, size_t i,
                        const char *case_json)
{
    json_error_t err;
    json_t *c = json_loads(case_json, 0, &err);
    if (c == NULL) {
        fprintf(stderr, "case %zu is not JSON: %s\n", i, err.text);
        DSI_CHECK(0);
        return;
    }
    char *msgs = json_dumps(json_object_get(c, "messages"), JSON_ENCODE_ANY);
    const json_t *tools = json_object_get(c, "tools");
    char *tools_text = tools != NULL ? json_dumps(tools, JSON_ENCODE_ANY) : NULL;
    dsc_chat_opts_t opts = {json_is_true(json_object_get(c, "thinking")), tools_text,
                            tools_text ? strlen(tools_text) : 0,
                            json_is_true(json_object_get(c, "continue_final"))};
    int gen = json_is_true(json_object_get(c, "add_generation_prompt"));
    char *got = NULL, path[4200];
    size_t got_len = 0, want_len = 0;
    dsi_status_t st =
        dsc_chat_render_json_opts(tpl, msgs, strlen(msgs), gen, &opts, &got, &got_len);
    snprintf(path, sizeof(path), "%s/case-%zu.err", dir, i);
    char *want_err = dsi_test_read_file(path, &want_len);
    if (want_err != NULL) {
        if (st != DSI_ERR_BAD_REQUEST)
            fprintf(stderr, "case %zu: Jinja fails (%s), the renderer gave status %d\n", i,
                    want_err, (int)st);
        DSI_CHECK_INT_EQ(st, DSI_ERR_BAD_REQUEST);
        free(want_err);
    } else {
        snprintf(path, sizeof(path), "%s/case-%zu.txt", dir, i);
        char *want = dsi_test_read_file(path, &want_len);
        DSI_CHECK(want != NULL);
        DSI_CHECK_INT_EQ(st, DSI_OK);
        if (want != NULL && st == DSI_OK) {
            int same = got_len == want_len && memcmp(got, want, want_len) == 0;
            if (!same)
                fprintf(stderr, "case %zu differs:\n  jinja:  %s\n  native: %s\n", i, want, got);
            DSI_CHECK(same);
        }
        free(want);
    }
    free(got);
    free(msgs);
    free(tools_text);
    json_decref(c);
}
