/*
 * The distributed runtime on ../shared/fixtures/tiny-v3: a coordinator in this process and 2, 3
 * or 4 real dsinfer-node processes on loopback, with plans PP=1 x EP=N, PP=2 x EP=2 and PP=N.
 * All four fixture prompts run at once; every greedy token must equal the single-process
 * engine's (and the HF reference), and every sampled step's logits (dumped by the last stage
 * through DSINFER_LOGITS_DIR) must be within 1e-5 of the single-process engine's. Afterwards no
 * node process may be left.
 */
#include "dsi_test.h"
#include "dsi_test_cluster.h"

int main(void)
{
    static const int configs[][2] = {{2, 1}, {2, 2}, {3, 1}, {3, 3}, {4, 2}, {4, 4}};
    dsi_test_cluster_fixture("tiny-v3", 4, 16, configs, 6);
    return dsi_test_finish();
}
