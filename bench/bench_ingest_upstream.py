#!/usr/bin/env python3
"""One large document into a collection embedded by the (fake) Ollama backend.

Starts the fake Ollama in-process (tools/fake_ollama, EMBED_MS per input, 4 parallel slots)
and RAGD_BIN serve with RAGD_EMBEDDER=ollama and the default limits (RAGD_MAX_CONCURRENT=10,
RAGD_MAX_QUEUE=100, RAGD_EMBED_BATCH=32), ingests one document of about CHUNKS chunks in
one request, and prints the status, the time, the embedding calls and the most calls the
fake saw at once. Before issue 6 every batch entered the bulkhead at once, so a document
of more than (10 + 100) × 32 = 3,520 chunks was refused 503 by an idle backend.

Usage: RAGD_BIN=build/ragd python3 bench/bench_ingest_upstream.py [CHUNKS] [EMBED_MS]"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402

fake_ollama = harness.fake_ollama  # tools/fake_ollama, imported by the harness


def main():
    chunks = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    embed_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    fake = fake_ollama.FakeOllama(port=0, admin_port=0, parallel=4, embed_input_ms=embed_ms).start()
    srv = harness.Server(env={"RAGD_EMBEDDER": "ollama", "OLLAMA_BASE_URL": fake.url, "RAGD_LOG_LEVEL": "warn"},
                         name="bench-ingest")
    try:
        srv.start()
        text = "\n\n".join(("Paragraph %d explains the retention of snapshot %d and the checkpoint "
                            "that follows it, in words long enough to fill a chunk of text. " % (i, i)) * 6
                           for i in range(chunks))
        t0 = time.monotonic()
        r = srv.request("POST", "/api/ingest", json_body={"db": "big", "documents": [{"id": "doc", "text": text}]},
                        timeout=600)
        dt = time.monotonic() - t0
        st = fake.stats()
        got = r.body.get("chunks") if isinstance(r.body, dict) and r.status == 200 else None
        code = r.body.get("error", {}).get("code") if isinstance(r.body, dict) and r.status != 200 else ""
        print(f"ingest of one document, {len(text) / 1e6:.1f} MB: HTTP {r.status} {code} in {dt:.2f} s; "
              f"{got} chunks; {st['embed_calls']} embedding calls, at most {st['max_in_flight']} at once at the fake")
    finally:
        srv.stop(expect=None)
        srv.cleanup()
        fake.stop()


if __name__ == "__main__":
    main()
