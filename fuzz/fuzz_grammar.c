/*
 * fuzz_grammar.c - grammar/: the grammar parser (dsg_compile), the JSON Schema and regex
 * converters, and the matcher. Input: one mode byte (0 grammar, 1 JSON Schema, 2 regex), the text
 * up to a NUL byte, then bytes fed to the grammar. A converter's output must compile; on a
 * compiled grammar the matcher over a small vocabulary (every single byte, and a few multi-byte
 * tokens) must agree with the plain reference on every fed byte: the mask allows exactly the
 * tokens the reference can continue with, and accept succeeds exactly when it allows.
 */
#include <math.h>
#include <string.h>

#include "dsg.h"
#include "dsg_impl.h"
#include "fuzz_util.h"

#define N_TOK 264
static dsg_vocab_t *vocab;
static uint8_t tok_bytes[N_TOK][4];
static uint32_t tok_lens[N_TOK];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static const char *const multi[] = {"\"a",      "\xc3\xa9", "ab",  "{\"",
                                        "\xe6\x97", "12",       "\":", "\xa9x"};
    const uint8_t *ptr[N_TOK];
    for (int t = 0; t < 256; t++) {
        tok_bytes[t][0] = (uint8_t)t;
        tok_lens[t] = 1;
    }
    for (int t = 256; t < N_TOK; t++) {
        tok_lens[t] = (uint32_t)strlen(multi[t - 256]);
        memcpy(tok_bytes[t], multi[t - 256], tok_lens[t]);
    }
    for (int t = 0; t < N_TOK; t++)
        ptr[t] = tok_bytes[t];
    if (dsg_vocab_create(N_TOK, ptr, tok_lens, &vocab) != DSI_OK)
        abort();
    return 0;
}

static void run_matcher(const dsg_grammar_t *g, const uint8_t *feed, size_t n)
{
    dsg_matcher_t *m;
    if (dsg_matcher_create(g, vocab, NULL, 0, &m) != DSI_OK)
        return;
    dsg_ref_t *ref = dsg_ref_create(g);
    float logits[N_TOK];
    for (size_t i = 0; i < n && i < 64 && ref != NULL; i++) {
        for (int t = 0; t < N_TOK; t++)
            logits[t] = 0;
        if (dsg_matcher_mask(m, logits, N_TOK) != DSI_OK)
            break;
        for (int t = 0; t < N_TOK; t++) {
            dsg_ref_t *c = dsg_ref_clone(ref);
            if (c == NULL)
                break;
            int want = dsg_ref_feed(c, tok_bytes[t], tok_lens[t]);
            dsg_ref_free(c);
            if (want != !isinf(logits[t]))
                fuzz_note("token %d at byte %zu: matcher %d, reference %d", t, i, !isinf(logits[t]),
                          want);
            FUZZ_CHECK(want == !isinf(logits[t]));
        }
        dsg_matcher_complete(m);
        dsg_matcher_only_end(m);
        dsi_status_t st = dsg_matcher_accept(m, feed[i]);
        int ok = dsg_ref_feed(ref, &feed[i], 1);
        FUZZ_CHECK((st == DSI_OK) == ok || st == DSI_ERR_TOO_LARGE);
        if (st != DSI_OK)
            break;
    }
    dsg_ref_free(ref);
    dsg_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    const char *text = (const char *)data + 1;
    const uint8_t *nul = memchr(data + 1, 0, size - 1);
    size_t len = nul ? (size_t)(nul - (data + 1)) : size - 1;
    const uint8_t *feed = nul ? nul + 1 : data + size;
    size_t n_feed = (size_t)(data + size - feed);
    char err[256];
    char *gbnf = NULL;
    dsi_status_t st = DSI_OK;
    if (mode == 1)
        st = dsg_from_json_schema(text, len, "", &gbnf, err, sizeof(err));
    else if (mode == 2)
        st = dsg_from_regex(text, len, "", &gbnf, err, sizeof(err));
    if (st != DSI_OK)
        return 0;
    dsg_grammar_t *g = NULL;
    st = mode == 0 ? dsg_compile(text, len, &g, err, sizeof(err))
                   : dsg_compile(gbnf, strlen(gbnf), &g, err, sizeof(err));
    if (mode != 0 && st != DSI_OK)
        fuzz_note("converter output does not compile: %s", err);
    FUZZ_CHECK(mode == 0 || st == DSI_OK || st == DSI_ERR_TOO_LARGE);
    free(gbnf);
    if (st == DSI_OK)
        run_matcher(g, feed, n_feed);
    dsg_grammar_free(g);
    return 0;
}
