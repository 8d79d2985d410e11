/*
 * test_unit_api.c - the API layer without sockets: request validation (every bad input gets the
 * right status, code and param), UTF-8 checking, the JSON of responses, chunks and errors (parsed
 * back with jansson), and the status -> HTTP mapping.
 */
#include <jansson.h>

#include "dsc_api.h"
#include "dsi_test.h"

static dsc_api_limits_t limits;

/* Parse `body` as `kind`; returns the HTTP status of the refusal, or 200 when accepted. */
static int parse_status(dsc_api_kind_t kind, const char *body, dsc_api_error_t *err)
{
    dsc_api_parsed_t *p = NULL;
    memset(err, 0, sizeof(*err));
    dsi_status_t st = dsc_api_request_parse(kind, body, strlen(body), &limits, &p, err);
    if (st == DSI_OK) {
        dsc_api_parsed_destroy(p);
        return 200;
    }
    return err->http_status;
}

typedef struct {
    dsc_api_kind_t kind;
    const char *body;
    int status;
    const char *code;  /* expected error code, or NULL for "don't care" */
    const char *param; /* expected param, or NULL for "don't care" */
} bad_case_t;

#define CHAT DSC_API_KIND_CHAT
#define CMPL DSC_API_KIND_COMPLETION
#define MSG  "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static const bad_case_t bad_cases[] = {
    {CHAT, "{", 400, "invalid_json", NULL},
    {CHAT, "", 400, "invalid_json", NULL},
    {CHAT, "[1,2]", 400, NULL, NULL},
    {CHAT, "\"just a string\"", 400, NULL, NULL},
    {CHAT, "{" MSG "}", 400, "missing_required_parameter", "model"},
    {CHAT, "{\"model\":5," MSG "}", 400, "invalid_type", "model"},
    {CHAT, "{\"model\":\"\"," MSG "}", 400, "invalid_type", "model"},
    {CHAT, "{\"model\":\"m\"}", 400, "missing_required_parameter", "messages"},
    {CHAT, "{\"model\":\"m\",\"messages\":{}}", 400, "invalid_type", "messages"},
    {CHAT, "{\"model\":\"m\",\"messages\":[]}", 400, "invalid_value", "messages"},
    {CHAT, "{\"model\":\"m\",\"messages\":[5]}", 400, "invalid_type", "messages[0]"},
    {CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", 400,
     "missing_required_parameter", "messages[0].role"},
    {CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"god\",\"content\":\"x\"}]}", 400,
     "invalid_value", "messages[0].role"},
    {CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\"}]}",
     400, "missing_required_parameter", "messages[1].content"},
    {CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":7}]}", 400,
     "invalid_type", "messages[0].content"},
    {CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
     400, "invalid_value", "messages[0].content"},
    {CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"42\"}]}", 400,
     "missing_required_parameter", "messages[0].tool_call_id"},
    {CHAT,
     "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":5}]}",
     400, "invalid_type", "messages[0].tool_calls"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"tools\":{}}", 400, "invalid_type", "tools"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"temperature\":2.5}", 400, "invalid_value", "temperature"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"temperature\":-0.1}", 400, "invalid_value", "temperature"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"temperature\":\"hot\"}", 400, "invalid_type", "temperature"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"top_p\":0}", 400, "invalid_value", "top_p"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"top_p\":1.01}", 400, "invalid_value", "top_p"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"top_k\":-2}", 400, "invalid_value", "top_k"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"top_k\":2.5}", 400, "invalid_type", "top_k"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"max_tokens\":0}", 400, "invalid_value", "max_tokens"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"max_tokens\":1001}", 400, "invalid_value", "max_tokens"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"max_tokens\":\"10\"}", 400, "invalid_type", "max_tokens"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"max_completion_tokens\":-5}", 400, "invalid_value",
     "max_completion_tokens"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"max_tokens\":99999999999999999999999}", 400, "invalid_json",
     NULL},
    {CHAT, "{\"model\":\"m\"," MSG ",\"n\":17}", 400, "invalid_value", "n"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"n\":0}", 400, "invalid_value", "n"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"seed\":\"x\"}", 400, "invalid_type", "seed"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"stop\":5}", 400, "invalid_type", "stop"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"stop\":\"\"}", 400, "invalid_value", "stop"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400,
     "invalid_value", "stop"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"stop\":[\"a\",1]}", 400, "invalid_type", "stop[1]"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"stream\":\"yes\"}", 400, "invalid_type", "stream"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"stream_options\":{\"include_usage\":true}}", 400,
     "invalid_value", "stream_options"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":[]}", 400, "invalid_type",
     "stream_options"},
    {CHAT, "{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}",
     400, "invalid_type", "stream_options.include_usage"},
    {CHAT, "{\"model\":\"m\",\"model\":\"n\"," MSG "}", 400, "invalid_json", NULL},
    {CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", 400,
     "invalid_json", NULL},
    {CMPL, "{\"model\":\"m\"}", 400, "missing_required_parameter", "prompt"},
    {CMPL, "{\"model\":\"m\",\"prompt\":[]}", 400, "invalid_value", "prompt"},
    {CMPL, "{\"model\":\"m\",\"prompt\":[\"a\",2]}", 400, "invalid_type", "prompt[1]"},
    {CMPL, "{\"model\":\"m\",\"prompt\":{}}", 400, "invalid_type", "prompt"},
};

