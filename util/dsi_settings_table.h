/*
 * dsi_settings_table.h - every setting of every dsinfer program, in one table (as UCX's
 * ucs_config_field_t tables are). Included by dsi_settings.h; edit a row here and every program,
 * `dsinfer config`, the --help texts and the environment variables follow.
 *
 * X(id, name, type, default, min, max, meta, programs, flags, help)
 *   id        DSI_S_<id>, the index programs read the value with
 *   name      the --flag without dashes; the environment variable is DSINFER_<NAME> (upper case,
 *             '-' -> '_'); the config-file key is the name itself
 *   type      STR, INT, FLOAT, SIZE (bytes, K/M/G/T suffixes = powers of 1024), BOOL, ENUM
 *             (choices in meta, '|'-separated), ADDR (HOST:PORT, [IPV6]:PORT or :PORT)
 *   default   as text (NULL: none); "auto" (with DSI_SF_AUTO) is the value 0, resolved by the
 *             program as the help says
 *   min, max  range of INT / FLOAT / SIZE values
 *   programs  DSI_P_* mask of the programs that take it
 *   flags     DSI_SF_AUTO: accepts "auto" (= 0); DSI_SF_CLI: a flag only (no environment variable,
 *             no config-file key: per-invocation input such as a prompt)
 */
#ifndef DSI_SETTINGS_TABLE_H
#define DSI_SETTINGS_TABLE_H

/* Who takes what, grouped. */
#define DSI_P_NODES  (DSI_P_NODE | DSI_P_SERVE | DSI_P_RUN | DSI_P_CLUSTER) /* node options */
#define DSI_P_API    (DSI_P_SERVE | DSI_P_COORD | DSI_P_CLUSTER)            /* API servers */
#define DSI_P_COORDS (DSI_P_SERVE | DSI_P_COORD | DSI_P_CLUSTER)            /* coordinators */
#define DSI_P_GEN    (DSI_P_RUN | DSI_P_CLUSTER)                            /* one generation */
#define DSI_P_MODELED                                                                  \
    (DSI_P_RUN | DSI_P_SERVE | DSI_P_PLAN | DSI_P_INSPECT | DSI_P_COORD | DSI_P_NODE | \
     DSI_P_CLUSTER)

#define DSI_I32_MAX 2147483647.0
#define DSI_CTX_MAX 16777216.0

