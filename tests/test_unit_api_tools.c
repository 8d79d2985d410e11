/*
 * test_unit_api_tools.c - tool calling and prefix continuation in the API layer, without a
 * model: the request fields (tools, tool_choice, parallel_tool_calls, add_generation_prompt,
 * continue_final_message, prefix: accepted values and the 400s naming the field), and the tool
 * calls of an answer in OpenAI's shapes. Crafted model outputs of both release formats go
 * through dsc_api_toolcalls as a whole response and as a stream cut at every byte and at random
 * places: the streamed deltas (content and tool_calls), put together the way a client does,
 * must equal the whole response's content and tool_calls, and no content piece may carry a
 * marker.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_api_impl.h"
#include "dsc_toolcall.h"
#include "dsi_test.h"

#define MSG "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define TOOL_F                                                                                  \
    "{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\",\"parameters\":" \
    "{\"type\":\"object\"}}}"

typedef struct {
    const char *body;
    int status; /* 0 = accepted */
    const char *code, *param;
} req_case_t;

static const req_case_t req_cases[] = {
    {"{" MSG ",\"tools\":[" TOOL_F "]}", 0, NULL, NULL},
    {"{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":\"none\"}", 0, NULL, NULL},
    {"{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":\"auto\",\"parallel_tool_calls\":false}", 0,
     NULL, NULL},
    {"{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"g\"}}]}", 0, NULL, NULL},
    {"{" MSG ",\"tools\":[{\"type\":\"retrieval\"}]}", 400, "invalid_value", "tools[0]"},
    {"{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"\"}}]}", 400,
     "invalid_type", "tools[0].function.name"},
    {"{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a<b\"}}]}", 400,
     "invalid_value", "tools[0].function.name"},
    {"{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":3}}]}",
     400, "invalid_type", "tools[0].function.parameters"},
    {"{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":\"sometimes\"}", 400, "invalid_value",
     "tool_choice"},
    {"{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":{\"type\":\"function\",\"function\":"
     "{\"name\":\"nope\"}}}",
     400, "invalid_value", "tool_choice"},
    {"{" MSG ",\"tool_choice\":\"required\"}", 400, "invalid_value", "tool_choice"},
    /* required / named: constrained decoding, alone, with schemas the grammar can take */
    {"{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":\"required\"}", 0, NULL, NULL},
    {"{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":{\"type\":\"function\",\"function\":"
     "{\"name\":\"f\"}}}",
     0, NULL, NULL},
    {"{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":\"required\",\"response_format\":"
     "{\"type\":\"json_object\"}}",
     400, "invalid_value", "tool_choice"},
    {"{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":\"required\",\"guided_regex\":\"a\"}", 400,
     "invalid_value", "tool_choice"},
    {"{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
     "{\"type\":\"object\",\"patternProperties\":{}}}}],\"tool_choice\":\"required\"}",
     400, "unsupported_parameter", "tools"},
    /* the same schema is fine when the call is not forced (nothing constrains it) */
    {"{" MSG ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
     "{\"type\":\"object\",\"patternProperties\":{}}}}]}",
     0, NULL, NULL},
    {"{" MSG ",\"tools\":[" TOOL_F "],\"parallel_tool_calls\":1}", 400, "invalid_type",
     "parallel_tool_calls"},
    /* continuation */
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
     "\"content\":\"A\",\"prefix\":true}]}",
     0, NULL, NULL},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
     "\"content\":\"A\"}],\"continue_final_message\":true,\"add_generation_prompt\":false}",
     0, NULL, NULL},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
     "\"content\":\"A\"}],\"continue_final_message\":true}",
     400, "invalid_value", "continue_final_message"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
     "\"continue_final_message\":true,\"add_generation_prompt\":false}",
     400, "invalid_value", "continue_final_message"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"A\",\"prefix\":true},"
     "{\"role\":\"user\",\"content\":\"q\"}]}",
     400, "invalid_value", "messages[0].prefix"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"prefix\":true}]}", 400,
     "invalid_value", "messages[0].prefix"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
     "\"content\":\"A\",\"prefix\":\"yes\"}]}",
     400, "invalid_type", "messages[1].prefix"},
    {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
     "\"content\":\"A\",\"prefix\":true}],\"add_generation_prompt\":true}",
     400, "invalid_value", "add_generation_prompt"},
    {"{" MSG ",\"add_generation_prompt\":\"no\"}", 400, "invalid_type", "add_generation_prompt"},
};

