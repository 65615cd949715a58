"""Query latency with a conversation's history (docs/internals/engine.md "History"): the same
follow-up question with no history, 2 turns and 2000 turns (about 150 KB of body), on 1000
documents of the builtin embedder, extractive answers. Medians of 200 queries each, the
cache off. Usage: RAGD_BIN=build/ragd python3 bench/bench_history.py"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402
import test_history as th  # noqa: E402
srv = harness.Server(env={"RAGD_EMBEDDER": "builtin", "RAGD_GENERATOR": "extractive"}, name="bench")
srv.start()
try:
    docs = [dict(d, id="%s-%d" % (d["id"], i)) for i in range(200) for d in th.RUNBOOK]  # 1000 docs
    for i in range(0, len(docs), 250):
        srv.request("POST", "/api/ingest", json_body={"db": "ops", "documents": docs[i:i+250]})
    cases = {"none": None, "2 turns": th.conversation(2), "2000 turns": th.conversation(2000)}
    for name, hist in cases.items():
        tot, ret, wall = [], [], []
        for _ in range(200):
            b = {"db": "ops", "query": th.FOLLOW_UP, "k": 5, "use_cache": False}
            if hist: b["history"] = hist
            t0 = time.perf_counter(); r = srv.request("POST", "/api/query", json_body=b).body; wall.append((time.perf_counter()-t0)*1000)
            tot.append(r["timings_ms"]["total"]); ret.append(r["timings_ms"]["retrieve"])
        print(f"{name:10} server total p50 {statistics.median(tot):.3f} ms, retrieve p50 {statistics.median(ret):.3f} ms, client wall p50 {statistics.median(wall):.3f} ms")
finally:
    srv.cleanup()
