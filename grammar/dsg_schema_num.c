/*
 * dsg_schema_num.c - exact grammars for bounded integers and numbers. An integer range becomes
 * alternatives over digit counts, each split on its first differing digit (the classic
 * range-to-regex construction). A number with integer bounds is an integer part in a range and
 * a fraction: x >= a is "integer part >= a"; x <= b is "integer part < b, any fraction, or b with
 * a zero fraction"; the exclusive bounds likewise. Without bounds an integer has at most 16
 * digits.
 */
#include "dsg_schema_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP_SMALL 9999999999999999ull /* 16 digits: the default limit */
#define CAP_BIG   999999999999999999ull

static int ndigits(uint64_t x)
{
    int n = 1;
    while (x >= 10)
        x /= 10, n++;
    return n;
}

static int all_of(const char *s, int n, char c)
{
    for (int i = 0; i < n; i++) {
        if (s[i] != c)
            return 0;
    }
    return 1;
}

/* Digit strings of length n from lo to hi (both n digits, lo <= hi). */
static void same_len(dsg_sbuf_t *b, const char *lo, const char *hi, int n)
{
    if (n == 0)
        return;
    if (memcmp(lo, hi, (size_t)n) == 0) {
        dsg_sbuf_literal(b, lo, (size_t)n);
        return;
    }
    if (lo[0] == hi[0]) {
        dsg_sbuf_literal(b, lo, 1);
        dsg_sbuf_puts(b, " ");
        same_len(b, lo + 1, hi + 1, n - 1);
        return;
    }
    if (all_of(lo + 1, n - 1, '0') && all_of(hi + 1, n - 1, '9')) {
        dsg_sbuf_printf(b, "[%c-%c]", lo[0], hi[0]);
        if (n > 1)
            dsg_sbuf_printf(b, " [0-9]{%d}", n - 1);
        return;
    }
    char nines[24], zeros[24];
    memset(nines, '9', sizeof(nines));
    memset(zeros, '0', sizeof(zeros));
    dsg_sbuf_puts(b, "( ");
    dsg_sbuf_literal(b, lo, 1);
    dsg_sbuf_puts(b, " ");
    same_len(b, lo + 1, nines, n - 1);
    if (lo[0] + 1 <= hi[0] - 1) {
        dsg_sbuf_printf(b, " | [%c-%c]", lo[0] + 1, hi[0] - 1);
        if (n > 1)
            dsg_sbuf_printf(b, " [0-9]{%d}", n - 1);
    }
    dsg_sbuf_puts(b, " | ");
    dsg_sbuf_literal(b, hi, 1);
    dsg_sbuf_puts(b, " ");
    same_len(b, zeros, hi + 1, n - 1);
    dsg_sbuf_puts(b, " )");
}

/* ( the decimal forms of a .. b ), a <= b. */
static void urange(dsg_sbuf_t *b, uint64_t a, uint64_t z)
{
    dsg_sbuf_puts(b, "( ");
    int k = 0;
    uint64_t p10 = 1;
    for (int len = 1; len <= ndigits(z); len++) {
        uint64_t first = len == 1 ? 0 : p10, last = len >= 20 ? UINT64_MAX : p10 * 10 - 1;
        p10 = len >= 20 ? p10 : p10 * 10;
        uint64_t lo = a > first ? a : first, hi = z < last ? z : last;
        if (lo > hi)
            continue;
        char ls[24], hs[24];
        snprintf(ls, sizeof(ls), "%llu", (unsigned long long)lo);
        snprintf(hs, sizeof(hs), "%llu", (unsigned long long)hi);
        if (k++)
            dsg_sbuf_puts(b, " | ");
        dsg_sbuf_puts(b, "( ");
        same_len(b, ls, hs, len);
        dsg_sbuf_puts(b, " )");
    }
    dsg_sbuf_puts(b, " )");
}

