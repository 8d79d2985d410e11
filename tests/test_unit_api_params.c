/*
 * test_unit_api_params.c - the decision for every top-level field of OpenAI's chat and completions
 * requests (dsc_api_params.c): each refused field is a 400 unsupported_parameter naming it, its
 * no-op values are accepted, harmless fields are accepted, fields outside the spec are accepted
 * and reported, and every numeric field of the sampling controls and logprobs is type- and
 * range-checked (400 naming it) and parsed to the right value.
 */
#include <jansson.h>

#include "dsc_api.h"
#include "dsi_test.h"

static dsc_api_limits_t limits;

#define CHAT DSC_API_KIND_CHAT
#define CMPL DSC_API_KIND_COMPLETION
#define MSG  "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define PRM  "\"model\":\"m\",\"prompt\":\"hi\""

typedef struct {
    dsc_api_kind_t kind;
    const char *extra; /* fields after MSG / PRM */
    int status;
    const char *code;
    const char *param;
} case_t;

static const case_t cases[] = {
    /* refused: 400 unsupported_parameter naming the field */
    /* n, best_of and echo: implemented, types and ranges checked */
    {CHAT, "\"n\":3", 200, NULL, NULL},
    {CMPL, "\"n\":2", 200, NULL, NULL},
    {CHAT, "\"n\":17", 400, "invalid_value", "n"},
    {CHAT, "\"n\":0", 400, "invalid_value", "n"},
    {CHAT, "\"n\":1.5", 400, "invalid_type", "n"},
    {CMPL, "\"n\":\"2\"", 400, "invalid_type", "n"},
    {CMPL, "\"n\":2,\"best_of\":3", 200, NULL, NULL},
    {CMPL, "\"n\":3,\"best_of\":2", 400, "invalid_value", "best_of"},
    {CMPL, "\"best_of\":17", 400, "invalid_value", "best_of"},
    {CMPL, "\"best_of\":3,\"stream\":true", 400, "invalid_value", "best_of"},
    {CMPL, "\"n\":2,\"best_of\":2,\"stream\":true", 200, NULL, NULL},
    {CMPL, "\"echo\":true", 200, NULL, NULL},
    {CHAT, "\"n\":2,\"best_of\":3", 200, NULL, NULL},
    {CHAT, "\"best_of\":2,\"stream\":true", 400, "invalid_value", "best_of"},
    {CMPL, "\"echo\":true,\"logprobs\":1", 400, "unsupported_parameter", "echo"},
    {CHAT, "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]", 200, NULL,
     NULL}, /* tool calling: test_unit_api_tools */
    {CHAT, "\"tool_choice\":\"auto\"", 200, NULL, NULL},
    {CHAT, "\"tool_choice\":{\"type\":\"function\"}", 400, "invalid_type", "tool_choice"},
    /* structured output: converted and compiled here, errors name the parameter */
    {CHAT, "\"response_format\":{\"type\":\"json_object\"}", 200, NULL, NULL},
    {CMPL, "\"response_format\":{\"type\":\"json_object\"}", 200, NULL, NULL},
    {CHAT,
     "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
     "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
     "\"integer\"}},\"required\":[\"a\"]}}}",
     200, NULL, NULL},
    {CHAT,
     "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{"
     "\"type\":\"object\",\"patternProperties\":{}}}}",
     400, "unsupported_parameter", "response_format.json_schema.schema"},
    {CHAT, "\"response_format\":{\"type\":\"json_schema\"}", 400, "invalid_type",
     "response_format.json_schema"},
    {CHAT, "\"response_format\":{\"type\":\"xml\"}", 400, "invalid_value", "response_format.type"},
    {CMPL, "\"guided_json\":{\"type\":\"string\",\"maxLength\":5}", 200, NULL, NULL},
    {CMPL, "\"guided_json\":\"{\\\"type\\\":\\\"boolean\\\"}\"", 200, NULL, NULL},
    {CMPL, "\"guided_json\":{\"type\":\"string\",\"format\":\"hostname\"}", 400,
     "unsupported_parameter", "guided_json"},
    {CMPL, "\"guided_json\":5", 400, "invalid_type", "guided_json"},
    {CMPL, "\"guided_regex\":\"[a-z]+@[a-z]+\\\\.com\"", 200, NULL, NULL},
    {CMPL, "\"guided_regex\":\"(a\"", 400, "invalid_value", "guided_regex"},
    {CMPL, "\"guided_regex\":\"a(?=b)\"", 400, "unsupported_parameter", "guided_regex"},
    {CHAT, "\"guided_choice\":[\"yes\",\"no\"]", 200, NULL, NULL},
    {CHAT, "\"guided_choice\":[]", 400, "invalid_type", "guided_choice"},
    {CHAT, "\"guided_grammar\":\"root ::= [0-9]+\"", 200, NULL, NULL},
    {CHAT, "\"guided_grammar\":\"root ::= x\"", 400, "invalid_value", "guided_grammar"},
    {CHAT, "\"guided_choice\":[\"a\"],\"guided_regex\":\"b\"", 400, "invalid_value",
     "guided_choice"},
    {CHAT, "\"response_format\":\"text\"", 400, "invalid_type", "response_format"},
    {CHAT, "\"functions\":[{\"name\":\"f\"}]", 400, "unsupported_parameter", "functions"},
    {CHAT, "\"function_call\":\"auto\"", 400, "unsupported_parameter", "function_call"},
    {CHAT, "\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}", 400, "unsupported_parameter",
     "audio"},
    {CHAT, "\"modalities\":[\"text\",\"audio\"]", 400, "unsupported_parameter", "modalities"},
    {CHAT, "\"prediction\":{\"type\":\"content\",\"content\":\"x\"}", 400, "unsupported_parameter",
     "prediction"},
    {CHAT, "\"web_search_options\":{}", 400, "unsupported_parameter", "web_search_options"},
    {CHAT, "\"reasoning_effort\":\"low\"", 400, "unsupported_parameter", "reasoning_effort"},
    {CHAT, "\"verbosity\":\"low\"", 400, "unsupported_parameter", "verbosity"},
    {CMPL, "\"best_of\":2", 200, NULL, NULL},
    {CMPL, "\"best_of\":\"2\"", 400, "invalid_type", "best_of"},
    {CMPL, "\"echo\":1", 400, "invalid_type", "echo"},
    {CMPL, "\"suffix\":\"end\"", 400, "unsupported_parameter", "suffix"},
    {CMPL, "\"suffix\":5", 400, "invalid_type", "suffix"},
    /* vLLM's extensions this server does not implement: their no-op values only */
    {CMPL, "\"use_beam_search\":true", 400, "unsupported_parameter", "use_beam_search"},
    {CHAT, "\"length_penalty\":0.5", 400, "unsupported_parameter", "length_penalty"},
    {CMPL, "\"include_stop_str_in_output\":true", 400, "unsupported_parameter",
     "include_stop_str_in_output"},
    {CHAT, "\"skip_special_tokens\":false", 400, "unsupported_parameter", "skip_special_tokens"},
    {CMPL, "\"spaces_between_special_tokens\":false", 400, "unsupported_parameter",
     "spaces_between_special_tokens"},
    {CMPL, "\"truncate_prompt_tokens\":5", 400, "unsupported_parameter", "truncate_prompt_tokens"},
    {CMPL, "\"prompt_logprobs\":1", 400, "unsupported_parameter", "prompt_logprobs"},
    {CHAT, "\"allowed_token_ids\":[1]", 400, "unsupported_parameter", "allowed_token_ids"},
    {CMPL, "\"bad_words\":[\"x\"]", 400, "unsupported_parameter", "bad_words"},
    {CMPL, "\"logits_processors\":[\"x\"]", 400, "unsupported_parameter", "logits_processors"},
    {CHAT, "\"return_tokens_as_token_ids\":true", 400, "unsupported_parameter",
     "return_tokens_as_token_ids"},
    {CHAT, "\"add_special_tokens\":true", 400, "unsupported_parameter", "add_special_tokens"},
    {CMPL, "\"add_special_tokens\":false", 400, "unsupported_parameter", "add_special_tokens"},
    /* vLLM's prompt controls, implemented (test_unit_api_tools): continuing needs
     * add_generation_prompt false */
    {CHAT, "\"add_generation_prompt\":false", 200, NULL, NULL},
    {CHAT, "\"continue_final_message\":true", 400, "invalid_value", "continue_final_message"},
    {CHAT, "\"echo\":true", 400, "unsupported_parameter", "echo"},
    {CHAT, "\"documents\":[]", 400, "unsupported_parameter", "documents"},
    {CHAT, "\"chat_template\":\"x\"", 400, "unsupported_parameter", "chat_template"},
    {CHAT, "\"mm_processor_kwargs\":{}", 400, "unsupported_parameter", "mm_processor_kwargs"},
    {CHAT,
     "\"use_beam_search\":false,\"length_penalty\":1.0,\"skip_special_tokens\":true,"
     "\"add_special_tokens\":false,\"add_generation_prompt\":true,\"echo\":false,"
     "\"bad_words\":[],\"prompt_logprobs\":null,\"priority\":3,\"request_id\":\"r\","
     "\"cache_salt\":\"s\"",
     200, NULL, NULL},
    {CMPL, "\"add_special_tokens\":true,\"include_stop_str_in_output\":false", 200, NULL, NULL},
    /* their no-op values are accepted */
    {CHAT, "\"n\":1,\"tools\":[],\"tool_choice\":\"none\",\"parallel_tool_calls\":false", 200, NULL,
     NULL},
    {CHAT, "\"response_format\":{\"type\":\"text\"},\"modalities\":[\"text\"]", 200, NULL, NULL},
    {CHAT, "\"functions\":null,\"audio\":null,\"tools\":null", 200, NULL, NULL},
    {CMPL, "\"best_of\":1,\"echo\":false,\"suffix\":\"\"", 200, NULL, NULL},
    {CHAT, "\"parallel_tool_calls\":\"yes\"", 400, "invalid_type", "parallel_tool_calls"},
    /* harmless: accepted */
    {CHAT,
     "\"user\":\"u\",\"metadata\":{\"a\":\"b\"},\"store\":false,\"service_tier\":\"auto\","
     "\"prompt_cache_key\":\"k\",\"safety_identifier\":\"s\"",
     200, NULL, NULL},
    {CMPL, "\"user\":\"u\"", 200, NULL, NULL},
    /* penalties and the other controls: types and ranges */
    {CHAT, "\"presence_penalty\":2.01", 400, "invalid_value", "presence_penalty"},
    {CHAT, "\"presence_penalty\":-2.5", 400, "invalid_value", "presence_penalty"},
    {CHAT, "\"presence_penalty\":\"1\"", 400, "invalid_type", "presence_penalty"},
    {CMPL, "\"frequency_penalty\":3", 400, "invalid_value", "frequency_penalty"},
    {CMPL, "\"frequency_penalty\":true", 400, "invalid_type", "frequency_penalty"},
    {CHAT, "\"repetition_penalty\":0", 400, "invalid_value", "repetition_penalty"},
    {CHAT, "\"repetition_penalty\":-1", 400, "invalid_value", "repetition_penalty"},
    {CHAT, "\"repetition_penalty\":1e-300", 400, "invalid_value", "repetition_penalty"},
    {CHAT, "\"repetition_penalty\":101", 400, "invalid_value", "repetition_penalty"},
    {CHAT, "\"min_p\":1.5", 400, "invalid_value", "min_p"},
    {CHAT, "\"min_p\":-0.1", 400, "invalid_value", "min_p"},
    {CHAT, "\"min_p\":[]", 400, "invalid_type", "min_p"},
    {CHAT, "\"min_tokens\":-1", 400, "invalid_value", "min_tokens"},
    {CHAT, "\"min_tokens\":1.5", 400, "invalid_type", "min_tokens"},
    {CHAT, "\"min_tokens\":10,\"max_tokens\":5", 400, "invalid_value", "min_tokens"},
    {CHAT, "\"ignore_eos\":1", 400, "invalid_type", "ignore_eos"},
    {CHAT, "\"top_k\":-1", 200, NULL, NULL}, /* vLLM's "off" */
    {CHAT, "\"logit_bias\":[]", 400, "invalid_type", "logit_bias"},
    {CHAT, "\"logit_bias\":{\"x\":1}", 400, "invalid_value", "logit_bias"},
    {CHAT, "\"logit_bias\":{\"-3\":1}", 400, "invalid_value", "logit_bias"},
    {CHAT, "\"logit_bias\":{\"12\":101}", 400, "invalid_value", "logit_bias.12"},
    {CHAT, "\"logit_bias\":{\"12\":\"1\"}", 400, "invalid_type", "logit_bias.12"},
    {CHAT, "\"stop_token_ids\":5", 400, "invalid_type", "stop_token_ids"},
    {CHAT, "\"stop_token_ids\":[1,-2]", 400, "invalid_value", "stop_token_ids[1]"},
    {CHAT, "\"stop_token_ids\":[1,\"2\"]", 400, "invalid_type", "stop_token_ids[1]"},
    /* logprobs */
    {CHAT, "\"logprobs\":1", 400, "invalid_type", "logprobs"},
    {CHAT, "\"top_logprobs\":3", 400, "invalid_value", "top_logprobs"},
    {CHAT, "\"logprobs\":true,\"top_logprobs\":21", 400, "invalid_value", "top_logprobs"},
    {CHAT, "\"logprobs\":true,\"top_logprobs\":2.5", 400, "invalid_type", "top_logprobs"},
    {CMPL, "\"logprobs\":true", 400, "invalid_type", "logprobs"},
    {CMPL, "\"logprobs\":21", 400, "invalid_value", "logprobs"},
    {CMPL, "\"logprobs\":-1", 400, "invalid_value", "logprobs"},
};

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const case_t *c = &cases[i];
        char body[1024];
        snprintf(body, sizeof(body), "{%s,%s}", c->kind == CHAT ? MSG : PRM, c->extra);
        dsc_api_parsed_t *p = NULL;
        dsc_api_error_t err;
        memset(&err, 0, sizeof(err));
        dsi_status_t st = dsc_api_request_parse(c->kind, body, strlen(body), &limits, &p, &err);
        int status = st == DSI_OK ? 200 : err.http_status;
        if (status != c->status)
            fprintf(stderr, "case %zu: %s -> %s\n", i, body, err.message);
        DSI_CHECK_INT_EQ(status, c->status);
        if (c->status != 200) {
            DSI_CHECK_STR_EQ(err.code ? err.code : "(null)", c->code);
            DSI_CHECK_STR_EQ(err.param, c->param);
            DSI_CHECK(strstr(err.message, c->param) != NULL);
        }
        dsc_api_parsed_destroy(p);
    }
}

