/*
 * dsn_synth_write.c - stream a synthetic checkpoint to disk: shards, index, config, tokenizer.
 *
 * Values are drawn per tensor from a generator keyed by (seed, tensor name), through 65536-entry
 * lookup tables (16 random bits -> an fp8 or bf16 code) so that writing runs at disk speed.
 * Within a shard, tensors are laid out by element size, largest first, which keeps every tensor
 * naturally aligned without gaps (the header is padded to 8 bytes).
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "dsi_log.h"
#include "dsn_synth_impl.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors is little-endian; the synthesiser writes host-order values"
#endif

#define CHUNK_BYTES   (4u << 20)
#define DEFAULT_SHARD (4ull << 30)
#define N_BF16_TABLES 4

typedef struct {
    float center, half_width; /* the table maps r -> bf16(center + half_width * x(r)) */
    uint16_t *codes;          /* [65536] */
} bf16_table_t;

typedef struct {
    const dsn_synth_opts_t *opts;
    const dsn_config_t *cfg;
    uint8_t fp8_codes[65536];
    bf16_table_t bf16[N_BF16_TABLES];
    int bf16_next;  /* round-robin replacement */
    uint8_t *chunk; /* [CHUNK_BYTES] */
} writer_t;

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t stream_seed(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the name */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    uint64_t s = seed ^ h;
    return splitmix64(&s);
}

static double uniform01(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) * 0x1p-53;
}

/* x(r) in (-1, 1), symmetric: the value a 16-bit draw r stands for. */
static double draw_value(unsigned r)
{
    return ((double)r + 0.5) / 32768.0 - 1.0;
}

static const uint16_t *bf16_codes(writer_t *w, float center, float half_width)
{
    for (int i = 0; i < N_BF16_TABLES; i++) {
        bf16_table_t *t = &w->bf16[i];
        if (t->codes != NULL && t->center == center && t->half_width == half_width)
            return t->codes;
    }
    bf16_table_t *t = &w->bf16[w->bf16_next];
    w->bf16_next = (w->bf16_next + 1) % N_BF16_TABLES;
    if (t->codes == NULL && (t->codes = malloc(65536 * sizeof(uint16_t))) == NULL)
        return NULL;
    t->center = center;
    t->half_width = half_width;
    for (unsigned r = 0; r < 65536; r++)
        t->codes[r] = dsk_f32_to_bf16((float)(center + half_width * draw_value(r)));
    return t->codes;
}

/* ---- output ---- */

static dsi_status_t write_all(FILE *fp, const char *path, const void *data, size_t n)
{
    if (fwrite(data, 1, n, fp) != n) {
        DSI_ERROR("%s: write failed: %m", path);
        return DSI_ERR_IO;
    }
    return DSI_OK;
}

static dsi_status_t write_text_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) {
        DSI_ERROR("%s: cannot create: %m", path);
        return DSI_ERR_IO;
    }
    dsi_status_t st = write_all(fp, path, text, strlen(text));
    if (fclose(fp) != 0 && st == DSI_OK) {
        DSI_ERROR("%s: close failed: %m", path);
        st = DSI_ERR_IO;
    }
    return st;
}

/* Fill and write the data of tensor t. */
static dsi_status_t write_tensor(writer_t *w, FILE *fp, const char *path, const syn_tensor_t *t)
{
    uint64_t rng = stream_seed(w->opts->seed, t->name);
    uint64_t n = (uint64_t)t->rows * (uint64_t)(t->n_dims == 2 ? t->cols : 1);
    size_t esize = dsn_st_dtype_size(t->dtype);
    size_t per_chunk = CHUNK_BYTES / esize;
    double skew = w->opts->router_skew;
    const uint16_t *codes = NULL;
    float center = 0, half = 0;
    switch (t->kind) {
    case SYN_PROJ:
        half = (float)sqrt(3.0 / (double)t->in_features);
        break;
    case SYN_NORM:
        center = 1.0f;
        half = 0.2f;
        break;
    case SYN_EMBED:
        half = (float)sqrt(3.0);
        break;
    case SYN_HEAD:
    case SYN_GATE:
        half = (float)sqrt(3.0 / (double)t->cols);
        break;
    default:
        break;
    }
    if (t->dtype == DSN_ST_BF16 && (codes = bf16_codes(w, center, half)) == NULL) {
        DSI_ERROR("synth: out of memory");
        return DSI_ERR_NOMEM;
    }
    for (uint64_t done = 0; done < n;) {
        uint64_t m = n - done < per_chunk ? n - done : per_chunk;
        if (t->dtype == DSN_ST_F8_E4M3) {
            for (uint64_t i = 0; i < m; i += 4) {
                uint64_t r = splitmix64(&rng);
                for (uint64_t k = 0; k < 4 && i + k < m; k++)
                    w->chunk[i + k] = w->fp8_codes[(r >> (16 * k)) & 0xffff];
            }
        } else if (t->dtype == DSN_ST_BF16) {
            uint16_t *out = (uint16_t *)w->chunk;
            for (uint64_t i = 0; i < m; i += 4) {
                uint64_t r = splitmix64(&rng);
                for (uint64_t k = 0; k < 4 && i + k < m; k++)
                    out[i + k] = codes[(r >> (16 * k)) & 0xffff];
            }
            if (t->kind == SYN_GATE && skew > 0) {
                /* Favoured experts' rows get a wider spread, so they win the top-k more. */
                for (uint64_t i = 0; i < m; i++) {
                    if (syn_expert_favoured(w->cfg, (int64_t)((done + i) / (uint64_t)t->cols)))
                        out[i] = dsk_f32_to_bf16(dsk_bf16_to_f32(out[i]) * (float)(1 + skew));
                }
            }
        } else { /* F32: scales and router bias */
            float *out = (float *)w->chunk;
            for (uint64_t i = 0; i < m; i++) {
                double u = uniform01(&rng);
                if (t->kind == SYN_SCALE) {
                    /* scale = bound/448 per block, the bound varied by +-25% between blocks so
                     * that a wrong block index shows in the output. */
                    out[i] = (float)(sqrt(3.0 / (double)t->in_features) * (0.75 + 0.5 * u) / 448);
                } else {
                    double b = 0.05 * (2 * u - 1);
                    if (skew > 0 && syn_expert_favoured(w->cfg, (int64_t)(done + i)))
                        b += skew;
                    out[i] = (float)b;
                }
            }
        }
        dsi_status_t st = write_all(fp, path, w->chunk, (size_t)(m * esize));
        if (st != DSI_OK)
            return st;
        done += m;
    }
    return DSI_OK;
}

