/*
 * dsc_tool_grammar.c - the calls block of a forced tool call as a grammar (see
 * dsc_tool_grammar.h). Each tool's parameters become rules prefixed "t<i>_" (its root is
 * "t<i>_root"); the grammar's own rules are "root", "call" and "fn".
 */
#include "dsc_tool_grammar.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsc_api_impl.h"
#include "dsc_toolcall.h"
#include "dsg.h"

/* One tool's alternative of `fn` (rule "t<i>") and its parameter rules. */
static dsi_status_t put_tool(dsc_api_jbuf_t *b, dsc_chat_style_t style, int i, const char *name,
                             const json_t *params, char *err, size_t errlen)
{
    char prefix[32], *rules = NULL, line[64];
    dsi_status_t st;
    snprintf(prefix, sizeof(prefix), "t%d_", i);
    if (params == NULL || json_is_null(params)) {
        st = dsg_json_object_gbnf(prefix, &rules);
    } else {
        char *schema = json_dumps(params, JSON_COMPACT);
        if (schema == NULL)
            return DSI_ERR_NOMEM;
        st = dsg_from_json_schema(schema, strlen(schema), prefix, &rules, err, errlen);
        free(schema);
    }
    if (st != DSI_OK)
        return st;
    /* V3: NAME\n```json\nARGS; V3.1: NAME<｜tool▁sep｜>ARGS */
    char *head = malloc(strlen(name) + 32), *literal = NULL;
    if (head == NULL) {
        free(rules);
        return DSI_ERR_NOMEM;
    }
    sprintf(head, "%s%s", name, style == DSC_CHAT_V31 ? DSC_TOOL_SEP : "\n```json\n");
    st = dsg_literal(head, strlen(head), &literal);
    free(head);
    if (st == DSI_OK) {
        snprintf(line, sizeof(line), "t%d ::= ", i);
        dsc_api_jbuf_puts(b, line);
        dsc_api_jbuf_puts(b, literal);
        snprintf(line, sizeof(line), " t%d_root\n", i);
        dsc_api_jbuf_puts(b, line);
        dsc_api_jbuf_puts(b, rules);
        dsc_api_jbuf_puts(b, "\n");
    }
    free(literal);
    free(rules);
    return st;
}

dsi_status_t dsc_tool_grammar(dsc_chat_style_t style, const char *tools_json, size_t len,
                              const char *only, int parallel, char **gbnf, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *tools = json_loadb(tools_json, len, 0, &jerr);
    dsc_api_jbuf_t b = {0}, fn = {0};
    dsi_status_t st = DSI_OK;
    size_t i;
    json_t *t;
    int n = 0;
    if (!json_is_array(tools)) {
        snprintf(err, errlen, "tools: not a JSON array");
        json_decref(tools);
        return DSI_ERR_BAD_REQUEST;
    }
    const int v31 = style == DSC_CHAT_V31;
    /* root: the block; call: one call; fn: the allowed functions */
    dsc_api_jbuf_puts(&b, "root ::= \"" DSC_TOOL_CALLS_BEGIN "\" call ");
    dsc_api_jbuf_puts(&b, parallel ? (v31 ? "call* " : "(\"\\n\" call)* ") : "");
    dsc_api_jbuf_puts(&b, "\"" DSC_TOOL_CALLS_END "\"\n");
    dsc_api_jbuf_puts(&b, v31 ? "call ::= \"" DSC_TOOL_CALL_BEGIN "\" fn \"" DSC_TOOL_CALL_END
                                "\"\n"
                              : "call ::= \"" DSC_TOOL_CALL_BEGIN "function" DSC_TOOL_SEP
                                "\" fn \"\\n```" DSC_TOOL_CALL_END "\"\n");
    dsc_api_jbuf_puts(&fn, "fn ::=");
    json_array_foreach(tools, i, t)
    {
        const json_t *f = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(f, "name"));
        if (name == NULL || (only != NULL && strcmp(name, only) != 0))
            continue;
        char alt[32];
        snprintf(alt, sizeof(alt), "%s t%zu", n ? " |" : "", i);
        dsc_api_jbuf_puts(&fn, alt);
        n++;
        if ((st = put_tool(&b, style, (int)i, name, json_object_get(f, "parameters"), err,
                           errlen)) != DSI_OK)
            goto out;
    }
    if (n == 0) {
        snprintf(err, errlen, "no tool named '%.100s'", only ? only : "");
        st = DSI_ERR_NOT_FOUND;
        goto out;
    }
    dsc_api_jbuf_puts(&fn, "\n");
    dsc_api_jbuf_puts(&b, fn.data);
    if (b.failed || fn.failed) {
        st = DSI_ERR_NOMEM;
        goto out;
    }
    if (b.len > DSG_MAX_GRAMMAR_BYTES) {
        snprintf(err, errlen, "the tools' grammar has %zu bytes (at most %u)", b.len,
                 DSG_MAX_GRAMMAR_BYTES);
        st = DSI_ERR_TOO_LARGE;
        goto out;
    }
    *gbnf = dsc_api_jbuf_take(&b, NULL);
out:
    dsc_api_jbuf_free(&b);
    dsc_api_jbuf_free(&fn);
    json_decref(tools);
    return st;
}
