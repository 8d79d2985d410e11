/*
 * test_unit_tokenizer.c - the tokenizer against the reference's outputs (golden.json) on the real
 * DeepSeek-V3 tokenizer.json, the cut-down tiny-v3 one, and bad inputs.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dsc_chat.h"
#include "dsc_tokenizer.h"
#include "dsc_utf8.h"
#include "dsi_log.h"
#include "dsi_test.h"

/* Time limits are for optimized builds; sanitizers slow everything down about tenfold. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLOWDOWN 15.0
#else
#define SLOWDOWN 1.0
#endif

/* CPU time: the machine is shared, wall time says more about the neighbours than about us. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Decode ids one at a time through a stream decoder; the caller frees the result. */
static char *stream_decode(const dsc_tokenizer_t *tok, const int32_t *ids, size_t n, unsigned flags,
                           size_t *len_out)
{
    dsc_decoder_t *dec;
    size_t cap = 64, len = 0, piece_len;
    const char *piece;
    char *out = malloc(cap);
    if (dsc_decoder_create(tok, flags, &dec) != DSI_OK)
        return NULL;
    for (size_t i = 0; i <= n; i++) {
        if (i < n)
            dsc_decoder_push(dec, ids[i], &piece, &piece_len);
        else
            dsc_decoder_flush(dec, &piece, &piece_len);
        /* Every piece on its own must be valid UTF-8: never half a character. */
        DSI_CHECK(dsc_utf8_validate(piece, piece_len, NULL));
        while (len + piece_len + 1 > cap)
            out = realloc(out, cap *= 2);
        memcpy(out + len, piece, piece_len);
        len += piece_len;
    }
    out[len] = '\0';
    dsc_decoder_destroy(dec);
    *len_out = len;
    return out;
}

static void check_golden_encode(const dsc_tokenizer_t *tok, const json_t *golden)
{
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(golden, "encode"), i, e)
    {
        const json_t *text = json_object_get(e, "text"), *want = json_object_get(e, "ids");
        int32_t *ids = NULL;
        size_t n = 0, same = 1;
        dsi_status_t st = dsc_tokenizer_encode(tok, json_string_value(text),
                                               json_string_length(text), 0, &ids, &n);
        DSI_CHECK_INT_EQ(st, DSI_OK);
        DSI_CHECK_INT_EQ(n, json_array_size(want));
        for (size_t k = 0; k < n && k < json_array_size(want); k++)
            same &= ids[k] == json_integer_value(json_array_get(want, k));
        if (!same || n != json_array_size(want)) {
            fprintf(stderr, "golden encode #%zu mismatch for \"%s\":\n  got ", i,
                    json_string_value(text));
            for (size_t k = 0; k < n; k++)
                fprintf(stderr, "%d ", ids[k]);
            fprintf(stderr, "\n");
        }
        DSI_CHECK(same);
        /* Decode the reference ids (not ours), whole and streamed. */
        size_t nw = json_array_size(want), len, slen;
        int32_t *wids = malloc((nw + 1) * sizeof(*wids));
        for (size_t k = 0; k < nw; k++)
            wids[k] = (int32_t)json_integer_value(json_array_get(want, k));
        char *dec = NULL;
        DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, wids, nw, 0, &dec, &len), DSI_OK);
        DSI_CHECK_STR_EQ(dec, json_string_value(json_object_get(e, "decoded")));
        char *sdec = stream_decode(tok, wids, nw, 0, &slen);
        DSI_CHECK_STR_EQ(sdec, dec);
        free(sdec);
        free(dec);
        free(wids);
        free(ids);
    }
}

/* Token ids of a few markers, and the accessors. */
static void check_accessors(const dsc_tokenizer_t *tok)
{
    DSI_CHECK_INT_EQ(dsc_tokenizer_vocab_size(tok), 128815);
    DSI_CHECK_INT_EQ(dsc_tokenizer_token_id(tok, "<｜end▁of▁sentence｜>"), 1);
    DSI_CHECK_INT_EQ(dsc_tokenizer_token_id(tok, "<｜User｜>"), 128803);
    DSI_CHECK_INT_EQ(dsc_tokenizer_token_id(tok, "Ġthe"), 270);
    DSI_CHECK_INT_EQ(dsc_tokenizer_token_id(tok, "no such token"), -1);
    DSI_CHECK_STR_EQ(dsc_tokenizer_token_text(tok, 128804), "<｜Assistant｜>");
    DSI_CHECK(dsc_tokenizer_token_text(tok, 128815) == NULL);
    DSI_CHECK(dsc_tokenizer_token_text(tok, -5) == NULL);
    DSI_CHECK_INT_EQ(dsc_tokenizer_is_special(tok, 0), 1);
    DSI_CHECK_INT_EQ(dsc_tokenizer_is_special(tok, 128803), 0);
    DSI_CHECK_INT_EQ(dsc_tokenizer_is_special(tok, 270), 0);
    DSI_CHECK_INT_EQ(dsc_tokenizer_bos_id(tok), 0);
    DSI_CHECK_INT_EQ(dsc_tokenizer_eos_id(tok), 1);
}

