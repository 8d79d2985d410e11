/*
 * dsc_backend.c - the backend's lifetime, the cluster's state (health), the served model id, and
 * its metrics. Requests are in dsc_backend_seq.c, prompts in dsc_backend_prompt.c.
 */
#include "dsc_backend_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dsi_log.h"
#include "dst_msg.h"

#define TICK_MS 200 /* how often the cluster gauges are refreshed between events */

void dsc_backend_config_default(dsc_backend_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->chat_style = DSC_CHAT_AUTO;
    cfg->max_queue = 64;
    cfg->max_context = 163840; /* DeepSeek-V3's max_position_embeddings; programs set the model's */
}

void dsc_backend_count(dsc_metric_family_t *family, const char *reason)
{
    const char *labels[1] = {reason};
    dsc_metric_series_t *series = family != NULL ? dsc_metric_series(family, labels) : NULL;
    if (series != NULL)
        dsc_metric_add(series, 1);
}

void dsc_backend_refresh_gauges(dsc_backend_t *b)
{
    dsc_cluster_stats_t st;
    dsc_cluster_stats(b->cluster, &st);
    dsc_metric_set(b->nodes_joined, st.nodes_joined);
    dsc_metric_set(b->nodes_ready, st.nodes_ready);
    dsc_metric_set(b->nodes_dead, st.nodes_dead);
    dsc_metric_set(b->cluster_seqs, (double)st.sequences_active);
    dsc_metric_set(b->cluster_ready, dsc_cluster_ready(b->cluster));
    dsc_metric_set(b->replans, (double)st.replans);
    dsc_metric_set(b->rebalances, (double)st.rebalances);
    dsc_metric_set(b->live_switches, (double)st.live_switches);
    /* counters: they follow the cluster's totals */
    dsc_metric_add(b->prefill_tokens,
                   (double)st.prefill_tokens - dsc_metric_value(b->prefill_tokens));
    dsc_metric_add(b->shared_tokens, (double)st.shared_tokens - dsc_metric_value(b->shared_tokens));
    dsc_metric_set(b->preemptions, (double)st.preemptions);
    dsc_metric_add(b->prefix_hit, (double)st.prefix_hit_tokens - dsc_metric_value(b->prefix_hit));
    dsc_metric_add(b->prefix_prompt,
                   (double)st.prefix_prompt_tokens - dsc_metric_value(b->prefix_prompt));
    dsc_metric_add(b->prefix_misses, (double)st.prefix_misses - dsc_metric_value(b->prefix_misses));
    dsc_metric_add(b->kv_moved_seqs,
                   (double)st.kv_moved_sequences - dsc_metric_value(b->kv_moved_seqs));
    dsc_metric_add(b->kv_moved_bytes,
                   (double)st.kv_moved_bytes - dsc_metric_value(b->kv_moved_bytes));
    dsc_metric_add(b->kv_move_failures,
                   (double)st.kv_move_failures - dsc_metric_value(b->kv_move_failures));
    dsc_metric_add(b->reprefilled, (double)st.reprefilled - dsc_metric_value(b->reprefilled));
    for (uint32_t i = 0; i < dsc_cluster_node_slots(b->cluster); i++) {
        dsc_cluster_node_kv_t kv;
        if (!dsc_cluster_node_kv(b->cluster, i, &kv))
            continue;
        const char *used[2] = {kv.name, "used"}, *free_[2] = {kv.name, "free"}, *nm[1] = {kv.name};
        const char *cached[2] = {kv.name, "cached"};
        dsc_metric_series_t *u = dsc_metric_series(b->kv_blocks, used);
        dsc_metric_series_t *f = dsc_metric_series(b->kv_blocks, free_);
        dsc_metric_series_t *c = dsc_metric_series(b->kv_blocks, cached);
        uint64_t busy = kv.blocks_used + kv.blocks_cached;
        dsc_metric_series_t *p = dsc_metric_series(b->node_preemptions, nm);
        if (u != NULL)
            dsc_metric_set(u, (double)kv.blocks_used);
        if (f != NULL)
            dsc_metric_set(f, (double)(kv.blocks_total > busy ? kv.blocks_total - busy : 0));
        if (c != NULL)
            dsc_metric_set(c, (double)kv.blocks_cached);
        if (p != NULL)
            dsc_metric_set(p, (double)kv.preemptions);
        dsc_metric_series_t *h = dsc_metric_series(b->node_prefix_hit, nm);
        if (h != NULL)
            dsc_metric_set(h, (double)kv.hit_tokens);
    }
    dsc_backend_spec_refresh(b, &st.spec);
    dsc_cluster_load_t load;
    dsc_cluster_load_snapshot(b->cluster, &load);
    dsc_metric_set(b->imbalance, load.imbalance);
    for (uint32_t l = 0; l < load.n_layers && load.layer_imbalance != NULL; l++) {
        char layer[16];
        snprintf(layer, sizeof(layer), "%u", load.first_layer + l);
        const char *labels[1] = {layer};
        dsc_metric_series_t *series = dsc_metric_series(b->layer_imbalance, labels);
        if (series != NULL)
            dsc_metric_set(series, load.layer_imbalance[l]);
    }
    /* One series per expert that has had tokens (a series, once created, keeps reporting), so
     * a 671B model's 14848 experts do not all appear before they are used. */
    size_t slots = (size_t)load.n_layers * load.n_experts;
    if (load.counts == NULL || slots == 0)
        return;
    if (b->expert_series == NULL && (b->expert_series = calloc(slots, sizeof(void *))) == NULL)
        return;
    for (size_t i = 0; i < slots; i++) {
        if (b->expert_series[i] == NULL && load.counts[i] > 0) {
            char layer[16], expert[16];
            snprintf(layer, sizeof(layer), "%u", load.first_layer + (uint32_t)(i / load.n_experts));
            snprintf(expert, sizeof(expert), "%u", (uint32_t)(i % load.n_experts));
            const char *labels[2] = {layer, expert};
            b->expert_series[i] = dsc_metric_series(b->expert_tokens, labels);
        }
        if (b->expert_series[i] != NULL)
            dsc_metric_set(b->expert_series[i], (double)load.counts[i]);
    }
}

