/*
 * dsc_api_params.c - every top-level field of an OpenAI chat / completions request has a decision
 * here: implemented (checked here or in dsc_api_parse.c), harmless and ignored, or refused with 400
 * unsupported_parameter naming it. Fields outside the spec are accepted and reported (the server
 * logs each name once and counts it). The sampling controls beyond temperature / top_p / top_k and
 * the logprobs options are parsed here. docs/API.md, "Request parameters", is the same table.
 */
#include "dsc_api_impl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define INVALID "invalid_request_error"

#define K_CHAT 1
#define K_CMPL 2
#define K_BOTH 3

typedef enum {
    F_IMPLEMENTED, /* parsed by dsc_api_parse.c or below */
    F_IGNORED,     /* harmless: accepted and ignored (no effect on generation) */
    F_REFUSED,     /* 400 unsupported_parameter unless absent, null or its no-op value */
} field_how_t;

typedef struct {
    const char *name;
    int kinds; /* K_CHAT / K_CMPL: where the OpenAI spec (or our extension) has it */
    field_how_t how;
} field_t;

/* The fields of OpenAI's two requests, and the vLLM extensions this server implements. */
static const field_t fields[] = {
    {"model", K_BOTH, F_IMPLEMENTED},
    {"messages", K_CHAT, F_IMPLEMENTED},
    {"prompt", K_CMPL, F_IMPLEMENTED},
    {"max_tokens", K_BOTH, F_IMPLEMENTED},
    {"max_completion_tokens", K_BOTH, F_IMPLEMENTED},
    {"temperature", K_BOTH, F_IMPLEMENTED},
    {"top_p", K_BOTH, F_IMPLEMENTED},
    {"n", K_BOTH, F_IMPLEMENTED}, /* dsc_api_choices.c */
    {"seed", K_BOTH, F_IMPLEMENTED},
    {"stop", K_BOTH, F_IMPLEMENTED},
    {"stream", K_BOTH, F_IMPLEMENTED},
    {"stream_options", K_BOTH, F_IMPLEMENTED},
    {"frequency_penalty", K_BOTH, F_IMPLEMENTED},
    {"presence_penalty", K_BOTH, F_IMPLEMENTED},
    {"logit_bias", K_BOTH, F_IMPLEMENTED},
    {"logprobs", K_BOTH, F_IMPLEMENTED},
    {"top_logprobs", K_CHAT, F_IMPLEMENTED},
    {"response_format", K_BOTH, F_IMPLEMENTED}, /* dsc_api_grammar.c */
    {"tools", K_CHAT, F_IMPLEMENTED}, /* tools .. continue_final_message: dsc_api_tools.c */
    {"tool_choice", K_CHAT, F_IMPLEMENTED},
    {"parallel_tool_calls", K_CHAT, F_IMPLEMENTED},
    {"add_generation_prompt", K_CHAT, F_IMPLEMENTED},  /* vLLM's */
    {"continue_final_message", K_CHAT, F_IMPLEMENTED}, /* vLLM's */
    {"chat_template_kwargs", K_CHAT, F_IMPLEMENTED},   /* thinking (DeepSeek-V3.1) */
    {"best_of", K_BOTH, F_IMPLEMENTED},                /* dsc_api_choices.c; chat: vLLM's */
    {"echo", K_CMPL, F_IMPLEMENTED},                   /* dsc_api_choices.c */
    {"suffix", K_CMPL, F_IMPLEMENTED},                 /* "" only */
    /* extensions (vLLM's names and meanings) */
    {"top_k", K_BOTH, F_IMPLEMENTED},
    {"min_p", K_BOTH, F_IMPLEMENTED},
    {"repetition_penalty", K_BOTH, F_IMPLEMENTED},
    {"min_tokens", K_BOTH, F_IMPLEMENTED},
    {"ignore_eos", K_BOTH, F_IMPLEMENTED},
    {"stop_token_ids", K_BOTH, F_IMPLEMENTED},
    {"guided_json", K_BOTH, F_IMPLEMENTED}, /* structured output: dsc_api_grammar.c */
    {"guided_regex", K_BOTH, F_IMPLEMENTED},
    {"guided_choice", K_BOTH, F_IMPLEMENTED},
    {"guided_grammar", K_BOTH, F_IMPLEMENTED},
    /* harmless: they change nothing a client can observe in the generation */
    {"user", K_BOTH, F_IGNORED},
    {"metadata", K_CHAT, F_IGNORED},
    {"store", K_CHAT, F_IGNORED},
    {"service_tier", K_CHAT, F_IGNORED},
    {"prompt_cache_key", K_CHAT, F_IGNORED},
    {"safety_identifier", K_CHAT, F_IGNORED},
    /* refused: the server cannot do what they ask */
    {"functions", K_CHAT, F_REFUSED},
    {"function_call", K_CHAT, F_REFUSED},
    {"audio", K_CHAT, F_REFUSED},
    {"modalities", K_CHAT, F_REFUSED}, /* ["text"] is allowed: checked below */
    {"prediction", K_CHAT, F_REFUSED},
    {"web_search_options", K_CHAT, F_REFUSED},
    {"reasoning_effort", K_CHAT, F_REFUSED},
    {"verbosity", K_CHAT, F_REFUSED},
};

