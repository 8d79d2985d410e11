#!/usr/bin/env python3
# serve_choices_check.py - driven by test_cluster_serve_choices.sh against a running server on
# tiny-v3 with two pipeline stages: n choices (one prefill, per-choice seeds, streamed by index),
# best_of (the n with the highest cumulative logprob), echo, POST /tokenize, POST /detokenize,
# GET /v1/models/{id}, and their authentication.
# Usage: serve_choices_check.py MODE(full|cluster) URL KEY MODEL_DIR MAX_CONTEXT
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

MODE, URL, KEY, MODEL_DIR, MAX_CONTEXT = sys.argv[1:6]
MODEL = "tiny-v3"
PROMPT = "the cat sat on the mat and the dog"
failed = 0


def check(cond, what, detail=""):
    global failed
    print(("ok: " if cond else "FAIL: ") + what + ("" if cond else " " + str(detail)))
    failed += 0 if cond else 1


def call(path, body=None, key=KEY, stream=False):
    """(status, parsed JSON or the list of SSE events)"""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            raw = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "{}")
    if not stream:
        return status, json.loads(raw)
    events = [l[6:] for l in raw.split("\n") if l.startswith("data: ")]
    assert events[-1] == "[DONE]", raw[-200:]
    return status, [json.loads(e) for e in events[:-1]]


def metric(name):
    req = urllib.request.Request(URL + "/metrics")
    text = urllib.request.urlopen(req, timeout=60).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def cmpl(**kw):
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 8}
    body.update(kw)
    st, r = call("/v1/completions", body)
    assert st == 200, (st, r)
    return r


def texts(r):
    return [c["text"] for c in sorted(r["choices"], key=lambda c: c["index"])]


def streamed(path, body):
    st, events = call(path, dict(body, stream=True), stream=True)
    assert st == 200, (st, events)
    out, finishes, usage = {}, {}, None
    for e in events:
        if e.get("usage"):
            usage = e["usage"]
        for c in e["choices"]:
            piece = c.get("text")
            if piece is None:
                piece = c.get("delta", {}).get("content") or ""
            out[c["index"]] = out.get(c["index"], "") + piece
            if c["finish_reason"] is not None:
                finishes[c["index"]] = finishes.get(c["index"], 0) + 1
    return out, finishes, usage


# ---- the prompt's tokens: /tokenize equals `dsinfer tokenize` ----
st, tok = call("/tokenize", {"model": MODEL, "prompt": PROMPT})
want = json.loads(subprocess.run(["dsinfer", "tokenize", "--model", MODEL_DIR, "--bos", "--json",
                                  "--text", PROMPT], capture_output=True, check=True).stdout)
check(st == 200 and tok["tokens"] == want["ids"] and tok["count"] == len(want["ids"]) and
      tok["max_model_len"] == int(MAX_CONTEXT), "/tokenize equals dsinfer tokenize", (tok, want))
P = len(want["ids"])

# ---- n = 3 at temperature 0: three identical choices, one prefill ----
one = texts(cmpl(temperature=0))[0]
pre0, sh0 = metric("dsinfer_prefill_tokens_total"), metric("dsinfer_prefix_shared_tokens_total")
r = cmpl(temperature=0, n=3)
pre1, sh1 = metric("dsinfer_prefill_tokens_total"), metric("dsinfer_prefix_shared_tokens_total")
check(texts(r) == [one] * 3, "n=3 at temperature 0: three choices equal to n=1's", texts(r))
check([c["index"] for c in r["choices"]] == [0, 1, 2], "choices indexed 0..2")
check(r["usage"]["prompt_tokens"] == P and r["usage"]["completion_tokens"] == 24,
      "usage: the prompt once, every generated token", r["usage"])
# The prompt is computed once: the two other choices copy its KV cache but for the last token.
check(pre1 - pre0 == P + 2 and sh1 - sh0 == 2 * (P - 1),
      "n=3 prefills the prompt once (%d + 2 tokens computed, %d copied)" % (P, 2 * (P - 1)),
      (pre1 - pre0, sh1 - sh0))
