/* dsc_chat_json.c - OpenAI-style messages and tool calls given as JSON (see dsc_chat.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "dsc_chat.h"
#include "dsi_log.h"

/* `arguments` as text: a string as is, anything else serialized compactly (malloc'ed). */
static char *arguments_text(const json_t *a)
{
    if (json_is_string(a))
        return strdup(json_string_value(a));
    return json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* Validated pieces of one tool call; strings borrowed from the JSON except args (malloc'ed). */
typedef struct {
    const char *type, *name;
    char *args;
} call_t;

static dsi_status_t parse_calls(const json_t *arr, const char *what, call_t **out, size_t *n)
{
    size_t i, count = json_array_size(arr);
    const json_t *c;
    *out = NULL;
    *n = 0;
    if (!json_is_array(arr)) {
        DSI_ERROR("chat: %s: tool_calls must be an array", what);
        return DSI_ERR_BAD_REQUEST;
    }
    call_t *calls = calloc(count ? count : 1, sizeof(*calls));
    if (calls == NULL)
        return DSI_ERR_NOMEM;
    json_array_foreach(arr, i, c)
    {
        const json_t *fn = json_object_get(c, "function"), *type = json_object_get(c, "type");
        const json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_object(fn) || !json_is_string(name) || args == NULL ||
            (type != NULL && !json_is_string(type))) {
            DSI_ERROR("chat: %s: tool_calls[%zu] needs {\"type\", \"function\": {\"name\", "
                      "\"arguments\"}}",
                      what, i);
            for (size_t k = 0; k < i; k++)
                free(calls[k].args);
            free(calls);
            return DSI_ERR_BAD_REQUEST;
        }
        calls[i].type = type ? json_string_value(type) : "function";
        calls[i].name = json_string_value(name);
        calls[i].args = arguments_text(args);
    }
    *out = calls;
    *n = count;
    return DSI_OK;
}

dsi_status_t dsc_chat_tool_calls_parse(const char *json, size_t len, dsc_chat_tool_call_t **calls,
                                       size_t *n)
{
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    call_t *parsed;
    size_t count, bytes = 0;
    if (root == NULL) {
        DSI_ERROR("chat: tool_calls: %s", err.text);
        return DSI_ERR_BAD_REQUEST;
    }
    dsi_status_t st = parse_calls(root, "tool_calls", &parsed, &count);
    if (st != DSI_OK) {
        json_decref(root);
        return st;
    }
    /* One block: the array, then the strings. */
    for (size_t i = 0; i < count; i++)
        bytes += strlen(parsed[i].type) + strlen(parsed[i].name) +
                 (parsed[i].args ? strlen(parsed[i].args) : 0) + 3;
    dsc_chat_tool_call_t *block = malloc(count * sizeof(*block) + bytes + 1);
    char *p = block ? (char *)(block + count) : NULL;
    for (size_t i = 0; i < count && block != NULL; i++) {
        const char *src[3] = {parsed[i].type, parsed[i].name, parsed[i].args ? parsed[i].args : ""};
        const char **dst[3] = {&block[i].type, &block[i].name, &block[i].arguments};
        for (int k = 0; k < 3; k++) {
            size_t l = strlen(src[k]) + 1;
            memcpy(p, src[k], l);
            *dst[k] = p;
            p += l;
        }
    }
    for (size_t i = 0; i < count; i++)
        free(parsed[i].args);
    free(parsed);
    json_decref(root);
    if (block == NULL)
        return DSI_ERR_NOMEM;
    *calls = block;
    *n = count;
    return DSI_OK;
}

/* Content: a string, null/absent (NULL), or text parts concatenated (malloc'ed into *owned). */
static dsi_status_t parse_content(const json_t *c, size_t i, const char **text, size_t *len,
                                  char **owned)
{
    size_t k, total = 0;
    const json_t *part;
    *owned = NULL;
    if (c == NULL || json_is_null(c)) {
        *text = NULL;
        *len = 0;
        return DSI_OK;
    }
    if (json_is_string(c)) {
        *text = json_string_value(c);
        *len = json_string_length(c);
        return DSI_OK;
    }
    json_array_foreach(c, k, part)
    {
        const json_t *t = json_object_get(part, "text");
        const char *type = json_string_value(json_object_get(part, "type"));
        if (type == NULL || strcmp(type, "text") != 0 || !json_is_string(t)) {
            DSI_ERROR("chat: message %zu: content part %zu is not {\"type\": \"text\", \"text\"}",
                      i, k);
            return DSI_ERR_BAD_REQUEST;
        }
        total += json_string_length(t);
    }
    if (!json_is_array(c)) {
        DSI_ERROR("chat: message %zu: content must be a string, null or an array of parts", i);
        return DSI_ERR_BAD_REQUEST;
    }
    if ((*owned = malloc(total + 1)) == NULL)
        return DSI_ERR_NOMEM;
    total = 0;
    json_array_foreach(c, k, part)
    {
        const json_t *t = json_object_get(part, "text");
        memcpy(*owned + total, json_string_value(t), json_string_length(t));
        total += json_string_length(t);
    }
    (*owned)[total] = '\0';
    *text = *owned;
    *len = total;
    return DSI_OK;
}

/* Everything a JSON conversation owns besides the JSON itself. */
typedef struct {
    dsc_chat_message_t *msgs;
    char **owned_content;         /* [n] */
    call_t **calls;               /* [n] */
    dsc_chat_tool_call_t **views; /* [n] */
    size_t *n_calls;              /* [n] */
    size_t n;
} conv_t;

static void conv_free(conv_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->owned_content)
            free(c->owned_content[i]);
        for (size_t k = 0; c->calls && c->n_calls && k < c->n_calls[i]; k++)
            free(c->calls[i][k].args);
        if (c->calls)
            free(c->calls[i]);
        if (c->views)
            free(c->views[i]);
    }
    free(c->msgs);
    free(c->owned_content);
    free(c->calls);
    free(c->views);
    free(c->n_calls);
}

