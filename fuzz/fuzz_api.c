/*
 * fuzz_api - OpenAI request validation (coordinator/serve/dsc_api_parse.c,
 * dsc_api_request_parse), for both endpoints.
 *
 * Input: a request body. It is parsed as a chat request and as a completion request. A refused
 * body must come with a 4xx/5xx error whose JSON rendering is valid; an accepted one must keep
 * the promises of dsc_api.h (valid UTF-8 without NUL in every string, ranges, at most 4 non-empty
 * stop strings, compact JSON for tools and tool_calls), which the backend relies on.
 */
#include <jansson.h>
#include <string.h>

#include "dsc_api.h"
#include "dsc_chat.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    return 0;
}

static void check_text(const char *s, size_t len)
{
    size_t bad;
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(strlen(s) == len);
    FUZZ_CHECK(dsc_api_utf8_valid(s, len, &bad));
}

static void check_json(const char *s)
{
    if (s == NULL)
        return;
    check_text(s, strlen(s));
    json_error_t jerr;
    json_t *v = json_loads(s, 0, &jerr);
    FUZZ_CHECK(v != NULL);
    json_decref(v);
}

static void check_request(const dsc_api_request_t *r, const dsc_api_limits_t *lim)
{
    FUZZ_CHECK(r->model != NULL);
    check_text(r->model, strlen(r->model));
    FUZZ_CHECK(r->max_tokens >= 1 && r->max_tokens <= lim->max_tokens_limit);
    FUZZ_CHECK(r->temperature >= 0 && r->temperature <= 2);
    FUZZ_CHECK(r->top_p > 0 && r->top_p <= 1);
    FUZZ_CHECK(r->top_k >= 0);
    FUZZ_CHECK(r->n_stop >= 0 && r->n_stop <= DSC_API_MAX_STOP);
    for (int i = 0; i < r->n_stop; i++) {
        FUZZ_CHECK(r->stop[i] != NULL && r->stop[i][0] != '\0');
        check_text(r->stop[i], strlen(r->stop[i]));
    }
    if (r->kind == DSC_API_KIND_COMPLETION) {
        FUZZ_CHECK(r->n_prompts >= 1 && (size_t)r->n_prompts <= lim->max_prompts);
        FUZZ_CHECK(r->prompt == r->prompts[0].text && r->prompt_ids == r->prompts[0].ids);
        for (int i = 0; i < r->n_prompts; i++) {
            const dsc_api_prompt_t *p = &r->prompts[i];
            FUZZ_CHECK((p->text == NULL) != (p->ids == NULL));
            if (p->text != NULL) {
                FUZZ_CHECK(p->len > 0);
                check_text(p->text, p->len);
            }
            FUZZ_CHECK(p->text != NULL || p->n_ids > 0);
            for (size_t k = 0; k < p->n_ids; k++)
                FUZZ_CHECK(p->ids[k] >= 0);
        }
        FUZZ_CHECK(r->messages == NULL);
        return;
    }
    FUZZ_CHECK(r->prompt == NULL && r->prompts == NULL);
    FUZZ_CHECK(r->n_messages >= 1 && r->n_messages <= lim->max_messages);
    check_json(r->tools);
    for (size_t i = 0; i < r->n_messages; i++) {
        const dsc_api_message_t *m = &r->messages[i];
        FUZZ_CHECK(m->role <= DSC_API_ROLE_TOOL);
        check_text(m->content, m->content_len);
        check_json(m->tool_calls);
        if (m->tool_call_id != NULL)
            check_text(m->tool_call_id, strlen(m->tool_call_id));
        if (m->name != NULL)
            check_text(m->name, strlen(m->name));
        if (m->reasoning != NULL)
            check_text(m->reasoning, strlen(m->reasoning));
        if (m->tool_calls != NULL) {
            /* What the backend does with them next (it may refuse them: 400). */
            dsc_chat_tool_call_t *calls = NULL;
            size_t n = 0;
            if (dsc_chat_tool_calls_parse(m->tool_calls, strlen(m->tool_calls), &calls, &n) ==
                DSI_OK)
                free(calls);
        }
    }
}

static void parse(dsc_api_kind_t kind, const char *body, size_t len)
{
    dsc_api_limits_t lim;
    dsc_api_limits_default(&lim);
    lim.max_messages = 64; /* small, so that the limit itself is reachable */
    dsc_api_parsed_t *p = NULL;
    dsc_api_error_t err;
    memset(&err, 0, sizeof(err));
    if (dsc_api_request_parse(kind, body, len, &lim, &p, &err) != DSI_OK) {
        FUZZ_CHECK(p == NULL);
        FUZZ_CHECK(err.http_status >= 400 && err.http_status < 600);
        FUZZ_CHECK(err.type != NULL);
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        FUZZ_CHECK(memchr(err.param, '\0', sizeof(err.param)) != NULL);
        size_t n;
        char *json = dsc_api_error_json(&err, &n);
        FUZZ_CHECK(json != NULL);
        check_json(json);
        free(json);
        return;
    }
    const dsc_api_request_t *r = dsc_api_parsed_request(p);
    FUZZ_CHECK(r != NULL && r->kind == kind);
    check_request(r, &lim);
    dsc_api_parsed_destroy(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exactly sized copy: the parser must not read past len (bodies are not NUL-terminated
     * in general). */
    char *body = malloc(size ? size : 1);
    FUZZ_CHECK(body != NULL);
    memcpy(body, data, size);
    parse(DSC_API_KIND_CHAT, body, size);
    parse(DSC_API_KIND_COMPLETION, body, size);
    free(body);
    return 0;
}
