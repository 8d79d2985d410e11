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
#include "dsi_test_cluster.h"
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

static void run_cluster(const char *model, int nodes, int stages)
{
    const int32_t *p[N_PROMPTS];
    for (int i = 0; i < N_PROMPTS; i++)
        p[i] = prompt[i];
    dsi_test_cluster_ref_t r = {N_PROMPTS, p,  prompt_len, STEPS, &engine_tokens[0][0],
                                engine_logits, V};
    dsi_test_cluster_greedy(model, nodes, stages, &r);
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