out, fin, usage = streamed("/v1/completions", {"model": MODEL, "prompt": PROMPT, "max_tokens": 8,
                                               "temperature": 0, "n": 3,
                                               "stream_options": {"include_usage": True}})
check(out == {0: one, 1: one, 2: one} and fin == {0: 1, 1: 1, 2: 1} and
      usage["completion_tokens"] == 24, "n=3 streamed: by index, one finish each", (out, fin))
chat = {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 6, "temperature": 0}
st, c1 = call("/v1/chat/completions", chat)
st3, c3 = call("/v1/chat/completions", dict(chat, n=3))
check(st == st3 == 200 and [c["message"]["content"] for c in c3["choices"]] ==
      [c1["choices"][0]["message"]["content"]] * 3, "chat n=3 at temperature 0", c3)
out, fin, _ = streamed("/v1/chat/completions", dict(chat, n=2))
check(out == {0: c1["choices"][0]["message"]["content"]} | {1: c1["choices"][0]["message"]["content"]}
      and fin == {0: 1, 1: 1}, "chat n=2 streamed by index", out)

if MODE == "cluster":
    sys.exit(1 if failed else 0)

# ---- n = 2 at temperature 1 with a seed: different, reproducible, choice i = seed + i ----
a = texts(cmpl(temperature=1, seed=7, n=2))
b = texts(cmpl(temperature=1, seed=7, n=2))
check(a[0] != a[1], "n=2 at temperature 1: the choices differ", a)
check(a == b, "n=2 with a seed is reproducible", (a, b))
s7, s8 = texts(cmpl(temperature=1, seed=7))[0], texts(cmpl(temperature=1, seed=8))[0]
check(a == [s7, s8], "choice i samples with seed + i (and its shared prompt equals a computed one)",
      (a, s7, s8))
out, fin, _ = streamed("/v1/completions", {"model": MODEL, "prompt": PROMPT, "max_tokens": 8,
                                           "temperature": 1, "seed": 7, "n": 2})
check(out == {0: a[0], 1: a[1]}, "n=2 streamed equals whole", out)

# ---- best_of: the n with the highest cumulative logprob ----
cand = cmpl(temperature=1, seed=11, n=4, logprobs=0)["choices"]
score = [sum(c["logprobs"]["token_logprobs"]) for c in cand]
rank = sorted(range(4), key=lambda i: (-score[i], i))
r = cmpl(temperature=1, seed=11, best_of=4, n=2)
check(texts(r) == [cand[rank[0]]["text"], cand[rank[1]]["text"]],
      "best_of=4, n=2: the two best by cumulative logprob, best first", (texts(r), score))
check(r["usage"]["completion_tokens"] == 32, "best_of: usage counts every generated choice",
      r["usage"])
r = cmpl(temperature=1, seed=11, best_of=4, logprobs=1)
check(texts(r) == [cand[rank[0]]["text"]] and len(r["choices"][0]["logprobs"]["tokens"]) == 8,
      "best_of=4 with logprobs returns the best choice's", texts(r))
st, e = call("/v1/completions", {"model": MODEL, "prompt": PROMPT, "best_of": 2, "stream": True})
check(st == 400 and e["error"]["param"] == "best_of", "best_of > n with stream: 400", e)

# ---- echo ----
plain = texts(cmpl(temperature=0))[0]
check(texts(cmpl(temperature=0, echo=True, n=2)) == [PROMPT + plain] * 2, "echo prepends the prompt")
out, _, _ = streamed("/v1/completions", {"model": MODEL, "prompt": PROMPT, "max_tokens": 8,
                                         "temperature": 0, "echo": True})
check(out == {0: PROMPT + plain}, "echo streamed: the prompt first", out)
st, e = call("/v1/completions", {"model": MODEL, "prompt": PROMPT, "echo": True, "logprobs": 1})
check(st == 400 and e["error"]["param"] == "echo" and e["error"]["code"] == "unsupported_parameter",
      "echo with logprobs: 400 unsupported_parameter", e)

