#!/usr/bin/env python3
"""bench_http: ingest and query throughput of a real ragd over loopback.

Starts RAGD_BIN serve on a free port with a fresh data dir, ingests DOCS generated
documents (~1 KB each, words drawn from a 5,000-word vocabulary with Zipf frequencies, each
document with one unique code word) in JSON batches of BATCH, then runs QUERIES hybrid queries from
CONCURRENCY threads on keep-alive connections and reports throughput, latency percentiles
and the server's resident memory. Not a test: it asserts nothing, it measures.
Usage: RAGD_BIN=build/ragd python3 bench/bench_http.py [DOCS] [QUERIES] [CONCURRENCY]"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DOCS = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
QUERIES = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
CONCURRENCY = int(sys.argv[3]) if len(sys.argv) > 3 else 8
BATCH = 100
SYLLABLES = "ka lo mi nu pe ra si to vu xe ba do fi gu ha je".split()


def make_vocabulary(n=5000):
    """Pseudo-words drawn with Zipf-like frequencies, as in natural text."""
    rng = random.Random(7)
    words = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(n * 2)})[:n]
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    return words, weights


WORDS, WEIGHTS = make_vocabulary()


def words(rng, n):
    return rng.choices(WORDS, weights=WEIGHTS, k=n)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def doc_text(rng, i):
    sentences = []
    for _ in range(12):
        n = rng.randint(8, 16)
        sentences.append(" ".join(words(rng, n)).capitalize() + ".")
    sentences.insert(rng.randint(0, 11), f"Document {i} mentions the code word zq{i}x.")
    return " ".join(sentences)


def post(conn, path, body):
    data = json.dumps(body).encode()
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    raw = r.read()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {raw[:200]!r}")
    return json.loads(raw)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    binary = os.environ.get("RAGD_BIN", "build/ragd")
    data_dir = tempfile.mkdtemp(prefix="ragd-bench-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGD_")}
    env.update(RAGD_LISTEN=f"127.0.0.1:{port}", RAGD_DATA_DIR=data_dir, RAGD_LOG_LEVEL="warn")
    proc = subprocess.Popen([binary, "serve"], env=env)
    try:
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        rng = random.Random(42)
        texts = [doc_text(rng, i) for i in range(DOCS)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        t0 = time.monotonic()
        chunks = 0
        for b in range(0, DOCS, BATCH):
            docs = [{"id": f"d{i}", "text": texts[i]} for i in range(b, min(DOCS, b + BATCH))]
            chunks += post(conn, "/api/ingest", {"db": "bench", "documents": docs})["chunks"]
        ingest_s = time.monotonic() - t0
        mb = sum(len(t) for t in texts) / 1e6
        print(f"ingest: {DOCS} docs ({mb:.1f} MB, {chunks} chunks) in {ingest_s:.2f} s = "
              f"{DOCS / ingest_s:.0f} docs/s, {mb / ingest_s:.2f} MB/s")

        latencies, hits, lock = [], [0], threading.Lock()
        per_thread = QUERIES // CONCURRENCY

        def worker(seed):
            r = random.Random(seed)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(per_thread):
                i = r.randrange(DOCS)
                q = f"which document mentions zq{i}x " + " ".join(words(r, 4))
                t = time.monotonic()
                res = post(c, "/api/query", {"db": "bench", "query": q, "k": 5})
                dt = time.monotonic() - t
                with lock:
                    latencies.append(dt * 1000)
                    hits[0] += any(s["doc_id"] == f"d{i}" for s in res["sources"])

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(CONCURRENCY)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        qs = time.monotonic() - t0
        n = len(latencies)
        print(f"query: {n} hybrid queries, {CONCURRENCY} clients, {qs:.2f} s = {n / qs:.0f} q/s; "
              f"latency p50 {pct(latencies, 50):.1f} ms, p95 {pct(latencies, 95):.1f} ms, "
              f"p99 {pct(latencies, 99):.1f} ms; right doc in sources {100.0 * hits[0] / n:.1f}%")
        print(f"server RSS after the run: {rss_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
