/*
 * dsg_regex.c - a regular expression (the subset of docs/STRUCTURED_OUTPUT.md) as grammar text.
 * The whole output must match: ^ at the start and $ at the end are allowed and change nothing.
 * In a JSON string (a schema's `pattern`) the characters that JSON escapes are generated escaped
 * ('"' as \", '\' as \\, control characters as \uXXXX) and classes leave them out, so the output
 * is a valid JSON string whose value matches the expression.
 */
#include "dsg_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s, *end, *start;
    dsg_sbuf_t *b;
    int json;
    char *err;
    size_t errlen;
    dsi_status_t st;
    int depth;
} rx_t;

static int rx_fail(rx_t *r, dsi_status_t st, const char *what)
{
    if (r->st == DSI_OK) {
        dsg_err(r->err, r->errlen, "regex: %s at offset %zu", what, (size_t)(r->s - r->start));
        r->st = st;
    }
    return -1;
}

static int rx_hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static int rx_utf8(rx_t *r, uint32_t *cp)
{
    unsigned char c = (unsigned char)*r->s++;
    if (c < 0x80) {
        *cp = c;
        return 0;
    }
    int n = c >= 0xF0 && c < 0xF5 ? 3 : c >= 0xE0 && c < 0xF0 ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : -1;
    if (n < 0)
        return rx_fail(r, DSI_ERR_BAD_REQUEST, "invalid UTF-8");
    uint32_t v = c & (0x3F >> n);
    for (int i = 0; i < n; i++) {
        if (r->s >= r->end || ((unsigned char)*r->s & 0xC0) != 0x80)
            return rx_fail(r, DSI_ERR_BAD_REQUEST, "invalid UTF-8");
        v = (v << 6) | ((unsigned char)*r->s++ & 0x3F);
    }
    *cp = v;
    return 0;
}

/* Ranges of a shorthand (\d \w \s), or 0 if `c` is not one. Negated: *neg = 1. */
static int shorthand(char c, uint32_t *rg, int json, int *neg)
{
    *neg = c == 'D' || c == 'W' || c == 'S';
    switch (c) {
    case 'd':
    case 'D':
        rg[0] = '0', rg[1] = '9';
        return 1;
    case 'w':
    case 'W':
        rg[0] = 'a', rg[1] = 'z', rg[2] = 'A', rg[3] = 'Z', rg[4] = '0', rg[5] = '9';
        rg[6] = rg[7] = '_';
        return 4;
    case 's':
    case 'S':
        if (json && c == 's') { /* a blank other than space is a control character */
            rg[0] = rg[1] = ' ';
            return 1;
        }
        rg[0] = rg[1] = ' ', rg[2] = 0x09, rg[3] = 0x0D; /* \t \n \v \f \r */
        return 2;
    default:
        return 0;
    }
}

/* One escaped character after '\' (not a shorthand): *cp. */
static int rx_escape(rx_t *r, uint32_t *cp)
{
    if (r->s >= r->end)
        return rx_fail(r, DSI_ERR_BAD_REQUEST, "trailing '\\'");
    char c = *r->s++;
    int digits = 0;
    switch (c) {
    case 'n':
        *cp = '\n';
        return 0;
    case 't':
        *cp = '\t';
        return 0;
    case 'r':
        *cp = '\r';
        return 0;
    case 'f':
        *cp = '\f';
        return 0;
    case 'v':
        *cp = '\v';
        return 0;
    case 'x':
        digits = 2;
        break;
    case 'u':
        digits = 4;
        break;
    case 'b':
    case 'B':
    case 'A':
    case 'Z':
    case 'z':
    case 'G':
        r->s -= 2;
        return rx_fail(r, DSI_ERR_UNSUPPORTED, "unsupported assertion (\\b, \\B, \\A, \\Z)");
    default:
        if (c >= '1' && c <= '9') {
            r->s -= 2;
            return rx_fail(r, DSI_ERR_UNSUPPORTED, "unsupported backreference");
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '0') {
            r->s -= 2;
            return rx_fail(r, DSI_ERR_UNSUPPORTED, "unsupported escape");
        }
        r->s--;
        return rx_utf8(r, cp);
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = r->s < r->end ? rx_hex(*r->s) : -1;
        if (h < 0)
            return rx_fail(r, DSI_ERR_BAD_REQUEST, "bad hexadecimal escape");
        v = v * 16 + (uint32_t)h;
        r->s++;
    }
    if (v >= 0xD800 && v <= 0xDFFF)
        return rx_fail(r, DSI_ERR_BAD_REQUEST, "escape of a surrogate");
    *cp = v;
    return 0;
}

