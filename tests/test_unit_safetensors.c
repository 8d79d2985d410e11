/*
 * test_unit_safetensors.c - dsn_st_open on hand-made files: a valid one (lookups, dtypes, empty
 * tensors, __metadata__) and one file per way a header can be wrong, each of which must give
 * DSI_ERR_FORMAT and a log line naming the file and the tensor. Run under ASan this also shows
 * that nothing reads outside the mapping.
 */
#include <sys/stat.h>

#include "ckpt_test_helpers.h"
#include "dsn_safetensors.h"

static char dir[256];

/* Write `header` + data_len bytes as a file, open it, expect `want`, and check the log. */
static void expect_open(const char *header, size_t data_len, dsi_status_t want, const char *needle)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/t.safetensors", dir);
    write_st(path, header, data_len);
    dsn_st_file_t *f = NULL;
    capture_begin();
    dsi_status_t st = dsn_st_open(path, &f);
    const char *log = capture_end();
    DSI_CHECK_INT_EQ(st, want);
    if (want != DSI_OK) {
        DSI_CHECK(f == NULL);
        CHECK_LOGGED(log, path);
    }
    if (needle != NULL)
        CHECK_LOGGED(log, needle);
    dsn_st_close(f);
}

static void test_valid(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/ok.safetensors", dir);
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"empty\":{\"dtype\":\"F8_E4M3\",\"shape\":[0,5],\"data_offsets\":[28,28]},"
                    "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[28,36]}}";
    write_st(path, h, 36);
    dsn_st_file_t *f = NULL;
    DSI_CHECK_INT_EQ(dsn_st_open(path, &f), DSI_OK);
    if (f == NULL)
        return;
    DSI_CHECK_INT_EQ(dsn_st_count(f), 4);
    DSI_CHECK_STR_EQ(dsn_st_path(f), path);
    /* Header order is kept. */
    DSI_CHECK_STR_EQ(dsn_st_at(f, 0)->name, "b");
    DSI_CHECK_STR_EQ(dsn_st_at(f, 1)->name, "a");
    DSI_CHECK(dsn_st_at(f, 4) == NULL);
    const dsn_st_tensor_t *b = dsn_st_find(f, "b");
    DSI_CHECK(b != NULL);
    if (b != NULL) {
        DSI_CHECK_INT_EQ(b->dtype, DSN_ST_BF16);
        DSI_CHECK_INT_EQ(b->n_dims, 2);
        DSI_CHECK_INT_EQ(b->shape[1], 3);
        DSI_CHECK_INT_EQ(b->nbytes, 12);
        DSI_CHECK_INT_EQ(((const unsigned char *)b->data)[0], (16 * 7) & 0xff);
    }
    const dsn_st_tensor_t *s = dsn_st_find(f, "s");
    DSI_CHECK(s != NULL && s->n_dims == 0 && s->nbytes == 8);
    const dsn_st_tensor_t *e = dsn_st_find(f, "empty");
    DSI_CHECK(e != NULL && e->nbytes == 0);
    DSI_CHECK(dsn_st_find(f, "c") == NULL);
    DSI_CHECK(dsn_st_find(f, "") == NULL);
    DSI_CHECK_INT_EQ(dsn_st_file_size(f), 8 + strlen(h) + 36);
    dsn_st_close(f);

    DSI_CHECK_STR_EQ(dsn_st_dtype_name(DSN_ST_F8_E4M3), "F8_E4M3");
    DSI_CHECK_INT_EQ(dsn_st_dtype_size(DSN_ST_BF16), 2);
    DSI_CHECK_INT_EQ(dsn_st_dtype_size(DSN_ST_DTYPE_COUNT), 0);
}

static void test_file_level(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/short.safetensors", dir);
    write_file(path, "\x05\0\0", 3);
    dsn_st_file_t *f = NULL;
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_st_open(path, &f), DSI_ERR_FORMAT);
    CHECK_LOGGED(capture_end(), "shorter than the 8-byte header length");

    /* Header length beyond the file, and beyond the 100 MB cap. */
    snprintf(path, sizeof(path), "%s/len.safetensors", dir);
    write_file(path, "\x40\0\0\0\0\0\0\0{}", 10);
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_st_open(path, &f), DSI_ERR_FORMAT);
    CHECK_LOGGED(capture_end(), "beyond the end of the file");
    write_file(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_st_open(path, &f), DSI_ERR_FORMAT);
    CHECK_LOGGED(capture_end(), "header length 18446744073709551615");

    snprintf(path, sizeof(path), "%s/absent.safetensors", dir);
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_st_open(path, &f), DSI_ERR_NOT_FOUND);
    CHECK_LOGGED(capture_end(), "absent.safetensors: cannot open");
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_st_open(dir, &f), DSI_ERR_IO);
    CHECK_LOGGED(capture_end(), "not a regular file");
}

