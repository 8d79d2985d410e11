/* dsi_test_cluster.c - see dsi_test_cluster.h. */
#include "dsi_test_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_cluster.h"
#include "dsi_test.h"
#include "dsi_test_coord.h"
#include "dsi_test_engine.h"
#include "dsi_test_fixture.h"
#include "dst_secret.h"

static void check_logits(const char *dir, const dsi_test_cluster_ref_t *ref, int p,
                         const char *what)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/seq-%d.f32", dir, p + 1); /* sequence ids start at 1 */
    FILE *f = fopen(path, "rb");
    DSI_CHECK(f != NULL);
    if (f == NULL)
        return;
    size_t want = (size_t)ref->steps * (size_t)ref->vocab;
    float *got = malloc(want * sizeof(float));
    size_t n = got != NULL ? fread(got, sizeof(float), want, f) : 0;
    fclose(f);
    DSI_CHECK_INT_EQ(n, want);
    if (n == want)
        dsi_check_floats_near(what, got, ref->logits[p], (int64_t)want, 1e-5);
    free(got);
}

void dsi_test_cluster_greedy(const char *model, int nodes, int stages,
                             const dsi_test_cluster_ref_t *ref)
{
    char what[128], dir[256];
    snprintf(dir, sizeof(dir), "%s", dsi_test_tmpdir());
    setenv("DSINFER_LOGITS_DIR", dir, 1);
    cli_cluster_opts_t co = {.model = model,
                             .local_nodes = nodes,
                             .stages = (uint32_t)stages,
                             .node_threads = 1,
                             .timeout_ms = 120000};
    dsc_cluster_req_t *req = calloc((size_t)ref->n, sizeof(*req));
    cli_gen_result_t *res = calloc((size_t)ref->n, sizeof(*res));
    DSI_CHECK(req != NULL && res != NULL);
    if (req == NULL || res == NULL) {
        free(req);
        free(res);
        return;
    }
    for (int p = 0; p < ref->n; p++)
        req[p] =
            (dsc_cluster_req_t){ref->prompt[p], ref->len[p], ref->steps, 0.0f, 1.0f, 0, 0, NULL};
    int rc = cli_cluster_generate(&co, req, ref->n, res);
    snprintf(what, sizeof(what), "%d nodes, %d stages", nodes, stages);
    if (rc != 0)
        fprintf(stderr, "%s: the cluster run failed\n", what);
    DSI_CHECK_INT_EQ(rc, 0);
    for (int p = 0; p < ref->n && rc == 0; p++) {
        const int32_t *want = ref->tokens + (size_t)p * ref->steps;
        DSI_CHECK_INT_EQ(res[p].n_tokens, ref->steps);
        int same = res[p].n_tokens == ref->steps &&
                   memcmp(res[p].tokens, want, ref->steps * sizeof(int32_t)) == 0;
        if (!same)
            fprintf(stderr, "%s: prompt %d: tokens differ from the single-process engine\n", what,
                    p);
        DSI_CHECK(same);
        snprintf(what, sizeof(what), "%d nodes, %d stages, prompt %d logits", nodes, stages, p);
        check_logits(dir, ref, p, what);
    }
    for (int p = 0; p < ref->n; p++)
        free(res[p].tokens);
    free(req);
    free(res);
    /* No node process may be left behind. */
    dsi_test_no_children();
    dsi_test_rmtree(dir);
}

void dsi_test_cluster_fixture(const char *name, int n_prompts, int steps, const int (*configs)[2],
                              int n_configs)
{
    enum { MAX_PROMPTS = 8 };
    DSI_CHECK(n_prompts <= MAX_PROMPTS);
    if (n_prompts > MAX_PROMPTS)
        return;
    dsi_fixture_t fx;
    dsi_fixture_open(&fx, name);
    const int32_t *prompt[MAX_PROMPTS];
    uint32_t len[MAX_PROMPTS];
    for (int p = 0; p < n_prompts; p++) {
        const dsn_st_tensor_t *t = dsi_fixture_ref(&fx, "p%d.tokens", p);
        prompt[p] = t->data;
        len[p] = (uint32_t)t->shape[0];
    }
    const char *dir = dsi_test_fixture(name);
    int32_t *tokens = calloc((size_t)(n_prompts * steps), sizeof(int32_t));
    float *logits[MAX_PROMPTS] = {0};
    int64_t vocab = dsi_test_greedy(dir, n_prompts, prompt, len, steps, tokens, logits);
    /* The engine itself matches the HF reference (the fixture tests check the logits). */
    for (int p = 0; p < n_prompts; p++)
        DSI_CHECK(memcmp(dsi_fixture_ref(&fx, "p%d.gen.tokens", p)->data, tokens + p * steps,
                         (size_t)steps * sizeof(int32_t)) == 0);
    dsi_test_cluster_ref_t r = {n_prompts, prompt, len, (uint32_t)steps, tokens, logits, vocab};
    for (int i = 0; i < n_configs; i++) {
        printf("%s: %d nodes, %d stages\n", name, configs[i][0], configs[i][1]);
        fflush(stdout);
        dsi_test_cluster_greedy(dir, configs[i][0], configs[i][1], &r);
    }
    for (int p = 0; p < n_prompts; p++)
        free(logits[p]);
    free(tokens);
    dsi_fixture_close(&fx);
}

void dsi_test_coordinator_opts(const char *model, uint32_t nodes, uint32_t stages,
                               dsn_config_t *cfg, dsc_cluster_opts_t *co)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/config.json", model);
    DSI_CHECK_INT_EQ(dsn_config_load(path, cfg), DSI_OK);
    dsc_cluster_opts_default(co);
    co->expect_nodes = nodes;
    co->plan.n_stages = stages;
    co->plan.kv_tokens = 4096;
    co->plan.overhead = 64ULL << 20;
    DSI_CHECK_INT_EQ(dst_secret_load(NULL, &co->secret), DSI_OK);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void dsi_test_loop_close(uv_loop_t *loop)
{
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}
