/*
 * test_unit_ckpt_broken.c - dsn_checkpoint_open / _matrix on copies of tiny-v3 broken in one way
 * each (in a fresh temporary directory): every case must give its status and log a line naming
 * the file, tensor or field at fault. Also: an intact copy with reference.safetensors beside the
 * shards opens, and MTP-layer tensors are skipped and counted.
 */
#include <sys/stat.h>

#include "ckpt_test_helpers.h"
#include "dsn_checkpoint.h"

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"
#define INDEX  "model.safetensors.index.json"
/* A tensor of shard 2 and its FP8 projection (kv_a_proj of layer 3 is in shard 2). */
#define KVA3 "model.layers.3.self_attn.kv_a_proj_with_mqa"

static const char *fixture;
static char root[256];
static int case_no;

/*
 * A fresh model directory: the JSON files copied, the safetensors files symlinked to the fixture
 * (cheap); own() replaces a symlink by a private copy before a case edits that file, so that no
 * write can ever reach the read-only fixture.
 */
static const char *fresh_copy(void)
{
    static char dir[512];
    snprintf(dir, sizeof(dir), "%s/c%d", root, case_no++);
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p '%s' && cp '%s'/*.json '%s'/ && chmod u+w '%s'/*.json && "
             "for f in '%s'/*.safetensors; do ln -s \"$f\" '%s'/; done",
             dir, fixture, dir, dir, fixture, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot prepare %s\n", dir);
        exit(1);
    }
    return dir;
}

static void write_text(const char *path, const char *text)
{
    write_file(path, text, strlen(text));
}

static const char *in(const char *dir, const char *name)
{
    static char path[2][1024];
    static int k;
    k ^= 1;
    snprintf(path[k], sizeof(path[k]), "%s/%s", dir, name);
    return path[k];
}

/* d/name as a private writable copy of the fixture's file (see fresh_copy). */
static const char *own(const char *dir, const char *name)
{
    const char *path = in(dir, name);
    struct stat sb;
    if (lstat(path, &sb) == 0 && !S_ISLNK(sb.st_mode))
        return path; /* already private */
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "rm -f '%s' && cp '%s/%s' '%s' && chmod u+w '%s'", path, fixture,
             name, path, path);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot copy %s\n", name);
        exit(1);
    }
    return path;
}

/* Open `dir`, expect `want`, and check the log names `needle`. */
static void expect_open(const char *what, const char *dir, dsi_status_t want, const char *needle)
{
    fprintf(stderr, "case: %s\n", what);
    dsn_checkpoint_t *ck = NULL;
    capture_begin();
    dsi_status_t st = dsn_checkpoint_open(dir, &ck);
    const char *log = capture_end();
    DSI_CHECK_INT_EQ(st, want);
    if (needle != NULL)
        CHECK_LOGGED(log, needle);
    if (want != DSI_OK)
        DSI_CHECK(ck == NULL);
    dsn_checkpoint_close(ck);
}

static void del_key(json_t *obj, void *arg)
{
    json_object_del(obj, arg);
}

static void del_from_index(json_t *idx, void *arg)
{
    json_object_del(json_object_get(idx, "weight_map"), arg);
}

typedef struct {
    const char *tensor, *field, *json;
} set_arg_t;

static void set_field(json_t *obj, void *arg)
{
    const set_arg_t *a = arg;
    json_t *target = a->tensor ? json_object_get(obj, a->tensor) : obj;
    json_object_set_new(target, a->field, json_loads(a->json, JSON_DECODE_ANY, NULL));
}

static void set_tensor(const char *shard, const char *tensor, const char *field, const char *json)
{
    set_arg_t a = {tensor, field, json};
    st_edit_header(shard, set_field, &a);
}

static void test_intact(void)
{
    /* The fixture itself holds reference.safetensors, which is not a shard and is ignored. */
    expect_open("intact copy", fresh_copy(), DSI_OK, NULL);
}