static void check_requests(void)
{
    dsc_api_limits_t lim;
    dsc_api_limits_default(&lim);
    for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
        const req_case_t *c = &req_cases[i];
        dsc_api_parsed_t *p = NULL;
        dsc_api_error_t err;
        memset(&err, 0, sizeof(err));
        dsi_status_t st =
            dsc_api_request_parse(DSC_API_KIND_CHAT, c->body, strlen(c->body), &lim, &p, &err);
        if ((st == DSI_OK) != (c->status == 0))
            fprintf(stderr, "case %zu: %s -> %s\n", i, c->body, err.message);
        DSI_CHECK_INT_EQ(st == DSI_OK, c->status == 0);
        if (st != DSI_OK && c->status != 0) {
            DSI_CHECK_INT_EQ(err.http_status, c->status);
            DSI_CHECK_STR_EQ(err.code ? err.code : "(null)", c->code);
            DSI_CHECK_STR_EQ(err.param, c->param);
        }
        dsc_api_parsed_destroy(p);
    }
    /* what the accepted ones set */
    const char *b = "{" MSG ",\"tools\":[" TOOL_F "],\"parallel_tool_calls\":false}";
    dsc_api_parsed_t *p = NULL;
    dsc_api_error_t err;
    DSI_CHECK_INT_EQ(dsc_api_request_parse(DSC_API_KIND_CHAT, b, strlen(b), &lim, &p, &err),
                     DSI_OK);
    if (p != NULL) {
        const dsc_api_request_t *r = dsc_api_parsed_request(p);
        DSI_CHECK_INT_EQ(r->tool_choice, DSC_API_TOOL_CHOICE_AUTO);
        DSI_CHECK_INT_EQ(r->parse_tool_calls, 1);
        DSI_CHECK_INT_EQ(r->parallel_tool_calls, 0);
        DSI_CHECK_INT_EQ(r->no_generation_prompt, 0);
        DSI_CHECK_INT_EQ(r->continue_final, 0);
        DSI_CHECK_INT_EQ(r->n_unknown, 0);
    }
    dsc_api_parsed_destroy(p);
    b = "{" MSG ",\"tools\":[" TOOL_F "],\"tool_choice\":\"none\",\"add_generation_prompt\":false}";
    DSI_CHECK_INT_EQ(dsc_api_request_parse(DSC_API_KIND_CHAT, b, strlen(b), &lim, &p, &err),
                     DSI_OK);
    if (p != NULL) {
        const dsc_api_request_t *r = dsc_api_parsed_request(p);
        DSI_CHECK_INT_EQ(r->tool_choice, DSC_API_TOOL_CHOICE_NONE);
        DSI_CHECK_INT_EQ(r->parse_tool_calls, 0);
        DSI_CHECK(r->tools != NULL); /* still rendered, as vLLM does by default */
        DSI_CHECK_INT_EQ(r->no_generation_prompt, 1);
    }
    dsc_api_parsed_destroy(p);
    b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":"
        "\"assistant\",\"content\":\"A\",\"prefix\":true}]}";
    DSI_CHECK_INT_EQ(dsc_api_request_parse(DSC_API_KIND_CHAT, b, strlen(b), &lim, &p, &err),
                     DSI_OK);
    if (p != NULL) {
        const dsc_api_request_t *r = dsc_api_parsed_request(p);
        DSI_CHECK_INT_EQ(r->continue_final, 1);
        DSI_CHECK_INT_EQ(r->no_generation_prompt, 1);
        DSI_CHECK_INT_EQ(r->n_unknown, 0); /* prefix is a known message field */
    }
    dsc_api_parsed_destroy(p);
}

/* ---- answers: whole vs streamed ---------------------------------------------------------- */

typedef struct {
    dsc_api_jbuf_t content;
    json_t *deltas; /* stream: the delta.tool_calls arrays, in order */
    int bad;        /* a content piece held a marker */
} sink_t;

static void s_content(void *gen, const char *text, size_t len)
{
    sink_t *s = gen;
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(text + i, "<｜", 4) == 0)
            s->bad = 1;
    dsc_api_jbuf_put(&s->content, text, len);
}

static void s_delta(void *gen, const char *tool_calls)
{
    sink_t *s = gen;
    json_error_t e;
    json_t *d = json_loads(tool_calls, 0, &e);
    DSI_CHECK(json_is_array(d) && json_array_size(d) == 1);
    json_array_append_new(s->deltas, d);
}

