/*
 * The distributed runtime on the V2-family fixtures ../shared/fixtures/v2-lite-tiny and v2-tiny
 * (softmax routers without correction biases, 2 shared experts, bf16 weights; v2-lite-tiny has no
 * q_lora): a coordinator in this process and 2 or 3 real dsinfer-node processes on loopback, with
 * plans PP=1 x EP=N (experts spread over the nodes) and PP=N (one stage per node). All three
 * fixture prompts run at once; every greedy token must equal the single-process engine's and the HF
 * reference's, and every sampled step's logits (dumped by the last stage through
 * DSINFER_LOGITS_DIR) must be within 1e-5 of the single-process engine's. Afterwards no node
 * process may be left.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_cluster.h"
#include "dsi_test.h"
#include "dsi_test_engine.h"
#include "dsn_checkpoint.h"
#include "dsn_engine.h"
#include "dsn_sampler.h"

#define N_PROMPTS 3
#define STEPS     12

static dsn_st_file_t *ref;
static int32_t *prompt[N_PROMPTS];
static uint32_t prompt_len[N_PROMPTS];
static int32_t engine_tokens[N_PROMPTS][STEPS];
static float *engine_logits[N_PROMPTS]; /* [STEPS, V] */
static int64_t V;

/* Greedy generation of every prompt with the single-process engine. */
static void run_engine(const char *dir)
{
    const int32_t *p[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++)
        p[i] = prompt[i];
    V = dsi_test_greedy(dir, N_PROMPTS, p, prompt_len, STEPS, &engine_tokens[0][0], engine_logits);
}

static void check_logits(const char *dir, int p, const char *what)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/seq-%d.f32", dir, p + 1); /* sequence ids start at 1 */
    FILE *f = fopen(path, "rb");
    DSI_CHECK(f != NULL);
    if (f == NULL)
        return;
    float *got = malloc((size_t)(STEPS * V) * sizeof(float));
    size_t n = fread(got, sizeof(float), (size_t)(STEPS * V), f);
    fclose(f);
    DSI_CHECK_INT_EQ(n, STEPS * V);
    if (n == (size_t)(STEPS * V))
        dsi_check_floats_near(what, got, engine_logits[p], STEPS * V, 1e-5);
    free(got);
}

static void run_cluster(const char *model, int nodes, int stages)
{
    char what[128];
    const char *tmp = dsi_test_tmpdir();
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", tmp);
    setenv("DSINFER_LOGITS_DIR", dir, 1);
    cli_cluster_opts_t co = {.model = model,
                             .local_nodes = nodes,
                             .stages = (uint32_t)stages,
                             .node_threads = 1,
                             .timeout_ms = 120000};
    dsc_cluster_req_t req[N_PROMPTS];
    for (int p = 0; p < N_PROMPTS; p++)
        req[p] = (dsc_cluster_req_t){prompt[p], prompt_len[p], STEPS, 0.0f, 1.0f, 0, 0};
    cli_gen_result_t res[N_PROMPTS];
    int rc = cli_cluster_generate(&co, req, N_PROMPTS, res);
    snprintf(what, sizeof(what), "%d nodes, %d stages", nodes, stages);
    if (rc != 0)
        fprintf(stderr, "%s: the cluster run failed\n", what);
    DSI_CHECK_INT_EQ(rc, 0);
    for (int p = 0; p < N_PROMPTS && rc == 0; p++) {
        DSI_CHECK_INT_EQ(res[p].n_tokens, STEPS);
        int same = res[p].n_tokens == STEPS &&
                   memcmp(res[p].tokens, engine_tokens[p], sizeof(engine_tokens[p])) == 0;
        if (!same)
            fprintf(stderr, "%s: prompt %d: tokens differ from the single-process engine\n", what,
                    p);
        DSI_CHECK(same);
        snprintf(what, sizeof(what), "%d nodes, %d stages, prompt %d logits", nodes, stages, p);
        check_logits(dir, p, what);
    }
    for (int p = 0; p < N_PROMPTS; p++)
        free(res[p].tokens);
    /* No node process may be left behind. */
    errno = 0;
    DSI_CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
    dsi_test_rmtree(dir);
}

static void run_fixture(const char *name)
{
    const char *dir = dsi_test_fixture(name);
    char model[4096], path[4200];
    snprintf(model, sizeof(model), "%s", dir);
    snprintf(path, sizeof(path), "%s/reference.safetensors", model);
    if (dsn_st_open(path, &ref) != DSI_OK)
        exit(1);
    for (int p = 0; p < N_PROMPTS; p++) {
        char tname[32];
        snprintf(tname, sizeof(tname), "p%d.tokens", p);
        const dsn_st_tensor_t *t = dsn_st_find(ref, tname);
        prompt[p] = (int32_t *)t->data;
        prompt_len[p] = (uint32_t)t->shape[0];
    }
    run_engine(model);
    /* The engine itself matches the HF reference (test_fixture_v2 checks the logits). */
    for (int p = 0; p < N_PROMPTS; p++) {
        char tname[32];
        snprintf(tname, sizeof(tname), "p%d.gen.tokens", p);
        DSI_CHECK(
            memcmp(dsn_st_find(ref, tname)->data, engine_tokens[p], sizeof(engine_tokens[p])) == 0);
    }
    static const int configs[][2] = {{2, 1}, {2, 2}, {3, 1}, {3, 3}};
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        printf("%s: %d nodes, %d stages\n", name, configs[i][0], configs[i][1]);
        fflush(stdout);
        run_cluster(model, configs[i][0], configs[i][1]);
    }
    for (int p = 0; p < N_PROMPTS; p++)
        free(engine_logits[p]);
    dsn_st_close(ref);
}

int main(void)
{
    run_fixture("v2-lite-tiny");
    run_fixture("v2-tiny");
    return dsi_test_finish();
}
