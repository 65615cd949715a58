#!/usr/bin/env python3
"""bench_rerank: parallel reranking (issue 9's benchmark).

The fake backend's TEI endpoint (POST /rerank) takes 100 ms per call; a query retrieves 20
candidates (RAGD_RERANK_CANDIDATES=20, k=20) and reranks them with RAGD_RERANK_BATCH = 1, 4,
8 (the default) or 20 documents per call. For each setting, 20 sequential queries (cache off) report the
median and worst `timings_ms.rerank`, the fake's calls per query and the most calls it saw
at once, and the ratio of the median to the ideal: one call's time when the calls all fit in
the bulkhead (RAGD_MAX_CONCURRENT), else ceil(calls / max_concurrent) calls back to back.
Sequential calls would take calls x 100 ms (the last column).
Not a test: it measures. Usage: RAGD_BIN=build/ragd python3 bench/bench_rerank.py"""
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402  (the e2e harness: harness.Server runs ragd, harness.fake_ollama)

CALL_MS = 100
CANDIDATES = 20
QUERIES = 20
WORDS = ("backup nightly restore disk weekly archive snapshot retention policy server room tape "
         "offsite cloud bucket checksum verify schedule cron").split()


def start_ragd(extra):
    """RAGD_BIN serve on a free port and a fresh data dir (harness.Server), ready."""
    env = {"RAGD_LOG_LEVEL": "warn", "RAGD_GENERATOR": "extractive", "RAGD_EMBEDDER": "builtin",
           "RAGD_RERANKER": "http", "RAGD_RERANK_CANDIDATES": str(CANDIDATES), "RATE_LIMIT_QUERY": "0"}
    env.update(extra)
    srv = harness.Server(env=env, name="bench-rerank")
    srv.start()
    return srv


def run(fake, batch, max_concurrent):
    srv = start_ragd({"RAGD_RERANK_URL": fake.url + "/rerank", "RAGD_RERANK_BATCH": str(batch),
                                   "RAGD_MAX_CONCURRENT": str(max_concurrent)})
    try:
        docs = [{"id": f"d{i}", "text": " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) + "."}
                for i in range(CANDIDATES + 5)]
        assert srv.request("POST", "/api/ingest", json_body={"db": "b", "documents": docs}).status == 200
        fake.reset_stats()
        times = []
        for i in range(QUERIES):
            st, _, res = srv.request("POST", "/api/retrieve", json_body={
                "query": f"nightly backup retention {i}", "db": "b", "k": CANDIDATES, "rerank": True,
                "use_cache": False})
            assert st == 200 and res["reranked"], res
            assert len(res["sources"]) == CANDIDATES, len(res["sources"])
            times.append(res["timings_ms"]["rerank"])
        s = fake.stats()["rerank"]
        calls = s["calls"] / QUERIES
        ideal = math.ceil(calls / max_concurrent) * CALL_MS
        med = statistics.median(times)
        return {"batch": batch, "max_concurrent": max_concurrent, "calls": calls, "max_in_flight": s["max_in_flight"],
                "median_ms": med, "worst_ms": max(times), "ideal_ms": ideal, "ratio": med / ideal,
                "sequential_ms": calls * CALL_MS}
    finally:
        srv.cleanup()


def main():
    fake = harness.fake_ollama.FakeOllama(port=0, rerank_ms=CALL_MS)
    fake.start()
    try:
        print(f"{CANDIDATES} candidates, {CALL_MS} ms per rerank call, {QUERIES} queries per row")
        print("| RAGD_RERANK_BATCH | RAGD_MAX_CONCURRENT | calls/query | most at once | rerank median ms | worst ms "
              "| ideal ms | ratio to ideal | sequential ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        for batch, mc in ((1, 10), (1, 20), (4, 10), (8, 10), (20, 10)):
            r = run(fake, batch, mc)
            print(f"| {r['batch']} | {r['max_concurrent']} | {r['calls']:.0f} | {r['max_in_flight']} | "
                  f"{r['median_ms']:.1f} | {r['worst_ms']:.1f} | {r['ideal_ms']} | {r['ratio']:.3f} | "
                  f"{r['sequential_ms']:.0f} |", flush=True)
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