/* Put deltas together as a client does: by index; the first carries id, type and name. */
static json_t *assemble(json_t *deltas)
{
    json_t *calls = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(deltas, i, d)
    {
        json_t *c = json_array_get(d, 0);
        size_t idx = (size_t)json_integer_value(json_object_get(c, "index"));
        json_t *fn = json_object_get(c, "function");
        const char *piece = json_string_value(json_object_get(fn, "arguments"));
        if (idx == json_array_size(calls)) {
            DSI_CHECK(json_is_string(json_object_get(c, "id")));
            DSI_CHECK_STR_EQ(json_string_value(json_object_get(c, "type")), "function");
            DSI_CHECK(json_is_string(json_object_get(fn, "name")));
            DSI_CHECK(piece != NULL && piece[0] == '\0');
            json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id",
                                                   json_string_value(json_object_get(c, "id")),
                                                   "type", "function", "function", "name",
                                                   json_string_value(json_object_get(fn, "name")),
                                                   "arguments", ""));
            continue;
        }
        DSI_CHECK(idx + 1 == json_array_size(calls));
        DSI_CHECK(json_object_get(c, "id") == NULL && json_object_get(fn, "name") == NULL);
        json_t *args =
            json_object_get(json_object_get(json_array_get(calls, idx), "function"), "arguments");
        DSI_CHECK(piece != NULL && piece[0] != '\0');
        size_t a = strlen(json_string_value(args)), b = piece ? strlen(piece) : 0;
        char *joined = malloc(a + b + 1);
        memcpy(joined, json_string_value(args), a);
        memcpy(joined + a, piece ? piece : "", b + 1);
        json_string_set(args, joined);
        free(joined);
    }
    return calls;
}

/* Drop the ids (random) of a tool_calls array, for comparing two responses. */
static void drop_ids(json_t *calls)
{
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        DSI_CHECK(id != NULL && strncmp(id, "call_", 5) == 0 && strlen(id) == 29);
        json_object_del(c, "id");
    }
}

/* The answer `text` whole, then streamed with pieces cut at `cuts`; same content and calls. */
static void check_answer(const char *text, int parallel, const char *want_content,
                         const char *want_calls, dsc_api_finish_t want_finish)
{
    dsc_api_request_t r = {.parallel_tool_calls = parallel};
    static const dsc_api_toolcalls_sink_t sk = {s_content, s_delta};
    sink_t whole = {{0}, NULL, 0};
    dsc_api_toolcalls_t *t = dsc_api_toolcalls_create(&r, 0, &sk, &whole);
    DSI_CHECK_INT_EQ(dsc_api_toolcalls_feed(t, text, strlen(text)), 0);
    DSI_CHECK_INT_EQ(dsc_api_toolcalls_finish(t, DSC_API_FINISH_STOP), want_finish);
    int failed = 0;
    const char *calls_text = dsc_api_toolcalls_json(t, &failed);
    DSI_CHECK_INT_EQ(failed, 0);
    json_t *calls = calls_text ? json_loads(calls_text, 0, NULL) : json_array();
    DSI_CHECK(calls != NULL);
    dsc_api_toolcalls_destroy(t);
    drop_ids(calls);
    char *got = json_dumps(calls, JSON_COMPACT);
    DSI_CHECK_STR_EQ(got, want_calls);
    DSI_CHECK_STR_EQ(whole.content.data ? whole.content.data : "", want_content);
    /* streamed: byte by byte, then random pieces */
    size_t len = strlen(text);
    for (int round = 0; round < 40; round++) {
        sink_t st = {{0}, json_array(), 0};
        t = dsc_api_toolcalls_create(&r, 1, &sk, &st);
        for (size_t at = 0; at < len;) {
            size_t n = round == 0 ? 1 : 1 + dsi_test_randu() % 12;
            if (n > len - at)
                n = len - at;
            while (at + n < len && ((unsigned char)text[at + n] & 0xC0) == 0x80)
                n++; /* the backend gives whole characters */
            dsc_api_toolcalls_feed(t, text + at, n);
            at += n;
        }
        DSI_CHECK_INT_EQ(dsc_api_toolcalls_finish(t, DSC_API_FINISH_STOP), want_finish);
        json_t *assembled = assemble(st.deltas);
        drop_ids(assembled);
        char *s = json_dumps(assembled, JSON_COMPACT);
        DSI_CHECK_STR_EQ(s, want_calls);
        DSI_CHECK_STR_EQ(st.content.data ? st.content.data : "", want_content);
        if (strstr(want_content, "<｜") == NULL) /* else a malformed block comes back */
            DSI_CHECK_INT_EQ(st.bad, 0);
        free(s);
        json_decref(assembled);
        json_decref(st.deltas);
        dsc_api_jbuf_free(&st.content);
        dsc_api_toolcalls_destroy(t);
    }
    free(got);
    json_decref(calls);
    dsc_api_jbuf_free(&whole.content);
}

