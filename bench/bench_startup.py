#!/usr/bin/env python3
"""Start-up time of a large store: ingest DOCS generated documents (bench_http.py's text,
two chunks each; the same shape, drawn faster) into RAGD_BIN serve on its defaults, stop it with SIGTERM, start it again
on the same data directory and time process start → /health/ready (the vector and keyword
indexes are built from the store in that time), with the RSS once ready.

Usage: RAGD_BIN=build/ragd python3 bench/bench_startup.py [DOCS] [--keep DIR]
(500000 documents ≈ 1,000,000 chunks, ~2.5 GB of data directory; the generator runs in a
second process while the server ingests.)"""
import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_http  # noqa: E402

BATCH = 200
CUM_WEIGHTS = list(itertools.accumulate(bench_http.WEIGHTS))


def doc_text(rng, i):
    """bench_http.doc_text's shape (12 sentences of 8-16 Zipf words and a code word),
    drawn with precomputed cumulative weights: ~30 times faster to generate."""
    sentences = []
    for _ in range(12):
        ws = rng.choices(bench_http.WORDS, cum_weights=CUM_WEIGHTS, k=rng.randint(8, 16))
        sentences.append(" ".join(ws).capitalize() + ".")
    sentences.insert(rng.randint(0, 11), f"Document {i} mentions the code word zq{i}x.")
    return " ".join(sentences)


def batch_body(start_count):
    start, count = start_count
    rng = random.Random(start)
    docs = [{"id": f"d{i}", "text": doc_text(rng, i)} for i in range(start, start + count)]
    return json.dumps({"db": "bench", "documents": docs}).encode()


def start_server(binary, env, port):
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, "serve"], env=env)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ragd exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health/ready")
            if c.getresponse().status == 200:
                return proc, time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("docs", nargs="?", type=int, default=500000)
    ap.add_argument("--keep", help="use (and keep) this data directory; an existing store is not ingested again")
    args = ap.parse_args()
    binary = os.environ.get("RAGD_BIN", "build/ragd")
    data_dir = args.keep or tempfile.mkdtemp(prefix="ragd-startup-")
    os.makedirs(data_dir, exist_ok=True)
    fresh = not os.path.exists(os.path.join(data_dir, "ragd.db"))
    port = bench_http.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGD_")}
    env.update(RAGD_LISTEN=f"127.0.0.1:{port}", RAGD_DATA_DIR=data_dir, RAGD_LOG_LEVEL="warn",
               RAGD_MAX_BODY_BYTES=str(64 << 20))
    try:
        proc, _ = start_server(binary, env, port)
        if fresh:
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            chunks = 0
            jobs = [(s, min(BATCH, args.docs - s)) for s in range(0, args.docs, BATCH)]
            with multiprocessing.Pool(1) as pool:
                for body in pool.imap(batch_body, jobs, chunksize=4):
                    conn.request("POST", "/api/ingest", body=body, headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    raw = r.read()
                    if r.status != 200:
                        raise RuntimeError(f"ingest: {r.status} {raw[:200]!r}")
                    chunks += json.loads(raw)["chunks"]
            dt = time.monotonic() - t0
            print(f"ingest: {args.docs} docs, {chunks} chunks in {dt:.1f} s ({args.docs / dt:.0f} docs/s)", flush=True)
        rc = stop_server(proc)
        print(f"stopped: exit {rc}; data dir {bench_http.dir_bytes(data_dir) / 1e9:.2f} GB", flush=True)
        for run in (1, 2):
            proc, ready_s = start_server(binary, env, port)
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/api/dbs/bench")
            info = json.loads(c.getresponse().read())
            rss = bench_http.rss_kib(proc.pid) / 1024
            print(f"start-up {run}: ready in {ready_s:.2f} s with {info.get('chunks')} chunks; RSS {rss:.0f} MiB",
                  flush=True)
            stop_server(proc)
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
