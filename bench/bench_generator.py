#!/usr/bin/env python3
"""bench_generator: ragd's upstream layer against the fake Ollama (issue 3's benchmark).

Part 1: 50 concurrent /api/query with the generator taking 200 ms per call, 4 parallel slots
per model in the fake, RAGD_MAX_CONCURRENT=4. Ideal = ceil(50/4) generations back to back
(the builtin embedder makes no embedding call). Reports total time and its ratio to ideal.
Part 2: 500 concurrent /api/query with RAGD_MAX_QUEUE=16: every request must be answered or
shed (a 503 soon after arrival); reports the counts, the slowest 503 and any time-outs.
Not a test: it measures. Usage: RAGD_BIN=build/ragd python3 bench/bench_generator.py"""
import asyncio
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "fake_ollama"))
import fake_ollama  # noqa: E402

LATENCY_MS = 200
SLOTS = 4


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_ragd(fake_url, extra, log=None):
    data = tempfile.mkdtemp(prefix="ragd-bench-gen-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAGD_", "OLLAMA_"))}
    env.update(RAGD_LISTEN=f"127.0.0.1:{port}", RAGD_DATA_DIR=data, RAGD_LOG_LEVEL="warn",
               RAGD_GENERATOR="ollama", OLLAMA_BASE_URL=fake_url, RAGD_MAX_CONCURRENT=str(SLOTS))
    env.update(extra)
    proc = subprocess.Popen([os.environ.get("RAGD_BIN", "build/ragd"), "serve"], env=env, stderr=log)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health/ready")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.05)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    docs = [{"id": f"d{i}", "text": f"Fact {i}: the quick brown fox number {i} jumps over the lazy dog."} for i in range(50)]
    c.request("POST", "/api/ingest", body=json.dumps({"db": "b", "documents": docs}),
              headers={"Content-Type": "application/json"})
    assert c.getresponse().status == 200
    return proc, port, data


def stop_ragd(proc, data):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    shutil.rmtree(data, ignore_errors=True)


def fire(port, n):
    """n concurrent queries; returns [(status, seconds, provider)]."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        body = json.dumps({"db": "b", "query": f"which fox is number {i}?", "k": 3})
        barrier.wait()
        t = time.monotonic()
        try:
            c.request("POST", "/api/query", body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            prov = json.loads(raw).get("provider") if r.status == 200 else None
            results[i] = (r.status, time.monotonic() - t, prov)
        except Exception as e:  # a time-out or reset counts against ragd
            results[i] = (str(e), time.monotonic() - t, None)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    return results, time.monotonic() - t0


async def burst(port, n):
    """n queries at once from one asyncio thread (500 OS threads would compete with the
    server for the same 2 cores and measure themselves): [(status, ms from send)]."""
    results = []

    async def one(i):
        body = json.dumps({"db": "b", "query": f"which fox is number {i}?", "k": 3}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (f"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        t = time.monotonic()
        writer.write(head + body)
        await writer.drain()
        line = await reader.readline()
        results.append((int(line.split()[1]), (time.monotonic() - t) * 1000))
        await reader.read()
        writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    return results, time.monotonic() - t0


def main():
    fake = fake_ollama.FakeOllama(port=0, admin_port=0, latency_ms=LATENCY_MS, parallel=SLOTS, max_queue=512)
    fake.start()
    try:
        for embedder in ("builtin", "ollama"):
            proc, port, data = start_ragd(fake.url, {"RAGD_MAX_QUEUE": "100", "RAGD_EMBEDDER": embedder})
            fire(port, 4)  # warm the connections and the models
            results, total = fire(port, 50)
            # ceil(50/4) generations back to back, plus one embedding call in front when the
            # collection is embedded by the backend (the query's own embedding)
            ideal = (math.ceil(50 / SLOTS) + (embedder == "ollama")) * LATENCY_MS / 1000
            gen = sum(1 for r in results if r[0] == 200 and r[2] == "ollama")
            print(f"part 1 ({embedder} embedder): 50 concurrent queries in {total:.2f} s; ideal {ideal:.2f} s; "
                  f"ratio {total / ideal:.3f}; {gen}/50 generated by the LLM")
            stop_ragd(proc, data)

        proc, port, data = start_ragd(fake.url, {"RAGD_MAX_QUEUE": "16", "RAGD_EMBEDDER": "builtin"})
        results, total = asyncio.run(burst(port, 500))
        ok = [r for r in results if r[0] == 200]
        shed = sorted(r[1] for r in results if r[0] == 503)
        other = [r for r in results if r[0] not in (200, 503)]
        within = sum(1 for m in shed if m <= 50) / max(1, len(shed))
        print(f"part 2: 500 concurrent queries in {total:.2f} s: {len(ok)} answered, {len(shed)} shed (503), "
              f"{len(other)} other; time to 503 from sending p50 {shed[len(shed) // 2]:.1f} ms, "
              f"p99 {shed[int(len(shed) * 0.99)]:.1f} ms, max {shed[-1]:.1f} ms; {within:.0%} within 50 ms")
        stop_ragd(proc, data)
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
