/*
 * The MPI bootstrap (dst_mpi): every rank gathers every rank's UCX worker address, connects to
 * all others and pings each with a DISPATCH that must come back as the right COMBINE. Run by
 * test_unit_ucx_mpi.sh under `mpirun -np 3`; run alone it is a singleton of size 1 and checks
 * that the allgather returns its own address.
 */
#include <stdlib.h>
#include <time.h>

#include "dsi_log.h"
#include "dsi_test.h"
#include "dst_mpi.h"
#include "dst_ucx.h"

#define WIDTH 8

/* Open MPI and hwloc leak at MPI_Finalize; ASan (when built with it) reads this at start-up. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

typedef struct {
    uv_loop_t loop;
    int rank, size;
    int combines; /* correct COMBINE replies received */
    int served;   /* DISPATCH requests answered */
} rank_t;

static float expected(int from, int to, uint32_t j)
{
    return (float)(from * 100 + to) + 0.5f * (float)j;
}

static void free_cb(dst_ucx_t *ucx, dsi_status_t status, void *arg)
{
    (void)ucx;
    DSI_CHECK_INT_EQ(status, DSI_OK);
    free(arg);
}

static void on_message(dst_ucx_t *ucx, uint32_t peer, const dst_wire_hdr_t *hdr,
                       const void *payload, size_t bytes, void *user)
{
    rank_t *r = user;
    const float *x = payload;
    (void)bytes;
    DSI_CHECK_INT_EQ(hdr->src, peer);
    if (hdr->type == DST_WIRE_DISPATCH) {
        /* Answer with x + rank (the pair's weight is 1). */
        dst_wire_hdr_t c = *hdr;
        c.type = DST_WIRE_COMBINE;
        c.n_rows = 1;
        c.n_pairs = 0;
        float *out = malloc(WIDTH * sizeof(float));
        for (uint32_t j = 0; j < WIDTH; j++)
            out[j] = x[j] + (float)r->rank;
        DSI_CHECK_INT_EQ(dst_ucx_send(ucx, peer, &c, out, WIDTH * sizeof(float), free_cb, out),
                         DSI_OK);
        r->served++;
    } else if (hdr->type == DST_WIRE_COMBINE) {
        int ok = 1;
        for (uint32_t j = 0; j < WIDTH; j++)
            ok &= x[j] == expected(r->rank, (int)peer, j) + (float)peer;
        DSI_CHECK(ok);
        r->combines += ok;
    }
}

static void progress(void *arg)
{
    rank_t *r = arg;
    uv_run(&r->loop, UV_RUN_NOWAIT);
}

static void ping_all(rank_t *r, dst_ucx_t *ucx, float *bufs)
{
    for (int to = 0; to < r->size; to++) {
        if (to == r->rank)
            continue;
        dst_wire_hdr_t h = {.type = DST_WIRE_DISPATCH,
                            .dtype = DST_WIRE_F32,
                            .layer = 3,
                            .n_rows = 1,
                            .width = WIDTH,
                            .n_pairs = 1};
        uint8_t *p = (uint8_t *)&bufs[to * (WIDTH + 4)];
        float *x = (float *)p;
        for (uint32_t j = 0; j < WIDTH; j++)
            x[j] = expected(r->rank, to, j);
        dst_wire_pair_t pair = {0, 0, 1, 1.0f};
        memcpy(p + dst_wire_side_offset(&h), &pair, sizeof(pair));
        DSI_CHECK_INT_EQ(
            dst_ucx_send(ucx, (uint32_t)to, &h, p, dst_wire_payload_bytes(&h), NULL, NULL), DSI_OK);
    }
}

int main(int argc, char **argv)
{
    rank_t r = {0};
    if (dst_mpi_init(&argc, &argv, &r.rank, &r.size) != DSI_OK)
        return 1;
    char tag[32];
    snprintf(tag, sizeof(tag), "rank %d", r.rank);
    dsi_log_set_tag(tag);
    uv_loop_init(&r.loop);
    dst_ucx_config_t cfg;
    dst_ucx_config_default(&cfg);
    cfg.self_id = (uint32_t)r.rank;
    cfg.max_peers = (uint32_t)r.size;
    cfg.on_message = on_message;
    cfg.user = &r;
    dst_ucx_t *ucx;
    DSI_CHECK_INT_EQ(dst_ucx_create(&r.loop, &cfg, &ucx), DSI_OK);
    const void *mine;
    size_t mine_len;
    dst_ucx_address(ucx, &mine, &mine_len);
    dst_mpi_addrs_t *addrs = NULL;
    DSI_CHECK_INT_EQ(dst_mpi_allgather_addresses(mine, mine_len, &addrs), DSI_OK);
    DSI_CHECK_INT_EQ(dst_mpi_allgather_addresses(mine, 0, &addrs), DSI_ERR_INVALID_ARG);
    if (addrs == NULL)
        return dsi_test_finish();
    DSI_CHECK_INT_EQ(addrs->size, r.size);
    size_t len;
    const void *own = dst_mpi_addr(addrs, r.rank, &len);
    DSI_CHECK(len == mine_len && memcmp(own, mine, len) == 0);
    for (int peer = 0; peer < r.size; peer++) {
        if (peer == r.rank)
            continue;
        const void *a = dst_mpi_addr(addrs, peer, &len);
        DSI_CHECK_INT_EQ(dst_ucx_connect(ucx, (uint32_t)peer, a, len), DSI_OK);
    }
    /* Everyone connected before anyone sends: a message from an unknown endpoint is rejected. */
    DSI_CHECK_INT_EQ(dst_mpi_barrier(progress, &r), DSI_OK);
    float *bufs = aligned_alloc(64, ((size_t)r.size * (WIDTH + 4) * sizeof(float) + 63) / 64 * 64);
    ping_all(&r, ucx, bufs);
    time_t end = time(NULL) + 60;
    while ((r.combines < r.size - 1 || r.served < r.size - 1) && time(NULL) < end)
        uv_run(&r.loop, UV_RUN_ONCE);
    DSI_CHECK_INT_EQ(r.combines, r.size - 1);
    DSI_CHECK_INT_EQ(r.served, r.size - 1);
    /* Everyone answered before anyone closes: closing needs the peers to progress. */
    DSI_CHECK_INT_EQ(dst_mpi_barrier(progress, &r), DSI_OK);
    dst_ucx_destroy(ucx);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    free(bufs);
    dst_mpi_addrs_free(addrs);
    dst_mpi_finalize();
    return dsi_test_finish();
}