# ---- bad values name the field ----
for body, param in [({"n": 0}, "n"), ({"n": 17}, "n"), ({"n": "2"}, "n"), ({"n": 1.5}, "n"),
                    ({"n": 3, "best_of": 2}, "best_of"), ({"best_of": 0}, "best_of"),
                    ({"echo": "yes"}, "echo")]:
    st, e = call("/v1/completions", dict({"model": MODEL, "prompt": PROMPT}, **body))
    check(st == 400 and e["error"]["param"] == param, "400 naming %s for %s" % (param, body), e)

# ---- /tokenize (messages), /detokenize ----
msgs = [{"role": "user", "content": "hello there"}]
st, t1 = call("/tokenize", {"model": MODEL, "messages": msgs})
st2, t0 = call("/tokenize", {"model": MODEL, "messages": msgs, "add_generation_prompt": False})
check(st == st2 == 200 and t0["count"] < t1["count"] and t1["tokens"][:t0["count"]] == t0["tokens"],
      "/tokenize messages: add_generation_prompt adds the assistant's opening", (t0, t1))
st, d = call("/detokenize", {"model": MODEL, "tokens": want["ids"]})
check(st == 200 and d["prompt"].endswith(PROMPT), "/detokenize gives the text back", d)
st, t = call("/tokenize", {"model": MODEL, "prompt": d["prompt"]})
check(t["tokens"] == want["ids"], "/tokenize of /detokenize's text round-trips", t)
for body, param in [({"tokens": [1, -1]}, "tokens[1]"), ({"tokens": "1"}, "tokens"),
                    ({"tokens": [100000000]}, "tokens"), ({}, "tokens")]:
    st, e = call("/detokenize", dict({"model": MODEL}, **body))
    check(st == 400 and e["error"]["param"] == param, "/detokenize 400 naming %s" % param, e)
st, e = call("/tokenize", {"model": "nope", "prompt": "x"})
check(st == 404 and e["error"]["code"] == "model_not_found", "/tokenize unknown model: 404", e)

# ---- /v1/models/{id} ----
st, m = call("/v1/models/" + MODEL)
check(st == 200 and m["id"] == MODEL and m["object"] == "model", "GET /v1/models/{id}", m)
st, e = call("/v1/models/nope")
check(st == 404 and e["error"]["code"] == "model_not_found" and e["error"]["param"] == "model" and
      e["error"]["type"] == "invalid_request_error", "GET /v1/models/{unknown}: 404", e)
for path, body in [("/v1/models/" + MODEL, None), ("/tokenize", {"model": MODEL, "prompt": "x"}),
                   ("/detokenize", {"model": MODEL, "tokens": [1]})]:
    st, e = call(path, body, key=None)
    check(st == 401, "%s without the key: 401" % path, (st, e))

# ---- a client that leaves mid-stream: every choice is cancelled, the nodes free them ----
import time
req = urllib.request.Request(URL + "/v1/completions", data=json.dumps(
    {"model": MODEL, "prompt": PROMPT, "max_tokens": 400, "ignore_eos": True, "n": 3,
     "stream": True}).encode(), method="POST")
req.add_header("Content-Type", "application/json")
req.add_header("Authorization", "Bearer " + KEY)
resp = urllib.request.urlopen(req, timeout=300)
resp.readline()
resp.close()
for _ in range(300):
    if metric("dsinfer_cluster_sequences") == 0:
        break
    time.sleep(0.1)
check(metric("dsinfer_cluster_sequences") == 0, "a client leaving cancels all n choices",
      metric("dsinfer_cluster_sequences"))
check(texts(cmpl(temperature=0, n=2)) == [one] * 2, "and the server goes on")

# ---- the official openai npm client ----
if os.environ.get("NPM_SCRIPT"):
    env = dict(os.environ, DSINFER_URL=URL, DSINFER_KEY=KEY, DSINFER_MODEL=MODEL, PROMPT=PROMPT)
    p = subprocess.run(["node", os.environ["NPM_SCRIPT"]], capture_output=True, text=True, env=env)
    check(p.returncode == 0, "openai npm client: n and best_of through its types",
          p.stderr[-2000:])
    if p.returncode == 0:
        got = json.loads(p.stdout)
        check(got["completion"] == a and got["stream"] == a, "openai client's choices equal curl's",
              got)
sys.exit(1 if failed else 0)
