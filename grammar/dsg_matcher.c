/*
 * dsg_matcher.c - one sequence's matcher: the current state (a set of interned stacks), the
 * mask by a walk of the vocabulary trie that advances the state byte by byte and skips the
 * subtree of every dead prefix, a small cache of masks by state, and accept.
 */
#include "dsg_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_ENTRIES  32
#define COMPACT_FRAMES (1 << 21)

typedef struct {
    uint64_t hash;
    int32_t *key; /* (n) the state */
    int n;
    uint64_t *bits; /* (n_words) allowed tokens */
} cache_entry_t;

struct dsg_matcher {
    const dsg_grammar_t *g;
    const dsg_vocab_t *v;
    dsg_stacks_t t;
    int32_t *state; /* (DSG_MAX_STATES) */
    int n_state;
    int32_t *tmp[2]; /* (DSG_MAX_STATES) each: accept's scratch */
    int32_t *eos;
    int n_eos;
    int finished; /* an eos token was accepted */
    int32_t *pool; /* the walk's states, one segment per depth */
    size_t pool_cap;
    size_t *seg; /* (max_depth + 2) segment start per depth */
    int *seg_n;  /* (max_depth + 2) */
    size_t n_words;
    cache_entry_t cache[CACHE_ENTRIES];
    int cache_next;
};

static void cache_clear(dsg_matcher_t *m)
{
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        free(m->cache[i].key);
        m->cache[i].key = NULL;
        m->cache[i].n = -1;
    }
}

void dsg_matcher_free(dsg_matcher_t *m)
{
    if (m == NULL)
        return;
    dsg_stacks_cleanup(&m->t);
    cache_clear(m);
    for (int i = 0; i < CACHE_ENTRIES; i++)
        free(m->cache[i].bits);
    free(m->state);
    free(m->tmp[0]);
    free(m->tmp[1]);
    free(m->eos);
    free(m->pool);
    free(m->seg);
    free(m->seg_n);
    free(m);
}

void dsg_matcher_reset(dsg_matcher_t *m)
{
    m->finished = 0;
    int n = dsg_stacks_start(&m->t, m->state, DSG_MAX_STATES);
    m->n_state = n < 0 ? 0 : n;
}

dsi_status_t dsg_matcher_create(const dsg_grammar_t *g, const dsg_vocab_t *v,
                                const int32_t *eos_ids, int n_eos, dsg_matcher_t **out)
{
    dsg_matcher_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return DSI_ERR_NOMEM;
    m->g = g;
    m->v = v;
    m->n_words = ((size_t)v->n_tokens + 63) / 64;
    dsi_status_t st = dsg_stacks_init(&m->t, g);
    if (st != DSI_OK) {
        free(m);
        return st;
    }
    m->state = malloc(DSG_MAX_STATES * sizeof(int32_t));
    m->tmp[0] = malloc(DSG_MAX_STATES * sizeof(int32_t));
    m->tmp[1] = malloc(DSG_MAX_STATES * sizeof(int32_t));
    m->eos = malloc(((size_t)n_eos + 1) * sizeof(int32_t));
    m->seg = malloc(((size_t)v->max_depth + 2) * sizeof(size_t));
    m->seg_n = malloc(((size_t)v->max_depth + 2) * sizeof(int));
    m->pool_cap = 4 * DSG_MAX_STATES;
    m->pool = malloc(m->pool_cap * sizeof(int32_t));
    for (int i = 0; i < CACHE_ENTRIES; i++)
        m->cache[i].n = -1;
    if (!m->state || !m->tmp[0] || !m->tmp[1] || !m->eos || !m->seg || !m->seg_n || !m->pool) {
        dsg_matcher_free(m);
        return DSI_ERR_NOMEM;
    }
    for (int i = 0; i < n_eos; i++)
        m->eos[i] = eos_ids[i];
    m->n_eos = n_eos;
    int n = dsg_stacks_start(&m->t, m->state, DSG_MAX_STATES);
    if (n < 0) {
        st = m->t.error;
        dsg_matcher_free(m);
        return st;
    }
    m->n_state = n;
    *out = m;
    return DSI_OK;
}

