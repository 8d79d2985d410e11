#!/usr/bin/env python3
# serve_batch_check.py - driven by test_cluster_serve_batch.sh against `dsinfer serve` on tiny-v3
# (--max-prompts 4, --max-queue 8): /v1/completions with `prompt` as an array of strings, an
# array of token ids and an array of token-id arrays. Every batched choice equals the same prompt
# sent alone at temperature 0 (text, finish reason, logprobs), with n, echo, logprobs, stop,
# guided_choice and best_of, whole and streamed; indexes are prompt * n + choice and usage is
# summed; /tokenize gives token-id prompts back as they are; bad batches get 400 naming the
# element. Usage: serve_batch_check.py URL MODEL_DIR
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

URL, MODEL_DIR = sys.argv[1:3]
MODEL = "tiny-v3"
PROMPTS = ["the cat sat on the mat and the dog", "once upon a time", "hello"]
failed = 0


def check(cond, what, detail=""):
    global failed
    print(("ok: " if cond else "FAIL: ") + what + ("" if cond else " " + str(detail)[:2000]))
    failed += 0 if cond else 1


def call(path, body, stream=False):
    """(status, parsed JSON or the list of SSE events)"""
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            raw = r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode() or "{}")
    if not stream:
        return 200, json.loads(raw)
    events = [l[6:] for l in raw.split("\n") if l.startswith("data: ")]
    assert events[-1] == "[DONE]", raw[-200:]
    return 200, [json.loads(e) for e in events[:-1]]


def cmpl(prompt, **kw):
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 0}
    body.update(kw)
    st, r = call("/v1/completions", body)
    assert st == 200, (st, r)
    return r


def shape(c):
    """What must be equal between a batched choice and the prompt alone."""
    return {"text": c["text"], "finish_reason": c["finish_reason"], "logprobs": c["logprobs"]}


def streamed(body):
    st, events = call("/v1/completions", dict(body, stream=True), stream=True)
    assert st == 200, (st, events)
    out, fin, usage = {}, {}, None
    for e in events:
        usage = e.get("usage") or usage
        for c in e["choices"]:
            out[c["index"]] = out.get(c["index"], "") + c["text"]
            if c["finish_reason"] is not None:
                fin[c["index"]] = c["finish_reason"]
    return out, fin, usage


# ---- the prompts' token ids: /tokenize, and a token-id prompt comes back as it is ----
IDS = []
for p in PROMPTS:
    st, t = call("/tokenize", {"model": MODEL, "prompt": p})
    assert st == 200, t
    IDS.append(t["tokens"])
    st, t2 = call("/tokenize", {"model": MODEL, "prompt": t["tokens"]})
    check(st == 200 and t2["tokens"] == t["tokens"], "/tokenize of token ids gives them back", t2)
want = json.loads(subprocess.run(["dsinfer", "tokenize", "--model", MODEL_DIR, "--bos", "--json",
                                  "--text", PROMPTS[0]], capture_output=True, check=True).stdout)
check(IDS[0] == want["ids"], "/tokenize equals dsinfer tokenize", (IDS[0], want))
st, e = call("/tokenize", {"model": MODEL, "prompt": PROMPTS[:2]})
check(st == 400 and e["error"]["param"] == "prompt", "/tokenize of a batch: 400 naming prompt", e)
st, d = call("/detokenize", {"model": MODEL, "tokens": IDS[1]})
check(st == 200 and d["prompt"].endswith(PROMPTS[1]), "/detokenize of the ids gives the text", d)

# ---- every form against each prompt alone, for several parameter sets ----
CASES = [
    {},
    {"n": 2},
    {"logprobs": 2},
    {"stop": [" the"]},
    {"guided_choice": ["yes", "no", "maybe"]},
    {"echo": True, "n": 2},
    {"best_of": 2},
    {"max_tokens": 3, "ignore_eos": True},
]
for kw in CASES:
    n = kw.get("n", 1)
    alone_text = [cmpl(p, **kw) for p in PROMPTS]
    alone_ids = [cmpl(ids, **kw) for ids in IDS]
    for form, prompt, alone in [("strings", PROMPTS, alone_text), ("token-id arrays", IDS, alone_ids)]:
        r = cmpl(prompt, **kw)
        got = sorted(r["choices"], key=lambda c: c["index"])
        check([c["index"] for c in r["choices"]] == list(range(len(PROMPTS) * n)),
              "%s %s: indexes 0..%d in order" % (form, kw, len(PROMPTS) * n - 1),
              [c["index"] for c in r["choices"]])
        wantc = [shape(c) for a in alone for c in sorted(a["choices"], key=lambda c: c["index"])]
        check([shape(c) for c in got] == wantc,
              "%s %s: each choice equals its prompt alone" % (form, kw), ([shape(c) for c in got], wantc))
        usage = {k: sum(a["usage"][k] for a in alone) for k in ("prompt_tokens", "completion_tokens")}
        check(r["usage"]["prompt_tokens"] == usage["prompt_tokens"] and
              r["usage"]["completion_tokens"] == usage["completion_tokens"] and
              r["usage"]["total_tokens"] == sum(usage.values()),
              "%s %s: usage summed over the prompts" % (form, kw), (r["usage"], usage))
    # A token-id prompt alone is the text prompt (the text's ids begin with BOS).
    if not kw.get("echo"):
        check([shape(c) for a in alone_ids for c in a["choices"]] ==
              [shape(c) for a in alone_text for c in a["choices"]],
              "%s: a prompt as its token ids equals it as text" % kw)
    else:
        for p, a in enumerate(alone_ids):
            st, d = call("/detokenize", {"model": MODEL, "tokens": IDS[p]})
            plain = alone_text[p]["choices"][0]["text"][len(PROMPTS[p]):]
            check(a["choices"][0]["text"] == d["prompt"] + plain,
                  "echo of token ids: the detokenized prompt first", (a["choices"][0], d))
    if "best_of" in kw:
        continue
    body = dict({"model": MODEL, "prompt": PROMPTS, "max_tokens": 8, "temperature": 0,
                 "stream_options": {"include_usage": True}}, **kw)
    out, fin, usage = streamed(body)
    wantt = {p * n + i: c["text"] for p, a in enumerate(alone_text)
             for i, c in enumerate(sorted(a["choices"], key=lambda c: c["index"]))}
    wantf = {p * n + i: c["finish_reason"] for p, a in enumerate(alone_text)
             for i, c in enumerate(sorted(a["choices"], key=lambda c: c["index"]))}
    check(out == wantt and fin == wantf, "streamed %s: each index equals its prompt alone" % kw,
          (out, wantt, fin))
    check(usage["completion_tokens"] == sum(a["usage"]["completion_tokens"] for a in alone_text),
          "streamed %s: usage summed" % kw, usage)

