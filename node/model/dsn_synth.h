/*
 * dsn_synth.h - synthetic DeepSeek-V3 checkpoints with deterministic random weights.
 *
 * Writes a complete model directory in the release's layout: config.json (with YaRN rope_scaling,
 * and quantization_config for FP8), safetensors shards with model.safetensors.index.json (or a
 * single model.safetensors when everything fits one shard), FP8 e4m3 projections with 128x128
 * weight_scale_inv blocks (or BF16 projections), bf16 norms/embeddings/head/router, f32 router
 * bias, and a small byte-level BPE tokenizer (tokenizer.json, tokenizer_config.json).
 *
 * Values depend only on the options and the seed (each tensor has its own random stream, keyed by
 * its name), never on sharding. Writing is streaming: memory stays at a few MB whatever the size.
 * Magnitudes keep activations O(1): projections uniform with std 1/sqrt(in_features), norms near
 * 1, embeddings std 1.
 */
#ifndef DSN_SYNTH_H
#define DSN_SYNTH_H

#include <stdint.h>

#include "dsi_status.h"
#include "dsn_config.h"

typedef enum {
    DSN_SYNTH_TINY = 0, /* the tiny-v3 fixture's shape */
    DSN_SYNTH_V3,       /* DeepSeek-V3's real widths, few layers and experts */
} dsn_synth_preset_t;

typedef struct {
    dsn_synth_preset_t preset;
    int layers;  /* 0: preset default (tiny 4, v3 3) */
    int experts; /* routed experts; 0: preset default (tiny 32, v3 16) */
    int vocab;   /* 0: preset default (tiny 1024, v3 129280) */
    int fp8;     /* 1: FP8 projections with scales; 0: BF16 projections */
    uint64_t seed;
    uint64_t shard_size; /* bytes per shard before a new one starts; 0: 4 GiB */
    double router_skew;  /* > 0: router bias and gate favour top_k experts (load tests) */
    int mtp;             /* 1: the MTP module as layer `layers` (num_nextn_predict_layers 1) */
} dsn_synth_opts_t;

/* Defaults: tiny preset, fp8, seed 0, 4 GiB shards, no skew. */
void dsn_synth_opts_init(dsn_synth_opts_t *opts);

/*
 * The configuration the options give (validated like a loaded config.json). Errors name the
 * option: DSI_ERR_INVALID_ARG.
 */
dsi_status_t dsn_synth_config(const dsn_synth_opts_t *opts, dsn_config_t *out);

/*
 * Bytes of tensor data (headers excluded) the checkpoint would have, and the number of tensors.
 * Both outputs optional.
 */
dsi_status_t dsn_synth_estimate(const dsn_synth_opts_t *opts, uint64_t *bytes, uint64_t *tensors);

/*
 * Write the checkpoint into `dir` (created if absent; existing model files are overwritten).
 * Refuses (DSI_ERR_CAPACITY) when the file system has less free space than the checkpoint needs.
 */
dsi_status_t dsn_synth_write(const dsn_synth_opts_t *opts, const char *dir);

/*
 * Write tokenizer.json and tokenizer_config.json for a model of `vocab` ids (>= 274). Token ids:
 * 0-2 bos/eos/pad, 3-258 the 256 byte tokens in GPT-2 ByteLevel order, then merges learnt from
 * a built-in English text (at most 500, fewer if the vocab is small), then the 15 chat and tool
 * markers (<｜User｜>, <｜Assistant｜>, ...). Returns the tokenizer size in *n_tokens (optional).
 */
dsi_status_t dsn_synth_tokenizer_write(const char *dir, int vocab, int *n_tokens);

#endif
