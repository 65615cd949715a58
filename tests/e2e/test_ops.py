"""Operations: the access line, JSON logs that never show a secret, and SIGHUP reload
(docs/operations.md "Logs" and "Reloading the configuration")."""

import json
import os
import signal
import tempfile
import time
import unittest

import harness

KEY_A = "alpha-key-0123456789abcdef"
KEY_B = "bravo-key-9876543210fedcba"
ADMIN = "admin-token-SECRET-0123456789"
OPENAI_KEY = "sk-openai-SECRET-abcdef0123456789"
URL_PASSWORD = "urlpassSECRET42"
QUERY_SECRET = "querySECRETvalue77"
SECRETS = (KEY_A, KEY_B, ADMIN, OPENAI_KEY, URL_PASSWORD, QUERY_SECRET)

DOCS = [{"id": "k1", "text": "Krakatoa erupted in 1883 and was heard thousands of kilometres away."},
        {"id": "e1", "text": "Etna is an active volcano on the east coast of Sicily."}]


def wait_for(predicate, timeout=10.0):
    """Polls predicate until it is true (a deadline for a state, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


class JsonLogsTest(harness.E2ETestCase):
    class_server = False

    def test_every_line_is_json_and_no_secret_appears(self):
        fake = self.start_fake_ollama()
        host = fake.url.split("://", 1)[1]
        srv = self.new_server(env={
            "RAGD_LOG_FORMAT": "json",
            "RAGD_LOG_LEVEL": "debug",
            "RAGD_API_KEYS": KEY_A,
            "RAGD_ADMIN_TOKEN": ADMIN,
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "OPENAI_API_KEY": OPENAI_KEY,
            "OLLAMA_BASE_URL": f"http://ragd:{URL_PASSWORD}@{host}",
            "RAGD_EMBEDDER": "builtin",
        })
        self.call("POST", "/api/ingest", {"db": "j", "documents": DOCS}, srv=srv, headers=bearer(KEY_A))
        body = self.call("POST", f"/api/query?api_key={QUERY_SECRET}&key={QUERY_SECRET}",
                         {"query": "When did Krakatoa erupt?", "db": "j"}, srv=srv,
                         headers=dict(bearer(KEY_A), **{"X-Request-ID": "ops-json-1"}))
        self.assertTrue(body["answer"])
        self.assertEnvelope(srv.request("GET", "/api/dbs", headers=bearer(KEY_B)), 401, "unauthorized")
        self.assertEnvelope(srv.request("GET", "/api/dbs", headers={"X-API-Key": OPENAI_KEY}), 401, "unauthorized")
        srv.request("GET", f"/no/such/route?token={QUERY_SECRET}", headers=bearer(KEY_A))
        srv.request("GET", "/api/admin/stats", headers=bearer(ADMIN))
        srv.request("GET", f"/api/dbs/j/documents/k1?api_key={QUERY_SECRET}", headers=bearer(KEY_A))
        self.assertTrue(wait_for(lambda: "ops-json-1" in srv.log_text()), "no access line for the query")
        srv.stop()

        text = srv.log_text()
        for secret in SECRETS:
            self.assertNotIn(secret, text, f"a secret is in the log: {secret}")
        records = []
        for line in text.splitlines():
            if not line.strip() or line.startswith("=== e2e harness"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                self.fail(f"not a JSON line: {line!r}")
            self.assertIsInstance(rec, dict, line)
            for key in ("ts", "level", "msg"):
                self.assertIn(key, rec, line)
            records.append(rec)
        access = [r for r in records if r.get("request_id") == "ops-json-1"]
        self.assertEqual(len(access), 1, access)
        a = access[0]
        self.assertEqual(a["method"], "POST")
        self.assertEqual(a["route"], "/api/query")
        self.assertEqual(a["status"], 200)
        self.assertGreater(a["bytes"], 0)
        self.assertIsInstance(a["duration_ms"], (int, float))
        self.assertGreater(a["generate_ms"], 0, "the query called the generator: its time is logged")
        doc = [r for r in records if r.get("route") == "/api/dbs/{name}/documents/{*id}"]
        self.assertTrue(doc, "the access line names the route pattern, not the raw path")
        self.assertTrue(any(r.get("status") == 401 for r in records))
        self.assertTrue(any(r["level"] == "debug" for r in records))


    def test_a_configuration_error_is_a_json_line_too(self):
        import subprocess
        env = harness.base_env({"RAGD_LOG_FORMAT": "json", "RAGD_CHUNK_SIZE": "abc"})
        p = subprocess.run([harness.ragd_bin(), "serve"], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        rec = json.loads(p.stderr.strip().splitlines()[-1])
        self.assertEqual(rec["level"], "error")
        self.assertIn("RAGD_CHUNK_SIZE", rec["msg"])


class TextAccessLineTest(harness.E2ETestCase):
    server_env = {"RAGD_EMBEDDER": "builtin"}

    def test_access_line_has_bytes_route_and_id(self):
        self.call("POST", "/api/ingest", {"db": "t", "documents": DOCS})
        r = self.server.request("GET", "/api/dbs/t", headers={"X-Request-ID": "ops-text-1"})
        self.assertEqual(r.status, 200)
        self.assertTrue(wait_for(lambda: "id=ops-text-1" in self.server.log_text()))
        line = [ln for ln in self.server.log_text().splitlines() if "id=ops-text-1" in ln][-1]
        self.assertIn(" info  GET /api/dbs/{name} 200 ", line)
        self.assertIn(f" bytes={len(r.raw)} ", line)


class ThreadNamesTest(harness.E2ETestCase):
    """The server's threads carry names an operator can read in `top -H`, `ps -L` and perf
    (docs/operations.md): the loop keeps the process's name ("ragd"), the query workers "ragd-worker-N", the ingest
    workers "ragd-ingest-N", the store's writer "ragd-writer"."""
    server_env = {"RAGD_WORKERS": "3", "RAGD_INGEST_WORKERS": "2"}

    def test_threads_are_named(self):
        pid = self.server.proc.pid
        names = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
        # the loop keeps the process's own name ("ragd" installed); threads ragd did not make
        # (a sanitizer's, a resolver's) may carry it too
        self.assertIn(os.path.basename(self.server.proc.args[0])[:15], names)
        for want in ("ragd-writer", "ragd-worker-0", "ragd-worker-1", "ragd-worker-2",
                     "ragd-ingest-0", "ragd-ingest-1"):
            self.assertEqual(names.count(want), 1, f"{want} in {sorted(names)}")
        self.assertNotIn("ragd-worker-3", names)


