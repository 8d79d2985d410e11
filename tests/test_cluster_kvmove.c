/*
 * Sequences move with their KV cache when a re-plan changes their nodes (docs/ELASTICITY.md, "KV
 * moves with its sequence"), with real dsinfer-node processes on loopback and the tiny-v3
 * fixture. Long requests run (greedy, and one sampled); mid-generation one node is drained
 * (dsc_cluster_drain, as `dsinfer cluster drain` does) or a node joins. Every request must finish
 * with exactly the tokens of the single-process engine, and the statistics (the /metrics
 * counters) must show sequences moved with their KV cache and none prefilled again:
 *   - 3 nodes, one stage: the drained node's sequences move to the other two (a live switch);
 *   - 4 nodes, two stages of two: a stage-1 node drains; its sequences' stage-1 rows move to the
 *     other stage-1 node, and their stage-0 rows stay (copied on the node) or move with them;
 *   - 2 nodes whose KV pools hold 3 blocks: the node left has no room for the moving rows (its own
 *     sequence holds 2 blocks): the move is refused, the sequence is prefilled again once blocks
 *     are free, and the tokens are still the same;
 *   - the stage count changes (the planner chooses it; the second node's memory holds only part
 *     of the layers, so the two nodes need two stages): one node serves one stage, a node joins
 *     and the model is split in two stages; then two stages, the small node drains and the model
 *     goes back to one stage. Both are restarts that keep the KV caches: every sequence moves by
 *     layer range to the nodes that hold its layers now (the node that stays sends some to
 *     itself), none is prefilled again;
 *   - into a node that joins with the plan: 2 nodes of one stage; a rebalance's live switch is
 *     held in its PREPARE (one node stopped with SIGSTOP) while a third node joins and one of the
 *     two drains: both wait, and the next plan has the new node and not the drained one. The
 *     drained node's two sequences move to the two lanes left, one of them the new node's: it
 *     receives the rows before SWITCH (none prefilled again);
 *   - the prefix cache after a move: 2 nodes of one stage, one drains; then requests whose prompts
 *     are the first 200 tokens of each finished request (prompt and generated tokens) run on the
 *     node left: every full block of them is found in its prefix cache (the moved sequences
 *     published theirs there), and their tokens equal the single-process engine's.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_cluster.h"
#include "dsi_test.h"
#include "dsi_test_cluster.h"
#include "dsi_test_engine.h"
#include "dsc_planner.h"
#include "dsn_checkpoint.h"
#include "dsn_sampler.h"

#define N_REQ     4
#define STEPS     320
#define MAX_NODES 4
/* The prefix case: prompts of PREFIX_LEN tokens, PREFIX_STEPS new ones. */
#define PREFIX_LEN   200
#define PREFIX_STEPS 16

static const char *model;
static int32_t prompts[N_REQ][8];
static uint32_t prompt_len[N_REQ];
static int32_t want[N_REQ][STEPS];
/* Request SAMPLED samples (temperature 0.9, top_p 0.95, its own seed): it is the one on the
 * drained node, and must go on with the random stream of an undisturbed run. */
#define SAMPLED 1
static const dsn_sampling_t sampling = {0.9f, 0.95f, 0, 1234};
/* The same budget everywhere by default, so that the planner's choices do not follow free
 * memory. */
static const char *const threads[] = {"--threads", "1", "--mem", "2G", NULL};

/* One run: what happens mid-generation and what must be seen. */
typedef struct {
    int nodes, stages;                  /* at the start; stages 0: the planner chooses */
    const char *const *args[MAX_NODES]; /* each node's options (NULL: `threads` below) */
    const char *const *join;            /* a node with these options joins (else a drain) */
    int drain_small;                    /* drain the node of the smallest memory budget */
    uint32_t drain_id;                  /* else this one */
    int n_req, steps;
    int move;              /* 1: the sequences move with their cache; 0: the move fails */
    int live;              /* the re-plan is a live switch (else a restart keeping the caches) */
    uint32_t stages_after; /* stages of the plan after it (0: not checked) */
    int prefix;            /* then PREFIX_LEN-token prompts of the finished requests' tokens */
    int joiner;            /* a rebalance held in PREPARE; a node joins and drain_id drains */
} case_t;