/* clang-format off */
#define DSI_SETTINGS(X) \
    X(CONFIG_FILE, "config-file", STR, "/etc/dsinfer/dsinfer.conf", 0, 0, "PATH", DSI_P_ALL, 0, \
      "settings file of `name = value` lines and # comments, read when it exists") \
    X(MODEL, "model", STR, NULL, 0, 0, "DIR", DSI_P_MODELED, 0, \
      "the checkpoint directory (config.json, safetensors, tokenizer)") \
    X(CONFIG, "config", STR, NULL, 0, 0, "FILE", DSI_P_PLAN | DSI_P_COORD, 0, \
      "a config.json alone, instead of --model (no weights, no tokenizer)") \
    X(MAX_CONTEXT, "max-context", INT, "auto", 2, DSI_CTX_MAX, "N", DSI_P_MODELED, DSI_SF_AUTO, \
      "tokens per sequence (prompt + generated); the planner reserves KV cache for at least one " \
      "such sequence on every node. auto: the model's max_position_embeddings") \
    X(THREADS, "threads", INT, "auto", 0, 1024, "N", DSI_P_NODES, DSI_SF_AUTO, \
      "compute threads of each node process (auto: the CPUs of the machine, or of --numa-node, " \
      "shared evenly by local nodes)") \
    X(MEM, "mem", SIZE, "auto", 1, 1.8e19, "SIZE", DSI_P_NODES | DSI_P_PLAN, DSI_SF_AUTO, \
      "memory of each node for weights and KV cache (auto: the available memory of the machine, " \
      "or of the node's NUMA node, minus --mem-headroom, shared evenly by local nodes)") \
    X(MEM_HEADROOM, "mem-headroom", SIZE, "4G", 0, 1.8e19, "SIZE", DSI_P_NODES | DSI_P_PLAN, 0, \
      "memory --mem auto leaves to the rest of the machine (at most half the available memory)") \
    X(NUMA_NODE, "numa-node", INT, "-1", -1, 1023, "N", DSI_P_NODES, 0, \
      "bind each node's threads and memory to this NUMA node (-1: not bound)") \
    X(COORDINATOR_WAIT_MS, "coordinator-wait-ms", INT, "300000", 0, 86400000, "MS", DSI_P_NODE, 0, \
      "a node that loses its coordinator keeps its slice and connects again for this long, so " \
      "a restarted coordinator finds it serving (0: stop at once)") \
    X(WEIGHT_FORMAT, "weight-format", ENUM, "auto", 0, 0, "auto|fp8|bf16|int8|int4|int4-g128", \
      DSI_P_NODES | DSI_P_PLAN, 0, \
      "re-quantize the projections at load (auto: as stored)") \
    X(KV_POOL, "kv-pool", SIZE, "auto", 0, 1.8e19, "SIZE", DSI_P_NODES, DSI_SF_AUTO, \
      "memory of each node's latent-KV block pool, shared by its sequences, the f32 open block " \
      "each bf16 or fp8 sequence keeps included (auto: --mem less the node's weights and 64 MiB, " \
      "and at least one --max-context sequence with its open block); a sequence that cannot " \
      "grow in a full pool is preempted and prefilled again later") \
    X(KV_DTYPE, "kv-dtype", ENUM, "bf16", 0, 0, "bf16|f32|fp8", \
      DSI_P_NODES | DSI_P_PLAN | DSI_P_COORD, 0, \
      "storage of the latent KV cache: bf16 (half of f32), f32 (exact), fp8 (e4m3 with one f32 " \
      "scale per token row, about a quarter of f32); the planner counts the cache in it. With " \
      "bf16 and fp8 each sequence's open block (its last, not yet full, 64 positions) stays f32 " \
      "too and a token reads its own block from there (docs/MEMORY.md)") \
    X(PREFIX_CACHE, "prefix-cache", ENUM, "on", 0, 0, "on|off", DSI_P_NODES | DSI_P_COORDS, 0, \
      "automatic prefix caching: full KV blocks of finished prompts stay cached (evicted least " \
      "recently used when the pool needs room) and a prompt that starts with cached blocks " \
      "skips computing them; coordinators send a request to the lane holding most of its " \
      "prefix (docs/MEMORY.md, Prefix cache)") \
    X(MAX_BATCH_TOKENS, "max-batch-tokens", INT, "256", 1, 65536, "N", \
      DSI_P_NODES | DSI_P_PLAN, 0, \
      "tokens per micro-batch at stage 0 (long prompts are chunked)") \
    X(STAGES, "stages", INT, "auto", 1, 256, "S", \
      DSI_P_RUN | DSI_P_SERVE | DSI_P_PLAN | DSI_P_COORD | DSI_P_CLUSTER, DSI_SF_AUTO, \
      "pipeline stages (auto: the planner chooses the fewest that fit)") \
    X(LOCAL_NODES, "local-nodes", INT, "auto", 1, 64, "N", DSI_P_RUN | DSI_P_SERVE, DSI_SF_AUTO, \
      "dsinfer-node processes started on loopback (auto: run generates in this process, " \
      "serve starts 1)") \
    X(COORDINATOR, "coordinator", ADDR, NULL, 0, 0, "HOST:PORT", \
      DSI_P_RUN | DSI_P_NODE | DSI_P_ADMIN, 0, \
      "a running coordinator's control address (node: the one to join; run: send the request " \
      "there; cluster: the one to administer)") \
    X(CONTROL, "control", ADDR, "127.0.0.1:7000", 0, 0, "HOST:PORT", DSI_P_COORD, 0, \
      "control address for nodes and control clients (port 0: any free port)") \
    X(PORT_FILE, "port-file", STR, NULL, 0, 0, "FILE", DSI_P_COORD, DSI_SF_CLI, \
      "write the bound control port to FILE") \
    X(NAME, "name", STR, NULL, 0, 0, "NAME", DSI_P_NODE, 0, \
      "unique node name (none: HOSTNAME-PID)") \
    X(SECRET_FILE, "secret-file", STR, NULL, 0, 0, "FILE", \
      DSI_P_NODE | DSI_P_COORD | DSI_P_ADMIN, 0, \
      "file holding the cluster's shared secret (none: the DSINFER_SECRET variable)") \
    X(LOGITS_DIR, "logits-dir", STR, NULL, 0, 0, "DIR", DSI_P_NODE, 0, \
      "debugging: the last stage appends each sampled step's logits to DIR/seq-<id>.f32") \
    X(NODES, "nodes", INT, NULL, 1, 4096, "N", DSI_P_COORD | DSI_P_PLAN, 0, \
      "nodes the cluster waits for (plan: nodes to plan, ids 0..N-1)") \
    X(NODE_MEM, "node-mem", STR, NULL, 0, 0, "SIZE,...", DSI_P_PLAN, 0, \
      "memory of each node, one size per node (instead of --nodes and --mem)") \
    X(OVERHEAD, "overhead", SIZE, "2G", 0, 1.8e19, "SIZE", DSI_P_PLAN, 0, \
      "fixed runtime memory per node") \
    X(REMOVE_NODES, "remove-nodes", STR, NULL, 0, 0, "ID,...", DSI_P_PLAN, DSI_SF_CLI, \
      "then re-plan without these nodes and show how many expert copies and bytes move") \
    X(ESTIMATE, "estimate", STR, NULL, 0, 0, "PROFILE.json", DSI_P_PLAN, DSI_SF_CLI, \
      "also estimate decode and prefill speed of the plan on machines of this profile (dsinfer " \
      "bench profile --json; docs/PERFORMANCE.md)") \
    X(NET, "net", STR, NULL, 0, 0, "GBIT,US", DSI_P_PLAN, DSI_SF_CLI, \
      "with --estimate: the network between nodes, Gbit/s and one-way latency in microseconds " \
      "(none: the profile's)") \
    X(CONCURRENCY, "concurrency", INT, "1", 1, 1048576, "C", DSI_P_PLAN, DSI_SF_CLI, \
      "with --estimate: decode streams running at once") \
    X(PROMPT_LEN, "prompt-len", INT, "1024", 1, DSI_CTX_MAX, "L", DSI_P_PLAN, DSI_SF_CLI, \
      "with --estimate: prompt tokens of the prefill estimate, and the context of the decode " \
      "estimate") \
    X(NODES_PER_MACHINE, "nodes-per-machine", INT, "1", 1, 4096, "K", DSI_P_PLAN, DSI_SF_CLI, \
      "with --estimate: node processes sharing one machine of the profile (as the local nodes " \
      "of dsinfer serve do); work they run at once shares its CPUs") \
    X(JSON, "json", BOOL, "false", 0, 0, "", \
      DSI_P_RUN | DSI_P_PLAN | DSI_P_INSPECT | DSI_P_CLUSTER | DSI_P_ADMIN, DSI_SF_CLI, \
      "print JSON instead of text") \
    X(TIMEOUT_MS, "timeout-ms", INT, "30000", 1, 3600000, "MS", DSI_P_ADMIN, 0, \
      "give up when the coordinator has not answered within MS") \
    X(PROMPT_IDS, "prompt-ids", STR, NULL, 0, 0, "5,17,300", DSI_P_GEN, DSI_SF_CLI, \
      "the prompt as token ids") \
    X(PROMPT, "prompt", STR, NULL, 0, 0, "TEXT", DSI_P_GEN, DSI_SF_CLI, \
      "the prompt as text (the model's tokenizer)") \
    X(CHAT, "chat", STR, NULL, 0, 0, "TEXT", DSI_P_GEN, DSI_SF_CLI, \
      "a user message, through the chat template") \
    X(SYSTEM, "system", STR, NULL, 0, 0, "TEXT", DSI_P_GEN, DSI_SF_CLI, \
      "a system message before --chat") \
    X(MAX_TOKENS, "max-tokens", INT, "16", 0, DSI_CTX_MAX, "N", DSI_P_GEN, 0, \
      "tokens generated at most (fewer at the model's eos)") \
    X(TEMPERATURE, "temperature", FLOAT, "0", 0, 100, "T", DSI_P_GEN, 0, \
      "sampling temperature (0: greedy)") \
    X(TOP_P, "top-p", FLOAT, "1", 1e-9, 1, "P", DSI_P_GEN, 0, "nucleus sampling mass") \
    X(TOP_K, "top-k", INT, "0", 0, DSI_I32_MAX, "K", DSI_P_GEN, 0, \
      "sample among the K likeliest tokens (0: all)") \
    X(SEED, "seed", INT, "0", 0, 9.2e18, "S", DSI_P_GEN, 0, "sampler seed") \
    X(LOGITS_OUT, "logits-out", STR, NULL, 0, 0, "FILE", DSI_P_RUN, DSI_SF_CLI, \
      "write each generated step's logits as little-endian f32 [steps, vocab] (one process only)") \
    X(PREFILL_CHUNK, "prefill-chunk", INT, "256", 1, 1048576, "N", DSI_P_RUN, 0, \
      "prompt tokens per forward pass in one process") \
    X(SPECULATIVE_TOKENS, "speculative-tokens", INT, "1", 0, 8, "K", \
      DSI_P_NODES | DSI_P_PLAN | DSI_P_COORD, 0, \
      "speculative decoding with the checkpoint's MTP layer: K tokens drafted per step, " \
      "verified together (0: off; a checkpoint without the layer decodes without); the " \
      "planner places the layer with the last stage unless 0") \
    X(MTP_LOGITS_OUT, "mtp-logits-out", STR, NULL, 0, 0, "FILE", DSI_P_RUN, DSI_SF_CLI, \
      "write the MTP layer's logits over the prompt as little-endian f32 [prompt - 1, vocab] " \
      "(one process only)") \
    X(CHAT_TEMPLATE, "chat-template", ENUM, "auto", 0, 0, "auto|v3|r1|v3.1", \
      DSI_P_GEN | DSI_P_API, 0, "chat template (auto: from tokenizer_config.json)") \
    X(THINKING, "thinking", BOOL, "false", 0, 0, "", DSI_P_RUN | DSI_P_CLUSTER, DSI_SF_CLI, \
      "--chat with DeepSeek-V3.1's template in thinking mode (its `thinking` variable)") \
    X(LISTEN, "listen", ADDR, "127.0.0.1:8000", 0, 0, "HOST:PORT", DSI_P_API, 0, \
      "HTTP address of the OpenAI API (port 0: any free port); dsinfer-coordinator and " \
      "dsinfer-cluster serve only when it is set") \
    X(API_KEY, "api-key", STR, NULL, 0, 0, "KEY", DSI_P_API, 0, \
      "require Authorization: Bearer KEY on /v1/ (none: no key)") \
    X(API_KEY_FILE, "api-key-file", STR, NULL, 0, 0, "FILE", DSI_P_API, 0, \
      "read the API key from the first line of FILE (instead of --api-key)") \
    X(MODEL_NAME, "model-name", STR, NULL, 0, 0, "ID", DSI_P_API, 0, \
      "the model id of the API (none: the model directory's name)") \
    X(MAX_QUEUE, "max-queue", INT, "64", 1, 65536, "N", DSI_P_API, 0, \
      "requests generated at once; more get 429") \
    X(MAX_PROMPTS, "max-prompts", INT, "64", 1, 65536, "N", DSI_P_API, 0, \
      "prompts in one /v1/completions batch (prompt as an array); more get 400") \
    X(MAX_BODY, "max-body", SIZE, "4M", 1024, 4294967296.0, "BYTES", DSI_P_API, 0, \
      "largest request body, larger gets 413") \
    X(MAX_HEADER, "max-header", SIZE, "16K", 1024, 4294967296.0, "BYTES", DSI_P_API, 0, \
      "largest request head, larger gets 431") \
    X(REQUEST_TIMEOUT, "request-timeout", INT, "10000", 1, 86400000, "MS", DSI_P_API, 0, \
      "time to receive a whole request, then 408") \
    X(IDLE_TIMEOUT, "idle-timeout", INT, "60000", 1, 86400000, "MS", DSI_P_API, 0, \
      "keep-alive connection without a request is closed after MS") \
    X(MAX_CONNECTIONS, "max-connections", INT, "1024", 1, 1000000, "N", DSI_P_API, 0, \
      "open connections, more get 503") \
    X(MAX_TOKENS_LIMIT, "max-tokens-limit", INT, "auto", 1, DSI_I32_MAX, "N", DSI_P_API, \
      DSI_SF_AUTO, "largest max_tokens accepted, larger gets 400 (auto: --max-context - 1)") \
    X(DEFAULT_MAX_TOKENS, "default-max-tokens", INT, "auto", 1, DSI_I32_MAX, "N", DSI_P_API, \
      DSI_SF_AUTO, "max_tokens of requests without one (auto: the rest of --max-context)") \
    X(HEARTBEAT_MS, "heartbeat-ms", INT, "500", 10, 600000, "MS", DSI_P_COORDS, 0, \
      "heartbeat period towards the nodes") \
    X(NODE_TIMEOUT_MS, "node-timeout-ms", INT, "2000", 50, 3600000, "MS", DSI_P_COORDS, 0, \
      "a node silent this long is dead (re-plan without it)") \
    X(LOAD_WINDOW_MS, "load-window-ms", INT, "1000", 10, 3600000, "MS", DSI_P_COORDS, 0, \
      "expert-load counting window") \
    X(LOAD_WINDOWS, "load-windows", INT, "60", 1, 100000, "N", DSI_P_COORDS, 0, \
      "expert-load windows kept") \
    X(REDUNDANT_EXPERTS, "redundant-experts", INT, "auto", 0, 1048576, "R", DSI_P_COORDS, \
      DSI_SF_AUTO, "extra expert replicas per layer when rebalancing (auto: experts/8)") \
    X(REBALANCE_THRESHOLD, "rebalance-threshold", FLOAT, "0", 0, 1e6, "X", DSI_P_COORDS, 0, \
      "re-place experts when the load imbalance passes X > 1 (0: only on `dsinfer cluster " \
      "rebalance`)") \
    X(REBALANCE_INTERVAL_MS, "rebalance-interval-ms", INT, "60000", 0, 86400000, "MS", \
      DSI_P_COORDS, 0, "automatic rebalances at most once per MS") \
    X(ONLINE_BIAS_GAMMA, "online-bias-gamma", FLOAT, "0", 0, 1, "G", DSI_P_COORDS, 0, \
      "move the routing biases by G per load window (0: never; outputs then differ from the " \
      "checkpoint's)") \
    X(REPLAN, "replan", ENUM, "live", 0, 0, "restart|live", DSI_P_COORDS, 0, \
      "live: re-plans switch while requests run; restart: re-plans pause and re-prefill them") \
    X(KERNELS, "kernels", ENUM, "auto", 0, 0, "auto|scalar|avx2|avx512|avx512vnni|avx512bf16", \
      DSI_P_NODES, 0, \
      "kernel level (auto: the highest the CPU supports; a lower one only lowers it). " \
      "avx512bf16 is never chosen unless named: it rounds activations to bf16 (changes results); " \
      "dsinfer bench and dsinfer version take the variable") \
    X(FP8, "fp8", ENUM, "auto", 0, 0, "auto|int|f16c", DSI_P_NODES, 0, \
      "fp8 conversion of the AVX2 kernels: int (integer ops) or f16c (auto: int on AMD CPUs, " \
      "f16c elsewhere); the AVX-512 kernels' one-token products use a byte table (AVX512_VBMI) " \
      "unless f16c") \
    X(ACT, "act", ENUM, "int8", 0, 0, "int8|f32", DSI_P_NODES, 0, \
      "decode activations of integer weights: int8 (quantized per token where the level has " \
      "int8 kernels) or f32 (exact)") \
    X(PROGRAM, "program", ENUM, "all", 0, 0, \
      "all|run|serve|plan|inspect|coordinator|node|cluster|admin", DSI_P_CONFIG, DSI_SF_CLI, \
      "show the settings of this program") \
    X(MARKDOWN, "markdown", BOOL, "false", 0, 0, "", DSI_P_CONFIG, DSI_SF_CLI, \
      "print the settings table itself as Markdown (docs/SETTINGS.md is this output)")
