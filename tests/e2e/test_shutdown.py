"""Graceful shutdown under load, readiness during drain, and refusal of bad configuration."""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness


WORDS = ("amber basil cedar delta ember fjord garnet hazel indigo juniper kestrel lagoon "
         "marble nectar obsidian pepper quartz raven saffron tundra umber velvet willow "
         "xenon yarrow zephyr anvil bramble cobalt dune").split()


def bulk_docs(prefix, count, size, seed):
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        words, length = [f"{prefix}marker{i}"], 0
        while length < size:
            w = rng.choice(WORDS)
            words.append(w)
            length += len(w) + 1
        docs.append({"id": f"{prefix}{i}", "text": " ".join(words) + "."})
    return docs


def ingest_request(db, docs):
    body = json.dumps({"db": db, "documents": docs}).encode()
    return harness.build_raw_request("POST", "/api/ingest", {"Content-Type": "application/json"},
                                     body)


class PendingRequest:
    """A request written to its own socket; the response is read later."""

    def __init__(self, port, data):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(data)

    def result(self):
        """A Response, or None when the server closed or reset without answering."""
        try:
            resp = http.client.HTTPResponse(self.sock, method="POST")
            resp.begin()
            return harness.Response(resp.status, resp.headers, resp.read())
        except (http.client.RemoteDisconnected, http.client.BadStatusLine,
                http.client.IncompleteRead, ConnectionResetError, BrokenPipeError):
            return None
        finally:
            self.sock.close()


def try_request(port, path, timeout=2.0, conn=None):
    """('refused'|'closed'|'timeout', None) or ('http', Response)."""
    try:
        if conn is not None:
            conn.request("GET", path)
            resp = conn.getresponse()
            return "http", harness.Response(resp.status, resp.headers, resp.read())
        return "http", harness.request(port, "GET", path, timeout=timeout)
    except ConnectionRefusedError:
        return "refused", None
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
            http.client.BadStatusLine, http.client.CannotSendRequest,
            http.client.ResponseNotReady, http.client.IncompleteRead):
        return "closed", None
    except (socket.timeout, TimeoutError):
        return "timeout", None


