/*
 * dsn_kvstash.c - the KV rows of a slice that a re-plan replaces (docs/ELASTICITY.md, "KV moves
 * with its sequence").
 *
 * A re-plan that moves stage boundaries restarts every node of the new plan on its new slice.
 * When its PLAN says so (live = 2), the node first copies the rows of its open sequences here;
 * once every node is READY, the coordinator's KV_MOVEs name the old sequence ids and the layers
 * each new holder needs, and dsn_kvmove_send takes the rows from here. CANCEL of the old id (sent
 * right after the moves) drops them; rows nobody asked for go after a minute, or with the next
 * restart that does not keep them.
 */
#include <string.h>

#include "dsi_clock.h"
#include "dsi_log.h"
#include "dsn_compute_impl.h"

#define STASH_TTL_NS (60ULL * 1000000000ULL)

static void drop_at(dsn_compute_t *c, size_t i)
{
    dsn_kvio_stash_free(&c->stash[i].rows);
    c->stash[i] = c->stash[--c->n_stash];
}

/* Rows kept longer than STASH_TTL_NS: the coordinator moved on without them. */
static void expire(dsn_compute_t *c)
{
    uint64_t now = dsi_now_ns();
    for (size_t i = 0; i < c->n_stash;) {
        if (now - c->stash[i].since_ns > STASH_TTL_NS) {
            DSI_WARN("KV rows of sequence %llu kept since a re-plan and never asked for: dropped",
                     (unsigned long long)c->stash[i].seq_id);
            drop_at(c, i);
        } else {
            i++;
        }
    }
}

void dsn_kvstash_keep(dsn_compute_t *c)
{
    expire(c);
    uint64_t bytes = 0;
    size_t kept = 0;
    for (int b = 0; b < DSN_SEQ_BUCKETS; b++) {
        for (dsn_seq_t *s = c->seq_buckets[b]; s != NULL; s = s->next_in_bucket) {
            if (s->kv == NULL || s->kv->length <= 0 || s->kv_rx != NULL ||
                dsn_kvstash_find(c, s->id) != NULL)
                continue;
            if (c->n_stash == c->stash_cap) {
                size_t cap = c->stash_cap ? 2 * c->stash_cap : 16;
                dsn_kvstash_entry_t *e = realloc(c->stash, cap * sizeof(*e));
                if (e == NULL) {
                    DSI_WARN("out of memory keeping KV rows across the re-plan: sequence %llu "
                             "will be prefilled again",
                             (unsigned long long)s->id);
                    continue;
                }
                c->stash = e;
                c->stash_cap = cap;
            }
            dsn_kvstash_entry_t *e = &c->stash[c->n_stash];
            e->seq_id = s->id;
            e->since_ns = dsi_now_ns();
            if (dsn_kvio_stash_take(s->kv, (uint32_t)c->first_layer, (uint32_t)s->kv->length,
                                    &e->rows) != DSI_OK) {
                DSI_WARN("cannot keep the KV rows of sequence %llu across the re-plan: it will "
                         "be prefilled again",
                         (unsigned long long)s->id);
                continue;
            }
            bytes += e->rows.bytes;
            c->n_stash++;
            kept++;
        }
    }
    if (kept > 0)
        DSI_INFO("kept the KV rows of %zu sequences (layers %d..%d, %.1f KiB) to send them after "
                 "the re-plan",
                 kept, c->first_layer, c->end_layer - 1, (double)bytes / 1024);
}

const dsn_kvio_stash_t *dsn_kvstash_find(const dsn_compute_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_stash; i++) {
        if (c->stash[i].seq_id == id)
            return &c->stash[i].rows;
    }
    return NULL;
}

void dsn_kvstash_drop(dsn_compute_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_stash; i++) {
        if (c->stash[i].seq_id == id) {
            drop_at(c, i);
            break;
        }
    }
    expire(c);
}

void dsn_kvstash_clear(dsn_compute_t *c)
{
    while (c->n_stash > 0)
        drop_at(c, c->n_stash - 1);
    free(c->stash);
    c->stash = NULL;
    c->stash_cap = 0;
}
