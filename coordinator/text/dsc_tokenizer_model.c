/* dsc_tokenizer_model.c - the BPE model section of tokenizer.json: vocabulary and merges. */
#include <stdlib.h>
#include <string.h>

#include "dsc_tokenizer_impl.h"
#include "dsc_utf8.h"
#include "dsi_log.h"

void dsc_bytelevel_table(uint32_t cp_of_byte[256])
{
    /* Printable Latin-1 bytes stand for themselves; the others get 256, 257, ... in byte order. */
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        cp_of_byte[b] = printable ? b : 256 + n++;
    }
}

/* Reject what would make the BPE differ from ours: dropout, subword affixes, byte fallback. */
static dsi_status_t check_model_options(const json_t *model, const char *origin)
{
    const json_t *type = json_object_get(model, "type");
    const json_t *dropout = json_object_get(model, "dropout");
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    if (type != NULL && !(json_is_string(type) && strcmp(json_string_value(type), "BPE") == 0)) {
        DSI_ERROR("%s: model.type '%s' is not supported (only BPE)", origin,
                  json_is_string(type) ? json_string_value(type) : "?");
        return DSI_ERR_UNSUPPORTED;
    }
    if (dropout != NULL && !json_is_null(dropout) &&
        !(json_is_number(dropout) && json_number_value(dropout) == 0.0)) {
        DSI_ERROR("%s: model.dropout is not supported (must be null)", origin);
        return DSI_ERR_UNSUPPORTED;
    }
    for (int i = 0; i < 2; i++) {
        const json_t *a = json_object_get(model, affixes[i]);
        if (a != NULL && !json_is_null(a) && !(json_is_string(a) && json_string_length(a) == 0)) {
            DSI_ERROR("%s: model.%s is not supported (must be null)", origin, affixes[i]);
            return DSI_ERR_UNSUPPORTED;
        }
    }
    if (json_is_true(json_object_get(model, "byte_fallback"))) {
        DSI_ERROR("%s: model.byte_fallback is not supported", origin);
        return DSI_ERR_UNSUPPORTED;
    }
    return DSI_OK;
}

/* Copy the vocabulary into an arena and index it. */
static dsi_status_t load_vocab(dsc_tokenizer_t *tok, const json_t *vocab, const char *origin,
                               int32_t *max_id)
{
    const char *key;
    const json_t *val;
    size_t total = 0, off = 0;
    void *iter;
    for (iter = json_object_iter((json_t *)vocab); iter != NULL;
         iter = json_object_iter_next((json_t *)vocab, iter))
        total += json_object_iter_key_len(iter) + 1;
    if ((tok->vocab_arena = malloc(total + 1)) == NULL ||
        dsc_strmap_init(&tok->vocab, json_object_size(vocab)) != DSI_OK)
        return DSI_ERR_NOMEM;
    *max_id = -1;
    for (iter = json_object_iter((json_t *)vocab); iter != NULL;
         iter = json_object_iter_next((json_t *)vocab, iter)) {
        key = json_object_iter_key(iter);
        val = json_object_iter_value(iter);
        size_t len = json_object_iter_key_len(iter); /* keys may hold NUL ("\u0000") */
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= DSC_TOK_MAX_ID) {
            DSI_ERROR("%s: model.vocab['%.*s']: id must be an integer in [0, %d)", origin, (int)len,
                      key, DSC_TOK_MAX_ID);
            return DSI_ERR_FORMAT;
        }
        int32_t id = (int32_t)json_integer_value(val);
        memcpy(tok->vocab_arena + off, key, len + 1);
        if (dsc_strmap_put(&tok->vocab, tok->vocab_arena + off, len, id, NULL) < 0)
            return DSI_ERR_NOMEM;
        off += len + 1;
        if (id > *max_id)
            *max_id = id;
    }
    return DSI_OK;
}

