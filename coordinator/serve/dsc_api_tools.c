/*
 * dsc_api_tools.c - the request fields of tool calling and prefix continuation: `tools` (each a
 * {"type": "function", "function": {"name", "description"?, "parameters"?}}), `tool_choice`,
 * `parallel_tool_calls`, vLLM's `add_generation_prompt` and `continue_final_message`, and the
 * DeepSeek API's `prefix` on the last assistant message. docs/API.md, "Tool calling".
 */
#include "dsc_api_impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_tool_grammar.h"
#include "dsg.h"

#define INVALID "invalid_request_error"

static json_t *given(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v == NULL || json_is_null(v) ? NULL : v;
}

static int invalid(dsc_api_error_t *err, const char *param, const char *why)
{
    return dsc_api_error_set(err, 400, INVALID, "invalid_value", param, "Invalid '%s': %s.", param,
                             why);
}

static int check_tool(json_t *t, size_t i, dsc_api_error_t *err)
{
    char param[64];
    snprintf(param, sizeof(param), "tools[%zu]", i);
    json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
    if (!json_is_object(t))
        return dsc_api_wrong_type(err, param, "an object");
    if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0)
        return invalid(err, param,
                       "only {\"type\": \"function\", \"function\": {...}} tools are "
                       "supported");
    snprintf(param, sizeof(param), "tools[%zu].function", i);
    if (!json_is_object(fn))
        return dsc_api_wrong_type(err, param, "an object");
    json_t *name = json_object_get(fn, "name"), *desc = given(fn, "description");
    json_t *params = given(fn, "parameters");
    snprintf(param, sizeof(param), "tools[%zu].function.name", i);
    if (!json_is_string(name) || json_string_length(name) == 0)
        return dsc_api_wrong_type(err, param, "a non-empty string");
    if (strpbrk(json_string_value(name), "\n<") != NULL)
        return invalid(err, param, "a function name holds no newline and no '<'");
    snprintf(param, sizeof(param), "tools[%zu].function.description", i);
    if (desc != NULL && !json_is_string(desc))
        return dsc_api_wrong_type(err, param, "a string");
    snprintf(param, sizeof(param), "tools[%zu].function.parameters", i);
    if (params != NULL && !json_is_object(params))
        return dsc_api_wrong_type(err, param, "a JSON Schema object");
    return 0;
}

static int has_tool(json_t *tools, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *n = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (n != NULL && strcmp(n, name) == 0)
            return 1;
    }
    return 0;
}

/* A forced call is constrained decoding: not with another grammar; the tools' schemas must
 * convert and compile (the backend builds the grammar in its template's format again). */
static int check_forced(json_t *root, json_t *tools, dsc_api_request_t *r, dsc_api_error_t *err)
{
    static const char *const others[] = {"guided_json", "guided_regex", "guided_choice",
                                         "guided_grammar", NULL};
    json_t *rf = given(root, "response_format");
    const char *rf_type = json_string_value(json_object_get(rf, "type"));
    for (int i = 0; others[i] != NULL; i++)
        if (given(root, others[i]) != NULL)
            return invalid(err, "tool_choice",
                           "a forced tool call cannot be combined with guided decoding");
    if (rf_type != NULL && strcmp(rf_type, "text") != 0)
        return invalid(err, "tool_choice",
                       "a forced tool call cannot be combined with a structured response_format");
    char *text = json_dumps(tools, JSON_COMPACT), *gbnf = NULL, msg[256] = "";
    dsg_grammar_t *g = NULL;
    dsi_status_t st = text == NULL ? DSI_ERR_NOMEM
                                   : dsc_tool_grammar(DSC_CHAT_V3, text, strlen(text),
                                                      r->tool_function, 1, &gbnf, msg, sizeof(msg));
    if (st == DSI_OK)
        st = dsg_compile(gbnf, strlen(gbnf), &g, msg, sizeof(msg));
    dsg_grammar_free(g);
    free(gbnf);
    free(text);
    if (st == DSI_ERR_NOMEM)
        return dsc_api_error_set(err, 503, "server_error", NULL, NULL, "out of memory");
    if (st != DSI_OK)
        return dsc_api_error_set(err, 400, INVALID,
                                 st == DSI_ERR_UNSUPPORTED ? "unsupported_parameter"
                                                           : "invalid_value",
                                 "tools", "Invalid 'tools' for a forced tool call: %s.", msg);
    return 0;
}

