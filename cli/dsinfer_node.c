/* dsinfer-node: the node daemon. See node/daemon/dsn_node.h and docs/DEPLOY.md. */
#include <stdio.h>
#include <stdlib.h>

#include "cli_settings.h"
#include "dsi_log.h"
#include "dsn_node.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer-node --coordinator HOST:PORT --model DIR [options]\n"
            "Joins the coordinator (retrying until it answers), loads the slice of the model its\n"
            "plan gives this node, and serves it until SHUTDOWN or SIGTERM. The shared secret\n"
            "comes from --secret-file or DSINFER_SECRET. With --numa-node N, run one node per\n"
            "NUMA node of a server (docs/DEPLOY.md, \"NUMA\").\n");
}

int main(int argc, char **argv)
{
    dsi_settings_t s;
    int rc = dsi_settings_parse(&s, DSI_P_NODE, argc, argv, usage);
    if (rc != 0) {
        rc = rc == 1 ? 0 : rc; /* 1: --help */
        goto out;
    }
    rc = 2;
    if (dsi_settings_str(&s, DSI_S_COORDINATOR) == NULL ||
        dsi_settings_str(&s, DSI_S_MODEL) == NULL) {
        fprintf(stderr, "dsinfer-node: --coordinator and --model are required\n");
        usage(stderr);
        goto out;
    }
    dsn_config_t cfg;
    dsn_node_opts_t o;
    if ((rc = cli_config_load(dsi_settings_str(&s, DSI_S_MODEL), NULL, &cfg)) != 0 ||
        (rc = cli_node_opts(&s, &cfg, 1, &o)) != 0)
        goto out;
    dsi_status_t st = dsn_node_run(&o);
    if (st != DSI_OK)
        fprintf(stderr, "dsinfer-node: %s\n", dsi_status_message(st));
    rc = st == DSI_OK ? 0 : 1;
out:
    dsi_settings_cleanup(&s);
    return rc;
}