#define CB DSC_TOOL_CALLS_BEGIN
#define CE DSC_TOOL_CALLS_END
#define C1 DSC_TOOL_CALL_BEGIN
#define C2 DSC_TOOL_CALL_END
#define S  DSC_TOOL_SEP

static void check_answers(void)
{
    /* V3 / R1 */
    check_answer("I'll look." CB C1 "function" S "get_weather\n```json\n{\"city\": \"Zürich\", "
                 "\"q\": \"a\\\"b\"}\n```" C2 "\n" C1 "function" S "search\n```json\n{}\n```" C2 CE,
                 1, "I'll look.",
                 "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
                 "\"{\\\"city\\\": \\\"Zürich\\\", \\\"q\\\": \\\"a\\\\\\\"b\\\"}\"}},{\"type\":"
                 "\"function\",\"function\":{\"name\":\"search\",\"arguments\":\"{}\"}}]",
                 DSC_API_FINISH_TOOL_CALLS);
    /* V3.1 */
    check_answer(
        CB C1 "get_weather" S "{\"city\":\"Paris\"}" C2 C1 "search" S "{\"q\":\"x\"}" C2 CE, 1, "",
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
        "\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"type\":\"function\",\"function\":{\"name\":"
        "\"search\",\"arguments\":\"{\\\"q\\\":\\\"x\\\"}\"}}]",
        DSC_API_FINISH_TOOL_CALLS);
    /* parallel_tool_calls false: the first call only */
    check_answer(CB C1 "a" S "{}" C2 C1 "b" S "{}" C2 CE, 0, "",
                 "[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}}]",
                 DSC_API_FINISH_TOOL_CALLS);
    /* no calls: plain content, finish stays stop */
    check_answer("Just text, no <b>calls</b>.", 1, "Just text, no <b>calls</b>.", "[]",
                 DSC_API_FINISH_STOP);
    /* malformed: returned as content */
    check_answer("x" CB "junk", 1, "x" CB "junk", "[]", DSC_API_FINISH_STOP);
}

/* The formatted shapes: message.tool_calls with content null; a chunk's delta.tool_calls. */
static void check_format(void)
{
    dsc_api_response_meta_t meta;
    dsc_api_response_meta_init(&meta, DSC_API_KIND_CHAT, "m");
    dsc_api_usage_t u = {3, 4};
    dsc_api_jbuf_t b = {0};
    dsc_api_response_write_tc(&b, &meta, "", 0, NULL, 0, "[{\"id\":\"call_x\"}]", NULL,
                              DSC_API_FINISH_TOOL_CALLS, &u);
    json_t *j = json_loads(b.data, 0, NULL);
    DSI_CHECK(j != NULL);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *msg = json_object_get(ch, "message");
    DSI_CHECK(json_is_null(json_object_get(msg, "content")));
    DSI_CHECK(json_is_array(json_object_get(msg, "tool_calls")));
    DSI_CHECK_STR_EQ(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
    json_decref(j);
    dsc_api_jbuf_reset(&b);
    dsc_api_chunk_t c = {.tool_calls = "[{\"index\":0}]"};
    dsc_api_chunk_write(&b, &meta, &c, 0);
    DSI_CHECK(strncmp(b.data, "data: ", 6) == 0);
    j = json_loads(b.data + 6, JSON_DISABLE_EOF_CHECK, NULL);
    json_t *delta = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
    DSI_CHECK(json_is_array(json_object_get(delta, "tool_calls")));
    DSI_CHECK(json_object_get(delta, "content") == NULL);
    json_decref(j);
    dsc_api_jbuf_free(&b);
}

int main(void)
{
    dsi_test_seed(7);
    check_requests();
    check_answers();
    check_format();
    return dsi_test_finish();
}
