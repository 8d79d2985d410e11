/*
 * dsg_parse.c - the grammar text (GBNF-like, docs/STRUCTURED_OUTPUT.md) into the builder, and
 * dsg_compile. Groups and repetitions become anonymous rules: X* is R ::= X R | (empty), X? is
 * R ::= X | (empty), X{m,n} is m copies of X then n - m nested optionals.
 */
#include "dsg_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s, *end, *start;
    dsg_builder_t *b;
    char *err;
    size_t errlen;
    int failed;
    int depth;
} parser_t;

static int fail(parser_t *p, const char *what)
{
    if (!p->failed) {
        size_t off = (size_t)(p->s - p->start);
        dsg_err(p->err, p->errlen, "grammar: %s at byte %zu", what, off);
    }
    p->failed = 1;
    return -1;
}

static void skip_space(parser_t *p)
{
    while (p->s < p->end) {
        char c = *p->s;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->s++;
        } else if (c == '#') {
            while (p->s < p->end && *p->s != '\n')
                p->s++;
        } else {
            break;
        }
    }
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static size_t name_len(const char *s, const char *end)
{
    size_t n = 0;
    while (s + n < end && is_name_char(s[n]) && !(n == 0 && s[n] == '.'))
        n++;
    return n;
}

/* A name followed by ::= starts the next rule. */
static int at_rule_start(parser_t *p)
{
    size_t n = name_len(p->s, p->end);
    if (n == 0)
        return 0;
    const char *q = p->s + n;
    while (q < p->end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    return p->end - q >= 3 && memcmp(q, "::=", 3) == 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One character of a literal or class (UTF-8 decoded, escapes resolved) into *cp. */
static int read_char(parser_t *p, uint32_t *cp)
{
    if (p->s >= p->end)
        return fail(p, "unexpected end");
    unsigned char c = (unsigned char)*p->s++;
    if (c == '\\') {
        if (p->s >= p->end)
            return fail(p, "unexpected end after '\\'");
        char e = *p->s++;
        int digits = 0;
        switch (e) {
        case 'n':
            *cp = '\n';
            return 0;
        case 't':
            *cp = '\t';
            return 0;
        case 'r':
            *cp = '\r';
            return 0;
        case 'x':
            digits = 2;
            break;
        case 'u':
            digits = 4;
            break;
        case 'U':
            digits = 8;
            break;
        case '\\':
        case '"':
        case '\'':
        case '[':
        case ']':
        case '-':
        case '^':
        case '/':
            *cp = (uint32_t)e;
            return 0;
        default:
            p->s--;
            return fail(p, "unknown escape");
        }
        uint32_t v = 0;
        for (int i = 0; i < digits; i++) {
            int h = p->s < p->end ? hexval(*p->s) : -1;
            if (h < 0)
                return fail(p, "bad hexadecimal escape");
            v = v * 16 + (uint32_t)h;
            p->s++;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return fail(p, "escape is not a Unicode scalar value");
        *cp = v;
        return 0;
    }
    if (c < 0x80) {
        *cp = c;
        return 0;
    }
    int n = c >= 0xF0 && c < 0xF5 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : -1;
    if (n < 0 || c >= 0xF5)
        return p->s--, fail(p, "invalid UTF-8");
    uint32_t v = c & (0x3F >> n);
    for (int i = 0; i < n; i++) {
        if (p->s >= p->end || ((unsigned char)*p->s & 0xC0) != 0x80)
            return fail(p, "invalid UTF-8");
        v = (v << 6) | ((unsigned char)*p->s++ & 0x3F);
    }
    *cp = v;
    return 0;
}

static int emit_cp(parser_t *p, dsg_ivec_t *seq, uint32_t cp)
{
    uint8_t o[4];
    int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n == 1) {
        o[0] = (uint8_t)cp;
    } else if (n == 2) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6)), o[1] = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (n == 3) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12)), o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        o[0] = (uint8_t)(0xF0 | (cp >> 18)), o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    }
    for (int i = 0; i < n; i++) {
        if (dsg_ivec_push(seq, o[i]))
            return fail(p, "out of memory");
    }
    return 0;
}

