#!/usr/bin/env python3
"""Writes the text and safetensors seed inputs of fuzz/corpus/. The binary protocol seeds come from
fuzz_seeds.c: run that first, fuzz_ctrl_conn's seeds are built from fuzz_ctrl_msg's.
Usage: fuzz/make_seeds.py [FIXTURES]. Its output is committed; run it again only when an input
format changes. Seeds are small: valid examples plus a few edge cases each."""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared", "fixtures")


def put(harness, name, data):
    os.makedirs(os.path.join(CORPUS, harness), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, harness, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, pad=0):
    """tensors: [(name, dtype, shape, data bytes)] laid out in order."""
    header, blobs, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs += data
        off += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * pad
    return struct.pack("<Q", len(text)) + text + blobs


# ---- safetensors ----
st = "fuzz_safetensors"
put(st, "two-tensors", safetensors([("a", "F32", [2, 2], bytes(16)), ("b", "BF16", [3], bytes(6))],
                                   {"format": "pt"}))
put(st, "every-dtype", safetensors([(d, d, [2], bytes(2 * s)) for d, s in
                                    [("F32", 4), ("F16", 2), ("BF16", 2), ("F8_E4M3", 1), ("F64", 8),
                                     ("I8", 1), ("U8", 1), ("I16", 2), ("I32", 4), ("I64", 8),
                                     ("BOOL", 1)]]))
put(st, "fp8-with-scale", safetensors([("w.weight", "F8_E4M3", [4, 8], bytes(32)),
                                       ("w.weight_scale_inv", "F32", [1, 1], bytes(4))], pad=5))
put(st, "empty-tensor", safetensors([("e", "F32", [0, 4], b""), ("s", "I64", [], bytes(8))]))
put(st, "empty-header", struct.pack("<Q", 2) + b"{}")
put(st, "header-too-long", struct.pack("<Q", 1 << 40) + b"{}")
put(st, "overlap", struct.pack("<Q", 86) +
    b'{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}'[:86]
    + bytes(4))
put(st, "short", b"\x02\x00\x00")

# ---- checkpoint (index --shard-- shard1 --shard-- shard2, config fixed in the harness) ----
ck = "fuzz_checkpoint"
s1 = safetensors([("model.embed_tokens.weight", "BF16", [4, 2], bytes(16)),
                  ("model.norm.weight", "BF16", [2], b"\x80\x3f\x80\x3f"),
                  ("model.layers.0.self_attn.q_a_proj.weight", "F8_E4M3", [3, 130], bytes(390)),
                  ("model.layers.0.self_attn.q_a_proj.weight_scale_inv", "F32", [1, 2], bytes(8))])
s2 = safetensors([("lm_head.weight", "F32", [2, 2], bytes(16)),
                  ("model.layers.1.mlp.gate.e_score_correction_bias", "F32", [3], bytes(12)),
                  ("model.layers.4.eh_proj.weight", "BF16", [2, 2], bytes(8))])
names1 = ["model.embed_tokens.weight", "model.norm.weight",
          "model.layers.0.self_attn.q_a_proj.weight", "model.layers.0.self_attn.q_a_proj.weight_scale_inv"]
names2 = ["lm_head.weight", "model.layers.1.mlp.gate.e_score_correction_bias",
          "model.layers.4.eh_proj.weight"]
wm = {n: "model-00001-of-00002.safetensors" for n in names1}
wm.update({n: "model-00002-of-00002.safetensors" for n in names2})
index = json.dumps({"metadata": {"total_size": 1}, "weight_map": wm}, indent=1).encode()
SEP = b"\n--shard--\n"
put(ck, "indexed-two-shards", index + SEP + s1 + SEP + s2)
put(ck, "single-file", b"--shard--\n" + s1)
wm_bad = dict(wm)
wm_bad["missing.weight"] = "model-00002-of-00002.safetensors"
put(ck, "index-lists-missing", json.dumps({"weight_map": wm_bad}).encode() + SEP + s1 + SEP + s2)
put(ck, "index-only", index)

# ---- config.json ----
cf = "fuzz_config"
for model in ["tiny-v3", "tiny-v3-mtp", "v2-tiny", "v2-lite-tiny", "deepseek-v3-671b"]:
    path = os.path.join(FIXTURES, model, "config.json")
    if os.path.exists(path):
        with open(path, "rb") as f:
            put(cf, model, f.read())
put(cf, "not-an-object", "[1, 2]")
put(cf, "empty", "")
put(cf, "q-lora-null", json.dumps({"vocab_size": 8, "hidden_size": 4, "intermediate_size": 4,
                                   "moe_intermediate_size": 2, "num_hidden_layers": 1,
                                   "first_k_dense_replace": 1, "n_routed_experts": 4,
                                   "n_shared_experts": 0, "num_experts_per_tok": 1, "n_group": 1,
                                   "topk_group": 1, "routed_scaling_factor": 1,
                                   "num_attention_heads": 1, "q_lora_rank": None, "kv_lora_rank": 2,
                                   "qk_nope_head_dim": 2, "qk_rope_head_dim": 2, "v_head_dim": 2,
                                   "rms_norm_eps": 1e-6, "max_position_embeddings": 16,
                                   "rope_scaling": None}))

# ---- HTTP ----
ht = "fuzz_http"
chat = json.dumps({"model": "deepseek-v3", "messages": [{"role": "user", "content": "Hi"}],
                   "max_tokens": 8})
