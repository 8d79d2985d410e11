/*
 * dsc_tokenizer.h - byte-level BPE tokenizer, exact to Hugging Face `tokenizers` on tokenizer.json.
 *
 * Loads a tokenizer.json of the byte-level BPE family (DeepSeek-V3/R1, GPT-2 style): an identity
 * normalizer, a pre-tokenizer made of `Split` regexes (evaluated with Oniguruma, the engine the
 * reference uses) ending in `ByteLevel`, a BPE model with merge ranks, a `ByteLevel` decoder, and
 * added tokens (special or not) that are matched in the raw text before pre-tokenization.
 * Anything else (other normalizers, pre-tokenizers, decoders, BPE dropout, subword prefixes,
 * byte fallback) is rejected at load time with DSI_ERR_UNSUPPORTED and a log line naming the
 * field, rather than tokenizing differently from the reference.
 *
 * Ids are those the reference assigns: model vocabulary ids, and added tokens numbered as the
 * reference numbers them (their own vocabulary id if the model has the content, else the next
 * free id after the vocabulary, in file order).
 *
 * Thread safety: a loaded tokenizer is immutable; every function taking `const dsc_tokenizer_t *`
 * may be called from any number of threads at once. A stream decoder belongs to one thread.
 */
#ifndef DSC_TOKENIZER_H
#define DSC_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"

typedef struct dsc_tokenizer dsc_tokenizer_t;

/*
 * Load `path_or_dir`: a tokenizer.json file, or a model directory holding one. When the
 * directory of the file also has tokenizer_config.json, its bos_token / eos_token give
 * dsc_tokenizer_bos_id / eos_id (else those are -1). The DeepSeek-V3 file (4.3 MB, 128k merges)
 * loads in well under a second. Errors (each logged once naming the file and field):
 * DSI_ERR_IO (unreadable), DSI_ERR_FORMAT (not JSON, missing or mistyped field, a merge whose
 * parts or result are not in the vocabulary), DSI_ERR_UNSUPPORTED (a component this tokenizer
 * does not implement), DSI_ERR_NOMEM. *out is set only on success; free with
 * dsc_tokenizer_destroy.
 */
dsi_status_t dsc_tokenizer_load(const char *path_or_dir, dsc_tokenizer_t **out);
/*
 * Same from a tokenizer.json held in memory (`json` need not be NUL-terminated); `origin` names
 * it in error messages. No tokenizer_config.json is read: bos/eos are -1.
 */
dsi_status_t dsc_tokenizer_load_json(const char *json, size_t len, const char *origin,
                                     dsc_tokenizer_t **out);
/* Frees everything; NULL is a no-op. */
void dsc_tokenizer_destroy(dsc_tokenizer_t *tok);

/* One past the largest id the tokenizer knows (vocabulary and added tokens). */
int32_t dsc_tokenizer_vocab_size(const dsc_tokenizer_t *tok);
/* The id of a token given by its vocabulary string (added tokens by content), or -1. */
int32_t dsc_tokenizer_token_id(const dsc_tokenizer_t *tok, const char *token);
/*
 * The vocabulary string of `id` (byte-level form, e.g. "Ġthe"; added tokens as written), NUL-
 * terminated and owned by the tokenizer; NULL for an id the tokenizer does not know.
 */
const char *dsc_tokenizer_token_text(const dsc_tokenizer_t *tok, int32_t id);
/*
 * The bytes `id` stands for: a byte-level token's bytes (possibly part of a UTF-8 character), an
 * added token's content. Owned by the tokenizer; NULL with *len 0 for an id it does not know.
 */
const unsigned char *dsc_tokenizer_token_bytes(const dsc_tokenizer_t *tok, int32_t id, size_t *len);
/*
 * The token trie of structured output (grammar/dsg.h) over ids 0 .. n_tokens-1 (0: the
 * tokenizer's size; ids it does not know are never allowed), from dsc_tokenizer_token_bytes.
 * Free with dsg_vocab_free.
 */