typedef struct {
    uv_loop_t loop;
    uv_timer_t timer;
    dsc_cluster_t *cl;
    const case_t *c;
    char addr[64];
    pid_t pids[MAX_NODES + 1];
    int n_pids;
    uint32_t drain_id;
    int n_req, steps;
    int drained, done, failed, all_done;
    uint64_t all_done_ms;
    uint64_t tokens_seen;
    int32_t got[N_REQ][STEPS];
    uint32_t n_got[N_REQ];
    uint64_t started_ms;
    /* the prefix case's second round */
    int round2, done2, settle_ms;
    int32_t got2[N_REQ][PREFIX_STEPS];
    uint32_t n_got2[N_REQ];
    uint64_t hits_before;
    /* the joiner case: 1 rebalance held (pids[0] stopped), 2 node joined, 3 drained and woken */
    int phase;
} run_t;

typedef struct {
    run_t *run;
    int r;
} req_t;

static int32_t prefix_prompts[N_REQ][PREFIX_LEN];
static int32_t prefix_want[N_REQ][PREFIX_STEPS];

/* The node id of the smallest memory budget, from the status JSON. */
static uint32_t smallest_node(dsc_cluster_t *cl)
{
    char *txt = dsc_cluster_status_json(cl);
    json_t *root = txt != NULL ? json_loads(txt, 0, NULL) : NULL;
    free(txt);
    json_t *nodes = json_object_get(root, "nodes"), *n;
    size_t i;
    uint32_t id = UINT32_MAX;
    json_int_t best = 0;
    json_array_foreach(nodes, i, n)
    {
        json_int_t mem = json_integer_value(json_object_get(n, "memory_budget"));
        if (id == UINT32_MAX || mem < best) {
            best = mem;
            id = (uint32_t)json_integer_value(json_object_get(n, "id"));
        }
    }
    json_decref(root);
    DSI_CHECK(id != UINT32_MAX);
    return id;
}

/* Stages of the current plan, from the status JSON. */
static uint32_t plan_stages(dsc_cluster_t *cl)
{
    char *txt = dsc_cluster_status_json(cl);
    json_t *root = txt != NULL ? json_loads(txt, 0, NULL) : NULL;
    free(txt);
    uint32_t n = (uint32_t)json_array_size(json_object_get(root, "stages"));
    json_decref(root);
    return n;
}

static void on_tokens2(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish);

/* The prefix case's second round: PREFIX_LEN-token prompts made of each request's tokens. */
static void start_round2(run_t *run)
{
    static req_t q[N_REQ];
    dsc_cluster_stats_t st;
    dsc_cluster_stats(run->cl, &st);
    run->hits_before = st.prefix_hit_tokens;
    run->round2 = 1;
    for (int r = 0; r < run->n_req; r++) {
        uint64_t id;
        q[r] = (req_t){run, r};
        dsc_cluster_req_t req = {
            prefix_prompts[r], PREFIX_LEN, PREFIX_STEPS, 0.0f, 1.0f, 0, 0, NULL};
        DSI_CHECK_INT_EQ(dsc_cluster_submit(run->cl, &req, on_tokens2, &q[r], &id), DSI_OK);
    }
}

/* The requests are done and the re-plan completed (a live switch, or a restart whose moves
 * ended); the prefix case then runs its second round, and waits for the heartbeats that count
 * its prefix hits. */