static int cmp_layout(const void *a, const void *b)
{
    const syn_tensor_t *ta = *(const syn_tensor_t *const *)a, *tb = *(const syn_tensor_t *const *)b;
    size_t sa = dsn_st_dtype_size(ta->dtype), sb = dsn_st_dtype_size(tb->dtype);
    if (sa != sb)
        return sa > sb ? -1 : 1;
    return ta < tb ? -1 : ta > tb; /* plan order */
}

/* The padded JSON header of a shard whose tensors are `ts[n]` in layout order. */
static char *shard_header(syn_tensor_t **ts, size_t n, size_t *len)
{
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const syn_tensor_t *t = ts[i];
        json_t *shape = t->n_dims == 2
                            ? json_pack("[I, I]", (json_int_t)t->rows, (json_int_t)t->cols)
                            : json_pack("[I]", (json_int_t)t->rows);
        json_object_set_new(h, t->name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", dsn_st_dtype_name(t->dtype),
                                      "shape", shape, "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + t->nbytes)));
        off += t->nbytes;
    }
    char *text = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (text == NULL)
        return NULL;
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (out == NULL) {
        free(text);
        return NULL;
    }
    memset(out + tl, ' ', padded - tl);
    out[padded] = '\0';
    *len = padded;
    return out;
}

static dsi_status_t write_shard(writer_t *w, const char *dir, const char *name, syn_tensor_t **ts,
                                size_t n)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    qsort(ts, n, sizeof(*ts), cmp_layout);
    size_t hl = 0;
    char *header = shard_header(ts, n, &hl);
    if (header == NULL) {
        DSI_ERROR("synth: out of memory for the header of %s", path);
        return DSI_ERR_NOMEM;
    }
    FILE *fp = fopen(tmp, "wb");
    if (fp == NULL) {
        DSI_ERROR("%s: cannot create: %m", tmp);
        free(header);
        return DSI_ERR_IO;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    dsi_status_t st = write_all(fp, tmp, len8, 8);
    if (st == DSI_OK)
        st = write_all(fp, tmp, header, hl);
    for (size_t i = 0; i < n && st == DSI_OK; i++)
        st = write_tensor(w, fp, tmp, ts[i]);
    free(header);
    if (fclose(fp) != 0 && st == DSI_OK) {
        DSI_ERROR("%s: close failed: %m", tmp);
        st = DSI_ERR_IO;
    }
    if (st == DSI_OK && rename(tmp, path) != 0) {
        DSI_ERROR("%s: cannot rename to %s: %m", tmp, path);
        st = DSI_ERR_IO;
    }
    if (st != DSI_OK)
        remove(tmp);
    return st;
}

static void shard_name(int i, int n, char *buf, size_t size)
{
    if (n == 1)
        snprintf(buf, size, "model.safetensors");
    else
        snprintf(buf, size, "model-%05d-of-%05d.safetensors", i + 1, n);
}

/* Assign shards in plan order; a scale stays with its weight. Returns the shard count. */
static int assign_shards(syn_plan_t *plan, uint64_t limit)
{
    int shard = 0;
    uint64_t cur = 0;
    for (size_t i = 0; i < plan->n; i++) {
        syn_tensor_t *t = &plan->t[i];
        if (t->kind != SYN_SCALE && cur > 0 && cur + t->nbytes > limit) {
            shard++;
            cur = 0;
        }
        t->shard = shard;
        cur += t->nbytes;
    }
    return shard + 1;
}