static int unsupported(dsc_api_error_t *err, const char *param, const char *why)
{
    return dsc_api_error_set(err, 400, INVALID, "unsupported_parameter", param,
                             "Unsupported parameter: '%s' %s.", param, why);
}

static int out_of_range(dsc_api_error_t *err, const char *param, double x, double lo, double hi)
{
    return dsc_api_error_set(err, 400, INVALID, "invalid_value", param,
                             "Invalid value for '%s': %g is outside [%g, %g].", param, x, lo, hi);
}

static const field_t *field_find(const char *name)
{
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    }
    return NULL;
}

static json_t *given(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return v == NULL || json_is_null(v) ? NULL : v;
}

/* A number in [lo, hi] (lo excluded when lo_open); absent or null keeps *out. */
static int number(json_t *root, const char *key, double lo, int lo_open, double hi, float *out,
                  dsc_api_error_t *err)
{
    json_t *v = given(root, key);
    if (v == NULL)
        return 0;
    if (!json_is_number(v))
        return dsc_api_wrong_type(err, key, "a number");
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || (lo_open && x <= lo) ||
        (lo_open && (float)x <= (float)lo))
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", key,
                                 "Invalid value for '%s': %g is outside %s%g, %g].", key, x,
                                 lo_open ? "(" : "[", lo, hi);
    *out = (float)x;
    return 0;
}

/* The values that the refused and restricted fields may take (their no-op values). */
static int check_restricted(json_t *root, dsc_api_kind_t kind, dsc_api_error_t *err)
{
    json_t *v;
    if (kind == DSC_API_KIND_COMPLETION) {
        if ((v = given(root, "suffix")) != NULL) {
            if (!json_is_string(v))
                return dsc_api_wrong_type(err, "suffix", "a string");
            if (json_string_length(v) > 0)
                return unsupported(err, "suffix", "(insertion) is not supported");
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const field_t *f = &fields[i];
        if (f->how != F_REFUSED || (v = given(root, f->name)) == NULL)
            continue;
        if (strcmp(f->name, "modalities") == 0 && json_is_array(v) && json_array_size(v) == 1 &&
            json_is_string(json_array_get(v, 0)) &&
            strcmp(json_string_value(json_array_get(v, 0)), "text") == 0)
            continue;
        return unsupported(err, f->name, "is not supported by this server");
    }
    return 0;
}

/* A token id written as a JSON object key: decimal digits only. */
static int parse_id(const char *key, int32_t *out)
{
    if (key[0] < '0' || key[0] > '9' || strlen(key) > 9)
        return 0;
    char *end;
    long v = strtol(key, &end, 10);
    if (*end != '\0')
        return 0;
    *out = (int32_t)v;
    return 1;
}

static int parse_logit_bias(json_t *root, dsc_api_request_t *r, char *block, dsc_api_error_t *err)
{
    json_t *v = given(root, "logit_bias");
    if (v == NULL)
        return 0;
    if (!json_is_object(v))
        return dsc_api_wrong_type(err, "logit_bias", "an object of token id -> bias");
    if (json_object_size(v) > DSC_API_MAX_LOGIT_BIAS)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "logit_bias",
                                 "'logit_bias' has %zu entries; at most %d are allowed.",
                                 json_object_size(v), DSC_API_MAX_LOGIT_BIAS);
    int32_t *ids = (int32_t *)block;
    float *values = (float *)(block + DSC_API_MAX_LOGIT_BIAS * sizeof(int32_t));
    const char *key;
    json_t *val;
    int n = 0;
    json_object_foreach(v, key, val)
    {
        char param[64];
        snprintf(param, sizeof(param), "logit_bias.%.40s", key);
        if (!parse_id(key, &ids[n]))
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", "logit_bias",
                                     "Invalid key in 'logit_bias': '%.40s' is not a token id.",
                                     key);
        if (!json_is_number(val))
            return dsc_api_wrong_type(err, param, "a number");
        double x = json_number_value(val);
        if (!(x >= -100 && x <= 100))
            return out_of_range(err, param, x, -100, 100);
        values[n++] = (float)x;
    }
    r->bias_ids = ids;
    r->bias_values = values;
    r->n_bias = n;
    return 0;
}

