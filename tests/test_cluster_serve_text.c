/*
 * test_cluster_serve_text.c - the backend's text stage (dsc_backend_text) on the tiny-v3
 * tokenizer: token ids in, deltas out. Checks that the deltas concatenate to the decoded text,
 * are whole UTF-8 characters, carry token counts summing to the tokens pushed, hold back a
 * possible stop string or "</think>", stop at the token completing a stop string without
 * emitting it, route R1 reasoning apart, count tokens without text at once, and that bad
 * arguments are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_api.h"
#include "dsc_backend.h"
#include "dsc_tokenizer.h"
#include "dsi_test.h"

typedef struct {
    char text[4096], reasoning[4096];
    size_t text_len, reasoning_len;
    int32_t tokens; /* sum of n_tokens */
    int calls, bad_utf8;
} sink_t;

static void on_text(void *ctx, const char *utf8, size_t len, int is_reasoning, int32_t n_tokens)
{
    sink_t *s = ctx;
    s->calls++;
    s->tokens += n_tokens;
    size_t bad;
    if (!dsc_api_utf8_valid(utf8, len, &bad))
        s->bad_utf8++;
    char *dst = is_reasoning ? s->reasoning : s->text;
    size_t *dl = is_reasoning ? &s->reasoning_len : &s->text_len;
    if (*dl + len < sizeof(s->text)) {
        memcpy(dst + *dl, utf8, len);
        *dl += len;
        dst[*dl] = '\0';
    }
}

static dsc_tokenizer_t *tok;

/* Encode `text` and push its ids one by one; returns the push result that ended it (1 = stop),
 * and the number of ids pushed in *pushed. With finish, calls finish at the end. */
static int run(const char *text, int reasoning, const char *const *stop, int n_stop, int finish,
               sink_t *sink, int *pushed)
{
    memset(sink, 0, sizeof(*sink));
    int32_t *ids = NULL;
    size_t n = 0;
    dsc_backend_text_t *t = NULL;
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_backend_text_create(tok, reasoning, stop, n_stop, &t), DSI_OK);
    int r = 0;
    *pushed = 0;
    for (size_t i = 0; t != NULL && i < n && r == 0; i++) {
        r = dsc_backend_text_push(t, ids[i], on_text, sink);
        (*pushed)++;
    }
    if (t != NULL && r == 0 && finish)
        r = dsc_backend_text_finish(t, on_text, sink);
    dsc_backend_text_destroy(t);
    free(ids);
    return r;
}

static void test_plain(void)
{
    const char *text = "Hello world, caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac and more text.";
    sink_t s;
    int pushed;
    DSI_CHECK_INT_EQ(run(text, 0, NULL, 0, 1, &s, &pushed), 0);
    DSI_CHECK_STR_EQ(s.text, text);
    DSI_CHECK_INT_EQ(s.reasoning_len, 0);
    DSI_CHECK_INT_EQ(s.tokens, pushed);
    DSI_CHECK_INT_EQ(s.bad_utf8, 0);
    DSI_CHECK(pushed > 10); /* byte-level pieces: the multi-byte characters span tokens */
}

static void test_stop(void)
{
    const char *stop[] = {"xyz", "world"};
    sink_t s;
    int pushed, total;
    DSI_CHECK_INT_EQ(run("Hello world and more", 0, stop, 2, 1, &s, &pushed), 1);
    DSI_CHECK_STR_EQ(s.text, "Hello ");
    DSI_CHECK_INT_EQ(s.tokens, pushed);
    /* It stopped at the token completing "world", before " and more". */
    sink_t all;
    run("Hello world and more", 0, NULL, 0, 1, &all, &total);
    DSI_CHECK(pushed < total);
    /* The earliest match wins when two stop strings are in the text. */
    const char *two[] = {"more", "and"};
    DSI_CHECK_INT_EQ(run("Hello world and more", 0, two, 2, 1, &s, &pushed), 1);
    DSI_CHECK_STR_EQ(s.text, "Hello world ");
    /* A stop string at the very start: nothing emitted, tokens still counted. */
    const char *start[] = {"Hel"};
    DSI_CHECK_INT_EQ(run("Hello", 0, start, 1, 1, &s, &pushed), 1);
    DSI_CHECK_INT_EQ(s.text_len, 0);
    DSI_CHECK_INT_EQ(s.tokens, pushed);
}

