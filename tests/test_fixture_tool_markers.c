/*
 * test_fixture_tool_markers.c - the tool-call markers reach the tool-call parser as text. The
 * backend's text stage decodes with special tokens skipped; DeepSeek-V3's tokenizer marks the
 * <｜tool▁...｜> tokens non-special (they come through anyway), but a tokenizer may mark them
 * special. On tiny-v3's tokenizer, and on a copy of it whose tool markers are special: with
 * dsc_backend_text_keep_tool_markers the markers' text comes out in both; without it the
 * special copy drops them (as skip_special_tokens does) and other special tokens (EOS) stay
 * silent either way.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_backend.h"
#include "dsc_tokenizer.h"
#include "dsi_test.h"

static char out[4096];

static void on_text(void *ctx, const char *utf8, size_t len, int is_reasoning, int32_t n_tokens)
{
    (void)ctx, (void)is_reasoning, (void)n_tokens;
    size_t l = strlen(out);
    if (l + len < sizeof(out)) {
        memcpy(out + l, utf8, len);
        out[l + len] = '\0';
    }
}

#define CALL                                                                                                          \
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get<｜tool▁sep｜>{\"a\": 1}<｜tool▁call▁end｜>" \
    "<｜tool▁calls▁end｜>"

/* The text stage's output for CALL followed by EOS. */
static void run(const dsc_tokenizer_t *tok, int keep, const char *want)
{
    int32_t *ids = NULL;
    size_t n = 0;
    dsc_backend_text_t *t = NULL;
    out[0] = '\0';
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, CALL, strlen(CALL), 0, &ids, &n), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_backend_text_create(tok, 0, NULL, 0, &t), DSI_OK);
    if (t == NULL)
        return;
    if (keep)
        dsc_backend_text_keep_tool_markers(t);
    for (size_t i = 0; i < n; i++)
        dsc_backend_text_push(t, ids[i], on_text, NULL);
    dsc_backend_text_push(t, dsc_tokenizer_eos_id(tok), on_text, NULL);
    dsc_backend_text_finish(t, on_text, NULL);
    DSI_CHECK_STR_EQ(out, want);
    dsc_backend_text_destroy(t);
    free(ids);
}

int main(void)
{
    const char *fx = dsi_test_fixture("tiny-v3");
    if (fx == NULL) {
        fprintf(stderr, "SKIPPED: no tiny-v3 fixture\n");
        return 77;
    }
    char src[4096], path[4200];
    snprintf(src, sizeof(src), "%s", fx);
    dsc_tokenizer_t *tok = NULL;
    DSI_CHECK_INT_EQ(dsc_tokenizer_load(src, &tok), DSI_OK);
    if (tok == NULL)
        return dsi_test_finish();
    int32_t cb = dsc_tokenizer_token_id(tok, "<｜tool▁calls▁begin｜>");
    DSI_CHECK(cb >= 0 && !dsc_tokenizer_is_special(tok, cb));
    run(tok, 0, CALL); /* non-special: the decoder keeps them */
    run(tok, 1, CALL);
    dsc_tokenizer_destroy(tok);

    /* the same tokenizer with the tool markers special */
    snprintf(path, sizeof(path), "%s/tokenizer.json", src);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    DSI_CHECK(root != NULL);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(root, "added_tokens"), i, t)
    {
        const char *c = json_string_value(json_object_get(t, "content"));
        if (c != NULL && strncmp(c, "<｜tool", strlen("<｜tool")) == 0)
            json_object_set_new(t, "special", json_true());
    }
    const char *dir = dsi_test_tmpdir();
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    DSI_CHECK_INT_EQ(json_dump_file(root, path, 0), 0);
    json_decref(root);
    tok = NULL;
    DSI_CHECK_INT_EQ(dsc_tokenizer_load(dir, &tok), DSI_OK);
    if (tok != NULL) {
        cb = dsc_tokenizer_token_id(tok, "<｜tool▁calls▁begin｜>");
        DSI_CHECK(cb >= 0 && dsc_tokenizer_is_special(tok, cb));
        run(tok, 0, "get{\"a\": 1}"); /* skipped: what skip_special_tokens does */
        run(tok, 1, CALL);            /* kept for the parser */
        dsc_tokenizer_destroy(tok);
    }
    dsi_test_rmtree(dir);
    return dsi_test_finish();
}
