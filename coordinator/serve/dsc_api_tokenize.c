/*
 * dsc_api_tokenize.c - the small endpoints beside the generations, in vLLM's shapes:
 * POST /tokenize ({model, prompt} or {model, messages, add_generation_prompt} -> {count,
 * max_model_len, tokens}; a prompt of token ids comes back as it is, checked), POST /detokenize
 * ({model, tokens} -> {prompt}) and GET /v1/models/{id} (one model object, or 404 model_not_found).
 * docs/API.md.
 */
#include "dsc_api_impl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID "invalid_request_error"

static void respond(dsc_api_server_t *s, dsc_http_req_t *req, const char *endpoint,
                    dsc_api_jbuf_t *b)
{
    if (b->failed) {
        dsc_api_error_t err;
        dsc_api_error_set(&err, 503, "server_error", NULL, NULL, "out of memory");
        dsc_api_respond_error(s, req, endpoint, &err);
    } else {
        dsc_http_respond(req, 200, "application/json", NULL, b->data, b->len);
        dsc_api_count_request(s, endpoint, 200);
    }
    dsc_api_jbuf_free(b);
}

/* 0 when the model is served; else answers 404 and returns 1. */
static int check_model(dsc_api_server_t *s, dsc_http_req_t *req, const char *endpoint,
                       const char *model)
{
    if (dsc_api_model_known(s, model))
        return 0;
    dsc_api_error_t err;
    dsc_api_error_set(&err, 404, INVALID, "model_not_found", "model",
                      "The model '%.128s' does not exist (GET /v1/models lists them).", model);
    dsc_api_respond_error(s, req, endpoint, &err);
    return 1;
}

/* 501 when the backend lacks the op. */
static int not_implemented(dsc_api_server_t *s, dsc_http_req_t *req, const char *endpoint)
{
    dsc_api_error_t err;
    dsc_api_error_set(&err, 501, INVALID, "not_implemented", NULL,
                      "%s is not available with this backend.", endpoint);
    dsc_api_respond_error(s, req, endpoint, &err);
    return 1;
}

void dsc_api_tokenize(dsc_api_server_t *s, dsc_http_req_t *req)
{
    static const char *const endpoint = "/tokenize";
    dsc_api_error_t err;
    size_t len;
    const char *body = dsc_http_req_body(req, &len);
    if (s->backend.ops->tokenize == NULL) {
        not_implemented(s, req, endpoint);
        return;
    }
    /* Which shape: the chat one has "messages" (add_generation_prompt, default true, is read by
     * the request parser as in a generation). */
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    int chat = 0;
    if (json_is_object(root)) {
        chat = json_object_get(root, "messages") != NULL;
        if (chat && json_object_get(root, "prompt") != NULL) {
            json_decref(root);
            dsc_api_error_set(&err, 400, INVALID, "invalid_value", "prompt",
                              "Give either 'prompt' or 'messages', not both.");
            dsc_api_respond_error(s, req, endpoint, &err);
            return;
        }
    }
    json_decref(root); /* dsc_api_request_parse reports what is wrong with the JSON */
    dsc_api_parsed_t *parsed;
    dsi_status_t pst = dsc_api_request_parse(chat ? DSC_API_KIND_CHAT : DSC_API_KIND_COMPLETION,
                                             body, len, &s->limits, &parsed, &err);
    if (pst != DSI_OK) {
        dsc_api_respond_error(s, req, endpoint, &err);
        return;
    }
    const dsc_api_request_t *r = dsc_api_parsed_request(parsed);
    if (!chat && r->n_prompts > 1) {
        dsc_api_error_set(&err, 400, INVALID, "invalid_value", "prompt",
                          "/tokenize takes one prompt; 'prompt' is a batch of %d (tokenize "
                          "them one by one).",
                          r->n_prompts);
        dsc_api_respond_error(s, req, endpoint, &err);
        dsc_api_parsed_destroy(parsed);
        return;
    }
    if (check_model(s, req, endpoint, r->model)) {
        dsc_api_parsed_destroy(parsed);
        return;
    }
    char message[sizeof(err.message)] = "";
    int32_t *ids = NULL;
    size_t n = 0;
    dsi_status_t st =
        s->backend.ops->tokenize(s->backend.self, r, &ids, &n, message, sizeof(message));
    dsc_api_parsed_destroy(parsed);
    if (st != DSI_OK) {
        dsc_api_error_from_status(&err, st, message);
        dsc_api_error_name_param(&err, st, message);
        dsc_api_respond_error(s, req, endpoint, &err);
        return;
    }
    int64_t max_len =
        s->backend.ops->max_model_len ? s->backend.ops->max_model_len(s->backend.self) : 0;
    dsc_api_jbuf_t b = {0};
    dsc_api_jbuf_printf(&b, "{\"count\":%zu,\"max_model_len\":%lld,\"tokens\":[", n,
                        (long long)max_len);
    for (size_t i = 0; i < n; i++)
        dsc_api_jbuf_printf(&b, i ? ",%d" : "%d", ids[i]);
    dsc_api_jbuf_puts(&b, "]}");
    free(ids);
    respond(s, req, endpoint, &b);
}

