/*
 * dsn_queue.c - the queues between a node's loop thread and its compute thread, and the pools of
 * their records and payload buffers (dsn_queue_impl.h).
 *
 * Records and buffers go back to the pools instead of the heap, so a steady stream of steps
 * allocates nothing: a decode step's TOKENS record, its DISPATCH / COMBINE / ACTIVATION payloads
 * and the tasks that carry the replies are the same few records and buffers over and over. The
 * out records are preallocated generously because the compute thread of a node that samples and
 * feeds itself runs ahead of the loop thread by as many steps as the loop is late; a pool that
 * runs dry allocates (counted in `misses`) rather than waits.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsi_log.h"
#include "dsn_queue_impl.h"

#define PREALLOC_TASKS 256
#define PREALLOC_OUTS  1024
#define BUF_MIN_SHIFT  12 /* class 0: 4 KiB */
#define BUF_PREALLOC   8  /* buffers made at once when a class is first used or runs dry */
#define BUF_HEADER     64 /* keeps the payload 64-byte aligned */

/* In front of every pool buffer. */
typedef struct {
    dsi_list_t link; /* in its class's free list */
    dsn_queue_t *q;
    int cls;
} buf_header_t;

_Static_assert(sizeof(buf_header_t) <= BUF_HEADER, "buffer header fits its slot");

static int buf_class(size_t bytes)
{
    int c = 0;
    while (c < DSN_BUF_CLASSES && ((size_t)1 << (BUF_MIN_SHIFT + c)) < bytes)
        c++;
    return c;
}

dsi_status_t dsn_queue_init(dsn_queue_t *q, uv_async_t *wake)
{
    memset(q, 0, sizeof(*q));
    pthread_mutex_init(&q->mutex, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->wake = wake;
    dsi_list_init(&q->tasks);
    dsi_list_init(&q->outbox);
    dsi_list_init(&q->free_tasks);
    dsi_list_init(&q->free_outs);
    for (int c = 0; c < DSN_BUF_CLASSES; c++)
        dsi_list_init(&q->free_bufs[c]);
    for (int i = 0; i < PREALLOC_TASKS; i++) {
        dsn_task_t *t = calloc(1, sizeof(*t));
        if (t == NULL)
            return DSI_ERR_NOMEM;
        dsi_list_push_back(&q->free_tasks, &t->link);
    }
    for (int i = 0; i < PREALLOC_OUTS; i++) {
        dsn_out_t *o = calloc(1, sizeof(*o));
        if (o == NULL)
            return DSI_ERR_NOMEM;
        dsi_list_push_back(&q->free_outs, &o->link);
    }
    return DSI_OK;
}

static void task_release(dsn_task_t *t)
{
    dst_msg_free(&t->msg);
    if (t->plan != NULL) {
        dst_msg_free(t->plan);
        free(t->plan);
    }
    dsn_queue_buf_put(t->payload);
}

static void free_list(dsi_list_t *head, size_t link_offset)
{
    dsi_list_t *e;
    while ((e = dsi_list_pop_front(head)) != NULL)
        free((char *)e - link_offset);
}

void dsn_queue_cleanup(dsn_queue_t *q)
{
    dsi_list_t *e;
    while ((e = dsi_list_pop_front(&q->tasks)) != NULL) {
        dsn_task_t *t = dsi_container_of(e, dsn_task_t, link);
        task_release(t);
        free(t);
    }
    while ((e = dsi_list_pop_front(&q->outbox)) != NULL) {
        dsn_out_t *o = dsi_container_of(e, dsn_out_t, link);
        dsn_queue_buf_put(o->payload);
        free(o->counts);
        free(o);
    }
    free_list(&q->free_tasks, offsetof(dsn_task_t, link));
    free_list(&q->free_outs, offsetof(dsn_out_t, link));
    for (int c = 0; c < DSN_BUF_CLASSES; c++)
        free_list(&q->free_bufs[c], offsetof(buf_header_t, link));
    if (q->misses > 0)
        DSI_DEBUG("queue pools ran dry %llu times", (unsigned long long)q->misses);
    pthread_mutex_destroy(&q->mutex);
    pthread_cond_destroy(&q->cond);
}

/* A record from a free list (zeroed), or a new one when it is empty. */
static void *record_get(dsn_queue_t *q, dsi_list_t *free_list_, size_t size, size_t link_offset)
{
    pthread_mutex_lock(&q->mutex);
    dsi_list_t *e = dsi_list_pop_front(free_list_);
    if (e == NULL)
        q->misses++;
    pthread_mutex_unlock(&q->mutex);
    void *r = e != NULL ? (char *)e - link_offset : malloc(size);
    if (r != NULL) {
        memset(r, 0, size);
        dsi_list_init((dsi_list_t *)((char *)r + link_offset));
    }
    return r;
}

dsn_task_t *dsn_queue_task_get(dsn_queue_t *q)
{
    return record_get(q, &q->free_tasks, sizeof(dsn_task_t), offsetof(dsn_task_t, link));
}

dsn_out_t *dsn_queue_out_get(dsn_queue_t *q)
{
    return record_get(q, &q->free_outs, sizeof(dsn_out_t), offsetof(dsn_out_t, link));
}

void dsn_queue_task_put(dsn_queue_t *q, dsn_task_t *t)
{
    if (t == NULL)
        return;
    task_release(t);
    pthread_mutex_lock(&q->mutex);
    dsi_list_push_back(&q->free_tasks, &t->link);
    pthread_mutex_unlock(&q->mutex);
}

void dsn_queue_out_put(dsn_queue_t *q, dsn_out_t *o)
{
    if (o == NULL)
        return;
    dsn_queue_buf_put(o->payload);
    free(o->counts);
    pthread_mutex_lock(&q->mutex);
    dsi_list_push_back(&q->free_outs, &o->link);
    pthread_mutex_unlock(&q->mutex);
}

/* A new buffer of class c (header included); NULL when out of memory. */
static buf_header_t *buf_new(dsn_queue_t *q, int c)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, BUF_HEADER + ((size_t)1 << (BUF_MIN_SHIFT + c))) != 0)
        return NULL;
    buf_header_t *h = p;
    dsi_list_init(&h->link);
    h->q = q;
    h->cls = c;
    return h;
}

