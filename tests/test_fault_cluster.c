/*
 * Membership changes while a cluster serves (issue 7), with real dsinfer-node processes on
 * loopback and the tiny-v3 fixture: a node killed with SIGKILL mid-generation, a node hung with
 * SIGSTOP (found by missed heartbeats), a node joining (2 -> 3) during a stream of requests, and a
 * node drained with SIGTERM. In each case every request must finish with exactly the greedy tokens
 * of the single-process engine, and no process may be left behind. Request FORK has request 0's
 * prompt and shares its KV cache (another choice of the same request, n > 1): a restart moves it
 * with its KV cache when its nodes survived, else submits it again sharing anew, and it still
 * gives request 0's tokens.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_cluster.h"
#include "dsi_test.h"
#include "dsi_test_cluster.h"
#include "dsi_test_coord.h"
#include "dsi_test_engine.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_sampler.h"

#define N_REQ 6
#define STEPS 40

typedef enum { FAULT_KILL, FAULT_STOP, FAULT_JOIN, FAULT_DRAIN } fault_t;
static const char *fault_names[] = {"kill -9", "SIGSTOP", "join", "drain (SIGTERM)"};

static const char *model;
static int32_t prompts[N_REQ][8];
static uint32_t prompt_len[N_REQ];
static int32_t want[N_REQ][STEPS];

/* The last request samples (temperature 0.9, top_p 0.95, its own seed): a request resumed after a
 * re-plan continues the random stream of an uninterrupted run, so it must match too. */
#define SAMPLED (N_REQ - 1)
#define FORK    1
static const dsn_sampling_t sampling = {0.9f, 0.95f, 0, 1234};

/* Continuations with the single-process engine: greedy, and the sampled one. */
static void reference(void)
{
    const int32_t *p[N_REQ];
    for (int r = 0; r < N_REQ; r++) {
        prompt_len[r] = dsi_test_prompt(r == FORK ? 0 : r, prompts[r]);
        p[r] = prompts[r];
    }
    dsi_test_greedy(model, N_REQ, p, prompt_len, STEPS, &want[0][0], NULL);
    dsi_test_sample(model, 1, &p[SAMPLED], &prompt_len[SAMPLED], STEPS, &sampling, want[SAMPLED]);
}

typedef struct {
    dsi_test_coord_t c;
    fault_t fault;
    int fault_done, done, failed, all_done;
    uint64_t tokens_seen;
    int32_t got[N_REQ][STEPS];
    uint32_t n_got[N_REQ];
} run_t;

typedef struct {
    run_t *run;
    int r;
} req_t;

static void inject(run_t *run)
{
    run->fault_done = 1;
    switch (run->fault) {
    case FAULT_KILL:
        kill(run->c.pids[1], SIGKILL);
        break;
    case FAULT_STOP:
        kill(run->c.pids[1], SIGSTOP);
        break;
    case FAULT_DRAIN:
        kill(run->c.pids[1], SIGTERM);
        break;
    case FAULT_JOIN:
        dsi_test_coord_spawn(&run->c, 1, model, NULL);
        break;
    }
    fprintf(stderr, "injected %s after %llu tokens\n", fault_names[run->fault],
            (unsigned long long)run->tokens_seen);
}

/* A join or a drain switches plans live: the run ends once that switch completed, even when the
 * requests finished first (they do not wait for it). Failures restart the plan while requests
 * wait, so their re-plan is done by the time the requests are. */
static void maybe_stop(run_t *run)
{
    dsc_cluster_stats_t st;
    dsc_cluster_stats(run->c.cl, &st);
    int live = run->fault == FAULT_JOIN || run->fault == FAULT_DRAIN;
    if (!run->all_done || (live && st.live_switches == 0))
        return;
    dsi_test_coord_stop(&run->c, "test done");
}

static void on_tokens(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    req_t *q = ctx;
    run_t *run = q->run;
    for (uint32_t i = 0; i < n && run->n_got[q->r] < STEPS; i++)
        run->got[q->r][run->n_got[q->r]++] = tokens[i];
    run->tokens_seen += n;
    if (!run->fault_done && run->tokens_seen >= 12)
        inject(run);
    if (finish != DST_FINISH_NONE) {
        if (finish != DST_FINISH_LENGTH && finish != DST_FINISH_STOP)
            run->failed++;
        if (++run->done == N_REQ) {
            run->all_done = 1;
            maybe_stop(run);
        }
    }
}

static void on_tick(dsi_test_coord_t *c)
{
    maybe_stop(c->user);
}

