/*
 * test_unit_toolcall.c - the tool-call parser (dsc_toolcall.h) on crafted model outputs of both
 * release formats (V3/R1 and V3.1): text before the calls stays content, each call gives its name
 * and its arguments, several calls, text after the block; malformed blocks (unknown marker
 * sequence, missing separator, missing fence, an over-long header, a block cut off in its header)
 * come back as content with nothing lost; arguments cut off stay a call. Every case is fed whole,
 * byte by byte, and split at every position into two pieces: the events must be the same, and
 * no content piece may carry a marker or end inside one.
 */
#include <stdlib.h>
#include <string.h>

#include "dsc_toolcall.h"
#include "dsi_test.h"

#define CB  DSC_TOOL_CALLS_BEGIN
#define CE  DSC_TOOL_CALLS_END
#define C1  DSC_TOOL_CALL_BEGIN
#define C2  DSC_TOOL_CALL_END
#define SEP DSC_TOOL_SEP

/* The events as one canonical text: content joined, then "|name(args)" per call. */
typedef struct {
    char content[4096];
    char calls[4096];
    int last_index;
    int bad_piece; /* a content piece held "<｜tool" or ended in a prefix of a marker */
} rec_t;

static void cat(char *dst, const char *s, size_t n)
{
    size_t l = strlen(dst);
    if (l + n + 1 < 4096) {
        memcpy(dst + l, s, n);
        dst[l + n] = '\0';
    }
}

static void on_content(void *ctx, const char *text, size_t len)
{
    rec_t *r = ctx;
    static const char marker[] = "<｜tool";
    for (size_t i = 0; i + 1 <= len; i++) {
        size_t rest = len - i < sizeof(marker) - 1 ? len - i : sizeof(marker) - 1;
        /* a whole marker inside, or a piece that ends in the first bytes of one */
        if (memcmp(text + i, marker, rest) == 0 && (rest == sizeof(marker) - 1 || i + rest == len))
            r->bad_piece = 1;
    }
    cat(r->content, text, len);
}

static void on_call(void *ctx, int index, const char *name, size_t len)
{
    rec_t *r = ctx;
    if (index != r->last_index + 1)
        r->bad_piece = 2;
    r->last_index = index;
    if (index > 0)
        cat(r->calls, ")", 1);
    cat(r->calls, "|", 1);
    cat(r->calls, name, len);
    cat(r->calls, "(", 1);
}

static void on_args(void *ctx, int index, const char *text, size_t len)
{
    rec_t *r = ctx;
    if (index != r->last_index || len == 0)
        r->bad_piece = 3;
    cat(r->calls, text, len);
}

static const dsc_toolcall_sink_t sink = {on_content, on_call, on_args};

/* Feed `in` cut at the given positions (sorted, within the text), then finish. */
static void run(const char *in, const size_t *cuts, int n_cuts, rec_t *r)
{
    memset(r, 0, sizeof(*r));
    r->last_index = -1;
    dsc_toolcall_t *p = NULL;
    DSI_CHECK_INT_EQ(dsc_toolcall_create(&sink, r, &p), DSI_OK);
    size_t at = 0, len = strlen(in);
    for (int i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        DSI_CHECK_INT_EQ(dsc_toolcall_feed(p, in + at, end - at), DSI_OK);
        at = end;
    }
    DSI_CHECK_INT_EQ(dsc_toolcall_finish(p), DSI_OK);
    if (r->last_index >= 0)
        cat(r->calls, ")", 1);
    DSI_CHECK_INT_EQ(dsc_toolcall_count(p), r->last_index + 1);
    dsc_toolcall_destroy(p);
}

static void check(const char *in, const char *content, const char *calls, int content_may_mark)
{
    rec_t r;
    size_t len = strlen(in);
    run(in, NULL, 0, &r);
    DSI_CHECK_STR_EQ(r.content, content);
    DSI_CHECK_STR_EQ(r.calls, calls);
    if (!content_may_mark)
        DSI_CHECK_INT_EQ(r.bad_piece, 0);
    /* byte by byte */
    size_t *cuts = calloc(len + 1, sizeof(size_t));
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    run(in, cuts, len > 1 ? (int)len - 1 : 0, &r);
    DSI_CHECK_STR_EQ(r.content, content);
    DSI_CHECK_STR_EQ(r.calls, calls);
    if (!content_may_mark)
        DSI_CHECK_INT_EQ(r.bad_piece, 0);
    /* two pieces, every split */
    for (size_t i = 1; i < len; i++) {
        run(in, &i, 1, &r);
        int same = strcmp(r.content, content) == 0 && strcmp(r.calls, calls) == 0;
        if (!same)
            fprintf(stderr, "split at %zu: content [%s] calls [%s]\n", i, r.content, r.calls);
        DSI_CHECK(same);
        if (!content_may_mark)
            DSI_CHECK_INT_EQ(r.bad_piece, 0);
    }
    free(cuts);
}

