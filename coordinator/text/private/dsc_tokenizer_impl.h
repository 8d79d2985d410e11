/*
 * dsc_tokenizer_impl.h - the tokenizer's internal layout, shared by its files (dsc_tokenizer_*.c,
 * dsc_pretokenize.c, dsc_bpe.c, dsc_added.c, dsc_detok.c). Not part of the public API.
 */
#ifndef DSC_TOKENIZER_IMPL_H
#define DSC_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dsc_added.h"
#include "dsc_pretokenize.h"
#include "dsc_tokenizer.h"
#include "dsc_tokmap.h"

/* Largest id accepted from a file: bounds the per-id tables a hostile file can make us build. */
#define DSC_TOK_MAX_ID (1 << 24)

/* Per-id flags. */
#define DSC_TOKF_KNOWN   0x1u /* the id has a token (vocabulary or added) */
#define DSC_TOKF_ADDED   0x2u /* an added token */
#define DSC_TOKF_SPECIAL 0x4u /* its content is a special token's (skipped by SKIP_SPECIAL) */

struct dsc_tokenizer {
    int32_t n_ids;        /* one past the largest known id */
    uint8_t *flags;       /* [n_ids] DSC_TOKF_* */
    const char **text;    /* [n_ids] NUL-terminated token string (vocabulary form); NULL if none */
    char *added_arena;    /* the added tokens' contents `text` and `added` point into */
    uint32_t *dec_off;    /* [n_ids + 1] the decoded bytes of id i are dec[dec_off[i]..[i+1]) */
    unsigned char *dec;   /* decoded bytes of every token, concatenated */
    uint32_t max_dec_len; /* longest decoded token, sizes the stream decoder's buffer */

    /* Model: byte-level BPE. */
    char *vocab_arena;    /* the vocabulary strings the maps point into */
    dsc_strmap_t vocab;   /* model vocabulary: string -> id */
    dsc_pairmap_t merges; /* (left, right) -> (rank, merged) */
    int32_t byte_id[256]; /* id of the byte-level character of each byte; -1 if absent */
    int32_t unk_id;       /* -1 without unk_token */
    int fuse_unk;
    int ignore_merges; /* a word that is itself in the vocabulary is one token */

    /* Added tokens. */
    dsc_strmap_t added;         /* content -> id */
    dsc_added_set_t added_raw;  /* matched first, in the raw text (normalized: false) */
    dsc_added_set_t added_norm; /* then in the normalized pieces (normalized: true) */

    dsc_pretok_t pretok;

    int32_t bos_id, eos_id; /* from tokenizer_config.json; -1 when unknown */
};

/* The byte-level alphabet: the code point standing for each byte (GPT-2's bytes_to_unicode). */
void dsc_bytelevel_table(uint32_t cp_of_byte[256]);

/* dsc_tokenizer_model.c: vocabulary, merges, unk, byte ids; *max_id = largest vocabulary id. */
dsi_status_t dsc_tokenizer_load_model(dsc_tokenizer_t *tok, const json_t *model, const char *origin,
                                      int32_t *max_id);
/*
 * dsc_tokenizer_added.c: phase 1 numbers the added tokens (tok->added) and returns the largest
 * id; *state (free() it) carries them to phase 2, which runs once tok->flags exists and builds
 * the matching sets.
 */
dsi_status_t dsc_tokenizer_load_added(dsc_tokenizer_t *tok, const json_t *added, const char *origin,
                                      size_t vocab_count, int32_t *max_id, void **state,
                                      size_t *n_state);
dsi_status_t dsc_tokenizer_finish_added(dsc_tokenizer_t *tok, void *state, size_t n);
/* dsc_tokenizer_tables.c: text[] and flags[] (n_ids set), then the decoded bytes of every id. */
dsi_status_t dsc_tokenizer_fill_texts(dsc_tokenizer_t *tok, const char *origin);
dsi_status_t dsc_tokenizer_build_decode(dsc_tokenizer_t *tok);
/* dsc_tokenizer_load.c: build from parsed JSON (root object). */
dsi_status_t dsc_tokenizer_build(const json_t *root, const char *origin, dsc_tokenizer_t **out);
/* dsc_tokenizer_config.c: read bos/eos of tokenizer_config.json in `dir` when present. */
dsi_status_t dsc_tokenizer_read_config(dsc_tokenizer_t *tok, const char *dir);

#endif
