/*
 * dsc_prefix_route.h - cache-aware routing: which lane of the plan to send a prompt to.
 *
 * Every node keeps the full KV blocks of the prompts it computed (its prefix cache, see
 * docs/MEMORY.md), so a prompt sent to the lane that already holds most of its prefix skips the
 * most computation. The coordinator cannot see the nodes' caches; it keeps its own record of
 * what it sent where: for each lane, the hash chains of the whole blocks (DSN-style 64 tokens:
 * hash(parent hash, the block's ids)) of the prompts submitted to it, bounded (LRU: the entries
 * least recently sent or matched are forgotten first). A pick walks the prompt's chain on every
 * lane and takes the lane with the longest match; no match or a tie goes to the least loaded of
 * them, the rotation `start` breaking ties in load. The record is a hint: a node may have evicted
 * a block the record still lists (it then computes it), never the reverse of correctness.
 */
#ifndef DSC_PREFIX_ROUTE_H
#define DSC_PREFIX_ROUTE_H

#include <stdint.h>

#define DSC_PREFIX_BLOCK 64 /* tokens per block: the nodes' KV block (DSN_KV_BLOCK) */

typedef struct dsc_prefix_route dsc_prefix_route_t;

/* A record of at most `capacity` (lane, block) entries (>= 1). NULL when out of memory. */
dsc_prefix_route_t *dsc_prefix_route_create(uint32_t capacity);
void dsc_prefix_route_destroy(dsc_prefix_route_t *r);
/* Forget everything (a new plan: lanes renumbered, caches gone). */
void dsc_prefix_route_reset(dsc_prefix_route_t *r);
/*
 * The lane (< n_lanes, >= 1) for a prompt of n tokens: the longest recorded match of its whole
 * blocks (those before its last token: a node always computes that one), ties and no match to
 * the smallest load[] (NULL: all equal), then the first from `start` (mod n_lanes) on.
 * *matched (may be NULL) gets the matched tokens on the chosen lane.
 */
uint32_t dsc_prefix_route_pick(dsc_prefix_route_t *r, const int32_t *tokens, uint32_t n,
                               uint32_t n_lanes, const uint64_t *load, uint32_t start,
                               uint32_t *matched);
/* Record that `lane` was sent the prompt tokens[0, n): its whole blocks become (or stay) the
 * most recent entries. */
void dsc_prefix_route_note(dsc_prefix_route_t *r, uint32_t lane, const int32_t *tokens, uint32_t n);
/* Entries recorded now (<= capacity). */
uint32_t dsc_prefix_route_entries(const dsc_prefix_route_t *r);

#endif