static void test_bad_requests(void)
{
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        dsc_api_error_t err;
        int status = parse_status(c->kind, c->body, &err);
        if (status != c->status)
            fprintf(stderr, "case %zu: %s\n", i, c->body);
        DSI_CHECK_INT_EQ(status, c->status);
        DSI_CHECK(err.message[0] != '\0');
        if (c->code != NULL)
            DSI_CHECK_STR_EQ(err.code, c->code);
        if (c->param != NULL)
            DSI_CHECK_STR_EQ(err.param, c->param);
    }
}

static void test_good_requests(void)
{
    const char *body =
        "{\"model\":\"deepseek\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello \"},"
        "{\"type\":\"text\",\"text\":\"there\"}]},{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}],"
        "\"tools\":[],\"tool_choice\":\"none\",\"parallel_tool_calls\":true,"
        "\"temperature\":0,\"top_p\":0.9,\"top_k\":40,\"seed\":-1,\"max_tokens\":7,"
        "\"max_completion_tokens\":9,\"stop\":[\"\\n\\n\",\"END\"],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"n\":1,\"user\":\"ignored\"}";
    dsc_api_parsed_t *p;
    dsc_api_error_t err;
    DSI_CHECK_INT_EQ(dsc_api_request_parse(CHAT, body, strlen(body), &limits, &p, &err), DSI_OK);
    const dsc_api_request_t *r = dsc_api_parsed_request(p);
    DSI_CHECK_STR_EQ(r->model, "deepseek");
    DSI_CHECK_INT_EQ(r->n_messages, 4);
    DSI_CHECK_INT_EQ(r->messages[0].role, DSC_API_ROLE_SYSTEM);
    DSI_CHECK_STR_EQ(r->messages[1].content, "hello there");
    DSI_CHECK_INT_EQ(r->messages[1].content_len, 11);
    DSI_CHECK_STR_EQ(r->messages[2].content, "");
    DSI_CHECK(r->messages[2].tool_calls != NULL && strstr(r->messages[2].tool_calls, "\"c1\""));
    DSI_CHECK_STR_EQ(r->messages[3].tool_call_id, "c1");
    DSI_CHECK(r->tools != NULL && strcmp(r->tools, "[]") == 0);
    DSI_CHECK_NEAR(r->temperature, 0.0, 0);
    DSI_CHECK_NEAR(r->top_p, 0.9, 1e-6);
    DSI_CHECK_INT_EQ(r->top_k, 40);
    DSI_CHECK_INT_EQ(r->has_seed, 1);
    DSI_CHECK(r->seed == UINT64_MAX);
    DSI_CHECK_INT_EQ(r->max_tokens, 9); /* max_completion_tokens wins */
    DSI_CHECK_INT_EQ(r->n_stop, 2);
    DSI_CHECK_STR_EQ(r->stop[0], "\n\n");
    DSI_CHECK_INT_EQ(r->stream, 1);
    DSI_CHECK_INT_EQ(r->include_usage, 1);
    DSI_CHECK(r->prompt == NULL);
    dsc_api_parsed_destroy(p);

    /* Defaults, and a one-element prompt array. */
    body = "{\"model\":\"m\",\"prompt\":[\"once upon\"],\"stop\":\"x\",\"temperature\":null}";
    DSI_CHECK_INT_EQ(dsc_api_request_parse(CMPL, body, strlen(body), &limits, &p, &err), DSI_OK);
    r = dsc_api_parsed_request(p);
    DSI_CHECK_STR_EQ(r->prompt, "once upon");
    DSI_CHECK_INT_EQ(r->prompt_len, 9);
    DSI_CHECK_INT_EQ(r->max_tokens, limits.default_max_tokens);
    DSI_CHECK_NEAR(r->temperature, 1.0, 0);
    DSI_CHECK_NEAR(r->top_p, 1.0, 0);
    DSI_CHECK_INT_EQ(r->top_k, 0);
    DSI_CHECK_INT_EQ(r->has_seed, 0);
    DSI_CHECK_INT_EQ(r->n_stop, 1);
    DSI_CHECK_INT_EQ(r->stream, 0);
    DSI_CHECK(r->messages == NULL);
    dsc_api_parsed_destroy(p);
}