# A batch of one is that prompt; one token-id prompt as a batch of one token-id array.
one = cmpl(PROMPTS[1])["choices"][0]["text"]
check(cmpl([PROMPTS[1]])["choices"][0]["text"] == one, "a batch of one string")
check(cmpl([IDS[1]])["choices"][0]["text"] == one, "a batch of one token-id array")

# ---- bad batches: 400 naming what is wrong ----
VOCAB = json.load(open(os.path.join(MODEL_DIR, "config.json")))["vocab_size"]
BAD = [
    ("", "prompt", "invalid_value"),
    ([], "prompt", "invalid_value"),
    (["a", ""], "prompt[1]", "invalid_value"),
    ([[1], []], "prompt[1]", "invalid_value"),
    (["a", 5], "prompt[1]", "invalid_type"),
    ([5, "a"], "prompt[1]", "invalid_type"),
    ([[5], "a"], "prompt[1]", "invalid_type"),
    ([[5, "a"]], "prompt[0][1]", "invalid_type"),
    ([1, -2], "prompt[1]", "invalid_value"),
    ([1, VOCAB], "prompt[1]", "invalid_value"),
    ([[1, 2], [3, 4, VOCAB + 7]], "prompt[1][2]", "invalid_value"),
    (["a", "b", "c", "d", "e"], "prompt", "invalid_value"),  # --max-prompts 4
    ({"p": 1}, "prompt", "invalid_type"),
]
for prompt, param, code in BAD:
    st, e = call("/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 2})
    check(st == 400 and e["error"]["param"] == param and e["error"]["code"] == code,
          "prompt %s: 400 %s naming %s" % (json.dumps(prompt)[:40], code, param), (st, e))
st, e = call("/v1/completions", {"model": MODEL, "prompt": PROMPTS, "n": 3, "max_tokens": 2})
check(st == 400 and e["error"]["param"] == "prompt" and "max-queue" in e["error"]["message"],
      "3 prompts x n=3 over --max-queue 8: 400 naming prompt", e)
st, e = call("/tokenize", {"model": MODEL, "prompt": [1, VOCAB]})
check(st == 400 and e["error"]["param"] == "prompt[1]", "/tokenize of an id outside: 400", e)
long_ids = [IDS[0][0]] + [IDS[0][1]] * 600
st, e = call("/v1/completions", {"model": MODEL, "prompt": [IDS[0], long_ids], "max_tokens": 2})
check(st == 400 and e["error"]["param"] == "prompt[1]" and
      e["error"]["code"] == "context_length_exceeded", "a batch's prompt over the context: 400 "
      "naming it", e)
check(cmpl(PROMPTS[1])["choices"][0]["text"] == one, "and the server goes on")

# ---- the official openai npm client ----
if os.environ.get("NPM_SCRIPT"):
    env = dict(os.environ, DSINFER_URL=URL, DSINFER_MODEL=MODEL, PROMPTS=json.dumps(PROMPTS),
               IDS=json.dumps(IDS))
    p = subprocess.run(["node", os.environ["NPM_SCRIPT"]], capture_output=True, text=True, env=env)
    check(p.returncode == 0, "openai npm client: batches through its types", p.stderr[-2000:])
    if p.returncode == 0:
        got = json.loads(p.stdout)
        alone = [c["text"] for p_ in PROMPTS for c in cmpl(p_, n=2)["choices"]]
        check(got["strings"] == alone and got["ids"] == alone and got["stream"] == alone,
              "openai client's batched choices equal each prompt alone", (got, alone))
sys.exit(1 if failed else 0)
