/*
 * test_unit_mtp_broken.c - the MTP loader on damaged copies of ../shared/fixtures/tiny-v3-mtp:
 * a checkpoint whose module lacks eh_proj is one without the module (it runs as before, without
 * speculation); one that lacks another of the module's tensors, or whose eh_proj has the wrong
 * shape for the config, is refused by dsn_mtp_weights_load with the tensor named.
 */
#include <sys/stat.h>

#include "ckpt_test_helpers.h"
#include "dsn_checkpoint.h"
#include "dsn_mtp.h"

#define SHARD2 "model-00002-of-00002.safetensors"
#define INDEX  "model.safetensors.index.json"

static const char *fixture;
static char root[256];
static int case_no;

/* A copy of the fixture: JSON files copied, shard 1 linked, shard 2 (the module's) copied. */
static const char *fresh_copy(void)
{
    static char dir[512];
    snprintf(dir, sizeof(dir), "%s/c%d", root, case_no++);
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p '%s' && cp '%s'/*.json '%s'/ && chmod u+w '%s'/*.json && "
             "ln -s '%s'/model-00001-of-00002.safetensors '%s'/ && cp '%s'/" SHARD2 " '%s'/ && "
             "chmod u+w '%s'/" SHARD2,
             dir, fixture, dir, dir, fixture, dir, fixture, dir, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot prepare %s\n", dir);
        exit(1);
    }
    return dir;
}

static const char *in(const char *dir, const char *name)
{
    static char path[2][1024];
    static int k;
    k ^= 1;
    snprintf(path[k], sizeof(path[k]), "%s/%s", dir, name);
    return path[k];
}

/* Pads a shard header (__metadata__) to a multiple of 8 bytes as st_edit_header writes it, so
 * the data after it keeps its alignment. */
static void pad8(json_t *hdr)
{
    json_t *meta = json_object_get(hdr, "__metadata__");
    if (meta == NULL) {
        meta = json_object();
        json_object_set_new(hdr, "__metadata__", meta);
    }
    json_object_set_new(meta, "pad", json_string(""));
    char *text = json_dumps(hdr, JSON_COMPACT);
    size_t k = (8 - strlen(text) % 8) % 8;
    free(text);
    char pad[8] = "xxxxxxx";
    pad[k] = '\0';
    json_object_set_new(meta, "pad", json_string(pad));
}

static void del_key(json_t *obj, void *arg)
{
    json_object_del(obj, arg);
    pad8(obj);
}

static void del_from_index(json_t *idx, void *arg)
{
    json_object_del(json_object_get(idx, "weight_map"), arg);
}

/* Removes tensor `name` from the copy's shard 2 and index. */
static void drop(const char *d, const char *name)
{
    st_edit_header(in(d, SHARD2), del_key, (void *)name);
    json_edit_file(in(d, INDEX), del_from_index, (void *)name);
}

/* Loads the module of d: expect `want`, the log naming `needle` (NULL: anything). */
static void expect_load(const char *what, const char *d, int present, dsi_status_t want,
                        const char *needle)
{
    fprintf(stderr, "case: %s\n", what);
    dsn_checkpoint_t *ck = NULL;
    DSI_CHECK_INT_EQ(dsn_checkpoint_open(d, &ck), DSI_OK);
    if (ck == NULL)
        return;
    DSI_CHECK_INT_EQ(dsn_mtp_present(ck), present);
    dsn_mtp_weights_t *mw = NULL;
    capture_begin();
    dsi_status_t st = dsn_mtp_weights_load(ck, DSN_WFMT_AUTO, 1, NULL, &mw);
    const char *log = capture_end();
    DSI_CHECK_INT_EQ(st, want);
    if (needle != NULL)
        DSI_CHECK(strstr(log, needle) != NULL);
    DSI_CHECK((mw != NULL) == (want == DSI_OK));
    dsn_mtp_weights_destroy(mw);
    dsn_checkpoint_close(ck);
}

int main(void)
{
    fixture = dsi_test_fixture("tiny-v3-mtp");
    snprintf(root, sizeof(root), "%s", dsi_test_tmpdir());
    expect_load("intact", fresh_copy(), 1, DSI_OK, NULL);

    const char *d = fresh_copy();
    drop(d, "model.layers.3.eh_proj.weight");
    expect_load("no eh_proj: no module", d, 0, DSI_ERR_MISSING_TENSOR, "no MTP module");

    d = fresh_copy();
    drop(d, "model.layers.3.hnorm.weight");
    expect_load("no hnorm", d, 1, DSI_ERR_MISSING_TENSOR, "model.layers.3.hnorm.weight");

    d = fresh_copy();
    drop(d, "model.layers.3.shared_head.head.weight");
    expect_load("no shared_head.head", d, 1, DSI_ERR_MISSING_TENSOR,
                "model.layers.3.shared_head.head.weight");

    d = fresh_copy();
    drop(d, "model.layers.3.mlp.experts.7.up_proj.weight");
    drop(d, "model.layers.3.mlp.experts.7.up_proj.weight_scale_inv");
    expect_load("no expert 7 up_proj", d, 1, DSI_ERR_MISSING_TENSOR,
                "model.layers.3.mlp.experts.7.up_proj.weight");

    dsi_test_rmtree(root);
    return dsi_test_finish();
}
