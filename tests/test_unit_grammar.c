/*
 * test_unit_grammar.c - the grammar engine (grammar/): parse errors name what is wrong; strings
 * are accepted or rejected as the grammar says (literals, classes with ranges and negation, UTF-8
 * classes, groups, * + ? {m,n}, recursion); left recursion is refused at compile; the converters
 * (choice, regex, json object, small schemas) produce grammars that accept what they should; and
 * the fast matcher (trie walk, interned stacks, mask cache) allows exactly the tokens the plain
 * reference recognizer allows, on random states of random grammars and vocabularies, including
 * tokens that end in the middle of a UTF-8 character.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsg.h"
#include "dsg_impl.h"
#include "dsi_test.h"

static dsg_grammar_t *compile(const char *text)
{
    dsg_grammar_t *g = NULL;
    char err[256] = "";
    dsi_status_t st = dsg_compile(text, strlen(text), &g, err, sizeof(err));
    if (st != DSI_OK)
        fprintf(stderr, "compile failed: %s\n  grammar: %s\n", err, text);
    return g;
}

static int accepts(const dsg_grammar_t *g, const char *s)
{
    return dsg_accepts_string(g, (const uint8_t *)s, strlen(s));
}

static void check_errors(void)
{
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"root ::= \"abc", "unterminated literal"},
        {"root ::= [abc", "unterminated class"},
        {"root ::= ( \"a\"", "expected ')'"},
        {"root ::= foo", "rule 'foo' is used but never defined"},
        {"foo ::= \"a\"", "no rule 'root'"},
        {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
        {"root ::= \"a\"{3,2}", "n < m"},
        {"root ::= [z-a]", "out of order"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= root \"a\"", "left recursion"},
        {"root ::= \"a\" x\nx ::= y \"b\" | \"c\"\ny ::= \"\" | x", "rule 'x' expands without bound"},
        {"root ::= \"a\" )", "unbalanced"},
        {"root = \"a\"", "expected '::='"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dsg_grammar_t *g = NULL;
        char err[256] = "";
        dsi_status_t st = dsg_compile(bad[i].text, strlen(bad[i].text), &g, err, sizeof(err));
        DSI_CHECK(st != DSI_OK && g == NULL);
        if (strstr(err, bad[i].want) == NULL) {
            fprintf(stderr, "grammar %s: error '%s' lacks '%s'\n", bad[i].text, err, bad[i].want);
            DSI_CHECK(0);
        }
    }
}

static void check_accept(void)
{
    static const struct {
        const char *grammar;
        const char *yes[6], *no[6];
    } cases[] = {
        {"root ::= \"ab\" | \"cd\"", {"ab", "cd"}, {"", "a", "abc", "ac"}},
        {"root ::= [a-c]+ [^a-z]", {"a1", "abcA", "cc-"}, {"a", "1", "ad1"}},
        {"root ::= \"x\"? \"y\"* \"z\"{2,3}", {"zz", "xzz", "xyyyzzz"}, {"z", "xzzzz", "yx"}},
        {"root ::= \"(\" root \")\" | \"\"", {"", "()", "((()))"}, {"(", "())", "(()"}},
        {"root ::= item (\",\" item)*\nitem ::= [0-9]{1,2} # a comment\n",
         {"1", "12,3", "1,2,34"},
         {"", "123", "1,", ",1"}},
        {"root ::= [α-ω]+ \"!\"", {"αβγ!", "ω!"}, {"a!", "Ω!", "α"}},
        {"root ::= [^\"\\\\]* \"\\\"\"", {"\"", "héllo€\"", "日本\""}, {"a\\\"", "\"\""}},
        {"root ::= \"\\u00e9\" \"\\x41\" \"\\n\"", {"éA\n"}, {"eA\n"}},
        {"root ::= (\"a\" | \"b\")* \"c\" | [\\U0001F600-\\U0001F64F]",
         {"c", "abbac", "😀"},
         {"ab", "😀😀"}},
        {"root ::= (\"a\"?)* \"b\"", {"b", "aab"}, {"", "ba"}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dsg_grammar_t *g = compile(cases[i].grammar);
        DSI_CHECK(g != NULL);
        if (g == NULL)
            continue;
        for (int k = 0; k < 6 && cases[i].yes[k]; k++) {
            if (!accepts(g, cases[i].yes[k])) {
                fprintf(stderr, "%s should accept '%s'\n", cases[i].grammar, cases[i].yes[k]);
                DSI_CHECK(0);
            }
        }
        for (int k = 0; k < 6 && cases[i].no[k]; k++) {
            if (accepts(g, cases[i].no[k])) {
                fprintf(stderr, "%s should reject '%s'\n", cases[i].grammar, cases[i].no[k]);
                DSI_CHECK(0);
            }
        }
        dsg_grammar_free(g);
    }
}

/* The grammar a converter wrote to *text (taken by address: it is set by the call in the
 * argument list). */
