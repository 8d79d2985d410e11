#!/usr/bin/env python3
# serve_params_ref.py - driven by test_cluster_serve_params.sh: requests to a running
# `dsinfer serve` whose last stage dumps each step's raw logits (DSINFER_LOGITS_DIR), and a
# reference of the sampling controls applied to those dumps (float32 arithmetic, as the node does:
# logit_bias added; EOS and stop ids masked below min_tokens; HF repetition penalty over prompt +
# output; OpenAI frequency and presence penalties over the output; greedy = lowest id of the
# largest logit). Usage: serve_params_ref.py LOGITS_DIR PROMPT IDS_JSON NPM_SCRIPT
import json
import math
import os
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter

LOGITS, PROMPT, IDS, NPM_SCRIPT = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])["ids"], sys.argv[4]
URL = os.environ["DSINFER_URL"]
FX = os.environ["DSINFER_FIXTURES"]
CFG = json.load(open(os.path.join(FX, "tiny-v3", "config.json")))
V, EOS = CFG["vocab_size"], CFG["eos_token_id"]
failed = 0


def check(cond, what, detail=""):
    global failed
    if cond:
        print("ok:", what)
    else:
        failed += 1
        print("FAIL:", what, detail)


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


# ---- the tokenizer's exact bytes per id (byte-level BPE, special tokens as written) ----
def byte_level_inverse():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


TOK = json.load(open(os.path.join(FX, "tiny-v3", "tokenizer.json"), encoding="utf-8"))
INV = byte_level_inverse()
TOKEN_BYTES = {}
for s, i in TOK["model"]["vocab"].items():
    TOKEN_BYTES[i] = bytes(INV[ch] if ch in INV else 0 for ch in s) if all(ch in INV for ch in s) \
        else s.encode()
for a in TOK.get("added_tokens", []):
    TOKEN_BYTES[a["id"]] = a["content"].encode()


# ---- HTTP ----
def post(path, body):
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def dumps():
    return {f: os.path.getsize(os.path.join(LOGITS, f)) for f in os.listdir(LOGITS)}


