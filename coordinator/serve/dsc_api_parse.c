/*
 * dsc_api_parse.c - parsing and validation of /v1/chat/completions and /v1/completions bodies
 * (jansson). Every refusal names the parameter and what was expected; nothing here trusts the
 * body: types, ranges, sizes and UTF-8 are all checked before a request reaches a backend.
 */
#include "dsc_api_impl.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"
#include "dst_msg.h"

struct dsc_api_parsed {
    json_t *root; /* owns the strings the request points to */
    dsc_api_request_t req;
    dsc_api_message_t *messages; /* [req.n_messages] */
    char **owned;                /* [n_owned] strings built here (joined parts, JSON dumps) */
    void *params_block;          /* dsc_api_params_parse's arrays */
    void *prompt_block;          /* dsc_api_prompt_parse's prompts and token ids */
    size_t n_owned, cap_owned;
};

#define INVALID "invalid_request_error"

/* Remember a malloc'ed string to free with the request; NULL (and frees s) on failure. */
static char *own(dsc_api_parsed_t *p, char *s)
{
    if (s == NULL)
        return NULL;
    if (p->n_owned == p->cap_owned) {
        size_t cap = p->cap_owned ? p->cap_owned * 2 : 8;
        char **o = realloc(p->owned, cap * sizeof(*o));
        if (o == NULL) {
            free(s);
            return NULL;
        }
        p->owned = o;
        p->cap_owned = cap;
    }
    p->owned[p->n_owned++] = s;
    return s;
}

static int nomem(dsc_api_error_t *err)
{
    return dsc_api_error_set(err, 503, "server_error", NULL, NULL, "out of memory");
}

static int missing(dsc_api_error_t *err, const char *param)
{
    return dsc_api_error_set(err, 400, INVALID, "missing_required_parameter", param,
                             "Missing required parameter: '%s'.", param);
}

/*
 * A sampling parameter checked against the control protocol's bounds (dst_bounds: the API takes
 * exactly the values a SUBMIT carries, float fields as float32) and, for max_tokens, the server's
 * own cap; absent or null leaves *present 0.
 */
static int get_bounded(json_t *obj, dst_bound_id_t id, double cap, double *out, int *present,
                       dsc_api_error_t *err)
{
    const dst_bound_t *b = &dst_bounds[id];
    const char *key = b->name;
    json_t *v = json_object_get(obj, key);
    *present = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (b->is_float ? !json_is_number(v) : !json_is_integer(v))
        return dsc_api_wrong_type(err, key, b->is_float ? "a number" : "an integer");
    double x = json_number_value(v), hi = b->api_hi < cap ? b->api_hi : cap;
    int ok = dst_bound_ok(id, x, 1) && x <= hi;
    if (!ok && b->is_float && isfinite(x) && x > b->lo && x <= hi)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", key,
                                 "Invalid value for '%s': %g is 0 as a 32-bit float; the "
                                 "smallest allowed value is %g.",
                                 key, x, (double)FLT_TRUE_MIN);
    if (!ok) {
        if (json_is_integer(v))
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", key,
                                     "Invalid value for '%s': %lld is outside [%.0f, %.0f].", key,
                                     (long long)json_integer_value(v), b->lo, hi);
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", key,
                                 "Invalid value for '%s': %g is outside %s%g, %g].", key, x,
                                 b->lo_open ? "(" : "[", b->lo, hi);
    }
    *out = x;
    *present = 1;
    return 0;
}

