/*
 * dsn_checkpoint.c - a model directory: config, shards, and the cross-checks between the index
 * and the shards' own headers.
 *
 * Shards are the files named model*.safetensors (other .safetensors files in the directory, such
 * as the fixtures' reference.safetensors, are not part of the model and are ignored). With
 * model.safetensors.index.json every shard must be listed there; without it, model.safetensors is
 * the only shard.
 */
#include "dsn_checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dsi_log.h"

#define INDEX_NAME  "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

struct dsn_checkpoint {
    char *dir;
    dsn_config_t cfg;
    size_t n_shards;
    char **shard_names;              /* [n_shards] file names within dir, sorted */
    dsn_st_file_t **shards;          /* [n_shards] */
    size_t count;                    /* main-model tensors */
    const dsn_st_tensor_t **tensors; /* [count] shard order, then header order */
    const dsn_st_tensor_t **by_name; /* [n_named] sorted by name: main and MTP tensors */
    size_t n_named;                  /* count + MTP tensors of layers < N + nextn layers */
    size_t n_skipped;                /* MTP tensors (layer >= num_hidden_layers), not in tensors */
    uint64_t skipped_bytes;
};

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const dsn_st_tensor_t *const *)a)->name,
                  (*(const dsn_st_tensor_t *const *)b)->name);
}

/* Whether `name` is a shard file name: model*.safetensors. */
static int is_shard_name(const char *name)
{
    size_t n = strlen(name), suffix = strlen(".safetensors");
    return n > suffix && strncmp(name, "model", 5) == 0 &&
           strcmp(name + n - suffix, ".safetensors") == 0;
}

static int shard_index(const dsn_checkpoint_t *c, const char *name)
{
    char *key = (char *)name;
    char **hit = bsearch(&key, c->shard_names, c->n_shards, sizeof(char *), cmp_str);
    return hit ? (int)(hit - c->shard_names) : -1;
}

/* The layer index of "model.layers.<L>.", or -1 for other names. */
static long tensor_layer(const char *name)
{
    static const char prefix[] = "model.layers.";
    if (strncmp(name, prefix, sizeof(prefix) - 1) != 0)
        return -1;
    const char *p = name + sizeof(prefix) - 1;
    long layer = 0;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (layer > 1000000)
            return -1;
        layer = layer * 10 + (*p - '0');
    }
    return *p == '.' ? layer : -1;
}

/* Collect the distinct shard names of the index's weight_map into c->shard_names. */
static dsi_status_t collect_shards(dsn_checkpoint_t *c, const char *index_path,
                                   const json_t *weight_map)
{
    size_t n = json_object_size(weight_map), k = 0;
    char **names = calloc(n ? n : 1, sizeof(char *));
    if (names == NULL)
        return DSI_ERR_NOMEM;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)weight_map, key, value)
    {
        const char *shard = json_string_value(value);
        if (shard == NULL) {
            DSI_ERROR("%s: tensor '%s': weight_map value is not a string", index_path, key);
            free(names);
            return DSI_ERR_FORMAT;
        }
        if (!is_shard_name(shard) || strchr(shard, '/') != NULL) {
            DSI_ERROR("%s: tensor '%s': shard '%s' is not a file name of the form "
                      "model*.safetensors",
                      index_path, key, shard);
            free(names);
            return DSI_ERR_FORMAT;
        }
        names[k++] = (char *)shard;
    }
    qsort(names, k, sizeof(char *), cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
        if (u == 0 || strcmp(names[u - 1], names[i]) != 0)
            names[u++] = names[i];
    }
    c->shard_names = calloc(u ? u : 1, sizeof(char *));
    if (c->shard_names == NULL) {
        free(names);
        return DSI_ERR_NOMEM;
    }
    for (size_t i = 0; i < u; i++) {
        c->shard_names[i] = strdup(names[i]);
        if (c->shard_names[i] == NULL) {
            free(names);
            return DSI_ERR_NOMEM;
        }
        c->n_shards++;
    }
    free(names);
    return DSI_OK;
}