static dsg_grammar_t *from(dsi_status_t st, char **text, const char *err)
{
    if (st != DSI_OK) {
        fprintf(stderr, "converter failed: %s\n", err);
        return NULL;
    }
    dsg_grammar_t *g = compile(*text);
    free(*text);
    *text = NULL;
    return g;
}

static void check_converters(void)
{
    char *text = NULL, err[256] = "";
    const char *choices[] = {"yes", "no", "a \"quoted\" one"};
    dsg_grammar_t *g = from(dsg_from_choice(choices, 3, "", &text, err, sizeof(err)), &text, err);
    DSI_CHECK(g && accepts(g, "yes") && accepts(g, "a \"quoted\" one") && !accepts(g, "n"));
    dsg_grammar_free(g);

    const char *re = "^(\\d{3}-)?[A-Z][a-z]+\\s\\w*(x|yz)+$";
    g = from(dsg_from_regex(re, strlen(re), "", &text, err, sizeof(err)), &text, err);
    DSI_CHECK(g && accepts(g, "123-Abc d_9xyz") && accepts(g, "Ab x") && !accepts(g, "12-Ab x"));
    dsg_grammar_free(g);
    const char *bad_re[] = {"a(?=b)", "(a)\\1", "\\bword", "a{2,1}", "(ab"};
    for (int i = 0; i < 5; i++) {
        DSI_CHECK(dsg_from_regex(bad_re[i], strlen(bad_re[i]), "", &text, err, sizeof(err)) !=
                  DSI_OK);
    }

    char *lit = NULL;
    DSI_CHECK(dsg_literal("<｜tool▁call▁begin｜>\"x\\\n", strlen("<｜tool▁call▁begin｜>\"x\\\n"),
                          &lit) == DSI_OK);
    char rule[256];
    snprintf(rule, sizeof(rule), "root ::= %s [0-9]", lit ? lit : "x");
    free(lit);
    g = compile(rule);
    DSI_CHECK(g && accepts(g, "<｜tool▁call▁begin｜>\"x\\\n7") &&
              !accepts(g, "<｜tool▁call▁begin｜>7"));
    dsg_grammar_free(g);

    DSI_CHECK(dsg_json_object_gbnf("", &text) == DSI_OK);
    g = from(DSI_OK, &text, "");
    DSI_CHECK(g && accepts(g, "{}") &&
              accepts(g, "{\"a\": [1, 2.5e3, {\"b\": null}], \"c\":\"\\u00e9\"}"));
    DSI_CHECK(g && !accepts(g, "[]") && !accepts(g, "{\"a\":01}") && !accepts(g, "{\"a\"}"));
    dsg_grammar_free(g);

    const char *schema = "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\","
                         "\"minimum\":-5,\"maximum\":120},\"s\":{\"type\":\"string\"},"
                         "\"e\":{\"enum\":[\"a\",1,null]}},\"required\":[\"n\"]}";
    g = from(dsg_from_json_schema(schema, strlen(schema), "", &text, err, sizeof(err)), &text, err);
    DSI_CHECK(g && accepts(g, "{\"n\": -5}") && accepts(g, "{\"n\":120,\"e\":null}"));
    DSI_CHECK(g && accepts(g, "{\"n\": 7, \"s\": \"x\", \"e\": 1}"));
    DSI_CHECK(g && !accepts(g, "{\"n\":121}") && !accepts(g, "{\"n\":-6}") && !accepts(g, "{}"));
    DSI_CHECK(g && !accepts(g, "{\"s\":\"x\",\"n\":1}") && !accepts(g, "{\"n\":1,\"x\":2}"));
    dsg_grammar_free(g);

    const char *unsup = "{\"type\":\"object\",\"patternProperties\":{}}";
    DSI_CHECK(dsg_from_json_schema(unsup, strlen(unsup), "", &text, err, sizeof(err)) ==
              DSI_ERR_UNSUPPORTED);
    DSI_CHECK(strstr(err, "patternProperties") != NULL);
    const char *num = "{\"type\":\"number\",\"minimum\":0.5}";
    DSI_CHECK(dsg_from_json_schema(num, strlen(num), "", &text, err, sizeof(err)) ==
              DSI_ERR_UNSUPPORTED);
    DSI_CHECK(strstr(err, "minimum") != NULL);
}