static void on_tick(uv_timer_t *t)
{
    dsc_backend_refresh_gauges(t->data);
}

static void on_defer(uv_timer_t *t)
{
    dsc_backend_run_deferred(t->data);
}

void dsc_backend_schedule(dsc_backend_t *b)
{
    if (b->handles_open == 0) /* destroyed: drop_all cancels directly */
        return;
    uv_timer_start(&b->defer, on_defer, 0, 0);
}

/* The cluster is ready (again: every plan epoch), or cannot serve for now (planning refused). */
static void on_cluster_state(void *arg, dsi_status_t st)
{
    dsc_backend_t *b = arg;
    if (st == DSI_OK) {
        if (!b->ever_ready)
            DSI_INFO("backend: the cluster is ready: serving '%s'", b->model_id);
        b->ever_ready = 1;
    } else {
        dsc_cluster_condition_t c;
        dsc_cluster_condition(b->cluster, &c);
        DSI_WARN("backend: the cluster cannot serve for now: %s%s", c.message,
                 b->ever_ready ? " (requests wait for a new plan)" : "");
    }
    dsc_backend_refresh_gauges(b);
    if (b->cfg.on_state != NULL)
        b->cfg.on_state(b->cfg.on_state_arg, st);
}

static size_t backend_models(void *self, const char **ids, size_t max)
{
    dsc_backend_t *b = self;
    if (max > 0)
        ids[0] = b->model_id;
    return 1;
}

static dsc_api_health_t backend_health(void *self)
{
    dsc_backend_t *b = self;
    if (b->stopping)
        return DSC_API_HEALTH_STOPPING;
    dsc_cluster_condition_t c;
    dsc_cluster_condition(b->cluster, &c);
    if (c.phase == DSC_CLUSTER_SERVING)
        return DSC_API_HEALTH_OK;
    if (c.phase == DSC_CLUSTER_PLAN_DOES_NOT_FIT)
        return DSC_API_HEALTH_PLAN_DOES_NOT_FIT; /* nothing loads until nodes change */
    if (c.phase == DSC_CLUSTER_NO_NODES)
        return DSC_API_HEALTH_STARTING; /* nothing can serve until a node joins */
    /* Not ready after having been: re-planning after a membership change; requests wait. */
    return b->ever_ready ? DSC_API_HEALTH_DEGRADED : DSC_API_HEALTH_STARTING;
}

