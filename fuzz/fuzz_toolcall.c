/*
 * fuzz_toolcall - the tool-call parser of generated text (coordinator/text/dsc_toolcall.c).
 *
 * Input: model output, any bytes (the parser works on bytes; the engine hands it whole UTF-8
 * characters). It is fed whole, then byte by byte, then in pieces whose sizes come from the
 * input itself. Checks: the three give the same content, the same calls and the same arguments
 * (the streamed and the whole response agree); no event carries more bytes than the input has;
 * call indexes count up from 0 and arguments belong to the latest call.
 */
#include <string.h>

#include "dsc_toolcall.h"
#include "fuzz_util.h"

typedef struct {
    char *log; /* content, then per call "\x01name\x02args" */
    size_t len, cap, bytes;
    int last; /* index of the latest call, -1 before */
} rec_t;

static void add(rec_t *r, const char *s, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + n + 1)
            cap *= 2;
        r->log = realloc(r->log, cap);
        FUZZ_CHECK(r->log != NULL);
        r->cap = cap;
    }
    memcpy(r->log + r->len, s, n);
    r->len += n;
}

static void on_content(void *ctx, const char *text, size_t len)
{
    rec_t *r = ctx;
    add(r, text, len);
    r->bytes += len;
}

static void on_call(void *ctx, int index, const char *name, size_t len)
{
    rec_t *r = ctx;
    FUZZ_CHECK(index == r->last + 1 && len > 0);
    r->last = index;
    add(r, "\x01", 1);
    add(r, name, len);
    add(r, "\x02", 1);
    r->bytes += len;
}

static void on_args(void *ctx, int index, const char *text, size_t len)
{
    rec_t *r = ctx;
    FUZZ_CHECK(index == r->last && len > 0);
    add(r, text, len);
    r->bytes += len;
}

static const dsc_toolcall_sink_t sink = {on_content, on_call, on_args};

/* Feed data in pieces of `step` bytes (0: sizes from the data's bytes). */
static void run(const uint8_t *data, size_t size, size_t step, rec_t *r)
{
    dsc_toolcall_t *p = NULL;
    memset(r, 0, sizeof(*r));
    r->last = -1;
    FUZZ_CHECK(dsc_toolcall_create(&sink, r, &p) == DSI_OK);
    for (size_t at = 0, k = 0; at < size; k++) {
        size_t n = step ? step : 1 + data[k % size] % 17;
        if (n > size - at)
            n = size - at;
        FUZZ_CHECK(dsc_toolcall_feed(p, (const char *)data + at, n) == DSI_OK);
        at += n;
    }
    FUZZ_CHECK(dsc_toolcall_finish(p) == DSI_OK);
    FUZZ_CHECK(dsc_toolcall_count(p) == r->last + 1);
    FUZZ_CHECK(r->bytes <= size);
    dsc_toolcall_destroy(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rec_t whole, bytes, pieces;
    run(data, size, size ? size : 1, &whole);
    run(data, size, 1, &bytes);
    run(data, size, 0, &pieces);
    FUZZ_CHECK(whole.len == bytes.len &&
               (whole.len == 0 || memcmp(whole.log, bytes.log, whole.len) == 0));
    FUZZ_CHECK(whole.len == pieces.len &&
               (whole.len == 0 || memcmp(whole.log, pieces.log, whole.len) == 0));
    free(whole.log);
    free(bytes.log);
    free(pieces.log);
    return 0;
}
