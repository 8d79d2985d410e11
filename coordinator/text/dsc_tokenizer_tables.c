/* dsc_tokenizer_tables.c - per-id tables: token strings, flags, and their decoded bytes. */
#include <stdlib.h>
#include <string.h>

#include "dsc_tokenizer_impl.h"
#include "dsc_utf8.h"
#include "dsi_log.h"

/* Byte-level alphabet code points run up to 323 (256 + the 68 remapped bytes). */
#define BL_CP_LIMIT 324

dsi_status_t dsc_tokenizer_fill_texts(dsc_tokenizer_t *tok, const char *origin)
{
    int32_t n = tok->n_ids;
    tok->flags = calloc((size_t)n, 1);
    tok->text = calloc((size_t)n, sizeof(*tok->text));
    if (tok->flags == NULL || tok->text == NULL)
        return DSI_ERR_NOMEM;
    for (size_t i = 0; i < tok->vocab.cap; i++) {
        const char *key = tok->vocab.slots[i].key;
        int32_t id = tok->vocab.slots[i].val;
        if (key == NULL)
            continue;
        if (tok->text[id] != NULL) {
            DSI_ERROR("%s: model.vocab: id %d is given to both '%s' and '%s'", origin, (int)id,
                      tok->text[id], key);
            return DSI_ERR_FORMAT;
        }
        tok->text[id] = key;
        tok->flags[id] = DSC_TOKF_KNOWN;
    }
    /* Added tokens take precedence for their ids, as upstream's id_to_token looks there first. */
    for (size_t i = 0; i < tok->added.cap; i++) {
        const dsc_str_slot_t *s = &tok->added.slots[i];
        if (s->key == NULL)
            continue;
        tok->text[s->val] = s->key;
        tok->flags[s->val] |= DSC_TOKF_KNOWN;
    }
    return DSI_OK;
}

/*
 * The bytes a token decodes to, as upstream's ByteLevel decoder: if every character of the token
 * is in the byte-level alphabet, the bytes they stand for; otherwise the token's own UTF-8.
 */
static size_t decode_token(const char *text, const int16_t *byte_of_cp, unsigned char *out)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text), n = 0;
    for (size_t i = 0; i < len;) {
        size_t cl = dsc_utf8_char_len(s + i, len - i);
        uint32_t cp = cl ? dsc_utf8_decode(s + i, cl) : BL_CP_LIMIT;
        if (cp >= BL_CP_LIMIT || byte_of_cp[cp] < 0) {
            memcpy(out, text, len);
            return len;
        }
        out[n++] = (unsigned char)byte_of_cp[cp];
        i += cl;
    }
    return n;
}

dsi_status_t dsc_tokenizer_build_decode(dsc_tokenizer_t *tok)
{
    uint32_t cps[256];
    int16_t byte_of_cp[BL_CP_LIMIT];
    size_t total = 0;
    dsc_bytelevel_table(cps);
    for (int i = 0; i < BL_CP_LIMIT; i++)
        byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++)
        byte_of_cp[cps[b]] = (int16_t)b;
    for (int32_t id = 0; id < tok->n_ids; id++)
        total += tok->text[id] ? strlen(tok->text[id]) : 0;
    tok->dec_off = malloc(((size_t)tok->n_ids + 1) * sizeof(*tok->dec_off));
    tok->dec = malloc(total + 1);
    if (tok->dec_off == NULL || tok->dec == NULL)
        return DSI_ERR_NOMEM;
    size_t off = 0;
    for (int32_t id = 0; id < tok->n_ids; id++) {
        tok->dec_off[id] = (uint32_t)off;
        size_t n = tok->text[id] ? decode_token(tok->text[id], byte_of_cp, tok->dec + off) : 0;
        if (n > tok->max_dec_len)
            tok->max_dec_len = (uint32_t)n;
        off += n;
    }
    tok->dec_off[tok->n_ids] = (uint32_t)off;
    return DSI_OK;
}
