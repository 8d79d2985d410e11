/*
 * dsc_pretokenize.h - the pre-tokenizer of tokenizer.json (internal to the tokenizer).
 *
 * Supported: a `Sequence` of `Split` steps (pattern {"Regex": ...} or {"String": ...}, any
 * behavior, invert) ending in one `ByteLevel` step, or a lone `ByteLevel`. Regexes run on
 * Oniguruma with the syntax, options and match iteration of the reference (the Rust `onig`
 * crate): ONIG_SYNTAX_ONIGURUMA, UTF-8, ONIG_OPTION_NONE, each search over the whole piece (so
 * lookahead sees the piece's end), an empty match right after a match skipped. Each step splits
 * every piece of the previous step; empty pieces are dropped. ByteLevel may add a prefix space to
 * each piece and split with the GPT-2 regex (use_regex), then maps bytes to its alphabet, which
 * here is left to the BPE step (it works on bytes).
 */
#ifndef DSC_PRETOKENIZE_H
#define DSC_PRETOKENIZE_H

#include <stddef.h>

#include <jansson.h>
#include <oniguruma.h>

#include "dsi_status.h"

#define DSC_PRETOK_MAX_SPLITS 16

typedef enum {
    DSC_SPLIT_REMOVED = 0,
    DSC_SPLIT_ISOLATED,
    DSC_SPLIT_MERGED_PREV,
    DSC_SPLIT_MERGED_NEXT,
    DSC_SPLIT_CONTIGUOUS,
} dsc_split_behavior_t;

/* Patterns with a direct matcher (dsc_pretok_fast.c); all others run on Oniguruma. */
typedef enum {
    DSC_FAST_NONE = 0,
    DSC_FAST_DIGITS, /* \p{N}{1,3} */
    DSC_FAST_CJK,    /* [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+ */
    DSC_FAST_WORDS,  /* DeepSeek-V3's word / punctuation / whitespace pattern */
} dsc_fast_kind_t;

typedef struct {
    regex_t *re;
    dsc_split_behavior_t behavior;
    int invert;
    dsc_fast_kind_t fast; /* DSC_FAST_NONE: search with `re` */
} dsc_split_t;

/* The direct matcher for this exact pattern text, if there is one. */
dsc_fast_kind_t dsc_pretok_fast_kind(const char *pattern, size_t len, int literal);
/*
 * The leftmost match in s[from..len) (valid UTF-8, the whole piece being split) that Oniguruma
 * would find for the pattern: 1 and [*ms, *me), or 0 when there is none. Never empty.
 */
int dsc_pretok_fast_search(dsc_fast_kind_t kind, const unsigned char *s, size_t len, size_t from,
                           size_t *ms, size_t *me);

typedef struct {
    dsc_split_t splits[DSC_PRETOK_MAX_SPLITS + 1]; /* the Splits, then ByteLevel's regex if any */
    int n_splits;                                  /* Split steps before ByteLevel */
    int add_prefix_space; /* ByteLevel: prepend ' ' to each piece that does not start with one */
    int use_regex;        /* ByteLevel: split with the GPT-2 regex (splits[n_splits]) */
} dsc_pretok_t;

/* Initialise Oniguruma for UTF-8, once per process (thread-safe). */
void dsc_onig_init(void);

/*
 * Parse the "pre_tokenizer" object. Errors (logged with `origin`): DSI_ERR_FORMAT for a
 * malformed entry or a regex Oniguruma rejects, DSI_ERR_UNSUPPORTED for other pre-tokenizers or
 * a ByteLevel that is not last.
 */
dsi_status_t dsc_pretok_parse(const json_t *pre, const char *origin, dsc_pretok_t *out);
void dsc_pretok_cleanup(dsc_pretok_t *p);

/* Receives each final piece, in order: raw bytes, not yet mapped to the byte-level alphabet. */
typedef dsi_status_t (*dsc_pretok_piece_cb)(void *ctx, const char *piece, size_t len);

/* Per-call working memory (one per thread): reused across calls, freed by cleanup. */
typedef struct {
    OnigRegion *region;
    struct dsc_span *levels[DSC_PRETOK_MAX_SPLITS + 1]; /* split results per step */
    size_t level_cap[DSC_PRETOK_MAX_SPLITS + 1];
    char *prefix_buf; /* " " + piece for add_prefix_space */
    size_t prefix_cap;
} dsc_pretok_scratch_t;

dsi_status_t dsc_pretok_scratch_init(dsc_pretok_scratch_t *s);
void dsc_pretok_scratch_cleanup(dsc_pretok_scratch_t *s);

/*
 * Pre-tokenize text[0..len) (valid UTF-8). Errors: DSI_ERR_NOMEM, DSI_ERR_INTERNAL when
 * Oniguruma fails a search (e.g. its backtracking limit), or the first error of `cb`.
 */
dsi_status_t dsc_pretok_run(const dsc_pretok_t *p, dsc_pretok_scratch_t *s, const char *text,
                            size_t len, dsc_pretok_piece_cb cb, void *ctx);

#endif
