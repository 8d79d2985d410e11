/*
 * dsg_build.c - the grammar builder: named rules of alternatives, deduplicated byte sets, code
 * point classes lowered to UTF-8 byte sequences, and the flattening into a dsg_grammar_t.
 */
#include "dsg_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dsg_builder_init(dsg_builder_t *b)
{
    memset(b, 0, sizeof(*b));
    for (unsigned c = 0; c < 256; c++) {
        dsg_bset_t s = {{0}};
        dsg_bset_add(&s, c);
        dsg_builder_set(b, &s);
    }
}

void dsg_builder_free(dsg_builder_t *b)
{
    for (int32_t r = 0; r < b->n_rules; r++) {
        for (int32_t a = 0; a < b->rules[r].n_alts; a++)
            dsg_ivec_free(&b->rules[r].alts[a]);
        free(b->rules[r].alts);
        free(b->rules[r].name);
    }
    free(b->rules);
    free(b->sets);
    memset(b, 0, sizeof(*b));
}

static int32_t rule_new(dsg_builder_t *b, const char *name, size_t len)
{
    if (b->n_rules == b->cap_rules) {
        int32_t cap = b->cap_rules ? b->cap_rules * 2 : 32;
        dsg_brule_t *r = realloc(b->rules, (size_t)cap * sizeof(*r));
        if (r == NULL) {
            b->oom = 1;
            return -1;
        }
        b->rules = r;
        b->cap_rules = cap;
    }
    dsg_brule_t *r = &b->rules[b->n_rules];
    memset(r, 0, sizeof(*r));
    r->name = malloc(len + 1);
    if (r->name == NULL) {
        b->oom = 1;
        return -1;
    }
    memcpy(r->name, name, len);
    r->name[len] = '\0';
    return b->n_rules++;
}

int32_t dsg_builder_rule(dsg_builder_t *b, const char *name, size_t len)
{
    for (int32_t r = 0; r < b->n_rules; r++) {
        if (strlen(b->rules[r].name) == len && memcmp(b->rules[r].name, name, len) == 0)
            return r;
    }
    return rule_new(b, name, len);
}

int32_t dsg_builder_anon(dsg_builder_t *b, const char *base)
{
    char name[96];
    int n = snprintf(name, sizeof(name), "%.60s~%d", base, (int)b->n_rules);
    int32_t r = rule_new(b, name, (size_t)n);
    if (r >= 0)
        b->rules[r].defined = 1;
    return r;
}

dsg_ivec_t *dsg_builder_alt(dsg_builder_t *b, int32_t r)
{
    dsg_brule_t *rule = &b->rules[r];
    if (rule->n_alts == rule->cap_alts) {
        int32_t cap = rule->cap_alts ? rule->cap_alts * 2 : 4;
        dsg_ivec_t *a = realloc(rule->alts, (size_t)cap * sizeof(*a));
        if (a == NULL) {
            b->oom = 1;
            return NULL;
        }
        rule->alts = a;
        rule->cap_alts = cap;
    }
    dsg_ivec_t *a = &rule->alts[rule->n_alts++];
    memset(a, 0, sizeof(*a));
    return a;
}

int32_t dsg_builder_set(dsg_builder_t *b, const dsg_bset_t *s)
{
    int single = -1, count = 0;
    for (int w = 0; w < 4; w++) {
        count += __builtin_popcountll(s->w[w]);
        if (s->w[w])
            single = w * 64 + __builtin_ctzll(s->w[w]);
    }
    if (count == 1 && b->n_sets >= 256)
        return single;
    for (int32_t i = 256; i < b->n_sets; i++) {
        if (memcmp(&b->sets[i], s, sizeof(*s)) == 0)
            return i;
    }
    if (b->n_sets == b->cap_sets) {
        int32_t cap = b->cap_sets ? b->cap_sets * 2 : 512;
        dsg_bset_t *v = realloc(b->sets, (size_t)cap * sizeof(*v));
        if (v == NULL) {
            b->oom = 1;
            return 0;
        }
        b->sets = v;
        b->cap_sets = cap;
    }
    b->sets[b->n_sets] = *s;
    return b->n_sets++;
}

/* ---- code point classes as UTF-8 byte sequences ---- */

typedef struct {
    uint8_t lo[4], hi[4];
    int n;
} seq_t;

static int utf8_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

