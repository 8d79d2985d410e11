#!/usr/bin/env python3
"""The DeepSeek-V3.1 chat template run by Jinja (python3-jinja2), for test_unit_chat_v31.

What this is: two templates.
- PUBLISHED: the `chat_template` of DeepSeek-V3.1's tokenizer_config.json as published with the
  release (Hugging Face deepseek-ai/DeepSeek-V3.1), verbatim. It renders tool calls and tool
  results but not the tool list: the release's README gives the tool description that goes after
  the system prompt ("## Tools ..."), and vLLM ships a tool template that adds it.
- TEMPLATE: PUBLISHED plus that tool description appended to the system prompt, the rendering
  the engine uses when a request has `tools`. For every case without tools both are run and must
  agree, so the engine is checked against the published text itself; tokenizer_config.json gets
  the published text, so the template is also recognised from the real file.

The template runs the way transformers' apply_chat_template runs it: an ImmutableSandboxedEnvironment
with trim_blocks and lstrip_blocks, the loopcontrols extension, and its `tojson` filter
(json.dumps with ensure_ascii=False, keys unsorted).

Usage: chat_v31_reference.py DIR: writes DIR/tokenizer_config.json (the template) and, for every
case of DIR/cases.json ([{"messages", "tools"?, "thinking"?, "add_generation_prompt"}]),
DIR/case-N.txt, the rendered text (or DIR/case-N.err with the template's exception).
"""
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

PUBLISHED = (
    "{% if not add_generation_prompt is defined -%}\n"
    "  {%- set add_generation_prompt = false -%}\n"
    "{%- endif -%}\n"
    "{%- if not thinking is defined -%}\n"
    "  {%- if enable_thinking is defined -%}\n"
    "    {%- set thinking = enable_thinking -%}\n"
    "    {%- else -%}\n"
    "    {%- set thinking = false -%}\n"
    "  {%- endif -%}\n"
    "{%- endif -%}\n"
    "{%- set ns = namespace(is_first=false, is_tool=false, system_prompt='', is_first_sp=true, is_last_user=false) -%}\n"
    "{%- for message in messages -%}\n"
    "  {%- if message['role'] == 'system' -%}\n"
    "    {%- if ns.is_first_sp -%}\n"
    "      {%- set ns.system_prompt = ns.system_prompt + message['content'] -%}\n"
    "      {%- set ns.is_first_sp = false -%}\n"
    "      {%- else -%}\n"
    "      {%- set ns.system_prompt = ns.system_prompt + '\n"
    "\n"
    "' + message['content'] -%}\n"
    "    {%- endif -%}\n"
    "  {%- endif -%}\n"
    "{%- endfor -%}{{ bos_token }}{{ ns.system_prompt }}\n"
    "{%- for message in messages -%}\n"
    "  {%- if message['role'] == 'user' -%}\n"
    "    {%- set ns.is_tool = false -%}\n"
    "    {%- set ns.is_first = false -%}\n"
    "    {%- set ns.is_last_user = true -%}{{'<｜User｜>' + message['content']}}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] is not none -%}\n"
    "    {%- if ns.is_last_user -%}{{'<｜Assistant｜></think>'}}\n"
    "    {%- endif -%}\n"
    "    {%- set ns.is_last_user = false -%}\n"
    "    {%- set ns.is_first = false -%}\n"
    "    {%- set ns.is_tool = false -%}\n"
    "    {%- for tool in message['tool_calls'] -%}\n"
    "      {%- if not ns.is_first -%}\n"
    "        {%- if message['content'] is none -%}{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'+ tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}\n"
    "          {%- else -%}{{message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}\n"
    "        {%- endif -%}\n"
    "        {%- set ns.is_first = true -%}\n"
    "        {%- else -%}{{'<｜tool▁call▁begin｜>'+ tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}\n"
    "      {%- endif -%}\n"
    "    {%- endfor -%}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'assistant' and (message['tool_calls'] is not defined or message['tool_calls'] is none) -%}\n"
    "    {%- if ns.is_last_user -%}{{'<｜Assistant｜>'}}\n"
    "      {%- if message['prefix'] is defined and message['prefix'] and thinking -%}{{'<think>'}}\n"
    "        {%- else -%}{{'</think>'}}\n"
    "      {%- endif -%}\n"
    "    {%- endif -%}\n"
    "    {%- set ns.is_last_user = false -%}\n"
    "    {%- if ns.is_tool -%}{{message['content'] + '<｜end▁of▁sentence｜>'}}\n"
    "      {%- set ns.is_tool = false -%}\n"
    "      {%- else -%}\n"
    "      {%- set content = message['content'] -%}\n"
    "      {%- if '</think>' in content -%}\n"
    "        {%- set content = content.split('</think>', 1)[1] -%}\n"
    "      {%- endif -%}{{content + '<｜end▁of▁sentence｜>'}}\n"
    "    {%- endif -%}\n"
    "  {%- endif -%}\n"
    "  {%- if message['role'] == 'tool' -%}\n"
    "    {%- set ns.is_last_user = false -%}\n"
    "    {%- set ns.is_tool = true -%}{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}\n"
    "  {%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt and ns.is_last_user and not ns.is_tool -%}{{'<｜Assistant｜>'}}\n"
    "  {%- if not thinking -%}{{'</think>'}}\n"
    "    {%- else -%}{{'<think>'}}\n"
    "  {%- endif -%}\n"
    "{%- endif %}"
)

TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% if not thinking is defined %}{% set thinking = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, system_prompt='', is_first_sp=true, is_last_user=false) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}"
    "{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}"
    "{%- else %}{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{% if tools is defined and tools is not none %}"
    "{% set tool_ns = namespace(text='## Tools\\nYou have access to the following tools:\\n') %}"
    "{% for tool in tools %}{% set tool_ns.text = tool_ns.text + '\\n### ' + tool.function.name + "
    "'\\nDescription: ' + tool.function.description + '\\n\\nParameters: ' + (tool.function.parameters | tojson) + '\\n' %}"
    "{% endfor %}"
    "{% set tool_ns.text = tool_ns.text + \"\\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\\n"
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜>"
    "{{additional_tool_calls}}<｜tool▁calls▁end｜>\\n\\nWhere:\\n\\n"
    "- `tool_call_name` must be an exact match to one of the available tools\\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\\n"
    "- For multiple tool calls, chain them directly without separators or spaces\\n\" %}"
    "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + tool_ns.text %}{% endif %}"
    "{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{%- set ns.is_first = false -%}"
    "{%- set ns.is_last_user = true -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] is not none %}"
    "{%- if ns.is_last_user %}{{'<｜Assistant｜></think>'}}{%- endif %}"
    "{%- set ns.is_last_user = false -%}{%- set ns.is_first = false %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}"
    "{%- if message['content'] is none %}{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'+ tool['function']['name'] + "
    "'<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}"
    "{%- else %}{{message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['function']['name'] + "
    "'<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}{%- endif %}"
    "{%- set ns.is_first = true -%}"
    "{%- else %}{{'<｜tool▁call▁begin｜>'+ tool['function']['name'] + '<｜tool▁sep｜>' + "
    "tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}{%- endif %}{%- endfor %}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and (message['tool_calls'] is not defined or message['tool_calls'] is none) %}"
    "{%- if ns.is_last_user %}{{'<｜Assistant｜>'}}"
    "{%- if message['prefix'] is defined and message['prefix'] and thinking %}{{'<think>'}}"
    "{%- else %}{{'</think>'}}{%- endif %}{%- endif %}"
    "{%- set ns.is_last_user = false -%}"
    "{%- if ns.is_tool %}{{message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
    "{%- else %}{%- set content = message['content'] -%}"
    "{%- if '</think>' in content %}{%- set content = content.split('</think>', 1)[1] -%}{%- endif %}"
    "{{content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_last_user = false -%}{%- set ns.is_tool = true -%}"
    "{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and ns.is_last_user and not ns.is_tool %}{{'<｜Assistant｜>'}}"
    "{%- if not thinking %}{{'</think>'}}{%- else %}{{'<think>'}}{%- endif %}{% endif %}"
)

BOS = "<｜begin▁of▁sentence｜>"


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def main():
    out = sys.argv[1]
    config = {
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": BOS, "lstrip": False,
                      "normalized": True, "rstrip": False, "single_word": False},
        "eos_token": {"__type": "AddedToken", "content": "<｜end▁of▁sentence｜>",
                      "lstrip": False, "normalized": True, "rstrip": False,
                      "single_word": False},
        "legacy": True,
        "model_max_length": 131072,
        "pad_token": {"__type": "AddedToken", "content": "<｜end▁of▁sentence｜>",
                      "lstrip": False, "normalized": True, "rstrip": False,
                      "single_word": False},
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": PUBLISHED,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    tpl = env.from_string(TEMPLATE)
    published = env.from_string(PUBLISHED)
    with open(os.path.join(out, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    for i, case in enumerate(cases):
        kwargs = {"messages": case["messages"], "bos_token": BOS,
                  "add_generation_prompt": case.get("add_generation_prompt", False)}
        if "tools" in case:
            kwargs["tools"] = case["tools"]
        if "thinking" in case:
            kwargs["thinking"] = case["thinking"]
        try:
            text = tpl.render(**kwargs)
            if "tools" not in case and published.render(**kwargs) != text:
                sys.exit("case %d: the published template renders it differently" % i)
        except Exception as e:  # the template's own failure: the engine must refuse the chat too
            with open(os.path.join(out, "case-%d.err" % i), "w", encoding="utf-8") as f:
                f.write("%s: %s\n" % (type(e).__name__, e))
            continue
        with open(os.path.join(out, "case-%d.txt" % i), "w", encoding="utf-8", newline="") as f:
            f.write(text)


if __name__ == "__main__":
    main()
