#!/usr/bin/env python3
"""bench_http: ingest and query throughput of a real ragd over loopback.

Starts RAGD_BIN serve on a free port with a fresh data dir, ingests DOCS generated
documents (~1 KB each, words drawn from a 5,000-word vocabulary with Zipf frequencies, each
document with one unique code word) in JSON batches of BATCH, then runs QUERIES queries
from CONCURRENCY threads on keep-alive connections and reports throughput, latency
percentiles and the server's resident memory. Every query says "use_cache": false: this
measures retrieval (and generation), not the semantic cache (bench_real.py does that).
Not a test: it asserts nothing, it measures.

Usage: RAGD_BIN=build/ragd python3 bench/bench_http.py [DOCS] [QUERIES] [CONCURRENCY]
         [--endpoint query|retrieve] [--method hybrid|vector|keyword] [--k K]
         [--server-side N] [--wrk SECONDS] [--connections C] [--wrk-threads T]

--endpoint retrieve   queries go to /api/retrieve (no answer is generated)
--server-side N       also N sequential queries per method (vector, keyword, hybrid) from one
                      client, reporting the median and p99 of the server's own
                      timings_ms.retrieve (the retrieval alone, no HTTP or JSON)
--wrk SECONDS         also run wrk (Debian's `wrk`) for SECONDS against the endpoint with
                      C keep-alive connections (default 50) on T threads (default 2), the
                      request bodies drawn from 2,000 generated queries
After the run the server is stopped and the data dir's size on disk is reported."""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

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


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def query_text(r, docs):
    i = r.randrange(docs)
    return i, f"which document mentions zq{i}x " + " ".join(words(r, 4))


def run_wrk(port, path, bodies, seconds, connections, threads):
    """wrk with a Lua script that cycles through the request bodies; returns its report."""
    if not shutil.which("wrk"):
        return "wrk: not installed (apt-get install wrk)"
    lua = ["local bodies = {"]
    for b in bodies:
        lua.append("  " + json.dumps(b).replace("\\/", "/") + ",")
    lua.append("}")
    lua.append("local n = 0")
    lua.append('wrk.method = "POST"')
    lua.append('wrk.headers["Content-Type"] = "application/json"')
    lua.append("request = function()")
    lua.append("  n = n + 1")
    lua.append("  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])")
    lua.append("end")
    lua.append("done = function(summary, latency, requests)")
    lua.append('  io.write(string.format("wrk: %d requests, %d errors (status %d, timeout %d)\\n",')
    lua.append("    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read +")
    lua.append("    summary.errors.write + summary.errors.timeout, summary.errors.status, summary.errors.timeout))")
    lua.append("  for _, p in pairs({50, 90, 99, 99.9}) do")
    lua.append('    io.write(string.format("wrk: p%g %.2f ms\\n", p, latency:percentile(p) / 1000.0))')
    lua.append("  end")
    lua.append("end")
    fd, script = tempfile.mkstemp(suffix=".lua", prefix="ragd-wrk-")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lua) + "\n")
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s",
                              "--timeout", "10s", "-s", script, f"http://127.0.0.1:{port}{path}"],
                             capture_output=True, text=True, timeout=seconds + 60)
        return out.stdout + out.stderr
    finally:
        os.unlink(script)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("docs", nargs="?", type=int, default=5000)
    ap.add_argument("queries", nargs="?", type=int, default=2000)
    ap.add_argument("concurrency", nargs="?", type=int, default=8)
    ap.add_argument("--endpoint", choices=["query", "retrieve"], default="query")
    ap.add_argument("--method", choices=["hybrid", "vector", "keyword"], default="hybrid")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--server-side", type=int, default=0)
    ap.add_argument("--wrk", type=float, default=0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--wrk-threads", type=int, default=2)
    args = ap.parse_args()
    DOCS, QUERIES, CONCURRENCY = args.docs, args.queries, args.concurrency
    path = "/api/" + args.endpoint

    binary = os.environ.get("RAGD_BIN", "build/ragd")
    data_dir = tempfile.mkdtemp(prefix="ragd-bench-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGD_")}
    env.update(RAGD_LISTEN=f"127.0.0.1:{port}", RAGD_DATA_DIR=data_dir, RAGD_LOG_LEVEL="warn",
               RATE_LIMIT_QUERY="0", RAGD_RATE_LIMIT_INGEST="0")
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

        if args.server_side:
            r = random.Random(99)
            for method in ("vector", "keyword", "hybrid"):
                ms, hit = [], 0
                for _ in range(args.server_side):
                    i, q = query_text(r, DOCS)
                    res = post(conn, "/api/retrieve", {"db": "bench", "query": q, "k": args.k, "method": method,
                                                          "use_cache": False})
                    ms.append(res["timings_ms"]["retrieve"])
                    hit += any(s["doc_id"] == f"d{i}" for s in res["sources"])
                print(f"server-side retrieve {method:7s} k={args.k}: median {pct(ms, 50):.3f} ms, "
                      f"p99 {pct(ms, 99):.3f} ms over {len(ms)}; right doc in sources {100.0 * hit / len(ms):.1f}%")

        latencies, hits, lock = [], [0], threading.Lock()
        per_thread = QUERIES // CONCURRENCY if CONCURRENCY else 0

        def worker(seed):
            r = random.Random(seed)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(per_thread):
                i, q = query_text(r, DOCS)
                t = time.monotonic()
                res = post(c, path, {"db": "bench", "query": q, "k": args.k, "method": args.method,
                                     "use_cache": False})
                dt = time.monotonic() - t
                with lock:
                    latencies.append(dt * 1000)
                    hits[0] += any(s["doc_id"] == f"d{i}" for s in res["sources"])

        if per_thread:
            threads = [threading.Thread(target=worker, args=(s,)) for s in range(CONCURRENCY)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            qs = time.monotonic() - t0
            n = len(latencies)
            print(f"{args.endpoint}: {n} {args.method} queries k={args.k}, {CONCURRENCY} clients, {qs:.2f} s = "
                  f"{n / qs:.0f} q/s; latency p50 {pct(latencies, 50):.1f} ms, p95 {pct(latencies, 95):.1f} ms, "
                  f"p99 {pct(latencies, 99):.1f} ms; right doc in sources {100.0 * hits[0] / n:.1f}%")

        if args.wrk:
            r = random.Random(1234)
            bodies = [json.dumps({"db": "bench", "query": query_text(r, DOCS)[1], "k": args.k,
                                  "method": args.method, "use_cache": False}) for _ in range(2000)]
            report = run_wrk(port, path, bodies, args.wrk, args.connections, args.wrk_threads)
            rps = re.search(r"Requests/sec:\s+([\d.]+)", report)
            print(f"wrk {path} {args.method} k={args.k}, {args.connections} connections, {args.wrk:g} s: "
                  f"{rps.group(1) if rps else '?'} req/s")
            for line in report.splitlines():
                if not rps or line.startswith("wrk:") or "Non-2xx" in line or "Socket errors" in line:
                    print("  " + line)
        print(f"server RSS after the run: {rss_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        print(f"data dir after shutdown: {dir_bytes(data_dir) / 1e6:.1f} MB")
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
