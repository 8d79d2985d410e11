/*
 * dsn_worker.c - the compute thread of the node daemon and the two queues that connect it to the
 * loop thread. The queues are short critical sections (pointer swaps); the compute thread sleeps
 * on a condition variable when it has nothing to do.
 */
#include <stdlib.h>

#include "dsi_log.h"
#include "dsn_node_impl.h"

/* The next task; when `wait` is 0 and none is queued, NULL at once. */
static dsn_task_t *pop_task(dsn_node_t *node, int wait)
{
    pthread_mutex_lock(&node->mutex);
    while (node->task_head == NULL && wait)
        pthread_cond_wait(&node->cond, &node->mutex);
    dsn_task_t *t = node->task_head;
    if (t == NULL) {
        pthread_mutex_unlock(&node->mutex);
        return NULL;
    }
    node->task_head = t->next;
    if (node->task_head == NULL)
        node->task_tail = NULL;
    pthread_mutex_unlock(&node->mutex);
    return t;
}

static void task_free(dsn_task_t *t)
{
    dst_msg_free(&t->msg);
    dsn_plan_msg_free(&t->plan);
    free(t->payload);
    free(t);
}

static void *worker_main(void *arg)
{
    dsn_node_t *node = arg;
    /* Tasks first (other nodes may be waiting on our experts), then a new micro-batch of the
     * ready sequences; sleep only when there is neither. */
    int progress = 0;
    for (;;) {
        dsn_task_t *t = pop_task(node, !progress);
        if (t != NULL) {
            if (t->type == DSN_TASK_STOP) {
                task_free(t);
                break;
            }
            /* RELOADs go ahead of the queue (dsn_worker_push_first), so two restarts in quick
             * succession arrive newest first: only a newer generation moves compute_gen, and the
             * older RELOAD after it is stale like everything else of its generation. */
            if (t->type == DSN_TASK_RELOAD && t->gen > node->compute_gen)
                node->compute_gen = t->gen;
            if (t->gen >= node->compute_gen) /* else queued before a restart: stale */
                dsn_stage_handle(node, t);
            task_free(t);
        }
        progress = dsn_stage_schedule(node);
    }
    dsn_stage_cleanup(node);
    return NULL;
}

dsi_status_t dsn_worker_start(dsn_node_t *node)
{
    if (pthread_create(&node->thread, NULL, worker_main, node) != 0) {
        DSI_ERROR("cannot start the compute thread: %m");
        return DSI_ERR_INTERNAL;
    }
    node->thread_started = 1;
    return DSI_OK;
}

void dsn_worker_push_first(dsn_node_t *node, dsn_task_t *task)
{
    task->gen = node->task_gen;
    pthread_mutex_lock(&node->mutex);
    task->next = node->task_head;
    node->task_head = task;
    if (node->task_tail == NULL)
        node->task_tail = task;
    pthread_cond_signal(&node->cond);
    pthread_mutex_unlock(&node->mutex);
}

void dsn_worker_stop(dsn_node_t *node)
{
    if (!node->thread_started)
        return;
    dsn_task_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        abort(); /* cannot stop the thread without memory for the message */
    t->type = DSN_TASK_STOP;
    dsn_worker_push_first(node, t); /* what is queued is of no use any more */
    pthread_join(node->thread, NULL);
    node->thread_started = 0;
    /* Drop what was queued after the stop. */
    while (node->task_head != NULL) {
        dsn_task_t *n = node->task_head->next;
        task_free(node->task_head);
        node->task_head = n;
    }
    node->task_tail = NULL;
}

void dsn_worker_push(dsn_node_t *node, dsn_task_t *task)
{
    task->next = NULL;
    task->gen = node->task_gen;
    pthread_mutex_lock(&node->mutex);
    if (node->task_tail != NULL)
        node->task_tail->next = task;
    else
        node->task_head = task;
    node->task_tail = task;
    pthread_cond_signal(&node->cond);
    pthread_mutex_unlock(&node->mutex);
}

void dsn_worker_emit(dsn_node_t *node, dsn_out_t *out)
{
    out->next = NULL;
    pthread_mutex_lock(&node->mutex);
    if (node->out_tail != NULL)
        node->out_tail->next = out;
    else
        node->out_head = out;
    node->out_tail = out;
    pthread_mutex_unlock(&node->mutex);
    uv_async_send(&node->wake);
}

dsn_out_t *dsn_worker_take_outbox(dsn_node_t *node)
{
    pthread_mutex_lock(&node->mutex);
    dsn_out_t *list = node->out_head;
    node->out_head = node->out_tail = NULL;
    pthread_mutex_unlock(&node->mutex);
    return list;
}