class ShutdownTest(harness.E2ETestCase):
    class_server = False

    def check_refusal(self, r, what):
        """A request that was not served is refused: no response at all, or 503 not_ready in
        the envelope; never a 500."""
        if r is not None:
            self.assertEnvelope(r, 503, "not_ready", what)

    def check_observation(self, path, kind, resp, where):
        """What a client may see after SIGTERM: a refused or closed connection, readiness
        503 not_ready, liveness still 200 alive, or the 503 envelope. Never a hang, never
        ready."""
        self.assertIn(kind, ("refused", "closed", "http"), f"{where} {path}: {kind}")
        if kind != "http":
            return
        if path == "/health/live" and resp.status == 200:
            self.assertEqual(resp.body, {"status": "alive"}, (where, resp))
            return
        self.assertEqual(resp.status, 503, f"{where} {path}: {resp!r}")
        body = resp.body if isinstance(resp.body, dict) else {}
        if body.get("status") == "not_ready":
            return
        self.assertEnvelope(resp, 503, "not_ready", f"{where} {path}")

    def test_sigterm_during_ingest(self):
        srv = self.new_server(env={"RAGD_SHUTDOWN_GRACE_S": "10"})
        # ~4.3 MB of JSON (~5000 chunks) and four small batches, all written before SIGTERM
        batches = [("bulk_big", bulk_docs("bigx", 2500, 1600, 1))]
        batches += [(f"bulk_s{j}", bulk_docs(f"s{j}x", 40, 600, 10 + j)) for j in range(4)]
        reqs = [PendingRequest(srv.port, ingest_request(db, docs)) for db, docs in batches]
        srv.signal(signal.SIGTERM)
        t0 = time.monotonic()
        kind, resp = try_request(srv.port, "/health/ready")
        self.check_observation("/health/ready", kind, resp, "right after SIGTERM")
        results = [r.result() for r in reqs]
        rc = srv.wait_exit(timeout=25)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.log_tail())
        self.assertLess(elapsed, 10 + 5, "shutdown took longer than the grace period")

        acked = []
        for (db, docs), r in zip(batches, results):
            if r is not None and r.status == 200:
                self.assertEqual(r.body["db"], db)
                self.assertEqual(r.body["documents"], len(docs))
                self.assertEqual(r.body["ids"], [d["id"] for d in docs])
                acked.append((db, docs))
            else:
                self.check_refusal(r, db)

        srv.restart()
        for db, docs in acked:
            with self.subTest(db=db):
                coll = self.call("GET", f"/api/dbs/{db}", srv=srv)
                self.assertEqual(coll["documents"], len(docs))
                for d in (docs[0], docs[len(docs) // 2], docs[-1]):
                    got = self.call("GET", f"/api/dbs/{db}/documents/{d['id']}", srv=srv)
                    first = got["chunks"][0]["text"]
                    self.assertEqual(first, d["text"][:len(first)])
                marker = docs[-1]["text"].split()[0]
                body = self.call("POST", "/api/query", {"query": marker, "db": db, "k": 1,
                                                        "method": "keyword"}, srv=srv)
                self.assertEqual([s["doc_id"] for s in body["sources"]], [docs[-1]["id"]])
        # an ingest that was not acknowledged may be absent, but never half applied
        for (db, docs), r in zip(batches, results):
            if r is None or r.status != 200:
                r2 = srv.request("GET", f"/api/dbs/{db}")
                if r2.status == 200:
                    self.assertIn(r2.body["documents"], (0, len(docs)), db)
        self.assertEqual(srv.stop(), 0)

    def test_grace_over_refuses_queued_work(self):
        # One ingest worker, a short grace, many ingests queued behind each other: when the
        # grace is over, the ones no worker has started are answered 503 not_ready rather
        # than all processed before exit. The queue holds ~18 MB of text, seconds of work for
        # one ingest thread at any speed ragd reaches (~7 MB/s a core, BENCHMARKS.md): 5.8 MB
        # once sufficed, until ingest got faster and finished it all within the grace.
        srv = self.new_server(env={"RAGD_WORKERS": "1", "RAGD_INGEST_WORKERS": "1", "RAGD_SHUTDOWN_GRACE_S": "0.3"})
        batches = [(f"grace{j}", bulk_docs(f"g{j}x", 300, 2000, 100 + j)) for j in range(30)]
        reqs = [PendingRequest(srv.port, ingest_request(db, docs)) for db, docs in batches]
        time.sleep(0.2)
        srv.signal(signal.SIGTERM)
        t0 = time.monotonic()
        results = [r.result() for r in reqs]
        rc = srv.wait_exit(timeout=25)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.log_tail())
        refused = 0
        for (db, docs), r in zip(batches, results):
            if r is not None and r.status == 200:
                self.assertEqual(r.body["documents"], len(docs))
            else:
                self.check_refusal(r, db)
                refused += 1
        self.assertGreater(refused, 0, "every queued ingest was processed after the grace period")
        self.assertLess(elapsed, 0.3 + 5, "queued work ran past the grace period")

    def test_upstream_work_in_flight_is_cancelled_once(self):
        # One shutdown path for everything in flight: when the grace period is over, every
        # upstream task is cancelled and its one CANCELLED callback answers its request —
        # generations extractively (degraded, "shutting down"), streamed ones with the
        # extractive token, ingests waiting on the embedder with 503 not_ready (nothing
        # stored) — and the server exits 0 (no sanitizer report under make asan).
        fake = self.start_fake_ollama()
        srv = self.new_server(env={"OLLAMA_BASE_URL": fake.url, "RAGD_SHUTDOWN_GRACE_S": "0.5",
                                   "RAGD_MAX_CONCURRENT": "2", "RAGD_GENERATE_TIMEOUT_S": "30",
                                   "RAGD_EMBED_TIMEOUT_S": "30"})
        # "s" is embedded by the backend (queries wait on their embedding first), "b" by the
        # builtin embedder (queries wait on the generation only)
        self.call("POST", "/api/ingest", {"db": "s", "documents": bulk_docs("s", 5, 300, 7)}, srv=srv)
        self.call("POST", "/api/dbs", {"name": "b", "embed_model": "builtin"}, status=201, srv=srv)
        self.call("POST", "/api/ingest", {"db": "b", "documents": bulk_docs("s", 5, 300, 7)}, srv=srv)
        fake.configure(latency_ms=20000)  # everything upstream now hangs past the grace period
        query = lambda db, stream: harness.build_raw_request(  # noqa: E731
            "POST", "/api/query", {"Content-Type": "application/json"},
            json.dumps({"query": "smarker1 amber", "db": db, "stream": stream}))
        # per (backend, model) 2 in flight, the rest queued
        queries = [PendingRequest(srv.port, query("sb"[i % 2], i % 3 == 0)) for i in range(8)]
        ingests = [PendingRequest(srv.port, ingest_request("s", bulk_docs(f"late{i}x", 40, 1500, 50 + i)))
                   for i in range(3)]
        time.sleep(0.5)
        srv.signal(signal.SIGTERM)
        t0 = time.monotonic()
        for q in queries:
            r = q.result()
            self.assertIsNotNone(r, "a query in flight got no answer")
            self.assertEqual(r.status, 200, r)
            if r.content_type() == "text/event-stream":
                events = harness.parse_sse(r.raw)
                self.assertEqual(events[-1][0], "done", events)
                done = json.loads(events[-1][1])
            else:
                done = r.body
            self.assertEqual(done["provider"], "extractive")
            self.assertIs(done["degraded"], True)
            self.assertIn("shutting down", done["degraded_reason"])
        for i, p in enumerate(ingests):
            r = p.result()
            self.assertIsNotNone(r, "an ingest in flight got no answer")
            self.assertEnvelope(r, 503, "not_ready")
        self.assertEqual(srv.wait_exit(timeout=20), 0, srv.log_tail())
        self.assertLess(time.monotonic() - t0, 10, "shutdown waited on the hung backend")
        self.assertNotIn("dropped", srv.log_tail())  # every task's callback ran before the free
        fake.configure(latency_ms=0)
        srv.restart()
        docs = self.call("GET", "/api/dbs/s/documents?limit=1000", srv=srv)["documents"]
        self.assertEqual(sorted(d["id"] for d in docs), [f"s{i}" for i in range(5)])  # nothing half-stored

    def test_readiness_after_sigterm(self):
        srv = self.new_server(env={"RAGD_SHUTDOWN_GRACE_S": "10"})
        keep = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        self.addCleanup(keep.close)
        kind, r = try_request(srv.port, "/health/ready", conn=keep)
        self.assertEqual(kind, "http")
        self.assertEqual((r.status, r.body), (200, {"status": "ready"}))
        # keep the server busy so that it has something to drain
        busy = PendingRequest(srv.port, ingest_request("drain", bulk_docs("d", 1500, 1600, 7)))
        srv.signal(signal.SIGTERM)
        seen = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and srv.running():
            for path in ("/health/ready", "/health/live"):
                seen.append(("new connection", path) + try_request(srv.port, path, timeout=2.0))
            time.sleep(0.02)
        seen.append(("kept-alive connection", "/health/ready")
                    + try_request(srv.port, "/health/ready", conn=keep))
        result = busy.result()
        rc = srv.wait_exit(timeout=25)
        self.assertEqual(rc, 0, srv.log_tail())
        for where, path, kind, resp in seen:
            self.check_observation(path, kind, resp, where)
        if result is not None and result.status != 200:
            self.check_refusal(result, "drain ingest")
        self.assertEqual(try_request(srv.port, "/health/live")[0], "refused")

    def test_idle_sigterm_and_sigint_exit_zero(self):
        srv = self.new_server()
        self.call("POST", "/api/ingest", {"documents": [{"id": "x", "text": "Idle shutdown."}]},
                  srv=srv)
        t0 = time.monotonic()
        self.assertEqual(srv.stop(), 0)
        self.assertLess(time.monotonic() - t0, 3.0, "an idle server should exit at once")
        srv.restart()
        self.call("GET", "/api/dbs/default/documents/x", srv=srv)
        srv.signal(signal.SIGINT)
        self.assertEqual(srv.wait_exit(10), 0, srv.log_tail())


BAD_CONFIG = [
    ("RAGD_CHUNK_SIZE", "abc"),
    ("RAGD_CONTEXT_TOKENS", "100"),  # under 512
    ("RAGD_CONTEXT_TOKENS", "lots"),
    ("RAGD_LISTEN", "nonsense"),
    ("RAGD_POOL_SIZE", "0"),
    ("RAGD_EMBEDDER", "bogus"),
    ("RAGD_GENERATOR", "bogus"),
    ("RAGD_LISTEN", "127.0.0.1:99999"),
    ("RAGD_POOL_SIZE", "-3"),
    ("RAGD_CHUNK_SIZE", "0"),
    ("RAGD_MAX_BODY_BYTES", "lots"),
    ("RAGD_SHUTDOWN_GRACE_S", "soon"),
    ("RAGD_LOG_LEVEL", "chatty"),
    ("RAGD_DEFAULT_DB", "../etc"),
    ("RAGD_CHUNK_OVERLAP", "900"),  # with the default chunk size 1000: not < half
]


class BadConfigTest(harness.E2ETestCase):
    class_server = False

    def run_serve(self, env, args=()):
        root = tempfile.mkdtemp(prefix="ragd-e2e-badcfg-")
        self.addCleanup(shutil.rmtree, root, True)
        full = {"RAGD_DATA_DIR": os.path.join(root, "data"),
                "RAGD_LISTEN": f"127.0.0.1:{harness.free_port()}"}
        full.update(env)
        t0 = time.monotonic()
        try:
            p = subprocess.run([harness.ragd_bin(), "serve", *args], env=harness.base_env(full),
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=5, cwd=root)
        except subprocess.TimeoutExpired:
            self.fail(f"ragd serve with {env} did not exit within 5 s")
        return p, time.monotonic() - t0

    def test_bad_values_stop_startup(self):
        for var, value in BAD_CONFIG:
            with self.subTest(var=var, value=value):
                p, elapsed = self.run_serve({var: value})
                self.assertEqual(p.returncode, 2, f"stderr={p.stderr!r}")
                self.assertIn(var, p.stderr)
                self.assertLess(elapsed, 3.0)

    def test_unusable_data_dir(self):
        root = tempfile.mkdtemp(prefix="ragd-e2e-badcfg-")
        self.addCleanup(shutil.rmtree, root, True)
        blocker = os.path.join(root, "a-file")
        with open(blocker, "w") as f:
            f.write("not a directory")
        p, elapsed = self.run_serve({"RAGD_DATA_DIR": os.path.join(blocker, "data")})
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip())
        self.assertLess(elapsed, 3.0)

    def test_bad_flag(self):
        p, _ = self.run_serve({}, args=["--no-such-flag"])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--no-such-flag", p.stderr)
        p, _ = self.run_serve({}, args=["--listen", "nonsense"])
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip())


if __name__ == "__main__":
    unittest.main()