static dsi_status_t write_index(const char *dir, const syn_plan_t *plan, int n_shards,
                                uint64_t total)
{
    json_t *map = json_object();
    char name[64];
    for (size_t i = 0; i < plan->n; i++) {
        shard_name(plan->t[i].shard, n_shards, name, sizeof(name));
        json_object_set_new(map, plan->t[i].name, json_string(name));
    }
    json_t *root =
        json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (text == NULL) {
        DSI_ERROR("synth: out of memory for the index");
        return DSI_ERR_NOMEM;
    }
    dsi_status_t st = write_text_file(dir, "model.safetensors.index.json", text);
    free(text);
    return st;
}

/* `dir` must be absent (it is created) or empty: synth never overwrites a model. */
static dsi_status_t prepare_dir(const char *dir)
{
    if (mkdir(dir, 0755) == 0)
        return DSI_OK;
    if (errno != EEXIST) {
        DSI_ERROR("%s: cannot create directory: %m", dir);
        return DSI_ERR_IO;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        DSI_ERROR("%s: cannot open directory: %m", dir);
        return DSI_ERR_IO;
    }
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            empty = 0;
    }
    closedir(d);
    if (!empty) {
        DSI_ERROR("%s: directory is not empty; synth writes only into a new or empty directory",
                  dir);
        return DSI_ERR_INVALID_ARG;
    }
    return DSI_OK;
}

static dsi_status_t check_space(const char *dir, uint64_t need)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) {
        DSI_ERROR("%s: statvfs failed: %m", dir);
        return DSI_ERR_IO;
    }
    uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    /* Headers, config and tokenizer are small; keep 64 MB of slack besides. */
    if (need + (64ull << 20) > avail) {
        DSI_ERROR("%s: the checkpoint needs %.2f GB but the file system has %.2f GB free", dir,
                  (double)need / 1e9, (double)avail / 1e9);
        return DSI_ERR_CAPACITY;
    }
    return DSI_OK;
}

static dsi_status_t write_shards(writer_t *w, const char *dir, syn_plan_t *plan, int n_shards)
{
    syn_tensor_t **ts = malloc(plan->n * sizeof(*ts));
    if (ts == NULL)
        return DSI_ERR_NOMEM;
    dsi_status_t st = DSI_OK;
    size_t first = 0;
    for (int s = 0; s < n_shards && st == DSI_OK; s++) {
        size_t n = 0;
        while (first + n < plan->n && plan->t[first + n].shard == s) {
            ts[n] = &plan->t[first + n];
            n++;
        }
        char name[64];
        shard_name(s, n_shards, name, sizeof(name));
        st = write_shard(w, dir, name, ts, n);
        first += n;
    }
    free(ts);
    return st;
}

dsi_status_t dsn_synth_write(const dsn_synth_opts_t *o, const char *dir)
{
    char *config_text = NULL;
    dsn_config_t cfg;
    dsi_status_t st = syn_config_text(o, &config_text, &cfg);
    if (st != DSI_OK)
        return st;
    syn_plan_t plan = {0};
    writer_t w = {.opts = o, .cfg = &cfg};
    st = syn_plan_build(&cfg, o->fp8, &plan);
    if (st != DSI_OK)
        goto out;
    uint64_t total = 0;
    for (size_t i = 0; i < plan.n; i++)
        total += plan.t[i].nbytes;
    st = prepare_dir(dir);
    if (st == DSI_OK)
        st = check_space(dir, total);
    if (st != DSI_OK)
        goto out;
    if ((w.chunk = malloc(CHUNK_BYTES)) == NULL) {
        DSI_ERROR("synth: out of memory");
        st = DSI_ERR_NOMEM;
        goto out;
    }
    for (unsigned r = 0; r < 65536; r++)
        w.fp8_codes[r] = dsk_f32_to_fp8_e4m3((float)(448.0 * draw_value(r)));
    int n_shards = assign_shards(&plan, o->shard_size ? o->shard_size : DEFAULT_SHARD);
    st = write_text_file(dir, "config.json", config_text);
    if (st == DSI_OK)
        st = write_shards(&w, dir, &plan, n_shards);
    if (st == DSI_OK && n_shards > 1)
        st = write_index(dir, &plan, n_shards, total);
    if (st == DSI_OK)
        st = dsn_synth_tokenizer_write(dir, cfg.vocab_size, NULL);
    if (st == DSI_OK)
        DSI_INFO("synth: wrote %zu tensors, %.3f GB in %d shard(s) to %s", plan.n,
                 (double)total / 1e9, n_shards, dir);
out:
    for (int i = 0; i < N_BF16_TABLES; i++)
        free(w.bf16[i].codes);
    free(w.chunk);
    syn_plan_free(&plan);
    free(config_text);
    return st;
}
