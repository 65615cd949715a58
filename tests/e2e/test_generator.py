"""The generator against the fake Ollama: the original plan's three scenarios.

1. normal operation: answers are generated (provider "ollama"), /health healthy;
2. backend stopped: queries are still answered (extractive, degraded, with a reason), the
   breaker is OPEN after 5 failures, /health degraded, /health/live 200;
3. backend back: after the (short) recovery time a half-open trial succeeds, the breaker
   closes and answers are generated again.
Plus: provider "extractive" on request, streaming, and a mid-stream error line.
"""
import json
import os
import time
import unittest

import harness


DOCS = [
    {"id": "krakatoa", "text": "Krakatoa is a volcanic island in the Sunda Strait. It erupted in 1883 "
                               "with one of the loudest sounds ever recorded."},
    {"id": "tides", "text": "Tides are caused by the gravity of the Moon and the Sun acting on the oceans."},
]


class GeneratorTest(harness.E2ETestCase):
    class_server = False

    def setUp(self):
        super().setUp()
        self.fake = self.start_fake_ollama()
        self.srv = self.new_server(env={
            "RAGD_GENERATOR": "auto",
            "OLLAMA_BASE_URL": self.fake.url,
            "RAGD_BREAKER_FAILURES": "5",
            "RAGD_BREAKER_RECOVERY_S": "1",
        })
        self.call("POST", "/api/ingest", {"db": "gen", "documents": DOCS}, srv=self.srv)

    def ask(self, **extra):
        # the same question again and again: past the cache, to the generator (test_cache.py
        # tests the cache)
        body = {"query": "When did Krakatoa erupt?", "db": "gen", "k": 2, "use_cache": False}
        body.update(extra)
        return self.call("POST", "/api/query", body, srv=self.srv)

    def health(self):
        return self.call("GET", "/health", srv=self.srv)

    def test_three_scenarios(self):
        # 1. normal operation
        res = self.ask()
        self.assertEqual(res["provider"], "ollama", res)
        self.assertEqual(res["model"], "llama3.2")
        self.assertFalse(res["degraded"])
        self.assertIsNone(res["degraded_reason"])
        self.assertTrue(res["answer"])
        self.assertEqual(res["sources"][0]["doc_id"], "krakatoa")
        h = self.health()
        self.assertEqual(h["status"], "healthy")
        self.assertEqual(h["services"]["ollama"]["circuit_breaker"]["state"], "CLOSED")
        self.assertEqual(h["services"]["ollama"]["backends"][0]["url"], self.fake.url)

        # 2. backend stopped
        self.fake.configure(fault="refuse")
        for _ in range(4):
            res = self.ask()
            self.assertEqual(res["provider"], "extractive")
            self.assertTrue(res["degraded"])
            self.assertIn("ollama", res["degraded_reason"])
            self.assertIn("[1]", res["answer"])
        h = self.health()
        self.assertEqual(h["status"], "degraded", h)
        cb = h["services"]["ollama"]["circuit_breaker"]
        self.assertEqual(cb["state"], "OPEN", h)
        self.assertEqual(h["services"]["ollama"]["message"], "Circuit OPEN - Service unavailable")
        self.assertIsNotNone(cb["last_failure"])
        self.assertEqual(self.call("GET", "/health/live", srv=self.srv), {"status": "alive"})
        self.assertEqual(self.call("GET", "/health/ready", srv=self.srv), {"status": "ready"})

        metrics = self.srv.request("GET", "/metrics")
        self.assertEqual(metrics.status, 200)
        self.assertTrue(metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = metrics.raw.decode()
        labels = f'backend="{self.fake.url}",model="llama3.2",op="chat"'
        self.assertIn(f"ragd_breaker_state{{{labels}}} 1", text)
        self.assertIn(f'ragd_breaker_transitions_total{{{labels},to="open"}} 1', text)
        self.assertIn(f'ragd_upstream_requests_total{{{labels},outcome="success"}} 1', text)
        self.assertRegex(text, r'ragd_http_requests_total\{route="/api/query",method="POST",code="200"\} [5-9]')
        self.assertIn("process_resident_memory_bytes ", text)
        # each family's samples stand together under its TYPE line (the text format's rule)
        in_flight = text.index(f'ragd_bulkhead_in_flight{{backend="{self.fake.url}",model="llama3.2"}}')
        self.assertLess(in_flight, text.index("# TYPE ragd_bulkhead_queued"))

        # 3. backend back: after the recovery time the trial closes the breaker
        self.fake.configure(fault="up")
        time.sleep(1.3)
        res = self.ask()
        self.assertEqual(res["provider"], "ollama", res)
        self.assertFalse(res["degraded"])
        h = self.health()
        self.assertEqual(h["services"]["ollama"]["circuit_breaker"]["state"], "CLOSED")
        self.assertEqual(h["status"], "healthy")

    def test_extractive_on_request_and_streaming(self):
        res = self.ask(provider="extractive")
        self.assertEqual(res["provider"], "extractive")
        self.assertFalse(res["degraded"])
        # an answer longer than the output guard's hold-back window (96 bytes), so that it
        # streams token by token
        self.fake.configure(tokens=120)
        r = self.srv.request("POST", "/api/query", json_body={"query": "When did Krakatoa erupt?", "db": "gen",
                                                               "stream": True})
        self.assertEqual(r.status, 200)
        events = harness.parse_sse(r.raw)
        names = [e[0] for e in events]
        self.assertEqual(names[0], "sources")
        self.assertEqual(names[-1], "done")
        self.assertGreater(names.count("token"), 1, names)  # token by token, as generated
        done = json.loads(events[-1][1])
        self.assertEqual(done["provider"], "ollama")
        self.assertNotIn("documents", done)
        self.assertEqual("".join(json.loads(d)["text"] for n, d in events if n == "token"), done["answer"])

    def test_client_disconnect_cancels_upstream(self):
        # a 6 s answer; its tokens go out once they pass the output guard's 96-byte hold-back
        self.fake.configure(token_ms=40, tokens=150)
        import socket
        body = json.dumps({"query": "When did Krakatoa erupt?", "db": "gen", "stream": True}).encode()
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        s.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        got = b""
        while b"event: token" not in got:
            got += s.recv(4096)
        s.close()  # the client goes away mid-answer
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and self.fake.stats()["cancelled"] < 1:
            time.sleep(0.05)
        self.assertGreaterEqual(self.fake.stats()["cancelled"], 1, self.fake.stats())
        self.assertEqual(self.call("GET", "/health/live", srv=self.srv), {"status": "alive"})

    def test_client_disconnect_cancels_upstream_without_streaming(self):
        # A plain (not streamed) query: its connection waits suspended while the LLM
        # answers; ragd watches the socket and cancels the upstream call when the client hangs up.
        # a 6 s answer; its tokens go out once they pass the output guard's 96-byte hold-back
        self.fake.configure(token_ms=40, tokens=150)
        import socket
        body = json.dumps({"query": "When did Krakatoa erupt?", "db": "gen"}).encode()
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        s.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.6)  # the generation is under way
        s.close()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and self.fake.stats()["cancelled"] < 1:
            time.sleep(0.05)
        self.assertGreaterEqual(self.fake.stats()["cancelled"], 1, self.fake.stats())
        self.assertEqual(self.call("GET", "/health/live", srv=self.srv), {"status": "alive"})

    def test_error_line_mid_stream_degrades(self):
        self.fake.configure(fault="error_line")
        res = self.ask()
        self.assertTrue(res["degraded"])
        self.assertEqual(res["provider"], "extractive")
        self.assertIn("mid-stream", res["degraded_reason"])