static void test_values(void)
{
    const char *body =
        "{" MSG ",\"presence_penalty\":-1.5,\"frequency_penalty\":0.5,"
        "\"repetition_penalty\":1.3,\"min_p\":0.05,\"min_tokens\":3,"
        "\"max_tokens\":8,\"ignore_eos\":true,\"logit_bias\":{\"7\":-100,\"42\":2.5},"
        "\"stop_token_ids\":[1,2,3],\"logprobs\":true,\"top_logprobs\":5,"
        "\"top_k\":-1,\"temperature\":0.7}";
    dsc_api_parsed_t *p;
    dsc_api_error_t err;
    DSI_CHECK_INT_EQ(dsc_api_request_parse(CHAT, body, strlen(body), &limits, &p, &err), DSI_OK);
    const dsc_api_request_t *r = dsc_api_parsed_request(p);
    DSI_CHECK_NEAR(r->presence_penalty, -1.5, 0);
    DSI_CHECK_NEAR(r->frequency_penalty, 0.5, 0);
    DSI_CHECK_NEAR(r->repetition_penalty, 1.3, 1e-6);
    DSI_CHECK_NEAR(r->min_p, 0.05, 1e-7);
    DSI_CHECK_INT_EQ(r->min_tokens, 3);
    DSI_CHECK_INT_EQ(r->ignore_eos, 1);
    DSI_CHECK_INT_EQ(r->n_bias, 2);
    for (int i = 0; i < r->n_bias; i++) {
        DSI_CHECK(r->bias_ids[i] == 7 || r->bias_ids[i] == 42);
        DSI_CHECK_NEAR(r->bias_values[i], r->bias_ids[i] == 7 ? -100 : 2.5, 0);
    }
    DSI_CHECK_INT_EQ(r->n_stop_ids, 3);
    DSI_CHECK_INT_EQ(r->stop_ids[2], 3);
    DSI_CHECK_INT_EQ(r->logprobs, 1);
    DSI_CHECK_INT_EQ(r->top_logprobs, 5);
    DSI_CHECK_INT_EQ(r->top_k, 0);
    DSI_CHECK_INT_EQ(r->temperature_given, 1);
    DSI_CHECK_INT_EQ(r->top_p_given, 0);
    DSI_CHECK_INT_EQ(r->n_unknown, 0);
    dsc_api_parsed_destroy(p);

    /* Completions: logprobs is the number of top logprobs; 0 still returns the token's. */
    body = "{" PRM ",\"logprobs\":0}";
    DSI_CHECK_INT_EQ(dsc_api_request_parse(CMPL, body, strlen(body), &limits, &p, &err), DSI_OK);
    r = dsc_api_parsed_request(p);
    DSI_CHECK_INT_EQ(r->logprobs, 1);
    DSI_CHECK_INT_EQ(r->top_logprobs, 0);
    DSI_CHECK_INT_EQ(r->n_bias, 0);
    DSI_CHECK_NEAR(r->repetition_penalty, 0, 0); /* not given */
    dsc_api_parsed_destroy(p);
}