static void check_flags(const dsc_tokenizer_t *tok)
{
    const char *text = "<｜begin▁of▁sentence｜>hi<｜User｜>";
    int32_t *ids;
    size_t n;
    char *out;
    size_t len;
    /* ADD_BOS prepends 0; SPLIT_SPECIAL encodes the special token as text, keeps <｜User｜>. */
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, "hi", 2, DSC_ENCODE_ADD_BOS, &ids, &n), DSI_OK);
    DSI_CHECK_INT_EQ(n, 2);
    DSI_CHECK_INT_EQ(ids[0], 0);
    free(ids);
    DSI_CHECK_INT_EQ(
        dsc_tokenizer_encode(tok, text, strlen(text), DSC_ENCODE_SPLIT_SPECIAL, &ids, &n), DSI_OK);
    DSI_CHECK(n > 3);
    DSI_CHECK(ids[0] != 0);
    DSI_CHECK_INT_EQ(ids[n - 1], 128803);
    DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, ids, n, 0, &out, &len), DSI_OK);
    DSI_CHECK_STR_EQ(out, text);
    free(out);
    free(ids);
    /* SKIP_SPECIAL drops bos/eos but keeps the (non-special) chat markers; unknown ids vanish. */
    int32_t seq[] = {0, 128803, 19923, 1, 129000, -3};
    DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, seq, 6, DSC_DECODE_SKIP_SPECIAL, &out, &len),
                     DSI_OK);
    DSI_CHECK_STR_EQ(out, "<｜User｜>Hello");
    free(out);
    size_t slen;
    char *s = stream_decode(tok, seq, 6, DSC_DECODE_SKIP_SPECIAL, &slen);
    DSI_CHECK_STR_EQ(s, "<｜User｜>Hello");
    free(s);
}

/* Bytes split across tokens: the stream holds them back; a cut-off character becomes U+FFFD. */
static void check_partial_utf8(const dsc_tokenizer_t *tok)
{
    const char *text = "emoji 😀🚀 and 你好";
    int32_t *ids;
    size_t n, len, slen;
    char *out;
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n), DSI_OK);
    char *s = stream_decode(tok, ids, n, 0, &slen);
    DSI_CHECK_STR_EQ(s, text);
    free(s);
    /* Find a token that is a lone byte of a multi-byte character and cut the stream after it. */
    for (size_t k = 0; k < n; k++) {
        const char *t = dsc_tokenizer_token_text(tok, ids[k]);
        DSI_CHECK(t != NULL);
    }
    free(ids);
    int32_t f0 = dsc_tokenizer_token_id(tok, "ð"); /* byte 0xF0: a 4-byte lead alone */
    DSI_CHECK(f0 >= 0);
    int32_t cut[] = {f0};
    DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, cut, 1, 0, &out, &len), DSI_OK);
    DSI_CHECK_STR_EQ(out, "\xEF\xBF\xBD");
    free(out);
    s = stream_decode(tok, cut, 1, 0, &slen);
    DSI_CHECK_STR_EQ(s, "\xEF\xBF\xBD");
    free(s);
    int32_t a = dsc_tokenizer_token_id(tok, "a");
    int32_t cut2[] = {f0, a};
    DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, cut2, 2, 0, &out, &len), DSI_OK);
    DSI_CHECK_STR_EQ(out, "\xEF\xBF\xBD"
                          "a");
    free(out);
}