static dsi_status_t parse_message(const json_t *m, size_t i, conv_t *c)
{
    const json_t *role = json_object_get(m, "role"), *tc = json_object_get(m, "tool_calls");
    char what[64];
    dsi_status_t st;
    if (!json_is_object(m) || !json_is_string(role)) {
        DSI_ERROR("chat: message %zu: needs a string 'role'", i);
        return DSI_ERR_BAD_REQUEST;
    }
    dsc_chat_message_t *msg = &c->msgs[i];
    msg->role = dsc_chat_role_parse(json_string_value(role));
    st = parse_content(json_object_get(m, "content"), i, &msg->content, &msg->content_len,
                       &c->owned_content[i]);
    if (st != DSI_OK || tc == NULL || json_is_null(tc))
        return st;
    snprintf(what, sizeof(what), "message %zu", i);
    if ((st = parse_calls(tc, what, &c->calls[i], &c->n_calls[i])) != DSI_OK)
        return st;
    if ((c->views[i] = calloc(c->n_calls[i] + 1, sizeof(dsc_chat_tool_call_t))) == NULL)
        return DSI_ERR_NOMEM;
    for (size_t k = 0; k < c->n_calls[i]; k++)
        c->views[i][k] =
            (dsc_chat_tool_call_t){c->calls[i][k].type, c->calls[i][k].name, c->calls[i][k].args};
    msg->tool_calls = c->views[i];
    msg->n_tool_calls = c->n_calls[i];
    return DSI_OK;
}

dsi_status_t dsc_chat_render_json(const dsc_chat_template_t *tpl, const char *json, size_t len,
                                  int add_generation_prompt, char **out, size_t *out_len)
{
    return dsc_chat_render_json_opts(tpl, json, len, add_generation_prompt, NULL, out, out_len);
}

dsi_status_t dsc_chat_render_json_opts(const dsc_chat_template_t *tpl, const char *json, size_t len,
                                       int add_generation_prompt, const dsc_chat_opts_t *opts,
                                       char **out, size_t *out_len)
{
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &err);
    conv_t c = {0};
    const json_t *m;
    size_t i;
    dsi_status_t st = DSI_OK;
    if (!json_is_array(root)) {
        DSI_ERROR("chat: messages must be a JSON array%s%s", root ? "" : ": ",
                  root ? "" : err.text);
        json_decref(root);
        return DSI_ERR_BAD_REQUEST;
    }
    c.n = json_array_size(root);
    c.msgs = calloc(c.n + 1, sizeof(*c.msgs));
    c.owned_content = calloc(c.n + 1, sizeof(char *));
    c.calls = calloc(c.n + 1, sizeof(call_t *));
    c.views = calloc(c.n + 1, sizeof(dsc_chat_tool_call_t *));
    c.n_calls = calloc(c.n + 1, sizeof(size_t));
    if (!c.msgs || !c.owned_content || !c.calls || !c.views || !c.n_calls)
        st = DSI_ERR_NOMEM;
    json_array_foreach(root, i, m)
    {
        if (st == DSI_OK)
            st = parse_message(m, i, &c);
    }
    if (st == DSI_OK)
        st = dsc_chat_render_opts(tpl, c.msgs, c.n, add_generation_prompt, opts, out, out_len);
    conv_free(&c);
    json_decref(root);
    return st;
}
