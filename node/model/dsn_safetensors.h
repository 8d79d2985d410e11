/*
 * dsn_safetensors.h - one safetensors file, memory-mapped and fully validated at open.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape,
 * data_offsets}}, optional __metadata__), then the data. Open checks everything before anything
 * is read: header length within the file, valid JSON, known dtype, shape x dtype size equal to
 * the offsets' span, offsets inside the data section, no two tensors overlapping. Errors name the
 * file and the tensor. Tensor data points into the mapping (read-only, valid until close).
 */
#ifndef DSN_SAFETENSORS_H
#define DSN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dsi_status.h"

typedef enum {
    DSN_ST_F32 = 0,
    DSN_ST_F16,
    DSN_ST_BF16,
    DSN_ST_F8_E4M3,
    DSN_ST_F64,
    DSN_ST_I8,
    DSN_ST_U8,
    DSN_ST_I16,
    DSN_ST_I32,
    DSN_ST_I64,
    DSN_ST_BOOL,
    DSN_ST_DTYPE_COUNT
} dsn_st_dtype_t;

#define DSN_ST_MAX_DIMS 8

typedef struct {
    const char *name; /* owned by the file */
    dsn_st_dtype_t dtype;
    int n_dims;
    int64_t shape[DSN_ST_MAX_DIMS];
    const void *data; /* into the mapping */
    size_t nbytes;
} dsn_st_tensor_t;

typedef struct dsn_st_file dsn_st_file_t;

/*
 * Map and validate `path`. *out owned by the caller: dsn_st_close(). Errors: DSI_ERR_NOT_FOUND
 * (no such file), DSI_ERR_IO (unreadable, not a regular file), DSI_ERR_FORMAT (anything wrong in
 * the header), each logged as "<file>: tensor '<name>': <what>". Tensor data is only guaranteed
 * aligned to its element size when the writer laid it out so; dsn_checkpoint_matrix() checks.
 */
dsi_status_t dsn_st_open(const char *path, dsn_st_file_t **out);
void dsn_st_close(dsn_st_file_t *file);
const char *dsn_st_path(const dsn_st_file_t *file);
size_t dsn_st_count(const dsn_st_file_t *file);
/* Tensors in header order. */
const dsn_st_tensor_t *dsn_st_at(const dsn_st_file_t *file, size_t i);
/* NULL if absent. */
const dsn_st_tensor_t *dsn_st_find(const dsn_st_file_t *file, const char *name);

/* Size in bytes of the whole mapped file (header included). */
size_t dsn_st_file_size(const dsn_st_file_t *file);

const char *dsn_st_dtype_name(dsn_st_dtype_t dtype); /* "BF16" */
size_t dsn_st_dtype_size(dsn_st_dtype_t dtype);

#endif
