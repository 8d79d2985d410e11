/*
 * dsn_safetensors.c - map one safetensors file and validate its header completely before any
 * tensor is handed out.
 *
 * The header is untrusted input: every size is checked with overflow-safe arithmetic, every offset
 * against the data section, and no two tensors may share bytes, so that a tensor pointer handed out
 * by this file can be read over its whole nbytes without leaving the mapping.
 */
#include "dsn_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsi_log.h"

/* A JSON header larger than this is refused: 671B's largest shard header is about 1 MB. */
#define ST_MAX_HEADER_BYTES (100u << 20)

struct dsn_st_file {
    char *path;
    const uint8_t *map; /* the whole file, PROT_READ, MAP_PRIVATE */
    size_t map_size;
    size_t count;
    dsn_st_tensor_t *tensors; /* [count], header order */
    char **names;             /* [count], owned strings the tensors' names point to */
    uint32_t *by_name;        /* [count] tensor indices sorted by name, for bsearch */
};

static const struct {
    const char *name;
    size_t size;
} dtype_info[DSN_ST_DTYPE_COUNT] = {
    [DSN_ST_F32] = {"F32", 4},         [DSN_ST_F16] = {"F16", 2},   [DSN_ST_BF16] = {"BF16", 2},
    [DSN_ST_F8_E4M3] = {"F8_E4M3", 1}, [DSN_ST_F64] = {"F64", 8},   [DSN_ST_I8] = {"I8", 1},
    [DSN_ST_U8] = {"U8", 1},           [DSN_ST_I16] = {"I16", 2},   [DSN_ST_I32] = {"I32", 4},
    [DSN_ST_I64] = {"I64", 8},         [DSN_ST_BOOL] = {"BOOL", 1},
};

const char *dsn_st_dtype_name(dsn_st_dtype_t dtype)
{
    if ((unsigned)dtype >= DSN_ST_DTYPE_COUNT)
        return "?";
    return dtype_info[dtype].name;
}

size_t dsn_st_dtype_size(dsn_st_dtype_t dtype)
{
    if ((unsigned)dtype >= DSN_ST_DTYPE_COUNT)
        return 0;
    return dtype_info[dtype].size;
}

static int dtype_from_name(const char *name, dsn_st_dtype_t *out)
{
    for (int i = 0; i < DSN_ST_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (dsn_st_dtype_t)i;
            return 0;
        }
    }
    return -1;
}

/* Sorting context: qsort has no user argument in C11, and opening is not concurrent per file. */
static _Thread_local const dsn_st_file_t *sort_file;

static int cmp_by_name(const void *a, const void *b)
{
    const dsn_st_tensor_t *ta = &sort_file->tensors[*(const uint32_t *)a];
    const dsn_st_tensor_t *tb = &sort_file->tensors[*(const uint32_t *)b];
    return strcmp(ta->name, tb->name);
}

static int cmp_by_offset(const void *a, const void *b)
{
    const dsn_st_tensor_t *ta = &sort_file->tensors[*(const uint32_t *)a];
    const dsn_st_tensor_t *tb = &sort_file->tensors[*(const uint32_t *)b];
    uintptr_t pa = (uintptr_t)ta->data, pb = (uintptr_t)tb->data;
    if (pa != pb)
        return pa < pb ? -1 : 1;
    return ta->nbytes < tb->nbytes ? -1 : ta->nbytes > tb->nbytes;
}