static void test_unknown(void)
{
    /* Outside the spec: accepted and named; top_logprobs is a chat field only. */
    const char *body = "{" PRM ",\"guided_decoding_backend\":\"x\",\"vllm_xargs\":{},"
                       "\"top_logprobs\":2,\"user\":\"u\"}";
    dsc_api_parsed_t *p;
    dsc_api_error_t err;
    DSI_CHECK_INT_EQ(dsc_api_request_parse(CMPL, body, strlen(body), &limits, &p, &err), DSI_OK);
    const dsc_api_request_t *r = dsc_api_parsed_request(p);
    DSI_CHECK_INT_EQ(r->n_unknown, 3);
    int seen = 0;
    for (int i = 0; i < r->n_unknown; i++) {
        seen |= strcmp(r->unknown[i], "guided_decoding_backend") == 0 ? 1 : 0;
        seen |= strcmp(r->unknown[i], "vllm_xargs") == 0 ? 2 : 0;
        seen |= strcmp(r->unknown[i], "top_logprobs") == 0 ? 4 : 0;
    }
    DSI_CHECK_INT_EQ(seen, 7);
    dsc_api_parsed_destroy(p);

    /* Inside stream_options and messages: reported under a fixed name each. */
    body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"x\":1},"
           "{\"role\":\"assistant\",\"content\":\"a\",\"refusal\":null,\"y\":2}],"
           "\"stream\":true,\"stream_options\":{\"include_usage\":true,"
           "\"continuous_usage_stats\":true,\"include_obfuscation\":false}}";
    DSI_CHECK_INT_EQ(dsc_api_request_parse(CHAT, body, strlen(body), &limits, &p, &err), DSI_OK);
    r = dsc_api_parsed_request(p);
    DSI_CHECK_INT_EQ(r->n_unknown, 2);
    DSI_CHECK_STR_EQ(r->unknown[0], "stream_options.*");
    DSI_CHECK_STR_EQ(r->unknown[1], "messages[].*");
    dsc_api_parsed_destroy(p);
}

int main(void)
{
    dsc_api_limits_default(&limits);
    test_cases();
    test_values();
    test_unknown();
    return dsi_test_finish();
}
