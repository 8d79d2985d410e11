/*
 * dsg_ref.c - the plain reference recognizer: a list of explicit stacks (arrays of positions,
 * copied on every step), compared element by element. Slow and simple; the tests check the fast
 * matcher (interned stacks, trie walk, mask cache) against it.
 */
#include "dsg_impl.h"

#include <stdlib.h>
#include <string.h>

#define REF_MAX_STACKS 4096
#define REF_MAX_HEIGHT 4096

typedef struct {
    int32_t *v;
    int32_t n;
} rstack_t;

struct dsg_ref {
    const dsg_grammar_t *g;
    rstack_t *stacks;
    int n, cap;
    int dead; /* an over-limit closure: treated as rejecting */
};

static int same(const rstack_t *a, const int32_t *v, int32_t n)
{
    return a->n == n && memcmp(a->v, v, (size_t)n * sizeof(int32_t)) == 0;
}

static int add_stack(dsg_ref_t *r, const int32_t *v, int32_t n)
{
    for (int i = 0; i < r->n; i++) {
        if (same(&r->stacks[i], v, n))
            return 0;
    }
    if (r->n >= REF_MAX_STACKS)
        return -1;
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 16;
        rstack_t *s = realloc(r->stacks, (size_t)cap * sizeof(*s));
        if (s == NULL)
            return -1;
        r->stacks = s;
        r->cap = cap;
    }
    int32_t *copy = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (copy == NULL)
        return -1;
    memcpy(copy, v, (size_t)n * sizeof(int32_t));
    r->stacks[r->n].v = copy;
    r->stacks[r->n].n = n;
    r->n++;
    return 0;
}

/* Visited stacks of one closure, so that nullable loops end. */
typedef struct {
    dsg_ref_t seen;
} visit_t;

static int closure(dsg_ref_t *out, visit_t *vis, int32_t *v, int32_t n)
{
    const dsg_grammar_t *g = out->g;
    if (n > REF_MAX_HEIGHT)
        return -1;
    for (int i = 0; i < vis->seen.n; i++) {
        if (same(&vis->seen.stacks[i], v, n))
            return 0;
    }
    if (add_stack(&vis->seen, v, n))
        return -1;
    if (n == 0)
        return add_stack(out, v, 0); /* the root is complete */
    int32_t top = v[n - 1], s = g->sym[top];
    if (s == DSG_END)
        return closure(out, vis, v, n - 1);
    if (s >= 0)
        return add_stack(out, v, n);
    int32_t r = DSG_RULE_OF(s);
    int32_t *w = malloc(((size_t)n + 2) * sizeof(int32_t));
    if (w == NULL)
        return -1;
    memcpy(w, v, (size_t)n * sizeof(int32_t));
    int32_t base = n - 1;
    if (g->sym[top + 1] != DSG_END)
        w[base++] = top + 1;
    int rc = 0;
    for (int32_t a = g->alt_first[r]; a < g->alt_first[r + 1] && rc == 0; a++) {
        w[base] = g->alts[a];
        rc = closure(out, vis, w, base + 1);
    }
    free(w);
    return rc;
}

static void clear(dsg_ref_t *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->stacks[i].v);
    r->n = 0;
}

dsg_ref_t *dsg_ref_create(const dsg_grammar_t *g)
{
    dsg_ref_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->g = g;
    visit_t vis = {{g, NULL, 0, 0, 0}};
    int rc = 0;
    for (int32_t a = g->alt_first[g->root]; a < g->alt_first[g->root + 1] && rc == 0; a++) {
        int32_t v = g->alts[a];
        rc = closure(r, &vis, &v, 1);
    }
    clear(&vis.seen);
    free(vis.seen.stacks);
    if (rc) {
        dsg_ref_free(r);
        return NULL;
    }
    return r;
}

void dsg_ref_free(dsg_ref_t *r)
{
    if (r == NULL)
        return;
    clear(r);
    free(r->stacks);
    free(r);
}

dsg_ref_t *dsg_ref_clone(const dsg_ref_t *r)
{
    dsg_ref_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->g = r->g;
    c->dead = r->dead;
    for (int i = 0; i < r->n; i++) {
        if (add_stack(c, r->stacks[i].v, r->stacks[i].n)) {
            dsg_ref_free(c);
            return NULL;
        }
    }
    return c;
}

int dsg_ref_feed(dsg_ref_t *r, const uint8_t *bytes, size_t len)
{
    const dsg_grammar_t *g = r->g;
    for (size_t k = 0; k < len && !r->dead; k++) {
        dsg_ref_t next = {g, NULL, 0, 0, 0};
        visit_t vis = {{g, NULL, 0, 0, 0}};
        for (int i = 0; i < r->n; i++) {
            rstack_t *s = &r->stacks[i];
            if (s->n == 0 || !dsg_bset_has(&g->sets[g->sym[s->v[s->n - 1]]], bytes[k]))
                continue;
            s->v[s->n - 1]++; /* past the terminal (the array has room: it is ours) */
            int rc = closure(&next, &vis, s->v, s->n);
            s->v[s->n - 1]--;
            if (rc) {
                r->dead = 1;
                break;
            }
        }
        clear(&vis.seen);
        free(vis.seen.stacks);
        clear(r);
        free(r->stacks);
        r->stacks = next.stacks;
        r->n = next.n;
        r->cap = next.cap;
        if (r->dead) {
            clear(r);
        }
    }
    return !r->dead && r->n > 0;
}

int dsg_ref_complete(const dsg_ref_t *r)
{
    for (int i = 0; i < r->n; i++) {
        if (r->stacks[i].n == 0)
            return 1;
    }
    return 0;
}

static int ref_check(const dsg_grammar_t *g, const uint8_t *bytes, size_t len, int whole)
{
    dsg_ref_t *r = dsg_ref_create(g);
    if (r == NULL)
        return 0;
    int ok = dsg_ref_feed(r, bytes, len) && (!whole || dsg_ref_complete(r));
    dsg_ref_free(r);
    return ok;
}

int dsg_accepts_string(const dsg_grammar_t *g, const uint8_t *bytes, size_t len)
{
    return ref_check(g, bytes, len, 1);
}

int dsg_accepts_prefix(const dsg_grammar_t *g, const uint8_t *bytes, size_t len)
{
    return ref_check(g, bytes, len, 0);
}