static int parse_sampling(dsc_api_parsed_t *p, json_t *root, const dsc_api_limits_t *lim,
                          dsc_api_error_t *err)
{
    dsc_api_request_t *r = &p->req;
    long long x;
    int present, rc;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->max_tokens = lim->default_max_tokens;
    double v;
    if ((rc = get_bounded(root, DST_BOUND_TEMPERATURE, HUGE_VAL, &v, &present, err)))
        return rc;
    if (present)
        r->temperature = (float)v;
    if ((rc = get_bounded(root, DST_BOUND_TOP_P, HUGE_VAL, &v, &present, err)))
        return rc;
    if (present)
        r->top_p = (float)v;
    if ((rc = get_bounded(root, DST_BOUND_TOP_K, HUGE_VAL, &v, &present, err)))
        return rc;
    if (present)
        r->top_k = (int32_t)v;
    if ((rc = dsc_api_get_integer(root, "seed", INT64_MIN, INT64_MAX, &x, &present, err)))
        return rc;
    r->has_seed = present;
    r->seed = present ? (uint64_t)x : 0;
    /* max_completion_tokens is the newer name; it wins when both are given. */
    if ((rc = get_bounded(root, DST_BOUND_MAX_TOKENS, lim->max_tokens_limit, &v, &present, err)))
        return rc;
    if (present)
        r->max_tokens = (int32_t)v;
    r->max_tokens_given |= present;
    if ((rc = dsc_api_get_integer(root, "max_completion_tokens", 1,
                                  dst_bounds[DST_BOUND_MAX_TOKENS].hi < lim->max_tokens_limit
                                      ? (long long)dst_bounds[DST_BOUND_MAX_TOKENS].hi
                                      : lim->max_tokens_limit,
                                  &x, &present, err)))
        return rc;
    if (present)
        r->max_tokens = (int32_t)x; /* the newer name wins when both are given */
    r->max_tokens_given |= present;
    return 0;
}

static int parse_stop(dsc_api_parsed_t *p, json_t *root, dsc_api_error_t *err)
{
    json_t *v = json_object_get(root, "stop");
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", "stop",
                                     "'stop' strings must not be empty.");
        p->req.stop[0] = json_string_value(v);
        p->req.n_stop = 1;
        return 0;
    }
    if (!json_is_array(v))
        return dsc_api_wrong_type(err, "stop", "a string or an array of strings");
    if (json_array_size(v) > DSC_API_MAX_STOP)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "stop",
                                 "'stop' has %zu strings; at most %d are allowed.",
                                 json_array_size(v), DSC_API_MAX_STOP);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        char param[32];
        snprintf(param, sizeof(param), "stop[%zu]", i);
        if (!json_is_string(s))
            return dsc_api_wrong_type(err, param, "a string");
        if (json_string_length(s) == 0)
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", param,
                                     "'stop' strings must not be empty.");
        p->req.stop[p->req.n_stop++] = json_string_value(s);
    }
    return 0;
}

static int parse_stream(dsc_api_parsed_t *p, json_t *root, dsc_api_error_t *err)
{
    int rc = dsc_api_get_bool(root, "stream", &p->req.stream, err);
    if (rc)
        return rc;
    json_t *opts = json_object_get(root, "stream_options");
    if (opts == NULL || json_is_null(opts))
        return 0;
    if (!json_is_object(opts))
        return dsc_api_wrong_type(err, "stream_options", "an object");
    if (!p->req.stream)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "stream_options",
                                 "'stream_options' is only allowed when 'stream' is true.");
    json_t *inc = json_object_get(opts, "include_usage");
    if (inc != NULL && !json_is_null(inc) && !json_is_boolean(inc))
        return dsc_api_wrong_type(err, "stream_options.include_usage", "a boolean");
    p->req.include_usage = inc != NULL && json_is_true(inc);
    return 0;
}

/* A string, or an array of {"type": "text", "text": ...} parts joined; NULL/absent -> "". */
static int parse_content(dsc_api_parsed_t *p, json_t *v, const char *param, const char **out,
                         size_t *len, dsc_api_error_t *err)
{
    if (v == NULL || json_is_null(v)) {
        *out = "";
        *len = 0;
        return 0;
    }
    if (json_is_string(v)) {
        *out = json_string_value(v);
        *len = json_string_length(v);
        return 0;
    }
    if (!json_is_array(v))
        return dsc_api_wrong_type(err, param, "a string or an array of content parts");
    size_t total = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *part = json_array_get(v, i);
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") != 0 || !json_is_string(text))
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", param,
                                     "'%s[%zu]': only {\"type\": \"text\", \"text\": string} "
                                     "parts are supported.",
                                     param, i);
        total += json_string_length(text);
    }
    char *joined = own(p, malloc(total + 1));
    if (joined == NULL)
        return nomem(err);
    size_t off = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *text = json_object_get(json_array_get(v, i), "text");
        memcpy(joined + off, json_string_value(text), json_string_length(text));
        off += json_string_length(text);
    }
    joined[off] = '\0';
    *out = joined;
    *len = off;
    return 0;
}