static uint64_t backend_health_detail(void *self, char *buf, size_t cap)
{
    dsc_backend_t *b = self;
    dsc_cluster_condition_t c;
    dsc_cluster_condition(b->cluster, &c);
    snprintf(buf, cap, "%s", b->stopping ? "the server is shutting down" : c.message);
    return c.missing_bytes;
}

static char *backend_health_nodes(void *self)
{
    dsc_backend_t *b = self;
    return dsc_cluster_nodes_json(b->cluster);
}

static const dsc_api_backend_ops_t backend_ops = {
    .submit = dsc_backend_submit,
    .cancel = dsc_backend_cancel,
    .models = backend_models,
    .health = backend_health,
    .health_detail = backend_health_detail,
    .health_nodes = backend_health_nodes,
    .tokenize = dsc_backend_tokenize,
    .detokenize = dsc_backend_detokenize,
    .max_model_len = dsc_backend_max_model_len,
};

dsc_api_backend_t dsc_backend_api(dsc_backend_t *b)
{
    dsc_api_backend_t api = {&backend_ops, b};
    return api;
}

void dsc_backend_api_limits(const dsc_backend_t *b, dsc_api_limits_t *limits)
{
    dsc_api_limits_default(limits);
    /* A request without max_tokens gets the rest of the context after its prompt
     * (dsc_backend_submit lowers this default to it). */
    limits->max_tokens_limit = (int32_t)b->cfg.max_context - 1;
    limits->default_max_tokens = limits->max_tokens_limit;
}

void dsc_backend_stop(dsc_backend_t *b)
{
    b->stopping = 1;
}

const char *dsc_backend_model_id(const dsc_backend_t *b)
{
    return b->model_id;
}

dsc_chat_style_t dsc_backend_chat_style(const dsc_backend_t *b)
{
    return dsc_chat_template_style(b->tpl);
}

/* The last path component of dir, without trailing slashes ("models/tiny-v3/" -> "tiny-v3"). */
static char *dir_name(const char *dir)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    if (start == len)
        return strdup("model");
    return strndup(dir + start, len - start);
}

