#include "dsn_kvcache_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

size_t dsn_kvio_width(int row, dsn_kv_dtype_t dtype)
{
    return (size_t)row * (size_t)dsn_kv_dtype_size(dtype) +
           (dtype == DSN_KV_FP8 ? sizeof(float) : 0);
}

size_t dsn_kvio_bytes(int n_layers, int row, dsn_kv_dtype_t dtype, uint32_t n_tokens)
{
    return (size_t)n_layers * (size_t)n_tokens * dsn_kvio_width(row, dtype);
}

uint32_t dsn_kvio_chunk_tokens(int n_layers, int row, dsn_kv_dtype_t dtype, size_t target_bytes)
{
    size_t block = dsn_kvio_bytes(n_layers, row, dtype, DSN_KV_BLOCK);
    size_t blocks = block > 0 ? target_bytes / block : 1;
    if (blocks < 1)
        blocks = 1;
    if (blocks > 1024)
        blocks = 1024;
    return (uint32_t)blocks * DSN_KV_BLOCK;
}

uint32_t dsn_kvio_open_first(uint32_t total, dsn_kv_dtype_t dtype)
{
    return dtype == DSN_KV_F32 ? total : total - total % DSN_KV_BLOCK;
}

dsn_kv_dtype_t dsn_kvio_record_dtype(dsn_kv_dtype_t dtype, uint32_t first, uint32_t total)
{
    return first >= dsn_kvio_open_first(total, dtype) ? DSN_KV_F32 : dtype;
}

uint64_t dsn_kvio_checksum(const void *data, size_t bytes)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)bytes;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    for (; i < bytes; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h ^ (h >> 32);
}

/* The stored bytes of row (layer, pos) and, for fp8, its scale. */
static uint8_t *row_ptr(const dsn_kvcache_t *kv, int layer, int64_t pos, float **scale)
{
    int64_t b = pos / DSN_KV_BLOCK, r = pos % DSN_KV_BLOCK;
    dsk_matrix_t m = dsn_kvcache_block_matrix(kv, layer, b, DSN_KV_BLOCK, NULL);
    const float *s = dsn_kvcache_block_scales(kv, layer, b);
    *scale = s != NULL ? (float *)s + r : NULL;
    return (uint8_t *)m.data + (size_t)r * (size_t)kv->row * (size_t)dsn_kv_dtype_size(kv->dtype);
}

dsi_status_t dsn_kvio_export_layers(const dsn_kvcache_t *kv, uint32_t base, uint32_t layer,
                                    uint32_t n_layers, uint32_t first, uint32_t n_tokens,
                                    uint32_t total, void *buf, size_t cap, dsn_kvio_chunk_t *meta)
{
    dsn_kv_dtype_t rdt = dsn_kvio_record_dtype(kv->dtype, first, total);
    size_t need = dsn_kvio_bytes((int)n_layers, kv->row, rdt, n_tokens);
    uint32_t open = dsn_kvio_open_first(total, kv->dtype);
    if (n_tokens == 0 || first % DSN_KV_BLOCK != 0 || (int64_t)first + n_tokens > kv->length ||
        first + n_tokens > total || cap < need || n_layers == 0 || layer < base ||
        (first < open && first + n_tokens > open) ||
        (uint64_t)layer - base + n_layers > (uint64_t)kv->n_layers) {
        DSI_ERROR("KV export of positions %u..%u (of %u) of layers %u + %u from a cache holding "
                  "%lld of %d layers from %u, into %zu bytes (%zu needed)",
                  first, first + n_tokens, total, layer, n_layers, (long long)kv->length,
                  kv->n_layers, base, cap, need);
        return DSI_ERR_INVALID_ARG;
    }
    size_t es = (size_t)dsn_kv_dtype_size(kv->dtype), rb = (size_t)kv->row * es;
    size_t w = dsn_kvio_width(kv->row, rdt);
    uint8_t *out = buf;
    for (uint32_t l = layer - base; l < layer - base + n_layers; l++) {
        for (uint32_t t = 0; t < n_tokens; t++) {
            if (rdt != kv->dtype) { /* the open block: the f32 copies (rounded where none) */
                int64_t pos = (int64_t)first + t;
                const float *f = dsn_kvcache_tail_row(kv, (int)l, pos);
                if (f != NULL)
                    memcpy(out, f, w);
                else
                    dsn_kvcache_load(kv, (int)l, pos, (float *)(void *)out);
                out += w;
                continue;
            }
            float *scale;
            const uint8_t *src = row_ptr(kv, (int)l, (int64_t)first + t, &scale);
            memcpy(out, src, rb);
            if (kv->dtype == DSN_KV_FP8)
                memcpy(out + rb, scale, sizeof(float));
            out += w;
        }
    }
    *meta = (dsn_kvio_chunk_t){first,
                               n_tokens,
                               total,
                               n_layers,
                               (uint32_t)kv->row,
                               (uint32_t)rdt,
                               dsn_kvio_checksum(buf, need),
                               layer};
    return DSI_OK;
}