def generate(path, body):
    """Response JSON (or SSE events) and the raw logit rows the last stage dumped for it."""
    before = dumps()
    status, text = post(path, body)
    after = dumps()
    new = [f for f in after if before.get(f) != after[f]]
    rows = []
    if len(new) == 1:
        raw = open(os.path.join(LOGITS, new[0]), "rb").read()
        vals = struct.unpack("<%df" % (len(raw) // 4), raw)
        rows = [list(vals[i:i + V]) for i in range(0, len(vals), V)]
    return status, text, rows


def log_softmax(row):
    m = max(row)
    z = m + math.log(sum(math.exp(x - m) for x in row))
    return [x - z for x in row]


def argmax(l):
    best = 0
    for i in range(1, len(l)):
        if l[i] > l[best]:
            best = i
    return best


def process(row, prompt, out, c):
    l = list(row)
    for k, v in c.get("logit_bias", {}).items():
        l[int(k)] = f32(l[int(k)] + f32(v))
    stops = c.get("stop_token_ids", [])
    if len(out) < c.get("min_tokens", 0):
        for t in [EOS] + stops:
            l[t] = -math.inf
    rp = f32(c.get("repetition_penalty", 1.0))
    fp, pp = f32(c.get("frequency_penalty", 0.0)), f32(c.get("presence_penalty", 0.0))
    counts, seen = Counter(out), set(prompt) | set(out)
    for t in seen:
        x = l[t]
        if rp != 1.0:
            x = f32(x / rp) if x > 0 else f32(x * rp)
        x = f32(x - f32(fp * counts[t]))
        if counts[t] > 0:
            x = f32(x - pp)
        l[t] = x
    return l


def reference(rows, prompt, c, max_tokens):
    """The greedy tokens and finish reason the controls give on these raw rows."""
    out = []
    for row in rows:
        tok = argmax(process(row, prompt, out, c))
        out.append(tok)
        if (tok == EOS and not c.get("ignore_eos")) or tok in c.get("stop_token_ids", []):
            return out, "stop"
        if len(out) >= max_tokens:
            return out, "length"
    return out, None


def check_completion(name, controls, max_tokens=12, expect_finish=None, expect_n=None):
    body = {"model": "tiny-v3", "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0,
            "logprobs": 3}
    body.update(controls)
    status, text, rows = generate("/v1/completions", body)
    if status != 200:
        check(False, name, text)
        return None
    d = json.loads(text)
    ch = d["choices"][0]
    lp = ch["logprobs"]
    ref, finish = reference(rows, IDS, controls, max_tokens)
    check(len(rows) == len(lp["tokens"]) == d["usage"]["completion_tokens"],
          f"{name}: one dumped row per token", (len(rows), len(lp["tokens"])))
    check(finish == ch["finish_reason"], f"{name}: finish '{ch['finish_reason']}' as the reference",
          finish)
    if expect_finish is not None:
        check(ch["finish_reason"] == expect_finish, f"{name}: finish {expect_finish}")
    if expect_n is not None:
        check(len(ref) == expect_n, f"{name}: {expect_n} tokens", len(ref))
    ok_tok, ok_top = True, True
    for t, row in enumerate(rows):
        lsm = log_softmax(row)
        if t >= len(ref) or abs(lp["token_logprobs"][t] - lsm[ref[t]]) > 1e-4:
            ok_tok = False
        top = sorted(lsm, reverse=True)[:3]
        vals = list(lp["top_logprobs"][t].values())
        if not vals or any(min(abs(v - x) for x in top) > 1e-4 for v in vals):
            ok_top = False
    check(ok_tok, f"{name}: every token is the reference's (its logprob of the raw row)")
    check(ok_top, f"{name}: top_logprobs are the raw row's 3 most likely")
    return ref, d


# ---- the controls against the reference ----
# The fixture's greedy text repeats itself after about 25 tokens: 40 show what penalties change.
base, _ = check_completion("baseline", {}, max_tokens=40)
for name, c in [("presence_penalty", {"presence_penalty": 2.0}),
                ("frequency_penalty", {"frequency_penalty": 1.5}),
                ("repetition_penalty", {"repetition_penalty": 3.0}),
                ("penalties combined", {"presence_penalty": -0.5, "frequency_penalty": 1.2,
                                        "repetition_penalty": 2.0}),
                ("logit_bias", {"logit_bias": {str(base[0]): -100, str(base[1]): 3.0}})]:
    r = check_completion(name, c, max_tokens=40)
    check(r is not None and r[0] != base, f"{name}: changes the output")
check_completion("logit_bias EOS", {"logit_bias": {str(EOS): 100}}, expect_finish="stop",
                 expect_n=1)
check_completion("min_tokens", {"min_tokens": 4, "logit_bias": {str(EOS): 100}},
                 expect_finish="stop", expect_n=5)
check_completion("ignore_eos", {"ignore_eos": True, "logit_bias": {str(EOS): 100}}, max_tokens=6,
                 expect_finish="length", expect_n=6)
r = check_completion("stop_token_ids", {"stop_token_ids": [base[3]]}, expect_finish="stop")
if r is not None:
    check(len(r[0]) == base.index(base[3]) + 1, "stop_token_ids: ends at the stop token")
check_completion("stop_token_ids under min_tokens",
                 {"stop_token_ids": [base[0], base[1]], "min_tokens": 2})
check_completion("min_p 1 (only the most likely token)",
                 {"min_p": 1.0, "temperature": 1.5, "seed": 3})

# ---- chat logprobs: bytes of the right tokens, whole and streamed ----
chat = {"model": "tiny-v3", "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 5}
status, text, rows = generate("/v1/chat/completions", chat)
d = json.loads(text)
content = d["choices"][0]["logprobs"]["content"]
ok = len(content) == len(rows) > 0
for e, row in zip(content, rows):
    lsm = log_softmax(row)
    order = sorted(range(V), key=lambda i: (-row[i], i))
    ok &= bytes(e["bytes"]) == TOKEN_BYTES[order[0]] and abs(e["logprob"] - lsm[order[0]]) < 1e-4
    ok &= len(e["top_logprobs"]) == 5
    for j, t in enumerate(e["top_logprobs"]):
        ok &= bytes(t["bytes"]) == TOKEN_BYTES[order[j]] and abs(t["logprob"] - lsm[order[j]]) < 1e-4
check(status == 200 and ok, "chat logprobs: token bytes and logprobs of the dumped rows, top 5",
      text[:300])
status, sse, _ = generate("/v1/chat/completions", dict(chat, stream=True))
streamed = []
for ev in sse.split("\n\n"):
    if ev.startswith("data: {"):
        c = json.loads(ev[6:])["choices"]
        if c and c[0].get("logprobs"):
            streamed += c[0]["logprobs"]["content"]
check(streamed == content, "chat logprobs streamed equal the whole response's")
cmpl = {"model": "tiny-v3", "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "logprobs": 2}
whole = json.loads(post("/v1/completions", cmpl)[1])["choices"][0]["logprobs"]
sse = post("/v1/completions", dict(cmpl, stream=True))[1]
acc = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
for ev in sse.split("\n\n"):
    if ev.startswith("data: {"):
        c = json.loads(ev[6:])["choices"]
        if c and c[0].get("logprobs"):
            for k in acc:
                acc[k] += c[0]["logprobs"][k]
check(acc == whole, "completion logprobs streamed equal the whole response's", (acc, whole))

# ---- generation_config.json: temperature 0.6, top_p 0.95 when the request gives none ----
def sampled(extra):
    body = {"model": "tiny-v3", "prompt": PROMPT, "max_tokens": 16, "seed": 11, "logprobs": 0}
    body.update(extra)
    return json.loads(post("/v1/completions", body)[1])["choices"][0]["logprobs"]["token_logprobs"]


default = sampled({})
check(default == sampled({"temperature": 0.6, "top_p": 0.95}),
      "no temperature / top_p: generation_config.json's 0.6 / 0.95")
check(default != sampled({"temperature": 1.0, "top_p": 1.0}), "and not OpenAI's 1 / 1")

# ---- refusals name the field ----
MSG = [{"role": "user", "content": "hi"}]
refusals = [("/v1/chat/completions", {"n": 17}, "n", "invalid_value"),
            ("/v1/chat/completions", {"tools": [{"type": "function", "function": {}}]},
             "tools[0].function.name", "invalid_type"),
            ("/v1/chat/completions", {"tool_choice": "required"}, "tool_choice", "invalid_value"),
            ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {
                "name": "x", "schema": {"type": "object", "not": {}}}}},
             "response_format.json_schema.schema", "unsupported_parameter"),
            ("/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
            ("/v1/chat/completions", {"function_call": "auto"}, "function_call", "unsupported_parameter"),
            ("/v1/chat/completions", {"audio": {"voice": "x"}}, "audio", "unsupported_parameter"),
            ("/v1/chat/completions", {"modalities": ["audio"]}, "modalities", "unsupported_parameter"),
            ("/v1/chat/completions", {"prediction": {"type": "content"}}, "prediction",
             "unsupported_parameter"),
            ("/v1/chat/completions", {"web_search_options": {}}, "web_search_options",
             "unsupported_parameter"),
            ("/v1/chat/completions", {"reasoning_effort": "high"}, "reasoning_effort",
             "unsupported_parameter"),
            ("/v1/chat/completions", {"verbosity": "low"}, "verbosity", "unsupported_parameter"),
            ("/v1/completions", {"best_of": 3, "stream": True}, "best_of", "invalid_value"),
            ("/v1/completions", {"echo": True, "logprobs": 1}, "echo", "unsupported_parameter"),
            ("/v1/completions", {"suffix": "x"}, "suffix", "unsupported_parameter"),
            ("/v1/completions", {"n": 0}, "n", "invalid_value"),
            ("/v1/completions", {"presence_penalty": 2.5}, "presence_penalty", "invalid_value"),
            ("/v1/completions", {"frequency_penalty": "x"}, "frequency_penalty", "invalid_type"),
            ("/v1/completions", {"repetition_penalty": 0}, "repetition_penalty", "invalid_value"),
            ("/v1/completions", {"min_p": 2}, "min_p", "invalid_value"),
            ("/v1/completions", {"min_tokens": -1}, "min_tokens", "invalid_value"),
            ("/v1/completions", {"logprobs": 21}, "logprobs", "invalid_value"),
            ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 30}, "top_logprobs",
             "invalid_value"),
            ("/v1/completions", {"logit_bias": {"5000": 1}}, "logit_bias", "invalid_value"),
            ("/v1/completions", {"logit_bias": {"3": 200}}, "logit_bias.3", "invalid_value"),
            ("/v1/completions", {"stop_token_ids": [4096]}, "stop_token_ids", "invalid_value")]
