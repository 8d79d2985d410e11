/*
 * dsc_api_json.c - the JSON text writer of the API layer (dsc_api_impl.h) and the UTF-8 check.
 * Hand-written rather than jansson objects because a streamed token is formatted into a buffer
 * the generation keeps, with no allocation once it has grown.
 */
#include "dsc_api_impl.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void jbuf_reserve(dsc_api_jbuf_t *b, size_t extra)
{
    if (b->failed || b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return;
    }
    b->data = p;
    b->cap = cap;
}

void dsc_api_jbuf_put(dsc_api_jbuf_t *b, const char *s, size_t n)
{
    jbuf_reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void dsc_api_jbuf_puts(dsc_api_jbuf_t *b, const char *s)
{
    dsc_api_jbuf_put(b, s, strlen(s));
}

void dsc_api_jbuf_printf(dsc_api_jbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    jbuf_reserve(b, (size_t)n);
    if (b->failed)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void dsc_api_jbuf_string(dsc_api_jbuf_t *b, const char *s, size_t n)
{
    if (s == NULL) {
        dsc_api_jbuf_puts(b, "null");
        return;
    }
    jbuf_reserve(b, n + 2); /* the common case: nothing to escape */
    dsc_api_jbuf_put(b, "\"", 1);
    size_t run = 0; /* bytes of s[i - run, i) that need no escape, copied in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        dsc_api_jbuf_put(b, s + i - run, run);
        run = 0;
        char esc[8];
        switch (c) {
        case '"':
            dsc_api_jbuf_put(b, "\\\"", 2);
            break;
        case '\\':
            dsc_api_jbuf_put(b, "\\\\", 2);
            break;
        case '\n':
            dsc_api_jbuf_put(b, "\\n", 2);
            break;
        case '\r':
            dsc_api_jbuf_put(b, "\\r", 2);
            break;
        case '\t':
            dsc_api_jbuf_put(b, "\\t", 2);
            break;
        default:
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            dsc_api_jbuf_put(b, esc, 6);
        }
    }
    dsc_api_jbuf_put(b, s + n - run, run);
    dsc_api_jbuf_put(b, "\"", 1);
}

void dsc_api_jbuf_reset(dsc_api_jbuf_t *b)
{
    b->len = 0;
    b->failed = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void dsc_api_jbuf_free(dsc_api_jbuf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

char *dsc_api_jbuf_take(dsc_api_jbuf_t *b, size_t *len_out)
{
    jbuf_reserve(b, 0); /* an empty text is "" rather than NULL */
    char *text = b->failed ? NULL : b->data;
    if (text != NULL && len_out != NULL)
        *len_out = b->len;
    if (text == NULL)
        free(b->data);
    memset(b, 0, sizeof(*b));
    return text;
}

/* Length of the UTF-8 sequence at s[0..n) if valid, else 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0; /* continuation byte, overlong lead (c0, c1) or > U+10FFFF lead */
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int dsc_api_utf8_valid(const char *data, size_t len, size_t *bad_offset)
{
    const unsigned char *s = (const unsigned char *)data;
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) { /* ASCII runs are the common case */
            i++;
            continue;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0) {
            if (bad_offset != NULL)
                *bad_offset = i;
            return 0;
        }
        i += n;
    }
    return 1;
}