/* One character as it appears in the output (JSON-escaped in a JSON string). */
static void emit_char(rx_t *r, uint32_t cp)
{
    char u[8];
    size_t n;
    if (r->json && (cp == '"' || cp == '\\')) {
        u[0] = '\\', u[1] = (char)cp, n = 2;
    } else if (r->json && cp < 0x20) {
        n = (size_t)snprintf(u, sizeof(u), "\\u%04X", cp);
    } else if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    }
    dsg_sbuf_literal(r->b, u, n);
}

/* Emit a class of `n` ranges; in a JSON string '"', '\' and controls are left out. */
static int emit_class(rx_t *r, const uint32_t *rg, int n, int negate)
{
    dsg_sbuf_t *b = r->b;
    dsg_sbuf_puts(b, negate ? "[^" : "[");
    int any = 0;
    for (int i = 0; i < n; i++) {
        uint32_t lo = rg[2 * i], hi = rg[2 * i + 1];
        /* the pieces of [lo, hi] outside the excluded set (a positive class in a JSON string) */
        uint32_t cut[3][2] = {{lo, hi}, {1, 0}, {1, 0}};
        int pieces = 1;
        if (r->json && !negate) {
            pieces = 0;
            static const uint32_t keep[3][2] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}};
            for (int k = 0; k < 3; k++) {
                uint32_t a = lo > keep[k][0] ? lo : keep[k][0];
                uint32_t z = hi < keep[k][1] ? hi : keep[k][1];
                if (a <= z)
                    cut[pieces][0] = a, cut[pieces][1] = z, pieces++;
            }
        }
        for (int k = 0; k < pieces; k++) {
            dsg_sbuf_class_char(b, cut[k][0]);
            if (cut[k][1] != cut[k][0]) {
                dsg_sbuf_puts(b, "-");
                dsg_sbuf_class_char(b, cut[k][1]);
            }
            any = 1;
        }
    }
    if (r->json && negate) {
        dsg_sbuf_puts(b, "\"\\\\\\x00-\\x1F");
        any = 1;
    }
    dsg_sbuf_puts(b, "]");
    if (!any && !negate)
        return rx_fail(r, DSI_ERR_UNSUPPORTED, "a class with no character allowed in a string");
    return 0;
}

static int parse_class(rx_t *r)
{
    r->s++; /* '[' */
    int negate = 0;
    if (r->s < r->end && *r->s == '^')
        negate = 1, r->s++;
    uint32_t rg[512];
    int n = 0, first = 1;
    while (r->s < r->end && (*r->s != ']' || first)) {
        first = 0;
        if (n > 240)
            return rx_fail(r, DSI_ERR_UNSUPPORTED, "a class of more than 240 items");
        uint32_t lo;
        if (*r->s == '\\' && r->s + 1 < r->end) {
            int neg;
            int k = shorthand(r->s[1], rg + 2 * n, r->json, &neg);
            if (k > 0) {
                if (neg)
                    return rx_fail(r, DSI_ERR_UNSUPPORTED, "a negated shorthand inside a class");
                r->s += 2;
                n += k;
                continue;
            }
            r->s++;
            if (rx_escape(r, &lo))
                return -1;
        } else if (*r->s == '[' && r->s + 1 < r->end && r->s[1] == ':') {
            return rx_fail(r, DSI_ERR_UNSUPPORTED, "POSIX classes [:name:]");
        } else if (rx_utf8(r, &lo)) {
            return -1;
        }
        uint32_t hi = lo;
        if (r->s + 1 < r->end && *r->s == '-' && r->s[1] != ']') {
            r->s++;
            if (*r->s == '\\') {
                r->s++;
                if (rx_escape(r, &hi))
                    return -1;
            } else if (rx_utf8(r, &hi)) {
                return -1;
            }
            if (hi < lo)
                return rx_fail(r, DSI_ERR_BAD_REQUEST, "class range out of order");
        }
        rg[2 * n] = lo, rg[2 * n + 1] = hi, n++;
    }
    if (r->s >= r->end)
        return rx_fail(r, DSI_ERR_BAD_REQUEST, "unterminated class");
    r->s++;
    return emit_class(r, rg, n, negate);
}

