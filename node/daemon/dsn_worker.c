/*
 * dsn_worker.c - the compute thread of the node daemon: its state's lifetime and its loop. Tasks
 * first (other nodes may be waiting on our experts), then a new micro-batch of the ready
 * sequences; it sleeps on the queue only when there is neither.
 */
#include <pthread.h>
#include <stdlib.h>

#include "dsi_log.h"
#include "dsn_compute_impl.h"

dsn_compute_t *dsn_compute_create(const dsn_node_opts_t *opts, dsn_queue_t *queue,
                                  dsn_checkpoint_t *ckpt)
{
    dsn_compute_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->opts = opts;
    c->queue = queue;
    c->ckpt = ckpt;
    dsi_list_init(&c->parked);
    dsi_list_init(&c->free_mbs);
    dsi_list_init(&c->deferred);
    return c;
}

void dsn_compute_destroy(dsn_compute_t *c)
{
    if (c == NULL)
        return;
    dsn_stage_cleanup(c);
    dsn_kvstash_clear(c);
    dsn_mb_pool_cleanup(c);
    dsn_replan_release(c);
    dsn_grammar_cleanup(c);
    free(c->logits);
    free(c->raw_row);
    free(c->rows);
    free(c->which);
    free(c->serve_token);
    free(c->serve_expert);
    free(c->serve_weight);
    free(c);
}

void *dsn_worker_main(void *arg)
{
    dsn_compute_t *c = arg;
    /* A name for top -H, gdb and the allocation-counting test (tests/test_cluster_alloc.c). */
    pthread_setname_np(pthread_self(), "dsn-compute");
    int progress = 0;
    for (;;) {
        dsn_task_t *t = dsn_queue_pop(c->queue, !progress);
        if (t != NULL) {
            if (t->type == DSN_TASK_STOP) {
                dsn_queue_task_put(c->queue, t);
                break;
            }
            /* RELOADs go ahead of the queue (dsn_queue_push_first), so two restarts in quick
             * succession arrive newest first: only a newer generation moves c->gen, and the
             * older RELOAD after it is stale like everything else of its generation. */
            if (t->type == DSN_TASK_RELOAD && t->gen > c->gen)
                c->gen = t->gen;
            int kept = t->gen >= c->gen && dsn_stage_handle(c, t); /* else stale: a restart */
            if (!kept)
                dsn_queue_task_put(c->queue, t);
        }
        progress = dsn_stage_schedule(c);
        dsn_stage_kv_gauges(c);
    }
    dsn_stage_cleanup(c);
    return NULL;
}
