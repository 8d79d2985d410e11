/*
 * dsinfer_commands.h - the subcommands of `dsinfer`, one cmd_<name>.c each.
 *
 * Each command takes argv as main() would give it with argv[0] = the command name, parses its
 * options with getopt_long, prints errors naming the bad option to stderr and returns the process
 * exit code (0 ok, 1 runtime error, 2 usage error).
 */
#ifndef DSINFER_COMMANDS_H
#define DSINFER_COMMANDS_H

typedef int (*dsinfer_cmd_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    dsinfer_cmd_fn fn;
    const char *summary;
} dsinfer_command_t;

/* Add a line here when a command is implemented: X(name, function, summary). */
#define DSINFER_COMMANDS(X)                                                                        \
    X("version", dsinfer_cmd_version, "print the version and the kernel level this CPU gets")      \
    X("bench", dsinfer_cmd_bench, "benchmarks: dsinfer bench --help lists them")                   \
    X("inspect", dsinfer_cmd_inspect, "validate a model directory and show what loading it needs") \
    X("synth", dsinfer_cmd_synth, "write a synthetic DeepSeek-V3 checkpoint (random weights)")     \
    X("run", dsinfer_cmd_run, "generate from a prompt (one process or a local cluster)")           \
    X("plan", dsinfer_cmd_plan, "plan stages and expert placement for a cluster (no weights)")     \
    X("tokenize", dsinfer_cmd_tokenize, "text (stdin) to token ids with a model's tokenizer")      \
    X("detokenize", dsinfer_cmd_detokenize, "token ids to text with a model's tokenizer")          \
    X("serve", dsinfer_cmd_serve, "serve the OpenAI API with local node processes")                \
    X("cluster", dsinfer_cmd_cluster, "administer a running cluster: status, rebalance, drain")   \
    X("config", dsinfer_cmd_config, "show every setting, its value and where it came from")

#define DSINFER_CMD_DECLARE(name, fn, summary) int fn(int argc, char **argv);
DSINFER_COMMANDS(DSINFER_CMD_DECLARE)
#undef DSINFER_CMD_DECLARE

#endif