static void check_bad_input(const dsc_tokenizer_t *tok)
{
    int32_t *ids = (int32_t *)0x1;
    size_t n = 77, off = 0;
    const char bad[] = "ok \xC3\x28 no";
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, bad, sizeof(bad) - 1, 0, &ids, &n),
                     DSI_ERR_BAD_UTF8);
    DSI_CHECK(ids == (int32_t *)0x1 && n == 77); /* outputs untouched on error */
    DSI_CHECK_INT_EQ(dsc_utf8_validate(bad, sizeof(bad) - 1, &off), 0);
    DSI_CHECK_INT_EQ(off, 3);
    const char *bads[] = {"\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80", "\xE4\xBD", "\xFF"};
    for (int i = 0; i < 5; i++)
        DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, bads[i], strlen(bads[i]), 0, &ids, &n),
                         DSI_ERR_BAD_UTF8);
    /* Empty text: no ids, DSI_OK. NUL bytes are characters. */
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, "", 0, 0, &ids, &n), DSI_OK);
    DSI_CHECK_INT_EQ(n, 0);
    free(ids);
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, NULL, 0, 0, &ids, &n), DSI_OK);
    DSI_CHECK_INT_EQ(n, 0);
    free(ids);
    char *out;
    size_t len;
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, "a\0b", 3, 0, &ids, &n), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, ids, n, 0, &out, &len), DSI_OK);
    DSI_CHECK_INT_EQ(len, 3);
    DSI_CHECK(memcmp(out, "a\0b", 3) == 0);
    free(out);
    free(ids);
}

/* A 1 MB mixed text encodes fast (no quadratic rescans) and round-trips. */
static void check_large(const dsc_tokenizer_t *tok)
{
    static const char *parts[] = {"The quick brown fox jumps over the lazy dog. ",
                                  "你好，世界！大型语言模型。",
                                  "for (int i = 0; i < n; i++) { x[i] = 42; }\n",
                                  "    \t  \n\n",
                                  "1234567890",
                                  "😀 café ",
                                  "xxxxxxxxxxxxxxxxxxxxxxxxx"};
    size_t cap = 1 << 20, len = 0, k = 0;
    char *text = malloc(cap + 64);
    while (len < cap) {
        const char *p = parts[(k * 7 + k / 3) % 7];
        memcpy(text + len, p, strlen(p));
        len += strlen(p);
        k++;
    }
    int32_t *ids;
    size_t n, dlen;
    double t0 = now_s();
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, text, len, 0, &ids, &n), DSI_OK);
    double dt = now_s() - t0;
    fprintf(stderr, "1 MB mixed text: %zu tokens in %.3f CPU s\n", n, dt);
    DSI_CHECK(dt < 5.0 * SLOWDOWN);
    char *out;
    DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, ids, n, 0, &out, &dlen), DSI_OK);
    DSI_CHECK_INT_EQ(dlen, len);
    DSI_CHECK(dlen == len && memcmp(out, text, len) == 0);
    free(out);
    free(ids);
    /* Degenerate single pieces of 1 MB: one letter repeated, one digit repeated, spaces. */
    const char fills[] = {'x', '7', ' ', '\n'};
    for (int f = 0; f < 4; f++) {
        memset(text, fills[f], cap);
        t0 = now_s();
        DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, text, cap, 0, &ids, &n), DSI_OK);
        dt = now_s() - t0;
        fprintf(stderr, "1 MB of 0x%02x: %zu tokens in %.3f CPU s\n", fills[f], n, dt);
        DSI_CHECK(dt < 5.0 * SLOWDOWN);
        DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, ids, n, 0, &out, &dlen), DSI_OK);
        DSI_CHECK(dlen == cap && memcmp(out, text, cap) == 0);
        free(out);
        free(ids);
    }
    free(text);
}

/* The tiny-v3 tokenizer: loads, markers at 1000+, and round-trips every golden text. */
static void check_tiny(const json_t *golden)
{
    dsc_tokenizer_t *tok;
    char path[4096];
    snprintf(path, sizeof(path), "%s", dsi_test_fixture("tiny-v3"));
    DSI_CHECK_INT_EQ(dsc_tokenizer_load(path, &tok), DSI_OK);
    if (tok == NULL)
        return;
    DSI_CHECK_INT_EQ(dsc_tokenizer_vocab_size(tok), 1015);
    DSI_CHECK_INT_EQ(dsc_tokenizer_token_id(tok, "<｜User｜>"), 1003);
    DSI_CHECK_INT_EQ(dsc_tokenizer_token_id(tok, "<｜Assistant｜>"), 1004);
    DSI_CHECK_INT_EQ(dsc_tokenizer_bos_id(tok), 0);
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(golden, "encode"), i, e)
    {
        const json_t *text = json_object_get(e, "text");
        int32_t *ids;
        size_t n, len;
        char *out;
        DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, json_string_value(text),
                                              json_string_length(text), 0, &ids, &n),
                         DSI_OK);
        for (size_t k = 0; k < n; k++)
            DSI_CHECK(ids[k] >= 0 && ids[k] < 1015);
        DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, ids, n, 0, &out, &len), DSI_OK);
        DSI_CHECK_STR_EQ(out, json_string_value(text));
        free(out);
        free(ids);
    }
    dsc_tokenizer_destroy(tok);
}