void *dsn_queue_buf_get(dsn_queue_t *q, size_t bytes)
{
    int c = buf_class(bytes);
    if (c >= DSN_BUF_CLASSES) {
        DSI_ERROR("a payload of %zu bytes is larger than the largest buffer class", bytes);
        return NULL;
    }
    pthread_mutex_lock(&q->mutex);
    dsi_list_t *e = dsi_list_pop_front(&q->free_bufs[c]);
    if (e == NULL)
        q->misses++;
    pthread_mutex_unlock(&q->mutex);
    if (e != NULL)
        return (char *)dsi_container_of(e, buf_header_t, link) + BUF_HEADER;
    /* A class in use for the first time (or run dry) gets a few spares at once: the messages of
     * one step come in small numbers of each size. */
    buf_header_t *h = buf_new(q, c);
    if (h == NULL)
        return NULL;
    for (int i = 1; i < BUF_PREALLOC; i++) {
        buf_header_t *spare = buf_new(q, c);
        if (spare == NULL)
            break;
        pthread_mutex_lock(&q->mutex);
        dsi_list_push_back(&q->free_bufs[c], &spare->link);
        pthread_mutex_unlock(&q->mutex);
    }
    return (char *)h + BUF_HEADER;
}

void dsn_queue_buf_put(void *buf)
{
    if (buf == NULL)
        return;
    buf_header_t *h = (buf_header_t *)((char *)buf - BUF_HEADER);
    dsn_queue_t *q = h->q;
    pthread_mutex_lock(&q->mutex);
    dsi_list_push_back(&q->free_bufs[h->cls], &h->link);
    pthread_mutex_unlock(&q->mutex);
}

void dsn_queue_push(dsn_queue_t *q, dsn_task_t *t)
{
    pthread_mutex_lock(&q->mutex);
    dsi_list_push_back(&q->tasks, &t->link);
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->mutex);
}

void dsn_queue_push_first(dsn_queue_t *q, dsn_task_t *t)
{
    pthread_mutex_lock(&q->mutex);
    dsi_list_push_front(&q->tasks, &t->link);
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->mutex);
}

dsn_task_t *dsn_queue_pop(dsn_queue_t *q, int wait)
{
    pthread_mutex_lock(&q->mutex);
    while (wait && dsi_list_is_empty(&q->tasks))
        pthread_cond_wait(&q->cond, &q->mutex);
    dsi_list_t *e = dsi_list_pop_front(&q->tasks);
    pthread_mutex_unlock(&q->mutex);
    return e != NULL ? dsi_container_of(e, dsn_task_t, link) : NULL;
}

dsn_task_t *dsn_queue_pop_within(dsn_queue_t *q, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* the condition variable's clock */
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&q->mutex);
    int rc = 0;
    while (rc == 0 && dsi_list_is_empty(&q->tasks))
        rc = pthread_cond_timedwait(&q->cond, &q->mutex, &until);
    dsi_list_t *e = dsi_list_pop_front(&q->tasks);
    pthread_mutex_unlock(&q->mutex);
    return e != NULL ? dsi_container_of(e, dsn_task_t, link) : NULL;
}

void dsn_queue_emit(dsn_queue_t *q, dsn_out_t *o)
{
    pthread_mutex_lock(&q->mutex);
    o->session = q->session;
    dsi_list_push_back(&q->outbox, &o->link);
    pthread_mutex_unlock(&q->mutex);
    uv_async_send(q->wake);
}

void dsn_queue_new_session(dsn_queue_t *q)
{
    pthread_mutex_lock(&q->mutex);
    q->session++;
    pthread_mutex_unlock(&q->mutex);
}

void dsn_queue_take_outbox(dsn_queue_t *q, dsi_list_t *into)
{
    pthread_mutex_lock(&q->mutex);
    dsi_list_splice_back(into, &q->outbox);
    pthread_mutex_unlock(&q->mutex);
}

void dsn_queue_spec_add(dsn_queue_t *q, const dst_msg_spec_t *d)
{
    pthread_mutex_lock(&q->mutex);
    dst_msg_spec_t *s = &q->spec;
    s->steps += d->steps;
    s->emitted += d->emitted;
    s->draft_ns += d->draft_ns;
    s->verify_ns += d->verify_ns;
    if (d->k > s->k)
        s->k = d->k;
    for (uint32_t i = 0; i < d->k && i < DST_MSG_SPEC_MAX_K; i++) {
        /* Saturate (with accepted <= drafted) rather than wrap: a heartbeat's counts are small. */
        if (s->drafted[i] <= UINT32_MAX - d->drafted[i]) {
            s->drafted[i] += d->drafted[i];
            s->accepted[i] += d->accepted[i];
        }
    }
    q->has_spec = 1;
    pthread_mutex_unlock(&q->mutex);
}

int dsn_queue_spec_take(dsn_queue_t *q, dst_msg_spec_t *out)
{
    pthread_mutex_lock(&q->mutex);
    int any = q->has_spec;
    if (any) {
        *out = q->spec;
        memset(&q->spec, 0, sizeof(q->spec));
        q->has_spec = 0;
    }
    pthread_mutex_unlock(&q->mutex);
    return any;
}