static int parse_alternatives(parser_t *p, int32_t rule);

/* One primary into a fresh sequence `item` (a literal may be several symbols). */
static int parse_primary(parser_t *p, dsg_ivec_t *item, const char *rule_name)
{
    char c = *p->s;
    if (c == '"') {
        p->s++;
        while (p->s < p->end && *p->s != '"') {
            uint32_t cp;
            if (read_char(p, &cp) || emit_cp(p, item, cp))
                return -1;
        }
        if (p->s >= p->end)
            return fail(p, "unterminated literal");
        p->s++;
        return 0;
    }
    if (c == '[') {
        p->s++;
        int negate = 0;
        if (p->s < p->end && *p->s == '^')
            negate = 1, p->s++;
        dsg_ivec_t r = {0};
        while (p->s < p->end && *p->s != ']') {
            uint32_t lo, hi;
            if (read_char(p, &lo))
                goto bad;
            hi = lo;
            if (p->end - p->s >= 2 && p->s[0] == '-' && p->s[1] != ']') {
                p->s++;
                if (read_char(p, &hi))
                    goto bad;
                if (hi < lo) {
                    fail(p, "class range out of order");
                    goto bad;
                }
            }
            if (dsg_ivec_push(&r, (int32_t)lo) || dsg_ivec_push(&r, (int32_t)hi)) {
                fail(p, "out of memory");
                goto bad;
            }
        }
        if (p->s >= p->end) {
            fail(p, "unterminated class");
            goto bad;
        }
        p->s++;
        int rc = dsg_builder_class(p->b, item, (const uint32_t *)r.v, r.n / 2, negate, rule_name);
        dsg_ivec_free(&r);
        return rc ? fail(p, "out of memory") : 0;
    bad:
        dsg_ivec_free(&r);
        return -1;
    }
    if (c == '.') {
        p->s++;
        uint32_t any[2] = {0, 0x10FFFF};
        return dsg_builder_class(p->b, item, any, 1, 0, rule_name) ? fail(p, "out of memory") : 0;
    }
    if (c == '(') {
        p->s++;
        if (++p->depth > 200)
            return fail(p, "groups nested too deep");
        int32_t r = dsg_builder_anon(p->b, rule_name);
        if (r < 0 || parse_alternatives(p, r))
            return -1;
        p->depth--;
        skip_space(p);
        if (p->s >= p->end || *p->s != ')')
            return fail(p, "expected ')'");
        p->s++;
        return dsg_ivec_push(item, DSG_REF(r)) ? fail(p, "out of memory") : 0;
    }
    size_t n = name_len(p->s, p->end);
    if (n == 0)
        return fail(p, "expected a literal, class, group or rule name");
    int32_t r = dsg_builder_rule(p->b, p->s, n);
    p->s += n;
    if (r < 0 || dsg_ivec_push(item, DSG_REF(r)))
        return fail(p, "out of memory");
    return 0;
}

/* `item` as one symbol: a literal of several bytes is wrapped in a rule. */
static int32_t as_symbol(parser_t *p, dsg_ivec_t *item, const char *rule_name)
{
    if (item->n == 1)
        return item->v[0];
    int32_t r = dsg_builder_anon(p->b, rule_name);
    dsg_ivec_t *a = r < 0 ? NULL : dsg_builder_alt(p->b, r);
    if (a == NULL)
        return fail(p, "out of memory"), 0;
    *a = *item;
    memset(item, 0, sizeof(*item));
    return DSG_REF(r);
}

static int parse_count(parser_t *p, long *out)
{
    long v = 0;
    if (p->s >= p->end || *p->s < '0' || *p->s > '9')
        return fail(p, "expected a number in { }");
    while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
        v = v * 10 + (*p->s++ - '0');
        if (v > DSG_MAX_REPEAT)
            return fail(p, "repetition count over 10000");
    }
    *out = v;
    return 0;
}