static int register_metrics(dsc_backend_t *b, dsc_metrics_t *m)
{
    static const char *const reason[] = {"reason"};
    static const char *const state[] = {"state"};
    dsc_metric_family_t *queued =
        dsc_metrics_gauge(m, "dsinfer_queue_depth",
                          "Admitted requests waiting for their first token (prefill)", NULL, 0);
    dsc_metric_family_t *running =
        dsc_metrics_gauge(m, "dsinfer_running_sequences",
                          "Requests generating tokens (first token received)", NULL, 0);
    dsc_metric_family_t *prompt =
        dsc_metrics_counter(m, "dsinfer_backend_prompt_tokens_total",
                            "Prompt tokens of admitted requests, cancelled ones included", NULL, 0);
    dsc_metric_family_t *gen =
        dsc_metrics_counter(m, "dsinfer_backend_generated_tokens_total",
                            "Tokens the cluster generated, cancelled requests included", NULL, 0);
    b->finished = dsc_metrics_counter(m, "dsinfer_backend_finished_total",
                                      "Admitted requests by how they ended (stop: eos, "
                                      "stop_string, length, cancelled: client left, error)",
                                      reason, 1);
    b->rejected = dsc_metrics_counter(
        m, "dsinfer_backend_rejected_total",
        "Requests refused at submit (queue_full, too_long, not_ready, bad_request)", reason, 1);
    dsc_metric_family_t *nodes = dsc_metrics_gauge(
        m, "dsinfer_cluster_nodes", "Nodes of the cluster by state (joined counts all)", state, 1);
    dsc_metric_family_t *cseqs = dsc_metrics_gauge(
        m, "dsinfer_cluster_sequences",
        "Sequences open on the cluster (holding KV cache on their nodes)", NULL, 0);
    dsc_metric_family_t *cready = dsc_metrics_gauge(
        m, "dsinfer_cluster_ready", "1 when every node of the plan is ready", NULL, 0);
    static const char *const layer[] = {"layer"};
    dsc_metric_family_t *replans =
        dsc_metrics_gauge(m, "dsinfer_cluster_replans",
                          "Plans after the first (joins, drains, losses, EPLB)", NULL, 0);
    dsc_metric_family_t *rebalances = dsc_metrics_gauge(
        m, "dsinfer_cluster_rebalances", "Re-plans that placed experts by load (EPLB)", NULL, 0);
    dsc_metric_family_t *live_switches =
        dsc_metrics_gauge(m, "dsinfer_cluster_live_switches",
                          "Re-plans completed make-before-break (requests kept running)", NULL, 0);
    dsc_metric_family_t *preemptions = dsc_metrics_gauge(
        m, "dsinfer_cluster_preemptions",
        "Sequences preempted by a node's full KV pool and submitted again (re-prefilled)", NULL,
        0);
    static const char *const node_state[] = {"node", "state"}, *const node_only[] = {"node"};
    b->kv_blocks = dsc_metrics_gauge(
        m, "dsinfer_node_kv_blocks",
        "KV pool blocks of each node: used by sequences, cached (prefix cache, evictable) or free",
        node_state, 2);
    b->node_preemptions =
        dsc_metrics_gauge(m, "dsinfer_node_preemptions",
                          "Sequences each node preempted for a full KV pool", node_only, 1);
    dsc_metric_family_t *imbalance = dsc_metrics_gauge(
        m, "dsinfer_expert_load_imbalance",
        "Expert load imbalance of the cluster under the current plan over the sliding window (0: "
        "no data)",
        NULL, 0);
    b->layer_imbalance =
        dsc_metrics_gauge(m, "dsinfer_expert_layer_imbalance",
                          "Expert load imbalance per MoE layer over the sliding window", layer, 1);
    static const char *const layer_expert[] = {"layer", "expert"};
    b->expert_tokens = dsc_metrics_gauge(
        m, "dsinfer_expert_tokens",
        "(token, slot) pairs routed to each expert over the sliding window (experts seen so far)",
        layer_expert, 2);
    dsc_metric_family_t *prefill = dsc_metrics_counter(
        m, "dsinfer_prefill_tokens_total",
        "Prompt tokens the nodes were asked to compute (re-submissions after a re-plan included)",
        NULL, 0);
    dsc_metric_family_t *shared = dsc_metrics_counter(
        m, "dsinfer_prefix_shared_tokens_total",
        "Prompt tokens copied from another choice's KV cache instead of computed (n > 1)", NULL, 0);
    dsc_metric_family_t *hit = dsc_metrics_counter(
        m, "dsinfer_prefix_cache_hit_tokens_total",
        "Prompt tokens the nodes found in their prefix cache instead of computing them", NULL, 0);
    dsc_metric_family_t *pcp = dsc_metrics_counter(
        m, "dsinfer_prefix_cache_prompt_tokens_total",
        "Prompt tokens of the sequences the nodes started (the hit rate's denominator)", NULL, 0);
    b->node_prefix_hit = dsc_metrics_gauge(
        m, "dsinfer_node_prefix_cache_hit_tokens",
        "Prompt tokens each node found in its prefix cache (every stage of a pipeline counts its "
        "own)",
        node_only, 1);
    dsc_metric_family_t *misses = dsc_metrics_counter(
        m, "dsinfer_prefix_cache_misses_total",
        "Sequences submitted again without prefix reuse: a later pipeline stage lacked blocks "
        "stage 0 found in its prefix cache",
        NULL, 0);
    if (hit == NULL || pcp == NULL || b->node_prefix_hit == NULL || misses == NULL ||
        (b->prefix_hit = dsc_metric_series(hit, NULL)) == NULL ||
        (b->prefix_prompt = dsc_metric_series(pcp, NULL)) == NULL ||
        (b->prefix_misses = dsc_metric_series(misses, NULL)) == NULL)
        return 0;
    if (replans == NULL || rebalances == NULL || live_switches == NULL || imbalance == NULL ||
        preemptions == NULL || b->kv_blocks == NULL || b->node_preemptions == NULL ||
        b->layer_imbalance == NULL || b->expert_tokens == NULL || prefill == NULL || shared == NULL)
        return 0;
    b->prefill_tokens = dsc_metric_series(prefill, NULL);
    b->shared_tokens = dsc_metric_series(shared, NULL);
    if (b->prefill_tokens == NULL || b->shared_tokens == NULL)
        return 0;
    dsc_metric_family_t *moved = dsc_metrics_counter(
        m, "dsinfer_cluster_kv_moved_sequences_total",
        "Sequences a live re-plan (a drain) moved to another node with their KV cache, without a "
        "prefill",
        NULL, 0);
    dsc_metric_family_t *moved_bytes = dsc_metrics_counter(
        m, "dsinfer_cluster_kv_moved_bytes_total", "KV cache bytes those moves carried", NULL, 0);
    dsc_metric_family_t *move_failed = dsc_metrics_counter(
        m, "dsinfer_cluster_kv_move_failures_total",
        "KV moves that failed (no room, a bad transfer, no answer) and fell back to a prefill",
        NULL, 0);
    dsc_metric_family_t *reprefilled = dsc_metrics_counter(
        m, "dsinfer_cluster_reprefilled_sequences_total",
        "Sequences a re-plan submitted again to be prefilled from their tokens (a lost node, a "
        "restart, a failed KV move)",
        NULL, 0);
    if (moved == NULL || moved_bytes == NULL || move_failed == NULL || reprefilled == NULL)
        return 0;
    b->kv_moved_seqs = dsc_metric_series(moved, NULL);
    b->kv_moved_bytes = dsc_metric_series(moved_bytes, NULL);
    b->kv_move_failures = dsc_metric_series(move_failed, NULL);
    b->reprefilled = dsc_metric_series(reprefilled, NULL);
    if (b->kv_moved_seqs == NULL || b->kv_moved_bytes == NULL || b->kv_move_failures == NULL ||
        b->reprefilled == NULL)
        return 0;
    b->replans = dsc_metric_series(replans, NULL);
    b->rebalances = dsc_metric_series(rebalances, NULL);
    b->live_switches = dsc_metric_series(live_switches, NULL);
    b->imbalance = dsc_metric_series(imbalance, NULL);
    b->preemptions = dsc_metric_series(preemptions, NULL);
    if (b->replans == NULL || b->rebalances == NULL || b->live_switches == NULL ||
        b->imbalance == NULL || b->preemptions == NULL)
        return 0;
    if (queued == NULL || running == NULL || prompt == NULL || gen == NULL || b->finished == NULL ||
        b->rejected == NULL || nodes == NULL || cseqs == NULL || cready == NULL)
        return 0;
    const char *joined[1] = {"joined"}, *ready[1] = {"ready"}, *dead[1] = {"dead"};
    b->queued = dsc_metric_series(queued, NULL);
    b->running = dsc_metric_series(running, NULL);
    b->prompt_tokens = dsc_metric_series(prompt, NULL);
    b->gen_tokens = dsc_metric_series(gen, NULL);
    b->nodes_joined = dsc_metric_series(nodes, joined);
    b->nodes_ready = dsc_metric_series(nodes, ready);
    b->nodes_dead = dsc_metric_series(nodes, dead);
    b->cluster_seqs = dsc_metric_series(cseqs, NULL);
    b->cluster_ready = dsc_metric_series(cready, NULL);
    return b->queued && b->running && b->prompt_tokens && b->gen_tokens && b->nodes_joined &&
           b->nodes_ready && b->nodes_dead && b->cluster_seqs && b->cluster_ready;
}