static void test_files(void)
{
    const char *d = fresh_copy();
    unlink(in(d, SHARD2));
    expect_open("missing shard", d, DSI_ERR_IO,
                "shard '" SHARD2 "' listed in " INDEX " is missing");

    d = fresh_copy();
    run_cmd("cp '%s' '%s'", in(d, SHARD2), in(d, "model-00003-of-00003.safetensors"));
    expect_open("extra shard", d, DSI_ERR_FORMAT,
                "model-00003-of-00003.safetensors: extra shard: not listed in " INDEX);

    d = fresh_copy();
    unlink(in(d, INDEX));
    expect_open("no index and no model.safetensors", d, DSI_ERR_NOT_FOUND,
                "no " INDEX " and no model.safetensors");

    d = fresh_copy();
    write_text(in(d, INDEX), "{\"weight_map\": {");
    expect_open("invalid index JSON", d, DSI_ERR_FORMAT, INDEX ": invalid JSON");

    d = fresh_copy();
    write_text(in(d, INDEX), "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
    expect_open("shard path outside the directory", d, DSI_ERR_FORMAT,
                "tensor 'a': shard '../x.safetensors' is not a file name");

    d = fresh_copy();
    write_text(in(d, INDEX), "{\"weight_map\": {\"a\": 7}}");
    expect_open("index value not a string", d, DSI_ERR_FORMAT,
                "tensor 'a': weight_map value is not a string");

    d = fresh_copy();
    write_text(in(d, INDEX), "{\"metadata\": {}}");
    expect_open("index without weight_map", d, DSI_ERR_FORMAT, "'weight_map'");

    /* Truncated shard, header length out of bounds. */
    d = fresh_copy();
    truncate(own(d, SHARD2), 4000000);
    expect_open("truncated shard", d, DSI_ERR_FORMAT, "beyond the data section");
    d = fresh_copy();
    FILE *fp = fopen(own(d, SHARD1), "r+b");
    fwrite("\x00\x00\x00\x10\x00\x00\x00\x00", 1, 8, fp);
    fclose(fp);
    expect_open("header length out of bounds", d, DSI_ERR_FORMAT,
                SHARD1 ": header length 268435456 goes beyond the end of the file");
    d = fresh_copy();
    fp = fopen(own(d, SHARD1), "r+b");
    fseek(fp, 8, SEEK_SET);
    fwrite("[[[[", 1, 4, fp);
    fclose(fp);
    expect_open("invalid header JSON", d, DSI_ERR_FORMAT, SHARD1 ": header: invalid JSON");

    /* FIFOs in place of a shard, the index or config.json: refused at once (an open of a FIFO
     * waits for a writer: this test would hang). */
    d = fresh_copy();
    unlink(in(d, SHARD2));
    DSI_CHECK_INT_EQ(mkfifo(in(d, SHARD2), 0600), 0);
    expect_open("shard is a FIFO", d, DSI_ERR_IO, SHARD2 ": not a regular file");
    d = fresh_copy();
    unlink(in(d, INDEX));
    DSI_CHECK_INT_EQ(mkfifo(in(d, INDEX), 0600), 0);
    expect_open("index is a FIFO", d, DSI_ERR_FORMAT, INDEX ": not a regular file");
    d = fresh_copy();
    unlink(in(d, "config.json"));
    DSI_CHECK_INT_EQ(mkfifo(in(d, "config.json"), 0600), 0);
    expect_open("config.json is a FIFO", d, DSI_ERR_CONFIG, "config.json: not a regular file");
}

static void test_tensors(void)
{
    const char *d = fresh_copy();
    st_edit_header(own(d, SHARD2), del_key, KVA3 ".weight");
    json_edit_file(in(d, INDEX), del_from_index, KVA3 ".weight");
    expect_open("missing tensor (index and shard)", d, DSI_OK, NULL);
    dsn_checkpoint_t *ck = NULL;
    dsk_matrix_t m;
    if (dsn_checkpoint_open(d, &ck) == DSI_OK) {
        capture_begin();
        DSI_CHECK_INT_EQ(dsn_checkpoint_matrix(ck, KVA3, 80, 256, &m), DSI_ERR_MISSING_TENSOR);
        CHECK_LOGGED(capture_end(), "tensor '" KVA3 ".weight': missing");
        dsn_checkpoint_close(ck);
    }

    d = fresh_copy();
    st_edit_header(own(d, SHARD2), del_key, KVA3 ".weight");
    expect_open("tensor listed in the index but absent from its shard", d, DSI_ERR_MISSING_TENSOR,
                "tensor '" KVA3 ".weight': listed in " SHARD2 " but not found");

    d = fresh_copy();
    json_edit_file(in(d, INDEX), del_from_index, KVA3 ".weight");
    expect_open("extra tensor in a shard", d, DSI_ERR_FORMAT,
                "tensor '" KVA3 ".weight': extra tensor in shard " SHARD2);

    d = fresh_copy();
    st_edit_header(own(d, SHARD2), del_key, KVA3 ".weight_scale_inv");
    json_edit_file(in(d, INDEX), del_from_index, KVA3 ".weight_scale_inv");
    if (dsn_checkpoint_open(d, &ck) == DSI_OK) {
        capture_begin();
        DSI_CHECK_INT_EQ(dsn_checkpoint_matrix(ck, KVA3, 80, 256, &m), DSI_ERR_MISSING_TENSOR);
        CHECK_LOGGED(capture_end(), "tensor '" KVA3 ".weight_scale_inv': missing");
        dsn_checkpoint_close(ck);
    }

    /* Wrong shape / dtype: valid files, refused when the loader asks for the matrix. */
    d = fresh_copy();
    set_tensor(own(d, SHARD2), KVA3 ".weight", "shape", "[160, 128]");
    set_tensor(own(d, SHARD2), "model.layers.3.mlp.shared_experts.up_proj.weight", "dtype",
               "\"I8\"");
    set_tensor(own(d, SHARD2), "model.layers.3.self_attn.q_a_proj.weight_scale_inv", "shape",
               "[4, 1]");
    set_tensor(own(d, SHARD2), "model.layers.3.self_attn.o_proj.weight_scale_inv", "dtype",
               "\"I32\"");
    DSI_CHECK_INT_EQ(dsn_checkpoint_open(d, &ck), DSI_OK);
    if (ck != NULL) {
        capture_begin();
        DSI_CHECK_INT_EQ(dsn_checkpoint_matrix(ck, KVA3, 80, 256, &m), DSI_ERR_BAD_TENSOR);
        CHECK_LOGGED(capture_end(),
                     "tensor '" KVA3 ".weight': shape [160, 128], expected [80, 256]");
        capture_begin();
        DSI_CHECK_INT_EQ(
            dsn_checkpoint_matrix(ck, "model.layers.3.mlp.shared_experts.up_proj", 96, 256, &m),
            DSI_ERR_BAD_TENSOR);
        CHECK_LOGGED(capture_end(), "up_proj.weight': dtype I8, expected F8_E4M3, BF16 or F32");
        capture_begin();
        DSI_CHECK_INT_EQ(
            dsn_checkpoint_matrix(ck, "model.layers.3.self_attn.q_a_proj", 192, 256, &m),
            DSI_ERR_BAD_TENSOR);
        CHECK_LOGGED(capture_end(), "q_a_proj.weight_scale_inv': shape [4, 1], expected [2, 2]");
        capture_begin();
        DSI_CHECK_INT_EQ(dsn_checkpoint_matrix(ck, "model.layers.3.self_attn.o_proj", 256, 128, &m),
                         DSI_ERR_BAD_TENSOR);
        CHECK_LOGGED(capture_end(), "o_proj.weight_scale_inv': dtype I32, expected F32");
        dsn_checkpoint_close(ck);
    }

    /* Offsets out of bounds, overlapping offsets, unknown dtype. */
    d = fresh_copy();
    set_tensor(own(d, SHARD1), "model.layers.0.mlp.down_proj.weight_scale_inv", "data_offsets",
               "[100000000, 100000024]");
    expect_open("offsets out of bounds", d, DSI_ERR_FORMAT,
                "tensor 'model.layers.0.mlp.down_proj.weight_scale_inv': data_offsets "
                "[100000000, 100000024] beyond the data section");
    d = fresh_copy();
    set_tensor(own(d, SHARD1), "model.layers.0.mlp.gate_proj.weight_scale_inv", "data_offsets",
               "[12, 36]");
    expect_open("overlapping offsets", d, DSI_ERR_FORMAT, "data overlaps tensor");
    d = fresh_copy();
    set_tensor(own(d, SHARD2), "model.norm.weight", "dtype", "\"BF17\"");
    expect_open("unknown dtype", d, DSI_ERR_FORMAT,
                "tensor 'model.norm.weight': unknown dtype 'BF17'");
}

static void test_config(void)
{
    const char *d = fresh_copy();
    write_text(in(d, "config.json"), "{\"vocab_size\": 1024,,}");
    expect_open("invalid config JSON", d, DSI_ERR_CONFIG, "config.json: invalid JSON");

    d = fresh_copy();
    json_edit_file(in(d, "config.json"), del_key, "kv_lora_rank");
    expect_open("missing config field", d, DSI_ERR_CONFIG,
                "config.json: field 'kv_lora_rank': missing");

    d = fresh_copy();
    set_arg_t a = {NULL, "n_routed_experts", "34"};
    json_edit_file(in(d, "config.json"), set_field, &a);
    expect_open("inconsistent config", d, DSI_ERR_CONFIG,
                "field 'n_group': n_routed_experts 34 is not divisible by n_group 4");

    d = fresh_copy();
    unlink(in(d, "config.json"));
    expect_open("no config", d, DSI_ERR_CONFIG, "no config.json");

    /* Layer 3 becomes the MTP layer: its tensors leave the main table but can be found by name
     * (the MTP loader takes them from there). */
    d = fresh_copy();
    set_arg_t layers = {NULL, "num_hidden_layers", "3"};
    set_arg_t nextn = {NULL, "num_nextn_predict_layers", "1"};
    json_edit_file(in(d, "config.json"), set_field, &layers);
    json_edit_file(in(d, "config.json"), set_field, &nextn);
    dsn_checkpoint_t *ck = NULL;
    DSI_CHECK_INT_EQ(dsn_checkpoint_open(d, &ck), DSI_OK);
    if (ck != NULL) {
        size_t skipped = dsn_checkpoint_skipped_count(ck);
        DSI_CHECK(skipped > 100);
        DSI_CHECK_INT_EQ(dsn_checkpoint_count(ck) + skipped, 665);
        DSI_CHECK(dsn_checkpoint_find(ck, KVA3 ".weight") != NULL);
        for (size_t i = 0; i < dsn_checkpoint_count(ck); i++)
            DSI_CHECK(strstr(dsn_checkpoint_at(ck, i)->name, "layers.3.") == NULL);
        DSI_CHECK(dsn_checkpoint_find(ck, "model.layers.2.self_attn.kv_a_proj_with_mqa.weight"));
        DSI_CHECK(dsn_checkpoint_skipped_bytes(ck) > 0);
        dsn_checkpoint_close(ck);
    }
}

/* MTP tensors with a config that does not announce them: skipped, and warned about once. */
static void test_unannounced_mtp(void)
{
    const char *d = fresh_copy();
    set_arg_t layers = {NULL, "num_hidden_layers", "3"};
    json_edit_file(in(d, "config.json"), set_field, &layers);
    dsn_checkpoint_t *ck = NULL;
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_checkpoint_open(d, &ck), DSI_OK);
    const char *log = capture_end();
    CHECK_LOGGED(log, "such tensors are skipped");
    const char *first = strstr(log, "such tensors are skipped");
    DSI_CHECK(first != NULL && strstr(first + 1, "such tensors are skipped") == NULL);
    if (ck != NULL) {
        DSI_CHECK(dsn_checkpoint_skipped_count(ck) > 100);
        dsn_checkpoint_close(ck);
    }
}

int main(void)
{
    fixture = dsi_test_fixture("tiny-v3");
    snprintf(root, sizeof(root), "%s", dsi_test_tmpdir());
    test_intact();
    test_files();
    test_tensors();
    test_config();
    test_unannounced_mtp();
    dsi_test_rmtree(root);
    return dsi_test_finish();
}
