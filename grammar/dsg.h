/*
 * dsg.h - grammar-constrained decoding (structured outputs).
 *
 * A grammar is text in a GBNF-like format (docs/STRUCTURED_OUTPUT.md): `name ::= alternatives`,
 * "literals" with escapes, [classes] with ranges and negation, ( ) groups, * + ? {m} {m,} {m,n},
 * rule references, `#` comments; the start rule is `root`. Converters produce it from a JSON
 * Schema, a regular expression, a list of choices, or "any JSON object". dsg_compile turns the
 * text into a byte-level pushdown grammar (UTF-8 classes become byte sequences), compiled once per
 * request.
 *
 * A vocabulary (dsg_vocab_t, built once per model) is the byte string of every token held as a
 * trie. A matcher (dsg_matcher_t, one per sequence) holds the recognizer's set of stacks after
 * the tokens accepted so far; dsg_matcher_mask walks the trie and sets -INFINITY on every token
 * that cannot continue a valid prefix (pruning whole subtrees), and on the end (eos) tokens unless
 * the grammar is complete. Masks of a state already seen come from a small cache.
 *
 * Errors: DSI_ERR_BAD_REQUEST (bad grammar, schema or regex, with a message naming what in
 * `err`), DSI_ERR_UNSUPPORTED (a schema keyword or regex feature not implemented: `err` names it),
 * DSI_ERR_TOO_LARGE (over DSG_MAX_GRAMMAR_BYTES, or a recognizer stack over its cap),
 * DSI_ERR_NOMEM.
 *
 * Thread safety: a compiled grammar and a vocabulary are immutable and may be shared by any number
 * of threads and matchers; a matcher belongs to one thread.
 */
#ifndef DSG_H
#define DSG_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"

/* The largest grammar text accepted (compile, the converters' output and the wire). */
#define DSG_MAX_GRAMMAR_BYTES (1u << 20)

typedef struct dsg_grammar dsg_grammar_t;
typedef struct dsg_vocab dsg_vocab_t;
typedef struct dsg_matcher dsg_matcher_t;

/* ---- converters: each writes rules named `<rule_prefix>...`, the start one `<rule_prefix>root`.
 * With rule_prefix "" (or NULL) the output is a whole grammar; with another prefix several
 * outputs can be concatenated into one grammar whose own root refers to them. *gbnf_out is
 * malloc'ed, NUL-terminated (free with free()), set only on success. `err` (may be NULL) gets a
 * message on failure. */

/* A JSON Schema (UTF-8 JSON text, `len` bytes). Unsupported keywords give DSI_ERR_UNSUPPORTED
 * with `err` naming the keyword; see docs/STRUCTURED_OUTPUT.md for the supported set. */
dsi_status_t dsg_from_json_schema(const char *schema_json, size_t len, const char *rule_prefix,
                                  char **gbnf_out, char *err, size_t errlen);
/* Any JSON object (response_format json_object). */
dsi_status_t dsg_json_object_gbnf(const char *rule_prefix, char **gbnf_out);
/* A regular expression (subset: literals, escapes, classes, \d \w \s, ., |, groups, * + ?
 * {m,n}); the whole output must match (anchors implicit; ^ and $ at the ends are allowed). */
dsi_status_t dsg_from_regex(const char *regex, size_t len, const char *rule_prefix, char **gbnf_out,
                            char *err, size_t errlen);
/* Exactly one of `n` strings (NUL-terminated UTF-8). */
dsi_status_t dsg_from_choice(const char *const *choices, size_t n, const char *rule_prefix,
                             char **gbnf_out, char *err, size_t errlen);

/*
 * `gbnf` preceded by free text that ends with the first `marker` (printable ASCII, e.g.
 * "</think>") and at most two newlines: for a reasoning model, whose output opens with a thinking
 * block, the grammar then constrains the answer only. The grammar's rules are renamed
 * dsg-answer-<name>. *out as for the converters.
 */
dsi_status_t dsg_after_marker(const char *gbnf, size_t len, const char *marker, char **out);

/* `n` bytes of UTF-8 text as a grammar literal ("..." with escapes), to build grammars around
 * the converters' rules (a tool call's markers and name, say). *out malloc'ed, NUL-terminated. */
dsi_status_t dsg_literal(const char *s, size_t n, char **out);

/* ---- compiled grammar ---- */

/* Compile `len` bytes of grammar text (start rule `root`). Free with dsg_grammar_free. */
dsi_status_t dsg_compile(const char *gbnf, size_t len, dsg_grammar_t **out, char *err,
                         size_t errlen);
void dsg_grammar_free(dsg_grammar_t *g);
/* The plain reference checker: 1 if the whole of `bytes` matches the grammar, else 0. */
int dsg_accepts_string(const dsg_grammar_t *g, const uint8_t *bytes, size_t len);
/* 1 if `bytes` is a prefix of some string the grammar matches (plain reference), else 0. */
int dsg_accepts_prefix(const dsg_grammar_t *g, const uint8_t *bytes, size_t len);

/* ---- vocabulary ---- */

/*
 * The byte strings of tokens 0 .. n_tokens-1 (for byte-level BPE: the decoded bytes of each
 * token; for special and added tokens: their content, so that a literal in a grammar matches
 * them). A NULL or empty entry is a token the grammar never allows (an eos token is allowed
 * through dsg_matcher_create's eos list). Bytes are copied. Free with dsg_vocab_free.
 */
dsi_status_t dsg_vocab_create(int32_t n_tokens, const uint8_t *const *bytes, const uint32_t *lens,
                              dsg_vocab_t **out);
void dsg_vocab_free(dsg_vocab_t *v);
int32_t dsg_vocab_size(const dsg_vocab_t *v);

/* ---- matcher (one per sequence) ---- */

/*
 * A matcher at the start of `g` over `v` (both must outlive it). `eos_ids` (n_eos of them, may
 * be 0) are the tokens that end the sequence: allowed only when the grammar is complete.
 */
dsi_status_t dsg_matcher_create(const dsg_grammar_t *g, const dsg_vocab_t *v,
                                const int32_t *eos_ids, int n_eos, dsg_matcher_t **out);
void dsg_matcher_free(dsg_matcher_t *m);
/*
 * Set logits[t] = -INFINITY for every token t < n_logits that cannot continue the output (ids at
 * or beyond the vocabulary's size too). Leaves the others unchanged.
 */
dsi_status_t dsg_matcher_mask(dsg_matcher_t *m, float *logits, int32_t n_logits);
/* The allowed set as a bitmap (bit t of words[t / 64]); `n_words` >= (vocab size + 63) / 64. */
dsi_status_t dsg_matcher_allowed(dsg_matcher_t *m, uint64_t *words, size_t n_words);
/*
 * Advance by `token`. DSI_ERR_BAD_REQUEST if the token is not allowed (the state is unchanged).
 * An eos token is accepted only when complete, and leaves the matcher finished.
 */
dsi_status_t dsg_matcher_accept(dsg_matcher_t *m, int32_t token);
/* Advance by raw bytes (the tokens' bytes); same errors. */
dsi_status_t dsg_matcher_accept_bytes(dsg_matcher_t *m, const uint8_t *bytes, size_t len);
/* 1 if the root rule is fully matched (the output may end here). */
int dsg_matcher_complete(const dsg_matcher_t *m);
/* 1 if nothing but the end can follow: the sequence should finish now. */
int dsg_matcher_only_end(const dsg_matcher_t *m);
/* Back to the start of the grammar (keeps the mask cache). */
void dsg_matcher_reset(dsg_matcher_t *m);

#endif