static void run_fault(fault_t fault, int nodes)
{
    run_t *run = calloc(1, sizeof(*run));
    req_t q[N_REQ];
    run->fault = fault;
    run->c.user = run;
    dsn_config_t cfg;
    dsc_cluster_opts_t co;
    dsi_test_coordinator_opts(model, (uint32_t)nodes, 1, &cfg, &co);
    co.heartbeat_ms = 100;
    co.node_timeout_ms = 1000;
    dsi_test_coord_start(&run->c, &cfg, &co);
    DSI_CHECK_INT_EQ(dsi_test_coord_spawn(&run->c, nodes, model, NULL), 0);
    uint64_t first = 0;
    for (int r = 0; r < N_REQ; r++) {
        uint64_t id;
        q[r] = (req_t){run, r};
        dsc_cluster_req_t req = {prompts[r], prompt_len[r], STEPS, 0.0f, 1.0f, 0, 0, NULL};
        if (r == SAMPLED)
            req = (dsc_cluster_req_t){
                prompts[r], prompt_len[r], STEPS, sampling.temperature, sampling.top_p,
                0,          sampling.seed, NULL};
        DSI_CHECK_INT_EQ(dsc_cluster_submit_shared(run->c.cl, &req, NULL, on_tokens, NULL, &q[r],
                                                   r == FORK ? first : 0, &id),
                         DSI_OK);
        if (r == 0)
            first = id;
    }
    if (dsi_test_coord_run(&run->c, 200, 120000, on_tick)) {
        fprintf(stderr, "%s: timed out with %d of %d requests done\n", fault_names[run->fault],
                run->done, N_REQ);
        run->failed++;
    }

    DSI_CHECK(run->fault_done);
    DSI_CHECK_INT_EQ(run->failed, 0);
    for (int r = 0; r < N_REQ; r++) {
        DSI_CHECK_INT_EQ(run->n_got[r], STEPS);
        int same = memcmp(run->got[r], want[r], sizeof(want[r])) == 0;
        if (!same)
            fprintf(stderr, "%s: request %d differs from the single-process engine\n",
                    fault_names[fault], r);
        DSI_CHECK(same);
    }
    dsc_cluster_stats_t st;
    dsc_cluster_stats(run->c.cl, &st);
    DSI_CHECK(st.replans >= 1);
    /* FORK shared request 0's prompt (but its last token). A restart moves the requests of the
     * nodes left with their KV cache, and prefills the lost node's again (sharing anew). */
    uint64_t shared = prompt_len[0] - 1;
    DSI_CHECK(st.shared_tokens >= shared);
    if (fault == FAULT_KILL || fault == FAULT_STOP)
        DSI_CHECK(st.kv_moved_sequences + st.reprefilled >= 1);
    /* Joins and drains keep every node's stage: they switch without stopping requests. A lost
     * node's experts have no holder left: those re-plans restart the requests. */
    if (fault == FAULT_JOIN || fault == FAULT_DRAIN)
        DSI_CHECK_INT_EQ(st.live_switches, 1);
    else
        DSI_CHECK_INT_EQ(st.live_switches, 0);
    /* Let SHUTDOWN reach the nodes; a stopped node must be woken to see its closed connection. */
    dsi_test_coord_settle(&run->c);
    if (fault == FAULT_STOP)
        kill(run->c.pids[1], SIGCONT);
    if (fault == FAULT_KILL)
        waitpid(run->c.pids[1], NULL, 0), run->c.pids[1] = 0;
    /* Every node but a woken SIGSTOP one (its coordinator connection is gone) exits cleanly. */
    DSI_CHECK_INT_EQ(dsi_test_coord_close(&run->c), fault == FAULT_STOP);
    fprintf(stderr,
            "%s: %u re-plans, %.1f KiB of experts moved, %llu prompt tokens shared, %llu requests "
            "moved with their KV cache, %llu prefilled again\n",
            fault_names[fault], (unsigned)st.replans, (double)st.bytes_moved / 1024,
            (unsigned long long)st.shared_tokens, (unsigned long long)st.kv_moved_sequences,
            (unsigned long long)st.reprefilled);
    free(run);
}

int main(void)
{
    model = dsi_test_fixture("tiny-v3");
    cli_local_secret();
    reference();
    run_fault(FAULT_KILL, 3);
    run_fault(FAULT_STOP, 3);
    run_fault(FAULT_JOIN, 2);
    run_fault(FAULT_DRAIN, 3);
    return dsi_test_finish();
}