/* Read a JSON integer >= 0 (reals such as 2.0 are refused: the format writes integers). */
static int json_get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Validate one header entry and fill *t (name set by the caller). */
static dsi_status_t parse_entry(const char *path, const char *name, const json_t *entry,
                                const uint8_t *data, size_t data_size, dsn_st_tensor_t *t)
{
    if (!json_is_object(entry)) {
        DSI_ERROR("%s: tensor '%s': entry is not a JSON object", path, name);
        return DSI_ERR_FORMAT;
    }
    const json_t *jdtype = json_object_get(entry, "dtype");
    const json_t *jshape = json_object_get(entry, "shape");
    const json_t *joffs = json_object_get(entry, "data_offsets");
    if (!json_is_string(jdtype)) {
        DSI_ERROR("%s: tensor '%s': 'dtype' %s", path, name,
                  jdtype ? "is not a string" : "is missing");
        return DSI_ERR_FORMAT;
    }
    if (dtype_from_name(json_string_value(jdtype), &t->dtype) != 0) {
        DSI_ERROR("%s: tensor '%s': unknown dtype '%s'", path, name, json_string_value(jdtype));
        return DSI_ERR_FORMAT;
    }
    if (!json_is_array(jshape)) {
        DSI_ERROR("%s: tensor '%s': 'shape' %s", path, name,
                  jshape ? "is not an array" : "is missing");
        return DSI_ERR_FORMAT;
    }
    size_t n_dims = json_array_size(jshape);
    if (n_dims > DSN_ST_MAX_DIMS) {
        DSI_ERROR("%s: tensor '%s': %zu dimensions, at most %d supported", path, name, n_dims,
                  DSN_ST_MAX_DIMS);
        return DSI_ERR_FORMAT;
    }
    uint64_t elems = 1;
    t->n_dims = (int)n_dims;
    for (size_t d = 0; d < n_dims; d++) {
        uint64_t dim;
        if (json_get_u64(json_array_get(jshape, d), &dim) != 0 || dim > INT64_MAX) {
            DSI_ERROR("%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, d);
            return DSI_ERR_FORMAT;
        }
        if (__builtin_mul_overflow(elems, dim, &elems)) {
            DSI_ERROR("%s: tensor '%s': shape overflows 64 bits", path, name);
            return DSI_ERR_FORMAT;
        }
        t->shape[d] = (int64_t)dim;
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(elems, (uint64_t)dsn_st_dtype_size(t->dtype), &nbytes)) {
        DSI_ERROR("%s: tensor '%s': byte size overflows 64 bits", path, name);
        return DSI_ERR_FORMAT;
    }
    uint64_t begin, end;
    if (!json_is_array(joffs) || json_array_size(joffs) != 2 ||
        json_get_u64(json_array_get(joffs, 0), &begin) != 0 ||
        json_get_u64(json_array_get(joffs, 1), &end) != 0) {
        DSI_ERROR("%s: tensor '%s': 'data_offsets' %s", path, name,
                  joffs ? "is not an array of two non-negative integers" : "is missing");
        return DSI_ERR_FORMAT;
    }
    if (begin > end) {
        DSI_ERROR("%s: tensor '%s': data_offsets [%llu, %llu] out of order", path, name,
                  (unsigned long long)begin, (unsigned long long)end);
        return DSI_ERR_FORMAT;
    }
    if (end > data_size) {
        DSI_ERROR("%s: tensor '%s': data_offsets [%llu, %llu] beyond the data section of %zu bytes",
                  path, name, (unsigned long long)begin, (unsigned long long)end, data_size);
        return DSI_ERR_FORMAT;
    }
    if (end - begin != nbytes) {
        DSI_ERROR("%s: tensor '%s': data_offsets span %llu bytes but shape x %s needs %llu", path,
                  name, (unsigned long long)(end - begin), dsn_st_dtype_name(t->dtype),
                  (unsigned long long)nbytes);
        return DSI_ERR_FORMAT;
    }
    t->data = data + begin;
    t->nbytes = (size_t)nbytes;
    return DSI_OK;
}

/* Parse the header JSON into f->tensors/names; the mapping is already set. */
static dsi_status_t parse_header(dsn_st_file_t *f, const char *json_text, size_t json_len,
                                 const uint8_t *data, size_t data_size)
{
    json_error_t jerr;
    json_t *root = json_loadb(json_text, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        DSI_ERROR("%s: header: invalid JSON at line %d column %d: %s", f->path, jerr.line,
                  jerr.column, jerr.text);
        return DSI_ERR_FORMAT;
    }
    dsi_status_t st = DSI_ERR_FORMAT;
    if (!json_is_object(root)) {
        DSI_ERROR("%s: header: not a JSON object", f->path);
        goto out_root;
    }
    size_t n = json_object_size(root);
    f->tensors = calloc(n ? n : 1, sizeof(*f->tensors));
    f->names = calloc(n ? n : 1, sizeof(*f->names));
    if (f->tensors == NULL || f->names == NULL) {
        DSI_ERROR("%s: out of memory for %zu tensors", f->path, n);
        st = DSI_ERR_NOMEM;
        goto out_root;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(value)) {
                DSI_ERROR("%s: header: '__metadata__' is not an object", f->path);
                goto out_root;
            }
            continue;
        }
        dsn_st_tensor_t *t = &f->tensors[f->count];
        st = parse_entry(f->path, key, value, data, data_size, t);
        if (st != DSI_OK)
            goto out_root;
        f->names[f->count] = strdup(key);
        if (f->names[f->count] == NULL) {
            st = DSI_ERR_NOMEM;
            goto out_root;
        }
        t->name = f->names[f->count];
        f->count++;
    }
    st = DSI_OK;
out_root:
    json_decref(root);
    return st;
}

