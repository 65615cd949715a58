"""OpenAI's API on ragd's port (docs/api.md "OpenAI-compatible API"), over plain HTTP the
way the openai libraries call it: /v1/models with one rag/<collection> per collection,
/v1/chat/completions not streamed by default and streamed as SSE ending in `data: [DONE]`
(usage with stream_options.include_usage), answers from the collection with citations,
pass-through chat and embeddings for a plain model, OpenAI's error object on every error of
these routes, and a rag/ chat that still answers, flagged, with no backend at all.
"""
import base64
import http.server
import json
import socketserver
import struct
import threading
import unittest

import harness
from test_compat_ollama import FakeBackendCase, NoBackendCase, question


def sse_frames(raw):
    return [data for _, data in harness.parse_sse(raw)]


class OpenAICompatTest(FakeBackendCase):
    def assertOpenAIError(self, r, status, type_, contains=""):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.content_type(), "application/json", r)
        err = r.body.get("error") if isinstance(r.body, dict) else None
        self.assertIsInstance(err, dict, r)
        self.assertEqual(sorted(err), ["code", "message", "param", "type"], r)
        self.assertEqual(err["type"], type_, r)
        self.assertIsNone(err["param"], r)
        self.assertIn(contains, err["message"], r)
        return err

    def test_models_list_collections_and_backend_models(self):
        r = self.srv.request("GET", "/v1/models")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["object"], "list")
        ids = [m["id"] for m in r.body["data"]]
        self.assertIn("rag/kb:latest", ids)
        self.assertIn("llama3.2:latest", ids)
        for m in r.body["data"]:
            self.assertEqual(m["object"], "model")
            self.assertIsInstance(m["created"], int)

    def test_one_model(self):
        for name in ("rag/kb", "rag/kb:latest", "llama3.2"):
            r = self.srv.request("GET", "/v1/models/" + name)
            self.assertEqual((r.status, r.body["id"], r.body["object"]), (200, name, "model"), r)
        self.assertOpenAIError(self.srv.request("GET", "/v1/models/rag/absent"), 404, "not_found_error")
        self.assertOpenAIError(self.srv.request("GET", "/v1/models/nope"), 404, "not_found_error")

    def test_chat_not_streamed_by_default(self):
        r = self.post("/v1/chat/completions", {"model": "rag/kb", "messages": question()})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.content_type(), "application/json")
        self.assertEqual(r.body["object"], "chat.completion")
        self.assertTrue(r.body["id"].startswith("chatcmpl-"))
        choice = r.body["choices"][0]
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertEqual(choice["message"]["role"], "assistant")
        self.assertIn("1937", choice["message"]["content"])
        self.assertIn("Sources:", choice["message"]["content"])
        usage = r.body["usage"]
        self.assertEqual(usage["total_tokens"], usage["prompt_tokens"] + usage["completion_tokens"])
        self.assertIn("zephyrine", [s["doc_id"] for s in r.body["sources"]])

    def test_chat_streamed_as_sse_with_done_and_usage(self):
        r = self.post("/v1/chat/completions", {"model": "rag/kb", "messages": question(), "stream": True,
                                               "stream_options": {"include_usage": True}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.content_type(), "text/event-stream")
        frames = sse_frames(r.body)
        self.assertEqual(frames[-1], "[DONE]")
        chunks = [json.loads(f) for f in frames[:-1]]
        for c in chunks:
            self.assertEqual(c["object"], "chat.completion.chunk")
            self.assertEqual(c["model"], "rag/kb")
        usage = chunks[-1]
        self.assertEqual(usage["choices"], [])
        self.assertGreater(usage["usage"]["completion_tokens"], 0)
        finish = chunks[-2]
        self.assertEqual(finish["choices"][0]["finish_reason"], "stop")
        self.assertIn("zephyrine", [s["doc_id"] for s in finish["sources"]])
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1] if c["choices"])
        self.assertIn("1937", text)
        r = self.post("/v1/chat/completions", {"model": "rag/kb", "messages": question(), "stream": True})
        chunks = [json.loads(f) for f in sse_frames(r.body)[:-1]]
        self.assertTrue(all(c["choices"] for c in chunks), "usage only when asked")

    def test_follow_up_question_uses_the_conversation(self):
        convo = [{"role": "user", "content": "Tell me about the Zephyrine protocol of the harbour council."},
                 {"role": "assistant", "content": "It is an agreement about lighthouse dues."},
                 {"role": "user", "content": [{"type": "text", "text": "And in which year did that happen?"}]}]
        r = self.post("/v1/chat/completions", {"model": "rag/kb", "messages": convo})
        self.assertEqual(r.status, 200, r)
        self.assertIn("1937", r.body["choices"][0]["message"]["content"])

    def test_sampling_fields_reach_the_llm_as_options(self):
        r = self.post("/v1/chat/completions", {"model": "llama3.2", "messages": question("hi"),
                                               "temperature": 0.25, "max_tokens": 7, "seed": 3})
        self.assertEqual(r.status, 200, r)
        opts = self.fake.stats()["chat_options"][-1]
        self.assertEqual((opts.get("temperature"), opts.get("num_predict"), opts.get("seed")), (0.25, 7, 3), opts)

    def test_passthrough_chat_and_embeddings(self):
        r = self.post("/v1/chat/completions", {"model": "llama3.2", "messages": question("Say something")})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.body["choices"][0]["message"]["content"])
        self.assertNotIn("sources", r.body)
        self.assertGreater(r.body["usage"]["completion_tokens"], 0)
        r = self.post("/v1/chat/completions", {"model": "llama3.2", "messages": question("Say something"),
                                               "stream": True})
        frames = sse_frames(r.body)
        self.assertEqual(frames[-1], "[DONE]")
        r = self.post("/v1/embeddings", {"model": "nomic-embed-text", "input": ["a", "b"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([d["index"] for d in r.body["data"]], [0, 1])
        self.assertEqual(len(r.body["data"][0]["embedding"]), 768)
        self.assertEqual(r.body["model"], "nomic-embed-text")

    def test_rag_embeddings_float_and_base64(self):
        r = self.post("/v1/embeddings", {"model": "rag/kb", "input": "gardens of the district"})
        self.assertEqual(r.status, 200, r)
        vec = r.body["data"][0]["embedding"]
        self.assertEqual(len(vec), 512)
        r = self.post("/v1/embeddings", {"model": "rag/kb", "input": "gardens of the district",
                                         "encoding_format": "base64"})
        self.assertEqual(r.status, 200, r)
        raw = base64.b64decode(r.body["data"][0]["embedding"])
        floats = struct.unpack("<512f", raw)
        for a, b in zip(floats, vec):
            self.assertAlmostEqual(a, b, places=6)
        self.assertGreater(r.body["usage"]["prompt_tokens"], 0)

    def test_every_error_has_openais_shape(self):
        err = self.assertOpenAIError(self.post("/v1/chat/completions", {"model": "nope", "messages": question()}),
                                     404, "not_found_error", "nope")
        self.assertEqual(err["code"], "model_not_found")
        self.assertOpenAIError(self.post("/v1/chat/completions", {"model": "rag/absent", "messages": question()}),
                               404, "not_found_error")
        r = self.srv.request("POST", "/v1/chat/completions", body=b"{bad", content_type="application/json")
        self.assertOpenAIError(r, 400, "invalid_request_error", "JSON")
        self.assertOpenAIError(self.srv.request("GET", "/v1/chat/completions"), 405, "invalid_request_error")
        self.assertOpenAIError(self.srv.request("GET", "/v1/nothing"), 404, "not_found_error")
        r = self.srv.request("POST", "/v1/embeddings", body=b"x", content_type="text/plain")
        self.assertOpenAIError(r, 415, "invalid_request_error")
        self.assertOpenAIError(self.post("/v1/chat/completions", {"messages": question()}), 400,
                               "invalid_request_error", "model")
        tools = [{"type": "function", "function": {"name": "f"}}]
        self.assertOpenAIError(self.post("/v1/chat/completions", {"model": "rag/kb", "messages": question(),
                                                                  "tools": tools}),
                               400, "invalid_request_error", "rag/kb does not support tools")
        self.assertOpenAIError(self.post("/v1/chat/completions", {"model": "rag/kb", "messages": question(),
                                                                  "temperature": "hot"}),
                               400, "invalid_request_error", "temperature")
        self.assertOpenAIError(self.post("/v1/embeddings", {"model": "rag/kb", "input": [{"x": 1}]}),
                               400, "invalid_request_error", "invalid input type")
        self.assertOpenAIError(self.post("/v1/embeddings", {"model": "rag/kb", "input": "a",
                                                            "encoding_format": "int8"}),
                               400, "invalid_request_error", "encoding_format")
        image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        self.assertOpenAIError(self.post("/v1/chat/completions", {"model": "rag/kb", "messages": image}),
                               400, "invalid_request_error", "text")

    def test_llm_failure_mid_stream_ends_with_an_error_event(self):
        self.fake.configure(fault="error_line", fault_paths="/api/chat", fault_count=1, fault_lines=2)
        r = self.post("/v1/chat/completions", {"model": "llama3.2", "messages": question("a story"),
                                               "stream": True})
        self.assertEqual(r.status, 200, r)
        frames = sse_frames(r.body)
        self.assertNotIn("[DONE]", frames)
        last = json.loads(frames[-1])
        self.assertEqual(last["error"]["type"], "api_error", last)
        self.assertTrue(last["error"]["message"])


    def test_rag_llm_failure_after_tokens_ends_with_an_error_event(self):
        self.fake.configure(fault="error_line", fault_paths="/api/chat", fault_count=1, fault_lines=200, tokens=400)
        r = self.post("/v1/chat/completions", {"model": "rag/kb", "messages": question(), "stream": True,
                                               "seed": 12})
        self.assertEqual(r.status, 200, r)
        frames = sse_frames(r.body)
        self.assertNotIn("[DONE]", frames)
        last = json.loads(frames[-1])
        self.assertEqual(last["error"]["code"], "upstream_unavailable", last)
        self.assertGreater(len(frames), 10)


class OpenAICompatGuardedTest(harness.E2ETestCase):
    class_server = True
    KEY = "k" * 24
    server_env = {"RAGD_API_KEYS": KEY, "RAGD_EMBEDDER": "builtin"}

    def test_401_in_openais_shape(self):
        r = self.server.request("GET", "/v1/models")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.body["error"]["type"], "authentication_error", r)
        self.assertEqual(r.body["error"]["code"], "unauthorized", r)
        r = self.server.request("GET", "/v1/models", headers={"Authorization": f"Bearer {self.KEY}"})
        self.assertEqual(r.status, 200, r)


class OpenAICompatNoBackendTest(NoBackendCase):
    def test_rag_chat_answers_flagged_without_a_backend(self):
        r = self.server.request("POST", "/v1/chat/completions", json_body={"model": "rag/kb", "messages": question()})
        self.assertEqual(r.status, 200, r)
        content = r.body["choices"][0]["message"]["content"]
        self.assertTrue(content.startswith("(Extractive answer from the sources"), content)
        self.assertIn("1937", content)
        self.assertIs(r.body["rag"]["degraded"], False)  # no LLM in use is not an LLM down
        r = self.server.request("GET", "/v1/models")
        self.assertEqual([m["id"] for m in r.body["data"]], ["rag/kb:latest"])


if __name__ == "__main__":
    unittest.main()


class HugeUsageBackend(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible backend whose usage counts are as large as JSON integers go."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "big", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        most = 2 ** 63 - 1
        frames = [{"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                  {"choices": [], "usage": {"prompt_tokens": most, "completion_tokens": most}}]
        body = "".join(f"data: {json.dumps(f)}\n\n" for f in frames).encode() + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class OpenAICompatHugeUsageTest(harness.E2ETestCase):
    """A backend's counts are not trusted to add up: total_tokens saturates (it overflowed)."""
    class_server = False

    def test_total_tokens_does_not_overflow(self):
        backend = socketserver.ThreadingTCPServer(("127.0.0.1", 0), HugeUsageBackend)
        backend.daemon_threads = True
        threading.Thread(target=backend.serve_forever, daemon=True).start()
        self.addCleanup(backend.server_close)
        self.addCleanup(backend.shutdown)
        srv = self.new_server(env={"RAGD_GENERATOR": "openai", "LLM_MODEL": "big", "OPENAI_API_KEY": "sk-test-key",
                                   "OPENAI_BASE_URL": f"http://127.0.0.1:{backend.server_address[1]}"})
        for stream in (False, True):
            r = srv.request("POST", "/v1/chat/completions",
                            json_body={"model": "big", "messages": question(), "stream": stream,
                                       "stream_options": {"include_usage": True}})
            self.assertEqual(r.status, 200, r)
            usage = r.body["usage"] if not stream else json.loads(sse_frames(r.raw)[-2])["usage"]
            self.assertEqual(usage["total_tokens"], 2 ** 63 - 1, usage)