static dsi_status_t open_shards(dsn_checkpoint_t *c, const char *listed_in)
{
    c->shards = calloc(c->n_shards ? c->n_shards : 1, sizeof(*c->shards));
    if (c->shards == NULL)
        return DSI_ERR_NOMEM;
    for (size_t i = 0; i < c->n_shards; i++) {
        char *path = path_join(c->dir, c->shard_names[i]);
        if (path == NULL)
            return DSI_ERR_NOMEM;
        struct stat sb;
        if (stat(path, &sb) != 0) {
            DSI_ERROR("%s: shard '%s' listed in %s is missing: %m", path, c->shard_names[i],
                      listed_in);
            free(path);
            return DSI_ERR_IO;
        }
        dsi_status_t st = dsn_st_open(path, &c->shards[i]);
        free(path);
        if (st != DSI_OK)
            return st;
    }
    return DSI_OK;
}

/* Index entries must be in their shards, and shards must hold nothing the index does not list. */
static dsi_status_t check_index_against_shards(const dsn_checkpoint_t *c, const char *index_path,
                                               const json_t *weight_map)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)weight_map, key, value)
    {
        int s = shard_index(c, json_string_value(value));
        if (s < 0 || dsn_st_find(c->shards[s], key) == NULL) {
            DSI_ERROR("%s: tensor '%s': listed in %s but not found in that shard", index_path, key,
                      json_string_value(value));
            return DSI_ERR_MISSING_TENSOR;
        }
    }
    for (size_t s = 0; s < c->n_shards; s++) {
        for (size_t i = 0; i < dsn_st_count(c->shards[s]); i++) {
            const char *name = dsn_st_at(c->shards[s], i)->name;
            const char *listed = json_string_value(json_object_get(weight_map, name));
            if (listed == NULL || strcmp(listed, c->shard_names[s]) != 0) {
                DSI_ERROR("%s: tensor '%s': extra tensor in shard %s (the index %s%s)",
                          dsn_st_path(c->shards[s]), name, c->shard_names[s],
                          listed ? "lists it in " : "does not list it", listed ? listed : "");
                return DSI_ERR_FORMAT;
            }
        }
    }
    return DSI_OK;
}

/* Every model*.safetensors file of the directory must be one of the shards. */
static dsi_status_t check_no_extra_shards(const dsn_checkpoint_t *c, const char *listed_in)
{
    DIR *d = opendir(c->dir);
    if (d == NULL) {
        DSI_ERROR("%s: cannot list directory: %m", c->dir);
        return DSI_ERR_IO;
    }
    dsi_status_t st = DSI_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (is_shard_name(e->d_name) && shard_index(c, e->d_name) < 0) {
            DSI_ERROR("%s/%s: extra shard: not listed in %s", c->dir, e->d_name, listed_in);
            st = DSI_ERR_FORMAT;
            break;
        }
    }
    closedir(d);
    return st;
}

static dsi_status_t open_indexed(dsn_checkpoint_t *c, const char *index_path)
{
    struct stat sb;
    if (stat(index_path, &sb) == 0 && !S_ISREG(sb.st_mode)) { /* a FIFO would hang the read */
        DSI_ERROR("%s: not a regular file", index_path);
        return DSI_ERR_FORMAT;
    }
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        DSI_ERROR("%s: invalid JSON at line %d column %d: %s", index_path, jerr.line, jerr.column,
                  jerr.text);
        return DSI_ERR_FORMAT;
    }
    dsi_status_t st = DSI_ERR_FORMAT;
    const json_t *weight_map = json_object_get(root, "weight_map");
    if (!json_is_object(weight_map)) {
        DSI_ERROR("%s: field 'weight_map' is missing or not an object", index_path);
        goto out;
    }
    st = collect_shards(c, index_path, weight_map);
    if (st == DSI_OK)
        st = open_shards(c, INDEX_NAME);
    if (st == DSI_OK)
        st = check_index_against_shards(c, index_path, weight_map);
    if (st == DSI_OK)
        st = check_no_extra_shards(c, INDEX_NAME);
out:
    json_decref(root);
    return st;
}

