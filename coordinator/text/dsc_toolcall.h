/*
 * dsc_toolcall.h - the tool calls in a DeepSeek model's generated text, parsed as the text streams.
 *
 * The two formats of the releases (the chat templates render earlier calls the same way):
 *   V3 / R1
 * <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```
 *            <｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>...<｜tool▁calls▁end｜>
 *   V3.1     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>
 *            <｜tool▁call▁begin｜>...<｜tool▁calls▁end｜>
 * Each call is told apart by its own header, so one parser reads both: the text before
 * <｜tool▁sep｜> is "function" and what follows is not JSON ('{' or '[') -> V3, else the text
 * before the separator is the name (V3.1).
 *
 * Text outside the calls block is content. Content never carries a marker, nor a prefix of one:
 * a tail that could still become "<｜tool▁calls▁begin｜>" is held back until it cannot. A call's
 * header (up to the start of its arguments) is held back until it is complete; the arguments
 * then come out in fragments as they arrive (less a tail that could be the end marker, and for
 * V3 the closing fence). The arguments are passed on as the model wrote them, not checked as
 * JSON (OpenAI's rule too: the client validates them).
 *
 * Whitespace between calls (V3 writes a newline) and after the last call at the end of the text
 * is format and dropped; text after a call that is not another call nor the block's end is
 * content again (V3's template leaves a single call's block open).
 *
 * Nothing is lost: a block that does not follow the format (an unknown marker sequence, a
 * header longer than DSC_TOOLCALL_MAX_HEADER bytes, a header cut off by the end of the text)
 * is logged and its text, markers included, comes out as content; the calls completed before it
 * stay calls. A call whose arguments are cut off by the end of the text stays a call with the
 * arguments it got (logged).
 *
 * The same input gives the same events however it is split into pieces, so a streamed response
 * and a whole one agree. No allocation per event after the buffers have grown.
 */
#ifndef DSC_TOOLCALL_H
#define DSC_TOOLCALL_H

#include <stddef.h>

#include "dsi_status.h"

#define DSC_TOOLCALL_MAX_HEADER 512 /* bytes from <｜tool▁call▁begin｜> to the arguments */

/* The markers (UTF-8). */
#define DSC_TOOL_CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define DSC_TOOL_CALLS_END   "<｜tool▁calls▁end｜>"
#define DSC_TOOL_CALL_BEGIN  "<｜tool▁call▁begin｜>"
#define DSC_TOOL_CALL_END    "<｜tool▁call▁end｜>"
#define DSC_TOOL_SEP         "<｜tool▁sep｜>"

/* Where the parser sends what it finds; pointers are valid only during the call. */
typedef struct {
    void (*on_content)(void *ctx, const char *text, size_t len);
    /* Call `index` (0, 1, ... over the whole text) begins: its function name. */
    void (*on_call)(void *ctx, int index, const char *name, size_t name_len);
    /* The next piece of call `index`'s arguments (len > 0). */
    void (*on_args)(void *ctx, int index, const char *text, size_t len);
} dsc_toolcall_sink_t;

typedef struct dsc_toolcall dsc_toolcall_t;

/* A parser sending to `sink` with `ctx` (the sink is copied). Free with dsc_toolcall_destroy. */
dsi_status_t dsc_toolcall_create(const dsc_toolcall_sink_t *sink, void *ctx, dsc_toolcall_t **out);
void dsc_toolcall_destroy(dsc_toolcall_t *p);
/* The next `len` bytes of generated text (complete UTF-8 characters). DSI_ERR_NOMEM (logged) when
 * a buffer cannot grow: the parser is then unusable. */
dsi_status_t dsc_toolcall_feed(dsc_toolcall_t *p, const char *text, size_t len);
/* The end of the text: everything held back comes out (see above). */
dsi_status_t dsc_toolcall_finish(dsc_toolcall_t *p);
/* Calls begun so far. */
int dsc_toolcall_count(const dsc_toolcall_t *p);

#endif
