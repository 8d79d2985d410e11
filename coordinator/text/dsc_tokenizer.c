/* dsc_tokenizer.c - encoding and the accessors of dsc_tokenizer.h. */
#include <stdlib.h>
#include <string.h>

#include "dsc_bpe.h"
#include "dsc_tokenizer_impl.h"
#include "dsc_utf8.h"
#include "dsi_log.h"

int32_t dsc_tokenizer_vocab_size(const dsc_tokenizer_t *tok)
{
    return tok->n_ids;
}

int32_t dsc_tokenizer_token_id(const dsc_tokenizer_t *tok, const char *token)
{
    size_t len = strlen(token);
    int32_t id = dsc_strmap_get(&tok->added, token, len);
    return id >= 0 ? id : dsc_strmap_get(&tok->vocab, token, len);
}

const char *dsc_tokenizer_token_text(const dsc_tokenizer_t *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids ? tok->text[id] : NULL;
}

const unsigned char *dsc_tokenizer_token_bytes(const dsc_tokenizer_t *tok, int32_t id, size_t *len)
{
    *len = 0;
    if (id < 0 || id >= tok->n_ids || !(tok->flags[id] & DSC_TOKF_KNOWN))
        return NULL;
    *len = tok->dec_off[id + 1] - tok->dec_off[id];
    return tok->dec + tok->dec_off[id];
}

int dsc_tokenizer_is_special(const dsc_tokenizer_t *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids && (tok->flags[id] & DSC_TOKF_SPECIAL) != 0;
}

int32_t dsc_tokenizer_bos_id(const dsc_tokenizer_t *tok)
{
    return tok->bos_id;
}

int32_t dsc_tokenizer_eos_id(const dsc_tokenizer_t *tok)
{
    return tok->eos_id;
}

/* The state of one encode call: everything it allocates, so calls are independent. */
typedef struct {
    const dsc_tokenizer_t *tok;
    int skip_special;
    dsc_pretok_scratch_t pre;
    dsc_bpe_ctx_t bpe;
    dsc_idvec_t ids;
} encode_ctx_t;

static dsi_status_t on_piece(void *arg, const char *piece, size_t len)
{
    encode_ctx_t *c = arg;
    return dsc_bpe_encode(c->tok, &c->bpe, piece, len, &c->ids);
}

/* Text between normalized added tokens: pre-tokenize, then BPE each piece. */
static dsi_status_t on_norm_segment(void *arg, const char *s, size_t len, int32_t id)
{
    encode_ctx_t *c = arg;
    if (id >= 0)
        return dsc_idvec_push(&c->ids, id);
    return dsc_pretok_run(&c->tok->pretok, &c->pre, s, len, on_piece, c);
}

/* Text between raw added tokens: the normalizer is the identity, so match the normalized set. */
static dsi_status_t on_raw_segment(void *arg, const char *s, size_t len, int32_t id)
{
    encode_ctx_t *c = arg;
    if (id >= 0)
        return dsc_idvec_push(&c->ids, id);
    return dsc_added_split(&c->tok->added_norm, s, len, c->skip_special, on_norm_segment, c);
}

dsi_status_t dsc_tokenizer_encode(const dsc_tokenizer_t *tok, const char *text, size_t len,
                                  unsigned flags, int32_t **ids, size_t *n_ids)
{
    encode_ctx_t c = {.tok = tok, .skip_special = (flags & DSC_ENCODE_SPLIT_SPECIAL) != 0};
    size_t bad;
    dsi_status_t st;
    if (tok == NULL || (text == NULL && len > 0) || ids == NULL || n_ids == NULL)
        return DSI_ERR_INVALID_ARG;
    if (!dsc_utf8_validate(text, len, &bad)) {
        DSI_ERROR("tokenizer: input is not valid UTF-8 at byte offset %zu (byte 0x%02x)", bad,
                  (unsigned)(unsigned char)text[bad]);
        return DSI_ERR_BAD_UTF8;
    }
    if ((flags & DSC_ENCODE_ADD_BOS) && tok->bos_id < 0) {
        DSI_ERROR("tokenizer: BOS requested but the tokenizer has no known bos_token");
        return DSI_ERR_UNSUPPORTED;
    }
    dsc_bpe_ctx_init(&c.bpe);
    if ((st = dsc_pretok_scratch_init(&c.pre)) != DSI_OK)
        goto out;
    if ((flags & DSC_ENCODE_ADD_BOS) && (st = dsc_idvec_push(&c.ids, tok->bos_id)) != DSI_OK)
        goto out;
    if (len > 0)
        st = dsc_added_split(&tok->added_raw, text, len, c.skip_special, on_raw_segment, &c);
out:
    dsc_pretok_scratch_cleanup(&c.pre);
    dsc_bpe_ctx_cleanup(&c.bpe);
    if (st != DSI_OK) {
        if (st == DSI_ERR_NOMEM)
            DSI_ERROR("tokenizer: out of memory encoding %zu bytes", len);
        free(c.ids.v);
        return st;
    }
    *ids = c.ids.v;
    *n_ids = c.ids.n;
    return DSI_OK;
}