put(ht, "post-chat", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    "Authorization: Bearer k\r\nContent-Length: %d\r\n\r\n%s" % (len(chat), chat))
put(ht, "get-models-pipelined", "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /health?x=1 HTTP/1.0\r\n\r\nGET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
put(ht, "chunked-completion", "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    "1a\r\n{\"model\":\"m\",\"prompt\":\"a\"}\r\n0\r\n\r\n")
put(ht, "expect-continue", "POST /v1/completions HTTP/1.1\r\nExpect: 100-continue\r\n"
    "Content-Length: 2\r\n\r\n{}")
put(ht, "expect-other", "POST /v1/completions HTTP/1.1\r\nExpect: nothing\r\nX-Empty:\r\n\r\n")
put(ht, "garbage", "GET\x00 / HTTP/9.9\r\n\r\n")

# ---- API bodies ----
ap = "fuzz_api"
put(ap, "chat-full", json.dumps({
    "model": "deepseek-v3", "stream": True, "stream_options": {"include_usage": True},
    "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "What is "},
                                              {"type": "text", "text": "2+2?"}]},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "c1", "type": "function",
                      "function": {"name": "add", "arguments": "{\"a\":2,\"b\":2}"}}]},
                 {"role": "tool", "tool_call_id": "c1", "content": "4"},
                 {"role": "assistant", "content": "4", "reasoning_content": "easy"}],
    "tools": [{"type": "function", "function": {"name": "add", "parameters": {}}}],
    "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 7, "max_tokens": 100,
    "stop": ["\n\n", "END"]}))
put(ap, "completion", json.dumps({"model": "m", "prompt": "Once upon", "max_tokens": 1,
                                  "temperature": 0, "stop": "x"}))
put(ap, "completion-prompt-array", json.dumps({"model": "m", "prompt": ["a"]}))
put(ap, "bad-types", '{"model": 1, "messages": {}, "temperature": "hot", "max_tokens": -1}')
put(ap, "nul-in-content", '{"model":"m","messages":[{"role":"user","content":"a\\u0000b"}]}')
put(ap, "bad-utf8", b'{"model":"m","prompt":"\xc3\x28"}')

# ---- tokenizer (plain texts; golden.json's texts when the fixtures are there) ----
tk = "fuzz_tokenizer"
golden = os.path.join(FIXTURES, "tokenizer", "golden.json")
texts = []
if os.path.exists(golden):
    with open(golden) as f:
        g = json.load(f)
    texts += [item["text"] for item in g.get("encode", [])]
texts += ["Hello, world! 12345 6789", "  leading spaces\r\n\ttabs\n\n",
          "<\uff5cbegin\u2581of\u2581sentence\uff5c>Hi<\uff5cUser\uff5c>x<\uff5cAssistant\uff5c>",
          "\u4e2d\u6587\u3068\u65e5\u672c\u8a9e\u30ab\u30bf\u30ab\u30ca",
          "emoji \U0001F600\u200d\U0001F469 \u0301combining", "x" * 300]
for i, t in enumerate(texts):
    put(tk, "text-%02d" % i, t)
put(tk, "invalid-utf8", b"ok \xff\xfe \xc3")
put(tk, "nul-bytes", b"a\x00b\x00\x00c")

# ---- chat messages ----
ch = "fuzz_chat"
put(ch, "system-user", json.dumps([{"role": "system", "content": "S"},
                                   {"role": "user", "content": "Hi"}]))
put(ch, "tools", json.dumps([
    {"role": "user", "content": "add 2 2"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 2}}},
        {"type": "function", "function": {"name": "mul", "arguments": "{}"}}]},
    {"role": "tool", "content": "4"}, {"role": "tool", "content": "x"},
    {"role": "assistant", "content": "done"}]))
put(ch, "r1-think", json.dumps([{"role": "user", "content": "q"},
                                {"role": "assistant", "content": "<think>r</think>\n\nanswer"},
                                {"role": "user", "content": [{"type": "text", "text": "more"}]}]))
put(ch, "tool-calls-array", json.dumps([{"type": "function", "function": {"name": "f",
                                                                         "arguments": "{}"}}]))
if os.path.exists(golden):
    for i, item in enumerate(g.get("chat", [])):
        put(ch, "golden-%02d" % i, json.dumps(item["messages"]))
put(ch, "missing-content", '[{"role":"user"}]')
put(ch, "other-role", '[{"role":"narrator","content":"x"},{"role":"user","content":""}]')

# ---- control connection: fuzz_ctrl_msg's frames (written by fuzz_seeds) behind a chunk-size byte ----
cm = os.path.join(CORPUS, "fuzz_ctrl_msg")
if os.path.isdir(cm):
    for name in sorted(os.listdir(cm)):
        with open(os.path.join(cm, name), "rb") as f:
            frames = f.read()
        put("fuzz_ctrl_conn", name, b"\x00" + frames)
        if name == "stream-hello-register-submit":
            put("fuzz_ctrl_conn", "stream-chunks-of-3", b"\x03" + frames)
        if name == "04-PLAN":
            put("fuzz_ctrl_conn", "plan-byte-by-byte", b"\x01" + frames)
# 17 well-framed bodies that are refused (an empty map): the connection closes after 16.
put("fuzz_ctrl_conn", "seventeen-refused", b"\x00" + (b"DSC\x01\x00\x00\x00\x01\x80") * 17)
