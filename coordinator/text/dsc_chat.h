/*
 * dsc_chat.h - the DeepSeek chat templates, implemented natively (no Jinja).
 *
 * Renders a conversation exactly as tokenizer_config.json's `chat_template` does under
 * transformers' apply_chat_template (same text, byte for byte), for three variants:
 *   DSC_CHAT_V3  the DeepSeek-V3 template: system prompts joined by "\n\n" after the BOS token,
 *                <｜User｜> / <｜Assistant｜> turns ending in <｜end▁of▁sentence｜>, tool calls in
 *                <｜tool▁calls▁begin｜>..., tool outputs in <｜tool▁outputs▁begin｜>...; the
 *                generation prompt is "<｜Assistant｜>".
 *   DSC_CHAT_R1  the DeepSeek-R1 template: like V3, but earlier assistant turns keep only the text
 *                after their last "</think>" (their reasoning is dropped), and the generation
 *                prompt is "<｜Assistant｜><think>\n" so the answer opens with the reasoning block.
 *   DSC_CHAT_V31 the DeepSeek-V3.1 template (dsc_chat_v31.c): a `thinking` switch, off by
 *                default, makes the generation prompt "<｜Assistant｜><think>" instead of
 *                "<｜Assistant｜></think>"; earlier assistant turns keep only the text after
 *                their first "</think>"; a tool call is NAME<｜tool▁sep｜>ARGUMENTS between
 *                <｜tool▁call▁begin｜> and <｜tool▁call▁end｜>; tool outputs are not wrapped in
 *                <｜tool▁outputs▁begin｜>; the request's tools are described in the system prompt.
 * The quirks of the originals are kept on purpose (the result must equal the reference).
 *
 * The rendered text is meant to be encoded with dsc_tokenizer_encode (flags 0): it already holds
 * the BOS token.
 */
#ifndef DSC_CHAT_H
#define DSC_CHAT_H

#include <stddef.h>

#include "dsi_status.h"

typedef enum {
    DSC_CHAT_AUTO = -1, /* dsc_chat_template_load: decide from the model directory */
    DSC_CHAT_V3 = 0,
    DSC_CHAT_R1 = 1,
    DSC_CHAT_V31 = 2,
} dsc_chat_style_t;

/* What a render may add to the messages (the template's other variables). */
typedef struct {
    int thinking; /* V3.1's `thinking` (chat_template_kwargs {"thinking": true}); others ignore */
    /*
     * The request's `tools` as a JSON array text ([{"type":"function","function":{"name",
     * "description","parameters"}}]), or NULL. V3.1 renders them as its template does. The V3
     * and R1 templates have no tools: they are described at the end of the system prompt in the
     * format of vLLM's DeepSeek-V3 tool template (dsc_chat_tools.c; docs/API.md, "Tool calling").
     */
    const char *tools_json;
    size_t tools_len;
    /*
     * Continue the last message, an assistant answer (the DeepSeek API's `prefix`, vLLM's
     * continue_final_message): it is rendered without its <｜end▁of▁sentence｜> and no generation
     * prompt follows. V3.1 opens it with "<think>" in thinking mode (its template's `prefix`);
     * R1 keeps its reasoning (earlier turns lose theirs). DSI_ERR_BAD_REQUEST (logged) when the
     * last message is not an assistant message with content and without tool calls.
     */
    int continue_final;
} dsc_chat_opts_t;

typedef enum {
    DSC_CHAT_ROLE_SYSTEM = 0,
    DSC_CHAT_ROLE_USER,
    DSC_CHAT_ROLE_ASSISTANT,
    DSC_CHAT_ROLE_TOOL,
    DSC_CHAT_ROLE_OTHER, /* any other role: the templates ignore such messages */
} dsc_chat_role_t;

/* One tool call of an assistant message (OpenAI's {"type", "function": {"name", "arguments"}}). */
typedef struct {
    const char *type;      /* "function"; NUL-terminated */
    const char *name;      /* function name; NUL-terminated */
    const char *arguments; /* the arguments as JSON text, inserted verbatim; NUL-terminated */
} dsc_chat_tool_call_t;

/* One message. Strings are UTF-8 and borrowed: the caller keeps them alive during the call. */
typedef struct {
    dsc_chat_role_t role;
    /*
     * NULL means "no content" (JSON null or absent), which the templates distinguish from "" for
     * assistant messages with tool calls. content_len is its length in bytes (content may hold
     * NUL bytes); use strlen(content) for ordinary strings.
     */
    const char *content;
    size_t content_len;
    const dsc_chat_tool_call_t *tool_calls; /* [n_tool_calls]; assistant messages only */
    size_t n_tool_calls;
} dsc_chat_message_t;

typedef struct dsc_chat_template dsc_chat_template_t;

