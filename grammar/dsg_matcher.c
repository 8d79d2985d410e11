/*
 * dsg_matcher.c - one sequence's matcher. A state (a set of interned stacks, dsg_stack.c) is
 * itself interned, and each state keeps its transitions by byte as they are first computed, so
 * the mask's walk of the vocabulary trie is one table lookup per trie node once a state's
 * neighbourhood is known (a JSON string's state leads back to itself on every ordinary byte). The
 * walk skips the subtree of every dead prefix. The allowed sets of recent states are cached.
 */
#include "dsg_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_ENTRIES  64
#define MAX_STATES     16384 /* interned states before the tables start over */
#define COMPACT_FRAMES (1 << 21)
#define UNKNOWN        (-2)
#define DEAD           (-1)

typedef struct {
    int32_t state; /* -1: empty */
    uint64_t *bits;
} cache_entry_t;

struct dsg_matcher {
    const dsg_grammar_t *g;
    const dsg_vocab_t *v;
    dsg_stacks_t t;
    /* interned states: stacks stk[stk_off[i] .. stk_off[i + 1]), transitions next[i * 256 + b] */
    int32_t *stk_off;
    int32_t *stk;
    size_t stk_n, stk_cap;
    int32_t *next;
    int32_t n_states, cap_states;
    int32_t *index; /* open addressing: state id + 1, 0 = free */
    uint32_t index_cap;
    int32_t state; /* the current one */
    int32_t *tmp;  /* (DSG_MAX_STATES) an advance's stacks */
    int32_t *eos;
    int n_eos;
    int finished;   /* an eos token was accepted */
    int32_t *depth; /* (max_depth + 1) the walk's state per depth */
    size_t n_words;
    cache_entry_t cache[CACHE_ENTRIES];
    int cache_next;
    dsi_status_t error;
};

