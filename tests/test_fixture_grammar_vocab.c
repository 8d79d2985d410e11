/*
 * test_fixture_grammar_vocab.c - the grammar matcher on the real DeepSeek-V3 vocabulary (128 815
 * tokens, byte-level BPE: tokens that end inside a UTF-8 character, special tokens): at random
 * states of a JSON object grammar, a schema grammar and a grammar naming a special token, the
 * fast mask (trie walk, interned states, cache) allows exactly the tokens the plain reference
 * recognizer can continue with; a special token's text in a grammar matches that token.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_tokenizer.h"
#include "dsg.h"
#include "dsg_impl.h"
#include "dsi_test.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)rng;
}

static void check_grammar(const char *text, const dsg_vocab_t *v, const dsc_tokenizer_t *tok,
                          int steps)
{
    dsg_grammar_t *g = NULL;
    char err[256] = "";
    DSI_CHECK(dsg_compile(text, strlen(text), &g, err, sizeof(err)) == DSI_OK);
    if (g == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    int32_t n = dsg_vocab_size(v), eos = dsc_tokenizer_eos_id(tok);
    dsg_matcher_t *m = NULL;
    DSI_CHECK(dsg_matcher_create(g, v, &eos, 1, &m) == DSI_OK);
    dsg_ref_t *ref = dsg_ref_create(g);
    float *logits = malloc((size_t)n * sizeof(float));
    int32_t *allowed = malloc((size_t)n * sizeof(int32_t));
    int bad = 0;
    for (int step = 0; step < steps && m && ref && logits && allowed; step++) {
        for (int32_t t = 0; t < n; t++)
            logits[t] = 0.0f;
        DSI_CHECK(dsg_matcher_mask(m, logits, n) == DSI_OK);
        int n_allowed = 0;
        for (int32_t t = 0; t < n; t++) {
            size_t len;
            const unsigned char *b = dsc_tokenizer_token_bytes(tok, t, &len);
            int want = 0;
            if (t == eos) {
                want = dsg_ref_complete(ref);
            } else if (b != NULL && len > 0) {
                dsg_ref_t *c = dsg_ref_clone(ref);
                want = dsg_ref_feed(c, b, len);
                dsg_ref_free(c);
            }
            int got = !isinf(logits[t]);
            if (got != want && bad++ < 5)
                fprintf(stderr, "step %d token %d ('%s'): fast %d, plain %d\n", step, t,
                        dsc_tokenizer_token_text(tok, t), got, want);
            if (got && t != eos)
                allowed[n_allowed++] = t;
        }
        if (n_allowed == 0)
            break;
        int32_t t = allowed[rnd() % (uint32_t)n_allowed];
        size_t len;
        const unsigned char *b = dsc_tokenizer_token_bytes(tok, t, &len);
        DSI_CHECK(dsg_matcher_accept(m, t) == DSI_OK);
        dsg_ref_feed(ref, b, len);
    }
    DSI_CHECK_INT_EQ(bad, 0);
    free(logits);
    free(allowed);
    dsg_ref_free(ref);
    dsg_matcher_free(m);
    dsg_grammar_free(g);
}

int main(void)
{
    const char *dir = dsi_test_fixture("tokenizer");
    dsc_tokenizer_t *tok = NULL;
    DSI_CHECK(dsc_tokenizer_load(dir, &tok) == DSI_OK);
    if (tok == NULL)
        return dsi_test_finish();
    dsg_vocab_t *v = NULL;
    DSI_CHECK(dsc_tokenizer_grammar_vocab(tok, 0, &v) == DSI_OK);
    char *json = NULL;
    DSI_CHECK(dsg_json_object_gbnf("", &json) == DSI_OK);
    check_grammar(json, v, tok, 6);
    free(json);
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                         "\"maxLength\":8},\"n\":{\"type\":\"integer\",\"minimum\":-20,"
                         "\"maximum\":300},\"tag\":{\"enum\":[\"日本\",\"été\"]}},"
                         "\"required\":[\"name\",\"n\",\"tag\"]}";
    char *gbnf = NULL, err[256] = "";
    DSI_CHECK(dsg_from_json_schema(schema, strlen(schema), "", &gbnf, err, sizeof(err)) == DSI_OK);
    check_grammar(gbnf, v, tok, 8);
    free(gbnf);
    check_grammar("root ::= \"<｜end▁of▁sentence｜>\"? [α-ω]{0,3} \"<｜begin▁of▁sentence｜>\"", v,
                  tok, 3);
    dsg_vocab_free(v);
    dsc_tokenizer_destroy(tok);
    return dsi_test_finish();
}
