"""The fake Ollama (tools/fake_ollama) against the facts of Ollama's API that ragd relies on
(docs/internals/ollama.md, docs/internals/fake_ollama.md).

Runs the fake in-process on free loopback ports; needs no ragd binary. Standard library only.
"""

import http.client
import json
import math
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "fake_ollama"))
import fake_ollama  # noqa: E402

BUSY = "server busy, please try again.  maximum pending requests exceeded"
CONTEXT = ("Answer from the numbered passages.\n"
           "[1] Krakatoa is a volcanic island in the Sunda Strait. It erupted in 1883.\n"
           "[2] Sourdough is leavened by wild yeast. Bakers feed it daily.\n")


class Resp:
    def __init__(self, status, headers, body, ttfb):
        self.status = status
        self.headers = headers
        self.raw = body
        self.ttfb = ttfb

    @property
    def json(self):
        return json.loads(self.raw)

    def lines(self):
        return [json.loads(x) for x in self.raw.decode().split("\n") if x]


def call(port, method, path, body=None, timeout=10.0, raw=None):
    """One request on a fresh connection; returns Resp (ttfb = time until headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        t0 = time.monotonic()
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        r = conn.getresponse()
        ttfb = time.monotonic() - t0
        return Resp(r.status, r.headers, r.read(), ttfb)
    finally:
        conn.close()


def js_client_stream(lines):
    """The official JS client's stream rules (ollama-js utils.ts): throw on an error line,
    stop at the first done:true, fail at EOF without one. Returns the appended text."""
    text = ""
    for obj in lines:
        if "error" in obj:
            raise RuntimeError(obj["error"])
        piece = obj.get("response")
        if piece is None:
            piece = (obj.get("message") or {}).get("content", "")
        text += piece
        if obj.get("done"):
            return text
    raise RuntimeError("Did not receive done or success response in stream.")


class FakeOllamaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fake = fake_ollama.FakeOllama(port=0, admin_port=0).start()
        cls.port = cls.fake.port
        cls.admin = cls.fake.admin_port

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def setUp(self):
        r = call(self.admin, "POST", "/__admin/reset", {})
        self.assertEqual(r.status, 200)

    def config(self, **knobs):
        r = call(self.admin, "POST", "/__admin/config", knobs)
        self.assertEqual(r.status, 200, r.raw)
        return r.json

    def post(self, path, body, **kw):
        return call(self.port, "POST", path, body, **kw)

    def assertError(self, r, status, message):
        self.assertEqual(r.status, status, r.raw)
        self.assertTrue(r.headers["Content-Type"].startswith("application/json"))
        self.assertEqual(r.json, {"error": message})

    # -- plain endpoints ---------------------------------------------------------------------
    def test_root_version_tags_ps_show(self):
        r = call(self.port, "GET", "/")
        self.assertEqual((r.status, r.raw), (200, b"Ollama is running"))
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
        r = call(self.port, "HEAD", "/")
        self.assertEqual((r.status, r.raw), (200, b""))
        self.assertEqual(call(self.port, "GET", "/api/version").json, {"version": "0.5.1"})
        tags = call(self.port, "GET", "/api/tags").json["models"]
        names = [m["name"] for m in tags]
        self.assertEqual(names, ["llama3.2:latest", "nomic-embed-text:latest"])
        for k in ("model", "modified_at", "size", "digest", "details"):
            self.assertIn(k, tags[0])
        self.assertEqual(call(self.port, "GET", "/api/ps").json, {"models": []})
        self.post("/api/embed", {"model": "nomic-embed-text", "input": "x"})
        ps = call(self.port, "GET", "/api/ps").json["models"]
        self.assertEqual([m["name"] for m in ps], ["nomic-embed-text:latest"])
        for k in ("expires_at", "size_vram", "context_length"):
            self.assertIn(k, ps[0])
        show = self.post("/api/show", {"model": "nomic-embed-text"}).json
        self.assertEqual(show["capabilities"], ["embedding"])
        self.assertEqual(show["model_info"]["nomic_bert.embedding_length"], 768)
        self.assertError(self.post("/api/show", {"model": "zz"}), 404, "model 'zz' not found")
        models = call(self.port, "GET", "/v1/models").json
        self.assertEqual(models["object"], "list")
        self.assertEqual(models["data"][0]["owned_by"], "library")

    def test_unknown_path_and_wrong_method(self):
        r = call(self.port, "GET", "/api/nope")
        self.assertEqual((r.status, r.raw), (404, b"404 page not found"))
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
        self.assertEqual(call(self.port, "GET", "/api/chat").status, 405)
        self.assertEqual(call(self.port, "POST", "/api/tags", {}).status, 405)

    # -- error texts -------------------------------------------------------------------------
    def test_exact_error_texts(self):
        msgs = [{"role": "user", "content": "hi"}]
        self.assertError(self.post("/api/embed", {"model": "x", "input": "a"}), 404,
                         'model "x" not found, try pulling it first')
        self.assertError(self.post("/api/generate", {"model": "x", "prompt": "a"}), 404,
                         "model 'x' not found")
        self.assertError(self.post("/api/chat", {"model": "x", "messages": msgs}), 404,
                         "model 'x' not found")
        self.assertError(self.post("/api/chat", {"messages": msgs}), 400, "model is required")
        self.assertError(self.post("/api/chat", {"model": "nomic-embed-text",
                                                 "messages": msgs}), 400,
                         '"nomic-embed-text" does not support chat')
        self.assertError(self.post("/api/generate", {"model": "nomic-embed-text",
                                                     "prompt": "a"}), 400,
                         '"nomic-embed-text" does not support generate')
        self.assertError(self.post("/api/chat", {"model": "llama3.2", "messages": msgs,
                                                 "options": {"temperature": "hot"}}), 500,
                         'option "temperature" must be of type float32')
        self.assertError(self.post("/api/embed", {"model": "nomic-embed-text",
                                                  "input": ["a", 3]}), 400,
                         "invalid input type")
        self.assertError(self.post("/api/embed", {"model": "nomic-embed-text", "input": 3}),
                         400, "invalid input type")
        self.assertError(self.post("/api/embeddings", {"model": "nomic-embed-text",
                                                       "prompt": ["a", "b"]}), 400,
                         "json: cannot unmarshal array into Go struct field "
                         "EmbeddingRequest.prompt of type string")
        self.assertError(call(self.port, "POST", "/api/embed", raw=b""), 400,
                         "missing request body")
        r = call(self.port, "POST", "/api/chat", raw=b'{"model": "llama3.2",')
        self.assertEqual(r.status, 400)
        self.assertIn("error", r.json)
        r = self.post("/api/embed", {"model": "nomic-embed-text", "input": "a b c d e",
                                     "truncate": False, "options": {"num_ctx": 3}})
        self.assertEqual(r.status, 400)
        self.assertIn("context length", r.json["error"])
        r = self.post("/api/embed", {"model": "nomic-embed-text", "input": "a b c d e",
                                     "options": {"num_ctx": 3}})
        self.assertEqual((r.status, r.json["prompt_eval_count"]), (200, 3))
        r = self.post("/v1/chat/completions", {"model": "zz", "messages": msgs})
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json, {"error": {"message": "model 'zz' not found",
                                            "type": "not_found_error", "param": None,
                                            "code": None}})

    # -- generation --------------------------------------------------------------------------
    def test_chat_stream_shape_default_true(self):
        body = {"model": "llama3.2", "messages": [{"role": "system", "content": CONTEXT},
                                                  {"role": "user", "content": "Krakatoa?"}]}
        r = self.post("/api/chat", body)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["Content-Type"], "application/x-ndjson")
        self.assertEqual(r.headers["Transfer-Encoding"], "chunked")
        self.assertTrue(r.raw.endswith(b"\n"))
        lines = r.lines()
        self.assertGreater(len(lines), 2)
        self.assertTrue(all(not x["done"] for x in lines[:-1]))
        last = lines[-1]
        self.assertTrue(last["done"])
        self.assertEqual(last["done_reason"], "stop")
        for k in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_count",
                  "eval_count", "eval_duration", "created_at"):
            self.assertIn(k, last)
        self.assertNotEqual(last["message"]["content"], "")   # the final chunk carries text
        streamed = js_client_stream(lines)
        whole = self.post("/api/chat", dict(body, stream=False)).json
        self.assertTrue(whole["done"])
        self.assertEqual(streamed, whole["message"]["content"])
        self.assertIn("Krakatoa is a volcanic island in the Sunda Strait. [1]", streamed)
        self.assertIn("[2]", streamed)
        self.assertEqual(last["eval_count"], len(lines))

    def test_generate_tokens_num_predict_and_load_calls(self):
        self.config(tokens=7)
        r = self.post("/api/generate", {"model": "llama3.2", "prompt": "Why is the sky blue?"})
        lines = r.lines()
        self.assertEqual(len(lines), 7)
        self.assertIn("context", lines[-1])
        r = self.post("/api/generate", {"model": "llama3.2", "prompt": "Why?", "stream": False,
                                        "options": {"num_predict": 3}}).json
        self.assertEqual((r["eval_count"], r["done_reason"]), (3, "length"))
        r = self.post("/api/generate", {"model": "llama3.2"}).json
        self.assertEqual((r["done"], r["done_reason"], r["response"]), (True, "load", ""))
        r = self.post("/api/chat", {"model": "llama3.2", "messages": [], "keep_alive": 0}).json
        self.assertEqual(r["done_reason"], "unload")

    def test_openai_chat(self):
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": CONTEXT}]}
        r = self.post("/v1/chat/completions", body)        # stream defaults to false
        self.assertEqual(r.status, 200)
        obj = r.json
        self.assertEqual(obj["object"], "chat.completion")
        text = obj["choices"][0]["message"]["content"]
        self.assertEqual(obj["choices"][0]["finish_reason"], "stop")
        self.assertEqual(obj["usage"]["total_tokens"],
                         obj["usage"]["prompt_tokens"] + obj["usage"]["completion_tokens"])
        r = self.post("/v1/chat/completions", dict(body, stream=True,
                                                   stream_options={"include_usage": True}))
        self.assertEqual(r.headers["Content-Type"], "text/event-stream")
        frames = r.raw.decode().split("\n\n")
        self.assertEqual(frames[-1], "")
        self.assertEqual(frames[-2], "data: [DONE]")
        chunks = [json.loads(f[len("data: "):]) for f in frames[:-2]]
        self.assertTrue(all(f.startswith("data: ") for f in frames[:-1]))
        got = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                      if c["choices"])
        self.assertEqual(got, text)
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "stop")
        self.assertIn("usage", chunks[-1])

    # -- embeddings --------------------------------------------------------------------------
    def test_embed_properties(self):
        texts = ["The cat sat on the mat.", "Why is the sky blue?", "A cat sat on a mat.",
                 "Quantum chromodynamics describes quarks and gluons."]
        r = self.post("/api/embed", {"model": "nomic-embed-text", "input": texts})
        self.assertEqual(r.status, 200)
        obj = r.json
        self.assertEqual(obj["model"], "nomic-embed-text")
        vecs = obj["embeddings"]
        self.assertEqual(len(vecs), 4)
        for v in vecs:
            self.assertEqual(len(v), 768)
            self.assertAlmostEqual(math.sqrt(sum(x * x for x in v)), 1.0, places=5)

        def cos(a, b):
            return sum(x * y for x, y in zip(a, b))
        self.assertGreater(cos(vecs[0], vecs[2]), cos(vecs[0], vecs[1]) + 0.3)
        self.assertGreater(cos(vecs[0], vecs[2]), cos(vecs[0], vecs[3]) + 0.3)
        # input order and determinism: one at a time gives the same vectors
        single = self.post("/api/embed", {"model": "nomic-embed-text", "input": texts[2]})
        self.assertEqual(single.json["embeddings"][0], vecs[2])
        rev = self.post("/api/embed", {"model": "nomic-embed-text",
                                       "input": texts[::-1]}).json["embeddings"]
        self.assertEqual(rev, vecs[::-1])
        # dimensions: cut then re-normalised, similarity kept
        cut = self.post("/api/embed", {"model": "nomic-embed-text", "input": texts,
                                       "dimensions": 64}).json["embeddings"]
        self.assertEqual(len(cut[0]), 64)
        self.assertAlmostEqual(math.sqrt(sum(x * x for x in cut[1])), 1.0, places=5)
        self.assertGreater(cos(cut[0], cut[2]), cos(cut[0], cut[3]))
        for empty in ({"input": ""}, {"input": []}, {}):
            r = self.post("/api/embed", dict(empty, model="nomic-embed-text"))
            self.assertEqual(r.json, {"model": "nomic-embed-text", "embeddings": []})
        legacy = self.post("/api/embeddings", {"model": "nomic-embed-text",
                                               "prompt": texts[0]}).json["embedding"]
        self.assertEqual(len(legacy), 768)
        self.assertGreater(abs(math.sqrt(sum(x * x for x in legacy)) - 1.0), 0.01)
        self.assertEqual(self.post("/api/embeddings", {"model": "nomic-embed-text",
                                                       "input": "a"}).json, {"embedding": []})
        oa = self.post("/v1/embeddings", {"model": "nomic-embed-text", "input": texts}).json
        self.assertEqual([d["index"] for d in oa["data"]], [0, 1, 2, 3])
        self.assertEqual(oa["data"][1]["embedding"], vecs[1])
        stats = call(self.admin, "GET", "/__admin/stats").json
        self.assertEqual(stats["embed_inputs"][:2], [4, 1])

    # -- scheduling --------------------------------------------------------------------------
    def test_queue_full_gives_503_busy(self):
        self.config(parallel=1, max_queue=1, latency_ms=400)
        results = []

        def one(i):
            time.sleep(0.05 * i)
            results.append(self.post("/api/embed", {"model": "nomic-embed-text", "input": "a"}))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200, 200, 503])
        busy = [r for r in results if r.status == 503][0]
        self.assertEqual(busy.json, {"error": BUSY})
        self.assertLess(busy.ttfb, 0.2)                 # shed at once
        ok = sorted(r.ttfb for r in results if r.status == 200)
        self.assertGreater(ok[1], 0.7)                  # the queued one saw no header early
        self.assertGreater(time.monotonic() - t0, 0.75)
        stats = call(self.admin, "GET", "/__admin/stats").json
        self.assertEqual(stats["queue_rejections"], 1)
        self.assertEqual(stats["models"]["nomic-embed-text:latest"]["max_active"], 1)

    def test_cold_start_before_headers(self):
        self.config(load_ms=300)
        body = {"model": "llama3.2", "prompt": "hi", "stream": False}
        r1 = self.post("/api/generate", body)
        self.assertGreaterEqual(r1.ttfb, 0.3)
        self.assertGreaterEqual(r1.json["load_duration"], 300_000_000)
        r2 = self.post("/api/generate", body)
        self.assertLess(r2.ttfb, 0.2)
        self.assertLess(r2.json["load_duration"], 100_000_000)
        call(self.admin, "POST", "/__admin/unload", {})
        r3 = self.post("/api/generate", dict(body, stream=True))
        self.assertGreaterEqual(r3.ttfb, 0.3)           # streams too: nothing before the load
        r4 = self.post("/api/generate", dict(body, keep_alive=0))   # expires right after
        r5 = self.post("/api/generate", body)
        self.assertLess(r4.ttfb, 0.2)
        self.assertGreaterEqual(r5.ttfb, 0.3)
        self.assertEqual(call(self.admin, "GET", "/__admin/stats").json["loads"],
                         {"llama3.2:latest": 3})

    def test_latency_and_token_latency(self):
        self.config(latency_ms=100, token_ms=20, tokens=5)
        r = self.post("/api/chat", {"model": "llama3.2", "stream": False,
                                    "messages": [{"role": "user", "content": "hi"}]})
        self.assertGreaterEqual(r.ttfb, 0.2)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        t0 = time.monotonic()
        conn.request("POST", "/api/chat", json.dumps({
            "model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}))
        resp = conn.getresponse()
        t_headers = time.monotonic() - t0
        resp.read()
        t_end = time.monotonic() - t0
        conn.close()
        self.assertGreaterEqual(t_headers, 0.1)
        self.assertGreaterEqual(t_end - t_headers, 0.07)

    # -- faults ------------------------------------------------------------------------------
    def test_error500_for_next_n_on_listed_paths(self):
        self.config(fault="error500", fault_paths=["/api/embed"], fault_count=2,
                    fault_message="boom")
        emb = {"model": "nomic-embed-text", "input": "a"}
        self.assertEqual(call(self.port, "GET", "/api/tags").status, 200)   # not listed
        self.assertError(self.post("/api/embed", emb), 500, "boom")
        self.assertError(self.post("/api/embed", emb), 500, "boom")
        self.assertEqual(self.post("/api/embed", emb).status, 200)          # N used up
        self.config(fault="error500", fault_paths=["/v1/*"], fault_count=0)
        r = self.post("/v1/embeddings", emb)
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json["error"]["type"], "api_error")

    def test_reset(self):
        self.config(fault="reset")
        with self.assertRaises((ConnectionResetError, http.client.RemoteDisconnected)):
            self.post("/api/embed", {"model": "nomic-embed-text", "input": "a"})
        self.assertEqual(call(self.admin, "GET", "/__admin/stats").json["faults"],
                         {"reset": 1})

    def test_hang_before_headers_until_switched(self):
        self.config(fault="hang_before_headers")
        with self.assertRaises(socket.timeout):
            self.post("/api/embed", {"model": "nomic-embed-text", "input": "a"}, timeout=0.3)
        out = {}

        def late():
            out["r"] = self.post("/api/embed", {"model": "nomic-embed-text", "input": "a"})
        t = threading.Thread(target=late)
        t.start()
        time.sleep(0.3)
        self.assertNotIn("r", out)
        self.config(fault="none")                        # releases the held request
        t.join(2)
        self.assertEqual(out["r"].status, 200)
        self.config(fault="hang_before_headers", fault_hang_ms=150)
        r = self.post("/api/embed", {"model": "nomic-embed-text", "input": "a"})
        self.assertEqual(r.status, 200)
        self.assertGreaterEqual(r.ttfb, 0.15)

    def _stream_lines_until_timeout(self, timeout):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("POST", "/api/chat", json.dumps({
            "model": "llama3.2", "messages": [{"role": "user", "content": CONTEXT}]}))
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        lines = []
        try:
            while True:
                line = resp.readline()
                if not line:
                    break
                lines.append(json.loads(line))
            ended = True
        except socket.timeout:
            ended = False
        conn.close()
        return lines, ended

    def test_hang_mid_stream(self):
        self.config(fault="hang_mid_stream", fault_lines=3)
        lines, ended = self._stream_lines_until_timeout(0.4)
        self.assertFalse(ended)
        self.assertEqual(len(lines), 3)
        self.assertFalse(any(x["done"] for x in lines))

    def test_error_line_and_cut_stream_fail_like_the_js_client(self):
        for mode in ("error_line", "cut_stream", "close_mid_stream"):
            self.config(fault=mode, fault_lines=2, fault_message="runner crashed")
            try:
                lines, ended = self._stream_lines_until_timeout(3)
            except http.client.IncompleteRead:
                self.assertEqual(mode, "close_mid_stream")
                continue
            self.assertTrue(ended, mode)
            self.assertFalse(any(x.get("done") for x in lines), mode)
            with self.assertRaises(RuntimeError) as cm:
                js_client_stream(lines)
            if mode == "error_line":
                self.assertEqual(len(lines), 3)
                self.assertEqual(lines[-1], {"error": "runner crashed"})
                self.assertEqual(str(cm.exception), "runner crashed")
            else:
                self.assertEqual(len(lines), 2)
                self.assertEqual(str(cm.exception),
                                 "Did not receive done or success response in stream.")
        self.config(fault="error_line", fault_lines=1)
        r = self.post("/v1/chat/completions", {"model": "llama3.2", "stream": True,
                                               "messages": [{"role": "user", "content": "a"}]})
        frames = [f for f in r.raw.decode().split("\n\n") if f]
        self.assertEqual(len(frames), 2)
        self.assertIn('"error"', frames[-1])
        self.assertNotIn("[DONE]", r.raw.decode())

    def test_hostile_modes(self):
        chat = {"model": "llama3.2", "messages": [{"role": "user", "content": CONTEXT}]}
        self.config(fault="garbage", fault_paths=["/api/chat"])
        r = self.post("/api/chat", chat)
        self.assertEqual((r.status, len(r.raw)), (200, 4096))
        with self.assertRaises(ValueError):
            r.raw.decode("utf-8")
        self.assertEqual(self.post("/api/tags", None).status, 405)  # other paths untouched
        self.config(fault="huge_line", fault_huge_bytes=300000)
        r = self.post("/api/chat", chat)
        self.assertEqual(r.raw, b"a" * 300000)
        self.config(fault="wrong_content_type")
        r = self.post("/api/chat", chat)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["Content-Type"].startswith("text/html"))
        self.config(fault="stall_mid_line", fault_lines=2, fault_hang_ms=0)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
        conn.request("POST", "/api/chat", json.dumps(chat))
        resp = conn.getresponse()
        got = b""
        with self.assertRaises(socket.timeout):
            while True:
                got += resp.read1(65536)
        conn.close()
        lines = got.split(b"\n")
        self.assertEqual(len(lines), 3)  # two whole lines and half of one
        self.assertFalse(lines[2].endswith(b"}"))
        self.config(fault="endless_stream")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("POST", "/api/chat", json.dumps(chat))
        resp = conn.getresponse()
        got = b""
        while len(got) < 1 << 20:  # far more tokens than any answer, and still going
            got += resp.read1(65536)
        conn.close()
        self.assertNotIn(b'"done":true', got)
        self.assertEqual(self.fake.stats()["faults"],
                         {"garbage": 1, "huge_line": 1, "wrong_content_type": 1, "stall_mid_line": 1,
                          "endless_stream": 1})

    def test_refuse_then_up_on_same_port(self):
        keep = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        keep.request("GET", "/api/version")
        self.assertEqual(keep.getresponse().read(), b'{"version":"0.5.1"}')
        cfg = self.config(fault="refuse")
        self.assertFalse(cfg["listening"])
        with self.assertRaises(ConnectionRefusedError):
            call(self.port, "GET", "/")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError, OSError)):
            keep.request("GET", "/api/version")                 # open keep-alive is closed
            keep.getresponse()
        keep.close()
        self.config(fault="up")
        self.assertEqual(call(self.port, "GET", "/").status, 200)
        # The main port's own admin route can take it down too (answer first, then down).
        r = call(self.port, "POST", "/__admin/config", {"fault": "refuse"})
        self.assertEqual(r.status, 200)
        with self.assertRaises(ConnectionRefusedError):
            call(self.port, "GET", "/")
        self.config(fault="none")
        self.assertEqual(call(self.port, "GET", "/").status, 200)

    def test_client_disconnect_is_counted_as_cancelled(self):
        self.config(latency_ms=1000)
        s = socket.create_connection(("127.0.0.1", self.port))
        body = b'{"model":"llama3.2","prompt":"hi","stream":false}'
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        time.sleep(0.2)
        s.close()
        deadline = time.monotonic() + 2
        stats = {}
        while time.monotonic() < deadline:
            stats = call(self.admin, "GET", "/__admin/stats").json
            if stats["cancelled"] and stats["in_flight"] == 0:
                break
            time.sleep(0.05)
        self.assertEqual(stats["cancelled"], 1)
        self.assertEqual(stats["in_flight"], 0)

    def test_admin_rejects_bad_knobs(self):
        r = call(self.admin, "POST", "/__admin/config", {"fault": "explode"})
        self.assertEqual(r.status, 400)
        r = call(self.admin, "POST", "/__admin/config", {"no_such_knob": 1})
        self.assertEqual(r.status, 400)
        self.assertEqual(call(self.admin, "GET", "/api/tags").status, 404)   # admin-only port

    def test_concurrency_is_not_the_bottleneck(self):
        self.config(parallel=100, latency_ms=200)
        results = []

        def one():
            results.append(self.post("/api/chat", {"model": "llama3.2", "stream": False,
                                                   "messages": [{"role": "user",
                                                                 "content": "hi"}]}).status)
        threads = [threading.Thread(target=one) for _ in range(100)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        self.assertEqual(results, [200] * 100)
        self.assertLess(elapsed, 1.5)
        self.assertEqual(call(self.admin, "GET", "/__admin/stats").json["max_in_flight"] >= 50,
                         True)


if __name__ == "__main__":
    unittest.main()