static void test_hold_back(void)
{
    /* "wor" may become "world": held back until the end, then emitted as ordinary text. */
    const char *stop[] = {"world"};
    sink_t s;
    int pushed;
    int32_t *ids;
    size_t n;
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, "Hello wor", 9, 0, &ids, &n), DSI_OK);
    dsc_backend_text_t *t;
    DSI_CHECK_INT_EQ(dsc_backend_text_create(tok, 0, stop, 1, &t), DSI_OK);
    memset(&s, 0, sizeof(s));
    for (size_t i = 0; i < n; i++)
        DSI_CHECK_INT_EQ(dsc_backend_text_push(t, ids[i], on_text, &s), 0);
    DSI_CHECK_STR_EQ(s.text, "Hello ");
    DSI_CHECK(s.tokens >= 1 && s.tokens <= (int32_t)n);
    DSI_CHECK_INT_EQ(dsc_backend_text_finish(t, on_text, &s), 0);
    DSI_CHECK_STR_EQ(s.text, "Hello wor");
    DSI_CHECK_INT_EQ(s.tokens, (int32_t)n);
    dsc_backend_text_destroy(t);
    free(ids);
    /* A multi-byte stop string, split over byte-level tokens. */
    const char *jp[] = {"\xe6\x97\xa5\xe6\x9c\xac"};
    DSI_CHECK_INT_EQ(run("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac tail", 0, jp, 1, 1, &s, &pushed), 1);
    DSI_CHECK_STR_EQ(s.text, "caf\xc3\xa9 ");
    DSI_CHECK_INT_EQ(s.bad_utf8, 0);
}

static void test_reasoning(void)
{
    sink_t s;
    int pushed;
    DSI_CHECK_INT_EQ(run("let me think</think>The answer", 1, NULL, 0, 1, &s, &pushed), 0);
    DSI_CHECK_STR_EQ(s.reasoning, "let me think");
    DSI_CHECK_STR_EQ(s.text, "The answer");
    DSI_CHECK_INT_EQ(s.tokens, pushed);
    /* Stop strings apply to the answer only. */
    const char *stop[] = {"think"};
    DSI_CHECK_INT_EQ(run("I think</think>we think so", 1, stop, 1, 1, &s, &pushed), 1);
    DSI_CHECK_STR_EQ(s.reasoning, "I think");
    DSI_CHECK_STR_EQ(s.text, "we ");
    /* No end marker: all of it is reasoning, a partial "</th" included. */
    DSI_CHECK_INT_EQ(run("still thinking </th", 1, NULL, 0, 1, &s, &pushed), 0);
    DSI_CHECK_STR_EQ(s.reasoning, "still thinking </th");
    DSI_CHECK_INT_EQ(s.text_len, 0);
    /* Without the reasoning flag the marker is ordinary text. */
    DSI_CHECK_INT_EQ(run("a</think>b", 0, NULL, 0, 1, &s, &pushed), 0);
    DSI_CHECK_STR_EQ(s.text, "a</think>b");
}

static void test_special_and_bad_args(void)
{
    /* eos produces no text but counts as a token. */
    int32_t eos = dsc_tokenizer_eos_id(tok);
    DSI_CHECK(eos >= 0);
    dsc_backend_text_t *t;
    sink_t s;
    memset(&s, 0, sizeof(s));
    DSI_CHECK_INT_EQ(dsc_backend_text_create(tok, 0, NULL, 0, &t), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_backend_text_push(t, eos, on_text, &s), 0);
    DSI_CHECK_INT_EQ(s.tokens, 1); /* counted at once: the API times it */
    DSI_CHECK_INT_EQ(dsc_backend_text_finish(t, on_text, &s), 0);
    DSI_CHECK_INT_EQ(s.text_len, 0);
    DSI_CHECK_INT_EQ(s.tokens, 1);
    /* An id the tokenizer does not know: no text, no crash. */
    DSI_CHECK_INT_EQ(dsc_backend_text_push(t, 1 << 30, on_text, &s), 0);
    dsc_backend_text_destroy(t);

    const char *five[] = {"a", "b", "c", "d", "e"};
    const char *empty[] = {""};
    t = NULL;
    DSI_CHECK_INT_EQ(dsc_backend_text_create(tok, 0, five, 5, &t), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_backend_text_create(tok, 0, empty, 1, &t), DSI_ERR_INVALID_ARG);
    DSI_CHECK(t == NULL);
}

int main(void)
{
    /* Skips loudly without the fixtures, and fails under CI=true. */
    const char *dir = dsi_test_fixture("tiny-v3");
    if (dsc_tokenizer_load(dir, &tok) != DSI_OK) {
        printf("FAIL: cannot load the tokenizer of %s\n", dir);
        return 1;
    }
    test_plain();
    test_stop();
    test_hold_back();
    test_reasoning();
    test_special_and_bad_args();
    dsc_tokenizer_destroy(tok);
    return dsi_test_finish();
}
