"""What a new user runs first: `make run`'s true defaults (RAGD_EMBEDDER=auto,
RAGD_GENERATOR=auto, no OLLAMA_BASE_URL, nothing answering at the default address), with
realistic sizes — one document of more than 2,000 chunks in one request, the ~620 KB text
of the crash report, a folder through `ragd ingest` — and the `auto` probing: a backend
absent at start, appearing later (used without a restart), disappearing again.
"""
import json
import os
import socket
import sys
import tempfile
import time
import unittest

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "fake_ollama"))
import fake_ollama  # noqa: E402


def big_text(paragraphs):
    """About one 1,000-character chunk per paragraph (the default chunk size)."""
    return "\n\n".join(("Paragraph %d explains the retention of snapshot %d and the checkpoint "
                        "that follows it, in words long enough to fill a chunk of text. " % (i, i)) * 6
                       for i in range(paragraphs))


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class DefaultsTest(harness.E2ETestCase):
    """The class server runs with no variable set at all (the harness adds only the data
    dir, the listen address and rate limits off)."""

    def test_big_document_ingest_and_query(self):
        text = big_text(2100)
        res = self.call("POST", "/api/ingest", {"db": "big", "documents": [{"id": "manual", "text": text}]},
                        timeout=120)
        self.assertGreaterEqual(res["chunks"], 2000, res)
        self.assertEqual(res["embedder"], "builtin")
        self.assertEqual(res["embed_model"], "ragd-hash-v1-512")
        # auto fell back to builtin because nothing answered: the response says so
        self.assertEqual(len(res["warnings"]), 1, res)
        self.assertIn("builtin embedder", res["warnings"][0])
        self.assertIn("http://localhost:11434", res["warnings"][0])

        doc = self.call("GET", "/api/dbs/big/documents/manual")
        self.assertEqual(len(doc["chunks"]), res["chunks"])
        body = self.call("POST", "/api/query", {"query": "retention of snapshot 1717", "db": "big"})
        self.assertEqual(body["provider"], "extractive")
        self.assertIs(body["degraded"], False, body)  # no LLM was asked for: not a degradation
        self.assertIsNone(body["degraded_reason"])
        self.assertIn("snapshot 1717", body["answer"])
        self.assertEqual(body["sources"][0]["doc_id"], "manual")

        r = self.server.request("POST", "/api/query", json_body={"query": "snapshot 42", "db": "big", "stream": True})
        self.assertEqual(r.status, 200)
        events = harness.parse_sse(r.raw)
        self.assertEqual([e for e, _ in events], ["sources", "token", "done"])
        self.assertIs(json.loads(events[-1][1])["degraded"], False)

    def test_first_ingest_without_text_is_refused(self):
        # A new collection whose first document has no text (HTML of a script only): once
        # stored with 0 chunks (and the embedder choice had to be reported for it), it is
        # now refused like any document with no text, and no collection is created.
        r = self.server.request("POST", "/api/ingest", json_body={"db": "scriptonly", "documents": [
            {"id": "s", "text": "<html><body><script>var x = 1;</script></body></html>", "format": "html"}]})
        self.assertEnvelope(r, 422, "validation_error")
        self.assertEqual(r.body["error"]["message"], "document 's': no text")
        self.assertEqual(self.server.request("GET", "/api/dbs/scriptonly").status, 404)

    def test_crash_report_document(self):
        # The report: one ~620 KB plain-text document (about 700 chunks) killed the server.
        text = big_text(900)[:620 * 1024]
        r = self.server.request("POST", "/api/ingest?db=report&id=report.txt", body=text, content_type="text/plain",
                                timeout=120)
        self.assertEqual(r.status, 200, r)
        self.assertGreater(r.body["chunks"], 600)
        self.assertEqual(self.call("GET", "/health/live")["status"], "alive")

    def test_health_is_honest_on_the_defaults(self):
        h = self.call("GET", "/health")
        self.assertEqual(h["status"], "healthy", h)
        ollama = h["services"]["ollama"]
        self.assertIs(ollama["in_use"], False)
        self.assertIs(ollama["reachable"], False)
        self.assertTrue(ollama["message"].startswith("Not in use"), ollama)
        self.assertNotEqual(ollama["message"], "Operational")
        self.assertEqual(h["services"]["generator"]["name"], "extractive")
        self.assertEqual(harness.run_cli(["health", "--url", self.server.url]).returncode, 0)

    def test_cli_folder_ingest(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "manual.txt"), "w") as f:
                f.write(big_text(800))
            for i in range(20):
                with open(os.path.join(d, "note%d.md" % i), "w") as f:
                    f.write("# Note %d\n\nThe note about badger %d says it sleeps all day.\n" % (i, i))
            p = harness.run_cli(["ingest", d, "--db", "folder", "--url", self.server.url], timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
        coll = self.call("GET", "/api/dbs/folder")
        self.assertEqual(coll["documents"], 21)
        self.assertGreater(coll["chunks"], 800)


class ProbeTest(harness.E2ETestCase):
    """`auto` probes the backend at start-up and then at the breakers' pace
    (RAGD_BREAKER_RECOVERY_S), so a backend that comes up later is used without a restart,
    and /health says "Operational" only for a backend that answered."""
    class_server = False

    def wait_for(self, srv, pred, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.call("GET", "/health", srv=srv)
            if pred(last):
                return last
            time.sleep(0.1)
        self.fail(f"/health never showed {what}: {last}")

    def query(self, srv):
        # the generator's state is under test: past the cache (test_cache.py tests it)
        return self.call("POST", "/api/query", {"query": "Which snapshot is retained?", "db": "p", "use_cache": False},
                         srv=srv)

    def cycle(self, srv, port, requested):
        """Absent → appears → disappears, on a server whose OLLAMA_BASE_URL is at `port`."""
        self.call("POST", "/api/ingest", {"db": "p", "documents": [{"id": "a", "text": big_text(3)}]}, srv=srv)
        h = self.call("GET", "/health", srv=srv)
        ollama = h["services"]["ollama"]
        self.assertNotEqual(ollama["message"], "Operational", h)
        self.assertIs(ollama["reachable"], False)
        q = self.query(srv)
        self.assertEqual(q["provider"], "extractive")
        if requested:  # the user asked for this backend: its absence is degradation
            self.assertEqual(h["status"], "degraded", h)
            self.assertTrue(ollama["message"].startswith(("Unreachable", "Not reached yet", "Circuit")), ollama)
            self.assertIs(q["degraded"], True)
        else:  # the defaults, nothing there: running as intended
            self.assertEqual(h["status"], "healthy", h)
            self.assertIs(q["degraded"], False)

        fake = fake_ollama.FakeOllama(port=port, admin_port=0).start()
        self.addCleanup(fake.stop)
        h = self.wait_for(srv, lambda b: b["services"]["ollama"]["message"] == "Operational", "Operational")
        self.assertEqual(h["status"], "healthy", h)
        self.assertIs(h["services"]["ollama"]["in_use"], True)
        q = self.query(srv)
        self.assertEqual(q["provider"], "ollama", q)
        self.assertIs(q["degraded"], False)
        # a new collection now takes the backend's embedder
        res = self.call("POST", "/api/ingest", {"db": "later", "documents": [{"text": "after the backend came"}]},
                        srv=srv)
        self.assertEqual(res["embed_model"], "nomic-embed-text")
        self.assertEqual(res["warnings"], [])

        fake.stop()
        h = self.wait_for(srv, lambda b: b["status"] == "degraded", "degraded")
        self.assertNotEqual(h["services"]["ollama"]["message"], "Operational")
        q = self.query(srv)
        self.assertEqual(q["provider"], "extractive")
        self.assertIs(q["degraded"], True)  # it had answered: losing it is degradation

    def test_configured_backend_appears_later(self):
        port = harness.free_port()
        srv = self.new_server(env={"OLLAMA_BASE_URL": f"http://127.0.0.1:{port}", "RAGD_BREAKER_RECOVERY_S": "0.3"})
        self.cycle(srv, port, requested=True)

    def test_default_address_used_once_it_answers(self):
        if not port_free(11434):
            self.skipTest("port 11434 is taken on this machine: the default address cannot be faked")
        srv = self.new_server(env={"RAGD_BREAKER_RECOVERY_S": "0.3"})
        self.cycle(srv, 11434, requested=False)


if __name__ == "__main__":
    unittest.main()
