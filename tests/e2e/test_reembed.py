"""Re-embedding a collection in the background (POST/GET/DELETE /api/dbs/{name}/reembed)
against the fake Ollama: a builtin collection of a few thousand chunks moved to the fake's
model while it is queried, with a SIGKILL in the middle (the job resumes and finishes), the
swap seen in GET /api/dbs/{name} and in the fake's embed calls; cancel; a backend failing
mid-job (failed state, old vectors kept, the job restartable); 404, 409 and 422."""
import threading
import time
import unittest

import harness


ANIMALS = ["otter", "heron", "badger", "lynx", "marten", "ibis", "gecko", "tapir", "okapi", "quokka"]
WAIT_S = 120  # an upper bound for a job to reach a state, not a speed assertion


def docs(start, n):
    return [{"id": f"d{i}", "text": f"Note {i}: the {ANIMALS[i % 10]} number {i} lives near river {i * 7}."}
            for i in range(start, start + n)]


class ReembedTest(harness.E2ETestCase):
    class_server = False

    def start(self, **env):
        self.fake = self.start_fake_ollama()
        base = {"RAGD_EMBEDDER": "ollama", "OLLAMA_BASE_URL": self.fake.url, "RAGD_BREAKER_FAILURES": "50",
                "RAGD_GENERATOR": "extractive"}
        base.update(env)
        self.srv = self.new_server(env=base)

    def builtin_collection(self, name, n, batch=500):
        """A collection created builtin (POST /api/dbs), n one-chunk documents ingested into it."""
        self.call("POST", "/api/dbs", {"name": name}, status=201, srv=self.srv)
        for at in range(0, n, batch):
            self.call("POST", "/api/ingest", {"db": name, "documents": docs(at, min(batch, n - at))}, srv=self.srv)
        coll = self.call("GET", f"/api/dbs/{name}", srv=self.srv)
        self.assertEqual(coll["embed_model"], "ragd-hash-v1-512")
        self.assertEqual(coll["chunks"], n)
        self.assertEqual(self.fake.stats()["embed_calls"], 0)

    def job(self, name):
        return self.call("GET", f"/api/dbs/{name}", srv=self.srv).get("reembed")

    def wait_job(self, name, pred, what):
        deadline = time.monotonic() + WAIT_S
        job = None
        while time.monotonic() < deadline:
            job = self.job(name)
            if pred(job):
                return job
            time.sleep(0.05)
        self.fail(f"re-embedding of {name} never reached {what}: {job}")

    def test_reembed_builtin_to_fake_while_querying_with_a_restart(self):
        n = 3000
        self.start()
        self.builtin_collection("big", n)
        # ~2 ms per input: the job takes several seconds, so the restart lands in the middle
        self.fake.configure(embed_input_ms=2.0)
        r = self.call("POST", "/api/dbs/big/reembed", {"embedder": "ollama", "model": "nomic-embed-text"},
                      status=202, srv=self.srv)
        self.assertEqual(r["reembed"]["state"], "running")
        self.assertEqual(r["reembed"]["total"], n)

        # a second job on the same collection: 409
        r2 = self.srv.request("POST", "/api/dbs/big/reembed", json_body={"embedder": "builtin"})
        self.assertEnvelope(r2, 409, "reembed_running")

        # queries keep answering through the job, with the old (builtin) embedder
        stop = threading.Event()
        statuses = []

        def query_loop():
            i = 0
            while not stop.is_set():
                try:
                    resp = self.srv.request("POST", "/api/retrieve",
                                            json_body={"db": "big", "query": f"the tapir number {7 + 10 * i}",
                                                       "k": 3})
                    statuses.append(resp.status)
                except OSError:
                    statuses.append("down")  # only while the server is killed below
                i += 1
                time.sleep(0.01)
        t = threading.Thread(target=query_loop)
        t.start()
        try:
            job = self.wait_job("big", lambda j: j and j["done"] >= n // 4, "a quarter")
            self.assertEqual(job["state"], "running")
            self.assertLess(job["done"], n, "the job finished before the restart: make the fake slower")
            self.assertEqual(self.call("GET", "/api/dbs/big", srv=self.srv)["embed_model"], "ragd-hash-v1-512")
            before_kill = list(statuses)

            # kill -9 in the middle, start again: the job resumes where it was
            self.srv.kill()
            self.srv.restart()
            job = self.job("big")
            self.assertIsNotNone(job)
            self.assertIn(job["state"], ("running", "done"))
            self.assertGreaterEqual(job["done"], n // 4)  # the vectors stored before the kill are kept
            self.wait_job("big", lambda j: j and j["state"] == "done", "done")
        finally:
            stop.set()
            t.join()
        self.assertTrue(before_kill and all(s == 200 for s in before_kill), before_kill)
        after = [s for s in statuses[len(before_kill):] if s != "down"]
        self.assertTrue(after and all(s in (200, 503) for s in after), after)  # 503 only while starting
        self.assertIn("resuming job", self.srv.log_text())

        coll = self.call("GET", "/api/dbs/big", srv=self.srv)
        self.assertEqual(coll["embed_model"], "nomic-embed-text")
        self.assertEqual(coll["dim"], 768)
        self.assertEqual(coll["chunks"], n)
        self.assertEqual(coll["reembed"]["state"], "done")
        self.assertEqual(coll["reembed"]["done"], n)
        # queries now embed with the fake, and its vectors find the right chunk
        calls = self.fake.stats()["embed_calls"]
        body = self.call("POST", "/api/retrieve", {"db": "big", "query": "the tapir number 2387 near river 16709",
                                                   "method": "vector", "k": 3}, srv=self.srv)
        self.assertEqual(self.fake.stats()["embed_calls"], calls + 1)
        self.assertEqual(body["sources"][0]["doc_id"], "d2387")
        self.assertFalse(body["degraded"])
        # and the swap survives another restart (the vectors are in the store)
        self.srv.stop()
        self.srv.restart()
        body = self.call("POST", "/api/retrieve", {"db": "big", "query": "the tapir number 2387 near river 16709",
                                                   "method": "vector", "k": 3}, srv=self.srv)
        self.assertEqual(body["sources"][0]["doc_id"], "d2387")

    def test_chunks_ingested_and_deleted_during_the_job(self):
        self.start()
        self.builtin_collection("mix", 600)
        self.fake.configure(embed_input_ms=5.0)
        self.call("POST", "/api/dbs/mix/reembed", {"embedder": "ollama"}, status=202, srv=self.srv)
        # written while the job runs: embedded with the old (builtin) embedder, then picked
        # up by the job before the swap; a deleted document is no error
        self.call("POST", "/api/ingest", {"db": "mix", "documents": docs(600, 50)}, srv=self.srv)
        self.call("DELETE", "/api/dbs/mix/documents/d3", srv=self.srv)
        # a clean shutdown (SIGTERM, exit 0) in the middle; the job resumes after the restart
        self.assertEqual(self.job("mix")["state"], "running")
        self.srv.stop()
        self.srv.restart()
        self.wait_job("mix", lambda j: j and j["state"] == "done", "done")
        self.assertIn("resuming job", self.srv.log_text())
        coll = self.call("GET", "/api/dbs/mix", srv=self.srv)
        self.assertEqual(coll["embed_model"], "nomic-embed-text")
        self.assertEqual(coll["chunks"], 649)
        body = self.call("POST", "/api/retrieve", {"db": "mix", "query": "the otter number 640 near river 4480",
                                                   "method": "vector", "k": 3}, srv=self.srv)
        self.assertEqual(body["sources"][0]["doc_id"], "d640")

    def test_cancel_drops_the_new_vectors(self):
        self.start()
        self.builtin_collection("c", 1000)
        self.fake.configure(embed_input_ms=5.0)
        self.call("POST", "/api/dbs/c/reembed", {"embedder": "ollama"}, status=202, srv=self.srv)
        self.wait_job("c", lambda j: j and j["done"] > 0, "its first batch")
        res = self.call("DELETE", "/api/dbs/c/reembed", srv=self.srv)
        self.assertTrue(res["cancelled"])
        coll = self.call("GET", "/api/dbs/c", srv=self.srv)
        self.assertNotIn("reembed", coll)
        self.assertEqual(coll["embed_model"], "ragd-hash-v1-512")
        self.assertEnvelope(self.srv.request("GET", "/api/dbs/c/reembed"), 404, "reembed_not_found")
        self.assertEnvelope(self.srv.request("DELETE", "/api/dbs/c/reembed"), 404, "reembed_not_found")
        time.sleep(0.5)  # the batch in flight comes back to a cancelled job: nothing stored
        self.assertNotIn("reembed", self.call("GET", "/api/dbs/c", srv=self.srv))
        # an answer cached before the next job must not answer after its swap
        question = {"db": "c", "query": "where does the heron number 11 live?"}
        self.assertIs(self.call("POST", "/api/query", question, srv=self.srv)["cached"], False)
        self.assertIs(self.call("POST", "/api/query", question, srv=self.srv)["cached"], True)
        # a new job after a cancel starts from nothing and finishes
        self.fake.configure(embed_input_ms=0.0)
        r = self.call("POST", "/api/dbs/c/reembed", {"embedder": "ollama"}, status=202, srv=self.srv)
        self.assertEqual(r["reembed"]["state"], "running")
        self.wait_job("c", lambda j: j and j["state"] == "done", "done")
        self.assertIs(self.call("POST", "/api/query", question, srv=self.srv)["cached"], False)
        self.assertEqual(self.call("GET", "/api/dbs/c", srv=self.srv)["embed_model"], "nomic-embed-text")

    def test_backend_failing_mid_job_fails_and_keeps_the_old_vectors(self):
        admin = "reembed-admin-token-0123456789"
        self.start(RAGD_EMBED_TIMEOUT_S="2", RAGD_ADMIN_TOKEN=admin)
        self.builtin_collection("f", 1000)
        self.fake.configure(embed_input_ms=3.0)
        self.call("POST", "/api/dbs/f/reembed", {"embedder": "ollama"}, status=202, srv=self.srv)
        self.wait_job("f", lambda j: j and j["done"] > 0, "its first batch")
        self.fake.configure(fault="error500")
        job = self.wait_job("f", lambda j: j and j["state"] == "failed", "failed")
        self.assertIn("ollama", job["error"])
        self.assertLess(job["done"], 1000)
        coll = self.call("GET", "/api/dbs/f", srv=self.srv)
        self.assertEqual(coll["embed_model"], "ragd-hash-v1-512")  # the old vectors still serve
        body = self.call("POST", "/api/retrieve", {"db": "f", "query": "the badger number 2 near river 14",
                                                   "method": "vector", "k": 3}, srv=self.srv)
        self.assertEqual(body["sources"][0]["doc_id"], "d2")
        # restarted once the backend is back: it goes on from the vectors it has
        done_before = job["done"]
        self.fake.configure(fault="none", embed_input_ms=0.0)
        self.call("POST", "/api/admin/breakers", {"action": "reset"}, srv=self.srv,  # no wait for a half-open
                  headers={"Authorization": f"Bearer {admin}"})
        r = self.call("POST", "/api/dbs/f/reembed", {"embedder": "ollama"}, status=202, srv=self.srv)
        self.assertEqual(r["reembed"]["state"], "running")
        job = self.wait_job("f", lambda j: j and j["state"] == "done", "done")
        self.assertEqual(self.call("GET", "/api/dbs/f", srv=self.srv)["embed_model"], "nomic-embed-text")
        self.assertGreater(done_before, 0)

    def test_cli_reembed_wait_and_status(self):
        self.start()
        self.builtin_collection("cli", 40)
        p = harness.run_cli(["reembed", "cli", "--embedder", "ollama", "--wait", "--url", self.srv.url])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("re-embedding with ollama 'nomic-embed-text' started (40 chunks)", p.stdout)
        self.assertIn("cli: done ollama 'nomic-embed-text' 40/40", p.stdout)
        p = harness.run_cli(["reembed", "cli", "--status", "--url", self.srv.url])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("done", p.stdout)
        p = harness.run_cli(["reembed", "cli", "--embedder", "ollama", "--url", self.srv.url])
        self.assertEqual(p.returncode, 1)  # already embedded with it: the server's 422, one line
        self.assertIn("already embedded", p.stderr)
        self.assertIn("HTTP 422", p.stderr)
        p = harness.run_cli(["reembed", "cli", "--url", self.srv.url])
        self.assertEqual(p.returncode, 2)

    def test_empty_collection_takes_the_new_dimension(self):
        self.start()
        self.call("POST", "/api/dbs", {"name": "empty"}, status=201, srv=self.srv)
        self.call("POST", "/api/dbs/empty/reembed", {"embedder": "ollama"}, status=202, srv=self.srv)
        self.wait_job("empty", lambda j: j and j["state"] == "done", "done")
        coll = self.call("GET", "/api/dbs/empty", srv=self.srv)
        self.assertEqual((coll["embed_model"], coll["dim"]), ("nomic-embed-text", 768))
        # later ingests embed with the new model and are found by it
        self.call("POST", "/api/ingest", {"db": "empty", "documents": docs(0, 5)}, srv=self.srv)
        body = self.call("POST", "/api/retrieve", {"db": "empty", "query": "the badger number 2 near river 14",
                                                   "method": "vector"}, srv=self.srv)
        self.assertEqual(body["sources"][0]["doc_id"], "d2")

    def test_backend_message_cannot_forge_log_lines(self):
        self.start()
        self.builtin_collection("f", 5)
        self.fake.configure(fault="error500", fault_paths=["/api/embed"],
                            fault_message="boom\n2026-01-01T00:00:00.000Z info  forged line\r\u001b[2J")
        self.call("POST", "/api/dbs/f/reembed", {"embedder": "ollama", "model": "nomic-embed-text"}, status=202,
                  srv=self.srv)
        job = self.wait_job("f", lambda j: j and j["state"] == "failed", "failed")
        self.assertIn("forged line", job["error"])  # the API reports it (JSON escapes it)
        log = self.srv.log_text()
        self.assertIn("forged line", log)  # the log too, but within its own record
        self.assertFalse([ln for ln in log.splitlines() if ln.startswith("2026-01-01T")], log[-2000:])
        self.assertNotIn("\x1b", log)

    def test_errors_in_the_envelope(self):
        self.start()
        self.builtin_collection("e", 5)
        post = lambda db, body: self.srv.request("POST", f"/api/dbs/{db}/reembed", json_body=body)  # noqa: E731
        self.assertEnvelope(post("nope", {"embedder": "ollama"}), 404, "db_not_found")
        self.assertEnvelope(self.srv.request("GET", "/api/dbs/nope/reembed"), 404, "db_not_found")
        self.assertEnvelope(self.srv.request("DELETE", "/api/dbs/nope/reembed"), 404, "db_not_found")
        self.assertEnvelope(post("e", {}), 422, "validation_error")
        self.assertEnvelope(post("e", {"embedder": "word2vec"}), 422, "validation_error")
        self.assertEnvelope(post("e", {"embedder": "openai"}), 422, "validation_error")  # not configured
        self.assertEnvelope(post("e", {"embedder": "builtin", "model": "other"}), 422, "validation_error")
        self.assertEnvelope(post("e", {"embedder": "builtin"}), 422, "validation_error")  # already builtin
        self.assertEnvelope(post("e", {"embedder": 7}), 422, "validation_error")
        # a control character in the model name would forge a line of the server's log
        forged = "x\n2026-01-01T00:00:00.000Z info  forged line"
        self.assertEnvelope(post("e", {"embedder": "ollama", "model": forged}), 422, "validation_error")
        self.assertEnvelope(post("e", {"embedder": "ollama", "model": "x\u001b[2Jy"}), 422, "validation_error")
        self.assertNotIn("forged line", self.srv.log_text())
        self.assertEnvelope(self.srv.request("POST", "/api/dbs/e/reembed", body=b"{not json",
                                             content_type="application/json"), 400, "invalid_json")
        self.assertEnvelope(self.srv.request("GET", "/api/dbs/e/reembed"), 404, "reembed_not_found")
        self.assertNotIn("reembed", self.call("GET", "/api/dbs/e", srv=self.srv))


if __name__ == "__main__":
    unittest.main()