int dsg_matcher_complete(const dsg_matcher_t *m)
{
    return m->finished || (m->n_state > 0 && m->state[0] == 0);
}

int dsg_matcher_only_end(const dsg_matcher_t *m)
{
    return m->finished || (m->n_state == 1 && m->state[0] == 0) || m->n_state == 0;
}

static int is_eos(const dsg_matcher_t *m, int32_t tok)
{
    for (int i = 0; i < m->n_eos; i++) {
        if (m->eos[i] == tok)
            return 1;
    }
    return 0;
}

static uint64_t state_hash(const int32_t *s, int n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)n;
    for (int i = 0; i < n; i++)
        h = (h ^ (uint32_t)s[i]) * 0x100000001b3ull;
    return h;
}

/* The walk: every trie node whose prefix keeps some stack alive; its tokens are allowed. */
static dsi_status_t walk(dsg_matcher_t *m, uint64_t *bits)
{
    const dsg_vocab_t *v = m->v;
    memset(bits, 0, m->n_words * sizeof(uint64_t));
    memcpy(m->pool, m->state, (size_t)m->n_state * sizeof(int32_t));
    m->seg[0] = 0;
    m->seg_n[0] = m->n_state;
    for (int32_t i = 0; i < v->n_nodes;) {
        int d = v->depth[i];
        size_t start = m->seg[d - 1] + (size_t)m->seg_n[d - 1];
        if (start + DSG_MAX_STATES > m->pool_cap) {
            size_t cap = (start + DSG_MAX_STATES) * 2;
            int32_t *p = realloc(m->pool, cap * sizeof(int32_t));
            if (p == NULL)
                return DSI_ERR_NOMEM;
            m->pool = p;
            m->pool_cap = cap;
        }
        int n = dsg_stacks_advance(&m->t, m->pool + m->seg[d - 1], m->seg_n[d - 1], v->byte[i],
                                   m->pool + start, DSG_MAX_STATES);
        if (n < 0)
            return m->t.error;
        if (n == 0) {
            i = v->skip[i];
            continue;
        }
        m->seg[d] = start;
        m->seg_n[d] = n;
        for (int32_t k = v->tok_first[i]; k < v->tok_first[i + 1]; k++) {
            int32_t t = v->toks[k];
            bits[t >> 6] |= 1ull << (t & 63);
        }
        i++;
    }
    return DSI_OK;
}

/* The allowed set of the current state (before the eos rule), from the cache or a walk. */
static dsi_status_t allowed(dsg_matcher_t *m, const uint64_t **bits)
{
    uint64_t h = state_hash(m->state, m->n_state);
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        cache_entry_t *e = &m->cache[i];
        if (e->n == m->n_state && e->hash == h &&
            memcmp(e->key, m->state, (size_t)m->n_state * sizeof(int32_t)) == 0) {
            *bits = e->bits;
            return DSI_OK;
        }
    }
    cache_entry_t *e = &m->cache[m->cache_next];
    m->cache_next = (m->cache_next + 1) % CACHE_ENTRIES;
    free(e->key);
    e->key = NULL;
    e->n = -1;
    if (e->bits == NULL && (e->bits = malloc(m->n_words * sizeof(uint64_t) + 8)) == NULL)
        return DSI_ERR_NOMEM;
    dsi_status_t st = walk(m, e->bits);
    if (st != DSI_OK)
        return st;
    e->key = malloc(((size_t)m->n_state + 1) * sizeof(int32_t));
    if (e->key == NULL)
        return DSI_ERR_NOMEM;
    memcpy(e->key, m->state, (size_t)m->n_state * sizeof(int32_t));
    e->n = m->n_state;
    e->hash = h;
    *bits = e->bits;
    return DSI_OK;
}