/* {model, tokens} checked; *ids malloc'ed. Returns 0 or the HTTP status with err set. */
static int detok_parse(json_t *root, const char **model, int32_t **ids, size_t *n,
                       dsc_api_error_t *err)
{
    if (!json_is_object(root))
        return dsc_api_error_set(err, 400, INVALID, NULL, NULL,
                                 "The request body must be a JSON object.");
    json_t *m = json_object_get(root, "model");
    if (m == NULL || json_is_null(m))
        return dsc_api_error_set(err, 400, INVALID, "missing_required_parameter", "model",
                                 "Missing required parameter: 'model'.");
    if (!json_is_string(m) || json_string_length(m) == 0)
        return dsc_api_wrong_type(err, "model", "a non-empty string");
    *model = json_string_value(m);
    json_t *t = json_object_get(root, "tokens");
    if (t == NULL || json_is_null(t))
        return dsc_api_error_set(err, 400, INVALID, "missing_required_parameter", "tokens",
                                 "Missing required parameter: 'tokens'.");
    if (!json_is_array(t))
        return dsc_api_wrong_type(err, "tokens", "an array of token ids");
    *n = json_array_size(t);
    *ids = malloc((*n > 0 ? *n : 1) * sizeof(int32_t));
    if (*ids == NULL)
        return dsc_api_error_set(err, 503, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        json_t *v = json_array_get(t, i);
        char param[40];
        snprintf(param, sizeof(param), "tokens[%zu]", i);
        if (!json_is_integer(v))
            return dsc_api_wrong_type(err, param, "an integer token id");
        json_int_t x = json_integer_value(v);
        if (x < 0 || x > INT32_MAX)
            return dsc_api_error_set(err, 400, INVALID, "invalid_value", param,
                                     "Invalid value for '%s': %lld is not a token id.", param,
                                     (long long)x);
        (*ids)[i] = (int32_t)x;
    }
    return 0;
}

void dsc_api_detokenize(dsc_api_server_t *s, dsc_http_req_t *req)
{
    static const char *const endpoint = "/detokenize";
    dsc_api_error_t err;
    size_t len;
    const char *body = dsc_http_req_body(req, &len);
    if (s->backend.ops->detokenize == NULL) {
        not_implemented(s, req, endpoint);
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (root == NULL) {
        dsc_api_error_set(&err, 400, INVALID, NULL, NULL,
                          "The request body is not valid JSON: %s (line %d, column %d).", jerr.text,
                          jerr.line, jerr.column);
        dsc_api_respond_error(s, req, endpoint, &err);
        return;
    }
    const char *model = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (detok_parse(root, &model, &ids, &n, &err) != 0) {
        dsc_api_respond_error(s, req, endpoint, &err);
    } else if (!check_model(s, req, endpoint, model)) {
        char message[sizeof(err.message)] = "";
        char *text = NULL;
        size_t text_len = 0;
        dsi_status_t st = s->backend.ops->detokenize(s->backend.self, ids, n, &text, &text_len,
                                                     message, sizeof(message));
        if (st != DSI_OK) {
            dsc_api_error_from_status(&err, st, message);
            if (st == DSI_ERR_BAD_REQUEST)
                snprintf(err.param, sizeof(err.param), "tokens");
            dsc_api_respond_error(s, req, endpoint, &err);
        } else {
            dsc_api_jbuf_t b = {0};
            dsc_api_jbuf_puts(&b, "{\"prompt\":");
            dsc_api_jbuf_string(&b, text, text_len);
            dsc_api_jbuf_puts(&b, "}");
            respond(s, req, endpoint, &b);
        }
        free(text);
    }
    free(ids);
    json_decref(root);
}

void dsc_api_model_get(dsc_api_server_t *s, dsc_http_req_t *req)
{
    static const char *const endpoint = "/v1/models/*";
    const char *id = dsc_http_req_path(req) + strlen("/v1/models/");
    size_t bad;
    if (!dsc_api_utf8_valid(id, strlen(id), &bad))
        id = "(not UTF-8)"; /* no model has that id: 404 without echoing the bytes */
    if (check_model(s, req, endpoint, id))
        return;
    dsc_api_jbuf_t b = {0};
    dsc_api_jbuf_puts(&b, "{\"id\":");
    dsc_api_jbuf_string(&b, id, strlen(id));
    dsc_api_jbuf_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"dsinfer\"",
                        (long long)s->started);
    if (s->backend.ops->max_model_len != NULL)
        dsc_api_jbuf_printf(&b, ",\"max_model_len\":%lld",
                            (long long)s->backend.ops->max_model_len(s->backend.self));
    dsc_api_jbuf_puts(&b, "}");
    respond(s, req, endpoint, &b);
}
