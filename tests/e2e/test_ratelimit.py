"""Rate limits per client (docs/api.md "Rate limits"): RATE_LIMIT_QUERY for /api/query and
/api/retrieve, RAGD_RATE_LIMIT_INGEST for /api/ingest, in the N/second|minute|hour form;
token buckets keyed by the API key when keys are configured, else by the client's address;
429 rate_limited in the envelope with Retry-After, and X-RateLimit-Limit/Remaining/Reset on
every answer of a limited route. The buckets' arithmetic (refill, the bounded table) is in
tests/unit/test_util.c on a fake clock."""
import harness

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"


class RateLimitTest(harness.E2ETestCase):
    server_env = {"RATE_LIMIT_QUERY": "3/minute", "RAGD_RATE_LIMIT_INGEST": "2/hour", "RAGD_EMBEDDER": "builtin",
                  "RAGD_GENERATOR": "extractive"}

    def test_query_retrieve_and_ingest_limits(self):
        docs = {"db": "n", "documents": [{"id": "t", "text": "Tides are caused by the Moon."}]}
        for i in range(2):
            r = self.server.request("POST", "/api/ingest", json_body=docs)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("X-RateLimit-Limit"), "2")
            self.assertEqual(r.header("X-RateLimit-Remaining"), str(1 - i))
        r = self.server.request("POST", "/api/ingest", json_body=docs)
        self.assertEqual(r.status, 429, r)
        self.assertEqual(r.body["error"]["code"], "rate_limited")
        self.assertIn("RAGD_RATE_LIMIT_INGEST allows 2 per hour", r.body["error"]["message"])
        self.assertGreaterEqual(int(r.header("Retry-After")), 1700)  # one request every 1,800 s

        q = {"db": "n", "query": "What causes tides?"}
        seen = []
        for path in ("/api/query", "/api/retrieve", "/api/query"):  # one bucket for both routes
            r = self.server.request("POST", path, json_body=q)
            self.assertEqual(r.status, 200, r)
            seen.append(r.header("X-RateLimit-Remaining"))
        self.assertEqual(seen, ["2", "1", "0"])
        r = self.server.request("POST", "/api/retrieve", json_body=q)
        self.assertEqual(r.status, 429, r)
        self.assertEqual(r.body["error"]["code"], "rate_limited")
        self.assertTrue(r.body["error"]["request_id"])
        self.assertIn(int(r.header("Retry-After")), range(1, 21))  # one request every 20 s
        self.assertEqual(r.header("X-RateLimit-Limit"), "3")
        self.assertEqual(r.header("X-RateLimit-Remaining"), "0")
        # other routes are not limited
        for path in ("/api/dbs", "/health", "/health/live", "/metrics"):
            r = self.server.request("GET", path)
            self.assertEqual(r.status, 200, path)
            self.assertIsNone(r.header("X-RateLimit-Limit"), path)

    def test_bad_values_stop_start_up(self):
        for name, value in (("RATE_LIMIT_QUERY", "5/day"), ("RATE_LIMIT_QUERY", "five/minute"),
                            ("RAGD_RATE_LIMIT_INGEST", "0/s"), ("RAGD_RATE_LIMIT_INGEST", "10")):
            p = harness.run_cli(["serve"], env={name: value, "RAGD_LISTEN": "127.0.0.1:0"}, timeout=15)
            self.assertEqual(p.returncode, 2, (name, value, p))
            self.assertIn(name, p.stderr)


class RateLimitPerKeyTest(harness.E2ETestCase):
    server_env = {"RATE_LIMIT_QUERY": "2/minute", "RAGD_API_KEYS": f"{KEY_A},{KEY_B}:read",
                  "RAGD_EMBEDDER": "builtin", "RAGD_GENERATOR": "extractive"}

    def test_each_key_has_its_own_bucket(self):
        q = {"db": "default", "query": "anything"}
        for key, statuses in ((KEY_A, [404, 404, 429]), (KEY_B, [404, 404, 429])):
            got = [self.server.request("POST", "/api/retrieve", json_body=q,
                                       headers={"X-API-Key": key}).status for _ in range(3)]
            self.assertEqual(got, statuses, key[:5])
        # an unauthenticated request is refused before it can spend anyone's tokens
        self.assertEqual(self.server.request("POST", "/api/retrieve", json_body=q).status, 401)


if __name__ == "__main__":
    import unittest
    unittest.main()