static void maybe_stop(run_t *run)
{
    dsc_cluster_stats_t st;
    dsc_cluster_stats(run->cl, &st);
    uint64_t want_switches = run->c->joiner ? 2 : 1;
    int replanned = run->c->live ? st.live_switches >= want_switches : st.replans >= 1;
    /* A re-plan that went another way is over once the requests are done: stop soon after (the
     * checks below then fail). */
    if (!run->all_done || (!replanned && uv_now(&run->loop) - run->all_done_ms < 20000))
        return;
    if (run->c->prefix && replanned && !run->round2) {
        start_round2(run);
        return;
    }
    if (run->round2 && (run->done2 < run->n_req || run->settle_ms++ < 10))
        return; /* 10 ticks of the timer: a few heartbeats */
    dsc_cluster_shutdown(run->cl, "test done");
    uv_stop(&run->loop);
}

static void on_tokens2(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    req_t *q = ctx;
    run_t *run = q->run;
    for (uint32_t i = 0; i < n && run->n_got2[q->r] < PREFIX_STEPS; i++)
        run->got2[q->r][run->n_got2[q->r]++] = tokens[i];
    if (finish != DST_FINISH_NONE) {
        if (finish != DST_FINISH_LENGTH)
            run->failed++;
        run->done2++;
    }
}

/* Nodes registered, from the status JSON. */
static uint32_t node_count(dsc_cluster_t *cl)
{
    char *txt = dsc_cluster_status_json(cl);
    json_t *root = txt != NULL ? json_loads(txt, 0, NULL) : NULL;
    free(txt);
    uint32_t n = (uint32_t)json_array_size(json_object_get(root, "nodes"));
    json_decref(root);
    return n;
}

/* The joiner case, step by step on the timer: a rebalance whose PREPARE cannot end (a node of
 * it is stopped), a node joins, drain_id drains (both re-plans wait for the switch), the stopped
 * node goes on. */
static void joiner_step(run_t *run)
{
    if (run->phase == 0) {
        kill(run->pids[0], SIGSTOP);
        dsi_status_t st = dsc_cluster_rebalance(run->cl, "test", NULL);
        if (st != DSI_OK) { /* no expert load counted yet: again at the next tick */
            kill(run->pids[0], SIGCONT);
            return;
        }
        DSI_CHECK_INT_EQ(
            cli_spawn_nodes_argv(1, run->addr, model, threads, &run->pids[run->n_pids]), 0);
        run->n_pids++;
        run->phase = 1;
    } else if (run->phase == 1 && node_count(run->cl) == 3) {
        DSI_CHECK_INT_EQ(dsc_cluster_drain(run->cl, run->c->drain_id), DSI_OK);
        kill(run->pids[0], SIGCONT);
        fprintf(stderr, "a node joined and node %u drains during a rebalance\n", run->c->drain_id);
        run->phase = 2;
    }
}

/* Mid-generation: the drain or the join. */
static void disturb(run_t *run)
{
    if (run->c->joiner)
        return; /* joiner_step, on the timer */
    if (run->c->join != NULL) {
        DSI_CHECK_INT_EQ(
            cli_spawn_nodes_argv(1, run->addr, model, run->c->join, &run->pids[run->n_pids]), 0);
        run->n_pids++;
        fprintf(stderr, "a node joins after %llu tokens\n", (unsigned long long)run->tokens_seen);
        return;
    }
    run->drain_id = run->c->drain_small ? smallest_node(run->cl) : run->c->drain_id;
    DSI_CHECK_INT_EQ(dsc_cluster_drain(run->cl, run->drain_id), DSI_OK);
    fprintf(stderr, "drained node %u after %llu tokens\n", run->drain_id,
            (unsigned long long)run->tokens_seen);
}

static void on_tokens(void *ctx, const int32_t *tokens, uint32_t n, dst_finish_t finish)
{
    req_t *q = ctx;
    run_t *run = q->run;
    for (uint32_t i = 0; i < n && run->n_got[q->r] < (uint32_t)run->steps; i++)
        run->got[q->r][run->n_got[q->r]++] = tokens[i];
    run->tokens_seen += n;
    /* Every request is past its first KV block (64 positions): disturb mid-generation. */
    if (!run->drained && run->tokens_seen >= 70 * (uint64_t)run->n_req) {
        run->drained = 1;
        disturb(run);
    }
    if (finish != DST_FINISH_NONE) {
        if (finish != DST_FINISH_LENGTH)
            run->failed++;
        if (++run->done == run->n_req) {
            run->all_done = 1;
            run->all_done_ms = uv_now(&run->loop);
            maybe_stop(run);
        }
    }
}