/* The tokenizer is immutable after load: threads encode at once and get the same ids. */
typedef struct {
    const dsc_tokenizer_t *tok;
    const char *text;
    size_t n_ids;
    int32_t *ids;
} thread_arg_t;

static void *encode_thread(void *p)
{
    thread_arg_t *a = p;
    for (int r = 0; r < 20; r++) {
        free(a->ids);
        a->ids = NULL;
        if (dsc_tokenizer_encode(a->tok, a->text, strlen(a->text), 0, &a->ids, &a->n_ids) != DSI_OK)
            break;
    }
    return NULL;
}

static void check_threads(const dsc_tokenizer_t *tok)
{
    const char *text = "Hello <｜User｜> 你好，世界 12345 def f(x): return x ** 2  # ok\n";
    thread_arg_t args[3] = {{tok, text, 0, NULL}, {tok, text, 0, NULL}, {tok, text, 0, NULL}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, encode_thread, &args[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 1; i < 3; i++) {
        DSI_CHECK_INT_EQ(args[i].n_ids, args[0].n_ids);
        DSI_CHECK(args[i].ids && args[0].ids &&
                  memcmp(args[i].ids, args[0].ids, args[0].n_ids * sizeof(int32_t)) == 0);
    }
    for (int i = 0; i < 3; i++)
        free(args[i].ids);
}

/* Load a mutation of the tiny-v3 tokenizer.json: `edit` changes the parsed root in place. */
static dsi_status_t load_edited(const json_t *base, void (*edit)(json_t *), dsc_tokenizer_t **out)
{
    json_t *root = json_deep_copy(base);
    edit(root);
    char *text = json_dumps(root, JSON_COMPACT);
    dsi_status_t st = dsc_tokenizer_load_json(text, strlen(text), "edited", out);
    free(text);
    json_decref(root);
    return st;
}

static json_t *model_of(json_t *r)
{
    return json_object_get(r, "model");
}
static void e_no_model(json_t *r)
{
    json_object_del(r, "model");
}
static void e_bad_merge(json_t *r)
{
    json_array_append_new(json_object_get(model_of(r), "merges"), json_string("Ġ zzzq"));
}
static void e_bad_merge_shape(json_t *r)
{
    json_array_append_new(json_object_get(model_of(r), "merges"), json_string("a b c"));
}
static void e_neg_id(json_t *r)
{
    json_object_set_new(json_object_get(model_of(r), "vocab"), "zzz", json_integer(-4));
}
static void e_huge_id(json_t *r)
{
    json_object_set_new(json_object_get(model_of(r), "vocab"), "zzz", json_integer(1LL << 40));
}
static void e_dup_id(json_t *r)
{
    json_object_set_new(json_object_get(model_of(r), "vocab"), "zzz", json_integer(5));
}
static void e_nfc(json_t *r)
{
    json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFC"));
}
static void e_whitespace(json_t *r)
{
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
}
static void e_no_bytelevel(json_t *r)
{
    json_array_remove(json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers"), 3);
}
static void e_bad_regex(json_t *r)
{
    json_t *steps = json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers");
    json_object_set_new(json_object_get(json_array_get(steps, 0), "pattern"), "Regex",
                        json_string("(unclosed"));
}
static void e_bad_behavior(json_t *r)
{
    json_t *steps = json_object_get(json_object_get(r, "pre_tokenizer"), "pretokenizers");
    json_object_set_new(json_array_get(steps, 0), "behavior", json_string("Sideways"));
}
static void e_decoder(json_t *r)
{
    json_object_set_new(r, "decoder", json_pack("{s:s}", "type", "WordPiece"));
}
static void e_wordpiece(json_t *r)
{
    json_object_set_new(model_of(r), "type", json_string("WordPiece"));
}
static void e_dropout(json_t *r)
{
    json_object_set_new(model_of(r), "dropout", json_real(0.1));
}
static void e_byte_fallback(json_t *r)
{
    json_object_set_new(model_of(r), "byte_fallback", json_true());
}
static void e_truncation(json_t *r)
{
    json_object_set_new(r, "truncation", json_pack("{s:i}", "max_length", 8));
}
static void e_added_not_array(json_t *r)
{
    json_object_set_new(r, "added_tokens", json_string("nope"));
}
static void e_added_no_content(json_t *r)
{
    json_object_del(json_array_get(json_object_get(r, "added_tokens"), 3), "content");
}
static void e_version(json_t *r)
{
    json_object_set_new(r, "version", json_string("2.0"));
}
/* GPT-2 style: ByteLevel alone with its own regex (runs on Oniguruma). */
static void e_gpt2(json_t *r)
{
    json_object_set_new(
        r, "pre_tokenizer",
        json_pack("{s:s,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1));
}
static void e_gpt2_prefix(json_t *r)
{
    json_object_set_new(
        r, "pre_tokenizer",
        json_pack("{s:s,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 1, "use_regex", 1));
}

static void check_roundtrip(const dsc_tokenizer_t *tok, const char *text, const char *want)
{
    int32_t *ids;
    size_t n, len;
    char *out;
    DSI_CHECK_INT_EQ(dsc_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_tokenizer_decode(tok, ids, n, 0, &out, &len), DSI_OK);
    DSI_CHECK_STR_EQ(out, want);
    free(out);
    free(ids);
}

/* Malformed or unsupported files give the right error, never a crash or a wrong tokenizer. */
static void check_malformed(void)
{
    char path[4200];
    json_error_t err;
    snprintf(path, sizeof(path), "%s/tokenizer.json", dsi_test_fixture("tiny-v3"));
    json_t *base = json_load_file(path, 0, &err);
    DSI_CHECK(base != NULL);
    if (base == NULL)
        return;
    struct {
        void (*edit)(json_t *);
        dsi_status_t want;
    } cases[] = {
        {e_no_model, DSI_ERR_FORMAT},
        {e_bad_merge, DSI_ERR_FORMAT},
        {e_bad_merge_shape, DSI_ERR_FORMAT},
        {e_neg_id, DSI_ERR_FORMAT},
        {e_huge_id, DSI_ERR_FORMAT},
        {e_dup_id, DSI_ERR_FORMAT},
        {e_nfc, DSI_ERR_UNSUPPORTED},
        {e_whitespace, DSI_ERR_UNSUPPORTED},
        {e_no_bytelevel, DSI_ERR_UNSUPPORTED},
        {e_bad_regex, DSI_ERR_FORMAT},
        {e_bad_behavior, DSI_ERR_FORMAT},
        {e_decoder, DSI_ERR_UNSUPPORTED},
        {e_wordpiece, DSI_ERR_UNSUPPORTED},
        {e_dropout, DSI_ERR_UNSUPPORTED},
        {e_byte_fallback, DSI_ERR_UNSUPPORTED},
        {e_truncation, DSI_ERR_UNSUPPORTED},
        {e_added_not_array, DSI_ERR_FORMAT},
        {e_added_no_content, DSI_ERR_FORMAT},
        {e_version, DSI_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dsc_tokenizer_t *tok = (dsc_tokenizer_t *)0x1;
        DSI_CHECK_INT_EQ(load_edited(base, cases[i].edit, &tok), cases[i].want);
        DSI_CHECK(tok == (dsc_tokenizer_t *)0x1);
    }
    dsc_tokenizer_t *tok = NULL;
    DSI_CHECK_INT_EQ(load_edited(base, e_gpt2, &tok), DSI_OK);
    if (tok != NULL) {
        check_roundtrip(tok, "Hello world, it's 2024!  ok\n", "Hello world, it's 2024!  ok\n");
        dsc_tokenizer_destroy(tok);
    }
    tok = NULL;
    DSI_CHECK_INT_EQ(load_edited(base, e_gpt2_prefix, &tok), DSI_OK);
    if (tok != NULL) {
        check_roundtrip(tok, "Hello", " Hello"); /* the reference keeps the added space */
        dsc_tokenizer_destroy(tok);
    }
    /* Not JSON, empty, truncated, a missing file. */
    const char *texts[] = {"", "not json", "{\"model\":", "[1,2]"};
    for (int i = 0; i < 4; i++)
        DSI_CHECK_INT_EQ(dsc_tokenizer_load_json(texts[i], strlen(texts[i]), "text", &tok),
                         DSI_ERR_FORMAT);
    char *full = json_dumps(base, JSON_COMPACT);
    size_t full_len = strlen(full);
    DSI_CHECK_INT_EQ(dsc_tokenizer_load_json(full, full_len / 2, "half", &tok), DSI_ERR_FORMAT);
    DSI_CHECK_INT_EQ(dsc_tokenizer_load("/nonexistent/dir/tokenizer.json", &tok),
                     DSI_ERR_NOT_FOUND);
    /* A FIFO in place of tokenizer.json or tokenizer_config.json is refused at once (opening it
     * would wait for a writer forever). */
    char fifo_dir[] = "/tmp/dsinfer-tok-fifo-XXXXXX", fifo[64];
    DSI_CHECK(mkdtemp(fifo_dir) != NULL);
    snprintf(fifo, sizeof(fifo), "%s/tokenizer.json", fifo_dir);
    DSI_CHECK_INT_EQ(mkfifo(fifo, 0600), 0);
    DSI_CHECK_INT_EQ(dsc_tokenizer_load(fifo, &tok), DSI_ERR_IO);
    unlink(fifo);
    snprintf(fifo, sizeof(fifo), "%s/tokenizer_config.json", fifo_dir);
    DSI_CHECK_INT_EQ(mkfifo(fifo, 0600), 0);
    dsc_chat_template_t *tpl = NULL;
    DSI_CHECK_INT_EQ(dsc_chat_template_load(fifo_dir, DSC_CHAT_AUTO, &tpl), DSI_ERR_FORMAT);
    unlink(fifo);
    rmdir(fifo_dir);
    /* Random corruption: whatever the status, no crash, and a loaded tokenizer still works. */
    dsi_test_seed(7);
    dsi_log_level_t saved = dsi_log_level();
    dsi_log_set_level(DSI_LOG_LEVEL_ERROR); /* errors only: 200 of them are expected */
    int loaded = 0;
    for (int iter = 0; iter < 200; iter++) {
        char *copy = malloc(full_len);
        memcpy(copy, full, full_len);
        for (int k = 0; k < 3; k++)
            copy[dsi_test_randu() % full_len] = (char)(dsi_test_randu() % 128);
        tok = NULL;
        if (dsc_tokenizer_load_json(copy, full_len, "corrupt", &tok) == DSI_OK) {
            loaded++;
            int32_t *ids;
            size_t n;
            if (dsc_tokenizer_encode(tok, "Hello <｜User｜> 123", 21, 0, &ids, &n) == DSI_OK)
                free(ids);
            dsc_tokenizer_destroy(tok);
        }
        free(copy);
    }
    dsi_log_set_level(saved);
    fprintf(stderr, "corrupted files: %d of 200 still loaded\n", loaded);
    free(full);
    json_decref(base);
}

int main(void)
{
    char path[4096];
    json_error_t err;
    dsc_tokenizer_t *tok = NULL;
    snprintf(path, sizeof(path), "%s", dsi_test_fixture("tokenizer"));
    double t0 = now_s();
    DSI_CHECK_INT_EQ(dsc_tokenizer_load(path, &tok), DSI_OK);
    double dt = now_s() - t0;
    fprintf(stderr, "loaded DeepSeek-V3 tokenizer.json in %.3f CPU s\n", dt);
    DSI_CHECK(dt < 1.0 * SLOWDOWN);
    if (tok == NULL)
        return dsi_test_finish();
    char gpath[4200];
    snprintf(gpath, sizeof(gpath), "%s/golden.json", path);
    json_t *golden = json_load_file(gpath, 0, &err);
    DSI_CHECK(golden != NULL);
    check_golden_encode(tok, golden);
    check_accessors(tok);
    check_flags(tok);
    check_partial_utf8(tok);
    check_bad_input(tok);
    check_large(tok);
    check_threads(tok);
    dsc_tokenizer_destroy(tok);
    check_tiny(golden);
    check_malformed();
    json_decref(golden);
    return dsi_test_finish();
}
