/*
 * fuzz_kvio - receiving a moved sequence's KV rows (node/engine/dsn_kvcache_io.c), the bytes a
 * KV data-plane message carries from another node.
 *
 * Input: [1 byte: the cache's storage type (mod 3), and its first model layer (the byte / 3,
 * mod 2)][2 bytes: the transfer's positions, mod 300, plus 1], then chunks: [24 bytes: first,
 * n_tokens, total, layers (the low byte: how many; the next: the first model layer), row, dtype
 * (u32 each)][1 byte: checksum right (even) or the next 8 bytes as the claimed one (odd)]
 * [2 bytes: data length][the data], into a cache of 2 layers of rows of 12 values whose pool
 * holds 4 blocks. A chunk must be refused or stored; the cache's length is 0 until the transfer
 * completes (every layer of every position) and then the whole transfer; a completed cache
 * exports every position again (its full blocks as stored, its open block as f32 records).
 */
#include <string.h>

#include "dsn_kvcache_io.h"
#include "fuzz_util.h"

#define LAYERS 2
#define ROW    12

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    dsn_kv_dtype_t dt = (dsn_kv_dtype_t)(data[0] % DSN_KV_DTYPE_COUNT);
    uint32_t base = (uint32_t)(data[0] / DSN_KV_DTYPE_COUNT) % 2;
    uint32_t total = 1 + (uint32_t)(data[1] | data[2] << 8) % 300;
    data += 3;
    size -= 3;
    dsn_kvpool_t *pool;
    dsn_kvcache_t *kv;
    FUZZ_CHECK(dsn_kvpool_create(LAYERS, ROW, dt, 4, &pool) == DSI_OK);
    FUZZ_CHECK(dsn_kvcache_create(pool, 1000, &kv) == DSI_OK);
    dsn_kvpool_release(pool);
    dsn_kvio_rx_t rx;
    char why[256];
    int complete = 0;
    if (dsn_kvio_rx_start(&rx, kv, total, why, sizeof(why)) != DSI_OK) {
        /* refused only when the rows and the open block's f32 copy (bf16, fp8) exceed 4 blocks */
        int64_t need =
            (total + DSN_KV_BLOCK - 1) / DSN_KV_BLOCK + dsn_kvpool_tail_blocks(kv->pool, 1);
        FUZZ_CHECK(need > 4 && kv->length == 0);
        dsn_kvcache_destroy(kv);
        return 0;
    }
    rx.base = base;
    while (size >= 27 && !complete) {
        dsn_kvio_chunk_t m = {rd32(data),
                              rd32(data + 4),
                              rd32(data + 8),
                              rd32(data + 12),
                              rd32(data + 16),
                              rd32(data + 20),
                              0,
                              0};
        m.layer = m.n_layers >> 8 & 0xff;
        m.n_layers &= 0xff;
        int claimed = data[24] & 1;
        size_t len = (size_t)(data[25] | data[26] << 8);
        data += 27;
        size -= 27;
        if (claimed && size >= 8) {
            memcpy(&m.checksum, data, 8);
            data += 8;
            size -= 8;
        }
        if (len > size)
            len = size;
        uint8_t *chunk = malloc(len ? len : 1); /* exact size: ASan sees a read past it */
        FUZZ_CHECK(chunk != NULL);
        memcpy(chunk, data, len);
        if (!claimed)
            m.checksum = dsn_kvio_checksum(chunk, len);
        dsi_status_t st = dsn_kvio_rx_chunk(&rx, kv, &m, chunk, len, &complete, why, sizeof(why));
        FUZZ_CHECK(st == DSI_OK || (st == DSI_ERR_PROTOCOL && why[0] != 0 && !complete));
        FUZZ_CHECK(kv->length == (complete ? (int64_t)total : 0));
        free(chunk);
        data += len;
        size -= len;
    }
    if (complete) {
        /* the full blocks as stored, then the open block as f32 records (bf16 and fp8) */
        uint32_t open = dsn_kvio_open_first(total, dt);
        uint32_t parts[2][2] = {{0, open}, {open, total - open}};
        for (int i = 0; i < 2; i++) {
            if (parts[i][1] == 0)
                continue;
            dsn_kv_dtype_t rt = dsn_kvio_record_dtype(dt, parts[i][0], total);
            size_t bytes = dsn_kvio_bytes(LAYERS, ROW, rt, parts[i][1]);
            uint8_t *out = malloc(bytes);
            dsn_kvio_chunk_t meta;
            FUZZ_CHECK(out != NULL);
            FUZZ_CHECK(dsn_kvio_export(kv, parts[i][0], parts[i][1], total, out, bytes, &meta) ==
                       DSI_OK);
            FUZZ_CHECK(meta.total == total && meta.n_tokens == parts[i][1] && meta.dtype == rt);
            free(out);
        }
    }
    dsn_kvio_rx_free(&rx);
    dsn_kvcache_destroy(kv);
    return 0;
}