static dsi_status_t open_single(dsn_checkpoint_t *c)
{
    c->shard_names = calloc(1, sizeof(char *));
    if (c->shard_names == NULL || (c->shard_names[0] = strdup(SINGLE_NAME)) == NULL)
        return DSI_ERR_NOMEM;
    c->n_shards = 1;
    char *path = path_join(c->dir, SINGLE_NAME);
    if (path == NULL)
        return DSI_ERR_NOMEM;
    struct stat sb;
    int missing = stat(path, &sb) != 0;
    free(path);
    if (missing) {
        DSI_ERROR("%s: no %s and no %s: not a model directory", c->dir, INDEX_NAME, SINGLE_NAME);
        return DSI_ERR_NOT_FOUND;
    }
    dsi_status_t st = open_shards(c, c->dir);
    if (st == DSI_OK)
        st = check_no_extra_shards(c, "the directory without an index (only " SINGLE_NAME ")");
    return st;
}

/* The main-model tensor table: MTP layers counted and left out of it; the MTP layers the config
 * declares can still be found by name (dsn_mtp loads them). */
static dsi_status_t build_table(dsn_checkpoint_t *c)
{
    size_t total = 0;
    for (size_t s = 0; s < c->n_shards; s++)
        total += dsn_st_count(c->shards[s]);
    c->tensors = calloc(total ? total : 1, sizeof(*c->tensors));
    c->by_name = calloc(total ? total : 1, sizeof(*c->by_name));
    if (c->tensors == NULL || c->by_name == NULL)
        return DSI_ERR_NOMEM;
    int max_layer = c->cfg.num_hidden_layers + c->cfg.num_nextn_predict_layers;
    int warned = 0;
    for (size_t s = 0; s < c->n_shards; s++) {
        for (size_t i = 0; i < dsn_st_count(c->shards[s]); i++) {
            const dsn_st_tensor_t *t = dsn_st_at(c->shards[s], i);
            long layer = tensor_layer(t->name);
            if (layer >= c->cfg.num_hidden_layers) {
                /* Once, not per tensor: a config without num_nextn_predict_layers would
                 * otherwise log every MTP tensor. */
                if (layer >= max_layer && !warned++)
                    DSI_WARN("%s: tensor '%s': layer %ld beyond num_hidden_layers + "
                             "num_nextn_predict_layers = %d; such tensors are skipped",
                             dsn_st_path(c->shards[s]), t->name, layer, max_layer);
                c->n_skipped++;
                c->skipped_bytes += t->nbytes;
                if (layer < max_layer)
                    c->by_name[c->n_named++] = t;
                continue;
            }
            c->tensors[c->count++] = t;
            c->by_name[c->n_named++] = t;
        }
    }
    qsort(c->by_name, c->n_named, sizeof(*c->by_name), cmp_tensor_name);
    for (size_t i = 1; i < c->n_named; i++) {
        if (strcmp(c->by_name[i - 1]->name, c->by_name[i]->name) == 0) {
            DSI_ERROR("%s: tensor '%s': present in two shards", c->dir, c->by_name[i]->name);
            return DSI_ERR_FORMAT;
        }
    }
    return DSI_OK;
}

dsi_status_t dsn_checkpoint_open(const char *dir, dsn_checkpoint_t **out)
{
    dsn_checkpoint_t *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->dir = strdup(dir)) == NULL) {
        free(c);
        DSI_ERROR("%s: out of memory", dir);
        return DSI_ERR_NOMEM;
    }
    dsi_status_t st = DSI_ERR_NOMEM;
    char *config_path = path_join(dir, "config.json");
    char *index_path = path_join(dir, INDEX_NAME);
    if (config_path == NULL || index_path == NULL)
        goto fail;
    struct stat sb;
    if (stat(config_path, &sb) != 0) {
        DSI_ERROR("%s: no config.json (%m): not a model directory", dir);
        st = DSI_ERR_CONFIG;
        goto fail;
    }
    st = dsn_config_load(config_path, &c->cfg);
    if (st != DSI_OK)
        goto fail;
    if (stat(index_path, &sb) == 0)
        st = open_indexed(c, index_path);
    else
        st = open_single(c);
    if (st == DSI_OK)
        st = build_table(c);
    if (st != DSI_OK)
        goto fail;
    free(config_path);
    free(index_path);
    *out = c;
    return DSI_OK;
