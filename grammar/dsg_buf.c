/* dsg_buf.c - growable int arrays and text buffers of the grammar module. */
#include "dsg_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dsg_ivec_push(dsg_ivec_t *a, int32_t x)
{
    if (a->n == a->cap) {
        int32_t cap = a->cap ? a->cap * 2 : 8;
        int32_t *v = realloc(a->v, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

void dsg_ivec_free(dsg_ivec_t *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

void dsg_sbuf_add(dsg_sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

void dsg_sbuf_puts(dsg_sbuf_t *b, const char *s)
{
    dsg_sbuf_add(b, s, strlen(s));
}

void dsg_sbuf_printf(dsg_sbuf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        dsg_sbuf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    dsg_sbuf_add(b, big, (size_t)n);
    free(big);
}

void dsg_sbuf_literal(dsg_sbuf_t *b, const char *s, size_t n)
{
    dsg_sbuf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            dsg_sbuf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            dsg_sbuf_printf(b, "\\x%02X", c);
        else
            dsg_sbuf_add(b, (const char *)&c, 1);
    }
    dsg_sbuf_add(b, "\"", 1);
}

dsi_status_t dsg_literal(const char *s, size_t n, char **out)
{
    dsg_sbuf_t b = {0};
    dsg_sbuf_literal(&b, s, n);
    if (b.oom) {
        free(b.s);
        return DSI_ERR_NOMEM;
    }
    *out = b.s;
    return DSI_OK;
}

void dsg_sbuf_class_char(dsg_sbuf_t *b, uint32_t cp)
{
    if (cp == ']' || cp == '\\' || cp == '-' || cp == '^' || cp == '[')
        dsg_sbuf_printf(b, "\\%c", (char)cp);
    else if (cp < 0x20 || cp == 0x7f)
        dsg_sbuf_printf(b, "\\x%02X", cp);
    else if (cp < 0x80)
        dsg_sbuf_printf(b, "%c", (char)cp);
    else if (cp <= 0xFFFF)
        dsg_sbuf_printf(b, "\\u%04X", cp);
    else
        dsg_sbuf_printf(b, "\\U%08X", cp);
}

void dsg_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
