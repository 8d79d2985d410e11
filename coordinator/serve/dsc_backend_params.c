/*
 * dsc_backend_params.c - a request's sampling parameters as the cluster takes them: the model's
 * generation_config.json defaults for what the request left out, the controls of SUBMIT.sampling
 * (token ids checked against the vocabulary), and the logprobs that come back, with each token's
 * exact bytes.
 */
#include "dsc_backend_impl.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "dsi_log.h"

/* GPT-2's bytes_to_unicode, inverted: code point (< 324) -> byte. */
static void byte_level_table(int16_t *inv)
{
    int n = 0;
    for (int c = 0; c < DSC_BACKEND_BL_CODES; c++)
        inv[c] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        inv[printable ? b : 256 + n++] = (int16_t)b;
    }
}

void dsc_backend_gen_config_load(dsc_backend_t *b, const char *dir)
{
    byte_level_table(b->bl_inv);
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/generation_config.json", dir) >= (int)sizeof(path))
        return;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        DSI_DEBUG("backend: no %s (%s): sampling defaults are OpenAI's", path, jerr.text);
        return;
    }
    json_t *t = json_object_get(root, "temperature"), *p = json_object_get(root, "top_p"),
           *k = json_object_get(root, "top_k");
    /* Only values the API would accept itself become defaults. */
    if (json_is_number(t) && json_number_value(t) >= 0 && json_number_value(t) <= 2) {
        b->gen.has_temperature = 1;
        b->gen.temperature = (float)json_number_value(t);
    }
    if (json_is_number(p) && json_number_value(p) > 0 && json_number_value(p) <= 1) {
        b->gen.has_top_p = 1;
        b->gen.top_p = (float)json_number_value(p);
    }
    if (json_is_integer(k) && json_integer_value(k) >= 0 && json_integer_value(k) < (1 << 24)) {
        b->gen.has_top_k = 1;
        b->gen.top_k = (int32_t)json_integer_value(k);
    }
    DSI_INFO("backend: %s: defaults temperature %s%g, top_p %s%g, top_k %s%d", path,
             b->gen.has_temperature ? "" : "(none) ", (double)b->gen.temperature,
             b->gen.has_top_p ? "" : "(none) ", (double)b->gen.top_p,
             b->gen.has_top_k ? "" : "(none) ", b->gen.top_k);
    json_decref(root);
}

void dsc_backend_defaults(const dsc_backend_t *b, const dsc_api_request_t *req, float *temperature,
                          float *top_p, uint32_t *top_k)
{
    *temperature =
        req->temperature_given || !b->gen.has_temperature ? req->temperature : b->gen.temperature;
    *top_p = req->top_p_given || !b->gen.has_top_p ? req->top_p : b->gen.top_p;
    *top_k = (uint32_t)(req->top_k_given || !b->gen.has_top_k ? req->top_k : b->gen.top_k);
}

static dsi_status_t bad_id(char *message, size_t cap, const char *param, int32_t id, int32_t vocab)
{
    snprintf(message, cap,
             "Invalid value for '%s': token %d is outside the model's vocabulary [0, %d).", param,
             id, vocab);
    return DSI_ERR_BAD_REQUEST;
}

dsi_status_t dsc_backend_sampling(const dsc_backend_t *b, const dsc_api_request_t *req,
                                  dst_msg_sampling_t *out, char *message, size_t cap)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < req->n_bias; i++) {
        if (req->bias_ids[i] >= b->cfg.vocab_size)
            return bad_id(message, cap, "logit_bias", req->bias_ids[i], b->cfg.vocab_size);
    }
    for (int i = 0; i < req->n_stop_ids; i++) {
        if (req->stop_ids[i] >= b->cfg.vocab_size)
            return bad_id(message, cap, "stop_token_ids", req->stop_ids[i], b->cfg.vocab_size);
    }
    out->presence_penalty = req->presence_penalty;
    out->frequency_penalty = req->frequency_penalty;
    out->repetition_penalty = req->repetition_penalty == 1.0f ? 0.0f : req->repetition_penalty;
    out->min_p = req->min_p;
    out->min_tokens = (uint32_t)req->min_tokens;
    out->ignore_eos = (uint8_t)(req->ignore_eos != 0);
    out->logprobs = (uint8_t)(req->logprobs != 0);
    out->top_logprobs = (uint8_t)req->top_logprobs;
    out->n_bias = (uint32_t)req->n_bias;
    out->bias_ids = (int32_t *)req->bias_ids;
    out->bias_values = (float *)req->bias_values;
    out->n_stop_ids = (uint32_t)req->n_stop_ids;
    out->stop_ids = (int32_t *)req->stop_ids;
    return DSI_OK;
}

/* The exact bytes of token `id` into buf (at most cap); special tokens as written. */
static size_t token_bytes(const dsc_backend_t *b, int32_t id, char *buf, size_t cap)
{
    const char *t = dsc_tokenizer_token_text(b->tok, id);
    if (t == NULL)
        return 0;
    size_t n = strlen(t), o = 0;
    if (dsc_tokenizer_is_special(b->tok, id)) {
        n = n < cap ? n : cap;
        memcpy(buf, t, n);
        return n;
    }
    for (size_t i = 0; i < n && o < cap;) {
        unsigned char c = (unsigned char)t[i];
        uint32_t cp = c;
        size_t len = 1;
        if (c >= 0xc0 && c < 0xe0 && i + 1 < n) {
            cp = ((c & 0x1fu) << 6) | ((unsigned char)t[i + 1] & 0x3fu);
            len = 2;
        } else if (c >= 0xe0) { /* outside the byte-level alphabet: copied as is */
            len = c >= 0xf0 ? 4 : 3;
            cp = DSC_BACKEND_BL_CODES;
        }
        if (cp < DSC_BACKEND_BL_CODES && b->bl_inv[cp] >= 0) {
            buf[o++] = (char)b->bl_inv[cp];
        } else {
            for (size_t j = 0; j < len && i + j < n && o < cap; j++)
                buf[o++] = t[i + j];
        }
        i += len;
    }
    return o;
}

void dsc_backend_on_logprobs(void *ctx, const dst_msg_tokens_t *t)
{
    dsc_backend_seq_t *s = ctx;
    dsc_backend_t *b = s->b;
    if (!s->attached || s->events->on_logprobs == NULL)
        return;
    for (uint32_t i = 0; i < t->n_tokens; i++) {
        dsc_api_logprob_t e;
        int n_top =
            (int)(t->n_top < DSC_API_MAX_TOP_LOGPROBS ? t->n_top : DSC_API_MAX_TOP_LOGPROBS);
        e.token.bytes = b->lp_bytes[0];
        e.token.len = token_bytes(b, t->tokens[i], b->lp_bytes[0], DSC_BACKEND_TOKEN_BYTES);
        e.token.logprob = t->logprob[i];
        e.n_top = n_top;
        for (int j = 0; j < n_top; j++) {
            size_t k = (size_t)i * t->n_top + (size_t)j;
            e.top[j].bytes = b->lp_bytes[j + 1];
            e.top[j].len =
                token_bytes(b, t->top_ids[k], b->lp_bytes[j + 1], DSC_BACKEND_TOKEN_BYTES);
            e.top[j].logprob = t->top_logprobs[k];
        }
        s->events->on_logprobs(s->ctx, &e);
    }
}
