/*
 * bench.h - the benchmarks of `dsinfer bench <what>`, one bench_<what>.c each.
 * Same calling convention as the commands: argv[0] is the benchmark's name; returns an exit code.
 * Benchmarks measure; they never assert timings.
 */
#ifndef DSINFER_BENCH_H
#define DSINFER_BENCH_H

/* Add a line here when a benchmark is implemented: X(name, function, summary). */
#define DSINFER_BENCHES(X)                                                                         \
    X("tokenizer", dsinfer_bench_tokenizer, "tokenizer encode/decode throughput (MB/s, tokens/s)") \
    X("kernels", dsinfer_bench_kernels,                                                            \
      "matmul kernels vs measured memory bandwidth and FMA peak")                                  \
    X("ctrl", dsinfer_bench_ctrl, "control protocol: message encode/decode, loopback round trip")  \
    X("serve", dsinfer_bench_serve,                                                                \
      "HTTP API under load: throughput, goodput, latency percentiles, cluster events")             \
    X("compare", dsinfer_bench_compare, "ratios of the headline numbers of two bench serve JSONs") \
    X("transport", dsinfer_bench_transport, "UCX data plane: DISPATCH+COMBINE vs raw UCX AM")      \
    X("model", dsinfer_bench_model, "engine prefill/decode tok/s vs bandwidth / bytes per token")  \
    X("overlap", dsinfer_bench_overlap, "how far streaming from memory hides arithmetic per line") \
    X("grammar", dsinfer_bench_grammar,                                                            \
      "structured output: token trie, schema compile, mask us/token")                              \
    X("profile", dsinfer_bench_profile,                                                            \
      "this machine's profile for plan --estimate: bandwidth, kernels, attention, transport")

#define DSINFER_BENCH_DECLARE(name, fn, summary) int fn(int argc, char **argv);
DSINFER_BENCHES(DSINFER_BENCH_DECLARE)
#undef DSINFER_BENCH_DECLARE

#endif