dsi_status_t dsn_kvio_export(const dsn_kvcache_t *kv, uint32_t first, uint32_t n_tokens,
                             uint32_t total, void *buf, size_t cap, dsn_kvio_chunk_t *meta)
{
    return dsn_kvio_export_layers(kv, 0, 0, (uint32_t)kv->n_layers, first, n_tokens, total, buf,
                                  cap, meta);
}

dsi_status_t dsn_kvio_stash_take(const dsn_kvcache_t *kv, uint32_t base, uint32_t length,
                                 dsn_kvio_stash_t *st)
{
    memset(st, 0, sizeof(*st));
    if (length == 0 || (int64_t)length > kv->length) {
        DSI_ERROR("KV stash of %u positions from a cache holding %lld", length,
                  (long long)kv->length);
        return DSI_ERR_INVALID_ARG;
    }
    uint32_t open = dsn_kvio_open_first(length, kv->dtype);
    size_t sealed = dsn_kvio_bytes(kv->n_layers, kv->row, kv->dtype, open);
    size_t tail = dsn_kvio_bytes(kv->n_layers, kv->row, DSN_KV_F32, length - open);
    st->data = malloc(sealed > 0 ? sealed : 1);
    st->tail = tail > 0 ? malloc(tail) : NULL;
    if (st->data == NULL || (tail > 0 && st->tail == NULL)) {
        dsn_kvio_stash_free(st);
        return DSI_ERR_NOMEM;
    }
    dsn_kvio_chunk_t m;
    /* One "chunk" of the full blocks and one of the open block (which need not be whole). */
    dsi_status_t s = DSI_OK;
    if (open > 0)
        s = dsn_kvio_export_layers(kv, base, base, (uint32_t)kv->n_layers, 0, open, length,
                                   st->data, sealed, &m);
    if (s == DSI_OK && length > open)
        s = dsn_kvio_export_layers(kv, base, base, (uint32_t)kv->n_layers, open, length - open,
                                   length, st->tail, tail, &m);
    if (s != DSI_OK) {
        dsn_kvio_stash_free(st);
        return s;
    }
    st->base = base;
    st->n_layers = (uint32_t)kv->n_layers;
    st->row = (uint32_t)kv->row;
    st->dtype = (uint32_t)kv->dtype;
    st->length = length;
    st->open = open;
    st->bytes = sealed + tail;
    return DSI_OK;
}

dsi_status_t dsn_kvio_stash_export(const dsn_kvio_stash_t *st, uint32_t layer, uint32_t n_layers,
                                   uint32_t first, uint32_t n_tokens, uint32_t total, void *buf,
                                   size_t cap, dsn_kvio_chunk_t *meta)
{
    /* The stash's two parts: full blocks [0, open) as stored, the open block as f32. */
    int in_tail = first >= st->open;
    dsn_kv_dtype_t dt = in_tail ? DSN_KV_F32 : (dsn_kv_dtype_t)st->dtype;
    uint32_t p0 = in_tail ? st->open : 0, plen = in_tail ? st->length - st->open : st->open;
    const uint8_t *part = in_tail ? st->tail : st->data;
    size_t need = dsn_kvio_bytes((int)n_layers, (int)st->row, dt, n_tokens);
    if (st->data == NULL || n_tokens == 0 || first % DSN_KV_BLOCK != 0 ||
        (uint64_t)first + n_tokens > (uint64_t)p0 + plen || first + n_tokens > total ||
        cap < need || n_layers == 0 || layer < st->base ||
        dsn_kvio_record_dtype((dsn_kv_dtype_t)st->dtype, first, total) != dt ||
        (uint64_t)layer - st->base + n_layers > (uint64_t)st->n_layers) {
        DSI_ERROR("KV export of positions %u..%u (of %u) of layers %u + %u from a copy holding "
                  "%u (%u in full blocks) of %u layers from %u, into %zu bytes (%zu needed)",
                  first, first + n_tokens, total, layer, n_layers, st->length, st->open,
                  st->n_layers, st->base, cap, need);
        return DSI_ERR_INVALID_ARG;
    }
    size_t w = dsn_kvio_width((int)st->row, dt), run = (size_t)n_tokens * w;
    uint8_t *out = buf;
    for (uint32_t l = layer - st->base; l < layer - st->base + n_layers; l++, out += run)
        memcpy(out, part + ((size_t)l * plen + (first - p0)) * w, run);
    *meta = (dsn_kvio_chunk_t){
        first, n_tokens, total, n_layers, st->row, (uint32_t)dt, dsn_kvio_checksum(buf, need),
        layer};
    return DSI_OK;
}