/* One merge entry: "left right" (one space) or ["left", "right"]. */
static int merge_parts(const json_t *m, const char **a, size_t *la, const char **b, size_t *lb)
{
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        const char *sp = strchr(s, ' ');
        if (sp == NULL || strchr(sp + 1, ' ') != NULL)
            return 0;
        *a = s;
        *la = (size_t)(sp - s);
        *b = sp + 1;
        *lb = strlen(sp + 1);
        return 1;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *la = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *lb = json_string_length(json_array_get(m, 1));
        return 1;
    }
    return 0;
}

static dsi_status_t load_merges(dsc_tokenizer_t *tok, const json_t *merges, const char *origin)
{
    size_t n = json_array_size(merges), cap = 256, i;
    char *buf = malloc(cap);
    const json_t *m;
    dsi_status_t st = DSI_OK;
    if (buf == NULL || dsc_pairmap_init(&tok->merges, n) != DSI_OK) {
        free(buf);
        return DSI_ERR_NOMEM;
    }
    json_array_foreach(merges, i, m)
    {
        const char *a, *b;
        size_t la, lb;
        if (!merge_parts(m, &a, &la, &b, &lb)) {
            DSI_ERROR("%s: model.merges[%zu]: expected \"left right\" or [left, right]", origin, i);
            st = DSI_ERR_FORMAT;
            break;
        }
        if (la + lb > cap) {
            cap = la + lb;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                st = DSI_ERR_NOMEM;
                break;
            }
            buf = nb;
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t ia = dsc_strmap_get(&tok->vocab, a, la), ib = dsc_strmap_get(&tok->vocab, b, lb);
        int32_t im = dsc_strmap_get(&tok->vocab, buf, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            DSI_ERROR("%s: model.merges[%zu]: '%.*s' + '%.*s': %s is not in the vocabulary", origin,
                      i, (int)la, a, (int)lb, b,
                      ia < 0   ? "the left part"
                      : ib < 0 ? "the right part"
                               : "the result");
            st = DSI_ERR_FORMAT;
            break;
        }
        dsc_pairmap_put(&tok->merges, ia, ib, (uint32_t)i, im);
    }
    free(buf);
    return st;
}

static dsi_status_t load_unk(dsc_tokenizer_t *tok, const json_t *model, const char *origin)
{
    const json_t *unk = json_object_get(model, "unk_token");
    tok->unk_id = -1;
    tok->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    tok->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    if (unk == NULL || json_is_null(unk))
        return DSI_OK;
    if (!json_is_string(unk) || (tok->unk_id = dsc_strmap_get(&tok->vocab, json_string_value(unk),
                                                              json_string_length(unk))) < 0) {
        DSI_ERROR("%s: model.unk_token must be null or a token of the vocabulary", origin);
        return DSI_ERR_FORMAT;
    }
    return DSI_OK;
}

/* The id of each byte's byte-level character (absent ones become unk or vanish, as upstream). */
static void load_byte_ids(dsc_tokenizer_t *tok)
{
    uint32_t cps[256];
    char utf8[4];
    dsc_bytelevel_table(cps);
    for (int b = 0; b < 256; b++)
        tok->byte_id[b] = dsc_strmap_get(&tok->vocab, utf8, dsc_utf8_encode(cps[b], utf8));
}

dsi_status_t dsc_tokenizer_load_model(dsc_tokenizer_t *tok, const json_t *model, const char *origin,
                                      int32_t *max_id)
{
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    dsi_status_t st;
    if (!json_is_object(model)) {
        DSI_ERROR("%s: 'model' must be an object", origin);
        return DSI_ERR_FORMAT;
    }
    if ((st = check_model_options(model, origin)) != DSI_OK)
        return st;
    if (!json_is_object(vocab) || json_object_size(vocab) == 0 || !json_is_array(merges)) {
        DSI_ERROR("%s: model needs a non-empty 'vocab' object and a 'merges' array", origin);
        return DSI_ERR_FORMAT;
    }
    if ((st = load_vocab(tok, vocab, origin, max_id)) != DSI_OK ||
        (st = load_merges(tok, merges, origin)) != DSI_OK ||
        (st = load_unk(tok, model, origin)) != DSI_OK)
        return st;
    load_byte_ids(tok);
    return DSI_OK;
}