#define T(body) "{\"x\":" body "}"

static void test_headers(void)
{
    expect_open("{\"x\": [", 0, DSI_ERR_FORMAT, "invalid JSON");
    expect_open("[1, 2]", 0, DSI_ERR_FORMAT, "not a JSON object");
    expect_open("{\"__metadata__\": 3}", 0, DSI_ERR_FORMAT, "'__metadata__'");
    expect_open(T("17"), 0, DSI_ERR_FORMAT, "tensor 'x': entry is not a JSON object");
    expect_open(T("{\"shape\":[1],\"data_offsets\":[0,4]}"), 4, DSI_ERR_FORMAT,
                "tensor 'x': 'dtype' is missing");
    expect_open(T("{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}"), 4, DSI_ERR_FORMAT,
                "'dtype' is not a string");
    expect_open(T("{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4, DSI_ERR_FORMAT,
                "tensor 'x': unknown dtype 'Q4_K'");
    expect_open(T("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}"), 4, DSI_ERR_FORMAT,
                "'shape' is missing");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}"), 4, DSI_ERR_FORMAT,
                "'shape' is not an array");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}"), 4, DSI_ERR_FORMAT,
                "shape[0] is not a non-negative integer");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}"), 4, DSI_ERR_FORMAT,
                "shape[0] is not a non-negative integer");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}"), 4,
                DSI_ERR_FORMAT, "9 dimensions");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}"),
                4, DSI_ERR_FORMAT, "shape overflows");
    expect_open(T("{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,4]}"), 4,
                DSI_ERR_FORMAT, "byte size overflows");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[1]}"), 4, DSI_ERR_FORMAT,
                "'data_offsets' is missing");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}"), 4, DSI_ERR_FORMAT,
                "'data_offsets' is not an array of two");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}"), 4, DSI_ERR_FORMAT,
                "'data_offsets' is not an array of two");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}"), 4, DSI_ERR_FORMAT,
                "tensor 'x': data_offsets [4, 0] out of order");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"), 4, DSI_ERR_FORMAT,
                "tensor 'x': data_offsets [0, 8] beyond the data section of 4 bytes");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[1],"
                  "\"data_offsets\":[18446744073709551615,18446744073709551615]}"),
                4, DSI_ERR_FORMAT, "invalid JSON");
    expect_open(T("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}"), 8, DSI_ERR_FORMAT,
                "tensor 'x': data_offsets span 8 bytes but shape x F32 needs 12");
    expect_open("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                12, DSI_ERR_FORMAT, "tensor 'b': data overlaps tensor 'a'");
    expect_open("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
                8, DSI_ERR_FORMAT, "overlaps tensor 'a'");
    expect_open("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                8, DSI_ERR_FORMAT, "duplicate");
    /* Adjacent tensors are fine, in any header order. */
    expect_open("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                8, DSI_OK, NULL);
}

static void test_truncated_fixture(void)
{
    const char *fx = dsi_test_fixture("tiny-v3");
    char src[512], dst[512];
    snprintf(src, sizeof(src), "%s/model-00002-of-00002.safetensors", fx);
    snprintf(dst, sizeof(dst), "%s/trunc.safetensors", dir);
    size_t n;
    void *buf = read_file(src, &n);
    dsn_st_file_t *f = NULL;
    DSI_CHECK_INT_EQ(dsn_st_open(src, &f), DSI_OK);
    dsn_st_close(f);
    /* Cut inside the data: the last tensor then ends beyond the data section. */
    write_file(dst, buf, n - 100);
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_st_open(dst, &f), DSI_ERR_FORMAT);
    CHECK_LOGGED(capture_end(), "beyond the data section");
    /* Cut inside the header. */
    write_file(dst, buf, 1000);
    capture_begin();
    DSI_CHECK_INT_EQ(dsn_st_open(dst, &f), DSI_ERR_FORMAT);
    CHECK_LOGGED(capture_end(), "beyond the end of the file");
    free(buf);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "%s", dsi_test_tmpdir());
    test_valid();
    test_file_level();
    test_headers();
    test_truncated_fixture();
    dsi_test_rmtree(dir);
    return dsi_test_finish();
}