/* A grammar after a thinking block: free text up to the first marker, then the grammar. */
static void check_after_marker(void)
{
    const char *inner = "root ::= digits # the answer\ndigits ::= [0-9]{1,3} (\"root\" | \"\")";
    char *text = NULL;
    DSI_CHECK(dsg_after_marker(inner, strlen(inner), "</think>", &text) == DSI_OK);
    dsg_grammar_t *g = from(DSI_OK, &text, "");
    DSI_CHECK(g != NULL);
    if (g == NULL)
        return;
    static const char *const yes[] = {"abc</think>12", "</think>\n\n5",       "a</t</think>1",
                                      "<</think>7",    "</thin</think>3root", "日本</think>0"};
    static const char *const no[] = {"abc</think>x", "a</think>b</think>1", "1",
                                     "</think>",     "x</think>\n\n\n1",    "</think>1234"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!accepts(g, yes[i])) {
            fprintf(stderr, "after marker should accept '%s'\n", yes[i]);
            DSI_CHECK(0);
        }
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (accepts(g, no[i])) {
            fprintf(stderr, "after marker should reject '%s'\n", no[i]);
            DSI_CHECK(0);
        }
    }
    dsg_grammar_free(g);

    /* a converted schema (classes, counts, escapes) survives the renaming */
    const char *schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\","
                         "\"maxLength\":3},\"n\":{\"type\":\"integer\",\"minimum\":10,\"maximum\":"
                         "20}},\"required\":[\"a\"]}";
    char *conv = NULL, err[256] = "";
    DSI_CHECK(dsg_from_json_schema(schema, strlen(schema), "", &conv, err, sizeof(err)) == DSI_OK);
    DSI_CHECK(conv && dsg_after_marker(conv, strlen(conv), "</think>", &text) == DSI_OK);
    free(conv);
    g = from(DSI_OK, &text, "");
    DSI_CHECK(g && accepts(g, "hmm</think>\n{\"a\":\"x\\\"y\", \"n\": 15}"));
    DSI_CHECK(g && !accepts(g, "hmm</think>{\"a\":\"wxyz\"}") && !accepts(g, "{\"a\":\"x\"}"));
    dsg_grammar_free(g);
}

/* Integer and number ranges against the arithmetic, over many values. */
static void check_ranges(void)
{
    static const struct {
        const char *schema;
        double lo, hi;
        int lo_ex, hi_ex, integer;
    } r[] = {
        {"{\"type\":\"integer\",\"minimum\":-37,\"maximum\":1234}", -37, 1234, 0, 0, 1},
        {"{\"type\":\"integer\",\"exclusiveMinimum\":9,\"exclusiveMaximum\":100}", 9, 100, 1, 1, 1},
        {"{\"type\":\"integer\",\"minimum\":-1000,\"maximum\":-10}", -1000, -10, 0, 0, 1},
        {"{\"type\":\"integer\",\"minimum\":95}", 95, 1e300, 0, 0, 1},
        {"{\"type\":\"number\",\"minimum\":-3,\"maximum\":12}", -3, 12, 0, 0, 0},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":2}", 0, 2, 1, 1, 0},
        {"{\"type\":\"number\",\"exclusiveMinimum\":-5,\"maximum\":-1}", -5, -1, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        char *text = NULL, err[256] = "";
        dsg_grammar_t *g = from(
            dsg_from_json_schema(r[i].schema, strlen(r[i].schema), "", &text, err, sizeof(err)),
            &text, err);
        DSI_CHECK(g != NULL);
        if (g == NULL)
            continue;
        int bad = 0;
        for (int k = -1200; k <= 1300 && bad < 3; k++) {
            static const char *const fr[] = {"", ".0", ".5", ".05", ".000"};
            for (int f = 0; f < (r[i].integer ? 1 : 5); f++) {
                char s[64];
                double frac = f == 2 ? 0.5 : f == 3 ? 0.05 : 0;
                snprintf(s, sizeof(s), "%s%d%s", k < 0 || (k == 0 && f == 2) ? "-" : "", abs(k),
                         fr[f]);
                double x = (k < 0 || (k == 0 && f == 2)) ? -(abs(k) + frac) : k + frac;
                int want = (r[i].lo_ex ? x > r[i].lo : x >= r[i].lo) &&
                           (r[i].hi_ex ? x < r[i].hi : x <= r[i].hi);
                if (accepts(g, s) != want) {
                    fprintf(stderr, "%s: '%s' accepted %d, want %d\n", r[i].schema, s, !want, want);
                    bad++;
                }
            }
        }
        DSI_CHECK_INT_EQ(bad, 0);
        dsg_grammar_free(g);
    }
}

/* Random vocabularies: short byte strings over a small alphabet with UTF-8 pieces. */
static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)rng;
}

