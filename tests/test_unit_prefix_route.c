/*
 * test_unit_prefix_route.c - cache-aware lane choice (coordinator/cluster/dsc_prefix_route.h):
 * - no record: the least loaded lane, ties broken by the rotation start;
 * - a prompt goes to the lane that was sent the longest prefix of it in whole blocks, even when
 *   another lane is less loaded; equal matches go to the less loaded one;
 * - only whole blocks before the prompt's last token count; a different block ends the match;
 * - the record is bounded: it never holds more than its capacity, and the least recently sent
 *   prefix is forgotten first; reset forgets everything; one lane always gives lane 0;
 * - against a plain reference (every prompt sent, per lane, kept in full) on random prompts.
 */
#include <stdlib.h>
#include <string.h>

#include "dsc_prefix_route.h"
#include "dsi_test.h"

#define BL DSC_PREFIX_BLOCK

static void prompt(int32_t *t, uint32_t n, int family, int tail)
{
    for (uint32_t i = 0; i < n; i++)
        t[i] = (int32_t)(family * 1000 + (int)i);
    if (tail >= 0 && n > 0)
        for (uint32_t i = (uint32_t)tail; i < n; i++)
            t[i] = (int32_t)(90000 + (int)i + tail);
}

static void check_basic(void)
{
    dsc_prefix_route_t *r = dsc_prefix_route_create(1000);
    DSI_CHECK(r != NULL);
    static int32_t a[5 * BL], b[5 * BL];
    uint64_t load[3] = {5, 2, 2};
    uint32_t m = 99;
    prompt(a, 5 * BL, 1, -1);
    /* nothing recorded: least loaded from start on */
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, a, 5 * BL, 3, load, 0, &m), 1);
    DSI_CHECK_INT_EQ(m, 0);
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, a, 5 * BL, 3, load, 2, &m), 2);
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, a, 5 * BL, 3, NULL, 2, &m), 2);
    /* lane 0 was sent 3 blocks of a's prefix (and a tail): it wins although busiest */
    prompt(b, 3 * BL + 10, 1, 3 * BL);
    dsc_prefix_route_note(r, 0, b, 3 * BL + 10);
    DSI_CHECK_INT_EQ(dsc_prefix_route_entries(r), 3);
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, a, 5 * BL, 3, load, 1, &m), 0);
    DSI_CHECK_INT_EQ(m, 3 * BL);
    /* lane 2 was sent 4 blocks: longer wins */
    prompt(b, 4 * BL, 1, -1);
    dsc_prefix_route_note(r, 2, b, 4 * BL);
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, a, 5 * BL, 3, load, 0, &m), 2);
    DSI_CHECK_INT_EQ(m, 4 * BL);
    /* the last token is always computed: a prompt of exactly 4 blocks can use 3 */
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, a, 4 * BL, 3, load, 0, &m), 2); /* 0 is busier */
    DSI_CHECK_INT_EQ(m, 3 * BL);
    /* a different first block matches nothing */
    prompt(b, 5 * BL, 2, -1);
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, b, 5 * BL, 3, load, 0, &m), 1);
    DSI_CHECK_INT_EQ(m, 0);
    /* one lane */
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, a, 5 * BL, 1, NULL, 7, &m), 0);
    DSI_CHECK_INT_EQ(m, 3 * BL); /* lane 0 was sent 3 blocks of a's prefix */
    dsc_prefix_route_reset(r);
    DSI_CHECK_INT_EQ(dsc_prefix_route_entries(r), 0);
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, a, 5 * BL, 3, load, 0, &m), 1);
    DSI_CHECK_INT_EQ(m, 0);
    dsc_prefix_route_destroy(r);
}

