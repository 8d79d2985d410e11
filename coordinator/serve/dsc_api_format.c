/*
 * dsc_api_format.c - response objects in OpenAI's shapes: chat.completion, text_completion, and
 * the streamed chat.completion.chunk / text_completion chunks as Server-Sent Events.
 */
#include "dsc_api_impl.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void dsc_api_response_meta_init(dsc_api_response_meta_t *meta, dsc_api_kind_t kind,
                                const char *model)
{
    static atomic_uint_fast64_t counter;
    static atomic_uint_fast64_t process_tag; /* distinguishes restarts: ids stay unique */
    uint64_t tag = atomic_load(&process_tag);
    if (tag == 0) {
        uint_fast64_t fresh = (((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid()) | 1, zero = 0;
        atomic_compare_exchange_strong(&process_tag, &zero, fresh);
        tag = atomic_load(&process_tag);
    }
    uint64_t n = atomic_fetch_add(&counter, 1) + 1;
    meta->kind = kind;
    meta->created = (int64_t)time(NULL);
    meta->model = model;
    snprintf(meta->id, sizeof(meta->id), "%s-%" PRIx64 "%08" PRIx64,
             kind == DSC_API_KIND_CHAT ? "chatcmpl" : "cmpl", (uint64_t)(tag & 0xffffffffffffull),
             n);
}

static void write_head(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta, const char *object)
{
    dsc_api_jbuf_puts(b, "{\"id\":");
    dsc_api_jbuf_string(b, meta->id, strlen(meta->id));
    dsc_api_jbuf_printf(b, ",\"object\":\"%s\",\"created\":%" PRId64 ",\"model\":", object,
                        meta->created);
    dsc_api_jbuf_string(b, meta->model ? meta->model : "", meta->model ? strlen(meta->model) : 0);
}

static void write_usage(dsc_api_jbuf_t *b, const dsc_api_usage_t *u)
{
    dsc_api_jbuf_printf(b,
                        "\"usage\":{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
                        ",\"total_tokens\":%" PRId64 "}",
                        u->prompt_tokens, u->completion_tokens,
                        u->prompt_tokens + u->completion_tokens);
}

void dsc_api_response_write(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                            const char *text, size_t text_len, const char *reasoning,
                            size_t reasoning_len, dsc_api_finish_t finish,
                            const dsc_api_usage_t *usage)
{
    dsc_api_response_write_lp(b, meta, text, text_len, reasoning, reasoning_len, NULL, finish,
                              usage);
}

void dsc_api_response_write_lp(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                               const char *text, size_t text_len, const char *reasoning,
                               size_t reasoning_len, const char *logprobs, dsc_api_finish_t finish,
                               const dsc_api_usage_t *usage)
{
    dsc_api_response_write_tc(b, meta, text, text_len, reasoning, reasoning_len, NULL, logprobs,
                              finish, usage);
}

void dsc_api_response_write_tc(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                               const char *text, size_t text_len, const char *reasoning,
                               size_t reasoning_len, const char *tool_calls, const char *logprobs,
                               dsc_api_finish_t finish, const dsc_api_usage_t *usage)
{
    dsc_api_choice_out_t one = {text,     text_len,   reasoning, reasoning_len,
                                logprobs, tool_calls, finish};
    dsc_api_response_write_choices(b, meta, &one, 1, usage);
}

void dsc_api_response_write_choices(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                                    const dsc_api_choice_out_t *choices, int n,
                                    const dsc_api_usage_t *usage)
{
    int chat = meta->kind == DSC_API_KIND_CHAT;
    write_head(b, meta, chat ? "chat.completion" : "text_completion");
    dsc_api_jbuf_puts(b, ",\"choices\":[");
    for (int i = 0; i < n; i++) {
        const dsc_api_choice_out_t *c = &choices[i];
        dsc_api_jbuf_printf(b, "%s{\"index\":%d,", i > 0 ? "," : "", i);
        if (chat) {
            dsc_api_jbuf_puts(b, "\"message\":{\"role\":\"assistant\",\"content\":");
            if (c->tool_calls != NULL && (c->text == NULL || c->text_len == 0))
                dsc_api_jbuf_puts(b, "null");
            else
                dsc_api_jbuf_string(b, c->text ? c->text : "", c->text ? c->text_len : 0);
            if (c->reasoning != NULL && c->reasoning_len > 0) {
                dsc_api_jbuf_puts(b, ",\"reasoning_content\":");
                dsc_api_jbuf_string(b, c->reasoning, c->reasoning_len);
            }
            if (c->tool_calls != NULL) {
                dsc_api_jbuf_puts(b, ",\"tool_calls\":");
                dsc_api_jbuf_puts(b, c->tool_calls);
            }
            dsc_api_jbuf_puts(b, "},");
        } else {
            dsc_api_jbuf_puts(b, "\"text\":");
            dsc_api_jbuf_string(b, c->text ? c->text : "", c->text ? c->text_len : 0);
            dsc_api_jbuf_puts(b, ",");
        }
        dsc_api_jbuf_puts(b, "\"logprobs\":");
        dsc_api_jbuf_puts(b, c->logprobs != NULL ? c->logprobs : "null");
        dsc_api_jbuf_printf(b, ",\"finish_reason\":\"%s\"}", dsc_api_finish_name(c->finish));
    }
    dsc_api_jbuf_puts(b, "],");
    write_usage(b, usage);
    dsc_api_jbuf_puts(b, "}");
}

char *dsc_api_response_json(const dsc_api_response_meta_t *meta, const char *text, size_t text_len,
                            const char *reasoning, size_t reasoning_len, dsc_api_finish_t finish,
                            const dsc_api_usage_t *usage, size_t *len_out)
{
    dsc_api_jbuf_t b = {0};
    dsc_api_response_write(&b, meta, text, text_len, reasoning, reasoning_len, finish, usage);
    return dsc_api_jbuf_take(&b, len_out);
}

static void write_choice(dsc_api_jbuf_t *b, int chat, const dsc_api_chunk_t *c)
{
    dsc_api_jbuf_printf(b, "{\"index\":%d,", c->index);
    if (chat) {
        dsc_api_jbuf_puts(b, "\"delta\":{");
        const char *sep = "";
        if (c->role) {
            dsc_api_jbuf_puts(b, "\"role\":\"assistant\"");
            sep = ",";
        }
        if (c->text != NULL || c->role) {
            dsc_api_jbuf_printf(b, "%s\"%s\":", sep,
                                c->is_reasoning ? "reasoning_content" : "content");
            dsc_api_jbuf_string(b, c->text ? c->text : "", c->text ? c->text_len : 0);
            sep = ",";
        }
        if (c->tool_calls != NULL) {
            dsc_api_jbuf_printf(b, "%s\"tool_calls\":", sep);
            dsc_api_jbuf_puts(b, c->tool_calls);
        }
        dsc_api_jbuf_puts(b, "},");
    } else {
        dsc_api_jbuf_puts(b, "\"text\":");
        dsc_api_jbuf_string(b, c->text ? c->text : "", c->text ? c->text_len : 0);
        dsc_api_jbuf_puts(b, ",");
    }
    dsc_api_jbuf_puts(b, "\"logprobs\":");
    dsc_api_jbuf_puts(b, c->logprobs != NULL ? c->logprobs : "null");
    dsc_api_jbuf_puts(b, ",\"finish_reason\":");
    if (c->has_finish)
        dsc_api_jbuf_printf(b, "\"%s\"}", dsc_api_finish_name(c->finish));
    else
        dsc_api_jbuf_puts(b, "null}");
}

void dsc_api_chunk_write(dsc_api_jbuf_t *b, const dsc_api_response_meta_t *meta,
                         const dsc_api_chunk_t *c, int include_usage)
{
    int chat = meta->kind == DSC_API_KIND_CHAT;
    dsc_api_jbuf_puts(b, "data: ");
    write_head(b, meta, chat ? "chat.completion.chunk" : "text_completion");
    dsc_api_jbuf_puts(b, ",\"choices\":[");
    if (c->usage == NULL)
        write_choice(b, chat, c);
    dsc_api_jbuf_puts(b, "]");
    if (c->usage != NULL) {
        dsc_api_jbuf_puts(b, ",");
        write_usage(b, c->usage);
    } else if (include_usage) {
        dsc_api_jbuf_puts(b, ",\"usage\":null");
    }
    dsc_api_jbuf_puts(b, "}\n\n");
}

char *dsc_api_chunk_sse(const dsc_api_response_meta_t *meta, const dsc_api_chunk_t *chunk,
                        size_t *len_out)
{
    dsc_api_jbuf_t b = {0};
    dsc_api_chunk_write(&b, meta, chunk, 0);
    return dsc_api_jbuf_take(&b, len_out);
}
