/*
 * dsc_added.h - matching of added tokens in text (internal to the tokenizer).
 *
 * The reference finds added tokens with an Aho-Corasick automaton in leftmost-longest mode and
 * then applies each token's single_word / lstrip / rstrip options and the encode-special-tokens
 * switch to every match, in order. This does the same with a byte trie: at each position that can
 * start a token, the longest token there wins; the earliest position wins over later ones; a
 * discarded match (single_word not satisfied, special token skipped) is not retried at shorter
 * lengths, exactly as the reference's iterator moves past it.
 */
#ifndef DSC_ADDED_H
#define DSC_ADDED_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"

#define DSC_ADDED_SPECIAL     0x1u
#define DSC_ADDED_SINGLE_WORD 0x2u
#define DSC_ADDED_LSTRIP      0x4u
#define DSC_ADDED_RSTRIP      0x8u

typedef struct {
    uint8_t byte;    /* edge label from the parent */
    int32_t child;   /* first child node, -1 if none */
    int32_t sibling; /* next child of the same parent, -1 if none */
    int32_t term;    /* index into info[] of the token ending here, -1 if none */
} dsc_trie_node_t;

typedef struct {
    int32_t id;
    unsigned flags; /* DSC_ADDED_* */
} dsc_added_info_t;

typedef struct {
    dsc_trie_node_t *nodes; /* [n_nodes]; node 0 is the root */
    size_t n_nodes, cap_nodes;
    dsc_added_info_t *info; /* [n_info] */
    size_t n_info, cap_info;
    uint8_t first[256]; /* 1 for bytes that begin some token: other positions are skipped */
} dsc_added_set_t;

dsi_status_t dsc_added_set_init(dsc_added_set_t *set);
void dsc_added_set_cleanup(dsc_added_set_t *set);
/*
 * Add a token (content of len > 0 bytes). When the same content is already present the first
 * one keeps matching (as the automaton reports the lowest pattern), but its flags are updated.
 */
dsi_status_t dsc_added_set_add(dsc_added_set_t *set, const char *content, size_t len, int32_t id,
                               unsigned flags);

/*
 * A segment of text: token_id >= 0 for a matched added token (s/len cover the matched text,
 * stripped whitespace included), -1 for ordinary text to pre-tokenize. Empty segments are never
 * reported.
 */
typedef dsi_status_t (*dsc_added_seg_cb)(void *ctx, const char *s, size_t len, int32_t token_id);

/*
 * Split s[0..len) (valid UTF-8) into segments, in order. With skip_special, matches of special
 * tokens are left as text. Stops at and returns the first error of `cb`.
 */
dsi_status_t dsc_added_split(const dsc_added_set_t *set, const char *s, size_t len,
                             int skip_special, dsc_added_seg_cb cb, void *ctx);

#endif
