/*
 * test_unit_api_prompt.c - the `prompt` of /v1/completions in each form (a string, an array of
 * token ids, an array of strings, an array of token-id arrays) parsed into the request's prompts,
 * and every bad form refused with 400 naming the prompt and the element (empty, mixed types, not
 * a token id, over --max-prompts); the --max-prompts option.
 */
#include <jansson.h>

#include "dsc_api.h"
#include "dsi_test.h"

static dsc_api_limits_t limits;

static dsc_api_parsed_t *parse_ok(const char *prompt_json)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"model\":\"m\",\"prompt\":%s}", prompt_json);
    dsc_api_parsed_t *p = NULL;
    dsc_api_error_t err = {0};
    dsi_status_t st =
        dsc_api_request_parse(DSC_API_KIND_COMPLETION, body, strlen(body), &limits, &p, &err);
    if (st != DSI_OK)
        fprintf(stderr, "refused %s: %s\n", body, err.message);
    DSI_CHECK_INT_EQ(st, DSI_OK);
    return st == DSI_OK ? p : NULL;
}

static void test_forms(void)
{
    dsc_api_parsed_t *p = parse_ok("\"hello\"");
    const dsc_api_request_t *r = dsc_api_parsed_request(p);
    DSI_CHECK_INT_EQ(r->n_prompts, 1);
    DSI_CHECK_INT_EQ(r->prompt_index, -1); /* not a batch: named "prompt" */
    DSI_CHECK_STR_EQ(r->prompt, "hello");
    DSI_CHECK_INT_EQ(r->prompt_len, 5);
    DSI_CHECK(r->prompt_ids == NULL);
    dsc_api_parsed_destroy(p);

    p = parse_ok("[0, 5, 2147483647]"); /* one prompt of token ids */
    r = dsc_api_parsed_request(p);
    DSI_CHECK_INT_EQ(r->n_prompts, 1);
    DSI_CHECK_INT_EQ(r->prompt_index, -1);
    DSI_CHECK(r->prompt == NULL);
    DSI_CHECK_INT_EQ(r->n_prompt_ids, 3);
    DSI_CHECK_INT_EQ(r->prompt_ids[0], 0);
    DSI_CHECK_INT_EQ(r->prompt_ids[1], 5);
    DSI_CHECK_INT_EQ(r->prompt_ids[2], 2147483647);
    dsc_api_parsed_destroy(p);

    p = parse_ok("[\"a b\", \"\\u00e9t\\u00e9\", \"c\"]"); /* a batch of texts */
    r = dsc_api_parsed_request(p);
    DSI_CHECK_INT_EQ(r->n_prompts, 3);
    DSI_CHECK_INT_EQ(r->prompt_index, 0);
    DSI_CHECK_STR_EQ(r->prompt, "a b");
    DSI_CHECK_STR_EQ(r->prompts[1].text, "\xc3\xa9t\xc3\xa9");
    DSI_CHECK_INT_EQ(r->prompts[1].len, 5);
    DSI_CHECK_STR_EQ(r->prompts[2].text, "c");
    DSI_CHECK(r->prompts[2].ids == NULL);
    dsc_api_parsed_destroy(p);

    p = parse_ok("[[1, 2], [3], [4, 5, 6]]"); /* a batch of token-id prompts */
    r = dsc_api_parsed_request(p);
    DSI_CHECK_INT_EQ(r->n_prompts, 3);
    DSI_CHECK_INT_EQ(r->prompt_index, 0);
    DSI_CHECK(r->prompt == NULL && r->prompt_ids == r->prompts[0].ids);
    DSI_CHECK_INT_EQ(r->prompts[0].n_ids, 2);
    DSI_CHECK_INT_EQ(r->prompts[1].n_ids, 1);
    DSI_CHECK_INT_EQ(r->prompts[1].ids[0], 3);
    DSI_CHECK_INT_EQ(r->prompts[2].n_ids, 3);
    DSI_CHECK_INT_EQ(r->prompts[2].ids[2], 6);
    DSI_CHECK(r->prompts[2].text == NULL);
    dsc_api_parsed_destroy(p);

    p = parse_ok("[\"only\"]"); /* a batch of one: its prompt is prompt[0] */
    r = dsc_api_parsed_request(p);
    DSI_CHECK_INT_EQ(r->n_prompts, 1);
    DSI_CHECK_INT_EQ(r->prompt_index, 0);
    DSI_CHECK_STR_EQ(r->prompt, "only");
    dsc_api_parsed_destroy(p);

    /* Exactly max_prompts is allowed. */
    char many[512] = "[";
    for (size_t i = 0; i < limits.max_prompts; i++)
        strcat(many, i ? ",[7]" : "[7]");
    strcat(many, "]");
    p = parse_ok(many);
    DSI_CHECK_INT_EQ(dsc_api_parsed_request(p)->n_prompts, (int)limits.max_prompts);
    dsc_api_parsed_destroy(p);
}

typedef struct {
    const char *prompt; /* the JSON of `prompt` (NULL: absent) */
    const char *code;
    const char *param;
    const char *says; /* a piece of the message */
} bad_t;