static void utf8_put(uint32_t cp, uint8_t *o)
{
    int n = utf8_len(cp);
    if (n == 1) {
        o[0] = (uint8_t)cp;
    } else if (n == 2) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (n == 3) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        o[0] = (uint8_t)(0xF0 | (cp >> 18));
        o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    }
}

/* Split [lo, hi] (same UTF-8 length after the first splits) into byte-range sequences, as the
 * utf8-ranges algorithm of RE2 and Rust's regex does. */
static int utf8_split(uint32_t lo, uint32_t hi, seq_t *out, int n, int cap)
{
    static const uint32_t bound[] = {0x7F, 0x7FF, 0xFFFF};
    if (lo > hi)
        return n;
    for (int i = 0; i < 3; i++) {
        if (lo <= bound[i] && hi > bound[i]) {
            n = utf8_split(lo, bound[i], out, n, cap);
            return utf8_split(bound[i] + 1, hi, out, n, cap);
        }
    }
    int len = utf8_len(lo);
    for (int i = 1; i < len; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                n = utf8_split(lo, lo | m, out, n, cap);
                return utf8_split((lo | m) + 1, hi, out, n, cap);
            }
            if ((hi & m) != m) {
                n = utf8_split(lo, (hi & ~m) - 1, out, n, cap);
                return utf8_split(hi & ~m, hi, out, n, cap);
            }
        }
    }
    if (n >= cap)
        return cap + 1;
    seq_t *s = &out[n];
    utf8_put(lo, s->lo);
    utf8_put(hi, s->hi);
    s->n = len;
    return n + 1;
}

static int cmp_range(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sorted, merged ranges; with `negate` their complement over the code points (no surrogates). */
static int normalize(const uint32_t *in, int n, int negate, uint32_t *out)
{
    uint32_t *tmp = out + 2 * (n + 3); /* scratch after the output */
    if (n > 0)                         /* an empty class ([]) has no ranges: `in` may be NULL */
        memcpy(tmp, in, (size_t)n * 2 * sizeof(uint32_t));
    if (negate) {
        tmp[2 * n] = 0xD800;
        tmp[2 * n + 1] = 0xDFFF;
        n++;
    }
    qsort(tmp, (size_t)n, 2 * sizeof(uint32_t), cmp_range);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && tmp[2 * i] <= out[2 * m - 1] + 1) {
            if (tmp[2 * i + 1] > out[2 * m - 1])
                out[2 * m - 1] = tmp[2 * i + 1];
        } else {
            out[2 * m] = tmp[2 * i];
            out[2 * m + 1] = tmp[2 * i + 1];
            m++;
        }
    }
    if (!negate)
        return m;
    uint32_t next = 0;
    int k = 0;
    uint32_t *comp = tmp; /* reuse: m ranges give at most m + 1 gaps */
    for (int i = 0; i < m; i++) {
        if (out[2 * i] > next) {
            comp[2 * k] = next;
            comp[2 * k + 1] = out[2 * i] - 1;
            k++;
        }
        next = out[2 * i + 1] + 1;
    }
    if (next <= 0x10FFFF) {
        comp[2 * k] = next;
        comp[2 * k + 1] = 0x10FFFF;
        k++;
    }
    memmove(out, comp, (size_t)k * 2 * sizeof(uint32_t));
    return k;
}