static int parse_role(const char *s, dsc_api_role_t *role)
{
    static const char *const names[] = {"system", "user", "assistant", "tool"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *role = (dsc_api_role_t)i;
            return 1;
        }
    }
    if (strcmp(s, "developer") == 0) { /* OpenAI's newer name for system */
        *role = DSC_API_ROLE_SYSTEM;
        return 1;
    }
    return 0;
}

/* An optional string member; absent or null -> NULL. */
static int opt_string(json_t *obj, const char *key, const char *param, const char **out,
                      dsc_api_error_t *err)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return dsc_api_wrong_type(err, param, "a string");
    *out = json_string_value(v);
    return 0;
}

static int parse_message(dsc_api_parsed_t *p, json_t *m, size_t i, dsc_api_message_t *out,
                         dsc_api_error_t *err)
{
    char param[64];
    snprintf(param, sizeof(param), "messages[%zu]", i);
    if (!json_is_object(m))
        return dsc_api_wrong_type(err, param, "an object");
    json_t *role = json_object_get(m, "role");
    snprintf(param, sizeof(param), "messages[%zu].role", i);
    if (role == NULL)
        return missing(err, param);
    if (!json_is_string(role) || !parse_role(json_string_value(role), &out->role))
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", param,
                                 "'%s' must be one of system, user, assistant, tool.", param);
    json_t *content = json_object_get(m, "content");
    snprintf(param, sizeof(param), "messages[%zu].content", i);
    if ((content == NULL || json_is_null(content)) && out->role != DSC_API_ROLE_ASSISTANT)
        return missing(err, param);
    int rc = parse_content(p, content, param, &out->content, &out->content_len, err);
    if (rc)
        return rc;
    snprintf(param, sizeof(param), "messages[%zu].name", i);
    if ((rc = opt_string(m, "name", param, &out->name, err)))
        return rc;
    snprintf(param, sizeof(param), "messages[%zu].reasoning_content", i);
    if ((rc = opt_string(m, "reasoning_content", param, &out->reasoning, err)))
        return rc;
    snprintf(param, sizeof(param), "messages[%zu].tool_call_id", i);
    if ((rc = opt_string(m, "tool_call_id", param, &out->tool_call_id, err)))
        return rc;
    if (out->role == DSC_API_ROLE_TOOL && out->tool_call_id == NULL)
        return missing(err, param);
    json_t *calls = json_object_get(m, "tool_calls");
    if (calls != NULL && !json_is_null(calls)) {
        snprintf(param, sizeof(param), "messages[%zu].tool_calls", i);
        if (!json_is_array(calls))
            return dsc_api_wrong_type(err, param, "an array");
        out->tool_calls = own(p, json_dumps(calls, JSON_COMPACT | JSON_ENSURE_ASCII));
        if (out->tool_calls == NULL)
            return nomem(err);
    }
    return 0;
}

static int parse_messages(dsc_api_parsed_t *p, json_t *root, const dsc_api_limits_t *lim,
                          dsc_api_error_t *err)
{
    json_t *msgs = json_object_get(root, "messages");
    if (msgs == NULL || json_is_null(msgs))
        return missing(err, "messages");
    if (!json_is_array(msgs))
        return dsc_api_wrong_type(err, "messages", "an array");
    size_t n = json_array_size(msgs);
    if (n == 0)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "messages",
                                 "'messages' must not be empty.");
    if (n > lim->max_messages)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "messages",
                                 "'messages' has %zu entries; at most %zu are allowed.", n,
                                 lim->max_messages);
    p->messages = calloc(n, sizeof(*p->messages));
    if (p->messages == NULL)
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        int rc = parse_message(p, json_array_get(msgs, i), i, &p->messages[i], err);
        if (rc)
            return rc;
    }
    p->req.messages = p->messages;
    p->req.n_messages = n;
    json_t *tools = json_object_get(root, "tools");
    if (tools != NULL && !json_is_null(tools)) {
        if (!json_is_array(tools))
            return dsc_api_wrong_type(err, "tools", "an array");
        p->req.tools = own(p, json_dumps(tools, JSON_COMPACT | JSON_ENSURE_ASCII));
        if (p->req.tools == NULL)
            return nomem(err);
    }
    /* The chat template's variables; only `thinking` (DeepSeek-V3.1) is used, others ignored.
     * V3.1's published template reads `enable_thinking` when `thinking` is not given. */
    json_t *kw = json_object_get(root, "chat_template_kwargs");
    if (kw != NULL && !json_is_null(kw)) {
        if (!json_is_object(kw))
            return dsc_api_wrong_type(err, "chat_template_kwargs", "an object");
        static const char *const names[] = {"thinking", "enable_thinking"};
        static const char *const params[] = {"chat_template_kwargs.thinking",
                                             "chat_template_kwargs.enable_thinking"};
        int given = 0;
        for (int i = 0; i < 2; i++) {
            json_t *th = json_object_get(kw, names[i]);
            if (th == NULL || json_is_null(th))
                continue;
            if (!json_is_boolean(th))
                return dsc_api_wrong_type(err, params[i], "a boolean");
            if (!given)
                p->req.thinking = json_is_true(th);
            given = 1;
        }
    }
    return 0;
}

