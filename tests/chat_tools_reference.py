#!/usr/bin/env python3
"""Tool lists and continued answers rendered by Jinja (python3-jinja2), for test_unit_chat_tools.

V3 cases: the chat_template of the DeepSeek-V3 tokenizer_config.json given as the first argument
(the release's, unchanged for everything it renders: turns, tool calls, tool outputs), with the
tool list that the engine appends to the system prompt spliced in after the system prompt. The
list follows the format of vLLM's examples/tool_chat_template_deepseekv3.jinja; this splice is
the definition the engine's dsc_chat_tools.c is checked against.

V3.1 cases: the template of tests/chat_v31_reference.py.

A case with "continue_final" is rendered as vLLM renders continue_final_message: without the
generation prompt, the last message marked `prefix` (which V3.1's template reads), and the
trailing <｜end▁of▁sentence｜> of the last message removed.

The templates run as transformers runs them: an ImmutableSandboxedEnvironment with trim_blocks
and lstrip_blocks, the loopcontrols extension, and `tojson` = json.dumps(ensure_ascii=False).

Usage: chat_tools_reference.py TOKENIZER_CONFIG DIR: renders every case of DIR/cases.json
([{"style": "v3"|"v3.1", "messages", "tools"?, "thinking"?, "add_generation_prompt"?,
"continue_final"?}]) into DIR/case-N.txt (or DIR/case-N.err with the template's exception).
"""
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_v31_reference  # noqa: E402

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
ANCHOR = "{{bos_token}}{{ns.system_prompt}}"
TOOLS = (
    "{%- if tools %}"
    "{{ '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query."
    "\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{ '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{ '\\n</tools>\\n\\nFor function call returns, you should first print "
    "<｜tool▁calls▁begin｜>\\nFor each function call, you should return object like:\\n"
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜><function_name>\\n```json\\n"
    "<function_arguments_in_json_format>\\n```<｜tool▁call▁end｜>\\n"
    "At the end of function call returns, you should print "
    "<｜tool▁calls▁end｜><｜end▁of▁sentence｜>' }}"
    "{%- endif %}"
)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def templates(tokenizer_config):
    """The V3 template of `tokenizer_config` with the tool list spliced in, and V3.1's."""
    with open(tokenizer_config, encoding="utf-8") as f:
        v3 = json.load(f)["chat_template"]
    if ANCHOR not in v3:
        sys.exit("the V3 template lacks %r: not the release's template" % ANCHOR)
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    return {
        "v3": env.from_string(v3.replace(ANCHOR, ANCHOR + TOOLS, 1)),
        "v3.1": env.from_string(chat_v31_reference.TEMPLATE),
    }


def render(tpls, case):
    """One case's text (exceptions are the template's own failures)."""
    messages = case["messages"]
    cont = case.get("continue_final", False)
    if cont:
        messages = messages[:-1] + [dict(messages[-1], prefix=True)]
    kwargs = {"messages": messages, "bos_token": BOS,
              "add_generation_prompt": case.get("add_generation_prompt", False) and not cont}
    for key in ("tools", "thinking"):
        if key in case:
            kwargs[key] = case[key]
    text = tpls[case["style"]].render(**kwargs)
    if cont and text.endswith(EOS):
        text = text[:-len(EOS)]
    return text


def main():
    tpls = templates(sys.argv[1])
    out = sys.argv[2]
    with open(os.path.join(out, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    for i, case in enumerate(cases):
        try:
            text = render(tpls, case)
        except Exception as e:  # the template's own failure: the engine must refuse the chat too
            with open(os.path.join(out, "case-%d.err" % i), "w", encoding="utf-8") as f:
                f.write("%s: %s\n" % (type(e).__name__, e))
            continue
        with open(os.path.join(out, "case-%d.txt" % i), "w", encoding="utf-8", newline="") as f:
            f.write(text)


if __name__ == "__main__":
    main()
