/*
 * dsc_tool_grammar.h - the grammar (dsg.h's GBNF text) that makes a model call a tool:
 * tool_choice "required" (any of the request's tools) or a named function. The output must be
 * the calls block in the format of the model's chat template, and nothing else:
 *   V3 / R1  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS
 *            \n```<｜tool▁call▁end｜>[\n<｜tool▁call▁begin｜>...]<｜tool▁calls▁end｜>
 *   V3.1     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>
 *            [<｜tool▁call▁begin｜>...]<｜tool▁calls▁end｜>
 * where NAME is one of the allowed functions and ARGS is JSON that its `parameters` schema
 * accepts (dsg_from_json_schema; any JSON object where a tool has no parameters). With
 * `parallel` 0 there is exactly one call.
 */
#ifndef DSC_TOOL_GRAMMAR_H
#define DSC_TOOL_GRAMMAR_H

#include <stddef.h>

#include "dsc_chat.h"
#include "dsi_status.h"

/*
 * `tools_json`: the request's tools array (validated by the API: function objects with a name);
 * `only`: the one allowed function name, or NULL for any. *gbnf is malloc'ed (free()), set only
 * on success. Errors (message in err): DSI_ERR_BAD_REQUEST / DSI_ERR_UNSUPPORTED for a
 * parameters schema the converter cannot take, DSI_ERR_NOT_FOUND when `only` is not a tool,
 * DSI_ERR_TOO_LARGE over DSG_MAX_GRAMMAR_BYTES, DSI_ERR_NOMEM.
 */
dsi_status_t dsc_tool_grammar(dsc_chat_style_t style, const char *tools_json, size_t len,
                              const char *only, int parallel, char **gbnf, char *err,
                              size_t errlen);

#endif
