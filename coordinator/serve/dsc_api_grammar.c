/*
 * dsc_api_grammar.c - structured output requests (docs/STRUCTURED_OUTPUT.md): response_format
 * json_object / json_schema, and vLLM's guided_json, guided_regex, guided_choice and
 * guided_grammar, for chat and completions. Each becomes grammar text (grammar/dsg.h), compiled
 * here once so that a bad schema, regex or grammar is a 400 naming the parameter (and, for an
 * unsupported JSON Schema keyword, the keyword) before anything is queued. The text goes to the
 * cluster as SUBMIT.grammar; the last stage masks the logits with it.
 */
#include "dsc_api_impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dsg.h"

#define INVALID "invalid_request_error"

static json_t *given(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return v == NULL || json_is_null(v) ? NULL : v;
}

static int refuse(dsc_api_error_t *err, dsi_status_t st, const char *param, const char *what)
{
    if (st == DSI_ERR_NOMEM)
        return dsc_api_error_set(err, 503, "server_error", NULL, NULL, "out of memory");
    return dsc_api_error_set(err, 400, INVALID,
                             st == DSI_ERR_UNSUPPORTED ? "unsupported_parameter" : "invalid_value",
                             param, "Invalid '%s': %s.", param, what);
}

/* A schema given as an object (or, for guided_json, a JSON string holding one). */
static int from_schema(json_t *schema, const char *param, char **gbnf, dsc_api_error_t *err)
{
    char *text = NULL;
    size_t len;
    if (json_is_string(schema)) {
        text = strdup(json_string_value(schema));
        len = json_string_length(schema);
    } else if (json_is_object(schema) || json_is_boolean(schema)) {
        text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
        len = text != NULL ? strlen(text) : 0;
    } else {
        return dsc_api_wrong_type(err, param, "a JSON Schema object");
    }
    if (text == NULL)
        return refuse(err, DSI_ERR_NOMEM, param, "");
    char msg[320] = "";
    dsi_status_t st = dsg_from_json_schema(text, len, "", gbnf, msg, sizeof(msg));
    free(text);
    return st == DSI_OK ? 0 : refuse(err, st, param, msg);
}

static int from_response_format(json_t *v, char **gbnf, dsc_api_error_t *err)
{
    json_t *type = json_is_object(v) ? json_object_get(v, "type") : NULL;
    if (!json_is_object(v) || !json_is_string(type))
        return dsc_api_wrong_type(err, "response_format", "an object with a string 'type'");
    const char *t = json_string_value(type);
    if (strcmp(t, "text") == 0)
        return 0;
    if (strcmp(t, "json_object") == 0) {
        dsi_status_t st = dsg_json_object_gbnf("", gbnf);
        return st == DSI_OK ? 0 : refuse(err, st, "response_format", "");
    }
    if (strcmp(t, "json_schema") != 0)
        return dsc_api_error_set(err, 400, INVALID, "invalid_value", "response_format.type",
                                 "Invalid value for 'response_format.type': '%.40s' (expected "
                                 "'text', 'json_object' or 'json_schema').",
                                 t);
    json_t *js = json_object_get(v, "json_schema");
    if (!json_is_object(js))
        return dsc_api_wrong_type(err, "response_format.json_schema",
                                  "an object with 'name' and 'schema'");
    json_t *name = json_object_get(js, "name"), *strict = json_object_get(js, "strict");
    if (name != NULL && !json_is_string(name))
        return dsc_api_wrong_type(err, "response_format.json_schema.name", "a string");
    if (strict != NULL && !json_is_null(strict) && !json_is_boolean(strict))
        return dsc_api_wrong_type(err, "response_format.json_schema.strict", "a boolean");
    json_t *schema = json_object_get(js, "schema");
    if (schema == NULL || json_is_null(schema)) { /* no schema: any JSON object */
        dsi_status_t st = dsg_json_object_gbnf("", gbnf);
        return st == DSI_OK ? 0 : refuse(err, st, "response_format", "");
    }
    if (!json_is_object(schema))
        return dsc_api_wrong_type(err, "response_format.json_schema.schema",
                                  "a JSON Schema object");
    return from_schema(schema, "response_format.json_schema.schema", gbnf, err);
}

static int from_choice(json_t *v, char **gbnf, dsc_api_error_t *err)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return dsc_api_wrong_type(err, "guided_choice", "a non-empty array of strings");
    size_t n = json_array_size(v);
    const char **choices = calloc(n, sizeof(*choices));
    if (choices == NULL)
        return refuse(err, DSI_ERR_NOMEM, "guided_choice", "");
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(v, i);
        if (!json_is_string(c)) {
            free(choices);
            return dsc_api_wrong_type(err, "guided_choice", "a non-empty array of strings");
        }
        choices[i] = json_string_value(c);
    }
    char msg[200] = "";
    dsi_status_t st = dsg_from_choice(choices, n, "", gbnf, msg, sizeof(msg));
    free(choices);
    return st == DSI_OK ? 0 : refuse(err, st, "guided_choice", msg);
}

int dsc_api_grammar_parse(json_t *root, dsc_api_request_t *r, char **grammar, dsc_api_error_t *err)
{
    static const char *const keys[] = {"response_format", "guided_json", "guided_regex",
                                       "guided_choice", "guided_grammar"};
    const char *which = NULL;
    json_t *v = NULL;
    *grammar = NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *x = given(root, keys[i]);
        if (x == NULL)
            continue;
        if (i == 0 && json_is_object(x) && json_is_string(json_object_get(x, "type")) &&
            strcmp(json_string_value(json_object_get(x, "type")), "text") == 0)
            continue; /* plain text: no grammar */
        if (which != NULL)
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", keys[i],
                                     "'%s' and '%s' both constrain the output: give one.", which,
                                     keys[i]);
        which = keys[i];
        v = x;
    }
    int rc = 0;
    char *gbnf = NULL;
    if (which == NULL)
        return 0;
    if (strcmp(which, "response_format") == 0) {
        rc = from_response_format(v, &gbnf, err);
    } else if (strcmp(which, "guided_json") == 0) {
        rc = from_schema(v, "guided_json", &gbnf, err);
    } else if (strcmp(which, "guided_choice") == 0) {
        rc = from_choice(v, &gbnf, err);
    } else if (!json_is_string(v)) {
        return dsc_api_wrong_type(err, which, "a string");
    } else if (strcmp(which, "guided_regex") == 0) {
        char msg[200] = "";
        dsi_status_t st = dsg_from_regex(json_string_value(v), json_string_length(v), "", &gbnf,
                                         msg, sizeof(msg));
        rc = st == DSI_OK ? 0 : refuse(err, st, "guided_regex", msg);
    } else { /* guided_grammar: this server's grammar format, as it is */
        gbnf = strdup(json_string_value(v));
        if (gbnf == NULL)
            rc = refuse(err, DSI_ERR_NOMEM, which, "");
    }
    if (rc != 0 || gbnf == NULL) {
        free(gbnf);
        return rc;
    }
    /* Compiled once here so that every error is a 400 now; the node compiles the same text. */
    dsg_grammar_t *g = NULL;
    char msg[320] = "";
    dsi_status_t st = dsg_compile(gbnf, strlen(gbnf), &g, msg, sizeof(msg));
    dsg_grammar_free(g);
    if (st != DSI_OK) {
        free(gbnf);
        return refuse(err, st, which, msg);
    }
    *grammar = gbnf;
    r->grammar = gbnf;
    return 0;
}
