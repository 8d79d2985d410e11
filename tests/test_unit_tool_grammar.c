/*
 * test_unit_tool_grammar.c - the grammar of a forced tool call (dsc_tool_grammar.h) for both
 * release formats: it compiles; it accepts exactly the calls block of the allowed functions with
 * arguments their parameters schema accepts (one call or several, as parallel_tool_calls says)
 * and refuses text before the block, another function, arguments outside the schema, a second
 * call when only one is allowed, and an unfinished block; and every string it accepts is read
 * back by the tool-call parser (dsc_toolcall.h) as the same calls.
 */
#include <stdlib.h>
#include <string.h>

#include "dsc_tool_grammar.h"
#include "dsc_toolcall.h"
#include "dsg.h"
#include "dsi_test.h"

#define CB DSC_TOOL_CALLS_BEGIN
#define CE DSC_TOOL_CALLS_END
#define C1 DSC_TOOL_CALL_BEGIN
#define C2 DSC_TOOL_CALL_END
#define S  DSC_TOOL_SEP

static const char tools[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}},"
    "\"required\":[\"city\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"ping\"}}]";

static dsg_grammar_t *make(dsc_chat_style_t style, const char *only, int parallel)
{
    char *gbnf = NULL, err[256] = "";
    dsg_grammar_t *g = NULL;
    dsi_status_t st =
        dsc_tool_grammar(style, tools, strlen(tools), only, parallel, &gbnf, err, sizeof(err));
    if (st != DSI_OK)
        fprintf(stderr, "dsc_tool_grammar: %s\n", err);
    DSI_CHECK_INT_EQ(st, DSI_OK);
    if (gbnf == NULL)
        return NULL;
    st = dsg_compile(gbnf, strlen(gbnf), &g, err, sizeof(err));
    if (st != DSI_OK)
        fprintf(stderr, "dsg_compile: %s\n%s\n", err, gbnf);
    DSI_CHECK_INT_EQ(st, DSI_OK);
    free(gbnf);
    return g;
}

/* The parser's reading: "|name(args)" per call, content after "#". */
typedef struct {
    char out[2048];
} rec_t;

static void app(rec_t *r, const char *s, size_t n)
{
    size_t l = strlen(r->out);
    if (l + n + 1 < sizeof(r->out)) {
        memcpy(r->out + l, s, n);
        r->out[l + n] = '\0';
    }
}
static void on_content(void *c, const char *t, size_t n)
{
    app(c, "#", 1);
    app(c, t, n);
}
static void on_call(void *c, int i, const char *t, size_t n)
{
    app(c, i ? ")|" : "|", i ? 2 : 1);
    app(c, t, n);
    app(c, "(", 1);
}
static void on_args(void *c, int i, const char *t, size_t n)
{
    (void)i;
    app(c, t, n);
}

static void expect(const dsg_grammar_t *g, const char *text, int ok, const char *parsed)
{
    int got = dsg_accepts_string(g, (const uint8_t *)text, strlen(text));
    if (got != ok)
        fprintf(stderr, "grammar %s: %s\n", ok ? "refuses" : "accepts", text);
    DSI_CHECK_INT_EQ(got, ok);
    if (!ok || parsed == NULL)
        return;
    static const dsc_toolcall_sink_t sink = {on_content, on_call, on_args};
    rec_t r = {{0}};
    dsc_toolcall_t *p = NULL;
    DSI_CHECK_INT_EQ(dsc_toolcall_create(&sink, &r, &p), DSI_OK);
    dsc_toolcall_feed(p, text, strlen(text));
    dsc_toolcall_finish(p);
    dsc_toolcall_destroy(p);
    app(&r, ")", 1);
    DSI_CHECK_STR_EQ(r.out, parsed);
}

int main(void)
{
    /* V3 / R1 */
    dsg_grammar_t *g = make(DSC_CHAT_V3, NULL, 1);
    if (g != NULL) {
        expect(g, CB C1 "function" S "get_weather\n```json\n{\"city\": \"Paris\"}\n```" C2 CE, 1,
               "|get_weather({\"city\": \"Paris\"})");
        expect(g,
               CB C1 "function" S "get_weather\n```json\n{\"city\":\"Rome\",\"days\":2}\n```" C2
                     "\n" C1 "function" S "ping\n```json\n{}\n```" C2 CE,
               1, "|get_weather({\"city\":\"Rome\",\"days\":2})|ping({})");
        expect(g, "Sure. " CB C1 "function" S "ping\n```json\n{}\n```" C2 CE, 0, NULL);
        expect(g, CB C1 "function" S "other\n```json\n{}\n```" C2 CE, 0, NULL);
        expect(g, CB C1 "function" S "get_weather\n```json\n{\"days\": 2}\n```" C2 CE, 0, NULL);
        expect(g, CB C1 "function" S "get_weather\n```json\n{\"city\": 3}\n```" C2 CE, 0, NULL);
        expect(g, CB C1 "function" S "ping\n```json\n{}\n```" C2, 0, NULL);
        dsg_grammar_free(g);
    }
    /* V3 named, one call */
    g = make(DSC_CHAT_V3, "get_weather", 0);
    if (g != NULL) {
        expect(g, CB C1 "function" S "get_weather\n```json\n{\"city\":\"Oslo\"}\n```" C2 CE, 1,
               "|get_weather({\"city\":\"Oslo\"})");
        expect(g, CB C1 "function" S "ping\n```json\n{}\n```" C2 CE, 0, NULL);
        expect(g,
               CB C1 "function" S "get_weather\n```json\n{\"city\":\"A\"}\n```" C2 "\n" C1
                     "function" S "get_weather\n```json\n{\"city\":\"B\"}\n```" C2 CE,
               0, NULL);
        dsg_grammar_free(g);
    }
    /* V3.1 */
    g = make(DSC_CHAT_V31, NULL, 1);
    if (g != NULL) {
        expect(g, CB C1 "get_weather" S "{\"city\": \"Paris\"}" C2 CE, 1,
               "|get_weather({\"city\": \"Paris\"})");
        expect(g, CB C1 "ping" S "{}" C2 C1 "get_weather" S "{\"city\":\"x\"}" C2 CE, 1,
               "|ping({})|get_weather({\"city\":\"x\"})");
        expect(g, CB C1 "get_weather" S "{}" C2 CE, 0, NULL);
        expect(g, CB C1 "function" S "get_weather\n```json\n{\"city\": \"P\"}\n```" C2 CE, 0, NULL);
        dsg_grammar_free(g);
    }
    g = make(DSC_CHAT_V31, "ping", 0);
    if (g != NULL) {
        expect(g, CB C1 "ping" S "{}" C2 CE, 1, "|ping({})");
        expect(g, CB C1 "ping" S "{}" C2 C1 "ping" S "{}" C2 CE, 0, NULL);
        dsg_grammar_free(g);
    }
    /* errors */
    char *gbnf = NULL, err[256];
    DSI_CHECK_INT_EQ(
        dsc_tool_grammar(DSC_CHAT_V3, tools, strlen(tools), "nope", 1, &gbnf, err, sizeof(err)),
        DSI_ERR_NOT_FOUND);
    DSI_CHECK_INT_EQ(dsc_tool_grammar(DSC_CHAT_V3, "{}", 2, NULL, 1, &gbnf, err, sizeof(err)),
                     DSI_ERR_BAD_REQUEST);
    DSI_CHECK(gbnf == NULL);
    return dsi_test_finish();
}