static int parse_alt(rx_t *r);

static int parse_atom(rx_t *r)
{
    char c = *r->s;
    if (c == '(') {
        r->s++;
        if (r->s < r->end && *r->s == '?') {
            if (r->end - r->s >= 2 && r->s[1] == ':') {
                r->s += 2;
            } else if (r->end - r->s >= 3 && (r->s[1] == 'P' || r->s[1] == '<') &&
                       r->s[1 + (r->s[1] == 'P')] == '<' && r->s[2] != '=' && r->s[2] != '!') {
                const char *q = memchr(r->s, '>', (size_t)(r->end - r->s));
                if (q == NULL)
                    return rx_fail(r, DSI_ERR_BAD_REQUEST, "unterminated group name");
                r->s = q + 1;
            } else {
                return rx_fail(r, DSI_ERR_UNSUPPORTED,
                               "unsupported group (lookaround, flags or conditionals)");
            }
        }
        if (++r->depth > 100)
            return rx_fail(r, DSI_ERR_UNSUPPORTED, "groups nested more than 100 deep");
        dsg_sbuf_puts(r->b, "(");
        if (parse_alt(r))
            return -1;
        r->depth--;
        if (r->s >= r->end || *r->s != ')')
            return rx_fail(r, DSI_ERR_BAD_REQUEST, "missing ')'");
        r->s++;
        dsg_sbuf_puts(r->b, ")");
        return 0;
    }
    if (c == '[')
        return parse_class(r);
    if (c == '.') {
        r->s++;
        dsg_sbuf_puts(r->b, r->json ? "[^\"\\\\\\x00-\\x1F]" : "[^\\n]");
        return 0;
    }
    if (c == '\\') {
        int neg;
        uint32_t rg[8];
        int k = r->s + 1 < r->end ? shorthand(r->s[1], rg, r->json, &neg) : 0;
        if (k > 0) {
            r->s += 2;
            return emit_class(r, rg, k, neg);
        }
        uint32_t cp;
        r->s++;
        if (rx_escape(r, &cp))
            return -1;
        emit_char(r, cp);
        return 0;
    }
    if (c == '*' || c == '+' || c == '?' || c == '{')
        return rx_fail(r, DSI_ERR_BAD_REQUEST, "a quantifier with nothing before it");
    if (c == '^' || c == '$')
        return rx_fail(r, DSI_ERR_UNSUPPORTED, "an anchor inside the expression");
    uint32_t cp;
    if (rx_utf8(r, &cp))
        return -1;
    emit_char(r, cp);
    return 0;
}

