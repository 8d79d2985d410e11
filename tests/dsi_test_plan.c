/* dsi_test_plan.c - see dsi_test_plan.h. */
#include "dsi_test_plan.h"

#include <string.h>

dsn_config_t dsi_test_cfg_671b(void)
{
    dsn_config_t c;
    memset(&c, 0, sizeof(c));
    c.vocab_size = 129280;
    c.hidden_size = 7168;
    c.intermediate_size = 18432;
    c.moe_intermediate_size = 2048;
    c.num_hidden_layers = 61;
    c.num_nextn_predict_layers = 1;
    c.first_k_dense_replace = 3;
    c.moe_layer_freq = 1;
    c.n_routed_experts = 256;
    c.n_shared_experts = 1;
    c.num_experts_per_tok = 8;
    c.n_group = 8;
    c.topk_group = 4;
    c.num_attention_heads = 128;
    c.q_lora_rank = 1536;
    c.kv_lora_rank = 512;
    c.qk_nope_head_dim = 128;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 128;
    c.fp8 = 1;
    return c;
}

dsn_config_t dsi_test_cfg_tiny(void)
{
    dsn_config_t c = dsi_test_cfg_671b();
    c.vocab_size = 1024;
    c.hidden_size = 256;
    c.intermediate_size = 384;
    c.moe_intermediate_size = 96;
    c.num_hidden_layers = 4;
    c.num_nextn_predict_layers = 0;
    c.first_k_dense_replace = 1;
    c.n_routed_experts = 32;
    c.num_experts_per_tok = 4;
    c.n_group = 4;
    c.topk_group = 2;
    c.num_attention_heads = 4;
    c.q_lora_rank = 192;
    c.kv_lora_rank = 64;
    c.qk_nope_head_dim = 32;
    c.qk_rope_head_dim = 16;
    c.v_head_dim = 32;
    return c;
}

void dsi_test_plan_nodes(dsc_node_desc_t *nodes, uint32_t n, uint64_t budget)
{
    for (uint32_t i = 0; i < n; i++)
        nodes[i] = (dsc_node_desc_t){.id = i, .mem_budget = budget, .cores = 2};
}

void dsi_test_plan_opts_small(dsc_plan_opts_t *o)
{
    dsc_plan_opts_default(o);
    o->kv_tokens = 1024;
    o->overhead = 1ULL << 20;
}
