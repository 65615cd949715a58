"""A rerank service that lies (docs/internals/rerank.md): a reply that scores a candidate
twice, a score no float holds (1e300), or a body that stalls after a 200's headers leaves the
fused order, `reranked: false`, with the right reason — never a reordering built on it.
The service is a small in-test HTTP server whose reply the test sets per case."""
import json
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness

DOCS = [
    {"id": "a", "text": "We decided to back up nightly. Backups are good."},
    {"id": "b", "text": "The weather was rainy. Backups decide."},
    {"id": "c", "text": "Lunch is at noon. Backups of lunch."},
    {"id": "d", "text": "The backups disk is in the server room."},
]


class LyingReranker(BaseHTTPRequestHandler):
    """TEI's POST /rerank; server.reply(n_texts) gives (body bytes, stall seconds)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        body, stall = self.server.reply(len(req["texts"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) + (100 if stall else 0)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if stall:
            time.sleep(stall)


class RerankHostileTest(harness.E2ETestCase):
    class_server = False

    def setUp(self):
        super().setUp()
        self.service = ThreadingHTTPServer(("127.0.0.1", 0), LyingReranker)
        self.service.daemon_threads = True
        threading.Thread(target=self.service.serve_forever, daemon=True).start()
        self.addCleanup(self.service.server_close)
        self.addCleanup(self.service.shutdown)
        self.srv = self.new_server(env={
            "RAGD_GENERATOR": "extractive", "RAGD_EMBEDDER": "builtin", "RAGD_RERANKER": "http",
            "RAGD_RERANK_URL": "http://127.0.0.1:%d/rerank" % self.service.server_address[1],
            "RAGD_RERANK_BATCH": "4", "RAGD_RERANK_CANDIDATES": "4", "RAGD_RERANK_TIMEOUT_S": "1",
            "RAGD_BREAKER_FAILURES": "1000"})
        self.call("POST", "/api/ingest", {"db": "r", "documents": DOCS}, srv=self.srv)

    def ask(self):
        return self.call("POST", "/api/retrieve", {"query": "what did we decide about backups", "db": "r",
                                                   "k": 4, "rerank": True, "use_cache": False}, srv=self.srv)

    def assert_fallback(self, reply, reason_start):
        self.service.reply = reply
        res = self.ask()
        self.assertFalse(res["reranked"], res)
        self.assertTrue(res["rerank_skipped_reason"].startswith(reason_start), res)
        self.assertTrue(all("rerank_score" not in s for s in res["sources"]), res)

    def test_honest_reply_reorders(self):  # the control: the service is heard
        self.service.reply = lambda n: (json.dumps([{"index": i, "score": float(i)} for i in range(n)]).encode(), 0)
        res = self.ask()
        self.assertTrue(res["reranked"], res)
        self.assertEqual([s["rerank_score"] for s in res["sources"]], [3.0, 2.0, 1.0, 0.0])

    def test_index_scored_twice(self):
        self.assert_fallback(lambda n: (json.dumps([{"index": 0, "score": 1.0}, {"index": 0, "score": 9.0}]
                                                   + [{"index": i, "score": 0.5} for i in range(1, n)]).encode(), 0),
                             "bad_reply:")

    def test_score_beyond_float(self):
        self.assert_fallback(lambda n: (json.dumps([{"index": i, "score": 1e300 * (i + 1)} for i in range(n)]).encode(), 0),
                             "bad_reply:")

    def test_body_stalls_after_headers(self):
        self.assert_fallback(lambda n: (b'[{"index":0,', 3), "timeout:")


if __name__ == "__main__":
    unittest.main()