static void check_lru(void)
{
    dsc_prefix_route_t *r = dsc_prefix_route_create(8);
    static int32_t p[4][4 * BL + 1];
    for (int f = 0; f < 4; f++)
        prompt(p[f], 4 * BL + 1, f + 1, -1);
    dsc_prefix_route_note(r, 1, p[0], 4 * BL + 1); /* 4 entries */
    dsc_prefix_route_note(r, 1, p[1], 4 * BL + 1); /* 8 */
    uint32_t m;
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, p[0], 4 * BL + 1, 2, NULL, 0, &m), 1);
    DSI_CHECK_INT_EQ(m, 4 * BL);
    dsc_prefix_route_note(r, 1, p[0], 4 * BL + 1); /* p[0] most recent again */
    dsc_prefix_route_note(r, 1, p[2], 2 * BL);     /* 2 more: p[1]'s first two go */
    DSI_CHECK_INT_EQ(dsc_prefix_route_entries(r), 8);
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, p[0], 4 * BL + 1, 2, NULL, 0, &m), 1);
    DSI_CHECK_INT_EQ(m, 4 * BL);
    DSI_CHECK_INT_EQ(dsc_prefix_route_pick(r, p[1], 4 * BL + 1, 2, NULL, 0, &m), 0);
    DSI_CHECK_INT_EQ(m, 0); /* its chain starts with a forgotten block */
    dsc_prefix_route_destroy(r);
}

/* The reference: every (lane, prompt) sent, in full; the match is the longest common whole-block
 * prefix with any prompt sent to the lane. */
#define R_MAX 300
typedef struct {
    uint32_t lane, n;
    int32_t t[6 * BL];
} sent_t;

static uint32_t ref_match(const sent_t *s, int n_sent, uint32_t lane, const int32_t *t, uint32_t n)
{
    uint32_t usable = n > 0 ? (n - 1) / BL : 0, best = 0;
    for (int i = 0; i < n_sent; i++) {
        if (s[i].lane != lane)
            continue;
        uint32_t b = 0;
        while (b < usable && b < s[i].n / BL &&
               memcmp(s[i].t + b * BL, t + b * BL, BL * sizeof(int32_t)) == 0)
            b++;
        best = b > best ? b : best;
    }
    return best;
}

static void check_random(void)
{
    dsc_prefix_route_t *r = dsc_prefix_route_create(1 << 16); /* never full here */
    static sent_t sent[R_MAX];
    unsigned seed = 17;
    int bad = 0;
    for (int i = 0; i < R_MAX; i++) {
        int32_t t[6 * BL];
        seed = seed * 1103515245u + 12345u;
        uint32_t n = 1 + (seed >> 8) % (6 * BL);
        int fam = (int)((seed >> 4) % 4);
        int tail = (int)((seed >> 12) % (6 * BL));
        prompt(t, n, fam, tail);
        uint32_t lanes = 4;
        uint64_t load[4] = {(seed >> 3) % 3, (seed >> 5) % 3, (seed >> 7) % 3, (seed >> 9) % 3};
        uint32_t m;
        uint32_t lane = dsc_prefix_route_pick(r, t, n, lanes, load, (uint32_t)i, &m);
        uint32_t want_m = 0;
        for (uint32_t l = 0; l < lanes; l++) {
            uint32_t x = ref_match(sent, i, l, t, n);
            want_m = x > want_m ? x : want_m;
        }
        /* the longest match, and no other lane with as long a match is less loaded */
        bad += ref_match(sent, i, lane, t, n) != want_m || m != want_m * BL;
        for (uint32_t l = 0; l < lanes; l++)
            bad += ref_match(sent, i, l, t, n) == want_m && load[l] < load[lane];
        dsc_prefix_route_note(r, lane, t, n);
        sent[i].lane = lane;
        sent[i].n = n;
        memcpy(sent[i].t, t, n * sizeof(int32_t));
    }
    DSI_CHECK_INT_EQ(bad, 0);
    dsc_prefix_route_destroy(r);
}

int main(void)
{
    check_basic();
    check_lru();
    check_random();
    return dsi_test_finish();
}
