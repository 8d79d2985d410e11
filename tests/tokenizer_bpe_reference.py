#!/usr/bin/env python3
"""An independent byte-level BPE encoder (Hugging Face `tokenizers` semantics for a Sequence of
Split(Isolated) pre-tokenizers, ByteLevel without regex, merges by rank), for
test_cli_tokenize_family.sh. It needs Python's `regex` module (Debian's python3-regex) for \\p{..}
classes.

V2_PRE is a pre-tokenizer in the shape of the DeepSeek-V2 family's tokenizer.json (the DeepSeek-LLM
tokenizer): six Isolated Splits ([\\r\\n]; an optional space and a run of letters; an optional
space and a run of punctuation; trailing whitespace; CJK runs; digit runs) then ByteLevel without
its regex. The letter class is abridged (the release's lists many more ranges, which could not be
reproduced exactly without the file); the structure, anchors and classes are the release's.

Usage: write SRC OUT (SRC's tokenizer.json with V2_PRE), or ids TOKENIZER TEXT (prints the ids).
"""
import json
import sys

import regex

V2_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "[\r\n]"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-Ֆ]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "\\s?[!-/:-~！-／：-～‘-‟　-。]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "\\s+$"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "[一-龥ࠀ-一가-퟿]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "\\p{N}+"}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}

def byte_table():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}

def split_isolated(pieces, pat):
    out = []
    for p in pieces:
        last = 0
        for m in regex.finditer(pat, p):
            if m.start() > last:
                out.append(p[last:m.start()])
            if m.end() > m.start():
                out.append(m.group())
            last = m.end()
        if last < len(p):
            out.append(p[last:])
    return out

def encode(tok, text):
    pieces = [text]
    for st in tok["pre_tokenizer"]["pretokenizers"]:
        if st["type"] == "Split":
            pieces = split_isolated(pieces, st["pattern"]["Regex"])
    bt = byte_table()
    vocab = tok["model"]["vocab"]
    ranks = {}
    for i, m in enumerate(tok["model"]["merges"]):
        a, b = m.split(" ") if isinstance(m, str) else m
        ranks[(a, b)] = i
    ids = []
    for p in pieces:
        word = [bt[b] for b in p.encode("utf-8")]
        while len(word) > 1:
            best = min(((ranks.get((word[i], word[i + 1]), 1 << 60), i) for i in range(len(word) - 1)))
            if best[0] == 1 << 60:
                break
            a, b = word[best[1]], word[best[1] + 1]
            nw, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    nw.append(a + b); i += 2
                else:
                    nw.append(word[i]); i += 1
            word = nw
        ids += [vocab[w] for w in word]
    return ids

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write":   # write SRC_TOKENIZER OUT_TOKENIZER
        t = json.load(open(sys.argv[2], encoding="utf-8"))
        t["pre_tokenizer"] = V2_PRE
        json.dump(t, open(sys.argv[3], "w", encoding="utf-8"), ensure_ascii=False)
    else:                # ids TOKENIZER TEXT
        t = json.load(open(sys.argv[2], encoding="utf-8"))
        print(json.dumps(encode(t, sys.argv[3])))
