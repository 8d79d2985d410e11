/*
 * dsc_api.c - limits, OpenAI-shaped errors and the mapping of backend statuses to HTTP.
 */
#include "dsc_api_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void dsc_api_limits_default(dsc_api_limits_t *limits)
{
    limits->max_tokens_limit = 32768;
    limits->default_max_tokens = 4096;
    limits->max_messages = 4096;
    limits->max_prompts = DSC_API_MAX_PROMPTS;
}

/* Replaces every byte that is not part of a valid UTF-8 character with '?'. */
static void utf8_sanitize(char *s)
{
    size_t len = strlen(s), off = 0, bad;
    while (!dsc_api_utf8_valid(s + off, len - off, &bad)) {
        s[off + bad] = '?';
        off += bad + 1;
    }
}

int dsc_api_error_set(dsc_api_error_t *err, int http_status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
{
    err->http_status = http_status;
    err->type = type;
    err->code = code;
    snprintf(err->param, sizeof(err->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    /* The message goes into a JSON body, which must be UTF-8; it may quote the request at a byte
     * boundary (jansson's "near '...'" stops inside a character) or be cut by the buffer. */
    utf8_sanitize(err->message);
    return http_status;
}

void dsc_api_error_from_status(dsc_api_error_t *err, dsi_status_t status, const char *message)
{
    const char *text = message && message[0] ? message : dsi_status_message(status);
    switch (status) {
    case DSI_ERR_CAPACITY:
        dsc_api_error_set(err, 429, "rate_limit_error", "queue_full", NULL, "%s", text);
        return;
    case DSI_ERR_TOO_LARGE:
        dsc_api_error_set(err, 400, "invalid_request_error", "context_length_exceeded", NULL, "%s",
                          text);
        return;
    case DSI_ERR_NOT_FOUND:
        dsc_api_error_set(err, 404, "invalid_request_error", "model_not_found", "model", "%s",
                          text);
        return;
    case DSI_ERR_BAD_REQUEST:
    case DSI_ERR_INVALID_ARG:
    case DSI_ERR_BAD_UTF8:
    case DSI_ERR_UNSUPPORTED:
        dsc_api_error_set(err, 400, "invalid_request_error", NULL, NULL, "%s", text);
        return;
    case DSI_ERR_AUTH:
        dsc_api_error_set(err, 401, "invalid_request_error", "invalid_api_key", NULL, "%s", text);
        return;
    default:
        break;
    }
    if (status == DSI_ERR_CANCELLED || status == DSI_ERR_NOMEM || DSI_IS_PEER_ERROR(status))
        dsc_api_error_set(err, 503, "server_error", "service_unavailable", NULL, "%s", text);
    else
        dsc_api_error_set(err, 500, "server_error", NULL, NULL, "%s", text);
}

void dsc_api_error_write(dsc_api_jbuf_t *b, const dsc_api_error_t *err)
{
    dsc_api_jbuf_puts(b, "{\"error\":{\"message\":");
    dsc_api_jbuf_string(b, err->message, strlen(err->message));
    dsc_api_jbuf_puts(b, ",\"type\":");
    dsc_api_jbuf_string(b, err->type ? err->type : "invalid_request_error",
                        strlen(err->type ? err->type : "invalid_request_error"));
    dsc_api_jbuf_puts(b, ",\"param\":");
    dsc_api_jbuf_string(b, err->param[0] ? err->param : NULL, strlen(err->param));
    dsc_api_jbuf_puts(b, ",\"code\":");
    dsc_api_jbuf_string(b, err->code, err->code ? strlen(err->code) : 0);
    dsc_api_jbuf_puts(b, "}}");
}

char *dsc_api_error_json(const dsc_api_error_t *err, size_t *len_out)
{
    dsc_api_jbuf_t b = {0};
    dsc_api_error_write(&b, err);
    return dsc_api_jbuf_take(&b, len_out);
}

const char *dsc_api_finish_name(dsc_api_finish_t finish)
{
    return finish == DSC_API_FINISH_LENGTH       ? "length"
           : finish == DSC_API_FINISH_TOOL_CALLS ? "tool_calls"
                                                 : "stop";
}

void dsc_api_error_name_param(dsc_api_error_t *err, dsi_status_t status, const char *message)
{
    const char *q = strncmp(message, "Invalid value for '", 19) == 0 ? message + 19 : NULL;
    if (status == DSI_ERR_BAD_REQUEST && q != NULL && strchr(q, '\'') != NULL) {
        snprintf(err->param, sizeof(err->param), "%.*s", (int)(strchr(q, '\'') - q), q);
        err->code = "invalid_value";
    }
}