static int parse_root(dsc_api_parsed_t *p, dsc_api_kind_t kind, json_t *root,
                      const dsc_api_limits_t *lim, dsc_api_error_t *err)
{
    int rc;
    if (!json_is_object(root))
        return dsc_api_error_set(err, 400, INVALID, NULL, NULL,
                                 "The request body must be a JSON object.");
    json_t *model = json_object_get(root, "model");
    if (model == NULL || json_is_null(model))
        return missing(err, "model");
    if (!json_is_string(model) || json_string_length(model) == 0)
        return dsc_api_wrong_type(err, "model", "a non-empty string");
    p->req.kind = kind;
    p->req.model = json_string_value(model);
    if (kind == DSC_API_KIND_CHAT)
        rc = parse_messages(p, root, lim, err);
    else
        rc = dsc_api_prompt_parse(root, lim, &p->req, &p->prompt_block, err);
    if (rc || (rc = dsc_api_params_parse(root, kind, &p->req, &p->params_block, err)) ||
        (rc = parse_sampling(p, root, lim, err)) || (rc = parse_stop(p, root, err)) ||
        (rc = parse_stream(p, root, err)))
        return rc;
    char *grammar = NULL;
    if ((rc = dsc_api_grammar_parse(root, &p->req, &grammar, err)))
        return rc;
    if (grammar != NULL && own(p, grammar) == NULL)
        return nomem(err);
    if (p->req.max_tokens_given && p->req.min_tokens > p->req.max_tokens)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "min_tokens",
                                 "'min_tokens' (%d) must not exceed 'max_tokens' (%d).",
                                 (int)p->req.min_tokens, (int)p->req.max_tokens);
    return 0;
}

dsi_status_t dsc_api_request_parse(dsc_api_kind_t kind, const char *body, size_t len,
                                   const dsc_api_limits_t *limits, dsc_api_parsed_t **out,
                                   dsc_api_error_t *err)
{
    size_t bad;
    if (!dsc_api_utf8_valid(body, len, &bad)) {
        dsc_api_error_set(err, 400, INVALID, "invalid_encoding", NULL,
                          "The request body is not valid UTF-8 (byte offset %zu).", bad);
        return DSI_ERR_BAD_UTF8;
    }
    dsc_api_parsed_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        nomem(err);
        return DSI_ERR_NOMEM;
    }
    json_error_t jerr;
    p->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (p->root == NULL) {
        dsc_api_error_set(err, 400, INVALID, "invalid_json", NULL,
                          "The body is not valid JSON: %s (line %d, column %d).", jerr.text,
                          jerr.line, jerr.column);
        dsc_api_parsed_destroy(p);
        return DSI_ERR_BAD_REQUEST;
    }
    int rc = parse_root(p, kind, p->root, limits, err);
    if (rc) {
        dsc_api_parsed_destroy(p);
        return rc == 503 ? DSI_ERR_NOMEM : DSI_ERR_BAD_REQUEST;
    }
    *out = p;
    return DSI_OK;
}

const dsc_api_request_t *dsc_api_parsed_request(const dsc_api_parsed_t *p)
{
    return &p->req;
}

void dsc_api_parsed_destroy(dsc_api_parsed_t *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_owned; i++)
        free(p->owned[i]);
    free(p->owned);
    free(p->params_block);
    free(p->prompt_block);
    free(p->messages);
    json_decref(p->root);
    free(p);
}
