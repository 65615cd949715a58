#!/usr/bin/env python3
"""Writes data/injection/ragd_bench_questions.jsonl (stdout): the hand-written questions of
bench/eval/questions.jsonl (the `q` field; lines starting with # are comments) and the
README's example question, as benign queries (kind "plain") for the prompt-injection screen.

Split: int(sha256(text)[:8], 16) % 100 < 25 -> test, else train (the rule of
ragd_questions.jsonl); the README's example is always test (source "ragd-readme").

    python3 tools/guard_train/bench_questions.py > data/injection/ragd_bench_questions.jsonl
"""
import hashlib
import json
import sys

BENCH = "bench/eval/questions.jsonl"
README_QUESTION = "what did we decide about backups?"


def split_of(text):
    return "test" if int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100 < 25 else "train"


def row(text, source, split):
    return {"text": text, "label": "benign", "kind": "plain", "lang": "en", "source": source, "split": split}


def main():
    seen = set()
    out = [row(README_QUESTION, "ragd-readme", "test")]
    seen.add(README_QUESTION)
    with open(BENCH, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            q = json.loads(line)["q"].strip()
            if q and q not in seen:
                seen.add(q)
                out.append(row(q, "ragd-bench-questions", split_of(q)))
    for r in out:
        sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