dsi_status_t dsg_matcher_allowed(dsg_matcher_t *m, uint64_t *words, size_t n_words)
{
    if (n_words < m->n_words)
        return DSI_ERR_INVALID_ARG;
    memset(words, 0, n_words * sizeof(uint64_t));
    if (!m->finished) {
        const uint64_t *bits;
        dsi_status_t st = allowed(m, &bits);
        if (st != DSI_OK)
            return st;
        memcpy(words, bits, m->n_words * sizeof(uint64_t));
    }
    int complete = dsg_matcher_complete(m) && !m->finished;
    for (int i = 0; i < m->n_eos; i++) {
        int32_t t = m->eos[i];
        if (t < 0 || t >= m->v->n_tokens)
            continue;
        if (complete)
            words[t >> 6] |= 1ull << (t & 63);
        else
            words[t >> 6] &= ~(1ull << (t & 63));
    }
    return DSI_OK;
}

dsi_status_t dsg_matcher_mask(dsg_matcher_t *m, float *logits, int32_t n_logits)
{
    const uint64_t *bits = NULL;
    if (!m->finished) {
        dsi_status_t st = allowed(m, &bits);
        if (st != DSI_OK)
            return st;
    }
    int32_t n = n_logits < m->v->n_tokens ? n_logits : m->v->n_tokens;
    float eos_logit[8];
    int complete = dsg_matcher_complete(m) && !m->finished;
    for (int i = 0; i < m->n_eos && i < 8; i++) /* the eos rule decides, not the trie */
        eos_logit[i] = m->eos[i] >= 0 && m->eos[i] < n_logits ? logits[m->eos[i]] : 0.0f;
    if (bits == NULL) {
        for (int32_t t = 0; t < n; t++)
            logits[t] = -INFINITY;
    } else {
        for (int32_t w = 0; w * 64 < n; w++) {
            uint64_t word = bits[w];
            if (word == ~0ull)
                continue;
            int32_t end = w * 64 + 64 < n ? w * 64 + 64 : n;
            for (int32_t t = w * 64; t < end; t++) {
                if (!((word >> (t & 63)) & 1))
                    logits[t] = -INFINITY;
            }
        }
    }
    for (int32_t t = n; t < n_logits; t++)
        logits[t] = -INFINITY;
    for (int i = 0; i < m->n_eos; i++) {
        int32_t t = m->eos[i];
        if (t >= 0 && t < n_logits)
            logits[t] = complete && i < 8 ? eos_logit[i] : -INFINITY;
    }
    return DSI_OK;
}

static dsi_status_t advance_bytes(dsg_matcher_t *m, const uint8_t *b, size_t len)
{
    const int32_t *cur = m->state;
    int n = m->n_state, which = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t *next = m->tmp[which];
        n = dsg_stacks_advance(&m->t, cur, n, b[i], next, DSG_MAX_STATES);
        if (n < 0)
            return m->t.error;
        if (n == 0)
            return DSI_ERR_BAD_REQUEST;
        cur = next;
        which ^= 1;
    }
    if (cur != m->state) {
        memcpy(m->state, cur, (size_t)n * sizeof(int32_t));
        m->n_state = n;
    }
    if (m->t.n > COMPACT_FRAMES) {
        cache_clear(m);
        return dsg_stacks_compact(&m->t, m->state, m->n_state);
    }
    return DSI_OK;
}

dsi_status_t dsg_matcher_accept_bytes(dsg_matcher_t *m, const uint8_t *bytes, size_t len)
{
    if (m->finished)
        return DSI_ERR_BAD_REQUEST;
    return advance_bytes(m, bytes, len);
}

dsi_status_t dsg_matcher_accept(dsg_matcher_t *m, int32_t token)
{
    if (m->finished || token < 0)
        return DSI_ERR_BAD_REQUEST;
    if (is_eos(m, token)) {
        if (!dsg_matcher_complete(m))
            return DSI_ERR_BAD_REQUEST;
        m->finished = 1;
        return DSI_OK;
    }
    const dsg_vocab_t *v = m->v;
    if (token >= v->n_tokens || v->offset[token + 1] == v->offset[token])
        return DSI_ERR_BAD_REQUEST;
    return advance_bytes(m, v->bytes + v->offset[token], v->offset[token + 1] - v->offset[token]);
}