static void check_mask(void)
{
    static const char *const grammars[] = {
        "root ::= obj\nobj ::= \"{\" ( pair (\",\" pair)* )? \"}\"\npair ::= str \":\" val\n"
        "val ::= obj | str | [0-9]+\nstr ::= \"\\\"\" [^\"]* \"\\\"\"",
        "root ::= ([a-c] | \"é\" | \"日本\")* \"!\"",
        "root ::= \"ab\" root \"ba\" | \"x\"",
        "root ::= [^a]{2,5} (\"é\" | \"e\") [b-d]?",
    };
    static const char *const pieces[] = {"{", "}",  "\"", ":", ",", "a", "b",    "c",    "1",   "2",
                                         "é", "日", "本", "!", "x", "d", "\xc3", "\xa9", "\xe6"};
    enum { N_TOK = 300 };
    uint8_t *bytes[N_TOK];
    uint32_t lens[N_TOK];
    for (int t = 0; t < N_TOK; t++) {
        bytes[t] = malloc(16);
        lens[t] = 0;
        int n = t == 0 ? 0 : 1 + (int)(rnd() % 3);
        for (int k = 0; k < n; k++) {
            const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
            memcpy(bytes[t] + lens[t], p, strlen(p));
            lens[t] += (uint32_t)strlen(p);
        }
    }
    dsg_vocab_t *v = NULL;
    DSI_CHECK(dsg_vocab_create(N_TOK, (const uint8_t *const *)bytes, lens, &v) == DSI_OK);
    int32_t eos = 0;
    int compared = 0, bad = 0;
    for (size_t gi = 0; gi < sizeof(grammars) / sizeof(grammars[0]); gi++) {
        dsg_grammar_t *g = compile(grammars[gi]);
        DSI_CHECK(g != NULL);
        if (g == NULL)
            continue;
        for (int run = 0; run < 20; run++) {
            dsg_matcher_t *m = NULL;
            DSI_CHECK(dsg_matcher_create(g, v, &eos, 1, &m) == DSI_OK);
            dsg_ref_t *ref = dsg_ref_create(g);
            for (int step = 0; step < 30 && m != NULL && ref != NULL; step++) {
                float logits[N_TOK];
                for (int t = 0; t < N_TOK; t++)
                    logits[t] = 0.0f;
                DSI_CHECK(dsg_matcher_mask(m, logits, N_TOK) == DSI_OK);
                int32_t allowed[N_TOK];
                int n_allowed = 0;
                for (int t = 1; t < N_TOK; t++) {
                    dsg_ref_t *c = dsg_ref_clone(ref);
                    int want = dsg_ref_feed(c, bytes[t], lens[t]);
                    dsg_ref_free(c);
                    int got = !isinf(logits[t]);
                    compared++;
                    if (got != want && bad++ < 5)
                        fprintf(stderr, "grammar %zu step %d token %d: fast %d, plain %d\n", gi,
                                step, t, got, want);
                    if (got)
                        allowed[n_allowed++] = t;
                }
                int eos_ok = !isinf(logits[0]);
                DSI_CHECK_INT_EQ(eos_ok, dsg_ref_complete(ref));
                DSI_CHECK_INT_EQ(dsg_matcher_complete(m), dsg_ref_complete(ref));
                if (n_allowed == 0 || (eos_ok && rnd() % 4 == 0)) {
                    DSI_CHECK(dsg_matcher_accept(m, 0) == (eos_ok ? DSI_OK : DSI_ERR_BAD_REQUEST));
                    break;
                }
                int32_t t = allowed[rnd() % (uint32_t)n_allowed];
                DSI_CHECK(dsg_matcher_accept(m, t) == DSI_OK);
                dsg_ref_feed(ref, bytes[t], lens[t]);
                /* a token that is not allowed is refused and changes nothing */
                for (int u = 1; u < N_TOK; u++) {
                    dsg_ref_t *c = dsg_ref_clone(ref);
                    int ok = dsg_ref_feed(c, bytes[u], lens[u]);
                    dsg_ref_free(c);
                    if (!ok) {
                        DSI_CHECK(dsg_matcher_accept(m, u) == DSI_ERR_BAD_REQUEST);
                        break;
                    }
                }
            }
            dsg_ref_free(ref);
            dsg_matcher_free(m);
        }
        dsg_grammar_free(g);
    }
    DSI_CHECK(compared > 10000);
    DSI_CHECK_INT_EQ(bad, 0);
    dsg_vocab_free(v);
    for (int t = 0; t < N_TOK; t++)
        free(bytes[t]);
}

int main(void)
{
    check_errors();
    check_accept();
    check_converters();
    check_ranges();
    check_after_marker();
    check_mask();
    return dsi_test_finish();
}
