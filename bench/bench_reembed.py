#!/usr/bin/env python3
"""Re-embedding a builtin collection to the (fake) Ollama's model, with queries running.

Starts the fake Ollama in-process (EMBED_MS per input, 4 parallel slots) and RAGD_BIN serve
with RAGD_EMBEDDER=ollama, creates a builtin collection of CHUNKS one-chunk documents, then
times `POST /api/dbs/big/reembed` until the job is done while one client sends
/api/retrieve (hybrid, k 5) back to back. Prints the job's time and chunks/s, the fake's
embed calls, and the query latencies (p50/p99) before and during the job.

Usage: RAGD_BIN=build/ragd python3 bench/bench_reembed.py [CHUNKS] [EMBED_MS]"""
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402

fake_ollama = harness.fake_ollama  # tools/fake_ollama, imported by the harness

WORDS = ["otter", "heron", "badger", "lynx", "marten", "ibis", "gecko", "tapir", "okapi", "quokka"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def query_loop(srv, stop, out):
    i = 0
    while not stop.is_set():
        t0 = time.monotonic()
        r = srv.request("POST", "/api/retrieve", json_body={"db": "big", "query": f"the {WORDS[i % 10]} number {i}",
                                                             "k": 5})
        out.append(((time.monotonic() - t0) * 1000, r.status))
        i += 1


def main():
    chunks = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    embed_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    fake = fake_ollama.FakeOllama(port=0, admin_port=0, parallel=4, embed_input_ms=embed_ms).start()
    srv = harness.Server(env={"RAGD_EMBEDDER": "ollama", "OLLAMA_BASE_URL": fake.url, "RAGD_LOG_LEVEL": "warn",
                              "RAGD_GENERATOR": "extractive"}, name="bench-reembed")
    try:
        srv.start()
        srv.request("POST", "/api/dbs", json_body={"name": "big"})
        for at in range(0, chunks, 1000):
            docs = [{"id": f"d{i}", "text": f"Note {i}: the {WORDS[i % 10]} number {i} lives near river {i * 7}."}
                    for i in range(at, min(chunks, at + 1000))]
            assert srv.request("POST", "/api/ingest", json_body={"db": "big", "documents": docs},
                               timeout=600).status == 200
        idle, busy = [], []
        stop = threading.Event()
        t = threading.Thread(target=query_loop, args=(srv, stop, idle))
        t.start()
        time.sleep(3)
        stop.set()
        t.join()
        stop = threading.Event()
        t = threading.Thread(target=query_loop, args=(srv, stop, busy))
        t.start()
        t0 = time.monotonic()
        r = srv.request("POST", "/api/dbs/big/reembed", json_body={"embedder": "ollama"})
        assert r.status == 202, r
        while True:
            job = srv.request("GET", "/api/dbs/big").body.get("reembed", {})
            if job.get("state") in ("done", "failed"):
                break
            time.sleep(0.05)
        dt = time.monotonic() - t0
        stop.set()
        t.join()
        st = fake.stats()
        print(f"chunks={chunks} embed_ms={embed_ms} state={job['state']} time={dt:.2f}s "
              f"rate={chunks / dt:.0f} chunks/s embed_calls={st['embed_calls']}")
        for name, xs in (("idle", idle), ("during the job", busy)):
            ms = [x for x, _ in xs]
            codes = sorted({c for _, c in xs})
            print(f"retrieve {name}: n={len(ms)} p50={statistics.median(ms):.1f} ms p99={pct(ms, 0.99):.1f} ms "
                  f"statuses={codes}")
    finally:
        srv.cleanup()
        fake.stop()


if __name__ == "__main__":
    main()
