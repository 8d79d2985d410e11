/* dsc_detok.c - decoding ids to text, whole or streamed (see dsc_tokenizer.h). */
#include <stdlib.h>
#include <string.h>

#include "dsc_tokenizer_impl.h"
#include "dsc_utf8.h"
#include "dsi_log.h"

static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

/*
 * Lossy-convert in[0..n) to out. When `final` is 0, a valid but incomplete character at the end
 * is not converted: its length is returned in *held (its bytes are the last *held of `in`).
 * Returns the bytes written; out needs room for 3 * n.
 */
static size_t lossy(const unsigned char *in, size_t n, int final, char *out, size_t *held)
{
    size_t i = 0, w = 0;
    *held = 0;
    while (i < n) {
        int valid;
        size_t step = dsc_utf8_lossy_step(in + i, n - i, &valid);
        if (step == 0) { /* incomplete at the end */
            if (!final) {
                *held = n - i;
                return w;
            }
            memcpy(out + w, replacement, 3);
            return w + 3;
        }
        if (valid) {
            memcpy(out + w, in + i, step);
            w += step;
        } else {
            memcpy(out + w, replacement, 3);
            w += 3;
        }
        i += step;
    }
    return w;
}

/* The decoded bytes of id, or NULL when the id is unknown or skipped. */
static const unsigned char *token_bytes(const dsc_tokenizer_t *tok, int32_t id, unsigned flags,
                                        size_t *len)
{
    if (id < 0 || id >= tok->n_ids || !(tok->flags[id] & DSC_TOKF_KNOWN))
        return NULL;
    if ((flags & DSC_DECODE_SKIP_SPECIAL) && (tok->flags[id] & DSC_TOKF_SPECIAL))
        return NULL;
    *len = tok->dec_off[id + 1] - tok->dec_off[id];
    return tok->dec + tok->dec_off[id];
}

dsi_status_t dsc_tokenizer_decode(const dsc_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                                  unsigned flags, char **text, size_t *len)
{
    size_t total = 0, tl, held;
    if (tok == NULL || (ids == NULL && n_ids > 0) || text == NULL || len == NULL)
        return DSI_ERR_INVALID_ARG;
    for (size_t i = 0; i < n_ids; i++)
        total += token_bytes(tok, ids[i], flags, &tl) ? tl : 0;
    unsigned char *bytes = malloc(total + 1);
    char *out = malloc(3 * total + 1);
    if (bytes == NULL || out == NULL) {
        DSI_ERROR("tokenizer: out of memory decoding %zu ids", n_ids);
        free(bytes);
        free(out);
        return DSI_ERR_NOMEM;
    }
    size_t off = 0;
    for (size_t i = 0; i < n_ids; i++) {
        const unsigned char *b = token_bytes(tok, ids[i], flags, &tl);
        if (b != NULL) {
            memcpy(bytes + off, b, tl);
            off += tl;
        }
    }
    size_t w = lossy(bytes, off, 1, out, &held);
    out[w] = '\0';
    free(bytes);
    *text = out;
    *len = w;
    return DSI_OK;
}

struct dsc_decoder {
    const dsc_tokenizer_t *tok;
    unsigned flags;
    unsigned char *work; /* held bytes, then the new token's: [max_dec_len + 4] */
    size_t n_held;
    char *out; /* [3 * (max_dec_len + 4)] */
};

dsi_status_t dsc_decoder_create(const dsc_tokenizer_t *tok, unsigned flags, dsc_decoder_t **out)
{
    dsc_decoder_t *dec = calloc(1, sizeof(*dec));
    size_t cap = (size_t)tok->max_dec_len + 4;
    if (dec == NULL || (dec->work = malloc(cap)) == NULL || (dec->out = malloc(3 * cap)) == NULL) {
        dsc_decoder_destroy(dec);
        return DSI_ERR_NOMEM;
    }
    dec->tok = tok;
    dec->flags = flags;
    *out = dec;
    return DSI_OK;
}

void dsc_decoder_destroy(dsc_decoder_t *dec)
{
    if (dec == NULL)
        return;
    free(dec->work);
    free(dec->out);
    free(dec);
}

void dsc_decoder_push(dsc_decoder_t *dec, int32_t id, const char **text, size_t *len)
{
    size_t tl, held;
    const unsigned char *b = token_bytes(dec->tok, id, dec->flags, &tl);
    *text = dec->out;
    *len = 0;
    if (b == NULL)
        return;
    /* At most 3 bytes are ever held, so they and the token fit in work. */
    memcpy(dec->work + dec->n_held, b, tl);
    size_t n = dec->n_held + tl;
    *len = lossy(dec->work, n, 0, dec->out, &held);
    memmove(dec->work, dec->work + n - held, held);
    dec->n_held = held;
}

void dsc_decoder_flush(dsc_decoder_t *dec, const char **text, size_t *len)
{
    size_t held;
    *text = dec->out;
    *len = lossy(dec->work, dec->n_held, 1, dec->out, &held);
    dec->n_held = 0;
}

void dsc_decoder_reset(dsc_decoder_t *dec)
{
    dec->n_held = 0;
}