/* Build the name index and check names are unique and byte ranges disjoint. */
static dsi_status_t index_tensors(dsn_st_file_t *f)
{
    size_t n = f->count;
    f->by_name = malloc((n ? n : 1) * sizeof(*f->by_name));
    uint32_t *by_off = malloc((n ? n : 1) * sizeof(*by_off));
    dsi_status_t st = DSI_ERR_NOMEM;
    if (f->by_name == NULL || by_off == NULL) {
        DSI_ERROR("%s: out of memory indexing %zu tensors", f->path, n);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        f->by_name[i] = by_off[i] = (uint32_t)i;
    sort_file = f;
    qsort(f->by_name, n, sizeof(*f->by_name), cmp_by_name);
    qsort(by_off, n, sizeof(*by_off), cmp_by_offset);
    sort_file = NULL;
    st = DSI_ERR_FORMAT;
    for (size_t i = 1; i < n; i++) {
        const dsn_st_tensor_t *a = &f->tensors[f->by_name[i - 1]], *b = &f->tensors[f->by_name[i]];
        if (strcmp(a->name, b->name) == 0) {
            DSI_ERROR("%s: tensor '%s': duplicate name", f->path, b->name);
            goto out;
        }
    }
    /* Sorted by start, ranges are disjoint iff each starts at or after the previous end; empty
     * tensors own no bytes and cannot overlap anything. */
    const uint8_t *prev_end = NULL;
    const char *prev_name = NULL;
    for (size_t i = 0; i < n; i++) {
        const dsn_st_tensor_t *t = &f->tensors[by_off[i]];
        if (t->nbytes == 0)
            continue;
        const uint8_t *start = t->data;
        if (prev_end != NULL && start < prev_end) {
            DSI_ERROR("%s: tensor '%s': data overlaps tensor '%s'", f->path, t->name, prev_name);
            goto out;
        }
        prev_end = start + t->nbytes;
        prev_name = t->name;
    }
    st = DSI_OK;
out:
    free(by_off);
    return st;
}

static dsi_status_t map_file(dsn_st_file_t *f)
{
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; fstat refuses it. */
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        DSI_ERROR("%s: cannot open: %m", f->path);
        return errno == ENOENT ? DSI_ERR_NOT_FOUND : DSI_ERR_IO;
    }
    dsi_status_t st = DSI_ERR_IO;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        DSI_ERROR("%s: cannot stat: %m", f->path);
        goto out_fd;
    }
    if (!S_ISREG(sb.st_mode)) {
        DSI_ERROR("%s: not a regular file (a FIFO, device or directory cannot be a shard)",
                  f->path);
        goto out_fd;
    }
    if (sb.st_size < 8) {
        DSI_ERROR("%s: file of %lld bytes is shorter than the 8-byte header length", f->path,
                  (long long)sb.st_size);
        st = DSI_ERR_FORMAT;
        goto out_fd;
    }
    /* No MAP_POPULATE: a node maps shards far larger than the slice it reads, and the pages it
     * touches are faulted in on first use (the weight loader copies or advises as it needs). */
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        DSI_ERROR("%s: cannot mmap %lld bytes: %m", f->path, (long long)sb.st_size);
        goto out_fd;
    }
    f->map = map;
    f->map_size = (size_t)sb.st_size;
    st = DSI_OK;
out_fd:
    close(fd);
    return st;
}

dsi_status_t dsn_st_open(const char *path, dsn_st_file_t **out)
{
    dsn_st_file_t *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->path = strdup(path)) == NULL) {
        free(f);
        DSI_ERROR("%s: out of memory", path);
        return DSI_ERR_NOMEM;
    }
    dsi_status_t st = map_file(f);
    if (st != DSI_OK)
        goto fail;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = (header_len << 8) | f->map[i];
    if (header_len > ST_MAX_HEADER_BYTES || header_len > f->map_size - 8) {
        DSI_ERROR("%s: header length %llu %s (file has %zu bytes)", f->path,
                  (unsigned long long)header_len,
                  header_len > f->map_size - 8 ? "goes beyond the end of the file"
                                               : "exceeds the 100 MB limit",
                  f->map_size);
        st = DSI_ERR_FORMAT;
        goto fail;
    }
    const uint8_t *data = f->map + 8 + header_len;
    size_t data_size = f->map_size - 8 - (size_t)header_len;
    st = parse_header(f, (const char *)f->map + 8, (size_t)header_len, data, data_size);
    if (st != DSI_OK)
        goto fail;
    st = index_tensors(f);
    if (st != DSI_OK)
        goto fail;
    *out = f;
    return DSI_OK;
fail:
    dsn_st_close(f);
    return st;
}

void dsn_st_close(dsn_st_file_t *f)
{
    if (f == NULL)
        return;
    if (f->map != NULL)
        munmap((void *)f->map, f->map_size);
    if (f->names != NULL) {
        for (size_t i = 0; i < f->count; i++)
            free(f->names[i]);
    }
    free(f->names);
    free(f->tensors);
    free(f->by_name);
    free(f->path);
    free(f);
}

const char *dsn_st_path(const dsn_st_file_t *f)
{
    return f->path;
}

size_t dsn_st_count(const dsn_st_file_t *f)
{
    return f->count;
}

const dsn_st_tensor_t *dsn_st_at(const dsn_st_file_t *f, size_t i)
{
    return i < f->count ? &f->tensors[i] : NULL;
}

const dsn_st_tensor_t *dsn_st_find(const dsn_st_file_t *f, const char *name)
{
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const dsn_st_tensor_t *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t dsn_st_file_size(const dsn_st_file_t *f)
{
    return f->map_size;
}