void dsn_kvio_stash_free(dsn_kvio_stash_t *st)
{
    free(st->data);
    free(st->tail);
    memset(st, 0, sizeof(*st));
}

dsi_status_t dsn_kvio_rx_start(dsn_kvio_rx_t *rx, dsn_kvcache_t *kv, uint32_t total, char *why,
                               size_t cap)
{
    memset(rx, 0, sizeof(*rx));
    if (total == 0 || kv->length != 0) {
        snprintf(why, cap, "a transfer of %u positions into a cache holding %lld", total,
                 (long long)kv->length);
        return DSI_ERR_INVALID_ARG;
    }
    if ((int64_t)total > kv->max_tokens) {
        snprintf(why, cap, "%u positions exceed the sequence's limit of %lld", total,
                 (long long)kv->max_tokens);
        return DSI_ERR_CAPACITY;
    }
    int64_t blocks = dsn_kvcache_row_blocks_needed(kv, total) + dsn_kvcache_tail_needed(kv, 1);
    if (!dsn_kvpool_can_alloc(kv->pool, blocks)) {
        snprintf(why, cap, "the KV pool has no room for %lld blocks of %d positions",
                 (long long)blocks, DSN_KV_BLOCK);
        return DSI_ERR_CAPACITY;
    }
    dsi_status_t st = dsn_kvcache_reserve_blocks(kv, total);
    if (st != DSI_OK) {
        dsn_kvcache_clear(kv);
        snprintf(why, cap, "reserving %u positions: %s", total, dsi_status_message(st));
        return st;
    }
    /* Only the open block keeps f32 copies (it arrives as f32 records). */
    int64_t open = total / DSN_KV_BLOCK;
    st = dsn_kvcache_tail_window(kv, open, total % DSN_KV_BLOCK != 0 ? open + 1 : open);
    if (st != DSI_OK) {
        dsn_kvcache_clear(kv);
        snprintf(why, cap, "the open block's f32 rows: %s", dsi_status_message(st));
        return st;
    }
    rx->total = total;
    rx->n_blocks = (total + DSN_KV_BLOCK - 1) / DSN_KV_BLOCK;
    rx->got = calloc((size_t)rx->n_blocks * (size_t)kv->n_layers, 1);
    if (rx->got == NULL) {
        dsn_kvcache_clear(kv);
        snprintf(why, cap, "out of memory");
        return DSI_ERR_NOMEM;
    }
    return DSI_OK;
}

/* Record i of a chunk of dtype dt as f32 values. */
static void record_to_f32(const uint8_t *rec, int row, dsn_kv_dtype_t dt, float *out)
{
    switch (dt) {
    case DSN_KV_F32:
        memcpy(out, rec, (size_t)row * sizeof(float));
        break;
    case DSN_KV_BF16:
        for (int i = 0; i < row; i++) {
            uint16_t v;
            memcpy(&v, rec + 2 * (size_t)i, 2);
            out[i] = dsk_bf16_to_f32(v);
        }
        break;
    default: {
        float s;
        memcpy(&s, rec + row, sizeof(float));
        for (int i = 0; i < row; i++)
            out[i] = dsk_fp8_e4m3_to_f32(rec[i]) * s;
        break;
    }
    }
}