/* Append X{lo,hi} (hi < 0: unbounded) of symbol x to seq. */
static int repeat(parser_t *p, dsg_ivec_t *seq, int32_t x, long lo, long hi, const char *name)
{
    for (long i = 0; i < lo; i++) {
        if (dsg_ivec_push(seq, x))
            return fail(p, "out of memory");
    }
    if (hi < 0) { /* R ::= x R | */
        int32_t r = dsg_builder_anon(p->b, name);
        dsg_ivec_t *a = r < 0 ? NULL : dsg_builder_alt(p->b, r);
        if (a == NULL || dsg_ivec_push(a, x) || dsg_ivec_push(a, DSG_REF(r)) ||
            dsg_builder_alt(p->b, r) == NULL || dsg_ivec_push(seq, DSG_REF(r)))
            return fail(p, "out of memory");
        return 0;
    }
    int32_t next = 0;
    int have = 0;
    for (long i = lo; i < hi; i++) { /* R_k ::= x R_{k-1} | */
        int32_t r = dsg_builder_anon(p->b, name);
        dsg_ivec_t *a = r < 0 ? NULL : dsg_builder_alt(p->b, r);
        if (a == NULL || dsg_ivec_push(a, x) || (have && dsg_ivec_push(a, next)) ||
            dsg_builder_alt(p->b, r) == NULL)
            return fail(p, "out of memory");
        next = DSG_REF(r);
        have = 1;
    }
    if (have && dsg_ivec_push(seq, next))
        return fail(p, "out of memory");
    return 0;
}

static int parse_sequence(parser_t *p, dsg_ivec_t *seq, const char *name)
{
    for (;;) {
        skip_space(p);
        if (p->s >= p->end || *p->s == '|' || *p->s == ')' || at_rule_start(p))
            return 0;
        dsg_ivec_t item = {0};
        if (parse_primary(p, &item, name)) {
            dsg_ivec_free(&item);
            return -1;
        }
        skip_space(p);
        char c = p->s < p->end ? *p->s : 0;
        if (c != '*' && c != '+' && c != '?' && c != '{') {
            for (int32_t i = 0; i < item.n; i++) {
                if (dsg_ivec_push(seq, item.v[i]))
                    return dsg_ivec_free(&item), fail(p, "out of memory");
            }
            dsg_ivec_free(&item);
            continue;
        }
        int32_t x = as_symbol(p, &item, name);
        dsg_ivec_free(&item);
        if (p->failed)
            return -1;
        while (p->s < p->end && (*p->s == '*' || *p->s == '+' || *p->s == '?' || *p->s == '{')) {
            long lo = 0, hi = -1;
            c = *p->s++;
            if (c == '+')
                lo = 1;
            else if (c == '?')
                hi = 1;
            else if (c == '{') {
                skip_space(p);
                if (parse_count(p, &lo))
                    return -1;
                skip_space(p);
                hi = lo;
                if (p->s < p->end && *p->s == ',') {
                    p->s++;
                    skip_space(p);
                    hi = -1;
                    if (p->s < p->end && *p->s != '}' && parse_count(p, &hi))
                        return -1;
                    skip_space(p);
                }
                if (p->s >= p->end || *p->s != '}')
                    return fail(p, "expected '}'");
                p->s++;
                if (hi >= 0 && hi < lo)
                    return fail(p, "repetition {m,n} with n < m");
            }
            dsg_ivec_t tmp = {0};
            if (repeat(p, &tmp, x, lo, hi, name)) {
                dsg_ivec_free(&tmp);
                return -1;
            }
            skip_space(p);
            if (p->s < p->end && (*p->s == '*' || *p->s == '+' || *p->s == '?' || *p->s == '{')) {
                x = as_symbol(p, &tmp, name); /* a repetition of a repetition */
                dsg_ivec_free(&tmp);
                if (p->failed)
                    return -1;
                continue;
            }
            for (int32_t i = 0; i < tmp.n; i++) {
                if (dsg_ivec_push(seq, tmp.v[i]))
                    return dsg_ivec_free(&tmp), fail(p, "out of memory");
            }
            dsg_ivec_free(&tmp);
            break;
        }
    }
}

