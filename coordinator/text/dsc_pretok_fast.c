/*
 * dsc_pretok_fast.c - direct matchers for the three Split regexes of DeepSeek-V3's tokenizer.json.
 *
 * Oniguruma costs about 1 us per search call whatever the text (it copies its match stack to the
 * heap on every call), which caps encoding at a few MB/s. These matchers find the same leftmost
 * match that Oniguruma's backtracking finds for those exact pattern strings, using Oniguruma's own
 * Unicode tables for \p{L}, \p{M}, \p{N}, \p{P}, \p{S} and \s, so the classes cannot drift. Any
 * other pattern goes to Oniguruma. test_unit_tokenizer compares both paths on random text.
 *
 * Backtracking, worked out per alternative of the third pattern at a start position i:
 *   [punct][A-Za-z]+            an ASCII punctuation character then the whole run of ASCII letters
 *   [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *                               the optional character is taken first; if no L/M run follows it,
 *                               the match is the L/M run starting at i itself
 *   " ?[\p{P}\p{S}]+[\r\n]*"    likewise with the optional space
 *   \s*[\r\n]+                  \s* gives back characters until one is \r or \n: the match ends
 *                               after the last \r or \n of the whitespace run at i
 *   \s+(?!\S)                   the whole run if it ends the piece, else the run minus its last
 *                               character (which satisfies the lookahead), if that leaves one
 *   \s+                         the whole run
 * The first alternative that matches at the leftmost position wins.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_pretokenize.h"
#include "dsc_utf8.h"

#define CL_L     0x01u
#define CL_M     0x02u
#define CL_N     0x04u
#define CL_P     0x08u
#define CL_S     0x10u
#define CL_SPACE 0x20u

static const char pat_digits[] = "\\p{N}{1,3}";
static const char pat_cjk[] = "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-"
                              "\xe3\x83\xbf]+"; /* [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+ */
static const char pat_words[] =
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

static int ctypes[6];      /* Oniguruma ctype ids of L, M, N, P, S, space */
static uint8_t *bmp_class; /* [0x10000] CL_* bits of every BMP code point */
static pthread_once_t class_once = PTHREAD_ONCE_INIT;

static unsigned classify(uint32_t cp)
{
    unsigned c = 0;
    for (int k = 0; k < 6; k++) {
        if (ctypes[k] >= 0 && ONIGENC_IS_CODE_CTYPE(ONIG_ENCODING_UTF8, cp, ctypes[k]))
            c |= 1u << k;
    }
    return c;
}

static void class_init(void)
{
    static const char *const props[5] = {"L", "M", "N", "P", "S"};
    dsc_onig_init();
    for (int k = 0; k < 5; k++)
        ctypes[k] = ONIGENC_PROPERTY_NAME_TO_CTYPE(ONIG_ENCODING_UTF8, (UChar *)props[k],
                                                   (UChar *)props[k] + strlen(props[k]));
    ctypes[5] = ONIGENC_CTYPE_SPACE;
    for (int k = 0; k < 6; k++) {
        if (ctypes[k] < 0)
            return; /* leaves bmp_class NULL: the fast path is then never chosen */
    }
    uint8_t *t = malloc(0x10000);
    if (t == NULL)
        return;
    for (uint32_t cp = 0; cp < 0x10000; cp++)
        t[cp] = (uint8_t)classify(cp);
    bmp_class = t; /* process lifetime: shared by every tokenizer */
}

dsc_fast_kind_t dsc_pretok_fast_kind(const char *pattern, size_t len, int literal)
{
    dsc_fast_kind_t kind = DSC_FAST_NONE;
    if (literal)
        return kind;
    if (len == strlen(pat_digits) && memcmp(pattern, pat_digits, len) == 0)
        kind = DSC_FAST_DIGITS;
    else if (len == strlen(pat_cjk) && memcmp(pattern, pat_cjk, len) == 0)
        kind = DSC_FAST_CJK;
    else if (len == strlen(pat_words) && memcmp(pattern, pat_words, len) == 0)
        kind = DSC_FAST_WORDS;
    if (kind != DSC_FAST_NONE) {
        pthread_once(&class_once, class_init);
        if (bmp_class == NULL)
            kind = DSC_FAST_NONE;
    }
    return kind;
}

/* One decoded character of valid UTF-8. */
typedef struct {
    uint32_t cp;
    unsigned len, cls;
} uchar_t;