static uint64_t set_hash(const int32_t *s, int n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)n;
    for (int i = 0; i < n; i++)
        h = (h ^ (uint32_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static void states_free(dsg_matcher_t *m)
{
    free(m->stk_off);
    free(m->stk);
    free(m->next);
    free(m->index);
    m->stk_off = m->stk = m->next = m->index = NULL;
    m->stk_n = m->stk_cap = 0;
    m->n_states = m->cap_states = 0;
    m->index_cap = 0;
}

static int grow_index(dsg_matcher_t *m)
{
    uint32_t cap = m->index_cap ? m->index_cap * 2 : 1024;
    int32_t *idx = calloc(cap, sizeof(int32_t));
    if (idx == NULL)
        return -1;
    for (int32_t s = 0; s < m->n_states; s++) {
        int32_t o = m->stk_off[s];
        uint32_t h = (uint32_t)set_hash(m->stk + o, m->stk_off[s + 1] - o) & (cap - 1);
        while (idx[h] != 0)
            h = (h + 1) & (cap - 1);
        idx[h] = s + 1;
    }
    free(m->index);
    m->index = idx;
    m->index_cap = cap;
    return 0;
}

/* The id of the state of stacks s[0..n) (sorted), interned now if new; -1 out of memory. */
static int32_t state_intern(dsg_matcher_t *m, const int32_t *s, int n)
{
    uint64_t h = set_hash(s, n);
    uint32_t mask = m->index_cap - 1, i = (uint32_t)h & mask;
    for (;;) {
        int32_t e = m->index[i];
        if (e == 0)
            break;
        int32_t o = m->stk_off[e - 1];
        if (m->stk_off[e] - o == n && memcmp(m->stk + o, s, (size_t)n * sizeof(int32_t)) == 0)
            return e - 1;
        i = (i + 1) & mask;
    }
    if (m->n_states + 1 >= m->cap_states) {
        int32_t cap = m->cap_states ? m->cap_states * 2 : 256;
        int32_t *off = realloc(m->stk_off, ((size_t)cap + 1) * sizeof(int32_t));
        if (off != NULL)
            m->stk_off = off;
        int32_t *nx = realloc(m->next, (size_t)cap * 256 * sizeof(int32_t));
        if (nx != NULL)
            m->next = nx;
        if (off == NULL || nx == NULL)
            return -1;
        m->cap_states = cap;
    }
    /* Allocate even for an empty first state: m->stk + 0 on NULL is undefined. */
    if (m->stk == NULL || m->stk_n + (size_t)n > m->stk_cap) {
        size_t cap = (m->stk_n + (size_t)n) * 2 + 1024;
        int32_t *p = realloc(m->stk, cap * sizeof(int32_t));
        if (p == NULL)
            return -1;
        m->stk = p;
        m->stk_cap = cap;
    }
    int32_t id = m->n_states++;
    memcpy(m->stk + m->stk_n, s, (size_t)n * sizeof(int32_t));
    m->stk_off[id] = (int32_t)m->stk_n;
    m->stk_n += (size_t)n;
    m->stk_off[id + 1] = (int32_t)m->stk_n;
    for (int b = 0; b < 256; b++)
        m->next[(size_t)id * 256 + b] = UNKNOWN;
    m->index[i] = id + 1;
    if ((uint32_t)m->n_states * 2 > m->index_cap && grow_index(m))
        return -1;
    return id;
}

/* The state after byte b from state s: DEAD, a state id, or -3 on an error (m->error). */
static int32_t state_next(dsg_matcher_t *m, int32_t s, uint8_t b)
{
    int32_t n = m->next[(size_t)s * 256 + b];
    if (n != UNKNOWN)
        return n;
    int32_t o = m->stk_off[s];
    int k = dsg_stacks_advance(&m->t, m->stk + o, m->stk_off[s + 1] - o, b, m->tmp, DSG_MAX_STATES);
    if (k < 0) {
        m->error = m->t.error;
        return -3;
    }
    n = k == 0 ? DEAD : state_intern(m, m->tmp, k);
    if (n == -1 && k > 0) {
        m->error = DSI_ERR_NOMEM;
        return -3;
    }
    m->next[(size_t)s * 256 + b] = n;
    return n;
}

static void cache_clear(dsg_matcher_t *m)
{
    for (int i = 0; i < CACHE_ENTRIES; i++)
        m->cache[i].state = -1;
}

/* Start the tables over with only the current state (its id becomes 0). */
static dsi_status_t restart_tables(dsg_matcher_t *m)
{
    int32_t o = m->stk_off[m->state], n = m->stk_off[m->state + 1] - o;
    int32_t *cur = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (cur == NULL)
        return DSI_ERR_NOMEM;
    memcpy(cur, m->stk + o, (size_t)n * sizeof(int32_t));
    dsi_status_t st = dsg_stacks_compact(&m->t, cur, n);
    states_free(m);
    cache_clear(m);
    if (st == DSI_OK && grow_index(m) != 0)
        st = DSI_ERR_NOMEM;
    if (st == DSI_OK && (m->state = state_intern(m, cur, n)) < 0)
        st = DSI_ERR_NOMEM;
    free(cur);
    return st;
}

void dsg_matcher_free(dsg_matcher_t *m)
{
    if (m == NULL)
        return;
    dsg_stacks_cleanup(&m->t);
    states_free(m);
    for (int i = 0; i < CACHE_ENTRIES; i++)
        free(m->cache[i].bits);
    free(m->tmp);
    free(m->eos);
    free(m->depth);
    free(m);
}

static int32_t start_state(dsg_matcher_t *m)
{
    int n = dsg_stacks_start(&m->t, m->tmp, DSG_MAX_STATES);
    if (n < 0) {
        m->error = m->t.error;
        return -1;
    }
    int32_t s = state_intern(m, m->tmp, n);
    if (s < 0)
        m->error = DSI_ERR_NOMEM;
    return s;
}

void dsg_matcher_reset(dsg_matcher_t *m)
{
    m->finished = 0;
    int32_t s = start_state(m);
    if (s >= 0)
        m->state = s;
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
    m->tmp = malloc(DSG_MAX_STATES * sizeof(int32_t));
    m->eos = malloc(((size_t)n_eos + 1) * sizeof(int32_t));
    m->depth = malloc(((size_t)v->max_depth + 2) * sizeof(int32_t));
    cache_clear(m);
    if (!m->tmp || !m->eos || !m->depth || grow_index(m) != 0) {
        dsg_matcher_free(m);
        return DSI_ERR_NOMEM;
    }
    for (int i = 0; i < n_eos; i++)
        m->eos[i] = eos_ids[i];
    m->n_eos = n_eos;
    if ((m->state = start_state(m)) < 0) {
        st = m->error;
        dsg_matcher_free(m);
        return st;
    }
    *out = m;
    return DSI_OK;
}

/* Stack 0 (the empty stack: the root is complete) sorts first. */
static int state_complete(const dsg_matcher_t *m, int32_t s)
{
    return m->stk_off[s + 1] > m->stk_off[s] && m->stk[m->stk_off[s]] == 0;
}

int dsg_matcher_complete(const dsg_matcher_t *m)
{
    return m->finished || state_complete(m, m->state);
}

int dsg_matcher_only_end(const dsg_matcher_t *m)
{
    int32_t n = m->stk_off[m->state + 1] - m->stk_off[m->state];
    return m->finished || n == 0 || (n == 1 && state_complete(m, m->state));
}

static int is_eos(const dsg_matcher_t *m, int32_t tok)
{
    for (int i = 0; i < m->n_eos; i++) {
        if (m->eos[i] == tok)
            return 1;
    }
    return 0;
}

/* The walk: every trie node whose prefix keeps the state alive; its tokens are allowed. */
static dsi_status_t walk(dsg_matcher_t *m, uint64_t *bits)
{
    const dsg_vocab_t *v = m->v;
    memset(bits, 0, m->n_words * sizeof(uint64_t));
    m->depth[0] = m->state;
    const uint8_t *byte = v->byte;
    const uint16_t *depth = v->depth;
    for (int32_t i = 0; i < v->n_nodes;) {
        int d = depth[i];
        int32_t s = m->depth[d - 1];
        int32_t n = m->next[(size_t)s * 256 + byte[i]];
        if (n == UNKNOWN && (n = state_next(m, s, byte[i])) == -3)
            return m->error;
        if (n == DEAD) {
            i = v->skip[i];
            continue;
        }
        m->depth[d] = n;
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
    for (int i = 0; i < CACHE_ENTRIES; i++) {
        if (m->cache[i].state == m->state) {
            *bits = m->cache[i].bits;
            return DSI_OK;
        }
    }
    cache_entry_t *e = &m->cache[m->cache_next];
    m->cache_next = (m->cache_next + 1) % CACHE_ENTRIES;
    e->state = -1;
    if (e->bits == NULL && (e->bits = malloc(m->n_words * sizeof(uint64_t) + 8)) == NULL)
        return DSI_ERR_NOMEM;
    dsi_status_t st = walk(m, e->bits);
    if (st != DSI_OK)
        return st;
    e->state = m->state;
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
    for (int32_t w = 0; w * 64 < n; w++) {
        uint64_t word = bits != NULL ? bits[w] : 0;
        if (word == ~0ull)
            continue;
        int32_t t0 = w * 64, end = t0 + 64 < n ? t0 + 64 : n;
        if (word == 0) {
            for (int32_t t = t0; t < end; t++)
                logits[t] = -INFINITY;
            continue;
        }
        for (int32_t t = t0; t < end; t++) {
            if (!((word >> (t - t0)) & 1))
                logits[t] = -INFINITY;
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
    int32_t s = m->state;
    for (size_t i = 0; i < len; i++) {
        s = state_next(m, s, b[i]);
        if (s == -3)
            return m->error;
        if (s == DEAD)
            return DSI_ERR_BAD_REQUEST;
    }
    m->state = s;
    if (m->t.n > COMPACT_FRAMES || m->n_states > MAX_STATES)
        return restart_tables(m);
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
