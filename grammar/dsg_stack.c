/*
 * dsg_stack.c - the recognizer's stacks: frames (pos, parent) interned in an open-addressing
 * table so that a stack is one id, the closure of a position (rule references expanded until a
 * terminal or the end of the root), and the advance of a state by one byte.
 */
#include "dsg_impl.h"

#include <stdlib.h>
#include <string.h>

#define MAX_RECURSION 2000

static uint32_t hash2(int32_t a, int32_t b)
{
    uint64_t h = (uint64_t)(uint32_t)a * 0x9E3779B97F4A7C15ull ^
                 (uint64_t)(uint32_t)b * 0xC2B2AE3D27D4EB4Full;
    return (uint32_t)(h >> 29) ^ (uint32_t)h;
}

static int grow_frames(dsg_stacks_t *t)
{
    int32_t cap = t->cap ? t->cap * 2 : 4096;
    int32_t *pos = realloc(t->pos, (size_t)cap * sizeof(int32_t));
    if (pos)
        t->pos = pos;
    int32_t *par = realloc(t->parent, (size_t)cap * sizeof(int32_t));
    if (par)
        t->parent = par;
    int32_t *h = realloc(t->height, (size_t)cap * sizeof(int32_t));
    if (h)
        t->height = h;
    uint32_t *st = realloc(t->stamp, (size_t)cap * sizeof(uint32_t));
    if (st)
        t->stamp = st;
    if (!pos || !par || !h || !st)
        return -1;
    memset(t->stamp + t->cap, 0, (size_t)(cap - t->cap) * sizeof(uint32_t));
    t->cap = cap;
    return 0;
}

static int grow_index(dsg_stacks_t *t)
{
    uint32_t cap = t->index_cap ? t->index_cap * 2 : 8192;
    int32_t *idx = calloc(cap, sizeof(int32_t));
    if (idx == NULL)
        return -1;
    for (int32_t f = 1; f < t->n; f++) {
        uint32_t h = hash2(t->pos[f], t->parent[f]) & (cap - 1);
        while (idx[h] != 0)
            h = (h + 1) & (cap - 1);
        idx[h] = f;
    }
    free(t->index);
    t->index = idx;
    t->index_cap = cap;
    return 0;
}

dsi_status_t dsg_stacks_init(dsg_stacks_t *t, const dsg_grammar_t *g)
{
    memset(t, 0, sizeof(*t));
    t->g = g;
    if (grow_frames(t) || grow_index(t)) {
        dsg_stacks_cleanup(t);
        return DSI_ERR_NOMEM;
    }
    t->pos[0] = DSG_END; /* frame 0: the empty stack */
    t->parent[0] = 0;
    t->height[0] = 0;
    t->n = 1;
    return DSI_OK;
}

void dsg_stacks_cleanup(dsg_stacks_t *t)
{
    free(t->pos);
    free(t->parent);
    free(t->height);
    free(t->stamp);
    free(t->index);
    memset(t, 0, sizeof(*t));
}

static int32_t intern(dsg_stacks_t *t, int32_t pos, int32_t parent)
{
    uint32_t mask = t->index_cap - 1;
    uint32_t h = hash2(pos, parent) & mask;
    for (;;) {
        int32_t f = t->index[h];
        if (f == 0)
            break;
        if (t->pos[f] == pos && t->parent[f] == parent)
            return f;
        h = (h + 1) & mask;
    }
    if (t->height[parent] >= DSG_MAX_HEIGHT) {
        t->error = DSI_ERR_TOO_LARGE;
        return -1;
    }
    if ((t->n == t->cap && grow_frames(t)) || t->n == INT32_MAX) {
        t->error = DSI_ERR_NOMEM;
        return -1;
    }
    int32_t f = t->n++;
    t->pos[f] = pos;
    t->parent[f] = parent;
    t->height[f] = t->height[parent] + 1;
    t->stamp[f] = 0;
    t->index[h] = f;
    if ((uint32_t)t->n * 2 > t->index_cap && grow_index(t)) {
        t->error = DSI_ERR_NOMEM;
        return -1;
    }
    return f;
}

typedef struct {
    int32_t *out;
    int n, cap;
    int empty_added;
    int visits;
} closure_t;

