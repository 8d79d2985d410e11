/*
 * fuzz_safetensors - the safetensors header parser (node/model/dsn_safetensors.c, dsn_st_open).
 *
 * Input: the bytes of one .safetensors file. dsn_st_open takes a path and maps the file, so the
 * input is written to a memfd opened through /proc/self/fd (no disk, one file for the process).
 * For an accepted file every tensor must lie inside the mapping (all its bytes are read, so a
 * range past the end faults), have nbytes = shape x dtype size, and be found by its name.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dsn_safetensors.h"
#include "fuzz_util.h"

static int memfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    memfd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
    if (memfd < 0) {
        perror("memfd_create");
        exit(1);
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    return 0;
}

static void write_input(const uint8_t *data, size_t size)
{
    FUZZ_CHECK(ftruncate(memfd, 0) == 0);
    size_t off = 0;
    while (off < size) {
        ssize_t n = pwrite(memfd, data + off, size - off, (off_t)off);
        FUZZ_CHECK(n > 0);
        off += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_input(data, size);
    dsn_st_file_t *f = NULL;
    if (dsn_st_open(path, &f) != DSI_OK)
        return 0;
    FUZZ_CHECK(dsn_st_file_size(f) == size);
    size_t n = dsn_st_count(f), total = 0;
    for (size_t i = 0; i < n; i++) {
        const dsn_st_tensor_t *t = dsn_st_at(f, i);
        FUZZ_CHECK(t != NULL && t->name != NULL);
        FUZZ_CHECK(t->n_dims >= 0 && t->n_dims <= DSN_ST_MAX_DIMS);
        uint64_t elems = 1;
        for (int d = 0; d < t->n_dims; d++) {
            FUZZ_CHECK(t->shape[d] >= 0);
            elems *= (uint64_t)t->shape[d];
        }
        FUZZ_CHECK(elems * dsn_st_dtype_size(t->dtype) == t->nbytes);
        FUZZ_CHECK(strcmp(dsn_st_dtype_name(t->dtype), "?") != 0);
        FUZZ_CHECK(dsn_st_find(f, t->name) == t);
        total += t->nbytes;
        fuzz_touch(t->data, t->nbytes);
    }
    /* Tensors are disjoint and inside the data section. */
    FUZZ_CHECK(total <= size);
    FUZZ_CHECK(dsn_st_at(f, n) == NULL);
    dsn_st_close(f);
    return 0;
}