static int parse_choice(json_t *root, json_t *tools, dsc_api_request_t *r, dsc_api_error_t *err)
{
    size_t n_tools = json_array_size(tools);
    json_t *c = given(root, "tool_choice");
    r->tool_choice = n_tools > 0 ? DSC_API_TOOL_CHOICE_AUTO : DSC_API_TOOL_CHOICE_NONE;
    if (c == NULL)
        return 0;
    if (json_is_string(c)) {
        const char *s = json_string_value(c);
        if (strcmp(s, "none") == 0)
            r->tool_choice = DSC_API_TOOL_CHOICE_NONE;
        else if (strcmp(s, "required") == 0)
            r->tool_choice = DSC_API_TOOL_CHOICE_REQUIRED;
        else if (strcmp(s, "auto") != 0)
            return invalid(err, "tool_choice",
                           "one of \"none\", \"auto\", \"required\" or {\"type\": \"function\", "
                           "\"function\": {\"name\": ...}}");
    } else {
        json_t *fn = json_object_get(c, "function"), *type = json_object_get(c, "type");
        json_t *name = json_object_get(fn, "name");
        if (!json_is_object(c) || !json_is_string(type) ||
            strcmp(json_string_value(type), "function") != 0 || !json_is_string(name))
            return dsc_api_wrong_type(err, "tool_choice",
                                      "\"none\", \"auto\", \"required\" or {\"type\": "
                                      "\"function\", \"function\": {\"name\": string}}");
        if (!has_tool(tools, json_string_value(name)))
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", "tool_choice",
                                     "Invalid 'tool_choice': the function '%.100s' is not one of "
                                     "'tools'.",
                                     json_string_value(name));
        r->tool_choice = DSC_API_TOOL_CHOICE_FUNCTION;
        r->tool_function = json_string_value(name);
    }
    if (r->tool_choice == DSC_API_TOOL_CHOICE_REQUIRED && n_tools == 0)
        return invalid(err, "tool_choice", "\"required\" needs a non-empty 'tools'");
    if (r->tool_choice >= DSC_API_TOOL_CHOICE_REQUIRED)
        return check_forced(root, tools, r, err);
    return 0;
}

/* The messages' `prefix`: only the last message, an assistant one, may be continued. */
static int parse_prefix(json_t *root, dsc_api_request_t *r, dsc_api_error_t *err)
{
    json_t *msgs = json_object_get(root, "messages");
    size_t n = json_array_size(msgs);
    for (size_t i = 0; i < n; i++) {
        json_t *v = given(json_array_get(msgs, i), "prefix");
        char param[48];
        snprintf(param, sizeof(param), "messages[%zu].prefix", i);
        if (v == NULL)
            continue;
        if (!json_is_boolean(v))
            return dsc_api_wrong_type(err, param, "a boolean");
        if (!json_is_true(v))
            continue;
        if (i + 1 != n || r->messages[i].role != DSC_API_ROLE_ASSISTANT)
            return invalid(err, param,
                           "only the last message, an assistant message, can be a prefix");
        r->continue_final = 1;
    }
    return 0;
}

static int parse_continue(json_t *root, dsc_api_request_t *r, dsc_api_error_t *err)
{
    int rc, cont = 0, prefix, agp_value = 1;
    json_t *agp = given(root, "add_generation_prompt");
    if ((rc = dsc_api_get_bool(root, "add_generation_prompt", &agp_value, err)) ||
        (rc = dsc_api_get_bool(root, "continue_final_message", &cont, err)) ||
        (rc = parse_prefix(root, r, err)))
        return rc;
    prefix = r->continue_final;
    r->no_generation_prompt = !agp_value;
    if (cont && agp_value)
        return invalid(err, "continue_final_message",
                       "it cannot be true together with 'add_generation_prompt' (true by "
                       "default): pass \"add_generation_prompt\": false");
    if (prefix && agp != NULL && agp_value)
        return invalid(err, "add_generation_prompt",
                       "a 'prefix' message is continued: no generation prompt can follow it");
    if (!cont && !prefix)
        return 0;
    const dsc_api_message_t *last = &r->messages[r->n_messages - 1];
    if (last->role != DSC_API_ROLE_ASSISTANT || last->tool_calls != NULL)
        return invalid(err, cont ? "continue_final_message" : "messages",
                       "the last message must be an assistant message with content and no "
                       "tool_calls to be continued");
    r->continue_final = 1;
    r->no_generation_prompt = 1;
    return 0;
}

int dsc_api_tools_parse(struct json_t *root, dsc_api_request_t *r, dsc_api_error_t *err)
{
    json_t *tools = given(root, "tools");
    int rc;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        if ((rc = check_tool(t, i, err)))
            return rc;
    }
    r->parallel_tool_calls = 1;
    if ((rc = parse_choice(root, tools, r, err)) ||
        (rc = dsc_api_get_bool(root, "parallel_tool_calls", &r->parallel_tool_calls, err)))
        return rc;
    r->parse_tool_calls = json_array_size(tools) > 0 && r->tool_choice != DSC_API_TOOL_CHOICE_NONE;
    return parse_continue(root, r, err);
}
