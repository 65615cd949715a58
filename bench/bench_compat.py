"""The cost of the Ollama and OpenAI adapters over /api/query (docs/internals/compat.md): the
same question with one earlier turn (so no request is served from the cache) on 2001
documents of the builtin embedder, extractive answers, asked through /api/query (with
`history`), /api/chat (not streamed and streamed), /api/generate and /v1/chat/completions;
then /api/embed of 32 texts with a rag/ model, and /api/tags with 20 collections. Client wall
medians of 200 requests each. Usage: RAGD_BIN=build/ragd python3 bench/bench_compat.py"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402
from test_compat_ollama import ingest_corpus  # noqa: E402

Q = "When was the Zephyrine protocol ratified?"
TURNS = [{"role": "user", "content": "Tell me about the harbour council."},
         {"role": "assistant", "content": "It governs the port."}]
srv = harness.Server(env={"RAGD_EMBEDDER": "builtin", "RAGD_GENERATOR": "extractive"}, name="bench")
srv.start()
try:
    ingest_corpus(srv, "kb", True)
    for i in range(19):
        srv.request("POST", "/api/ingest", json_body={"db": f"c{i}", "documents": [{"id": "a", "text": "x y z"}]})
    msgs = TURNS + [{"role": "user", "content": Q}]
    cases = [
        ("/api/query (history)", "/api/query", {"db": "kb", "query": Q, "k": 5, "use_cache": False, "history": TURNS}),
        ("/api/chat", "/api/chat", {"model": "rag/kb", "messages": msgs, "stream": False}),
        ("/api/chat streamed", "/api/chat", {"model": "rag/kb", "messages": msgs}),
        ("/v1/chat/completions", "/v1/chat/completions", {"model": "rag/kb", "messages": msgs}),
        ("/api/embed 32 texts", "/api/embed", {"model": "rag/kb", "input": [f"text number {i} about gardens" for i in range(32)]}),
        ("/api/tags (20 collections)", "/api/tags", None),
    ]
    for name, path, body in cases:
        wall = []
        for _ in range(200):
            t0 = time.perf_counter()
            r = srv.request("POST" if body else "GET", path, json_body=body)
            wall.append((time.perf_counter() - t0) * 1000)
            assert r.status == 200, r
        print(f"{name:28} client wall p50 {statistics.median(wall):.3f} ms, p90 {sorted(wall)[179]:.3f} ms")
finally:
    srv.cleanup()
