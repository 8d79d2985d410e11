/*
 * dsn_checkpoint.h - a model directory: config.json plus safetensors, sharded through
 * model.safetensors.index.json or a single model.safetensors.
 *
 * Open validates the index (every listed shard exists and is a valid safetensors file, every
 * weight_map entry is found in its shard, no shard holds tensors the index does not list, no shard
 * file is unlisted) and the config. The weight loader (dsn_weights) then takes every tensor its
 * slice needs through dsn_checkpoint_matrix() / dsn_checkpoint_vector_f32(), which check shape and
 * dtype, in either release variant: FP8 with weight_scale_inv companions, or the BF16 cast without
 * them. MTP layer tensors (layers >= num_hidden_layers) are not in the main table (count / at):
 * those of the layers num_nextn_predict_layers declares can be found by name (dsn_mtp.h).
 */
#ifndef DSN_CHECKPOINT_H
#define DSN_CHECKPOINT_H

#include "dsk.h"
#include "dsn_config.h"
#include "dsn_safetensors.h"

typedef struct dsn_checkpoint dsn_checkpoint_t;

/*
 * Open a model directory. *out owned by the caller: dsn_checkpoint_close(). Errors (logged once,
 * naming the file/tensor/field): DSI_ERR_CONFIG (config.json absent or invalid),
 * DSI_ERR_UNSUPPORTED (a config value dsinfer does not implement), DSI_ERR_NOT_FOUND (neither an
 * index nor model.safetensors), DSI_ERR_IO (a listed shard missing or unreadable),
 * DSI_ERR_FORMAT (malformed index or shard, extra tensor, extra model*.safetensors shard),
 * DSI_ERR_MISSING_TENSOR (an index entry absent from its shard). Files other than
 * model*.safetensors (e.g. reference.safetensors) are ignored.
 */
dsi_status_t dsn_checkpoint_open(const char *dir, dsn_checkpoint_t **out);
void dsn_checkpoint_close(dsn_checkpoint_t *ckpt);

const dsn_config_t *dsn_checkpoint_config(const dsn_checkpoint_t *ckpt);
const char *dsn_checkpoint_dir(const dsn_checkpoint_t *ckpt);
size_t dsn_checkpoint_count(const dsn_checkpoint_t *ckpt);
const dsn_st_tensor_t *dsn_checkpoint_at(const dsn_checkpoint_t *ckpt, size_t i);
const dsn_st_tensor_t *dsn_checkpoint_find(const dsn_checkpoint_t *ckpt, const char *name);

/*
 * The projection weight `<prefix>.weight` as a kernel matrix of shape [rows, cols]: F8_E4M3 with
 * its `<prefix>.weight_scale_inv` (shape [ceil(rows/128), ceil(cols/128)], F32), BF16 or F32.
 * Errors (logged, naming the tensor): missing tensor or scale, wrong shape, unsupported dtype.
 */
dsi_status_t dsn_checkpoint_matrix(const dsn_checkpoint_t *ckpt, const char *prefix, int64_t rows,
                                   int64_t cols, dsk_matrix_t *out);
/*
 * A vector tensor `name` of n elements (BF16, F16 or F32) converted to f32 into out[n].
 * Used for norms and router biases, which are small.
 */
dsi_status_t dsn_checkpoint_vector_f32(const dsn_checkpoint_t *ckpt, const char *name, int64_t n,
                                       float *out);

/* MTP tensors (layers >= num_hidden_layers): left out of the main table, counted here. */
size_t dsn_checkpoint_skipped_count(const dsn_checkpoint_t *ckpt);
uint64_t dsn_checkpoint_skipped_bytes(const dsn_checkpoint_t *ckpt);
/* Number of shard files and the bytes they map in total (headers and MTP tensors included). */
size_t dsn_checkpoint_shard_count(const dsn_checkpoint_t *ckpt);
uint64_t dsn_checkpoint_mapped_bytes(const dsn_checkpoint_t *ckpt);

#endif