static int parse_quant(rx_t *r)
{
    char c = *r->s;
    if (c == '*' || c == '+' || c == '?') {
        dsg_sbuf_add(r->b, &c, 1);
        r->s++;
    } else {
        const char *q = r->s + 1;
        long m = 0, n = -1;
        int has_comma = 0, digits = 0;
        while (q < r->end && *q >= '0' && *q <= '9' && m <= DSG_MAX_REPEAT)
            m = m * 10 + (*q++ - '0'), digits++;
        if (q < r->end && *q == ',') {
            has_comma = 1;
            q++;
            if (q < r->end && *q >= '0' && *q <= '9') {
                n = 0;
                while (q < r->end && *q >= '0' && *q <= '9' && n <= DSG_MAX_REPEAT)
                    n = n * 10 + (*q++ - '0');
            }
        }
        if (digits == 0 || q >= r->end || *q != '}')
            return rx_fail(r, DSI_ERR_BAD_REQUEST, "bad repetition {m,n}");
        if (m > DSG_MAX_REPEAT || n > DSG_MAX_REPEAT)
            return rx_fail(r, DSI_ERR_UNSUPPORTED, "a repetition count over 10000");
        if (n >= 0 && n < m)
            return rx_fail(r, DSI_ERR_BAD_REQUEST, "repetition {m,n} with n < m");
        if (!has_comma)
            dsg_sbuf_printf(r->b, "{%ld}", m);
        else if (n < 0)
            dsg_sbuf_printf(r->b, "{%ld,}", m);
        else
            dsg_sbuf_printf(r->b, "{%ld,%ld}", m, n);
        r->s = q + 1;
    }
    if (r->s < r->end && *r->s == '?') /* lazy: the same language */
        r->s++;
    else if (r->s < r->end && *r->s == '+')
        return rx_fail(r, DSI_ERR_UNSUPPORTED, "possessive quantifiers");
    return 0;
}

static int at_quant(rx_t *r)
{
    return r->s < r->end &&
           (*r->s == '*' || *r->s == '+' || *r->s == '?' ||
            (*r->s == '{' && r->s + 1 < r->end && r->s[1] >= '0' && r->s[1] <= '9'));
}

static int parse_concat(rx_t *r)
{
    int any = 0;
    if (r->s < r->end && *r->s == '^' && r->depth == 0)
        r->s++;
    while (r->s < r->end && *r->s != '|' && *r->s != ')') {
        if (*r->s == '$' && r->depth == 0 && (r->s + 1 == r->end || r->s[1] == '|')) {
            r->s++;
            continue;
        }
        dsg_sbuf_puts(r->b, " ");
        if (parse_atom(r))
            return -1;
        any = 1;
        while (at_quant(r)) {
            if (parse_quant(r))
                return -1;
        }
    }
    if (!any)
        dsg_sbuf_puts(r->b, " \"\"");
    return 0;
}

static int parse_alt(rx_t *r)
{
    for (;;) {
        if (parse_concat(r))
            return -1;
        if (r->s < r->end && *r->s == '|') {
            r->s++;
            dsg_sbuf_puts(r->b, " |");
            continue;
        }
        return 0;
    }
}

dsi_status_t dsg_regex_body(dsg_sbuf_t *b, const char *re, size_t len, int json_string, char *err,
                            size_t errlen)
{
    rx_t r = {re, re + len, re, b, json_string, err, errlen, DSI_OK, 0};
    dsg_sbuf_puts(b, "(");
    if (parse_alt(&r) == 0 && r.s < r.end)
        rx_fail(&r, DSI_ERR_BAD_REQUEST, "unbalanced ')'");
    dsg_sbuf_puts(b, " )");
    if (r.st == DSI_OK && b->oom)
        r.st = DSI_ERR_NOMEM;
    return r.st;
}

dsi_status_t dsg_from_regex(const char *regex, size_t len, const char *rule_prefix, char **gbnf_out,
                            char *err, size_t errlen)
{
    const char *p = rule_prefix != NULL ? rule_prefix : "";
    dsg_sbuf_t b = {0};
    dsg_sbuf_printf(&b, "%sroot ::= ", p);
    dsi_status_t st = dsg_regex_body(&b, regex, len, 0, err, errlen);
    dsg_sbuf_puts(&b, "\n");
    if (st == DSI_OK && b.oom)
        st = DSI_ERR_NOMEM;
    if (st == DSI_OK && b.n > DSG_MAX_GRAMMAR_BYTES) {
        dsg_err(err, errlen, "regex: the grammar is over %u bytes", DSG_MAX_GRAMMAR_BYTES);
        st = DSI_ERR_TOO_LARGE;
    }
    if (st != DSI_OK) {
        free(b.s);
        return st;
    }
    *gbnf_out = b.s;
    return DSI_OK;
}
