#!/usr/bin/env python3
"""Tool calling over HTTP against the API on its echo backend (tests/test_cli_api_tools.sh).

The echo backend answers with the words of the last message, so a user message holding a
DeepSeek-V3.1 tool call makes the "model" produce it. Checks, whole and streamed (raw SSE): the
calls land in message.tool_calls with finish_reason tool_calls, text before them is content,
streamed deltas (content and tool_calls) put together equal the whole response, no content delta
carries a marker; several calls; parallel_tool_calls false keeps the first; tool_choice none
leaves the text alone; a malformed block comes back as content; the round trip with the tool
result as role tool; tool_choice required / named accepted, their 400s. Usage: api_tools_check.py URL KEY.
"""
import json
import sys
import urllib.error
import urllib.request

URL, KEY = sys.argv[1], sys.argv[2]
CB, CE = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
C1, C2, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "search", "description": "Search",
                                           "parameters": {"type": "object"}}}]
failed = 0


def check(cond, what, detail=None):
    global failed
    print(("ok: " if cond else "FAIL: ") + what + ("" if cond else ": %r" % (detail,)))
    failed += 0 if cond else 1


def post(body, stream=False):
    body = dict({"model": "test-model", "tools": TOOLS}, **body)
    if stream:
        body["stream"] = True
    req = urllib.request.Request(URL + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json",
                                  "Authorization": "Bearer " + KEY})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def assemble(sse):
    """Content, tool calls and finish reason from the SSE chunks, as a client puts them together."""
    content, calls, finish, bad = "", [], None, False
    events = sse.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""], events[-3:]
    for e in events[:-2]:
        ch = json.loads(e[len("data: "):])["choices"][0]
        d = ch["delta"]
        if d.get("content"):
            bad |= "<｜" in d["content"]
            content += d["content"]
        for tc in d.get("tool_calls", []):
            if tc["index"] == len(calls):
                assert tc["function"]["arguments"] == "" and tc["type"] == "function", tc
                calls.append({"id": tc["id"], "type": "function",
                              "function": {"name": tc["function"]["name"], "arguments": ""}})
            else:
                assert tc["index"] == len(calls) - 1 and "id" not in tc, tc
                calls[-1]["function"]["arguments"] += tc["function"]["arguments"]
        finish = ch["finish_reason"] or finish
    return content, calls, finish, bad


def same_both_ways(body, what, markers_ok=False):
    """The whole response; the stream put together must equal it (ids aside)."""
    st, text = post(body)
    check(st == 200, what + ": 200", text)
    whole = json.loads(text)["choices"][0]
    st, sse = post(body, stream=True)
    content, calls, finish, bad = assemble(sse)
    strip = lambda cs: [{k: v for k, v in c.items() if k != "id"} for c in cs or []]
    check(content == (whole["message"]["content"] or ""), what + ": streamed content equals whole",
          (content, whole["message"]["content"]))
    check(strip(calls) == strip(whole["message"].get("tool_calls")),
          what + ": streamed tool_calls equal whole", (calls, whole["message"].get("tool_calls")))
    check(finish == whole["finish_reason"], what + ": same finish_reason",
          (finish, whole["finish_reason"]))
    if not markers_ok:
        check(not bad, what + ": no content delta carries a marker")
    return whole


def user(text):
    return {"messages": [{"role": "user", "content": text}]}


one = "Let me check. " + CB + C1 + "get_weather" + SEP + '{"city": "Paris"}' + C2 + CE
w = same_both_ways(user(one), "one call")
m = w["message"]
check(w["finish_reason"] == "tool_calls", "finish_reason tool_calls", w)
check(m["content"] == "Let me check. ", "text before the call is content", m)
calls = m.get("tool_calls") or []
check(len(calls) == 1 and calls[0]["function"]["name"] == "get_weather" and
      json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}, "the call", calls)

two = CB + C1 + "get_weather" + SEP + '{"city": "Rome"}' + C2 + C1 + "search" + SEP + \
    '{"q": "x y"}' + C2 + CE
w = same_both_ways(user(two), "two calls")
check(w["message"]["content"] is None, "content null when only calls", w)
check([c["function"]["name"] for c in w["message"].get("tool_calls", [])] ==
      ["get_weather", "search"], "both calls, in order", w)
ids = [c["id"] for c in w["message"].get("tool_calls", [])]
check(len(set(ids)) == 2, "distinct ids", ids)

w = same_both_ways(dict(user(two), parallel_tool_calls=False), "parallel_tool_calls false")
check(len(w["message"].get("tool_calls", [])) == 1, "one call only", w)

w = same_both_ways(dict(user(one), tool_choice="none"), "tool_choice none", markers_ok=True)
check(w["message"].get("tool_calls") is None and CB in w["message"]["content"] and
      w["finish_reason"] == "stop", "tool_choice none: the text as generated", w)

bad = "x " + CB + "oops no call"
w = same_both_ways(user(bad), "malformed block", markers_ok=True)
check(w["message"]["content"] == bad and w["message"].get("tool_calls") is None,
      "a malformed block comes back as content", w)

# The round trip: the call and its result go back in; the echo backend answers the result.
st, text = post({"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"}]})
check(st == 200 and json.loads(text)["choices"][0]["message"]["content"] == "18 C and sunny",
      "tool result in, answer out", text)

# required / named: accepted (the grammar that forces them is the engine's: the echo backend
# ignores it; tests/test_cluster_serve_tools.sh runs it on a model)
for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
    st, text = post(dict(user(one), tool_choice=choice))
    check(st == 200, "tool_choice %s accepted" % json.dumps(choice), text)
for body, param in (({"tool_choice": {"type": "function", "function": {"name": "nope"}}},
                     "tool_choice"),
                    ({"tool_choice": "required", "guided_choice": ["a"]}, "tool_choice")):
    st, text = post(dict(user("hi"), **body))
    err = json.loads(text).get("error", {})
    check(st == 400 and err.get("code") == "invalid_value" and err.get("param") == param,
          "%s -> 400 naming %s" % (json.dumps(body), param), text)

sys.exit(1 if failed else 0)
