#!/usr/bin/env python3
"""bench_real: ragd's query throughput on real text with natural-language questions.

The corpus and questions of `make eval` (bench/eval: the pydoc pages of 172 standard library
modules, 237 hand-written questions), the corpus ingested twice (the second copy under ids
ending in ".copy": ~10,800 chunks) into build/ragd on its true defaults (no variable set but
the data dir, the address and the log level; nothing listening for Ollama, so answers are
extractive). Then, for each case, wrk with C keep-alive connections cycling through the
questions:
- /api/retrieve k=5 with method hybrid, keyword and vector, "use_cache": false (the
  retrieval itself: the questions repeat, and would otherwise be cache hits);
- /api/query k=5 after every question was asked once: every request is a cache hit.
Before the load, one client asks every question once per method and reports the median and
p99 of the server's own timings_ms.retrieve (the retrieval alone).
Not a test: it asserts nothing, it measures.

Usage: RAGD_BIN=build/ragd python3 bench/bench_real.py [--seconds S] [--connections C]
       [--cases hybrid,keyword,vector,cache]
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "eval"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import bench_http  # noqa: E402
import eval_retrieval as ev  # noqa: E402
import harness  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--cases", default="hybrid,keyword,vector,cache")
    args = ap.parse_args()
    cases = args.cases.split(",")

    docs, digest = ev.build_corpus(ev.read_modules(os.path.join(HERE, "eval", "modules.txt")))
    questions = [q["q"] for q in ev.read_questions(os.path.join(HERE, "eval", "questions.jsonl"), docs)]
    both = dict(docs)
    both.update({f"{m}.copy": text for m, text in docs.items()})
    srv = harness.Server(env={"RAGD_LOG_LEVEL": "warn"}, name="bench-real")
    srv.start()
    try:
        chunks = ev.ingest(srv, both)
        print(f"corpus {digest}: {len(both)} documents, {chunks} chunks; {len(questions)} questions")
        for method in ("hybrid", "keyword", "vector"):
            if method not in cases:
                continue
            ms = [ev.call(srv, "POST", "/api/retrieve", {"db": ev.DB, "query": q, "method": method, "k": 5,
                                                               "use_cache": False})
                  ["timings_ms"]["retrieve"] for q in questions]
            print(f"server-side retrieve {method:7s} k=5: median {pct(ms, 50):.3f} ms, p99 {pct(ms, 99):.3f} ms")
        for case in cases:
            if case == "cache":
                path = "/api/query"
                bodies = [{"db": ev.DB, "query": q, "k": 5} for q in questions]
                misses = sum(not ev.call(srv, "POST", path, b)["cached"] for b in bodies)
                hits = sum(ev.call(srv, "POST", path, b)["cached"] for b in bodies)
                print(f"cache: warm-up {misses} misses, then {hits}/{len(bodies)} hits")
            else:
                path = "/api/retrieve"
                bodies = [{"db": ev.DB, "query": q, "method": case, "k": 5, "use_cache": False} for q in questions]
            report = bench_http.run_wrk(srv.port, path, [json.dumps(b) for b in bodies], args.seconds,
                                        args.connections, 2)
            rps = re.search(r"Requests/sec:\s+([\d.]+)", report)
            print(f"wrk {path} {case}, {args.connections} connections, {args.seconds:g} s: "
                  f"{rps.group(1) if rps else '?'} req/s")
            for line in report.splitlines():
                if not rps or line.startswith("wrk:") or "Non-2xx" in line or "Socket errors" in line:
                    print("  " + line.strip())
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
