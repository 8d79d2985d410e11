/*
 * fuzz_tokenizer - the byte-level BPE tokenizer with the real DeepSeek-V3 tokenizer.json
 * (coordinator/text: added-token matching, the Oniguruma pre-tokenizer, BPE merges, decoding,
 * the stream decoder).
 *
 * The tokenizer is loaded once: $DSINFER_FUZZ_TOKENIZER (a tokenizer.json or a directory), else
 * <fixtures>/tokenizer (fixtures: $DSINFER_FIXTURES or the configured DSINFER_FIXTURES).
 *
 * Input: arbitrary bytes, encoded as text (flags 0, and also DSC_ENCODE_SPLIT_SPECIAL when the text
 * has a '<' that could open a special token). Checks: encoding succeeds exactly when the text is
 * valid UTF-8; every id is known; decoding the ids gives the text back byte for byte (no
 * normalizer, no stripping added tokens: the V3 tokenizer round-trips); the stream decoder's
 * pieces concatenate to dsc_tokenizer_decode's text. The same input read as 24-bit ids (most
 * unknown or special, byte sequences that are not UTF-8) is decoded both ways and compared.
 */
#include <string.h>

#include "dsc_tokenizer.h"
#include "dsc_utf8.h"
#include "fuzz_util.h"

static dsc_tokenizer_t *tok;
static dsc_decoder_t *dec[2]; /* flags 0, DSC_DECODE_SKIP_SPECIAL */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char path[4096];
    const char *env = getenv("DSINFER_FUZZ_TOKENIZER");
    if (env != NULL && env[0] != '\0')
        snprintf(path, sizeof(path), "%s", env);
    else
        snprintf(path, sizeof(path), "%s/tokenizer", fuzz_fixtures());
    if (dsc_tokenizer_load(path, &tok) != DSI_OK) {
        fuzz_fixture_missing("fuzz_tokenizer", path);
    }
    FUZZ_CHECK(dsc_decoder_create(tok, 0, &dec[0]) == DSI_OK);
    FUZZ_CHECK(dsc_decoder_create(tok, DSC_DECODE_SKIP_SPECIAL, &dec[1]) == DSI_OK);
    return 0;
}

/* Appends the decoder's output for every id plus the flush into a buffer and compares it with
 * dsc_tokenizer_decode. */
static void check_stream(const int32_t *ids, size_t n, int skip)
{
    unsigned flags = skip ? DSC_DECODE_SKIP_SPECIAL : 0;
    char *whole = NULL;
    size_t whole_len = 0;
    FUZZ_CHECK(dsc_tokenizer_decode(tok, ids, n, flags, &whole, &whole_len) == DSI_OK);
    FUZZ_CHECK(whole != NULL && whole[whole_len] == '\0');
    FUZZ_CHECK(dsc_utf8_validate(whole, whole_len, NULL));
    size_t cap = whole_len + 64, len = 0;
    char *cat = malloc(cap);
    FUZZ_CHECK(cat != NULL);
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t plen;
        if (i < n)
            dsc_decoder_push(dec[skip], ids[i], &piece, &plen);
        else
            dsc_decoder_flush(dec[skip], &piece, &plen);
        FUZZ_CHECK(len + plen <= whole_len);
        memcpy(cat + len, piece, plen);
        len += plen;
    }
    FUZZ_CHECK(len == whole_len && memcmp(cat, whole, len) == 0);
    free(cat);
    free(whole);
}

static void encode(const char *text, size_t len, unsigned flags, int valid)
{
    int32_t *ids = NULL;
    size_t n = 0;
    dsi_status_t st = dsc_tokenizer_encode(tok, text, len, flags, &ids, &n);
    if (!valid) {
        FUZZ_CHECK(st == DSI_ERR_BAD_UTF8);
        return;
    }
    FUZZ_CHECK(st == DSI_OK);
    FUZZ_CHECK((n == 0) == (len == 0));
    int32_t vocab = dsc_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab && dsc_tokenizer_token_text(tok, ids[i]) != NULL);
    char *back = NULL;
    size_t back_len = 0;
    FUZZ_CHECK(dsc_tokenizer_decode(tok, ids, n, 0, &back, &back_len) == DSI_OK);
    if (back_len != len || memcmp(back, text, len) != 0)
        fuzz_note("round trip: %zu bytes in, %zu bytes back", len, back_len);
    FUZZ_CHECK(back_len == len && memcmp(back, text, len) == 0);
    free(back);
    check_stream(ids, n, 0);
    check_stream(ids, n, 1);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1); /* exactly sized: no NUL after the text */
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    int valid = dsc_utf8_validate(text, size, NULL);
    encode(text, size, 0, valid);
    if (memchr(text, '<', size) != NULL)
        encode(text, size, DSC_ENCODE_SPLIT_SPECIAL, valid);
    free(text);

    /* The bytes as ids: around the vocabulary, with unknown and negative ones. */
    size_t n = size / 3;
    int32_t *ids = malloc((n ? n : 1) * sizeof(*ids));
    FUZZ_CHECK(ids != NULL);
    int32_t span = dsc_tokenizer_vocab_size(tok) + 32;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = data[3 * i] | (uint32_t)data[3 * i + 1] << 8 | (uint32_t)data[3 * i + 2] << 16;
        ids[i] = (int32_t)(v % (uint32_t)span) - 16;
    }
    check_stream(ids, n, 0);
    check_stream(ids, n, 1);
    free(ids);
    return 0;
}