static int parse_alternatives(parser_t *p, int32_t rule)
{
    char name[64];
    snprintf(name, sizeof(name), "%.50s", p->b->rules[rule].name);
    char *tilde = strchr(name, '~');
    if (tilde != NULL)
        *tilde = '\0';
    for (;;) {
        dsg_ivec_t *a = dsg_builder_alt(p->b, rule);
        if (a == NULL)
            return fail(p, "out of memory");
        dsg_ivec_t seq = {0};
        if (parse_sequence(p, &seq, name)) {
            dsg_ivec_free(&seq);
            return -1;
        }
        a = &p->b->rules[rule].alts[p->b->rules[rule].n_alts - 1]; /* the rules may have moved */
        *a = seq;
        skip_space(p);
        if (p->s < p->end && *p->s == '|') {
            p->s++;
            continue;
        }
        return 0;
    }
}

dsi_status_t dsg_compile(const char *gbnf, size_t len, dsg_grammar_t **out, char *err,
                         size_t errlen)
{
    if (len > DSG_MAX_GRAMMAR_BYTES) {
        dsg_err(err, errlen, "grammar: %zu bytes, over the limit of %u", len,
                DSG_MAX_GRAMMAR_BYTES);
        return DSI_ERR_TOO_LARGE;
    }
    dsg_builder_t b;
    dsg_builder_init(&b);
    parser_t p = {gbnf, gbnf + len, gbnf, &b, err, errlen, 0, 0};
    dsi_status_t st = DSI_OK;
    for (;;) {
        skip_space(&p);
        if (p.s >= p.end)
            break;
        size_t n = name_len(p.s, p.end);
        if (n == 0) {
            fail(&p, "expected a rule name");
            break;
        }
        int32_t r = dsg_builder_rule(&b, p.s, n);
        if (r < 0) {
            fail(&p, "out of memory");
            break;
        }
        if (b.rules[r].defined) {
            fail(&p, "rule defined twice");
            break;
        }
        b.rules[r].defined = 1;
        p.s += n;
        skip_space(&p);
        if (p.end - p.s < 3 || memcmp(p.s, "::=", 3) != 0) {
            fail(&p, "expected '::='");
            break;
        }
        p.s += 3;
        if (parse_alternatives(&p, r))
            break;
        skip_space(&p);
        if (p.s < p.end && !at_rule_start(&p)) {
            fail(&p, *p.s == ')' ? "unbalanced ')'" : "unexpected character");
            break;
        }
    }
    if (p.failed)
        st = b.oom ? DSI_ERR_NOMEM : DSI_ERR_BAD_REQUEST;
    dsg_grammar_t *g = NULL;
    if (st == DSI_OK)
        st = dsg_builder_finish(&b, &g, err, errlen);
    dsg_builder_free(&b);
    if (st != DSI_OK)
        return st;
    /* Each rule's closure shows left recursion and runaway expansions now rather than
     * mid-request. */
    int32_t *tmp = malloc(DSG_MAX_STATES * sizeof(int32_t));
    dsg_stacks_t t;
    if (tmp == NULL || (st = dsg_stacks_init(&t, g)) != DSI_OK) {
        free(tmp);
        dsg_grammar_free(g);
        return DSI_ERR_NOMEM;
    }
    for (int32_t r = 0; st == DSI_OK && r < g->n_rules; r++) {
        if (dsg_stacks_rule(&t, r, tmp, DSG_MAX_STATES) < 0) {
            st = t.error == DSI_ERR_NOMEM ? DSI_ERR_NOMEM : DSI_ERR_BAD_REQUEST;
            dsg_err(err, errlen,
                    "grammar: rule '%s' expands without bound (left recursion, or too many "
                    "alternatives at once)",
                    g->names[r]);
        }
    }
    dsg_stacks_cleanup(&t);
    free(tmp);
    if (st != DSI_OK) {
        dsg_grammar_free(g);
        return st;
    }
    *out = g;
    return DSI_OK;
}
