/* dsinfer - the command-line front end: dispatches to the subcommands of dsinfer_commands.h. */
#include <stdio.h>
#include <string.h>

#include "dsinfer_commands.h"

static const dsinfer_command_t commands[] = {
#define DSINFER_CMD_ENTRY(name, fn, summary) {name, fn, summary},
    DSINFER_COMMANDS(DSINFER_CMD_ENTRY)
#undef DSINFER_CMD_ENTRY
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dsinfer <command> [options]   (dsinfer <command> --help for its options)\n\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "dsinfer: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