static void on_timer(uv_timer_t *t)
{
    run_t *run = t->data;
    if (run->c->joiner && run->drained && run->phase < 2)
        joiner_step(run);
    if (uv_now(&run->loop) - run->started_ms > 300000) {
        fprintf(stderr, "timed out with %d of %d requests done\n", run->done, run->n_req);
        run->failed++;
        dsc_cluster_shutdown(run->cl, "test timeout");
        uv_stop(&run->loop);
        return;
    }
    maybe_stop(run);
}

static void run_case(const char *name, const case_t *c)
{
    run_t *run = calloc(1, sizeof(*run));
    req_t q[N_REQ];
    run->c = c;
    run->drain_id = c->drain_id;
    run->n_req = c->n_req;
    run->steps = c->steps;
    uv_loop_init(&run->loop);
    dsn_config_t cfg;
    dsc_cluster_opts_t co;
    dsi_test_coordinator_opts(model, (uint32_t)c->nodes, (uint32_t)c->stages, &cfg, &co);
    co.heartbeat_ms = 200;
    co.node_timeout_ms = 10000; /* a loaded machine must not lose a node by accident */
    if (c->joiner)
        co.node_timeout_ms = 120000; /* a node stays stopped until the third one registered */
    DSI_CHECK_INT_EQ(dsc_cluster_create(&run->loop, &cfg, &co, &run->cl), DSI_OK);
    snprintf(run->addr, sizeof(run->addr), "127.0.0.1:%u", dsc_cluster_port(run->cl));
    if (c->joiner) /* expert load counted soon: the rebalance needs some */
        setenv("DSINFER_LOAD_WINDOW_MS", "100", 1);
    for (int i = 0; i < c->nodes; i++) {
        const char *const *args = c->args[i] != NULL ? c->args[i] : threads;
        DSI_CHECK_INT_EQ(cli_spawn_nodes_argv(1, run->addr, model, args, &run->pids[i]), 0);
    }
    unsetenv("DSINFER_LOAD_WINDOW_MS");
    run->n_pids = c->nodes;
    for (int r = 0; r < c->n_req; r++) {
        uint64_t id;
        q[r] = (req_t){run, r};
        dsc_cluster_req_t req = {prompts[r], prompt_len[r], (uint32_t)c->steps, 0.0f, 1.0f, 0,
                                 0,          NULL};
        if (r == SAMPLED) {
            req.temperature = sampling.temperature;
            req.top_p = sampling.top_p;
            req.seed = sampling.seed;
        }
        DSI_CHECK_INT_EQ(dsc_cluster_submit(run->cl, &req, on_tokens, &q[r], &id), DSI_OK);
    }
    uv_timer_init(&run->loop, &run->timer);
    run->timer.data = run;
    uv_timer_start(&run->timer, on_timer, 200, 200);
    run->started_ms = uv_now(&run->loop);
    uv_run(&run->loop, UV_RUN_DEFAULT);

    DSI_CHECK(run->drained);
    DSI_CHECK_INT_EQ(run->failed, 0);
    for (int r = 0; r < c->n_req; r++) {
        DSI_CHECK_INT_EQ(run->n_got[r], c->steps);
        int same = memcmp(run->got[r], want[r], (size_t)c->steps * sizeof(int32_t)) == 0;
        if (!same) {
            int k = 0;
            while (run->got[r][k] == want[r][k])
                k++;
            fprintf(stderr, "%s: request %d differs from the single-process engine at token %d\n",
                    name, r, k);
        }
        DSI_CHECK(same);
    }
    dsc_cluster_stats_t st;
    dsc_cluster_stats(run->cl, &st);
    fprintf(stderr,
            "%s: %llu sequences moved with their KV cache (%.1f KiB), %llu failed moves, %llu "
            "prefilled again, %llu re-plans (%llu live), %u stages now\n",
            name, (unsigned long long)st.kv_moved_sequences, (double)st.kv_moved_bytes / 1024,
            (unsigned long long)st.kv_move_failures, (unsigned long long)st.reprefilled,
            (unsigned long long)st.replans, (unsigned long long)st.live_switches,
            plan_stages(run->cl));
    DSI_CHECK_INT_EQ(st.replans, c->joiner ? 2 : 1);
    DSI_CHECK_INT_EQ(st.live_switches, c->live ? (c->joiner ? 2 : 1) : 0);
    DSI_CHECK_INT_EQ(st.preemptions, 0);
    if (c->stages_after != 0)
        DSI_CHECK_INT_EQ(plan_stages(run->cl), c->stages_after);
    if (c->move) {
        DSI_CHECK(st.kv_moved_sequences >= 1);
        if (!c->live) /* a restart moves every sequence */
            DSI_CHECK_INT_EQ(st.kv_moved_sequences, c->n_req);
        if (c->joiner) /* the drained node's two, one of them into the new node */
            DSI_CHECK(st.kv_moved_sequences >= 2);
        DSI_CHECK(st.kv_moved_bytes > 0);
        DSI_CHECK_INT_EQ(st.kv_move_failures, 0);
        DSI_CHECK_INT_EQ(st.reprefilled, 0);
    } else {
        DSI_CHECK_INT_EQ(st.kv_moved_sequences, 0);
        DSI_CHECK_INT_EQ(st.kv_move_failures, 1);
        DSI_CHECK_INT_EQ(st.reprefilled, 1);
    }
    if (c->prefix) {
        /* Every full block of the second round's prompts but the one holding the last token
         * was found cached on the node left. */
        uint64_t hits = st.prefix_hit_tokens - run->hits_before;
        uint64_t expect = (uint64_t)c->n_req * ((PREFIX_LEN - 1) / 64 * 64);
        fprintf(stderr,
                "%s: second round: %" PRIu64 " prompt tokens found in the prefix cache, %" PRIu64
                " expected\n",
                name, hits, expect);
        DSI_CHECK_INT_EQ(hits, expect);
        for (int r = 0; r < c->n_req; r++) {
            DSI_CHECK_INT_EQ(run->n_got2[r], PREFIX_STEPS);
            DSI_CHECK(memcmp(run->got2[r], prefix_want[r], sizeof(prefix_want[r])) == 0);
        }
    }
    for (int i = 0; i < 20; i++)
        uv_run(&run->loop, UV_RUN_NOWAIT);
    /* A drained node exited after SHUTDOWN ("drained"), the others at the test's. */
    DSI_CHECK_INT_EQ(cli_reap_nodes(run->pids, run->n_pids, 20000), 0);
    dsc_cluster_destroy(run->cl);
    dsi_test_loop_close(&run->loop);
    errno = 0;
    DSI_CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
    free(run);
}

