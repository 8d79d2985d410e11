/*
 * dsg_wrap.c - a grammar preceded by free text up to an end marker: for reasoning models whose
 * output opens with a thinking block ("...</think>" then the answer), so that the grammar
 * constrains the answer only. The grammar's rule names are renamed (`root` becomes
 * `dsg-answer-root`, every other `X` becomes `dsg-answer-X`: a user's rules cannot collide with
 * the added ones) by a scan that skips literals, classes and comments.
 */
#include "dsg_impl.h"

#include <stdlib.h>
#include <string.h>

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* Copy `g` with every rule name prefixed by `prefix`. */
static void rename_rules(dsg_sbuf_t *b, const char *g, size_t len, const char *prefix)
{
    size_t i = 0;
    while (i < len) {
        char c = g[i];
        if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            size_t j = i + 1;
            while (j < len && g[j] != close)
                j += g[j] == '\\' && j + 1 < len ? 2 : 1;
            j = j < len ? j + 1 : len;
            dsg_sbuf_add(b, g + i, j - i);
            i = j;
        } else if (c == '{') { /* a repetition count */
            size_t j = i;
            while (j < len && g[j] != '}')
                j++;
            j = j < len ? j + 1 : len;
            dsg_sbuf_add(b, g + i, j - i);
            i = j;
        } else if (c == '#') {
            size_t j = i;
            while (j < len && g[j] != '\n')
                j++;
            dsg_sbuf_add(b, g + i, j - i);
            i = j;
        } else if (name_char(c) && c != '.') {
            size_t j = i;
            while (j < len && name_char(g[j]))
                j++;
            dsg_sbuf_puts(b, prefix);
            dsg_sbuf_add(b, g + i, j - i);
            i = j;
        } else {
            dsg_sbuf_add(b, &c, 1);
            i++;
        }
    }
}

dsi_status_t dsg_after_marker(const char *gbnf, size_t len, const char *marker, char **out)
{
    size_t m = strlen(marker);
    if (m == 0 || m > 64)
        return DSI_ERR_INVALID_ARG;
    for (size_t i = 0; i < m; i++) {
        if ((unsigned char)marker[i] < 0x20 || (unsigned char)marker[i] >= 0x80)
            return DSI_ERR_INVALID_ARG; /* printable ASCII: one byte is one character */
    }
    dsg_sbuf_t b = {0};
    rename_rules(&b, gbnf, len, "dsg-answer-");
    /* dsg-free-k: free text whose last k bytes are the marker's first k, never the whole marker
     * (a KMP automaton over the marker's bytes; bytes other than the next one fall back to the
     * longest prefix that is a suffix). */
    dsg_sbuf_puts(&b, "\nroot ::= dsg-free-0 ");
    dsg_sbuf_literal(&b, marker, m);
    dsg_sbuf_puts(&b, " \"\\n\"{0,2} dsg-answer-root\n");
    for (size_t k = 0; k < m; k++) {
        dsg_sbuf_printf(&b, "dsg-free-%zu ::= \"\"", k);
        /* the byte that extends the match */
        if (k + 1 < m) {
            dsg_sbuf_puts(&b, " | ");
            dsg_sbuf_literal(&b, marker + k, 1);
            dsg_sbuf_printf(&b, " dsg-free-%zu", k + 1);
        }
        /* every other byte: the longest prefix of the marker that ends the text so far */
        int seen[256] = {0};
        seen[(unsigned char)marker[k]] = 1;
        for (size_t p = k + 1; p-- > 0;) {
            /* prefix of length p followed by byte marker[p] (if it differs) */
            if (p >= m)
                continue;
            unsigned char c = (unsigned char)marker[p];
            if (seen[c])
                continue;
            /* is marker[0..p) a suffix of marker[0..k)? */
            if (p <= k && memcmp(marker, marker + k - p, p) == 0) {
                seen[c] = 1;
                dsg_sbuf_puts(&b, " | ");
                dsg_sbuf_literal(&b, (const char *)&c, 1);
                dsg_sbuf_printf(&b, " dsg-free-%zu", p + 1);
            }
        }
        /* any other character goes back to the start */
        dsg_sbuf_puts(&b, " | [^");
        for (int c = 0; c < 128; c++) {
            if (seen[c])
                dsg_sbuf_class_char(&b, (uint32_t)c);
        }
        dsg_sbuf_printf(&b, "] dsg-free-0\n");
    }
    if (b.oom) {
        free(b.s);
        return DSI_ERR_NOMEM;
    }
    *out = b.s;
    return DSI_OK;
}
