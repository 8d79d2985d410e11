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
#include "dsi_test.h"
#include "dsi_test_cluster.h"

int main(void)
{
    static const int configs[][2] = {{2, 1}, {2, 2}, {3, 1}, {3, 3}};
    dsi_test_cluster_fixture("v2-lite-tiny", 3, 12, configs, 4);
    dsi_test_cluster_fixture("v2-tiny", 3, 12, configs, 4);
    return dsi_test_finish();
}
