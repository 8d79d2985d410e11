#include "dsn_kvpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

struct dsn_kvpool {
    pthread_mutex_t mu;
    int refs; /* the creator's and one per cache */
    int n_layers, row;
    dsn_kv_dtype_t dtype;
    int64_t max_blocks; /* 0: no limit */
    int64_t used, allocated, shared;
    dsn_kvblock_t *free_list;
    dsn_kvblock_t **all; /* every allocated block, for the final free */
    int64_t all_cap;
};

const char *dsn_kv_dtype_name(dsn_kv_dtype_t dt)
{
    static const char *const names[DSN_KV_DTYPE_COUNT] = {"f32", "bf16", "fp8"};
    return dt >= 0 && dt < DSN_KV_DTYPE_COUNT ? names[dt] : "?";
}

dsi_status_t dsn_kv_dtype_parse(const char *s, dsn_kv_dtype_t *out)
{
    for (int d = 0; d < DSN_KV_DTYPE_COUNT; d++) {
        if (s != NULL && strcmp(s, dsn_kv_dtype_name((dsn_kv_dtype_t)d)) == 0) {
            *out = (dsn_kv_dtype_t)d;
            return DSI_OK;
        }
    }
    DSI_ERROR("KV cache type '%s' is not one of f32, bf16, fp8", s != NULL ? s : "(none)");
    return DSI_ERR_INVALID_ARG;
}

int dsn_kv_dtype_size(dsn_kv_dtype_t dt)
{
    return dt == DSN_KV_F32 ? 4 : dt == DSN_KV_BF16 ? 2 : 1;
}

uint64_t dsn_kvpool_block_bytes(int n_layers, int row, dsn_kv_dtype_t dtype)
{
    uint64_t rows = (uint64_t)n_layers * DSN_KV_BLOCK;
    uint64_t b = rows * (uint64_t)row * (uint64_t)dsn_kv_dtype_size(dtype);
    if (dtype == DSN_KV_FP8)
        b += rows * sizeof(float);
    return b;
}

dsi_status_t dsn_kvpool_create(int n_layers, int row, dsn_kv_dtype_t dtype, int64_t max_blocks,
                               dsn_kvpool_t **out)
{
    if (n_layers < 0 || row < 1 || dtype < 0 || dtype >= DSN_KV_DTYPE_COUNT || max_blocks < 0) {
        DSI_ERROR("KV pool: invalid layout (%d layers, row %d, type %d, %lld blocks)", n_layers,
                  row, (int)dtype, (long long)max_blocks);
        return DSI_ERR_INVALID_ARG;
    }
    dsn_kvpool_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return DSI_ERR_NOMEM;
    pthread_mutex_init(&p->mu, NULL);
    p->refs = 1;
    p->n_layers = n_layers;
    p->row = row;
    p->dtype = dtype;
    p->max_blocks = max_blocks;
    *out = p;
    return DSI_OK;
}

void dsn_kvpool_retain(dsn_kvpool_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->refs++;
    pthread_mutex_unlock(&p->mu);
}

void dsn_kvpool_release(dsn_kvpool_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (!last)
        return;
    for (int64_t i = 0; i < p->allocated; i++) {
        free(p->all[i]->data);
        free(p->all[i]->scales);
        free(p->all[i]);
    }
    free(p->all);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void dsn_kvpool_set_max_blocks(dsn_kvpool_t *p, int64_t max_blocks)
{
    pthread_mutex_lock(&p->mu);
    p->max_blocks = max_blocks > 0 ? max_blocks : 0;
    pthread_mutex_unlock(&p->mu);
}

void dsn_kvpool_stats(dsn_kvpool_t *p, dsn_kvpool_stats_t *out)
{
    pthread_mutex_lock(&p->mu);
    out->total = p->max_blocks > 0 ? p->max_blocks : p->allocated;
    if (out->total < p->used)
        out->total = p->used; /* a limit lowered below what is in use */
    out->used = p->used;
    out->free = out->total - out->used;
    out->allocated = p->allocated;
    out->shared = p->shared;
    out->block_bytes = dsn_kvpool_block_bytes(p->n_layers, p->row, p->dtype);
    pthread_mutex_unlock(&p->mu);
}

int dsn_kvpool_layers(const dsn_kvpool_t *p)
{
    return p->n_layers;
}

int dsn_kvpool_row(const dsn_kvpool_t *p)
{
    return p->row;
}

dsn_kv_dtype_t dsn_kvpool_dtype(const dsn_kvpool_t *p)
{
    return p->dtype;
}

int dsn_kvpool_can_alloc(dsn_kvpool_t *p, int64_t n)
{
    pthread_mutex_lock(&p->mu);
    int ok = p->max_blocks == 0 || p->used + n <= p->max_blocks;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

/* A new block with memory (mutex held). */
static dsn_kvblock_t *block_new(dsn_kvpool_t *p)
{
    if (p->allocated == p->all_cap) {
        int64_t cap = p->all_cap > 0 ? 2 * p->all_cap : 64;
        dsn_kvblock_t **a = realloc(p->all, (size_t)cap * sizeof(*a));
        if (a == NULL)
            return NULL;
        p->all = a;
        p->all_cap = cap;
    }
    dsn_kvblock_t *b = calloc(1, sizeof(*b));
    size_t rows = (size_t)p->n_layers * DSN_KV_BLOCK;
    size_t bytes = rows * (size_t)p->row * (size_t)dsn_kv_dtype_size(p->dtype);
    if (b != NULL)
        b->data = malloc(bytes > 0 ? bytes : 1);
    if (b != NULL && p->dtype == DSN_KV_FP8)
        b->scales = malloc(rows > 0 ? rows * sizeof(float) : 1);
    if (b == NULL || b->data == NULL || (p->dtype == DSN_KV_FP8 && b->scales == NULL)) {
        if (b != NULL) {
            free(b->data);
            free(b->scales);
        }
        free(b);
        return NULL;
    }
    p->all[p->allocated++] = b;
    return b;
}

dsn_kvblock_t *dsn_kvpool_alloc(dsn_kvpool_t *p, dsi_status_t *st)
{
    pthread_mutex_lock(&p->mu);
    dsn_kvblock_t *b = NULL;
    if (p->max_blocks > 0 && p->used >= p->max_blocks) {
        *st = DSI_ERR_CAPACITY;
    } else if (p->free_list != NULL) {
        b = p->free_list;
        p->free_list = b->next;
    } else {
        b = block_new(p);
        *st = b != NULL ? DSI_OK : DSI_ERR_NOMEM;
    }
    if (b != NULL) {
        b->next = NULL;
        b->refs = 1;
        p->used++;
        *st = DSI_OK;
    }
    pthread_mutex_unlock(&p->mu);
    return b;
}

void dsn_kvpool_share(dsn_kvpool_t *p, dsn_kvblock_t *b)
{
    pthread_mutex_lock(&p->mu);
    if (b->refs++ == 1)
        p->shared++;
    pthread_mutex_unlock(&p->mu);
}

void dsn_kvpool_put(dsn_kvpool_t *p, dsn_kvblock_t *b)
{
    pthread_mutex_lock(&p->mu);
    if (b->refs <= 0) {
        pthread_mutex_unlock(&p->mu);
        DSI_ERROR("KV pool: a block released more often than taken");
        abort();
    }
    if (--b->refs == 1)
        p->shared--;
    if (b->refs == 0) {
        b->next = p->free_list;
        p->free_list = b;
        p->used--;
    }
    pthread_mutex_unlock(&p->mu);
}
