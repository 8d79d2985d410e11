/*
 * dsg_vocab.c - the token trie of a vocabulary, built once per model: nodes in preorder, each
 * with the index past its subtree (so a walk skips a dead prefix's whole subtree in one step)
 * and the tokens that end at it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* qsort_r */
#endif
#include "dsg_impl.h"

#include <stdlib.h>
#include <string.h>

static int cmp_tok(const void *a, const void *b, void *ctx)
{
    const dsg_vocab_t *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = v->offset[x + 1] - v->offset[x], ly = v->offset[y + 1] - v->offset[y];
    int c = memcmp(v->bytes + v->offset[x], v->bytes + v->offset[y], lx < ly ? lx : ly);
    if (c != 0)
        return c;
    return lx < ly ? -1 : lx > ly ? 1 : (x < y ? -1 : x > y);
}

void dsg_vocab_free(dsg_vocab_t *v)
{
    if (v == NULL)
        return;
    free(v->bytes);
    free(v->offset);
    free(v->byte);
    free(v->depth);
    free(v->skip);
    free(v->tok_first);
    free(v->toks);
    free(v);
}

int32_t dsg_vocab_size(const dsg_vocab_t *v)
{
    return v->n_tokens;
}

static dsi_status_t build_trie(dsg_vocab_t *v)
{
    int32_t *order = malloc((size_t)v->n_tokens * sizeof(int32_t));
    if (order == NULL)
        return DSI_ERR_NOMEM;
    int32_t n = 0;
    size_t max_nodes = 0;
    for (int32_t t = 0; t < v->n_tokens; t++) {
        if (v->offset[t + 1] > v->offset[t]) {
            order[n++] = t;
            max_nodes += v->offset[t + 1] - v->offset[t];
        }
    }
    qsort_r(order, (size_t)n, sizeof(int32_t), cmp_tok, v);
    v->byte = malloc(max_nodes + 1);
    v->depth = malloc((max_nodes + 1) * sizeof(uint16_t));
    v->skip = malloc((max_nodes + 1) * sizeof(int32_t));
    v->tok_first = malloc((max_nodes + 2) * sizeof(int32_t));
    v->toks = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!v->byte || !v->depth || !v->skip || !v->tok_first || !v->toks) {
        free(order);
        return DSI_ERR_NOMEM;
    }
    int32_t nodes = 0, n_toks = 0, prev = -1;
    for (int32_t i = 0; i < n; i++) {
        int32_t t = order[i];
        const uint8_t *b = v->bytes + v->offset[t];
        size_t len = v->offset[t + 1] - v->offset[t], lcp = 0;
        if (len > 65535)
            len = 65535; /* never in a real vocabulary; keeps depth in 16 bits */
        if (prev >= 0) {
            const uint8_t *pb = v->bytes + v->offset[prev];
            size_t plen = v->offset[prev + 1] - v->offset[prev];
            while (lcp < len && lcp < plen && pb[lcp] == b[lcp])
                lcp++;
        }
        for (size_t d = lcp; d < len; d++) {
            v->byte[nodes] = b[d];
            v->depth[nodes] = (uint16_t)(d + 1);
            v->tok_first[nodes] = n_toks;
            nodes++;
        }
        if ((int32_t)len > v->max_depth)
            v->max_depth = (int32_t)len;
        v->toks[n_toks++] = t;
        prev = t;
    }
    v->tok_first[nodes] = n_toks;
    v->n_nodes = nodes;
    /* skip[i]: the first later node no deeper than i. */
    int32_t *open = malloc(((size_t)v->max_depth + 2) * sizeof(int32_t));
    if (open == NULL) {
        free(order);
        return DSI_ERR_NOMEM;
    }
    int top = 0;
    for (int32_t i = 0; i < nodes; i++) {
        while (top > 0 && v->depth[open[top - 1]] >= v->depth[i])
            v->skip[open[--top]] = i;
        open[top++] = i;
    }
    while (top > 0)
        v->skip[open[--top]] = nodes;
    free(open);
    free(order);
    return DSI_OK;
}

dsi_status_t dsg_vocab_create(int32_t n_tokens, const uint8_t *const *bytes, const uint32_t *lens,
                              dsg_vocab_t **out)
{
    if (n_tokens < 0)
        return DSI_ERR_INVALID_ARG;
    dsg_vocab_t *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return DSI_ERR_NOMEM;
    v->n_tokens = n_tokens;
    v->offset = malloc(((size_t)n_tokens + 1) * sizeof(uint64_t));
    size_t total = 0;
    for (int32_t t = 0; t < n_tokens; t++)
        total += bytes[t] != NULL ? lens[t] : 0;
    v->bytes = malloc(total + 1);
    if (v->offset == NULL || v->bytes == NULL) {
        dsg_vocab_free(v);
        return DSI_ERR_NOMEM;
    }
    size_t off = 0;
    for (int32_t t = 0; t < n_tokens; t++) {
        v->offset[t] = off;
        if (bytes[t] != NULL && lens[t] > 0) {
            memcpy(v->bytes + off, bytes[t], lens[t]);
            off += lens[t];
        }
    }
    v->offset[n_tokens] = off;
    dsi_status_t st = build_trie(v);
    if (st != DSI_OK) {
        dsg_vocab_free(v);
        return st;
    }
    *out = v;
    return DSI_OK;
}