/* Whether the planner fits the model on a node of 2 GiB and one of `small` bytes, in `stages`
 * stages (0: any count), as the coordinator plans them. */
static int fits(uint64_t small, uint32_t stages, uint32_t *chosen)
{
    dsn_config_t cfg;
    dsc_cluster_opts_t co;
    dsi_test_coordinator_opts(model, 2, stages, &cfg, &co);
    dsc_node_desc_t d[2] = {{0, 2ULL << 30, 1, "big"}, {1, small, 1, "small"}};
    dst_plan_t plan;
    dsc_plan_report_t rep;
    dsi_status_t st = dsc_planner_plan(&cfg, d, 2, &co.plan, &plan, &rep);
    if (st == DSI_OK) {
        *chosen = plan.n_stages;
        dsc_plan_cleanup(&plan);
    }
    return st == DSI_OK;
}

/* A memory budget with which the small node holds some of the layers but not all: two nodes
 * then need two stages, while the big node alone serves one. */
static uint64_t split_budget(void)
{
    uint64_t lo = 1 << 20, hi = 2ULL << 30; /* !fits(lo), fits(hi) */
    uint32_t n;
    /* (the planner logs each refusal as an error: expected here) */
    while (hi - lo > (64 << 10)) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (fits(mid, 0, &n))
            hi = mid;
        else
            lo = mid;
    }
    DSI_CHECK(fits(hi, 0, &n));
    DSI_CHECK_INT_EQ(n, 2);
    DSI_CHECK(!fits(hi, 1, &n));
    return hi;
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
    /* The prefix case's prompts: the first PREFIX_LEN tokens of each request and its output. */
    const int32_t *pp[N_REQ];
    uint32_t pl[N_REQ];
    for (int r = 0; r < N_REQ; r++) {
        memcpy(prefix_prompts[r], prompts[r], prompt_len[r] * sizeof(int32_t));
        memcpy(prefix_prompts[r] + prompt_len[r], want[r],
               (PREFIX_LEN - prompt_len[r]) * sizeof(int32_t));
        pp[r] = prefix_prompts[r];
        pl[r] = PREFIX_LEN;
    }
    dsi_test_greedy(model, N_REQ, pp, pl, PREFIX_STEPS, &prefix_want[0][0], NULL);

    run_case("3 nodes, 1 stage, drain", &(case_t){.nodes = 3,
                                                  .stages = 1,
                                                  .drain_id = 1,
                                                  .n_req = N_REQ,
                                                  .steps = STEPS,
                                                  .move = 1,
                                                  .live = 1});
    run_case("4 nodes, 2 stages, drain", &(case_t){.nodes = 4,
                                                   .stages = 2,
                                                   .drain_id = 3,
                                                   .n_req = N_REQ,
                                                   .steps = STEPS,
                                                   .move = 1,
                                                   .live = 1});
    /* 3 blocks of 64 positions of 4 layers of f32 rows of 80 values (the tests' KV type): a
     * sequence of 8 + 100 tokens needs 2. */
    static const char *const small_pool[] = {"--threads", "1",      "--mem", "2G",
                                             "--kv-pool", "245760", NULL};
    run_case("2 nodes, no room", &(case_t){.nodes = 2,
                                           .stages = 1,
                                           .args = {small_pool, small_pool},
                                           .drain_id = 1,
                                           .n_req = 2,
                                           .steps = 100,
                                           .move = 0,
                                           .live = 1});
    /* The stage count changes. */
    char mem[32];
    snprintf(mem, sizeof(mem), "%" PRIu64, split_budget());
    const char *const small[] = {"--threads", "1", "--mem", mem, NULL};
    run_case("join, 1 -> 2 stages", &(case_t){.nodes = 1,
                                              .stages = 0,
                                              .join = small,
                                              .n_req = N_REQ,
                                              .steps = STEPS,
                                              .move = 1,
                                              .stages_after = 2});
    run_case("drain, 2 -> 1 stages", &(case_t){.nodes = 2,
                                               .stages = 0,
                                               .args = {threads, small},
                                               .drain_small = 1,
                                               .n_req = N_REQ,
                                               .steps = STEPS,
                                               .move = 1,
                                               .stages_after = 1});
    /* Into a node that joined with the plan. */
    run_case("drain into a joining node", &(case_t){.nodes = 2,
                                                    .stages = 1,
                                                    .drain_id = 1,
                                                    .n_req = N_REQ,
                                                    .steps = STEPS,
                                                    .move = 1,
                                                    .live = 1,
                                                    .stages_after = 1,
                                                    .joiner = 1});
    /* The prefix cache of the node a drain moved sequences to. */
    run_case("prefix after a drain", &(case_t){.nodes = 2,
                                               .stages = 1,
                                               .drain_id = 1,
                                               .n_req = N_REQ,
                                               .steps = STEPS,
                                               .move = 1,
                                               .live = 1,
                                               .stages_after = 1,
                                               .prefix = 1});
    return dsi_test_finish();
}