/* clang-format on */

/*
 * Old names: X(alias, id, programs). Each still works where the programs take it and warns once
 * that it is deprecated.
 */
#define DSI_SETTING_ALIASES(X)                                                                     \
    X("http", LISTEN, DSI_P_API)                                                                   \
    X("node-threads", THREADS, DSI_P_SERVE)                                                        \
    X("kv-tokens", MAX_CONTEXT, DSI_P_PLAN | DSI_P_COORD)                                          \
    X("context", MAX_CONTEXT, DSI_P_INSPECT)                                                       \
    X("mem-per-node", MEM, DSI_P_PLAN)                                                             \
    X("template", CHAT_TEMPLATE, DSI_P_GEN | DSI_P_API)

/*
 * Variables read from the environment only (not options): X(name, help). dsi_env() reads these
 * and the settings' DSINFER_<NAME>; no other file calls getenv for a DSINFER_ variable (kernels/
 * reads none: the programs pass --kernels, --fp8 and --act to it with dsk_set_options).
 */
#define DSI_ENV_ONLY(X)                                                                            \
    X("DSINFER_SECRET", "the cluster's shared secret, when no --secret-file is given")             \
    X("DSINFER_LOG", "log level: error, warn, info (default), debug, trace")                       \
    X("DSINFER_TOKENIZER_REGEX", "force the pre-tokenizer's regex engine (testing)")               \
    X("DSINFER_SPEC_SCRIPT", "token ids greedy requests draft across stages (testing)")            \
    X("DSINFER_TEST_PREFIX_DROP", "1: later stages drop cached KV blocks first (testing)")         \
    X("DSINFER_NODE_BIN", "the dsinfer-node program that serve and run --local-nodes start")

#endif
