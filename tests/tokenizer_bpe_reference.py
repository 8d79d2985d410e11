#!/usr/bin/env python3
"""An independent byte-level BPE encoder (Hugging Face `tokenizers` semantics for a Sequence of
Split(Isolated) pre-tokenizers, ByteLevel without regex, merges by rank), for
test_cli_tokenize_family.sh. It needs Python's `regex` module (Debian's python3-regex) for \\p{..}
classes.

V2_PRE is a pre-tokenizer in the shape of the DeepSeek-V2 family's tokenizer.json (the DeepSeek-LLM
tokenizer): six Isolated Splits ([\\r\\n]; an optional space and a run of letters; an optional
space and a run of punctuation; trailing whitespace; CJK runs; digit runs) then ByteLevel without
its regex. The letter class is the release's in full: every cased letter (Unicode categories
Lu, Ll and Lt) the tokenizer's authors listed, from Latin to Adlam, written here with \\u escapes.

Usage: write SRC OUT (SRC's tokenizer.json with V2_PRE), or ids TOKENIZER TEXT (prints the ids).
"""
import json
import sys

import regex

V2_PRE = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "[\r\n]"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"}, "behavior": "Isolated", "invert": False},
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
