"""Credentials in backend URLs (`http://user:password@host`, `?token=...`) never leave the
process: not in /health, /metrics, /api/admin/breakers, a degraded answer's reason, an ingest
warning, the log, or a configuration error (docs/configuration.md)."""

import harness


PASSWORD = "pw-s3cret-4711"
TOKEN = "tok-0815-abcdef"
URL = f"http://alice:{PASSWORD}@127.0.0.1:9/?token={TOKEN}"  # port 9: nothing listens
ADMIN = "admin-token-0123456789"


class RedactionTest(harness.E2ETestCase):
    server_env = {"OLLAMA_BASE_URL": URL, "RAGD_ADMIN_TOKEN": ADMIN}

    def assert_clean(self, what, text):
        self.assertNotIn(PASSWORD, text, what)
        self.assertNotIn(TOKEN, text, what)

    def test_nowhere_to_be_seen(self):
        # auto embedder: the backend does not answer, the warning names where it looked
        r = self.server.request("POST", "/api/ingest", json_body={"db": "n", "documents": [
            {"id": "t", "text": "Tides are caused by the gravity of the Moon."}]})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.body["warnings"], r)
        self.assertIn("***@127.0.0.1:9", r.body["warnings"][0])
        self.assert_clean("ingest", r.raw.decode())
        reasons = []
        for _ in range(3):  # the configured LLM fails: degraded answers that say why
            q = self.server.request("POST", "/api/query", json_body={"db": "n", "query": "What causes tides?"})
            self.assertEqual(q.status, 200, q)
            self.assertTrue(q.body.get("degraded"), q)
            self.assert_clean("query", q.raw.decode())
            reasons.append(q.body.get("degraded_reason", ""))
        self.assertTrue(any("***@127.0.0.1:9" in r for r in reasons), reasons)  # the first names the host
        for path, headers in (("/health", {}), ("/metrics", {}), ("/api/pool/stats", {}),
                              ("/api/admin/breakers", {"X-API-Key": ADMIN})):
            r = self.server.request("GET", path, headers=headers)
            self.assertEqual(r.status, 200, (path, r))
            self.assert_clean(path, r.raw.decode())
        h = self.server.request("GET", "/health").raw.decode()
        self.assertIn("***@127.0.0.1:9", h)
        self.assert_clean("log", self.server.log_text())

    def test_configuration_errors(self):
        for name, value in (("OPENAI_BASE_URL", f"ftp://bob:{PASSWORD}@host/?token={TOKEN}"),
                            ("OLLAMA_BASE_URL", f"gopher://bob:{PASSWORD}@host/?token={TOKEN}")):
            p = harness.run_cli(["serve"], env={name: value, "RAGD_LISTEN": "127.0.0.1:0"}, timeout=15)
            self.assertEqual(p.returncode, 2, p)
            self.assertIn(name, p.stderr)
            self.assert_clean(name, p.stdout + p.stderr)


class BackendQuotesTheKeyTest(harness.E2ETestCase):
    """Some servers and proxies quote the API key they were sent in their error messages
    ("Incorrect API key provided: sk-..."): ragd passes backend messages on (a degraded
    answer's reason, the log), so it takes the key out of them first."""
    class_server = False
    KEY = "sk-live-0123456789abcdef"

    def test_key_quoted_by_the_backend_is_masked(self):
        fake = self.start_fake_ollama()
        srv = self.new_server(env={"RAGD_GENERATOR": "openai", "OPENAI_BASE_URL": fake.url,
                                   "OPENAI_API_KEY": self.KEY, "RAGD_LOG_LEVEL": "debug",
                                   "RAGD_BREAKER_FAILURES": "100"})  # every query reaches the backend
        r = srv.request("POST", "/api/ingest", json_body={"db": "k", "documents": [
            {"id": "t", "text": "Tides are caused by the gravity of the Moon."}]})
        self.assertEqual(r.status, 200, r)
        for message in (f"Incorrect API key provided: {self.KEY}. You can find your key at ...",
                        "x" * 300 + f" key {self.KEY}"):  # the second is cut to fit, mid-key
            fake.configure(fault="error500", fault_message=message)
            q = srv.request("POST", "/api/query", json_body={"db": "k", "query": "What causes tides?",
                                                             "use_cache": False})
            self.assertEqual(q.status, 200, q)
            self.assertTrue(q.body.get("degraded"), q)
            self.assertIn("***", q.body.get("degraded_reason", ""), q)
            self.assertNotIn(self.KEY[:8], q.raw.decode())
        self.assertGreaterEqual(fake.stats()["requests"].get("/v1/chat/completions", 0), 2)
        self.assertNotIn(self.KEY[:8], srv.log_text())


if __name__ == "__main__":
    import unittest
    unittest.main()