class GeneratorEdgeTest(harness.E2ETestCase):
    class_server = False

    def start(self, **env):
        self.fake = self.start_fake_ollama()
        base = {"RAGD_GENERATOR": "ollama", "OLLAMA_BASE_URL": self.fake.url}
        base.update(env)
        self.srv = self.new_server(env=base)
        self.call("POST", "/api/ingest", {"db": "gen", "documents": DOCS}, srv=self.srv)

    def test_streamed_queries_are_shed_with_503(self):
        # One slot, no queue: of three concurrent streamed queries two are shed. The status
        # comes first: a shed streamed query is a 503, not a degraded 200 stream.
        self.start(RAGD_MAX_CONCURRENT="1", RAGD_MAX_QUEUE="0")
        self.fake.configure(latency_ms=500)
        import threading
        results = []

        def one():
            r = self.srv.request("POST", "/api/query", json_body={"query": "Krakatoa?", "db": "gen", "stream": True})
            results.append(r)

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200, 503, 503], statuses)
        for r in results:
            if r.status == 503:
                self.assertEnvelope(r, 503, "overloaded")
                self.assertIsNotNone(r.headers.get("Retry-After"))

    def test_openai_compatible_generator(self):
        # The fake serves /v1/chat/completions too: the OpenAI backend streams SSE deltas.
        self.fake = self.start_fake_ollama()
        self.srv = self.new_server(env={"RAGD_GENERATOR": "openai", "OPENAI_BASE_URL": self.fake.url,
                                        "OPENAI_API_KEY": "sk-test-not-logged", "RAGD_LOG_LEVEL": "debug"})
        self.call("POST", "/api/ingest", {"db": "gen", "documents": DOCS}, srv=self.srv)
        res = self.call("POST", "/api/query", {"query": "When did Krakatoa erupt?", "db": "gen"}, srv=self.srv)
        self.assertEqual(res["provider"], "openai", res)
        self.assertFalse(res["degraded"])
        self.assertTrue(res["answer"])
        self.assertGreaterEqual(self.fake.stats()["requests"].get("/v1/chat/completions", 0), 1)
        self.assertNotIn("sk-test-not-logged", self.srv.log_tail())  # secrets never reach a log line

    def test_admin_breaker_overrides(self):
        token = "admin-token-0123456789"
        self.start(RAGD_ADMIN_TOKEN=token)
        self.call("POST", "/api/query", {"query": "Krakatoa?", "db": "gen", "use_cache": False}, srv=self.srv)  # makes the breaker
        r = self.srv.request("GET", "/api/admin/breakers")
        self.assertEnvelope(r, 401, "unauthorized")
        r = self.srv.request("GET", "/api/admin/breakers", headers={"Authorization": "Bearer wrong-token-xxxxxxx"})
        self.assertEnvelope(r, 401, "unauthorized")
        auth = {"Authorization": f"Bearer {token}"}
        listed = self.call("GET", "/api/admin/breakers", srv=self.srv, headers=auth)["breakers"]
        # the chat breaker, and the embed breaker of the collection's Ollama embeddings
        self.assertEqual(sorted((b["op"], b["state"]) for b in listed), [("chat", "CLOSED"), ("embed", "CLOSED")])
        res = self.call("POST", "/api/admin/breakers", {"action": "force_open", "op": "chat"}, srv=self.srv, headers=auth)
        self.assertEqual(res["changed"], 1)
        self.assertEqual(res["breakers"][0]["state"], "FORCED_OPEN")
        q = self.call("POST", "/api/query", {"query": "Krakatoa?", "db": "gen", "use_cache": False}, srv=self.srv)
        self.assertTrue(q["degraded"])
        self.assertEqual(self.call("GET", "/health", srv=self.srv)["services"]["ollama"]["circuit_breaker"]["state"],
                         "OPEN")
        self.call("POST", "/api/admin/breakers", {"action": "reset"}, srv=self.srv, headers={"X-API-Key": token})
        q = self.call("POST", "/api/query", {"query": "Krakatoa?", "db": "gen", "use_cache": False}, srv=self.srv)
        self.assertEqual(q["provider"], "ollama")
        r = self.srv.request("POST", "/api/admin/breakers", json_body={"action": "explode"}, headers=auth)
        self.assertEnvelope(r, 422, "validation_error")
        self.assertNotIn(token, self.srv.log_tail())

    def test_admin_routes_off_without_a_token(self):
        self.start()
        r = self.srv.request("GET", "/api/admin/breakers", headers={"Authorization": "Bearer anything-at-all-here"})
        self.assertEnvelope(r, 403, "forbidden")

    def test_stream_cut_without_done_degrades(self):
        self.start()
        self.fake.configure(fault="cut_stream")
        res = self.call("POST", "/api/query", {"query": "Krakatoa?", "db": "gen", "use_cache": False}, srv=self.srv)
        self.assertTrue(res["degraded"])
        self.assertEqual(res["provider"], "extractive")

    def test_saturated_generator_sheds_before_retrieval(self):
        # One slot, no queue, a slow backend: while one query generates, the next plain one
        # is refused on the loop, before any worker time ("saturated"), not after retrieval.
        self.start(RAGD_MAX_CONCURRENT="1", RAGD_MAX_QUEUE="0")
        self.fake.configure(latency_ms=1500)
        import threading
        first = threading.Thread(target=lambda: self.srv.request(
            "POST", "/api/query", json_body={"query": "Krakatoa?", "db": "gen", "use_cache": False}))
        first.start()
        time.sleep(0.5)  # the first query now holds the only slot
        r = self.srv.request("POST", "/api/query", json_body={"query": "Krakatoa?", "db": "gen", "use_cache": False})
        self.assertEnvelope(r, 503, "overloaded")
        self.assertIn("saturated", r.body["error"]["message"])
        # The decision comes from the parsed body, not from bytes in it: a question that
        # mentions "model" and "provider" is shed like any other (a byte search once let it by)...
        r = self.srv.request("POST", "/api/query", json_body={
            "query": 'Which "model" and "provider" erupted?', "db": "gen"})
        self.assertEnvelope(r, 503, "overloaded")
        self.assertIn("saturated", r.body["error"]["message"])
        # ...and naming the configured model explicitly is shed too: it uses the same slot
        r = self.srv.request("POST", "/api/query", json_body={"query": "Krakatoa?", "db": "gen", "model": "llama3.2"})
        self.assertEnvelope(r, 503, "overloaded")
        # provider extractive needs no generator slot: answered
        res = self.call("POST", "/api/query", {"query": "Krakatoa?", "db": "gen", "provider": "extractive"},
                        srv=self.srv)
        self.assertEqual(res["provider"], "extractive")
        # /api/retrieve never asks the generator
        self.call("POST", "/api/retrieve", {"query": "Krakatoa?", "db": "gen", "use_cache": False}, srv=self.srv)
        first.join()

    def cpu_seconds(self):
        with open(f"/proc/{self.srv.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def test_idle_after_a_queue_drained(self):
        # Queries that waited in a bulkhead queue must leave no busy timer behind: once the
        # burst is over the server idles (this once spun a core at 100 %).
        self.start(RAGD_MAX_CONCURRENT="1", RAGD_MAX_QUEUE="8")
        self.fake.configure(latency_ms=150)
        import threading
        threads = [threading.Thread(target=lambda: self.srv.request(
            "POST", "/api/query", json_body={"query": "Krakatoa?", "db": "gen", "use_cache": False})) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(5.2)  # past the queued waiters' 5 s wait bound, when their timer fires
        before = self.cpu_seconds()
        time.sleep(1.0)
        self.assertLess(self.cpu_seconds() - before, 0.3, "the server is busy while idle")

    def test_reset_connection_cancels_upstream(self):
        # A client that resets (RST) rather than closing: still noticed, still cancelled,
        # and no busy loop on the dead socket.
        self.start()
        self.fake.configure(token_ms=100, tokens=50)
        import socket
        import struct
        body = json.dumps({"query": "When did Krakatoa erupt?", "db": "gen"}).encode()
        s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
        s.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.6)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and self.fake.stats()["cancelled"] < 1:
            time.sleep(0.05)
        self.assertGreaterEqual(self.fake.stats()["cancelled"], 1, self.fake.stats())
        before = self.cpu_seconds()
        time.sleep(1.0)
        self.assertLess(self.cpu_seconds() - before, 0.3, "the server is busy while idle")

    def test_unconfigured_model_is_refused(self):
        self.start()
        r = self.srv.request("POST", "/api/query", json_body={"query": "Krakatoa?", "db": "gen", "model": "junk-1"})
        self.assertEnvelope(r, 422, "validation_error")
        self.assertIn("model", r.body["error"]["message"])
        res = self.call("POST", "/api/query", {"query": "Krakatoa?", "db": "gen", "model": "llama3.2"}, srv=self.srv)
        self.assertEqual(res["model"], "llama3.2")

    def test_long_non_ascii_backend_error_keeps_a_valid_reason(self):
        self.start(RAGD_BREAKER_FAILURES="50")
        self.fake.configure(fault="error500", fault_message="\u00e9" * 300)
        res = self.call("POST", "/api/query", {"query": "Krakatoa?", "db": "gen", "use_cache": False}, srv=self.srv)
        self.assertTrue(res["degraded"])
        self.assertIn("degraded_reason", res)
        self.assertIn("\u00e9", res["degraded_reason"])
        self.fake.configure(fault="error_line", fault_message="\u00e9" * 300)
        r = self.srv.request("POST", "/api/query", json_body={"query": "Krakatoa?", "db": "gen", "stream": True})
        events = harness.parse_sse(r.raw)
        for name, data in events:
            json.loads(data)  # every event is valid JSON, the error one included
        self.assertIn(events[-1][0], ("done", "error"))


if __name__ == "__main__":
    unittest.main()