class ReloadTest(harness.E2ETestCase):
    class_server = False

    def write_config(self, path, text):
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    def reload(self, srv, count):
        """SIGHUP, then waits for the reload's log line number `count`."""
        srv.signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: srv.log_text().count("reload (SIGHUP)") >= count),
                        "no reload line after SIGHUP")
        return [ln for ln in srv.log_text().splitlines() if "reload (SIGHUP)" in ln][-1]

    def test_sighup_swaps_keys_and_log_level(self):
        root = tempfile.mkdtemp(prefix="ragd-e2e-conf-")
        self.addCleanup(lambda: __import__("shutil").rmtree(root, ignore_errors=True))
        conf = os.path.join(root, "ragd.conf")
        self.write_config(conf, f"# ragd\nRAGD_API_KEYS={KEY_A}\nRAGD_LOG_LEVEL=warn\n")
        srv = self.new_server(env={"RAGD_CONFIG_FILE": conf, "RAGD_EMBEDDER": "builtin",
                                   "RAGD_API_KEYS": "env-key-is-overridden-0123"})
        self.call("GET", "/api/dbs", srv=srv, headers=bearer(KEY_A))
        self.assertEnvelope(srv.request("GET", "/api/dbs", headers=bearer(KEY_B)), 401, "unauthorized")
        self.assertNotIn("GET /api/dbs 200", srv.log_text(), "RAGD_LOG_LEVEL=warn from the file")

        self.write_config(conf, f"RAGD_API_KEYS='{KEY_B}'\nexport RAGD_LOG_LEVEL=info\nRAGD_WORKERS=3\n")
        line = self.reload(srv, 1)
        self.assertIn("RAGD_API_KEYS", line)
        self.assertIn("RAGD_LOG_LEVEL", line)
        self.assertRegex(line, r"needs_restart=\"?RAGD_WORKERS")
        self.assertEnvelope(srv.request("GET", "/api/dbs", headers=bearer(KEY_A)), 401, "unauthorized")
        self.call("GET", "/api/dbs", srv=srv, headers=dict(bearer(KEY_B), **{"X-Request-ID": "after-hup"}))
        self.assertTrue(wait_for(lambda: "id=after-hup" in srv.log_text()), "log level info after the reload")

        # a file that does not load is refused whole: the running keys stay
        self.write_config(conf, f"RAGD_API_KEYS={KEY_A}\nRAGD_NO_SUCH_SETTING=1\n")
        srv.signal(signal.SIGHUP)
        self.assertTrue(wait_for(lambda: "reload (SIGHUP): refused" in srv.log_text()))
        self.call("GET", "/api/dbs", srv=srv, headers=bearer(KEY_B))
        self.assertEnvelope(srv.request("GET", "/api/dbs", headers=bearer(KEY_A)), 401, "unauthorized")

        # still pending: a restart is named again; nothing changed otherwise
        self.write_config(conf, f"RAGD_API_KEYS={KEY_B}\nRAGD_LOG_LEVEL=info\nRAGD_WORKERS=3\n")
        line = self.reload(srv, 3)
        self.assertIn("RAGD_WORKERS", line)
        self.assertIn("applied=\"nothing changed\"", line)
        srv.stop()
        for secret in (KEY_A, KEY_B, "env-key-is-overridden"):
            self.assertNotIn(secret, srv.log_text())

    def test_a_keys_file_with_new_contents_is_reloaded(self):
        root = tempfile.mkdtemp(prefix="ragd-e2e-conf-")
        self.addCleanup(lambda: __import__("shutil").rmtree(root, ignore_errors=True))
        keys = os.path.join(root, "keys")
        self.write_config(keys, f"# keys\n{KEY_A}\n")
        srv = self.new_server(env={"RAGD_API_KEYS_FILE": keys, "RAGD_EMBEDDER": "builtin"})
        self.call("GET", "/api/dbs", srv=srv, headers=bearer(KEY_A))
        self.write_config(keys, f"{KEY_B}:read\n")
        line = self.reload(srv, 1)
        self.assertIn("RAGD_API_KEYS_FILE (contents)", line)
        self.assertEnvelope(srv.request("GET", "/api/dbs", headers=bearer(KEY_A)), 401, "unauthorized")
        self.call("GET", "/api/dbs", srv=srv, headers=bearer(KEY_B))
        self.assertEnvelope(srv.request("POST", "/api/dbs", json_body={"name": "x"}, headers=bearer(KEY_B)),
                            403, "forbidden")

    def test_response_and_metadata_caps_need_a_restart(self):
        # read by requests on worker threads while they run: named, not applied
        root = tempfile.mkdtemp(prefix="ragd-e2e-conf-")
        self.addCleanup(lambda: __import__("shutil").rmtree(root, ignore_errors=True))
        conf = os.path.join(root, "ragd.conf")
        self.write_config(conf, "RAGD_MAX_METADATA_BYTES=300\n")
        srv = self.new_server(env={"RAGD_CONFIG_FILE": conf, "RAGD_EMBEDDER": "builtin"})
        self.write_config(conf, "RAGD_MAX_METADATA_BYTES=65536\nRAGD_MAX_RESPONSE_BYTES=131072\n")
        line = self.reload(srv, 1)
        self.assertIn("applied=\"nothing changed\"", line)
        self.assertRegex(line, r"needs_restart=\"[^\"]*RAGD_MAX_METADATA_BYTES")
        self.assertRegex(line, r"needs_restart=\"[^\"]*RAGD_MAX_RESPONSE_BYTES")
        doc = {"db": "m", "documents": [{"id": "x", "text": "words", "metadata": {"note": "n" * 400}}]}
        self.assertEnvelope(srv.request("POST", "/api/ingest", json_body=doc), 422, "validation_error")

    def test_rate_limit_and_body_cap_follow_a_reload(self):
        root = tempfile.mkdtemp(prefix="ragd-e2e-conf-")
        self.addCleanup(lambda: __import__("shutil").rmtree(root, ignore_errors=True))
        conf = os.path.join(root, "ragd.conf")
        self.write_config(conf, "RAGD_MAX_BODY_BYTES=1048576\n")
        srv = self.new_server(env={"RAGD_CONFIG_FILE": conf, "RAGD_EMBEDDER": "builtin"})
        big = {"db": "b", "documents": [{"id": "x", "text": "word " * 4000}]}
        self.call("POST", "/api/ingest", big, srv=srv)
        for _ in range(3):
            self.call("GET", "/api/dbs", srv=srv)
        self.write_config(conf, "RAGD_MAX_BODY_BYTES=4096\nRATE_LIMIT_QUERY=2/minute\n")
        self.reload(srv, 1)
        self.assertEnvelope(srv.request("POST", "/api/ingest", json_body=big), 413, "payload_too_large")
        q = {"query": "word", "db": "b"}
        codes = [srv.request("POST", "/api/retrieve", json_body=q).status for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])


if __name__ == "__main__":
    unittest.main()