static void test_utf8(void)
{
    size_t off = 99;
    DSI_CHECK(dsc_api_utf8_valid("plain", 5, &off));
    DSI_CHECK(dsc_api_utf8_valid("\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 9, &off)); /* é中😀 */
    struct {
        const char *s;
        size_t len, bad;
    } bad[] = {
        {"ab\xff", 3, 2},           /* invalid byte */
        {"a\xc3", 2, 1},            /* truncated */
        {"\xc0\xaf", 2, 0},         /* overlong '/' */
        {"x\xe0\x80\xaf", 4, 1},    /* overlong 3-byte */
        {"\xed\xa0\x80", 3, 0},     /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, 0}, /* > U+10FFFF */
        {"ok\x80rest", 6, 2},       /* lone continuation */
        {"\xe4\xb8x", 3, 0},        /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        off = 99;
        DSI_CHECK_INT_EQ(dsc_api_utf8_valid(bad[i].s, bad[i].len, &off), 0);
        DSI_CHECK_INT_EQ(off, bad[i].bad);
    }
    /* The parser names the offset. */
    const char body[] = "{\"model\":\"m\",\"prompt\":\"caf\xe9\"}";
    dsc_api_error_t err;
    DSI_CHECK_INT_EQ(parse_status(CMPL, body, &err), 400);
    DSI_CHECK(strstr(err.message, "byte offset 26") != NULL);
    DSI_CHECK_STR_EQ(err.code, "invalid_encoding");
}

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);
    if (v == NULL)
        fprintf(stderr, "not JSON (%s): %s\n", jerr.text, text);
    return v;
}

