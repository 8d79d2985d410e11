/*
 * dsinfer-coordinator: the coordinator daemon. Waits for --nodes node daemons, plans, and serves
 * requests from clients of the control protocol (dsinfer run --coordinator ADDR) until SIGINT or
 * SIGTERM, then shuts the nodes down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_settings.h"
#include "dsi_log.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer-coordinator --nodes N (--model DIR | --config FILE) [options]\n"
            "Waits for N node daemons on --control, plans, and serves requests until SIGINT or\n"
            "SIGTERM, then shuts the nodes down. With --listen HOST:PORT (needs --model) it also\n"
            "serves the OpenAI API there (docs/API.md). The shared secret comes from\n"
            "--secret-file or DSINFER_SECRET. Expert load and rebalancing: docs/ELASTICITY.md.\n");
}

/* --port-file: the bound control port, for --control HOST:0. */
static int write_port_file(void *arg, dsc_cluster_t *cluster)
{
    const char *port_file = arg;
    if (port_file == NULL)
        return 0;
    FILE *f = fopen(port_file, "w");
    if (f == NULL || fprintf(f, "%u\n", dsc_cluster_port(cluster)) < 0 || fclose(f) != 0) {
        fprintf(stderr, "dsinfer-coordinator: --port-file %s: cannot write\n", port_file);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    dsi_settings_t s;
    int rc = dsi_settings_parse(&s, DSI_P_COORD, argc, argv, usage);
    if (rc != 0) {
        dsi_settings_cleanup(&s);
        return rc == 1 ? 0 : rc; /* 1: --help */
    }
    dsi_log_set_tag("coordinator");
    const char *model = dsi_settings_str(&s, DSI_S_MODEL);
    const char *config = dsi_settings_str(&s, DSI_S_CONFIG);
    const char *port_file = dsi_settings_str(&s, DSI_S_PORT_FILE);
    dsc_cluster_opts_t o;
    dsc_cluster_opts_default(&o);
    o.listen = dsi_settings_str(&s, DSI_S_CONTROL);
    o.expect_nodes = (uint32_t)dsi_settings_int(&s, DSI_S_NODES);
    if (o.expect_nodes == 0 || (model == NULL) == (config == NULL)) {
        fprintf(stderr,
                "dsinfer-coordinator: --nodes and one of --model / --config are required\n");
        usage(stderr);
        return 2;
    }
    if (dsi_settings_given(&s, DSI_S_LISTEN) && model == NULL) {
        fprintf(stderr, "dsinfer-coordinator: --listen (the API) needs --model (the tokenizer)\n");
        return 2;
    }
    o.model_dir = model; /* the router biases; none with --config alone */
    dsn_config_t cfg;
    long long max_context;
    if ((rc = cli_config_load(model, config, &cfg)) != 0 ||
        (rc = cli_max_context(&s, &cfg, &max_context)) != 0 || (rc = cli_cluster_tune(&s, &o)) != 0)
        return rc;
    o.plan.kv_tokens = (uint64_t)max_context; /* one full-length sequence per node */
    o.plan.kv_token_layer = cli_kv_token_layer(&s, &cfg);
    o.plan.mtp = dsi_settings_int(&s, DSI_S_SPECULATIVE_TOKENS) > 0; /* the MTP layer */
    if (o.plan.kv_token_layer == 0)
        return 2;
    if (dst_secret_load(dsi_settings_str(&s, DSI_S_SECRET_FILE), &o.secret) != DSI_OK)
        return 1;

    rc = cli_coordinator_run(&s, &cfg, &o, max_context, write_port_file, (void *)port_file);
    dsi_settings_cleanup(&s);
    return rc;
}