/*
 * Load the template of model directory `dir` from its tokenizer_config.json: the BOS text from
 * `bos_token` (a string or an AddedToken object) and the style from `chat_template` (R1 when it
 * opens the generation prompt with "<think>", else V3). `style` other than DSC_CHAT_AUTO
 * overrides the detection; then a missing tokenizer_config.json is fine (BOS defaults to
 * "<｜begin▁of▁sentence｜>"). Errors: DSI_ERR_NOT_FOUND (no tokenizer_config.json and style
 * AUTO), DSI_ERR_FORMAT (malformed JSON or fields), DSI_ERR_UNSUPPORTED (AUTO and a
 * chat_template that is not a DeepSeek one). Free with dsc_chat_template_destroy.
 */
dsi_status_t dsc_chat_template_load(const char *dir, dsc_chat_style_t style,
                                    dsc_chat_template_t **out);
/* A template of a given style and BOS text (copied). */
dsi_status_t dsc_chat_template_create(dsc_chat_style_t style, const char *bos_token,
                                      dsc_chat_template_t **out);
void dsc_chat_template_destroy(dsc_chat_template_t *tpl);
dsc_chat_style_t dsc_chat_template_style(const dsc_chat_template_t *tpl);

/* "v3" / "r1" / "v3.1" (case-insensitive; also "auto"); DSI_ERR_INVALID_ARG for anything else. */
dsi_status_t dsc_chat_style_parse(const char *name, dsc_chat_style_t *out);
const char *dsc_chat_style_name(dsc_chat_style_t style);
/* "system", "user", "assistant", "tool" -> role; anything else DSC_CHAT_ROLE_OTHER. */
dsc_chat_role_t dsc_chat_role_parse(const char *name);

/*
 * Render `n` messages; with add_generation_prompt the text ends with the assistant opening
 * (unless the conversation ends in tool outputs, as in the originals). *out is malloc'ed and
 * NUL-terminated, *out_len its length (it may hold NUL bytes from contents); caller frees.
 * Errors: DSI_ERR_BAD_REQUEST when the original template would fail (a system, user or tool
 * message without content, a tool call without type, name or arguments), logged with the
 * message index.
 */
dsi_status_t dsc_chat_render(const dsc_chat_template_t *tpl, const dsc_chat_message_t *msgs,
                             size_t n, int add_generation_prompt, char **out, size_t *out_len);
/* The same with the template variables of `opts` (NULL: none, as dsc_chat_render). */
dsi_status_t dsc_chat_render_opts(const dsc_chat_template_t *tpl, const dsc_chat_message_t *msgs,
                                  size_t n, int add_generation_prompt, const dsc_chat_opts_t *opts,
                                  char **out, size_t *out_len);
/* Whether a render with `opts` opens the answer with a reasoning block (R1 always; V3.1 when
 * thinking), so that the text up to "</think>" is reasoning_content. */
int dsc_chat_opens_thinking(const dsc_chat_template_t *tpl, const dsc_chat_opts_t *opts);
/* The same for a render with opts->continue_final whose last message has content `last`
 * (`len` bytes): whether the continued text is still inside a reasoning block (V3.1 in thinking
 * mode: no "</think>" in it; R1: a "<think>" not closed after it). */
int dsc_chat_continue_opens_thinking(const dsc_chat_template_t *tpl, const dsc_chat_opts_t *opts,
                                     const char *last, size_t len);

/*
 * Parse an OpenAI `tool_calls` JSON array text ([{"type", "function": {"name", "arguments"}}],
 * `type` defaulting to "function", `arguments` a string or an object serialized compactly) into
 * *calls[*n]. *calls is one malloc'ed block holding the array and its strings: free() it.
 * DSI_ERR_BAD_REQUEST (logged) for anything else.
 */
dsi_status_t dsc_chat_tool_calls_parse(const char *json, size_t len, dsc_chat_tool_call_t **calls,
                                       size_t *n);

/*
 * Render OpenAI-style messages given as a JSON array text: [{"role", "content" (string, null,
 * or an array of {"type":"text","text"} parts, concatenated), "tool_calls": [{"type",
 * "function": {"name", "arguments" (string, or an object serialized compactly)}}]}, ...].
 * DSI_ERR_BAD_REQUEST (logged with the message index) for JSON that is not such an array.
 */
dsi_status_t dsc_chat_render_json(const dsc_chat_template_t *tpl, const char *json, size_t len,
                                  int add_generation_prompt, char **out, size_t *out_len);
/* The same with the template variables of `opts` (NULL: none). */
dsi_status_t dsc_chat_render_json_opts(const dsc_chat_template_t *tpl, const char *json, size_t len,
                                       int add_generation_prompt, const dsc_chat_opts_t *opts,
                                       char **out, size_t *out_len);

#endif