fail:
    if (st == DSI_ERR_NOMEM)
        DSI_ERROR("%s: out of memory opening the checkpoint", dir);
    free(config_path);
    free(index_path);
    dsn_checkpoint_close(c);
    return st;
}

void dsn_checkpoint_close(dsn_checkpoint_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_shards; i++) {
        if (c->shards != NULL)
            dsn_st_close(c->shards[i]);
        free(c->shard_names[i]);
    }
    free(c->shards);
    free(c->shard_names);
    free(c->tensors);
    free(c->by_name);
    free(c->dir);
    free(c);
}

const dsn_config_t *dsn_checkpoint_config(const dsn_checkpoint_t *c)
{
    return &c->cfg;
}

const char *dsn_checkpoint_dir(const dsn_checkpoint_t *c)
{
    return c->dir;
}

size_t dsn_checkpoint_count(const dsn_checkpoint_t *c)
{
    return c->count;
}

const dsn_st_tensor_t *dsn_checkpoint_at(const dsn_checkpoint_t *c, size_t i)
{
    return i < c->count ? c->tensors[i] : NULL;
}

const dsn_st_tensor_t *dsn_checkpoint_find(const dsn_checkpoint_t *c, const char *name)
{
    size_t lo = 0, hi = c->n_named;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(name, c->by_name[mid]->name);
        if (cmp == 0)
            return c->by_name[mid];
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t dsn_checkpoint_skipped_count(const dsn_checkpoint_t *c)
{
    return c->n_skipped;
}

uint64_t dsn_checkpoint_skipped_bytes(const dsn_checkpoint_t *c)
{
    return c->skipped_bytes;
}

size_t dsn_checkpoint_shard_count(const dsn_checkpoint_t *c)
{
    return c->n_shards;
}

uint64_t dsn_checkpoint_mapped_bytes(const dsn_checkpoint_t *c)
{
    uint64_t total = 0;
    for (size_t i = 0; i < c->n_shards; i++)
        total += dsn_st_file_size(c->shards[i]);
    return total;
}

/* ---- typed access for the weight loader ---- */

static void shape_text(const dsn_st_tensor_t *t, char *buf, size_t size)
{
    size_t off = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < t->n_dims && off < size; d++)
        off += (size_t)snprintf(buf + off, size - off, "%s%lld", d ? ", " : "",
                                (long long)t->shape[d]);
    if (off < size)
        snprintf(buf + off, size - off, "]");
}

static int has_shape2(const dsn_st_tensor_t *t, int64_t rows, int64_t cols)
{
    return t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
}

/* Kernels read elements through typed pointers, so the data must be naturally aligned. */
static int is_aligned(const dsn_st_tensor_t *t)
{
    size_t a = dsn_st_dtype_size(t->dtype);
    return a == 0 || ((uintptr_t)t->data % a) == 0;
}

