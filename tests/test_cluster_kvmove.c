/*
 * A drained node's sequences move to their new lane with their KV cache (docs/ELASTICITY.md,
 * "KV moves with its sequence"), with real dsinfer-node processes on loopback and the tiny-v3
 * fixture. Long requests run (greedy, and one sampled); mid-generation one node is drained
 * (dsc_cluster_drain, as `dsinfer cluster drain` does). Every request must finish with exactly the
 * tokens of the single-process engine, the drain must be one live switch, and the statistics (the
 * /metrics counters) must show sequences moved with their KV cache and none prefilled again:
 *   - 3 nodes, one stage: the drained node's sequences move to the other two;
 *   - 4 nodes, two stages of two: a stage-1 node drains; its sequences' stage-1 rows move to the
 *     other stage-1 node, and their stage-0 rows stay (copied on the node) or move with them;
 *   - 2 nodes whose KV pools hold 3 blocks: the node left has no room for the moving rows (its own
 *     sequence holds 2 blocks): the move is refused, the sequence is prefilled again once blocks
 *     are free, and the tokens are still the same.
 */
#include <stdlib.h>
#include <string.h>

#include "cli_cluster.h"
#include "dsi_test.h"
#include "dsi_test_cluster.h"
#include "dsi_test_coord.h"
#include "dsi_test_engine.h"
#include "dsn_checkpoint.h"
#include "dsn_sampler.h"

#define N_REQ 4
#define STEPS 320

static const char *model;
static int32_t prompts[N_REQ][8];
static uint32_t prompt_len[N_REQ];
static int32_t want[N_REQ][STEPS];
/* Request SAMPLED samples (temperature 0.9, top_p 0.95, its own seed): it is the one on the
 * drained node, and must go on with the random stream of an undisturbed run. */
#define SAMPLED 1
static const dsn_sampling_t sampling = {0.9f, 0.95f, 0, 1234};

typedef struct {
    dsi_test_coord_t c;
    uint32_t drain_id;
    int n_req, steps;
    int drained, done, failed, all_done;
    uint64_t all_done_ms;
    uint64_t tokens_seen;
    int32_t got[N_REQ][STEPS];
    uint32_t n_got[N_REQ];
} run_t;

typedef struct {
    run_t *run;
    int r;
} req_t;

/* The requests are done and the drain's live switch completed. */
static void maybe_stop(run_t *run)
{
    dsc_cluster_stats_t st;
    dsc_cluster_stats(run->c.cl, &st);
    /* A drain that restarted the requests instead is over once they are done: stop soon after
     * (the checks below then fail). */
    if (!run->all_done ||
        (st.live_switches == 0 && uv_now(&run->c.loop) - run->all_done_ms < 20000))
        return;
    dsi_test_coord_stop(&run->c, "test done");
}

static void on_tokens(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    req_t *q = ctx;
    run_t *run = q->run;
    for (uint32_t i = 0; i < n && run->n_got[q->r] < (uint32_t)run->steps; i++)
        run->got[q->r][run->n_got[q->r]++] = tokens[i];
    run->tokens_seen += n;
    /* Every request is past its first KV block (64 positions): drain mid-generation. */
    if (!run->drained && run->tokens_seen >= 70 * (uint64_t)run->n_req) {
        run->drained = 1;
        DSI_CHECK_INT_EQ(dsc_cluster_drain(run->c.cl, run->drain_id), DSI_OK);
        fprintf(stderr, "drained node %u after %llu tokens\n", run->drain_id,
                (unsigned long long)run->tokens_seen);
    }
    if (finish != DST_FINISH_NONE) {
        if (finish != DST_FINISH_LENGTH)
            run->failed++;
        if (++run->done == run->n_req) {
            run->all_done = 1;
            run->all_done_ms = uv_now(&run->c.loop);
            maybe_stop(run);
        }
    }
}

static void on_tick(dsi_test_coord_t *c)
{
    maybe_stop(c->user);
}

/* n_req requests of `steps` tokens; node_args: the nodes' options (NULL: none); move: whether the
 * sequences must move with their cache (else the move must fail and fall back). */
