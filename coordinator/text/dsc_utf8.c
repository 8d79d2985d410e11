/* dsc_utf8.c - UTF-8 validation and lossy decoding (see dsc_utf8.h). */
#include "dsc_utf8.h"

static int is_cont(unsigned char b)
{
    return (b & 0xC0) == 0x80;
}

/*
 * The allowed range of the second byte of a multi-byte sequence led by `lead`, which is what
 * excludes overlong forms (E0, F0), surrogates (ED) and code points above U+10FFFF (F4).
 * Returns the sequence width (2..4) or 0 for a byte that cannot lead a sequence.
 */
static int lead_info(unsigned char lead, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF)
        return 2;
    if (lead >= 0xE0 && lead <= 0xEF) {
        if (lead == 0xE0)
            *lo = 0xA0;
        else if (lead == 0xED)
            *hi = 0x9F;
        return 3;
    }
    if (lead >= 0xF0 && lead <= 0xF4) {
        if (lead == 0xF0)
            *lo = 0x90;
        else if (lead == 0xF4)
            *hi = 0x8F;
        return 4;
    }
    return 0;
}

size_t dsc_utf8_lossy_step(const unsigned char *s, size_t avail, int *valid)
{
    unsigned char lo, hi;
    *valid = 0;
    if (avail == 0)
        return 0;
    if (s[0] < 0x80) {
        *valid = 1;
        return 1;
    }
    int width = lead_info(s[0], &lo, &hi);
    if (width == 0)
        return 1;
    if (avail < 2)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 1;
    for (int i = 2; i < width; i++) {
        if ((size_t)i >= avail)
            return 0;
        if (!is_cont(s[i]))
            return (size_t)i;
    }
    *valid = 1;
    return (size_t)width;
}

size_t dsc_utf8_char_len(const unsigned char *s, size_t avail)
{
    int valid;
    size_t n = dsc_utf8_lossy_step(s, avail, &valid);
    return valid ? n : 0;
}

int dsc_utf8_validate(const char *s, size_t len, size_t *bad_offset)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t n = dsc_utf8_char_len(p + i, len - i);
        if (n == 0) {
            if (bad_offset != NULL)
                *bad_offset = i;
            return 0;
        }
        i += n;
    }
    return 1;
}

uint32_t dsc_utf8_decode(const unsigned char *s, size_t n)
{
    switch (n) {
    case 1:
        return s[0];
    case 2:
        return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3:
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
}

size_t dsc_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int dsc_utf8_is_space(uint32_t cp)
{
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}