dsi_status_t dsn_checkpoint_matrix(const dsn_checkpoint_t *c, const char *prefix, int64_t rows,
                                   int64_t cols, dsk_matrix_t *out)
{
    char name[512], scale_name[512], have[128];
    if ((size_t)snprintf(name, sizeof(name), "%s.weight", prefix) >= sizeof(name) ||
        (size_t)snprintf(scale_name, sizeof(scale_name), "%s.weight_scale_inv", prefix) >=
            sizeof(scale_name)) {
        DSI_ERROR("%s: tensor prefix '%.64s...' too long", c->dir, prefix);
        return DSI_ERR_INVALID_ARG;
    }
    const dsn_st_tensor_t *w = dsn_checkpoint_find(c, name);
    if (w == NULL) {
        DSI_ERROR("%s: tensor '%s': missing", c->dir, name);
        return DSI_ERR_MISSING_TENSOR;
    }
    if (!has_shape2(w, rows, cols)) {
        shape_text(w, have, sizeof(have));
        DSI_ERROR("%s: tensor '%s': shape %s, expected [%lld, %lld]", c->dir, name, have,
                  (long long)rows, (long long)cols);
        return DSI_ERR_BAD_TENSOR;
    }
    if (!is_aligned(w)) {
        DSI_ERROR("%s: tensor '%s': data not aligned to its %s element size", c->dir, name,
                  dsn_st_dtype_name(w->dtype));
        return DSI_ERR_BAD_TENSOR;
    }
    dsk_matrix_t m = {.rows = rows, .cols = cols, .data = w->data, .scale_inv = NULL};
    switch (w->dtype) {
    case DSN_ST_F32:
        m.dtype = DSK_DTYPE_F32;
        break;
    case DSN_ST_BF16:
        m.dtype = DSK_DTYPE_BF16;
        break;
    case DSN_ST_F8_E4M3: {
        m.dtype = DSK_DTYPE_F8_E4M3;
        const dsn_st_tensor_t *s = dsn_checkpoint_find(c, scale_name);
        int64_t srows = (rows + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
        int64_t scols = (cols + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
        if (s == NULL) {
            DSI_ERROR("%s: tensor '%s': missing (the scale of F8_E4M3 '%s')", c->dir, scale_name,
                      name);
            return DSI_ERR_MISSING_TENSOR;
        }
        if (s->dtype != DSN_ST_F32) {
            DSI_ERROR("%s: tensor '%s': dtype %s, expected F32", c->dir, scale_name,
                      dsn_st_dtype_name(s->dtype));
            return DSI_ERR_BAD_TENSOR;
        }
        if (!has_shape2(s, srows, scols)) {
            shape_text(s, have, sizeof(have));
            DSI_ERROR("%s: tensor '%s': shape %s, expected [%lld, %lld] for weight [%lld, %lld]",
                      c->dir, scale_name, have, (long long)srows, (long long)scols, (long long)rows,
                      (long long)cols);
            return DSI_ERR_BAD_TENSOR;
        }
        if (!is_aligned(s)) {
            DSI_ERROR("%s: tensor '%s': data not aligned to 4 bytes", c->dir, scale_name);
            return DSI_ERR_BAD_TENSOR;
        }
        m.scale_inv = s->data;
        break;
    }
    default:
        DSI_ERROR("%s: tensor '%s': dtype %s, expected F8_E4M3, BF16 or F32", c->dir, name,
                  dsn_st_dtype_name(w->dtype));
        return DSI_ERR_BAD_TENSOR;
    }
    *out = m;
    return DSI_OK;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24); /* subnormal or zero */
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 0x400), (int)exp - 25);
    return sign ? -v : v;
}

dsi_status_t dsn_checkpoint_vector_f32(const dsn_checkpoint_t *c, const char *name, int64_t n,
                                       float *out)
{
    const dsn_st_tensor_t *t = dsn_checkpoint_find(c, name);
    if (t == NULL) {
        DSI_ERROR("%s: tensor '%s': missing", c->dir, name);
        return DSI_ERR_MISSING_TENSOR;
    }
    if (t->n_dims != 1 || t->shape[0] != n) {
        char have[128];
        shape_text(t, have, sizeof(have));
        DSI_ERROR("%s: tensor '%s': shape %s, expected [%lld]", c->dir, name, have, (long long)n);
        return DSI_ERR_BAD_TENSOR;
    }
    /* memcpy per element: vectors are small and need not be aligned. */
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case DSN_ST_F32:
        memcpy(out, p, (size_t)n * sizeof(float));
        break;
    case DSN_ST_BF16:
    case DSN_ST_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = t->dtype == DSN_ST_BF16 ? dsk_bf16_to_f32(v) : f16_to_f32(v);
        }
        break;
    default:
        DSI_ERROR("%s: tensor '%s': dtype %s, expected BF16, F16 or F32", c->dir, name,
                  dsn_st_dtype_name(t->dtype));
        return DSI_ERR_BAD_TENSOR;
    }
    return DSI_OK;
}
