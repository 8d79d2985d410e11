/*
 * dsc_backend_tokenize.c - the backend's ops behind POST /tokenize and POST /detokenize: the
 * prompt's token ids exactly as a generation would submit them, and the text of token ids.
 */
#include "dsc_backend_impl.h"

#include <stdio.h>
#include <stdlib.h>

dsi_status_t dsc_backend_tokenize(void *self, const dsc_api_request_t *req, int32_t **ids,
                                  size_t *n_ids, char *message, size_t cap)
{
    return dsc_backend_prompt_ids(self, req, ids, n_ids, message, cap);
}

dsi_status_t dsc_backend_detokenize(void *self, const int32_t *ids, size_t n_ids, char **text,
                                    size_t *len, char *message, size_t cap)
{
    const dsc_backend_t *b = self;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= b->cfg.vocab_size) {
            snprintf(message, cap, "tokens[%zu]: %d is outside the model's vocabulary [0, %d)", i,
                     ids[i], b->cfg.vocab_size);
            return DSI_ERR_BAD_REQUEST;
        }
    }
    dsi_status_t st = dsc_tokenizer_decode(b->tok, ids, n_ids, 0, text, len);
    if (st != DSI_OK)
        snprintf(message, cap, "the tokens cannot be decoded (%s)", dsi_status_message(st));
    return st;
}

int64_t dsc_backend_max_model_len(void *self)
{
    const dsc_backend_t *b = self;
    return (int64_t)b->cfg.max_context;
}
