/*
 * dst_ucx_pool.c - the allocation-free steady state of the data plane: a size-class pool of
 * receive buffers and free lists of send slots and receive records. Each grows on first use and
 * then recycles, so after warm-up the per-message path does not call malloc.
 */
#include <stdlib.h>

#include "dsi_log.h"
#include "dst_ucx_impl.h"

static int size_class(size_t bytes)
{
    int c = 0;
    while (((size_t)1 << (POOL_MIN_SHIFT + c)) < bytes) {
        if (++c == POOL_CLASSES)
            return -1;
    }
    return c;
}

/* Frees cached buffers of other classes until `need` more bytes fit under the cap. */
static void pool_trim(pool_t *pool, size_t need)
{
    for (int c = POOL_CLASSES - 1; c >= 0; c--) {
        while (pool->free[c] != NULL && pool->total_bytes + need > pool->cap_bytes) {
            pool_buf_t *b = pool->free[c];
            pool->free[c] = b->next;
            size_t size = (size_t)1 << (POOL_MIN_SHIFT + c);
            pool->cached_bytes -= size;
            pool->total_bytes -= size;
            free(b);
        }
    }
}

void *pool_get(pool_t *pool, size_t bytes, size_t *size_out)
{
    int c = size_class(bytes);
    if (c < 0)
        return NULL;
    size_t size = (size_t)1 << (POOL_MIN_SHIFT + c);
    pool_buf_t *b = pool->free[c];
    if (b != NULL) {
        pool->free[c] = b->next;
        pool->cached_bytes -= size;
        *size_out = size;
        return b;
    }
    if (pool->total_bytes + size > pool->cap_bytes)
        pool_trim(pool, size);
    if (pool->total_bytes + size > pool->cap_bytes)
        return NULL;
    /* 64-byte alignment lets kernels use aligned vector loads on received tensors. */
    b = aligned_alloc(64, size);
    if (b == NULL)
        return NULL;
    pool->total_bytes += size;
    *size_out = size;
    return b;
}

void pool_put(pool_t *pool, void *buf, size_t size)
{
    int c = size_class(size);
    pool_buf_t *b = buf;
    b->next = pool->free[c];
    pool->free[c] = b;
    pool->cached_bytes += size;
}

void pool_cleanup(pool_t *pool)
{
    for (int c = 0; c < POOL_CLASSES; c++) {
        while (pool->free[c] != NULL) {
            pool_buf_t *b = pool->free[c];
            pool->free[c] = b->next;
            free(b);
        }
    }
    pool->cached_bytes = 0;
    pool->total_bytes = 0;
}

/* The free lists are stacks (push and pop at the front): the record reused is the warmest. */
send_slot_t *slot_get(dst_ucx_t *ucx)
{
    dsi_list_t *l = dsi_list_pop_front(&ucx->free_slots);
    if (l != NULL)
        return dsi_container_of(l, send_slot_t, link);
    return malloc(sizeof(send_slot_t));
}

void slot_put(dst_ucx_t *ucx, send_slot_t *slot)
{
    dsi_list_push_front(&ucx->free_slots, &slot->link);
}

rx_msg_t *msg_get(dst_ucx_t *ucx)
{
    dsi_list_t *l = dsi_list_pop_front(&ucx->free_msgs);
    if (l != NULL)
        return dsi_container_of(l, rx_msg_t, link);
    return malloc(sizeof(rx_msg_t));
}

void msg_put(dst_ucx_t *ucx, rx_msg_t *msg)
{
    dsi_list_push_front(&ucx->free_msgs, &msg->link);
}
