/*
 * test_unit_tokenizer_regex.c - the direct matchers of dsc_pretok_fast.c against Oniguruma on the
 * same patterns: DeepSeek-V3's pre-tokenizer is built twice (fast path, and Oniguruma forced with
 * DSINFER_TOKENIZER_REGEX=onig) and both split thousands of random strings drawn from characters
 * of every class the patterns distinguish. Any difference in the pieces fails.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_pretokenize.h"
#include "dsi_test.h"

typedef struct {
    size_t n;
    size_t off[512]; /* piece start offsets into a copy, and lengths */
    size_t len[512];
    char buf[8192];
    size_t used;
} pieces_t;

static dsi_status_t collect(void *ctx, const char *piece, size_t len)
{
    pieces_t *p = ctx;
    if (p->n == 512 || p->used + len > sizeof(p->buf))
        return DSI_ERR_TOO_LARGE;
    memcpy(p->buf + p->used, piece, len);
    p->off[p->n] = p->used;
    p->len[p->n++] = len;
    p->used += len;
    return DSI_OK;
}

/* Characters of every class: letters (Lu Ll Lt Lm Lo, astral), marks (Mn Mc Me), numbers (Nd Nl
 * No, astral), punctuation, symbols, spaces of several kinds, \r \n, controls, format, CJK. */
static const char *const alphabet[] = {
    "a",
    "Z",
    "q",
    "é",
    "\xcc\x81",
    "0",
    "7",
    "\xd9\xa3",
    "\xe2\x85\xab",
    "\xc2\xbd",
    " ",
    " ",
    "\t",
    "\n",
    "\r",
    "\xc2\xa0",
    "\xe3\x80\x80",
    "\xe2\x80\xa8",
    "\x0b",
    "\x0c",
    ".",
    ",",
    "-",
    "_",
    "'",
    "\"",
    "(",
    "$",
    "+",
    "\xe2\x82\xac",
    "\xc2\xa9",
    "\xf0\x9f\x98\x80",
    "\xe4\xbd\xa0",
    "\xe5\xa5\xbd",
    "\xe3\x81\xae",
    "\xe3\x82\xab",
    "\xe3\x83\xbc",
    "\xed\x95\x9c",
    "\xe0\xb9\x84",
    "\xe2\x80\x8b",
    "\x01",
    "\xce\xa9",
    "\xc3\x9f",
    "\xc7\x85",
    "\xca\xb0",
    "\xe0\xa4\x83",
    "\xe2\x83\x9d",
    "\xc2\xab",
    "\xe2\x80\x90",
    "\xe2\x99\xa5",
    "\xf0\x9f\x8f\xbb",
    "\xf0\x90\x90\x80",
    "\xf0\x9d\x9f\x8e",
    "\xf3\xa0\x80\x81",
    "\xe9\xbe\xa5",
    "\xe9\xbe\xa6",
    "\xe3\x82\x9f",
    "\xe3\x82\xa0",
    "\xe3\x83\xbf",
    "\xe4\xb8\x80",
    "\xef\xbc\x8c",
    "\xe3\x80\x82",
    "\xc2\x85",
    "#",
    "~",
    "\\",
    "`",
    "x",
    "1",
    "\x00",
};
#define N_ALPHA (sizeof(alphabet) / sizeof(alphabet[0]))

static size_t alpha_len(size_t k)
{
    return k == N_ALPHA - 1 ? 1 : strlen(alphabet[k]); /* the last one is NUL */
}

int main(void)
{
    char path[4200];
    json_error_t err;
    snprintf(path, sizeof(path), "%s/tokenizer.json", dsi_test_fixture("tokenizer"));
    json_t *root = json_load_file(path, 0, &err);
    DSI_CHECK(root != NULL);
    if (root == NULL)
        return dsi_test_finish();
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    dsc_pretok_t fast, onig;
    DSI_CHECK_INT_EQ(dsc_pretok_parse(pre, "fast", &fast), DSI_OK);
    setenv("DSINFER_TOKENIZER_REGEX", "onig", 1);
    DSI_CHECK_INT_EQ(dsc_pretok_parse(pre, "onig", &onig), DSI_OK);
    unsetenv("DSINFER_TOKENIZER_REGEX");
    /* The fast path must really be in use on one side and not on the other. */
    DSI_CHECK_INT_EQ(fast.n_splits, 3);
    for (int i = 0; i < fast.n_splits; i++) {
        DSI_CHECK(fast.splits[i].fast != DSC_FAST_NONE);
        DSI_CHECK(onig.splits[i].fast == DSC_FAST_NONE);
    }
    dsc_pretok_scratch_t s1, s2;
    DSI_CHECK_INT_EQ(dsc_pretok_scratch_init(&s1), DSI_OK);
    DSI_CHECK_INT_EQ(dsc_pretok_scratch_init(&s2), DSI_OK);
    static pieces_t a, b;
    char text[512];
    int mismatches = 0;
    dsi_test_seed(12345);
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = 0, n_chars = 1 + dsi_test_randu() % 24;
        /* Bias towards runs: repeat the previous character half of the time. */
        size_t k = dsi_test_randu() % N_ALPHA;
        for (size_t c = 0; c < n_chars; c++) {
            if (dsi_test_randu() % 2)
                k = dsi_test_randu() % N_ALPHA;
            memcpy(text + len, alphabet[k], alpha_len(k));
            len += alpha_len(k);
        }
        a.n = b.n = a.used = b.used = 0;
        DSI_CHECK_INT_EQ(dsc_pretok_run(&fast, &s1, text, len, collect, &a), DSI_OK);
        DSI_CHECK_INT_EQ(dsc_pretok_run(&onig, &s2, text, len, collect, &b), DSI_OK);
        int same = a.n == b.n && a.used == b.used && memcmp(a.buf, b.buf, a.used) == 0;
        for (size_t i = 0; same && i < a.n; i++)
            same = a.len[i] == b.len[i];
        if (!same && mismatches++ < 5) {
            fprintf(stderr, "pieces differ for text (hex):");
            for (size_t i = 0; i < len; i++)
                fprintf(stderr, " %02x", (unsigned char)text[i]);
            fprintf(stderr, "\n  fast %zu pieces, onig %zu pieces\n", a.n, b.n);
        }
        DSI_CHECK(same);
    }
    fprintf(stderr, "%d of 20000 random strings split differently\n", mismatches);
    dsc_pretok_scratch_cleanup(&s1);
    dsc_pretok_scratch_cleanup(&s2);
    dsc_pretok_cleanup(&fast);
    dsc_pretok_cleanup(&onig);
    json_decref(root);
    return dsi_test_finish();
}