static int parse_stop_ids(json_t *root, dsc_api_request_t *r, int32_t *ids, dsc_api_error_t *err)
{
    json_t *v = given(root, "stop_token_ids");
    if (v == NULL)
        return 0;
    if (!json_is_array(v))
        return dsc_api_wrong_type(err, "stop_token_ids", "an array of token ids");
    if (json_array_size(v) > DSC_API_MAX_STOP_IDS)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "stop_token_ids",
                                 "'stop_token_ids' has %zu ids; at most %d are allowed.",
                                 json_array_size(v), DSC_API_MAX_STOP_IDS);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *id = json_array_get(v, i);
        char param[40];
        snprintf(param, sizeof(param), "stop_token_ids[%zu]", i);
        if (!json_is_integer(id))
            return dsc_api_wrong_type(err, param, "an integer token id");
        if (json_integer_value(id) < 0 || json_integer_value(id) > 16777215)
            return out_of_range(err, param, (double)json_integer_value(id), 0, 16777215);
        ids[i] = (int32_t)json_integer_value(id);
    }
    r->stop_ids = ids;
    r->n_stop_ids = (int)json_array_size(v);
    return 0;
}

static int parse_logprobs(json_t *root, dsc_api_kind_t kind, dsc_api_request_t *r,
                          dsc_api_error_t *err)
{
    long long x;
    int present, rc;
    if (kind == DSC_API_KIND_COMPLETION) { /* logprobs: N, the number of top logprobs */
        if ((rc = dsc_api_get_integer(root, "logprobs", 0, DSC_API_MAX_TOP_LOGPROBS, &x, &present,
                                      err)))
            return rc;
        r->logprobs = present;
        r->top_logprobs = present ? (int)x : 0;
        return 0;
    }
    if ((rc = dsc_api_get_bool(root, "logprobs", &r->logprobs, err)) ||
        (rc = dsc_api_get_integer(root, "top_logprobs", 0, DSC_API_MAX_TOP_LOGPROBS, &x, &present,
                                  err)))
        return rc;
    if (present && !r->logprobs)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "top_logprobs",
                                 "'top_logprobs' needs 'logprobs': true.");
    r->top_logprobs = present ? (int)x : 0;
    return 0;
}

static int parse_controls(json_t *root, dsc_api_request_t *r, dsc_api_error_t *err)
{
    long long x;
    int present, rc;
    if ((rc = number(root, "presence_penalty", -2, 0, 2, &r->presence_penalty, err)) ||
        (rc = number(root, "frequency_penalty", -2, 0, 2, &r->frequency_penalty, err)) ||
        (rc = number(root, "repetition_penalty", 0, 1, 100, &r->repetition_penalty, err)) ||
        (rc = number(root, "min_p", 0, 0, 1, &r->min_p, err)) ||
        (rc = dsc_api_get_bool(root, "ignore_eos", &r->ignore_eos, err)))
        return rc;
    /* top_k -1 is vLLM's "off"; dsc_api_parse.c checks the other values. */
    json_t *k = given(root, "top_k");
    if (k != NULL && json_is_integer(k) && json_integer_value(k) == -1)
        json_object_set_new(root, "top_k", json_integer(0));
    if ((rc = dsc_api_get_integer(root, "min_tokens", 0, 262144, &x, &present, err)))
        return rc;
    r->min_tokens = present ? (int32_t)x : 0;
    r->temperature_given = given(root, "temperature") != NULL;
    r->top_p_given = given(root, "top_p") != NULL;
    r->top_k_given = given(root, "top_k") != NULL;
    return 0;
}