/* Expand position `pos` over stack `parent` until terminals: their stacks go to c->out. */
static int expand(dsg_stacks_t *t, closure_t *c, int32_t pos, int32_t parent, int depth)
{
    const dsg_grammar_t *g = t->g;
    for (;;) {
        if (depth > MAX_RECURSION || ++c->visits > DSG_MAX_EXPAND) {
            t->error = DSI_ERR_TOO_LARGE;
            return -1;
        }
        int32_t s = g->sym[pos];
        if (s == DSG_END) {
            if (parent == 0) {
                if (!c->empty_added) {
                    if (c->n >= c->cap) {
                        t->error = DSI_ERR_TOO_LARGE;
                        return -1;
                    }
                    c->out[c->n++] = 0;
                    c->empty_added = 1;
                }
                return 0;
            }
            pos = t->pos[parent]; /* pop: continue where the parent rule left off */
            parent = t->parent[parent];
            continue;
        }
        int32_t f = intern(t, pos, parent);
        if (f < 0)
            return -1;
        if (t->stamp[f] == t->gen)
            return 0;
        t->stamp[f] = t->gen;
        if (s >= 0) {
            if (c->n >= c->cap) {
                t->error = DSI_ERR_TOO_LARGE;
                return -1;
            }
            c->out[c->n++] = f;
            return 0;
        }
        int32_t r = DSG_RULE_OF(s);
        int32_t ret = parent;
        if (g->sym[pos + 1] != DSG_END) {
            ret = intern(t, pos + 1, parent);
            if (ret < 0)
                return -1;
        }
        int32_t a0 = g->alt_first[r], a1 = g->alt_first[r + 1];
        if (a0 == a1)
            return 0; /* a rule without alternatives matches nothing */
        for (int32_t a = a0; a < a1 - 1; a++) {
            if (expand(t, c, g->alts[a], ret, depth + 1))
                return -1;
        }
        pos = g->alts[a1 - 1]; /* the last alternative in the loop: no recursion */
        parent = ret;
        depth++;
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_small(int32_t *v, int n)
{
    if (n > 16) {
        qsort(v, (size_t)n, sizeof(int32_t), cmp_i32);
        return;
    }
    for (int i = 1; i < n; i++) {
        int32_t x = v[i];
        int j = i - 1;
        while (j >= 0 && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

int dsg_stacks_rule(dsg_stacks_t *t, int32_t r, int32_t *out, int cap)
{
    if (t->error)
        return -1;
    closure_t c = {out, 0, cap, 0, 0};
    t->gen++;
    const dsg_grammar_t *g = t->g;
    for (int32_t a = g->alt_first[r]; a < g->alt_first[r + 1]; a++) {
        if (expand(t, &c, g->alts[a], 0, 0))
            return -1;
    }
    sort_small(out, c.n);
    return c.n;
}

int dsg_stacks_start(dsg_stacks_t *t, int32_t *out, int cap)
{
    return dsg_stacks_rule(t, t->g->root, out, cap);
}

int dsg_stacks_advance(dsg_stacks_t *t, const int32_t *in, int n_in, uint8_t b, int32_t *out,
                       int cap)
{
    if (t->error)
        return -1;
    closure_t c = {out, 0, cap, 0, 0};
    t->gen++;
    const dsg_grammar_t *g = t->g;
    for (int i = 0; i < n_in; i++) {
        int32_t f = in[i];
        if (f == 0)
            continue;
        int32_t pos = t->pos[f];
        if (!dsg_bset_has(&g->sets[g->sym[pos]], b))
            continue;
        if (expand(t, &c, pos + 1, t->parent[f], 0))
            return -1;
    }
    sort_small(out, c.n);
    return c.n;
}

static int32_t reintern(dsg_stacks_t *dst, const dsg_stacks_t *src, int32_t f)
{
    if (f == 0)
        return 0;
    int32_t p = reintern(dst, src, src->parent[f]);
    return p < 0 ? -1 : intern(dst, src->pos[f], p);
}

dsi_status_t dsg_stacks_compact(dsg_stacks_t *t, int32_t *state, int n)
{
    dsg_stacks_t fresh;
    dsi_status_t st = dsg_stacks_init(&fresh, t->g);
    if (st != DSI_OK)
        return st;
    for (int i = 0; i < n; i++) {
        int32_t f = reintern(&fresh, t, state[i]);
        if (f < 0) {
            st = fresh.error;
            dsg_stacks_cleanup(&fresh);
            return st;
        }
        state[i] = f;
    }
    sort_small(state, n);
    dsg_stacks_cleanup(t);
    *t = fresh;
    return DSI_OK;
}
