/*
 * dsinfer config: every setting of a program with its value and where it came from (default,
 * config file, environment, flag). Takes the program's own options, so
 * `dsinfer config --program node --threads 4` shows what `dsinfer-node --threads 4` would use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_settings.h"
#include "dsinfer_commands.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dsinfer config [--program P] [P's options]\n"
        "Prints every setting of program P (default: all) as `name = value  # source`, the\n"
        "source being the default, the config file (with its line), the environment or a flag.\n"
        "P is one of run, serve, plan, inspect, coordinator, node, cluster (dsinfer-cluster),\n"
        "admin (dsinfer cluster).\n");
}

int dsinfer_cmd_config(int argc, char **argv)
{
    const char *program = "all";
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    if (rest == NULL)
        return 1;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && strcmp(argv[i], "--program") == 0 && i + 1 < argc)
            program = argv[++i];
        else if (i > 0 && strncmp(argv[i], "--program=", 10) == 0)
            program = argv[i] + 10;
        else
            rest[n++] = argv[i];
    }
    unsigned mask = strcmp(program, "all") == 0 ? DSI_P_ALL : dsi_settings_program(program);
    if (mask == 0 || mask == DSI_P_CONFIG) {
        fprintf(stderr,
                "dsinfer config: --program: '%s' is not valid: expected one of all, run, serve, "
                "plan, inspect, coordinator, node, cluster, admin\n",
                program);
        free(rest);
        return 2;
    }
    dsi_settings_t s;
    int rc = dsi_settings_parse(&s, mask, n, rest, usage);
    if (rc == 0 && dsi_settings_int(&s, DSI_S_MARKDOWN))
        dsi_settings_markdown(stdout);
    else if (rc == 0)
        dsi_settings_print(stdout, &s);
    dsi_settings_cleanup(&s);
    free(rest);
    return rc == 1 ? 0 : rc;
}
