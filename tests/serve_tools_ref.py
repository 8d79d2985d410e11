#!/usr/bin/env python3
"""Tool calling and prefix continuation through `dsinfer serve` on tiny-v3
(tests/test_cluster_serve_tools.sh).

The prompt the server renders is checked against Jinja: each chat is also rendered by
tests/chat_tools_reference.py (the fixture's own V3 template, the tool list spliced in) and
tokenized with `dsinfer tokenize`; the server's usage.prompt_tokens must equal that count, and for
continued answers the continuation must equal /v1/completions on the Jinja text (greedy, the same
max_tokens). Also: tools in and a tool result in as role tool, an answer out; streamed responses
(deltas, tool-call deltas included) put together equal the whole ones; the 400s of continuation.
Usage: serve_tools_ref.py URL MODEL_DIR.
"""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chat_tools_reference as ref  # noqa: E402

URL, MODEL = sys.argv[1], sys.argv[2]
TPLS = ref.templates(os.path.join(MODEL, "tokenizer_config.json"))
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city, in °C",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
failed = 0


def check(cond, what, detail=None):
    global failed
    print(("ok: " if cond else "FAIL: ") + what + ("" if cond else ": %r" % (detail,)))
    failed += 0 if cond else 1


def post(path, body):
    body = dict({"model": "tiny-v3", "max_tokens": 12, "temperature": 0}, **body)
    req = urllib.request.Request(URL + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def n_tokens(text):
    out = subprocess.run(["dsinfer", "tokenize", "--model", MODEL, "--json"], input=text.encode(),
                         capture_output=True, check=True).stdout
    return json.loads(out)["count"]


def whole_and_stream(body, what):
    """The whole response; the streamed one put together must equal it."""
    st, text = post("/v1/chat/completions", body)
    check(st == 200, what + ": 200", text)
    if st != 200:
        return None
    whole = json.loads(text)
    st, sse = post("/v1/chat/completions", dict(body, stream=True))
    content, calls, finish = "", [], None
    for e in sse.split("\n\n"):
        if not e.startswith("data: {"):
            continue
        ch = json.loads(e[6:])["choices"][0]
        content += ch["delta"].get("content") or ""
        for tc in ch["delta"].get("tool_calls", []):
            if tc["index"] == len(calls):
                calls.append({"type": tc["type"], "function": dict(tc["function"])})
            else:
                calls[tc["index"]]["function"]["arguments"] += tc["function"]["arguments"]
        finish = ch["finish_reason"] or finish
    m = whole["choices"][0]["message"]
    wcalls = [{"type": c["type"], "function": c["function"]} for c in m.get("tool_calls") or []]
    check(content == (m["content"] or "") and calls == wcalls and
          finish == whole["choices"][0]["finish_reason"],
          what + ": the stream put together equals the whole response",
          (content, calls, finish, whole))
    return whole


def prompt_matches(case, body, what):
    whole = whole_and_stream(body, what)
    if whole is None:
        return None
    want = n_tokens(ref.render(TPLS, case))
    got = whole["usage"]["prompt_tokens"]
    check(got == want, what + ": prompt_tokens equal the Jinja rendering's (%d)" % want, got)
    return whole


USER = {"role": "user", "content": "What is the weather in Paris?"}
CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_abc", "type": "function",
     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
RESULT = {"role": "tool", "tool_call_id": "call_abc", "content": "{\"t\": 18}"}

# tools in: the tool list in the system prompt
msgs = [{"role": "system", "content": "Be brief."}, USER]
prompt_matches({"style": "v3", "tools": TOOLS, "messages": msgs, "add_generation_prompt": True},
               {"messages": msgs, "tools": TOOLS}, "tools in")
# tool_choice none: tools still rendered (vLLM's default), calls not parsed
prompt_matches({"style": "v3", "tools": TOOLS, "messages": msgs, "add_generation_prompt": True},
               {"messages": msgs, "tools": TOOLS, "tool_choice": "none"}, "tool_choice none")
# the call and its result go back in; an answer comes out
msgs = [USER, CALL, RESULT]
w = prompt_matches({"style": "v3", "tools": TOOLS, "messages": msgs, "add_generation_prompt": True},
                   {"messages": msgs, "tools": TOOLS}, "tool result in")
check(w is not None and w["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls"),
      "tool result in: an answer out", w)
# the answer to the result, then a new question
msgs = [USER, CALL, RESULT, {"role": "assistant", "content": "18 °C."},
        {"role": "user", "content": "And Rome?"}]
prompt_matches({"style": "v3", "tools": TOOLS, "messages": msgs, "add_generation_prompt": True},
               {"messages": msgs, "tools": TOOLS, "stream_options": None}, "second round")
# add_generation_prompt false
msgs = [USER]
prompt_matches({"style": "v3", "messages": msgs, "add_generation_prompt": False},
               {"messages": msgs, "add_generation_prompt": False}, "add_generation_prompt false")

# a forced call (tool_choice naming the function): constrained decoding makes the model call it,
# in the V3 format; the parser turns it into message.tool_calls; its result goes back in
FORCED = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "ping", "description": "Ping",
                                      "parameters": {"type": "object", "properties": {},
                                                     "additionalProperties": False}}}]