static const char *jstr(json_t *root, const char *path)
{
    /* a tiny path walker: "choices.0.message.content" */
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *v = root;
    for (char *tok = strtok(buf, "."); tok != NULL && v != NULL; tok = strtok(NULL, ".")) {
        if (json_is_array(v))
            v = json_array_get(v, (size_t)atoi(tok));
        else
            v = json_object_get(v, tok);
    }
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long jint(json_t *root, const char *a, const char *b)
{
    return json_integer_value(json_object_get(json_object_get(root, a), b));
}

static void test_responses(void)
{
    dsc_api_response_meta_t meta, meta2;
    dsc_api_response_meta_init(&meta, CHAT, "deepseek-r1");
    dsc_api_response_meta_init(&meta2, CHAT, "deepseek-r1");
    DSI_CHECK(strncmp(meta.id, "chatcmpl-", 9) == 0);
    DSI_CHECK(strcmp(meta.id, meta2.id) != 0);
    dsc_api_usage_t usage = {.prompt_tokens = 12, .completion_tokens = 5};
    const char *text = "line \"one\"\n\ttab \\ \x01 \xe4\xb8\xad";
    size_t len;
    char *json = dsc_api_response_json(&meta, text, strlen(text), "thinking", 8,
                                       DSC_API_FINISH_LENGTH, &usage, &len);
    DSI_CHECK_INT_EQ(strlen(json), len);
    json_t *v = load(json);
    DSI_CHECK(v != NULL);
    DSI_CHECK_STR_EQ(jstr(v, "object"), "chat.completion");
    DSI_CHECK_STR_EQ(jstr(v, "model"), "deepseek-r1");
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.message.role"), "assistant");
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.message.content"), text); /* escaping round-trips */
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.message.reasoning_content"), "thinking");
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.finish_reason"), "length");
    DSI_CHECK_INT_EQ(jint(v, "usage", "total_tokens"), 17);
    json_decref(v);
    free(json);

    dsc_api_response_meta_init(&meta, CMPL, "m");
    DSI_CHECK(strncmp(meta.id, "cmpl-", 5) == 0);
    json = dsc_api_response_json(&meta, "abc", 3, NULL, 0, DSC_API_FINISH_STOP, &usage, &len);
    v = load(json);
    DSI_CHECK_STR_EQ(jstr(v, "object"), "text_completion");
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.text"), "abc");
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.finish_reason"), "stop");
    json_decref(v);
    free(json);
}

/* The JSON of an SSE event "data: {...}\n\n". */
static json_t *sse_json(const char *event)
{
    DSI_CHECK(strncmp(event, "data: ", 6) == 0);
    size_t n = strlen(event);
    DSI_CHECK(n >= 8 && strcmp(event + n - 2, "\n\n") == 0);
    return load(event + 6);
}

static void test_chunks(void)
{
    dsc_api_response_meta_t meta;
    dsc_api_response_meta_init(&meta, CHAT, "m");
    dsc_api_chunk_t role = {.role = 1};
    char *ev = dsc_api_chunk_sse(&meta, &role, NULL);
    json_t *v = sse_json(ev);
    DSI_CHECK_STR_EQ(jstr(v, "object"), "chat.completion.chunk");
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.delta.role"), "assistant");
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.delta.content"), "");
    DSI_CHECK(json_is_null(
        json_object_get(json_array_get(json_object_get(v, "choices"), 0), "finish_reason")));
    json_decref(v);
    free(ev);

    dsc_api_chunk_t think = {.text = "hmm", .text_len = 3, .is_reasoning = 1};
    ev = dsc_api_chunk_sse(&meta, &think, NULL);
    v = sse_json(ev);
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.delta.reasoning_content"), "hmm");
    DSI_CHECK(jstr(v, "choices.0.delta.content") == NULL);
    json_decref(v);
    free(ev);

    dsc_api_chunk_t fin = {.has_finish = 1, .finish = DSC_API_FINISH_STOP};
    ev = dsc_api_chunk_sse(&meta, &fin, NULL);
    v = sse_json(ev);
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.finish_reason"), "stop");
    json_decref(v);
    free(ev);

    dsc_api_usage_t usage = {3, 4};
    dsc_api_chunk_t u = {.usage = &usage};
    ev = dsc_api_chunk_sse(&meta, &u, NULL);
    v = sse_json(ev);
    DSI_CHECK_INT_EQ(json_array_size(json_object_get(v, "choices")), 0);
    DSI_CHECK_INT_EQ(jint(v, "usage", "completion_tokens"), 4);
    json_decref(v);
    free(ev);

    dsc_api_response_meta_init(&meta, CMPL, "m");
    dsc_api_chunk_t t = {.text = " word", .text_len = 5};
    ev = dsc_api_chunk_sse(&meta, &t, NULL);
    v = sse_json(ev);
    DSI_CHECK_STR_EQ(jstr(v, "object"), "text_completion");
    DSI_CHECK_STR_EQ(jstr(v, "choices.0.text"), " word");
    json_decref(v);
    free(ev);
    DSI_CHECK_STR_EQ(DSC_API_SSE_DONE, "data: [DONE]\n\n");
}

static void test_errors(void)
{
    dsc_api_error_t err;
    DSI_CHECK_INT_EQ(dsc_api_error_set(&err, 400, "invalid_request_error", "invalid_type", "top_p",
                                       "bad \"%s\"", "x"),
                     400);
    char *json = dsc_api_error_json(&err, NULL);
    json_t *v = load(json);
    json_t *e = json_object_get(v, "error");
    DSI_CHECK_INT_EQ(json_object_size(v), 1);
    DSI_CHECK_INT_EQ(json_object_size(e), 4); /* exactly OpenAI's four fields */
    DSI_CHECK_STR_EQ(jstr(v, "error.message"), "bad \"x\"");
    DSI_CHECK_STR_EQ(jstr(v, "error.type"), "invalid_request_error");
    DSI_CHECK_STR_EQ(jstr(v, "error.param"), "top_p");
    DSI_CHECK_STR_EQ(jstr(v, "error.code"), "invalid_type");
    json_decref(v);
    free(json);
    dsc_api_error_set(&err, 500, "server_error", NULL, NULL, "boom");
    json = dsc_api_error_json(&err, NULL);
    v = load(json);
    DSI_CHECK(json_is_null(json_object_get(json_object_get(v, "error"), "param")));
    DSI_CHECK(json_is_null(json_object_get(json_object_get(v, "error"), "code")));
    json_decref(v);
    free(json);

    struct {
        dsi_status_t st;
        int http;
    } map[] = {{DSI_ERR_CAPACITY, 429},    {DSI_ERR_TOO_LARGE, 400}, {DSI_ERR_NOT_FOUND, 404},
               {DSI_ERR_BAD_REQUEST, 400}, {DSI_ERR_CANCELLED, 503}, {DSI_ERR_PEER, 503},
               {DSI_ERR_TIMEOUT, 503},     {DSI_ERR_NOMEM, 503},     {DSI_ERR_INTERNAL, 500},
               {DSI_ERR_IO, 500},          {DSI_ERR_AUTH, 401}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        dsc_api_error_from_status(&err, map[i].st, NULL);
        DSI_CHECK_INT_EQ(err.http_status, map[i].http);
        DSI_CHECK_STR_EQ(err.message, dsi_status_message(map[i].st));
    }
    dsc_api_error_from_status(&err, DSI_ERR_TOO_LARGE, "prompt has 9000 tokens");
    DSI_CHECK_STR_EQ(err.code, "context_length_exceeded");
    DSI_CHECK_STR_EQ(err.message, "prompt has 9000 tokens");
}

static void test_options(void)
{
    dsc_api_server_config_t cfg;
    dsc_api_server_config_default(&cfg);
    DSI_CHECK(cfg.api_key == NULL);
    DSI_CHECK_STR_EQ(cfg.http.host, "127.0.0.1");
    DSI_CHECK_INT_EQ(cfg.http.port, 8000);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "listen", "[::1]:9001"), DSI_OK);
    DSI_CHECK_STR_EQ(cfg.http.host, "::1");
    DSI_CHECK_INT_EQ(cfg.http.port, 9001);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "api-key", "k"), DSI_OK);
    DSI_CHECK_STR_EQ(cfg.api_key, "k");
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "max-body", "8M"), DSI_OK);
    DSI_CHECK_INT_EQ(cfg.http.max_body_bytes, 8 << 20);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "max-header", "32k"), DSI_OK);
    DSI_CHECK_INT_EQ(cfg.http.max_header_bytes, 32 << 10);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "request-timeout", "2500"), DSI_OK);
    DSI_CHECK_INT_EQ(cfg.http.request_timeout_ms, 2500);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "idle-timeout", "100"), DSI_OK);
    DSI_CHECK_INT_EQ(cfg.http.idle_timeout_ms, 100);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "max-connections", "50"), DSI_OK);
    DSI_CHECK_INT_EQ(cfg.http.max_connections, 50);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "max-tokens-limit", "16384"), DSI_OK);
    DSI_CHECK_INT_EQ(cfg.limits.max_tokens_limit, 16384);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "default-max-tokens", "256"), DSI_OK);
    DSI_CHECK_INT_EQ(cfg.limits.default_max_tokens, 256);
    /* Unknown names are the host's; bad values are refused and change nothing. */
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "model", "x"), DSI_ERR_NOT_FOUND);
    const char *bad[][2] = {{"listen", "8000"},          {"max-body", "12"},
                            {"max-body", "5Q"},          {"max-body", "-1"},
                            {"max-body", "9G"},          {"request-timeout", "0"},
                            {"idle-timeout", "1.5"},     {"max-connections", ""},
                            {"max-tokens-limit", "3e9"}, {"default-max-tokens", "99999999999"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, bad[i][0], bad[i][1]),
                         DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(cfg.http.max_body_bytes, 8 << 20);
    DSI_CHECK_INT_EQ(cfg.http.port, 9001);
    DSI_CHECK_INT_EQ(cfg.limits.default_max_tokens, 256);
}

int main(void)
{
    test_options();
    dsc_api_limits_default(&limits);
    limits.max_tokens_limit = 1000;
    test_bad_requests();
    test_good_requests();
    test_utf8();
    test_responses();
    test_chunks();
    test_errors();
    return dsi_test_finish();
}