static void run_drain(int nodes, int stages, uint32_t drain_id, int n_req, int steps,
                      const char *const *node_args, int move)
{
    run_t *run = calloc(1, sizeof(*run));
    req_t q[N_REQ];
    run->drain_id = drain_id;
    run->n_req = n_req;
    run->steps = steps;
    run->c.user = run;
    dsn_config_t cfg;
    dsc_cluster_opts_t co;
    dsi_test_coordinator_opts(model, (uint32_t)nodes, (uint32_t)stages, &cfg, &co);
    co.heartbeat_ms = 200;
    co.node_timeout_ms = 10000; /* a loaded machine must not lose a node by accident */
    dsi_test_coord_start(&run->c, &cfg, &co);
    /* The same budget everywhere, so that the planner's choices do not follow free memory. */
    static const char *const threads[] = {"--threads", "1", "--mem", "2G", NULL};
    DSI_CHECK_INT_EQ(
        dsi_test_coord_spawn(&run->c, nodes, model, node_args != NULL ? node_args : threads), 0);
    for (int r = 0; r < n_req; r++) {
        uint64_t id;
        q[r] = (req_t){run, r};
        dsc_cluster_req_t req = {prompts[r], prompt_len[r], (uint32_t)steps, 0.0f, 1.0f, 0,
                                 0,          NULL};
        if (r == SAMPLED) {
            req.temperature = sampling.temperature;
            req.top_p = sampling.top_p;
            req.seed = sampling.seed;
        }
        DSI_CHECK_INT_EQ(dsc_cluster_submit(run->c.cl, &req, on_tokens, &q[r], &id), DSI_OK);
    }
    if (dsi_test_coord_run(&run->c, 200, 300000, on_tick)) {
        fprintf(stderr, "timed out with %d of %d requests done\n", run->done, run->n_req);
        run->failed++;
    }

    DSI_CHECK(run->drained);
    DSI_CHECK_INT_EQ(run->failed, 0);
    for (int r = 0; r < n_req; r++) {
        DSI_CHECK_INT_EQ(run->n_got[r], steps);
        int same = memcmp(run->got[r], want[r], (size_t)steps * sizeof(int32_t)) == 0;
        if (!same)
            fprintf(stderr,
                    "%d nodes, %d stages: request %d differs from the single-process "
                    "engine\n",
                    nodes, stages, r);
        DSI_CHECK(same);
    }
    dsc_cluster_stats_t st;
    dsc_cluster_stats(run->c.cl, &st);
    fprintf(stderr,
            "%d nodes, %d stages: %llu sequences moved with their KV cache (%.1f KiB), %llu "
            "failed moves, %llu prefilled again\n",
            nodes, stages, (unsigned long long)st.kv_moved_sequences,
            (double)st.kv_moved_bytes / 1024, (unsigned long long)st.kv_move_failures,
            (unsigned long long)st.reprefilled);
    DSI_CHECK_INT_EQ(st.live_switches, 1);
    DSI_CHECK_INT_EQ(st.preemptions, 0);
    if (move) {
        DSI_CHECK(st.kv_moved_sequences >= 1);
        DSI_CHECK(st.kv_moved_bytes > 0);
        DSI_CHECK_INT_EQ(st.kv_move_failures, 0);
        DSI_CHECK_INT_EQ(st.reprefilled, 0);
    } else {
        DSI_CHECK_INT_EQ(st.kv_moved_sequences, 0);
        DSI_CHECK_INT_EQ(st.kv_move_failures, 1);
        DSI_CHECK_INT_EQ(st.reprefilled, 1);
    }
    dsi_test_coord_settle(&run->c);
    /* The drained node exited after SHUTDOWN ("drained"), the others at the test's. */
    DSI_CHECK_INT_EQ(dsi_test_coord_close(&run->c), 0);
    free(run);
}

int main(void)
{
    model = dsi_test_fixture("tiny-v3");
    cli_local_secret();
    const int32_t *p[N_REQ];
    for (int r = 0; r < N_REQ; r++) {
        prompt_len[r] = dsi_test_prompt(r, prompts[r]);
        p[r] = prompts[r];
    }
    dsi_test_greedy(model, N_REQ, p, prompt_len, STEPS, &want[0][0], NULL);
    dsi_test_sample(model, 1, &p[SAMPLED], &prompt_len[SAMPLED], STEPS, &sampling, want[SAMPLED]);
    run_drain(3, 1, 1, N_REQ, STEPS, NULL, 1);
    run_drain(4, 2, 3, N_REQ, STEPS, NULL, 1);
    /* 3 blocks of 64 positions of 4 layers of f32 rows of 80 values (the tests' KV type): a
     * sequence of 8 + 100 tokens needs 2. */
    static const char *const small_pool[] = {"--threads", "1",      "--mem", "2G",
                                             "--kv-pool", "245760", NULL};
    run_drain(2, 1, 1, 2, 100, small_pool, 0);
    return dsi_test_finish();
}