for path, extra, param, code in refusals:
    body = {"model": "tiny-v3", "max_tokens": 2}
    body.update({"messages": MSG} if "chat" in path else {"prompt": "hi"})
    body.update(extra)
    status, text = post(path, body)
    err = json.loads(text).get("error", {}) if text.startswith("{") else {}
    check(status == 400 and err.get("param") == param and err.get("code") == code,
          f"{path} {json.dumps(extra)}: 400 {code} naming '{param}'", (status, text))

# ---- outside the spec: accepted, counted by name ----
for _ in range(2):
    status, _ = post("/v1/completions", {"model": "tiny-v3", "prompt": "hi", "max_tokens": 1,
                                         "guided_whatever": {"x": 1}, "user": "u"})
    check(status == 200, "a field outside the spec is accepted")
metrics = urllib.request.urlopen(URL + "/metrics", timeout=30).read().decode()
check('dsinfer_api_unknown_parameters_total{name="guided_whatever"} 2' in metrics,
      "and counted in /metrics by name")
check('name="user"' not in metrics, "harmless spec fields are not counted")

# ---- the official openai npm client, typed logprobs ----
if os.environ.get("NPM_OK") == "1":
    out = subprocess.run(["node", NPM_SCRIPT], capture_output=True, text=True,
                         env=dict(os.environ, DSINFER_MODEL="tiny-v3", PROMPT=PROMPT), timeout=300)
    try:
        got = json.loads(out.stdout)
    except ValueError:
        got = None
    chat_ref = json.loads(post("/v1/chat/completions", dict(chat, max_tokens=5, top_logprobs=2))[1])
    cmpl_ref = json.loads(post("/v1/completions", dict(cmpl, max_tokens=5))[1])
    check(got is not None and got["chat"] == chat_ref["choices"][0]["logprobs"]["content"] and
          got["completion"] == cmpl_ref["choices"][0]["logprobs"],
          "the openai npm client reads the same logprobs (chat and completions)", out.stderr[-500:])
else:
    print("SKIPPED (part): the openai npm client")

print("FAILED" if failed else "all passed")
sys.exit(1 if failed else 0)
