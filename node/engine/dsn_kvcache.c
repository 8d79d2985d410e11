#include "dsn_kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

dsi_status_t dsn_kvcache_create(int n_layers, int row, int64_t max_tokens, dsn_kvcache_t **out)
{
    dsn_kvcache_t *kv = calloc(1, sizeof(*kv));
    if (kv == NULL)
        return DSI_ERR_NOMEM;
    kv->layers = calloc((size_t)n_layers, sizeof(float *));
    if (kv->layers == NULL) {
        free(kv);
        return DSI_ERR_NOMEM;
    }
    kv->n_layers = n_layers;
    kv->row = row;
    kv->max_tokens = max_tokens;
    *out = kv;
    return DSI_OK;
}

void dsn_kvcache_destroy(dsn_kvcache_t *kv)
{
    if (kv == NULL)
        return;
    for (int l = 0; l < kv->n_layers; l++)
        free(kv->layers[l]);
    free(kv->layers);
    free(kv);
}

dsi_status_t dsn_kvcache_reserve(dsn_kvcache_t *kv, int64_t n_total)
{
    if (n_total <= kv->capacity)
        return DSI_OK;
    if (n_total > kv->max_tokens) {
        DSI_ERROR("sequence of %lld tokens exceeds the context limit of %lld (the model's "
                  "max_position_embeddings or the configured maximum context)",
                  (long long)n_total, (long long)kv->max_tokens);
        return DSI_ERR_CAPACITY;
    }
    int64_t cap = kv->capacity > 0 ? kv->capacity : 64;
    while (cap < n_total)
        cap *= 2;
    if (cap > kv->max_tokens)
        cap = kv->max_tokens;
    for (int l = 0; l < kv->n_layers; l++) {
        float *p = realloc(kv->layers[l], (size_t)cap * (size_t)kv->row * sizeof(float));
        if (p == NULL) {
            DSI_ERROR("out of memory growing the KV cache to %lld tokens", (long long)cap);
            return DSI_ERR_NOMEM;
        }
        kv->layers[l] = p;
    }
    kv->capacity = cap;
    return DSI_OK;
}

dsi_status_t dsn_kvcache_copy_prefix(dsn_kvcache_t *dst, const dsn_kvcache_t *src, int64_t n_tokens)
{
    if (dst == src || dst->n_layers != src->n_layers || dst->row != src->row || n_tokens < 0 ||
        n_tokens > src->length) {
        DSI_ERROR("KV cache prefix copy of %lld tokens from a cache of %lld (%d layers of %d) to "
                  "one of %d layers of %d: does not fit",
                  (long long)n_tokens, (long long)src->length, src->n_layers, src->row,
                  dst->n_layers, dst->row);
        return DSI_ERR_INVALID_ARG;
    }
    dsi_status_t st = dsn_kvcache_reserve(dst, n_tokens);
    if (st != DSI_OK)
        return st;
    for (int l = 0; l < dst->n_layers && n_tokens > 0; l++)
        memcpy(dst->layers[l], src->layers[l], (size_t)n_tokens * (size_t)dst->row * sizeof(float));
    dst->length = n_tokens;
    return DSI_OK;
}

uint64_t dsn_kvcache_bytes(const dsn_kvcache_t *kv)
{
    return (uint64_t)kv->capacity * (uint64_t)kv->row * sizeof(float) * (uint64_t)kv->n_layers;
}

void dsn_kvcache_truncate(dsn_kvcache_t *kv, int64_t n_tokens)
{
    if (n_tokens >= 0 && n_tokens < kv->length)
        kv->length = n_tokens;
}
