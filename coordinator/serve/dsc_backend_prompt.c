/*
 * dsc_backend_prompt.c - from an API request to the prompt's token ids: chat requests through the
 * model's chat template (which writes the BOS token itself), completions as raw text with BOS
 * prepended (as Hugging Face's encode with add_special_tokens does for DeepSeek, whose
 * tokenizer_config sets add_bos_token), unless the text already starts with it; completions
 * given as token ids as they are (vLLM and OpenAI add nothing to them).
 */
#include "dsc_backend_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsi_log.h"

static dsc_chat_role_t chat_role(dsc_api_role_t role)
{
    switch (role) {
    case DSC_API_ROLE_SYSTEM:
        return DSC_CHAT_ROLE_SYSTEM;
    case DSC_API_ROLE_USER:
        return DSC_CHAT_ROLE_USER;
    case DSC_API_ROLE_ASSISTANT:
        return DSC_CHAT_ROLE_ASSISTANT;
    case DSC_API_ROLE_TOOL:
        return DSC_CHAT_ROLE_TOOL;
    }
    return DSC_CHAT_ROLE_OTHER;
}

/* Render the conversation; *text malloc'ed. */
static dsi_status_t render_chat(const dsc_backend_t *b, const dsc_api_request_t *req, char **text,
                                size_t *len, char *message, size_t cap)
{
    size_t n = req->n_messages;
    dsc_chat_message_t *msgs = calloc(n, sizeof(*msgs));
    dsc_chat_tool_call_t **calls = calloc(n, sizeof(*calls)); /* each one malloc'ed block */
    dsi_status_t st = DSI_ERR_NOMEM;
    if (msgs == NULL || calls == NULL) {
        DSI_ERROR("backend: out of memory for %zu chat messages", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const dsc_api_message_t *m = &req->messages[i];
        msgs[i].role = chat_role(m->role);
        msgs[i].content = m->content;
        msgs[i].content_len = m->content_len;
        if (m->tool_calls != NULL && m->role == DSC_API_ROLE_ASSISTANT) {
            st = dsc_chat_tool_calls_parse(m->tool_calls, strlen(m->tool_calls), &calls[i],
                                           &msgs[i].n_tool_calls);
            if (st != DSI_OK) {
                snprintf(message, cap, "messages[%zu].tool_calls: not an array of function calls",
                         i);
                goto out;
            }
            msgs[i].tool_calls = calls[i];
            /* The API gives "" for a null content; the templates treat "no content" apart. */
            if (m->content_len == 0)
                msgs[i].content = NULL;
        }
    }
    dsc_chat_opts_t opts = {req->thinking, req->tools, req->tools ? strlen(req->tools) : 0,
                            req->continue_final};
    st = dsc_chat_render_opts(b->tpl, msgs, n, !req->no_generation_prompt, &opts, text, len);
    if (st == DSI_ERR_BAD_REQUEST)
        snprintf(message, cap,
                 "messages: the chat template cannot render this conversation (a system, user or "
                 "tool message without content, a tool call without name or arguments, or a "
                 "tool without function.name, function.description or function.parameters)");
out:
    if (calls != NULL) {
        for (size_t i = 0; i < n; i++)
            free(calls[i]);
    }
    free(calls);
    free(msgs);
    return st;
}

/* The client's token ids, as they are (no BOS), each within the vocabulary. */
static dsi_status_t given_ids(const dsc_backend_t *b, const dsc_api_request_t *req, int32_t **ids,
                              size_t *n_ids, char *message, size_t cap)
{
    char name[32] = "prompt";
    if (req->prompt_index >= 0)
        snprintf(name, sizeof(name), "prompt[%d]", req->prompt_index);
    for (size_t i = 0; i < req->n_prompt_ids; i++) {
        int32_t id = req->prompt_ids[i];
        if (id < 0 || id >= b->cfg.vocab_size) {
            snprintf(message, cap,
                     "Invalid value for '%s[%zu]': token %d is outside the model's vocabulary "
                     "[0, %d).",
                     name, i, id, b->cfg.vocab_size);
            return DSI_ERR_BAD_REQUEST;
        }
    }
    int32_t *out = malloc((req->n_prompt_ids ? req->n_prompt_ids : 1) * sizeof(int32_t));
    if (out == NULL) {
        DSI_ERROR("backend: out of memory for a prompt of %zu tokens", req->n_prompt_ids);
        return DSI_ERR_NOMEM;
    }
    memcpy(out, req->prompt_ids, req->n_prompt_ids * sizeof(int32_t));
    *ids = out;
    *n_ids = req->n_prompt_ids;
    return DSI_OK;
}

dsi_status_t dsc_backend_prompt_ids(const dsc_backend_t *b, const dsc_api_request_t *req,
                                    int32_t **ids, size_t *n_ids, char *message, size_t cap)
{
    if (req->kind == DSC_API_KIND_COMPLETION && req->prompt_ids != NULL)
        return given_ids(b, req, ids, n_ids, message, cap);
    char *rendered = NULL;
    const char *text;
    size_t len;
    dsi_status_t st;
    if (req->kind == DSC_API_KIND_CHAT) {
        if ((st = render_chat(b, req, &rendered, &len, message, cap)) != DSI_OK)
            return st;
        text = rendered;
    } else {
        text = req->prompt;
        len = req->prompt_len;
    }
    int32_t *out = NULL;
    size_t n = 0;
    st = dsc_tokenizer_encode(b->tok, text, len, 0, &out, &n);
    free(rendered);
    if (st != DSI_OK) {
        if (req->kind == DSC_API_KIND_COMPLETION && req->prompt_index >= 0)
            snprintf(message, cap, "prompt[%d]: cannot be tokenized (%s)", req->prompt_index,
                     dsi_status_message(st));
        else
            snprintf(message, cap, "%s: cannot be tokenized (%s)",
                     req->kind == DSC_API_KIND_CHAT ? "messages" : "prompt",
                     dsi_status_message(st));
        return st == DSI_ERR_NOMEM ? st : DSI_ERR_BAD_REQUEST;
    }
    int32_t bos = dsc_tokenizer_bos_id(b->tok);
    if (req->kind == DSC_API_KIND_COMPLETION && bos >= 0 && (n == 0 || out[0] != bos)) {
        int32_t *p = realloc(out, (n + 1) * sizeof(int32_t));
        if (p == NULL) {
            free(out);
            DSI_ERROR("backend: out of memory for a prompt of %zu tokens", n + 1);
            return DSI_ERR_NOMEM;
        }
        memmove(p + 1, p, n * sizeof(int32_t));
        p[0] = bos;
        out = p;
        n++;
    }
    *ids = out;
    *n_ids = n;
    return DSI_OK;
}
