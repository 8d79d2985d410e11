/* dsc_tokenizer_vocab.c - the tokenizer's vocabulary as the grammar module's token trie. */
#include <stdlib.h>

#include "dsc_tokenizer.h"
#include "dsg.h"

dsi_status_t dsc_tokenizer_grammar_vocab(const dsc_tokenizer_t *tok, int32_t n_tokens,
                                         dsg_vocab_t **out)
{
    if (n_tokens <= 0)
        n_tokens = dsc_tokenizer_vocab_size(tok);
    const uint8_t **bytes = calloc((size_t)n_tokens, sizeof(*bytes));
    uint32_t *lens = calloc((size_t)n_tokens, sizeof(*lens));
    dsi_status_t st = DSI_ERR_NOMEM;
    if (bytes != NULL && lens != NULL) {
        for (int32_t id = 0; id < n_tokens; id++) {
            size_t len;
            bytes[id] = dsc_tokenizer_token_bytes(tok, id, &len);
            lens[id] = (uint32_t)len;
        }
        st = dsg_vocab_create(n_tokens, bytes, lens, out);
    }
    free(bytes);
    free(lens);
    return st;
}
