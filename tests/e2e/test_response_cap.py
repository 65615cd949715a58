"""Every response is bounded (RAGD_MAX_RESPONSE_BYTES, default 16 MiB). A /api/retrieve or
/api/query whose passages would not fit leaves the lowest-ranked ones out and says so
("truncated": true); any other response that cannot fit is a 500 response_too_large. The
document listing is streamed in pages (chunked), whatever `limit` is, and keeps its shape."""
import json

import harness

CAP = 1 << 20  # 1 MiB
N_DOCS = 40


def big_doc(i):
    # ~2 KB of text, ~50 KB of metadata: 40 of them are ~6 MB of passages, each written
    # several times in a response — far over the 1 MiB cap.
    text = f"Document {i} is about tidal pools and the creatures living in them. " * 30
    return {"id": f"d{i:03d}", "text": text, "metadata": {"note": "m" * 50000, "i": i}}


class ResponseCapTest(harness.E2ETestCase):
    server_env = {"RAGD_EMBEDDER": "builtin", "RAGD_MAX_RESPONSE_BYTES": str(CAP)}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for start in range(0, N_DOCS, 10):
            docs = [big_doc(i) for i in range(start, start + 10)]
            cls.class_call("POST", "/api/ingest", {"db": "big", "documents": docs})

    def check_truncated(self, path, extra):
        body = {"db": "big", "query": "tidal pools creatures", "k": 100}
        body.update(extra)
        r = self.server.request("POST", path, json_body=body, timeout=60)
        self.assertEqual(r.status, 200, r)
        self.assertLessEqual(len(r.raw), CAP)
        self.assertTrue(r.body["truncated"], r.body.keys())
        n = len(r.body["sources"])
        self.assertGreater(n, 0)
        self.assertLess(n, N_DOCS)
        # the passages kept are the best-ranked, and every list agrees
        self.assertEqual([s["n"] for s in r.body["sources"]], list(range(1, n + 1)))
        for key in ("documents", "metadatas", "distances"):
            self.assertEqual(len(r.body[key]), n, key)
        return r.body

    def test_retrieve_drops_lowest_ranked_and_says_so(self):
        self.check_truncated("/api/retrieve", {})

    def test_query_drops_lowest_ranked_and_says_so(self):
        body = self.check_truncated("/api/query", {"provider": "extractive", "use_cache": False})
        self.assertTrue(body["answer"])

    def test_small_response_is_not_truncated(self):
        r = self.server.request("POST", "/api/retrieve", json_body={"db": "big", "query": "tidal", "k": 2})
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.body["truncated"])
        self.assertEqual(len(r.body["sources"]), 2)

    def test_streamed_query_events_fit(self):
        r = self.server.request("POST", "/api/query", json_body={"db": "big", "query": "tidal pools", "k": 100,
                                                                  "provider": "extractive", "stream": True,
                                                                  "use_cache": False}, timeout=60)
        self.assertEqual(r.status, 200, r)
        self.assertLessEqual(len(r.raw), CAP)
        events = harness.parse_sse(r.raw)
        done = [json.loads(data) for name, data in events if name == "done"]
        self.assertEqual(len(done), 1, events[:3])
        self.assertTrue(done[0]["truncated"])

    def test_other_response_over_the_cap_is_refused(self):
        srv = self.new_server(env={"RAGD_EMBEDDER": "builtin", "RAGD_MAX_RESPONSE_BYTES": "65536"})
        text = "Sea otters float on their backs while they sleep. " * 3000  # ~150 KB of chunks
        r = srv.request("POST", "/api/ingest", json_body={"db": "o", "documents": [{"id": "long", "text": text}]})
        self.assertEqual(r.status, 200, r)
        r = srv.request("GET", "/api/dbs/o/documents/long")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.body["error"]["code"], "response_too_large")
        self.assertIn("RAGD_MAX_RESPONSE_BYTES", r.body["error"]["message"])
        self.assertEqual(srv.request("GET", "/health/live").status, 200)

    def test_listing_is_streamed_and_keeps_its_shape(self):
        srv = self.new_server(env={"RAGD_EMBEDDER": "builtin"})  # the default cap: it all fits
        for start in range(0, N_DOCS, 10):
            r = srv.request("POST", "/api/ingest", json_body={"db": "big", "documents": [
                big_doc(i) for i in range(start, start + 10)]})
            self.assertEqual(r.status, 200, r)
        r = srv.request("GET", "/api/dbs/big/documents?limit=1000", timeout=60)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")  # pages, not one body
        body = r.body
        self.assertEqual(list(body.keys()), ["db", "total", "limit", "offset", "documents"])
        self.assertEqual((body["db"], body["total"], body["limit"], body["offset"]), ("big", N_DOCS, 1000, 0))
        ids = [d["id"] for d in body["documents"]]
        self.assertEqual(ids, sorted(f"d{i:03d}" for i in range(N_DOCS)))
        d = body["documents"][7]
        self.assertEqual(list(d.keys()), ["id", "source", "title", "metadata", "chunks", "text_bytes", "version",
                                          "content_hash", "created_at", "updated_at"])
        self.assertEqual(d["metadata"], {"note": "m" * 50000, "i": 7})

    def test_listing_over_the_cap_ends_early_and_says_so(self):
        """A listing stops before RAGD_MAX_RESPONSE_BYTES (here 1 MiB, 40 documents of
        ~50 KB): well-formed, "truncated": true; the client goes on from offset + count."""
        seen, offset, requests = [], 0, 0
        while offset < N_DOCS:
            r = self.server.request("GET", f"/api/dbs/big/documents?limit=1000&offset={offset}", timeout=60)
            requests += 1
            self.assertEqual(r.status, 200, r)
            self.assertLessEqual(len(r.raw), CAP)
            self.assertTrue(r.is_json(), r)
            self.assertEqual(r.body["total"], N_DOCS)
            docs = r.body["documents"]
            self.assertGreater(len(docs), 0)
            if offset + len(docs) < N_DOCS:
                self.assertTrue(r.body["truncated"], r.body.keys())
            else:
                self.assertNotIn("truncated", r.body)
            seen += [d["id"] for d in docs]
            offset += len(docs)
        self.assertGreater(requests, 1)
        self.assertEqual(seen, sorted(f"d{i:03d}" for i in range(N_DOCS)))

    def test_bad_values_refused_at_start(self):
        for value in ("100", "2147483648", "16MB", "-1"):
            p = harness.run_cli(["serve"], env={"RAGD_MAX_RESPONSE_BYTES": value, "RAGD_LISTEN": "127.0.0.1:0"},
                                timeout=15)
            self.assertEqual(p.returncode, 2, (value, p))
            self.assertIn("RAGD_MAX_RESPONSE_BYTES", p.stderr)

    def test_listing_paging(self):
        # paging still works, in the streamed form too
        r = self.server.request("GET", "/api/dbs/big/documents?limit=3&offset=38")
        self.assertEqual([x["id"] for x in r.body["documents"]], ["d038", "d039"])
        self.assertEqual(r.body["total"], N_DOCS)
        r = self.server.request("GET", "/api/dbs/big/documents?offset=100")
        self.assertEqual(r.body["documents"], [])
        self.assertEqual(self.server.request("GET", "/api/dbs/nope/documents").status, 404)


if __name__ == "__main__":
    import unittest
    unittest.main()
