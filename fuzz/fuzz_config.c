/*
 * fuzz_config - config.json parsing (node/model/dsn_config.c, dsn_config_parse).
 *
 * Input: the bytes of a config.json. An accepted config must satisfy the rules dsn_config.h
 * promises later code may trust (positive widths, experts divisible by groups, top-k in bounds).
 */
#include <string.h>

#include "dsn_config.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsn_config_t cfg;
    memset(&cfg, 0x5a, sizeof(cfg));
    if (dsn_config_parse((const char *)data, size, "fuzz", &cfg) != DSI_OK)
        return 0;
    FUZZ_CHECK(cfg.vocab_size > 0 && cfg.hidden_size > 0 && cfg.num_hidden_layers > 0);
    FUZZ_CHECK(cfg.num_attention_heads > 0 && cfg.kv_lora_rank > 0 && cfg.v_head_dim > 0);
    FUZZ_CHECK(cfg.q_lora_rank >= 0 && cfg.qk_rope_head_dim >= 0 && cfg.qk_nope_head_dim >= 0);
    FUZZ_CHECK(dsn_config_qk_head_dim(&cfg) > 0);
    FUZZ_CHECK(cfg.first_k_dense_replace >= 0 && cfg.num_nextn_predict_layers >= 0);
    int moe = 0;
    for (int l = 0; l < cfg.num_hidden_layers; l++)
        moe += dsn_config_is_moe_layer(&cfg, l) != 0;
    if (moe > 0) {
        FUZZ_CHECK(cfg.n_routed_experts > 0 && cfg.moe_intermediate_size > 0);
        FUZZ_CHECK(cfg.num_experts_per_tok >= 1 && cfg.num_experts_per_tok <= cfg.n_routed_experts);
        FUZZ_CHECK(cfg.n_group >= 1 && cfg.n_routed_experts % cfg.n_group == 0);
        FUZZ_CHECK(cfg.topk_group >= 1 && cfg.topk_group <= cfg.n_group);
    }
    dsk_router_cfg_t r = dsn_config_router(&cfg);
    (void)r;
    return 0;
}