int main(void)
{
    /* no calls at all; a lone '<' and a near-marker are content */
    check("Hello <b> world <｜tool", "Hello <b> world <｜tool", "", 1);
    check("plain answer", "plain answer", "", 0);
    /* V3: one call, content before it, the release's exact format */
    check("Let me check." CB C1 "function" SEP
          "get_weather\n```json\n{\"city\": \"Paris\"}\n```" C2 CE,
          "Let me check.", "|get_weather({\"city\": \"Paris\"})", 0);
    /* V3: two calls separated by a newline, as the template renders them */
    check(CB C1 "function" SEP "a\n```json\n{}\n```" C2 "\n" C1 "function" SEP
                "b_2\n```json\n{\"x\": [1, 2]}\n```" C2 CE,
          "", "|a({})|b_2({\"x\": [1, 2]})", 0);
    /* V3: a block the template leaves open (no calls end), then the end of the text */
    check(CB C1 "function" SEP "f\n```json\n{\"s\": \"`q`\"}\n```" C2, "", "|f({\"s\": \"`q`\"})",
          0);
    /* V3: arguments with backticks and whitespace inside, a fence without "json" */
    check(CB C1 "function" SEP "f\n```\n{\"code\": \"a ``` b\"}\n```" C2 CE "after", "after",
          "|f({\"code\": \"a ``` b\"})", 0);
    /* V3.1: one and two calls, content before */
    check("Sure." CB C1 "get_weather" SEP "{\"city\": \"Zürich\"}" C2 CE, "Sure.",
          "|get_weather({\"city\": \"Zürich\"})", 0);
    check(CB C1 "a" SEP "{}" C2 C1 "b" SEP "{\"k\":1}" C2 CE, "", "|a({})|b({\"k\":1})", 0);
    /* V3.1: a function named "function" (its arguments are JSON, so it is not V3) */
    check(CB C1 "function" SEP "{\"x\": 1}" C2 CE, "", "|function({\"x\": 1})", 0);
    /* text after a V3.1 block */
    check(CB C1 "a" SEP "{}" C2 CE " done", " done", "|a({})", 0);

    /* malformed: no call marker after the block's start -> the raw text is content */
    check("x" CB "oops", "x" CB "oops", "", 1);
    /* malformed: a header without separator, cut off by the end */
    check(CB C1 "get_weather {}", CB C1 "get_weather {}", "", 1);
    /* malformed: V3 without the fence: the header is content, then the text */
    check(CB C1 "function" SEP "f\n{\"a\":1}" C2 CE, CB C1 "function" SEP "f\n{\"a\":1}" C2 CE, "",
          1);
    /* malformed: a name holding a newline */
    check(CB C1 "a\nb" SEP "{}" C2 CE, CB C1 "a\nb" SEP "{}" C2 CE, "", 1);
    /* a good call, then a malformed second one: the first stays a call */
    check(CB C1 "a" SEP "{}" C2 C1 "zz", "" C1 "zz", "|a({})", 1);
    /* arguments cut off by the end of the text: a call with what it got */
    check("t" CB C1 "f" SEP "{\"a\": ", "t", "|f({\"a\": )", 0);
    check(CB C1 "function" SEP "f\n```json\n{\"a\"", "", "|f({\"a\")", 0);
    /* an over-long header: content, and the text after it is read again (a later block parses) */
    {
        char in[2048], want[2048];
        char name[700];
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = '\0';
        snprintf(in, sizeof(in), "%s%s%s%s{}%s%s%sok%s{}%s%s", CB, C1, name, SEP, C2, CE, CB C1,
                 SEP, C2, CE);
        snprintf(want, sizeof(want), "%s%s%s%s{}%s%s", CB, C1, name, SEP, C2, CE);
        check(in, want, "|ok({})", 1);
    }
    return dsi_test_finish();
}
