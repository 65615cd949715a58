#!/usr/bin/env python3
"""How fast is the fake? N concurrent requests (fresh connections, all at once) against a
fake started as its own process with the given latency and parallel slots.

    python3 tools/fake_ollama/bench_fake.py [--n 500] [--latency-ms 200] [--path /api/chat]
        [--stream] [--rounds 3]

Prints the wall time of each round (first byte of the first request to the last byte of
the last answer) and the statuses. The ideal is the latency itself.
"""

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


async def one(port, path, body):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                 % (path.encode(), len(body), body))
    await writer.drain()
    data = await reader.read()
    writer.close()
    return int(data.split(b" ", 2)[1]) if data else 0


async def round_(port, n, path, body):
    t0 = time.monotonic()
    statuses = await asyncio.gather(*[one(port, path, body) for _ in range(n)])
    return time.monotonic() - t0, statuses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--latency-ms", type=float, default=200)
    ap.add_argument("--path", default="/api/chat")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_ollama.py"), "--port",
                             "0", "--parallel", str(args.n), "--max-queue", str(args.n),
                             "--latency-ms", str(args.latency_ms)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+)", proc.stdout.readline()).group(1))
        if args.path == "/api/embed":
            body = {"model": "nomic-embed-text", "input": ["some text to embed"] * 8}
        else:
            body = {"model": "llama3.2", "stream": args.stream, "messages": [
                {"role": "user", "content": "[1] The fake must not be the bottleneck. Ok."}]}
        raw = json.dumps(body).encode()
        for r in range(args.rounds):
            wall, statuses = asyncio.run(round_(port, args.n, args.path, raw))
            counts = {s: statuses.count(s) for s in sorted(set(statuses))}
            print("round %d: %d concurrent %s (stream=%s, latency %.0f ms): %.3f s wall, "
                  "statuses %s" % (r + 1, args.n, args.path, args.stream, args.latency_ms,
                                   wall, counts), flush=True)
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    main()
