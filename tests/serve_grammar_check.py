#!/usr/bin/env python3
"""serve_grammar_check.py URL [quick]: structured output through the OpenAI API of a running
server (tests/test_cluster_serve_grammar.sh). At temperature 1 with a random-weight model, every
answer must follow its constraint: response_format json_schema (chat, whole and streamed) parses
and validates with jsonschema, json_object parses to an object, guided_json on completions,
guided_choice is one of the choices, guided_regex matches; an unsupported schema keyword is a 400
naming it. `quick`: only one json_schema request (the coordinator run)."""
import json
import re
import sys
import urllib.error
import urllib.request

import jsonschema

URL = sys.argv[1]
QUICK = len(sys.argv) > 2 and sys.argv[2] == "quick"
FAILS = []

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 2},
        "score": {"type": "number", "minimum": -5, "maximum": 5},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}


def post(path, body, stream=False):
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            raw = r.read().decode()
            return r.status, raw
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def content_of(status, raw, chat, stream):
    if status != 200:
        raise AssertionError(f"HTTP {status}: {raw[:300]}")
    if not stream:
        c = json.loads(raw)["choices"][0]
        return (c["message"]["content"] if chat else c["text"]), c["finish_reason"]
    text, finish = "", None
    for line in raw.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ch = json.loads(line[6:])["choices"]
        if not ch:
            continue
        d = ch[0]
        text += (d.get("delta", {}).get("content") or "") if chat else (d.get("text") or "")
        finish = d.get("finish_reason") or finish
    return text, finish


def check(name, fn):
    try:
        fn()
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - any failure is reported
        print(f"FAIL {name}: {e}")
        FAILS.append(name)


def chat_body(extra, seed):
    b = {"model": "tiny-v3", "messages": [{"role": "user", "content": "Describe a user as JSON."}],
         "temperature": 1, "seed": seed, "max_tokens": 400}
    b.update(extra)
    return b


def json_schema(stream, seed):
    def run():
        body = chat_body({"response_format": {"type": "json_schema", "json_schema": {
            "name": "user", "schema": SCHEMA, "strict": True}}, "stream": stream}, seed)
        text, finish = content_of(*post("/v1/chat/completions", body), True, stream)
        assert finish == "stop", f"finish {finish}, content {text!r}"
        jsonschema.validate(json.loads(text), SCHEMA)
    return run


def json_object():
    text, finish = content_of(*post("/v1/chat/completions", chat_body(
        {"response_format": {"type": "json_object"}, "max_tokens": 900}, 5)), True, False)
    if finish == "stop":
        assert isinstance(json.loads(text), dict), text
    else:  # a free-form object may run long at temperature 1: a prefix of one
        assert text.startswith("{"), text


def completions_guided_json(stream):
    def run():
        body = {"model": "tiny-v3", "prompt": "JSON:", "temperature": 1, "seed": 9,
                "max_tokens": 400, "guided_json": SCHEMA, "stream": stream}
        text, finish = content_of(*post("/v1/completions", body), False, stream)
        assert finish == "stop", f"finish {finish}, text {text!r}"
        jsonschema.validate(json.loads(text), SCHEMA)
    return run


def guided_choice():
    choices = ["red", "green", "blue", "a longer answer"]
    for seed in range(3):
        text, finish = content_of(*post("/v1/chat/completions", chat_body(
            {"guided_choice": choices}, seed)), True, False)
        assert text in choices and finish == "stop", (text, finish)


def guided_regex():
    rx = r"[A-Z][a-z]{1,6} [0-9]{3}-[0-9]{4}( (ok|fail))?"
    for stream in (False, True):
        body = {"model": "tiny-v3", "prompt": "Name and number:", "temperature": 1, "seed": 4,
                "max_tokens": 50, "guided_regex": rx, "stream": stream}
        text, finish = content_of(*post("/v1/completions", body), False, stream)
        assert re.fullmatch(rx, text) and finish == "stop", (text, finish)


def unsupported():
    bad = {"type": "object", "properties": {"a": {"type": "string"}},
           "patternProperties": {"^x": {"type": "integer"}}}
    status, raw = post("/v1/chat/completions", chat_body({"response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": bad}}}, 1))
    assert status == 400, (status, raw)
    err = json.loads(raw)["error"]
    assert "patternProperties" in err["message"], err
    assert err["param"] == "response_format.json_schema.schema", err
    status, raw = post("/v1/completions", {"model": "tiny-v3", "prompt": "x",
                                           "guided_regex": "(?=a)b"})
    assert status == 400 and json.loads(raw)["error"]["param"] == "guided_regex", (status, raw)


check("json_schema chat", json_schema(False, 1))
if not QUICK:
    check("json_schema chat streamed", json_schema(True, 2))
    check("json_schema chat, another seed", json_schema(False, 3))
    check("json_object", json_object)
    check("guided_json completions", completions_guided_json(False))
    check("guided_json completions streamed", completions_guided_json(True))
    check("guided_choice", guided_choice)
    check("guided_regex", guided_regex)
    check("unsupported keyword: 400 naming it", unsupported)
sys.exit(1 if FAILS else 0)
