/*
 * fuzz_checkpoint - a model directory (node/model/dsn_checkpoint.c): the index
 * model.safetensors.index.json cross-checked against the shards' headers, the MTP-layer skipping,
 * and the typed accessors the weight loader uses (dsn_checkpoint_matrix / _vector_f32).
 *
 * Input: up to three parts separated by the line "--shard--":
 *   index JSON (empty: no index file, a single model.safetensors)
 *   --shard--
 *   first shard (model-00001-of-00002.safetensors, or model.safetensors without an index)
 *   --shard--
 *   second shard (model-00002-of-00002.safetensors)
 * written into a temporary directory (under /dev/shm when it exists) that also holds a fixed
 * tiny config.json (4 layers, 1 MTP layer). An opened checkpoint must find every tensor it lists
 * by name, and every 2-D ".weight" / 1-D tensor is read through the accessors that accept it.
 */
#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include "dsn_checkpoint.h"
#include "fuzz_util.h"

static const char config[] =
    "{\"vocab_size\": 1024, \"hidden_size\": 256, \"intermediate_size\": 384,"
    " \"moe_intermediate_size\": 96, \"num_hidden_layers\": 4, \"num_nextn_predict_layers\": 1,"
    " \"first_k_dense_replace\": 1, \"moe_layer_freq\": 1, \"n_routed_experts\": 32,"
    " \"n_shared_experts\": 1, \"num_experts_per_tok\": 4, \"n_group\": 4, \"topk_group\": 2,"
    " \"routed_scaling_factor\": 2.5, \"norm_topk_prob\": true, \"num_attention_heads\": 4,"
    " \"q_lora_rank\": 192, \"kv_lora_rank\": 64, \"qk_nope_head_dim\": 32,"
    " \"qk_rope_head_dim\": 16, \"v_head_dim\": 32, \"rms_norm_eps\": 1e-06,"
    " \"rope_theta\": 10000, \"max_position_embeddings\": 163840, \"bos_token_id\": 0,"
    " \"eos_token_id\": 1, \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\","
    " \"weight_block_size\": [128, 128]}}";

static const char *const files[] = {"model.safetensors.index.json",
                                    "model-00001-of-00002.safetensors",
                                    "model-00002-of-00002.safetensors", "model.safetensors"};
static char dir[256];

static void write_file(const char *name, const uint8_t *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
}

static void cleanup(void)
{
    char path[512];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof(dir), "%s/dsinfer-fuzz-ckpt-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(cleanup);
    write_file("config.json", (const uint8_t *)config, sizeof(config) - 1);
    return 0;
}

/* Splits at "\n--shard--\n" (a leading "--shard--\n" makes the first part empty). */
static size_t split(const uint8_t *data, size_t size, const uint8_t *part[3], size_t len[3])
{
    static const char sep[] = "\n--shard--\n";
    size_t n = 0, start = 0;
    if (size >= sizeof(sep) - 2 && memcmp(data, sep + 1, sizeof(sep) - 2) == 0) {
        part[n] = data, len[n] = 0, n++;
        start = sizeof(sep) - 2;
    }
    while (n < 2) {
        const uint8_t *hit = memmem(data + start, size - start, sep, sizeof(sep) - 1);
        if (hit == NULL)
            break;
        part[n] = data + start, len[n] = (size_t)(hit - (data + start)), n++;
        start = (size_t)(hit - data) + sizeof(sep) - 1;
    }
    part[n] = data + start, len[n] = size - start;
    return n + 1;
}

static void use(const dsn_checkpoint_t *c)
{
    size_t n = dsn_checkpoint_count(c);
    for (size_t i = 0; i < n; i++) {
        const dsn_st_tensor_t *t = dsn_checkpoint_at(c, i);
        FUZZ_CHECK(t != NULL && dsn_checkpoint_find(c, t->name) == t);
        size_t nl = strlen(t->name);
        if (t->n_dims == 2 && nl > 7 && nl < 400 && strcmp(t->name + nl - 7, ".weight") == 0) {
            char prefix[400];
            memcpy(prefix, t->name, nl - 7);
            prefix[nl - 7] = '\0';
            dsk_matrix_t m;
            if (dsn_checkpoint_matrix(c, prefix, t->shape[0], t->shape[1], &m) == DSI_OK) {
                FUZZ_CHECK(m.data == t->data && m.rows == t->shape[0] && m.cols == t->shape[1]);
                fuzz_touch(t->data, t->nbytes);
                if (m.scale_inv != NULL) {
                    int64_t sr = (m.rows + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
                    int64_t sc = (m.cols + DSK_FP8_BLOCK - 1) / DSK_FP8_BLOCK;
                    fuzz_touch(m.scale_inv, (size_t)(sr * sc) * sizeof(float));
                }
            }
        }
        if (t->n_dims == 1 && t->shape[0] <= 4096) {
            float v[4096];
            (void)dsn_checkpoint_vector_f32(c, t->name, t->shape[0], v);
        }
    }
    FUZZ_CHECK(dsn_checkpoint_at(c, n) == NULL);
    FUZZ_CHECK(dsn_checkpoint_shard_count(c) >= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3];
    size_t len[3];
    size_t parts = split(data, size, part, len);
    int indexed = len[0] > 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    if (indexed)
        write_file(files[0], part[0], len[0]);
    if (parts > 1)
        write_file(indexed ? files[1] : files[3], part[1], len[1]);
    if (parts > 2)
        write_file(files[2], part[2], len[2]);
    dsn_checkpoint_t *c = NULL;
    if (dsn_checkpoint_open(dir, &c) != DSI_OK)
        return 0;
    FUZZ_CHECK(dsn_checkpoint_config(c)->num_hidden_layers == 4);
    use(c);
    dsn_checkpoint_close(c);
    return 0;
}
