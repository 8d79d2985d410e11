/*
 * dsc_backend_tools.c - tool_choice "required" or a named function: the backend knows the
 * model's chat template, so it picks the call format of the grammar (dsc_tool_grammar.h) that
 * goes to the cluster as SUBMIT.grammar (after a thinking block where the answer opens with one:
 * dsc_backend_seq.c). The API layer has checked the tools' schemas already.
 */
#include "dsc_backend_impl.h"

#include <stdio.h>
#include <string.h>

#include "dsc_tool_grammar.h"
#include "dsi_log.h"

dsi_status_t dsc_backend_tool_grammar(const dsc_backend_t *b, const dsc_api_request_t *req,
                                      char **gbnf, char *message, size_t cap)
{
    char err[256] = "";
    if (req->tools == NULL)
        return DSI_ERR_BAD_REQUEST; /* the API refuses it before */
    dsi_status_t st = dsc_tool_grammar(
        dsc_chat_template_style(b->tpl), req->tools, strlen(req->tools),
        req->tool_choice == DSC_API_TOOL_CHOICE_FUNCTION ? req->tool_function : NULL,
        req->parallel_tool_calls, gbnf, err, sizeof(err));
    if (st != DSI_OK) {
        snprintf(message, cap, "Invalid value for 'tools': %s", err);
        DSI_WARN("backend: the tool-call grammar failed: %s (%s)", err, dsi_status_name(st));
        return st == DSI_ERR_NOMEM ? st : DSI_ERR_BAD_REQUEST;
    }
    return DSI_OK;
}