for choice, what in (({"type": "function", "function": {"name": "get_weather"}}, "named"),
                     ("required", "required")):
    body = {"messages": [USER], "tools": FORCED, "tool_choice": choice, "max_tokens": 120,
            "parallel_tool_calls": False}
    w = whole_and_stream(body, "forced call (%s)" % what)
    if w is None:
        continue
    ch = w["choices"][0]
    calls = ch["message"].get("tool_calls") or []
    check(ch["finish_reason"] == "tool_calls" and len(calls) == 1,
          "forced call (%s): one call, finish_reason tool_calls" % what, ch)
    if what == "named" and calls:
        args = json.loads(calls[0]["function"]["arguments"])
        check(calls[0]["function"]["name"] == "get_weather" and set(args) == {"city", "unit"} and
              len(args["city"]) <= 8 and args["unit"] in ("c", "f"),
              "forced call: get_weather with arguments its schema accepts", calls)
        check((ch["message"]["content"] or "") == "", "forced call: no content", ch["message"])
        # the call and its result back in, an answer out
        msgs = [USER, {"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18"}]
        a = prompt_matches({"style": "v3", "tools": FORCED, "messages": msgs,
                            "add_generation_prompt": True},
                           {"messages": msgs, "tools": FORCED}, "forced call's result in")
        check(a is not None and a["choices"][0]["message"]["content"] is not None,
              "forced call's result in: an answer out", a)

# prefix continuation: DeepSeek's prefix and vLLM's continue_final_message give the same text,
# which equals a completion of the Jinja rendering
msgs = [USER, {"role": "assistant", "content": "The weather in Paris is"}]
case = {"style": "v3", "messages": msgs, "continue_final": True}
text = ref.render(TPLS, case)
a = prompt_matches(case, {"messages": msgs[:1] + [dict(msgs[1], prefix=True)]}, "prefix")
b = prompt_matches(case, {"messages": msgs, "continue_final_message": True,
                          "add_generation_prompt": False}, "continue_final_message")
st, c = post("/v1/completions", {"prompt": text})
c = json.loads(c)["choices"][0]["text"] if st == 200 else None
if a and b:
    check(a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"] == c,
          "prefix, continue_final_message and a completion of the Jinja text agree",
          (a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"], c))

for body, param in (
        ({"messages": msgs, "continue_final_message": True}, "continue_final_message"),
        ({"messages": [dict(msgs[1], prefix=True), USER]}, "messages[0].prefix"),
        ({"messages": [dict(USER, prefix=True)]}, "messages[0].prefix")):
    st, text = post("/v1/chat/completions", body)
    check(st == 400 and json.loads(text)["error"]["param"] == param, "400 naming " + param, text)

sys.exit(1 if failed else 0)
