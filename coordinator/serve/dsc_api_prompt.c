/*
 * dsc_api_prompt.c - the `prompt` of /v1/completions in every form OpenAI and vLLM take: a
 * string, an array of token ids, or a batch (an array of strings or of token-id arrays, at most
 * limits->max_prompts). Every refusal names the prompt and the element that is wrong. Token ids
 * are checked to be ids here (integers in [0, 2^31)); the backend checks them against the
 * vocabulary. docs/API.md, "Prompts and batches".
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "dsc_api_impl.h"

#define INVALID "invalid_request_error"

typedef enum { FORM_TEXT, FORM_IDS, FORM_BATCH_TEXT, FORM_BATCH_IDS } form_t;

static int empty(dsc_api_error_t *err, const char *param)
{
    return dsc_api_error_set(err, 400, INVALID, "invalid_value", param, "'%s' must not be empty.",
                             param);
}

static const char *type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "a token id";
    case JSON_ARRAY:
        return "an array";
    case JSON_REAL:
        return "a number with a fraction";
    case JSON_OBJECT:
        return "an object";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* An element whose type differs from the array's first element's. */
static int mixed(dsc_api_error_t *err, const char *param, json_t *v, const char *want)
{
    return dsc_api_error_set(err, 400, INVALID, "invalid_type", param,
                             "'%s' is %s, but 'prompt[0]' makes 'prompt' %s; an array of prompts "
                             "takes one type (mixed types are not allowed).",
                             param, type_name(v), want);
}

/* A token-id array `v` (named `param`; `top` is the prompt field): checked, its ids counted
 * into *n_ids. */
static int check_ids(json_t *top, json_t *v, const char *param, size_t *n_ids, dsc_api_error_t *err)
{
    size_t n = json_array_size(v);
    if (n == 0)
        return empty(err, param);
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        char name[48];
        snprintf(name, sizeof(name), "%s[%zu]", param, i);
        if (!json_is_integer(x) && v == top)
            return mixed(err, name, x, "an array of token ids");
        if (!json_is_integer(x))
            return dsc_api_error_set(err, 400, INVALID, "invalid_type", name,
                                     "'%s' is %s; a prompt of token ids holds integers only.", name,
                                     type_name(x));
        json_int_t id = json_integer_value(x);
        if (id < 0 || id > INT32_MAX)
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", name,
                                     "Invalid value for '%s': %lld is not a token id.", name,
                                     (long long)id);
    }
    *n_ids += n;
    return 0;
}

/* The form of `v` and its prompts and ids, every element checked. */
static int classify(json_t *v, const dsc_api_limits_t *lim, form_t *form, size_t *n_prompts,
                    size_t *n_ids, dsc_api_error_t *err)
{
    *n_prompts = 1;
    *n_ids = 0;
    if (json_is_string(v)) {
        *form = FORM_TEXT;
        return json_string_length(v) == 0 ? empty(err, "prompt") : 0;
    }
    if (!json_is_array(v))
        return dsc_api_wrong_type(err, "prompt",
                                  "a string, an array of strings, an array of token ids or an "
                                  "array of token-id arrays");
    size_t n = json_array_size(v);
    if (n == 0)
        return empty(err, "prompt");
    json_t *first = json_array_get(v, 0);
    if (json_is_integer(first)) {
        *form = FORM_IDS;
        return check_ids(v, v, "prompt", n_ids, err);
    }
    if (!json_is_string(first) && !json_is_array(first))
        return dsc_api_wrong_type(err, "prompt[0]",
                                  "a string, a token id or an array of token ids");
    *form = json_is_string(first) ? FORM_BATCH_TEXT : FORM_BATCH_IDS;
    if (n > lim->max_prompts)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "prompt",
                                 "'prompt' has %zu prompts; at most %zu are allowed in one "
                                 "request (the server's --max-prompts).",
                                 n, lim->max_prompts);
    *n_prompts = n;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(v, i);
        char name[32];
        snprintf(name, sizeof(name), "prompt[%zu]", i);
        int rc = 0;
        if (*form == FORM_BATCH_TEXT && !json_is_string(p))
            rc = mixed(err, name, p, "an array of strings");
        else if (*form == FORM_BATCH_IDS && !json_is_array(p))
            rc = mixed(err, name, p, "an array of token-id arrays");
        else if (*form == FORM_BATCH_TEXT && json_string_length(p) == 0)
            rc = empty(err, name);
        else if (*form == FORM_BATCH_IDS)
            rc = check_ids(v, p, name, n_ids, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Token ids of array `v` into ids[] (checked by check_ids). */
static size_t copy_ids(json_t *v, int32_t *ids)
{
    for (size_t i = 0; i < json_array_size(v); i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(v, i));
    return json_array_size(v);
}

int dsc_api_prompt_parse(json_t *root, const dsc_api_limits_t *lim, dsc_api_request_t *r,
                         void **block, dsc_api_error_t *err)
{
    json_t *v = json_object_get(root, "prompt");
    if (v == NULL || json_is_null(v))
        return dsc_api_error_set(err, 400, INVALID, "missing_required_parameter", "prompt",
                                 "Missing required parameter: 'prompt'.");
    form_t form = FORM_TEXT;
    size_t n, n_ids;
    int rc = classify(v, lim, &form, &n, &n_ids, err);
    if (rc)
        return rc;
    /* The prompts, then every id: one block. */
    size_t head = n * sizeof(dsc_api_prompt_t);
    head = (head + sizeof(int32_t) - 1) / sizeof(int32_t) * sizeof(int32_t);
    char *mem = malloc(head + n_ids * sizeof(int32_t) + 1);
    *block = mem;
    if (mem == NULL)
        return dsc_api_error_set(err, 503, "server_error", NULL, NULL, "out of memory");
    dsc_api_prompt_t *prompts = (dsc_api_prompt_t *)(void *)mem;
    int32_t *ids = (int32_t *)(void *)(mem + head);
    for (size_t i = 0; i < n; i++) {
        json_t *p = form == FORM_TEXT || form == FORM_IDS ? v : json_array_get(v, i);
        prompts[i] = (dsc_api_prompt_t){0};
        if (json_is_string(p)) {
            prompts[i].text = json_string_value(p);
            prompts[i].len = json_string_length(p);
        } else {
            prompts[i].ids = ids;
            prompts[i].n_ids = copy_ids(p, ids);
            ids += prompts[i].n_ids;
        }
    }
    r->prompts = prompts;
    r->n_prompts = (int)n;
    /* A batch names its prompts prompt[i], even a batch of one. */
    r->prompt_index = form == FORM_BATCH_TEXT || form == FORM_BATCH_IDS ? 0 : -1;
    dsc_api_request_set_prompt(r, 0);
    return 0;
}

void dsc_api_request_set_prompt(dsc_api_request_t *r, int i)
{
    const dsc_api_prompt_t *p = &r->prompts[i];
    r->prompt = p->text;
    r->prompt_len = p->len;
    r->prompt_ids = p->ids;
    r->n_prompt_ids = p->n_ids;
    if (r->prompt_index >= 0)
        r->prompt_index = i;
}
