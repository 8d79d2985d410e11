#!/usr/bin/env python3
"""Writes scripts/sample-chats.jsonl: synthetic chats in the ShareGPT layout for
`dsinfer bench serve --dataset` (one JSON object per line with "id" and "conversations", turns
{"from": "human"|"gpt", "value": ...}). Made up from a seeded generator, nothing downloaded: the
lengths imitate a chat workload (short to long questions, answers a few to several times longer),
the words mean nothing. Usage: scripts/make-sample-chats.py [N (default 100)] [SEED (default 1)]"""
import json
import os
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
topics = ["rivers", "compilers", "bread", "orbits", "gardens", "databases", "violins", "tides",
          "bridges", "proteins", "markets", "glaciers", "printers", "migration", "poetry", "caches"]
openers = ["Explain how", "Why do", "Write a short note about", "Compare two kinds of",
           "What should a beginner know about", "Summarise the history of", "List the risks of"]
filler = ("the a of and to in is that for it as with on by this be are from at or an which "
          "when where how many more most some such each other time work system part way "
          "water light sound energy model value order level point line group number").split()


def sentence(words):
    return " ".join(rng.choice(filler) for _ in range(words)).capitalize() + "."


def text(words):
    out, left = [], words
    while left > 0:
        k = min(left, rng.randint(6, 18))
        out.append(sentence(k))
        left -= k
    return " ".join(out)


path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample-chats.jsonl")
with open(path, "w") as f:
    for i in range(n):
        topic = rng.choice(topics)
        # question lengths: mostly short, a long tail (context pasted into the question)
        q = min(int(rng.lognormvariate(3.3, 0.8)), 400)
        a = min(int(q * rng.uniform(0.8, 4.0)) + rng.randint(8, 40), 300)
        turns = [{"from": "human", "value": f"{rng.choice(openers)} {topic}. {text(q)}"},
                 {"from": "gpt", "value": text(a)}]
        if rng.random() < 0.3:  # a follow-up: only the first user turn is sent
            turns += [{"from": "human", "value": text(rng.randint(5, 30))},
                      {"from": "gpt", "value": text(rng.randint(20, 120))}]
        f.write(json.dumps({"id": f"sample-{i:04d}", "conversations": turns}) + "\n")
print(f"wrote {n} chats to {path}")