static int in_list(const char *key, const char *const *names)
{
    for (; *names != NULL; names++) {
        if (strcmp(key, *names) == 0)
            return 1;
    }
    return 0;
}

static void add_unknown(dsc_api_request_t *r, const char *name)
{
    for (int i = 0; i < r->n_unknown; i++) {
        if (strcmp(r->unknown[i], name) == 0)
            return;
    }
    if (r->n_unknown < DSC_API_MAX_UNKNOWN)
        r->unknown[r->n_unknown++] = name;
}

/*
 * Names of fields outside the spec, for the server to log and count: top-level ones by name,
 * those of stream_options as "stream_options.*" and of a message as "messages[].*" (the names of
 * the second level are not reported one by one: two fixed labels).
 */
static void collect_unknown(json_t *root, dsc_api_kind_t kind, dsc_api_request_t *r)
{
    static const char *const stream_keys[] = {"include_usage", "include_obfuscation", NULL};
    static const char *const message_keys[] = {
        "role",    "content", "name", "tool_calls", "tool_call_id", "reasoning_content",
        "refusal", "prefix",  NULL}; /* refusal: an earlier answer's, harmless */
    const char *key;
    json_t *val;
    int mask = kind == DSC_API_KIND_CHAT ? K_CHAT : K_CMPL;
    json_object_foreach(root, key, val)
    {
        const field_t *f = field_find(key);
        if ((f == NULL || !(f->kinds & mask)) && !dsc_api_vllm_known(key, kind))
            add_unknown(r, key);
    }
    json_t *opts = given(root, "stream_options");
    if (json_is_object(opts)) {
        json_object_foreach(opts, key, val)
        {
            if (!in_list(key, stream_keys))
                add_unknown(r, "stream_options.*");
        }
    }
    json_t *msgs = kind == DSC_API_KIND_CHAT ? given(root, "messages") : NULL;
    for (size_t i = 0; json_is_array(msgs) && i < json_array_size(msgs); i++) {
        json_object_foreach(json_array_get(msgs, i), key, val)
        {
            if (!in_list(key, message_keys))
                add_unknown(r, "messages[].*");
        }
    }
}

int dsc_api_params_parse(struct json_t *root, dsc_api_kind_t kind, dsc_api_request_t *r,
                         void **block, dsc_api_error_t *err)
{
    int rc;
    if ((rc = check_restricted(root, kind, err)) || (rc = parse_controls(root, r, err)) ||
        (rc = parse_logprobs(root, kind, r, err)) || (rc = dsc_api_vllm_check(root, kind, err)) ||
        (rc = dsc_api_choices_parse(root, kind, r, err)) ||
        (kind == DSC_API_KIND_CHAT && (rc = dsc_api_tools_parse(root, r, err))))
        return rc;
    /* One block for the arrays: logit_bias ids and values, then the stop ids. */
    size_t bias_bytes = DSC_API_MAX_LOGIT_BIAS * (sizeof(int32_t) + sizeof(float));
    if (given(root, "logit_bias") != NULL || given(root, "stop_token_ids") != NULL) {
        *block = malloc(bias_bytes + DSC_API_MAX_STOP_IDS * sizeof(int32_t));
        if (*block == NULL)
            return dsc_api_error_set(err, 503, "server_error", NULL, NULL, "out of memory");
        if ((rc = parse_logit_bias(root, r, *block, err)) ||
            (rc = parse_stop_ids(root, r, (int32_t *)((char *)*block + bias_bytes), err)))
            return rc;
    }
    collect_unknown(root, kind, r);
    return 0;
}