dsi_status_t dsc_backend_create(uv_loop_t *loop, const dsc_backend_config_t *cfg,
                                dsc_cluster_t *cluster, dsc_metrics_t *metrics, dsc_backend_t **out)
{
    if (cfg->model_dir == NULL || cfg->max_queue < 1 || cfg->max_context < 2 ||
        cfg->max_context > INT32_MAX || cfg->vocab_size < 1) {
        DSI_ERROR("backend: invalid configuration (model directory %s, max_queue %u, "
                  "max_context %u, vocab %d)",
                  cfg->model_dir ? cfg->model_dir : "missing", cfg->max_queue, cfg->max_context,
                  cfg->vocab_size);
        return DSI_ERR_INVALID_ARG;
    }
    dsi_status_t st = DSI_ERR_NOMEM;
    dsc_backend_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        goto err_nomem;
    dsi_list_init(&b->seqs);
    b->loop = loop;
    b->cluster = cluster;
    b->cfg = *cfg;
    b->cfg.model_dir = NULL;
    b->cfg.model_id = NULL;
    if (b->cfg.max_context > DST_MSG_MAX_TOKENS) {
        /* A re-plan re-submits the prompt and the tokens generated so far in one SUBMIT. */
        DSI_WARN("backend: a context of %u tokens is more than one SUBMIT carries: %d are served",
                 b->cfg.max_context, DST_MSG_MAX_TOKENS);
        b->cfg.max_context = DST_MSG_MAX_TOKENS;
    }
    b->seed_state = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    b->model_id = cfg->model_id != NULL ? strdup(cfg->model_id) : dir_name(cfg->model_dir);
    if (b->model_id == NULL)
        goto err_free;
    if ((st = dsc_tokenizer_load(cfg->model_dir, &b->tok)) != DSI_OK)
        goto err_free;
    dsc_backend_gen_config_load(b, cfg->model_dir);
    st = dsc_chat_template_load(cfg->model_dir, cfg->chat_style, &b->tpl);
    if (cfg->chat_style == DSC_CHAT_AUTO &&
        (st == DSI_ERR_NOT_FOUND || st == DSI_ERR_UNSUPPORTED)) {
        DSI_WARN("backend: %s has no DeepSeek chat template: using V3's (--chat-template r1 for "
                 "an R1 model)",
                 cfg->model_dir);
        st = dsc_chat_template_load(cfg->model_dir, DSC_CHAT_V3, &b->tpl);
    }
    if (st != DSI_OK)
        goto err_free;
    if (!register_metrics(b, metrics) || !dsc_backend_spec_register(b, metrics)) {
        DSI_ERROR("backend: cannot register the backend's metrics");
        st = DSI_ERR_INTERNAL;
        goto err_free;
    }
    uv_timer_init(loop, &b->tick);
    uv_timer_init(loop, &b->defer);
    b->tick.data = b->defer.data = b;
    b->handles_open = 2;
    uv_timer_start(&b->tick, on_tick, TICK_MS, TICK_MS);
    b->ever_ready = dsc_cluster_ready(cluster);
    dsc_cluster_on_state(cluster, on_cluster_state, b);
    dsc_cluster_on_admit(cluster, dsc_backend_admit_client, b);
    dsc_backend_refresh_gauges(b);
    DSI_INFO("backend: model '%s', %s chat template, context %u, at most %u sequences", b->model_id,
             dsc_chat_style_name(dsc_chat_template_style(b->tpl)), cfg->max_context,
             cfg->max_queue);
    *out = b;
    return DSI_OK;
err_free:
    dsc_chat_template_destroy(b->tpl);
    dsc_tokenizer_destroy(b->tok);
    free(b->model_id);
    free(b->expert_series);
    free(b);
    if (st != DSI_ERR_NOMEM)
        return st;
err_nomem:
    DSI_ERROR("backend: out of memory");
    return DSI_ERR_NOMEM;
}

static void on_handle_closed(uv_handle_t *h)
{
    dsc_backend_t *b = h->data;
    if (--b->handles_open > 0)
        return;
    dsc_chat_template_destroy(b->tpl);
    dsc_tokenizer_destroy(b->tok);
    free(b->model_id);
    free(b->expert_series);
    free(b);
}

void dsc_backend_destroy(dsc_backend_t *b)
{
    if (b == NULL)
        return;
    b->stopping = 1;
    dsc_cluster_on_state(b->cluster, NULL, NULL);
    dsc_cluster_on_admit(b->cluster, NULL, NULL);
    dsc_backend_drop_all(b);
    uv_close((uv_handle_t *)&b->tick, on_handle_closed);
    uv_close((uv_handle_t *)&b->defer, on_handle_closed);
}