/* Why chunk m cannot go into kv / rx (NULL: it can). */
static const char *chunk_problem(const dsn_kvio_rx_t *rx, const dsn_kvcache_t *kv,
                                 const dsn_kvio_chunk_t *m, size_t bytes, char *why, size_t cap)
{
    if (rx->got == NULL)
        return "no transfer was started";
    if (m->n_layers == 0 || m->layer < rx->base ||
        (uint64_t)m->layer - rx->base + m->n_layers > (uint64_t)kv->n_layers ||
        m->row != (uint32_t)kv->row) {
        snprintf(why, cap,
                 "a chunk of layers %u + %u of rows of %u values, this cache has layers %u..%u "
                 "of %d",
                 m->layer, m->n_layers, m->row, rx->base, rx->base + (uint32_t)kv->n_layers - 1,
                 kv->row);
        return why;
    }
    if (m->dtype >= DSN_KV_DTYPE_COUNT) {
        snprintf(why, cap, "a chunk of storage type %u (not f32, bf16 or fp8)", m->dtype);
        return why;
    }
    if (m->total != rx->total || m->n_tokens == 0 || m->first % DSN_KV_BLOCK != 0 ||
        m->first >= rx->total || m->n_tokens > rx->total - m->first ||
        (m->first + m->n_tokens != rx->total && m->n_tokens % DSN_KV_BLOCK != 0)) {
        snprintf(why, cap, "a chunk of positions %u + %u of %u, the transfer has %u positions",
                 m->first, m->n_tokens, m->total, rx->total);
        return why;
    }
    size_t want = dsn_kvio_bytes((int)m->n_layers, kv->row, (dsn_kv_dtype_t)m->dtype, m->n_tokens);
    if (bytes != want) {
        snprintf(why, cap, "a chunk of %zu bytes, %zu expected for %u positions (truncated?)",
                 bytes, want, m->n_tokens);
        return why;
    }
    int64_t b0 = m->first / DSN_KV_BLOCK, b1 = (m->first + m->n_tokens - 1) / DSN_KV_BLOCK;
    for (uint32_t l = m->layer - rx->base; l < m->layer - rx->base + m->n_layers; l++) {
        for (int64_t b = b0; b <= b1; b++) {
            if (rx->got[(size_t)l * (size_t)rx->n_blocks + (size_t)b]) {
                snprintf(why, cap, "positions %u + %u of layer %u arrived twice", m->first,
                         m->n_tokens, rx->base + l);
                return why;
            }
        }
    }
    return NULL;
}

dsi_status_t dsn_kvio_rx_chunk(dsn_kvio_rx_t *rx, dsn_kvcache_t *kv, const dsn_kvio_chunk_t *m,
                               const void *data, size_t bytes, int *complete, char *why, size_t cap)
{
    *complete = 0;
    const char *bad = chunk_problem(rx, kv, m, bytes, why, cap);
    if (bad != NULL) {
        if (bad != why)
            snprintf(why, cap, "%s", bad);
        return DSI_ERR_PROTOCOL;
    }
    if (dsn_kvio_checksum(data, bytes) != m->checksum) {
        snprintf(why, cap, "positions %u + %u: the checksum does not match the data (corrupted)",
                 m->first, m->n_tokens);
        return DSI_ERR_PROTOCOL;
    }
    dsn_kv_dtype_t dt = (dsn_kv_dtype_t)m->dtype;
    size_t w = dsn_kvio_width(kv->row, dt), rb = (size_t)kv->row * (size_t)dsn_kv_dtype_size(dt);
    float *tmp = NULL;
    if ((dt != kv->dtype || kv->dtype != DSN_KV_F32) &&
        (tmp = malloc((size_t)kv->row * sizeof(float))) == NULL) {
        snprintf(why, cap, "out of memory");
        return DSI_ERR_NOMEM;
    }
    const uint8_t *rec = data;
    int l0 = (int)(m->layer - rx->base);
    for (int l = l0; l < l0 + (int)m->n_layers; l++) {
        for (uint32_t t = 0; t < m->n_tokens; t++, rec += w) {
            int64_t pos = (int64_t)m->first + t;
            if (dt != kv->dtype) {
                record_to_f32(rec, kv->row, dt, tmp);
                dsn_kvcache_store(kv, l, pos, tmp);
                continue;
            }
            float *scale;
            uint8_t *dst = row_ptr(kv, l, pos, &scale);
            memcpy(dst, rec, rb);
            if (dt == DSN_KV_FP8)
                memcpy(scale, rec + rb, sizeof(float));
            if (tmp != NULL && dsn_kvcache_tail_row(kv, l, pos) != NULL) {
                /* A rounded row of the open block (a sender that did not send it as f32). */
                record_to_f32(rec, kv->row, dt, tmp);
                dsn_kvcache_tail_put(kv, l, pos, tmp);
            }
        }
    }
    free(tmp);
    int64_t b0 = m->first / DSN_KV_BLOCK, b1 = (m->first + m->n_tokens - 1) / DSN_KV_BLOCK;
    for (int l = l0; l < l0 + (int)m->n_layers; l++) {
        for (int64_t b = b0; b <= b1; b++)
            rx->got[(size_t)l * (size_t)rx->n_blocks + (size_t)b] = 1;
    }
    rx->received += (uint64_t)m->n_tokens * m->n_layers;
    if (rx->received == (uint64_t)rx->total * (uint64_t)kv->n_layers) {
        dsn_kvcache_advance(kv, rx->total);
        *complete = 1;
    }
    return DSI_OK;
}

void dsn_kvio_rx_free(dsn_kvio_rx_t *rx)
{
    free(rx->got);
    memset(rx, 0, sizeof(*rx));
}