void dsg_schema_int_range(dsg_sbuf_t *b, int has_lo, int64_t lo, int has_hi, int64_t hi)
{
    int alts = 0;
    dsg_sbuf_puts(b, "( ");
    if (!has_hi || hi >= 0) {
        uint64_t a = has_lo && lo > 0 ? (uint64_t)lo : 0;
        uint64_t z = has_hi ? (uint64_t)hi : (a > CAP_SMALL ? CAP_BIG : CAP_SMALL);
        if (a <= z) {
            urange(b, a, z);
            alts++;
        }
    }
    if (!has_lo || lo < 0) {
        uint64_t a = !has_hi || hi >= 0 ? 1 : (uint64_t)(-hi);
        uint64_t z = has_lo ? (uint64_t)(-lo) : (a > CAP_SMALL ? CAP_BIG : CAP_SMALL);
        if (a <= z) {
            dsg_sbuf_puts(b, alts ? " | \"-\" " : "\"-\" ");
            urange(b, a, z);
            alts++;
        }
    }
    dsg_sbuf_puts(b, " )");
}

#define ANY_FRAC  "( \".\" [0-9]{1,15} )?"
#define ZERO_FRAC "( \".\" \"0\"{1,15} )?"
#define NZ_FRAC   "\".\" [0-9]{0,14} [1-9]"

/* y >= 0 between a (exclusive when a_ex) and b (b_inf: none; exclusive when b_ex); the count of
 * alternatives written (0: no such number). */
static int ypart(dsg_sbuf_t *b, uint64_t a, int a_ex, int b_inf, uint64_t z, int z_ex, int alts)
{
    uint64_t lo_i = a + (a_ex ? 1 : 0);
    if (b_inf || z >= 1) {
        uint64_t hi_i = b_inf ? (lo_i > CAP_SMALL ? CAP_BIG : CAP_SMALL) : z - 1;
        if (lo_i <= hi_i) {
            dsg_sbuf_puts(b, alts++ ? " | " : "");
            urange(b, lo_i, hi_i);
            dsg_sbuf_puts(b, " " ANY_FRAC);
        }
    }
    char s[24];
    if (!b_inf && !z_ex && (z > a || (z == a && !a_ex))) {
        snprintf(s, sizeof(s), "%llu", (unsigned long long)z);
        dsg_sbuf_puts(b, alts++ ? " | " : "");
        dsg_sbuf_literal(b, s, strlen(s));
        dsg_sbuf_puts(b, " " ZERO_FRAC);
    }
    if (a_ex && (b_inf || a < z)) {
        snprintf(s, sizeof(s), "%llu", (unsigned long long)a);
        dsg_sbuf_puts(b, alts++ ? " | " : "");
        dsg_sbuf_literal(b, s, strlen(s));
        dsg_sbuf_puts(b, " " NZ_FRAC);
    }
    return alts;
}

int dsg_schema_number_range(dsg_sbuf_t *b, int has_lo, int64_t lo, int lo_ex, int has_hi,
                            int64_t hi, int hi_ex)
{
    int alts = 0;
    dsg_sbuf_puts(b, "( ");
    if (!has_hi || hi > 0 || (hi == 0 && !hi_ex)) {
        uint64_t a = has_lo && lo >= 0 ? (uint64_t)lo : 0;
        int a_ex = has_lo && lo >= 0 ? lo_ex : 0;
        alts = ypart(b, a, a_ex, !has_hi, has_hi ? (uint64_t)hi : 0, hi_ex, alts);
    }
    if (!has_lo || lo < 0) {
        uint64_t a = !has_hi || hi >= 0 ? 0 : (uint64_t)(-hi);
        int a_ex = !has_hi || hi >= 0 ? 1 : hi_ex;
        dsg_sbuf_t part = {0};
        int n = ypart(&part, a, a_ex, !has_lo, has_lo ? (uint64_t)(-lo) : 0, lo_ex, 0);
        if (n > 0) {
            dsg_sbuf_puts(b, alts ? " | \"-\" ( " : "\"-\" ( ");
            dsg_sbuf_add(b, part.s, part.n);
            dsg_sbuf_puts(b, " )");
            alts++;
        }
        if (part.oom)
            b->oom = 1;
        free(part.s);
    }
    dsg_sbuf_puts(b, " )");
    return alts;
}