static const bad_t bad[] = {
    {NULL, "missing_required_parameter", "prompt", "Missing"},
    {"null", "missing_required_parameter", "prompt", "Missing"},
    {"\"\"", "invalid_value", "prompt", "must not be empty"},
    {"[]", "invalid_value", "prompt", "must not be empty"},
    {"{}", "invalid_type", "prompt", "array of token-id arrays"},
    {"7", "invalid_type", "prompt", "a string"},
    {"true", "invalid_type", "prompt", "a string"},
    {"[\"a\", \"\"]", "invalid_value", "prompt[1]", "must not be empty"},
    {"[[1], []]", "invalid_value", "prompt[1]", "must not be empty"},
    {"[[]]", "invalid_value", "prompt[0]", "must not be empty"},
    {"[\"a\", 1]", "invalid_type", "prompt[1]", "mixed types"},
    {"[\"a\", [1]]", "invalid_type", "prompt[1]", "an array of strings"},
    {"[1, \"a\"]", "invalid_type", "prompt[1]", "a string"},
    {"[1, [2]]", "invalid_type", "prompt[1]", "an array of token ids"},
    {"[[1], \"a\"]", "invalid_type", "prompt[1]", "array of token-id arrays"},
    {"[[1], 2]", "invalid_type", "prompt[1]", "mixed types"},
    {"[[1, \"x\"]]", "invalid_type", "prompt[0][1]", "integers only"},
    {"[[1], [2, [3]]]", "invalid_type", "prompt[1][1]", "integers only"},
    {"[[1, 2.5]]", "invalid_type", "prompt[0][1]", "fraction"},
    {"[1, -1]", "invalid_value", "prompt[1]", "not a token id"},
    {"[2147483648]", "invalid_value", "prompt[0]", "not a token id"},
    {"[[0], [3, -7]]", "invalid_value", "prompt[1][1]", "-7 is not a token id"},
    {"[1.0, 2]", "invalid_type", "prompt[0]", "a token id"},
    {"[{}]", "invalid_type", "prompt[0]", "a token id"},
    {"[null]", "invalid_type", "prompt[0]", "a token id"},
};

static void test_bad(void)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[256];
        if (bad[i].prompt != NULL)
            snprintf(body, sizeof(body), "{\"model\":\"m\",\"prompt\":%s}", bad[i].prompt);
        else
            snprintf(body, sizeof(body), "{\"model\":\"m\"}");
        dsc_api_parsed_t *p = NULL;
        dsc_api_error_t err = {0};
        dsi_status_t st =
            dsc_api_request_parse(DSC_API_KIND_COMPLETION, body, strlen(body), &limits, &p, &err);
        if (st == DSI_OK || strstr(err.message, bad[i].says) == NULL ||
            strcmp(err.param, bad[i].param) != 0)
            fprintf(stderr, "case %zu %s: %s (%s)\n", i, body, err.message, err.param);
        DSI_CHECK_INT_EQ(st, DSI_ERR_BAD_REQUEST);
        DSI_CHECK_INT_EQ(err.http_status, 400);
        DSI_CHECK_STR_EQ(err.code, bad[i].code);
        DSI_CHECK_STR_EQ(err.param, bad[i].param);
        DSI_CHECK(strstr(err.message, bad[i].says) != NULL);
        if (st == DSI_OK)
            dsc_api_parsed_destroy(p);
    }
    /* One prompt more than max_prompts, in both batch forms. */
    char body[600];
    for (int ids = 0; ids < 2; ids++) {
        strcpy(body, "{\"model\":\"m\",\"prompt\":[");
        for (size_t i = 0; i <= limits.max_prompts; i++)
            strcat(body, ids ? (i ? ",[1]" : "[1]") : (i ? ",\"x\"" : "\"x\""));
        strcat(body, "]}");
        dsc_api_parsed_t *p = NULL;
        dsc_api_error_t err = {0};
        DSI_CHECK_INT_EQ(
            dsc_api_request_parse(DSC_API_KIND_COMPLETION, body, strlen(body), &limits, &p, &err),
            DSI_ERR_BAD_REQUEST);
        DSI_CHECK_STR_EQ(err.param, "prompt");
        DSI_CHECK(strstr(err.message, "--max-prompts") != NULL);
    }
    /* A token-id prompt longer than max_prompts is one prompt, not a batch. */
    strcpy(body, "{\"model\":\"m\",\"prompt\":[");
    for (size_t i = 0; i <= limits.max_prompts; i++)
        strcat(body, i ? ",1" : "1");
    strcat(body, "]}");
    dsc_api_parsed_t *p = NULL;
    dsc_api_error_t err = {0};
    DSI_CHECK_INT_EQ(
        dsc_api_request_parse(DSC_API_KIND_COMPLETION, body, strlen(body), &limits, &p, &err),
        DSI_OK);
    dsc_api_parsed_destroy(p);
}

static void test_option(void)
{
    dsc_api_server_config_t cfg;
    dsc_api_server_config_default(&cfg);
    DSI_CHECK_INT_EQ(cfg.limits.max_prompts, DSC_API_MAX_PROMPTS);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "max-prompts", "3"), DSI_OK);
    DSI_CHECK_INT_EQ(cfg.limits.max_prompts, 3);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "max-prompts", "0"), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(dsc_api_server_config_option(&cfg, "max-prompts", "x"), DSI_ERR_INVALID_ARG);
    DSI_CHECK_INT_EQ(cfg.limits.max_prompts, 3);
}

int main(void)
{
    dsc_api_limits_default(&limits);
    limits.max_prompts = 8;
    test_forms();
    test_bad();
    test_option();
    return dsi_test_finish();
}