int dsg_builder_class(dsg_builder_t *b, dsg_ivec_t *seq, const uint32_t *ranges, int n, int negate,
                      const char *base)
{
    uint32_t *norm = malloc((size_t)(n + 4) * 4 * sizeof(uint32_t));
    int cap = 64 + 8 * n;
    seq_t *seqs = malloc((size_t)(cap + 1) * sizeof(seq_t));
    if (norm == NULL || seqs == NULL) {
        free(norm);
        free(seqs);
        b->oom = 1;
        return -1;
    }
    int m = normalize(ranges, n, negate, norm);
    dsg_bset_t ascii = {{0}};
    int has_ascii = 0, n_seq = 0;
    for (int i = 0; i < m; i++) {
        uint32_t lo = norm[2 * i], hi = norm[2 * i + 1];
        for (; lo <= hi && lo < 0x80; lo++) {
            dsg_bset_add(&ascii, lo);
            has_ascii = 1;
        }
        if (lo <= hi)
            n_seq = utf8_split(lo, hi, seqs, n_seq, cap);
    }
    free(norm);
    int rc = 0;
    if (n_seq > cap) {
        rc = -1;
    } else if (n_seq == 0) {
        if (!has_ascii) { /* an empty class matches nothing: a rule without alternatives */
            int32_t r = dsg_builder_anon(b, base);
            rc = r < 0 ? -1 : dsg_ivec_push(seq, DSG_REF(r));
        } else {
            rc = dsg_ivec_push(seq, dsg_builder_set(b, &ascii));
        }
    } else {
        int32_t r = dsg_builder_anon(b, base);
        if (r < 0) {
            rc = -1;
        } else {
            if (has_ascii) {
                dsg_ivec_t *a = dsg_builder_alt(b, r);
                rc |= a == NULL ? -1 : dsg_ivec_push(a, dsg_builder_set(b, &ascii));
            }
            for (int i = 0; i < n_seq && rc == 0; i++) {
                dsg_ivec_t *a = dsg_builder_alt(b, r);
                if (a == NULL) {
                    rc = -1;
                    break;
                }
                for (int k = 0; k < seqs[i].n; k++) {
                    dsg_bset_t s = {{0}};
                    for (unsigned c = seqs[i].lo[k]; c <= seqs[i].hi[k]; c++)
                        dsg_bset_add(&s, c);
                    rc |= dsg_ivec_push(a, dsg_builder_set(b, &s));
                }
            }
            rc |= dsg_ivec_push(seq, DSG_REF(r));
        }
    }
    free(seqs);
    if (rc)
        b->oom = 1;
    return rc ? -1 : 0;
}

dsi_status_t dsg_builder_finish(dsg_builder_t *b, dsg_grammar_t **out, char *err, size_t errlen)
{
    if (b->oom)
        return DSI_ERR_NOMEM;
    int32_t root = -1;
    size_t n_sym = 0, n_alts = 0;
    for (int32_t r = 0; r < b->n_rules; r++) {
        if (!b->rules[r].defined) {
            dsg_err(err, errlen, "rule '%s' is used but never defined", b->rules[r].name);
            return DSI_ERR_BAD_REQUEST;
        }
        if (strcmp(b->rules[r].name, "root") == 0)
            root = r;
        n_alts += (size_t)b->rules[r].n_alts;
        for (int32_t a = 0; a < b->rules[r].n_alts; a++)
            n_sym += (size_t)b->rules[r].alts[a].n + 1;
    }
    if (root < 0) {
        dsg_err(err, errlen, "the grammar has no rule 'root'");
        return DSI_ERR_BAD_REQUEST;
    }
    if (n_sym > INT32_MAX / 2)
        return DSI_ERR_TOO_LARGE;
    dsg_grammar_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return DSI_ERR_NOMEM;
    g->n_rules = b->n_rules;
    g->alt_first = malloc(((size_t)b->n_rules + 1) * sizeof(int32_t));
    g->alts = malloc((n_alts + 1) * sizeof(int32_t));
    g->sym = malloc((n_sym + 1) * sizeof(int32_t));
    g->sets = malloc((size_t)b->n_sets * sizeof(dsg_bset_t));
    g->names = calloc((size_t)b->n_rules, sizeof(char *));
    if (!g->alt_first || !g->alts || !g->sym || !g->sets || !g->names) {
        dsg_grammar_free(g);
        return DSI_ERR_NOMEM;
    }
    memcpy(g->sets, b->sets, (size_t)b->n_sets * sizeof(dsg_bset_t));
    g->n_sets = b->n_sets;
    int32_t ai = 0, si = 0;
    for (int32_t r = 0; r < b->n_rules; r++) {
        g->alt_first[r] = ai;
        for (int32_t a = 0; a < b->rules[r].n_alts; a++) {
            g->alts[ai++] = si;
            if (b->rules[r].alts[a].n > 0)
                memcpy(g->sym + si, b->rules[r].alts[a].v, (size_t)b->rules[r].alts[a].n * 4);
            si += b->rules[r].alts[a].n;
            g->sym[si++] = DSG_END;
        }
        g->names[r] = b->rules[r].name;
        b->rules[r].name = NULL;
    }
    g->alt_first[b->n_rules] = ai;
    g->n_sym = si;
    g->root = root;
    *out = g;
    return DSI_OK;
}

void dsg_grammar_free(dsg_grammar_t *g)
{
    if (g == NULL)
        return;
    for (int32_t r = 0; g->names != NULL && r < g->n_rules; r++)
        free(g->names[r]);
    free(g->names);
    free(g->alt_first);
    free(g->alts);
    free(g->sym);
    free(g->sets);
    free(g);
}
