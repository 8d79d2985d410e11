/*
 * dsi_test_chat.h - the chat renderers against Jinja, shared by the tests that compare them byte
 * for byte (test_unit_chat_v31, test_unit_chat_tools): the cases go to a reference script that
 * renders each with Jinja into DIR/case-I.txt (or DIR/case-I.err when the template itself fails),
 * then each is rendered natively and compared.
 */
#ifndef DSI_TEST_CHAT_H
#define DSI_TEST_CHAT_H

#include <stddef.h>

#include "dsc_chat.h"

/*
 * Write cases[n] (JSON objects) as an array to DIR/cases.json and run
 * `python3 SOURCE/tests/SCRIPT [ARG] DIR` (SOURCE: $DSINFER_SOURCE, else ../..). 0 when both
 * worked (a failure is a failed check).
 */
int dsi_test_chat_reference(const char *dir, const char *const *cases, size_t n, const char *script,
                            const char *arg);

/*
 * Render case i (case_json: "messages", and optional "tools", "thinking", "continue_final",
 * "add_generation_prompt") with tpl and check it against what the reference wrote in dir: the
 * same bytes, or DSI_ERR_BAD_REQUEST where Jinja failed.
 */
void dsi_test_chat_case(const dsc_chat_template_t *tpl, const char *dir, size_t i,
                        const char *case_json);

#endif
