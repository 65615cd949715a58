#!/usr/bin/env python3
"""Memory and disk per chunk, for docs/operations.md "Sizing".

Starts build/ragd (builtin embedder, a temporary data dir, loopback), ingests about N chunks
of generated prose through /api/ingest, and prints the server's resident memory (VmRSS and
its peak VmHWM from /proc) and the database's size: after the ingest, then after a restart
(the index loaded from disk) and a few queries. Stdlib only.

    python3 scripts/sizing.py --chunks 100000
"""
import argparse
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
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, timeout=300):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r.status, json.loads(raw) if raw else None


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def start(binary, data, port):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RAGD_DATA_DIR": data, "RAGD_LISTEN": f"127.0.0.1:{port}",
           "RAGD_EMBEDDER": "builtin", "RAGD_GENERATOR": "extractive", "RAGD_LOG_LEVEL": "warn",
           "RATE_LIMIT_QUERY": "0", "RAGD_RATE_LIMIT_INGEST": "0"}
    p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if call(port, "GET", "/health/ready", timeout=2)[0] == 200:
                return p
        except OSError:
            pass
        time.sleep(0.1)
    p.kill()
    sys.exit("ragd did not become ready")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100000)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "ragd"))
    a = ap.parse_args()
    rnd = random.Random(11)
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9))) for _ in range(20000)]
    root = tempfile.mkdtemp(prefix="ragd-sizing-")
    data = os.path.join(root, "data")
    port = free_port()
    p = start(a.bin, data, port)
    idle_kb = status_kb(p.pid, "VmRSS")
    per_doc = 12  # about 12 chunks of 1000 characters (overlap 150) per ~9.8 KB document
    docs = max(1, a.chunks // per_doc)
    t0 = time.monotonic()
    text_bytes = 0
    for start_i in range(0, docs, 40):
        batch = []
        for i in range(start_i, min(docs, start_i + 40)):
            text = " ".join(rnd.choice(words) for _ in range(1400))
            text_bytes += len(text)
            batch.append({"id": f"doc{i}", "text": text})
        st, body = call(p_port := port, "POST", "/api/ingest", {"db": "sizing", "documents": batch})
        if st != 200:
            sys.exit(f"ingest: {st} {body}")
    secs = time.monotonic() - t0
    st, info = call(port, "GET", "/api/dbs/sizing")
    chunks = info.get("chunks") or info.get("chunk_count") or 0
    after_kb, peak_kb = status_kb(p.pid, "VmRSS"), status_kb(p.pid, "VmHWM")
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    db_bytes = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if f.startswith("ragd.db"))
    p = start(a.bin, data, port)
    for q in ("alpha beta", words[5] + " " + words[77], words[1000]):
        call(port, "POST", "/api/query", {"query": q, "db": "sizing"})
    loaded_kb = status_kb(p.pid, "VmRSS")
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    shutil.rmtree(root, ignore_errors=True)
    out = {"documents": docs, "chunks": chunks, "text_mb": round(text_bytes / 1e6, 1), "ingest_s": round(secs, 1),
           "rss_idle_mib": round(idle_kb / 1024, 1), "rss_after_ingest_mib": round(after_kb / 1024, 1),
           "rss_peak_mib": round(peak_kb / 1024, 1), "rss_after_restart_and_queries_mib": round(loaded_kb / 1024, 1),
           "db_mib": round(db_bytes / 2**20, 1)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