static inline uchar_t char_at(const unsigned char *s, size_t len, size_t i)
{
    uchar_t c;
    unsigned b = s[i];
    if (b < 0x80) {
        c.cp = b;
        c.len = 1;
        c.cls = bmp_class[b];
        return c;
    }
    /* Valid UTF-8 (checked on entry to encode): the lead byte gives the length. */
    if (b < 0xE0 && i + 1 < len) {
        c.cp = ((b & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
        c.len = 2;
    } else if (b >= 0xE0 && b < 0xF0 && i + 2 < len) {
        c.cp = ((b & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
        c.len = 3;
    } else if (b >= 0xF0 && i + 3 < len) {
        c.cp = ((b & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
               (s[i + 3] & 0x3Fu);
        c.len = 4;
    } else { /* a truncated character cannot occur in valid text; step over the byte */
        c.cp = 0xFFFD;
        c.len = 1;
    }
    c.cls = c.cp < 0x10000 ? bmp_class[c.cp] : classify(c.cp);
    return c;
}

/* End of the run of characters with any of `cls` starting at i. */
static size_t run_of(const unsigned char *s, size_t len, size_t i, unsigned cls)
{
    while (i < len) {
        uchar_t c = char_at(s, len, i);
        if (!(c.cls & cls))
            break;
        i += c.len;
    }
    return i;
}

static int is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x3040 && cp <= 0x309F) ||
           (cp >= 0x30A0 && cp <= 0x30FF);
}

static int ascii_alpha(unsigned char b)
{
    return (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z');
}

static int ascii_punct(uint32_t cp)
{
    return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
           (cp >= 0x7B && cp <= 0x7E);
}

/* The third pattern at position i: 1 and *end when some alternative matches there. */
static int words_at(const unsigned char *s, size_t len, size_t i, uchar_t c, size_t *end)
{
    size_t j = i + c.len;
    uchar_t n = j < len ? char_at(s, len, j) : (uchar_t){0, 0, 0};
    if (ascii_punct(c.cp) && j < len && ascii_alpha(s[j])) {
        for (*end = j; *end < len && ascii_alpha(s[*end]); (*end)++)
            ;
        return 1;
    }
    if (c.cp != '\r' && c.cp != '\n' && !(c.cls & (CL_L | CL_P | CL_S)) &&
        (n.cls & (CL_L | CL_M))) {
        *end = run_of(s, len, j, CL_L | CL_M);
        return 1;
    }
    if (c.cls & (CL_L | CL_M)) {
        *end = run_of(s, len, i, CL_L | CL_M);
        return 1;
    }
    size_t ps = c.cp == ' ' && (n.cls & (CL_P | CL_S)) ? j : (c.cls & (CL_P | CL_S)) ? i : len + 1;
    if (ps <= len) {
        size_t e = run_of(s, len, ps, CL_P | CL_S);
        while (e < len && (s[e] == '\r' || s[e] == '\n'))
            e++;
        *end = e;
        return 1;
    }
    if (!(c.cls & CL_SPACE))
        return 0;
    /* The whitespace run [i, e); the last \r or \n in it; the start of its last character. */
    size_t e = i, last_nl = 0, last_start = i;
    int has_nl = 0;
    while (e < len) {
        uchar_t w = char_at(s, len, e);
        if (!(w.cls & CL_SPACE))
            break;
        if (w.cp == '\r' || w.cp == '\n') {
            has_nl = 1;
            last_nl = e;
        }
        last_start = e;
        e += w.len;
    }
    if (has_nl)
        *end = last_nl + 1;
    else if (e == len || last_start == i)
        *end = e; /* \s+(?!\S) at the end of the piece, or a lone character: \s+ */
    else
        *end = last_start;
    return 1;
}

int dsc_pretok_fast_search(dsc_fast_kind_t kind, const unsigned char *s, size_t len, size_t from,
                           size_t *ms, size_t *me)
{
    for (size_t i = from; i < len;) {
        uchar_t c = char_at(s, len, i);
        size_t end;
        switch (kind) {
        case DSC_FAST_DIGITS:
            if (c.cls & CL_N) {
                end = i + c.len;
                for (int k = 1; k < 3 && end < len; k++) {
                    uchar_t d = char_at(s, len, end);
                    if (!(d.cls & CL_N))
                        break;
                    end += d.len;
                }
                *ms = i;
                *me = end;
                return 1;
            }
            break;
        case DSC_FAST_CJK:
            if (is_cjk(c.cp)) {
                end = i + c.len;
                while (end < len) {
                    uchar_t d = char_at(s, len, end);
                    if (!is_cjk(d.cp))
                        break;
                    end += d.len;
                }
                *ms = i;
                *me = end;
                return 1;
            }
            break;
        case DSC_FAST_WORDS:
            if (words_at(s, len, i, c, &end)) {
                *ms = i;
                *me = end;
                return 1;
            }
            break;
        default:
            return 0;
        }
        i += c.len;
    }
    return 0;
}