struct dsg_vocab;
dsi_status_t dsc_tokenizer_grammar_vocab(const dsc_tokenizer_t *tok, int32_t n_tokens,
                                         struct dsg_vocab **out);
/* 1 if `id` is an added token marked special (bos, eos, pad, ...), else 0. */
int dsc_tokenizer_is_special(const dsc_tokenizer_t *tok, int32_t id);
/* The ids of tokenizer_config.json's bos_token / eos_token, or -1 when unknown. */
int32_t dsc_tokenizer_bos_id(const dsc_tokenizer_t *tok);
int32_t dsc_tokenizer_eos_id(const dsc_tokenizer_t *tok);

/* Flags of dsc_tokenizer_encode. */
#define DSC_ENCODE_ADD_BOS 0x1u /* prepend bos (DSI_ERR_UNSUPPORTED when bos is unknown) */
/*
 * Treat special added tokens in the text as plain text (reference: encode_special_tokens /
 * split_special_tokens), e.g. for untrusted user content. Non-special added tokens still match.
 */
#define DSC_ENCODE_SPLIT_SPECIAL 0x2u

/*
 * Encode `len` bytes of UTF-8 `text` (need not be NUL-terminated; NUL bytes are ordinary
 * characters). Without flags the result equals the reference's encode(text,
 * add_special_tokens=False). *ids is malloc'ed (caller frees with free(); NULL when *n_ids is 0).
 * Invalid UTF-8 gives DSI_ERR_BAD_UTF8 and a log line naming the byte offset (use
 * dsc_utf8_validate of dsc_utf8.h to get the offset yourself). Outputs are set only on success.
 * Linear in the input: a 1 MB text takes milliseconds, not minutes.
 */
dsi_status_t dsc_tokenizer_encode(const dsc_tokenizer_t *tok, const char *text, size_t len,
                                  unsigned flags, int32_t **ids, size_t *n_ids);

/* Flags of dsc_tokenizer_decode and the stream decoder. */
#define DSC_DECODE_SKIP_SPECIAL 0x1u /* drop added tokens marked special (bos, eos, ...) */

/*
 * Decode ids to text as the reference's decode(ids, skip_special_tokens) does: ids the tokenizer
 * does not know are skipped (a model's vocabulary may be larger than its tokenizer's), byte
 * sequences that are not valid UTF-8 become U+FFFD. *text is malloc'ed and NUL-terminated (it may
 * contain NUL bytes; *len is its length without the terminator); the caller frees it.
 */
dsi_status_t dsc_tokenizer_decode(const dsc_tokenizer_t *tok, const int32_t *ids, size_t n_ids,
                                  unsigned flags, char **text, size_t *len);

/*
 * Streaming decoder for generation: push one id at a time and get the text it completes. Bytes
 * of a partial UTF-8 character are held back until the character is complete; a sequence that
 * can no longer become valid is emitted as U+FFFD, so the concatenation of all pieces plus
 * flush() equals dsc_tokenizer_decode of all the ids (with the same flags). No allocation after
 * create.
 */
typedef struct dsc_decoder dsc_decoder_t;

/* The tokenizer must outlive the decoder. Free with dsc_decoder_destroy. */
dsi_status_t dsc_decoder_create(const dsc_tokenizer_t *tok, unsigned flags, dsc_decoder_t **out);
void dsc_decoder_destroy(dsc_decoder_t *dec);
/*
 * Push `id`; *text / *len receive the newly completed text (possibly empty), owned by the decoder
 * and valid until its next call. Unknown ids (and special ones under DSC_DECODE_SKIP_SPECIAL)
 * give empty text.
 */
void dsc_decoder_push(dsc_decoder_t *dec, int32_t id, const char **text, size_t *len);
/* End of stream: held-back bytes of an incomplete character come out as U+FFFD. Resets. */
void dsc_decoder_flush(dsc_decoder_t *dec, const char **text, size_t *len);
/* Drop held-back bytes and start over. */
void dsc_decoder_reset(dsc_decoder_t *dec);

#endif
