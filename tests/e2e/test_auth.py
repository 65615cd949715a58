"""API keys (docs/api.md "Authentication"): with RAGD_API_KEYS set every route but the health
probes needs a key, given as `Authorization: Bearer KEY` or `X-API-Key: KEY`; 401
`unauthorized` in the envelope (with WWW-Authenticate) without a valid one, 403 `forbidden`
when a read-only key asks to change something; keys never in a response or the log; bad key
lists stop start-up with exit status 2 naming the variable (never the key).
"""
import os
import shutil
import tempfile

import harness

RW = "rw-key-0123456789abcdef"
RO = "ro-key-fedcba9876543210"
FILE_KEY = "file-key-aaaabbbbccccdddd"
ADMIN = "admin-token-0123456789"


class AuthTest(harness.E2ETestCase):
    server_env = {"RAGD_API_KEYS": f"{RW}, {RO}:read", "RAGD_ADMIN_TOKEN": ADMIN,
                  "RAGD_EMBEDDER": "builtin", "RAGD_GENERATOR": "extractive"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.class_call("POST", "/api/ingest", {"db": "notes", "documents": [
            {"id": "tides", "text": "Tides are caused by the gravity of the Moon acting on the oceans."}]},
            headers={"Authorization": f"Bearer {RW}"})

    def call(self, method, path, key=None, header="bearer", **kw):
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            if header == "bearer":
                headers["Authorization"] = f"Bearer {key}"
            else:
                headers["X-API-Key"] = key
        return self.server.request(method, path, headers=headers, **kw)

    def assert_envelope(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.is_json(), r)
        self.assertEqual(r.body["error"]["code"], code, r)
        self.assertTrue(r.body["error"]["request_id"], r)

    def raw(self, head):
        return harness.raw_request(self.server.port, head.encode() + b"Connection: close\r\n\r\n", method="GET")

    def test_two_credential_headers_are_400(self):
        """Two Authorization or two X-API-Key headers are ambiguous: 400, even with valid keys."""
        for extra in (f"Authorization: Bearer {RW}\r\nAuthorization: Bearer {RO}\r\n",
                      f"Authorization: Bearer {RW}\r\nAuthorization: Bearer {RW}\r\n",
                      f"X-API-Key: {RO}\r\nX-API-Key: {RW}\r\n"):
            with self.subTest(extra=extra):
                r = self.raw("GET /api/dbs HTTP/1.1\r\nHost: x\r\n" + extra)
                self.assert_envelope(r, 400, "invalid_json")
                self.assertIn("more than one", r.body["error"]["message"])
        # one of each is not ambiguous: the Authorization header is the one checked
        r = self.raw(f"GET /api/dbs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RW}\r\nX-API-Key: {RO}\r\n")
        self.assertEqual(r.status, 200, r)

    def test_bearer_then_tab_is_accepted(self):
        r = self.raw(f"GET /api/dbs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\t{RW}\r\n")
        self.assertEqual(r.status, 200, r)

    def test_no_key_is_401_with_the_envelope(self):
        for method, path, body in [("GET", "/api/dbs", None), ("POST", "/api/query", {"db": "notes", "query": "tides"}),
                                   ("POST", "/api/ingest", {"db": "notes", "documents": [{"text": "x"}]}),
                                   ("GET", "/metrics", None), ("GET", "/api/pool/stats", None),
                                   ("GET", "/api/admin/breakers", None)]:
            with self.subTest(path=path):
                r = self.call(method, path, json_body=body)
                self.assert_envelope(r, 401, "unauthorized")
                self.assertIn("Bearer", r.header("WWW-Authenticate", ""))
                self.assertIn("API key", r.body["error"]["message"])

    def test_wrong_or_cut_keys_are_401(self):
        for key in ["nope", RW[:-1], RW + "x", RW.upper(), RW + "x" * 600, " " + RW]:
            with self.subTest(key=key[:40]):
                r = self.call("GET", "/api/dbs", key=key)
                self.assert_envelope(r, 401, "unauthorized")
                self.assertIn("not valid", r.body["error"]["message"])
        r = self.call("GET", "/api/dbs", headers={"Authorization": f"Basic {RW}"})
        self.assert_envelope(r, 401, "unauthorized")

    def test_health_probes_need_no_key(self):
        for path in ("/health/live", "/health/ready", "/health"):
            with self.subTest(path=path):
                self.assertEqual(self.call("GET", path).status, 200)

    def test_read_write_key_both_headers(self):
        for header in ("bearer", "x-api-key"):
            with self.subTest(header=header):
                r = self.call("POST", "/api/query", key=RW, header=header,
                              json_body={"db": "notes", "query": "What causes tides?"})
                self.assertEqual(r.status, 200, r)
                self.assertIn("Moon", r.body["answer"])
                r = self.call("POST", "/api/ingest", key=RW, header=header,
                              json_body={"db": "notes", "documents": [{"id": f"d-{header}", "text": "Kelp grows."}]})
                self.assertEqual(r.status, 200, r)
        self.assertEqual(self.call("GET", "/metrics", key=RW).status, 200)

    def test_read_only_key_reads_but_cannot_change(self):
        self.assertEqual(self.call("GET", "/api/dbs", key=RO).status, 200)
        self.assertEqual(self.call("GET", "/api/dbs/notes/documents", key=RO).status, 200)
        for path, method in (("/api/query", "POST"), ("/api/retrieve", "POST")):
            r = self.call(method, path, key=RO, header="x-api-key", json_body={"db": "notes", "query": "tides"})
            self.assertEqual(r.status, 200, r)
        for method, path, body in [("POST", "/api/ingest", {"db": "notes", "documents": [{"text": "Moss."}]}),
                                   ("POST", "/api/dbs", {"name": "other"}),
                                   ("DELETE", "/api/dbs/notes/documents/tides", None),
                                   ("DELETE", "/api/dbs/notes", None),
                                   ("GET", "/api/admin/breakers", None)]:
            with self.subTest(path=path, method=method):
                r = self.call(method, path, key=RO, json_body=body)
                self.assert_envelope(r, 403, "forbidden")
                self.assertIn("read-only", r.body["error"]["message"])
        r = self.call("GET", "/api/dbs/notes/documents/tides", key=RO)
        self.assertEqual(r.status, 200, r)  # the read-only attempts changed nothing

    def test_admin_routes_take_a_read_write_key_or_the_admin_token(self):
        self.assertEqual(self.call("GET", "/api/admin/breakers", key=RW).status, 200)
        self.assertEqual(self.call("GET", "/api/admin/breakers", key=ADMIN).status, 200)
        self.assertEqual(self.call("GET", "/api/dbs", key=ADMIN).status, 200)

    def test_keys_never_in_responses_or_the_log(self):
        self.call("GET", "/api/dbs", key=RW + "-wrong")
        self.call("GET", "/api/dbs", key=RO)
        self.call("POST", "/api/ingest", key=RO, json_body={"db": "notes", "documents": [{"text": "Moss."}]})
        for path in ("/health", "/metrics", "/api/pool/stats"):
            r = self.call("GET", path, key=RW)
            for secret in (RW, RO, ADMIN):
                self.assertNotIn(secret.encode(), r.raw, path)
        log = self.server.log_text()
        for secret in (RW, RO, ADMIN, FILE_KEY):
            self.assertNotIn(secret, log)


class AuthConfigTest(harness.E2ETestCase):
    class_server = False

    def test_keys_file_and_bad_lists(self):
        d = tempfile.mkdtemp(prefix="ragd-e2e-auth-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "keys")
        with open(path, "w") as f:
            f.write(f"# the team's keys\n\n  {FILE_KEY}:read  \n{RW}\n")
        srv = self.new_server(env={"RAGD_API_KEYS_FILE": path})
        self.assertEqual(srv.request("GET", "/api/dbs", headers={"X-API-Key": FILE_KEY}).status, 200)
        r = srv.request("POST", "/api/dbs", json_body={"name": "x"}, headers={"X-API-Key": FILE_KEY})
        self.assertEqual(r.status, 403, r)
        self.assertEqual(srv.request("POST", "/api/dbs", json_body={"name": "x"},
                                     headers={"Authorization": f"Bearer {RW}"}).status, 201)
        self.assertEqual(srv.request("GET", "/api/dbs").status, 401)
        srv.stop()
        self.assertNotIn(FILE_KEY, srv.log_text())

        data = os.path.join(d, "data")
        os.mkdir(data)
        bad = [("RAGD_API_KEYS", "short"), ("RAGD_API_KEYS", f"{RW}:admin"), ("RAGD_API_KEYS", f"{RW} {RO}"),
               ("RAGD_API_KEYS_FILE", os.path.join(d, "missing"))]
        for name, value in bad:
            p = harness.run_cli(["serve"], env={name: value, "RAGD_LISTEN": "127.0.0.1:0", "RAGD_DATA_DIR": data},
                                timeout=15)
            self.assertEqual(p.returncode, 2, (name, value, p))
            self.assertIn(name, p.stderr)
            self.assertNotIn(RW, p.stderr)
        self.assertEqual(os.listdir(data), [])

    def test_cli_sends_RAGD_API_KEY(self):
        srv = self.new_server(env={"RAGD_API_KEYS": RW, "RAGD_EMBEDDER": "builtin"})
        d = tempfile.mkdtemp(prefix="ragd-e2e-authcli-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "fjord.txt"), "w") as f:
            f.write("A fjord is a long, narrow inlet with steep sides, created by a glacier.")
        p = harness.run_cli(["ingest", "--url", srv.url, "--db", "geo", d], env={"RAGD_API_KEY": RW})
        self.assertEqual(p.returncode, 0, p)
        p = harness.run_cli(["ingest", "--url", srv.url, "--db", "geo", d])
        self.assertNotEqual(p.returncode, 0, p)
        self.assertIn("401", p.stdout + p.stderr)


class AdminTokenLengthTest(harness.E2ETestCase):
    """Without API keys the admin token alone guards the admin routes: compared whole, so a
    511-character token followed by anything is no longer accepted (the credential was cut at
    511 characters and the cut matched)."""
    TOKEN = "t" * 511
    server_env = {"RAGD_ADMIN_TOKEN": TOKEN}

    def test_token_plus_suffix_is_refused(self):
        ok = self.server.request("GET", "/api/admin/breakers", headers={"X-API-Key": self.TOKEN})
        self.assertEqual(ok.status, 200, ok)
        for extra in ("x", "xyz" * 40):
            r = self.server.request("GET", "/api/admin/breakers", headers={"X-API-Key": self.TOKEN + extra})
            self.assertEqual(r.status, 401, r)
        self.assertEqual(self.server.request("GET", "/api/dbs").status, 200)  # no keys: the API is open


if __name__ == "__main__":
    import unittest
    unittest.main()
