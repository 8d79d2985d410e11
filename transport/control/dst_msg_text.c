/*
 * dst_msg_text.c - the text rules of the protocol: strings are UTF-8 without control characters,
 * so that whatever a peer sends can be logged and echoed safely.
 */
#include <stddef.h>
#include <stdint.h>

#include "dst_msg_impl.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is invalid or a control char. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x20 || c == 0x7f)
        return 0;
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        /* A NUL terminator fails this test too, so we never read past the string. */
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid. */
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    /* C1 controls (U+0080..U+009F) can steer terminals as well. */
    if (cp >= 0x80 && cp <= 0x9f)
        return 0;
    return n;
}

int dst_msg_text_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != 0) {
        size_t n = utf8_seq(p);
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

void dst_msg_text_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p != 0) {
        size_t n = utf8_seq(p);
        if (n == 0) {
            *p = '?';
            n = 1;
        }
        p += n;
    }
}

void dst_msg_text_quote(const char *p, size_t n, char *dst, size_t cap)
{
    if (cap == 0)
        return;
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[j] = 0;
}
