"""Ollama's API on ragd's port (docs/api.md "Ollama-compatible API"), spoken the way Ollama's
clients speak it, over plain HTTP: model lists with one rag/<collection> per collection, chats
with a rag/ model answered from the collection (numbered citations, a Sources: list, the
structured sources in an extra field), NDJSON streaming by default with the done counters,
pass-through chat and embeddings for a plain model against the fake Ollama, the 404 of a
missing model, tools refused, Ollama's {"error": "..."} on every error of these routes
(those made before a handler runs included), a client that hangs up, an LLM that fails
mid-stream, and — with the true defaults, no backend at all — a rag/ chat that still answers,
flagged.

The collection is realistic in size: 2,000 filler documents plus one that holds the fact
(embedded with the builtin embedder, so ingest is fast); a second collection lacks the fact.
"""
import http.client
import json
import random
import socket
import time
import unittest

import harness

FACT = ("The Zephyrine protocol was ratified in 1937 by the harbour council of Tallinn "
        "after a long dispute about lighthouse dues.")
TOPICS = ["gardens", "rivers", "bridges", "orchards", "markets", "railways", "mills", "canals"]


def filler(i):
    t = TOPICS[i % len(TOPICS)]
    return {"id": f"doc-{i:05d}",
            "text": f"Note {i} about the {t} of district {i % 97}. Every year the {t} are inspected "
                    f"and repaired; the work of year {1900 + i % 120} is recorded in ledger {i}.",
            "metadata": {"title": f"Ledger {i}"}}


def ingest_corpus(srv, db, with_fact, n=2000):
    docs = [filler(i) for i in range(n)]
    if with_fact:
        docs.append({"id": "zephyrine", "text": FACT, "metadata": {"title": "Zephyrine protocol"}})
    for start in range(0, len(docs), 500):
        r = srv.request("POST", "/api/ingest", json_body={"db": db, "documents": docs[start:start + 500]})
        assert r.status == 200, r


def ndjson(raw):
    return [json.loads(line) for line in raw.decode("utf-8").split("\n") if line.strip()]


def question(text="When was the Zephyrine protocol ratified?"):
    return [{"role": "user", "content": text}]


class FakeBackendCase(harness.E2ETestCase):
    """Base of the compatible routes' tests (this file's and test_compat_openai's): one ragd
    for the class (self.srv) with the fake Ollama as its generator (self.fake, reset before each
    test), the builtin embedder, extra_env on top, and collection kb holding FACT."""
    class_server = False
    extra_env = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fake = harness.fake_ollama.FakeOllama(port=0, admin_port=0).start()
        cls.addClassCleanup(cls.fake.stop)
        srv = harness.Server(env={"RAGD_GENERATOR": "ollama", "OLLAMA_BASE_URL": cls.fake.url,
                                  "RAGD_EMBEDDER": "builtin", **cls.extra_env}, name=cls.__name__)
        cls.addClassCleanup(srv.cleanup)
        srv.start()
        cls.srv = srv
        ingest_corpus(srv, "kb", True)

    def setUp(self):
        super().setUp()
        self._watch(self.srv)
        self.fake.reset()

    def post(self, path, body, **kw):
        return self.srv.request("POST", path, json_body=body, **kw)


class NoBackendCase(harness.E2ETestCase):
    """Base of the tests on the true defaults (no LLM anywhere): collection kb holds FACT."""
    class_server = True
    server_env = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ingest_corpus(cls.server, "kb", True, n=300)


class OllamaCompatTest(FakeBackendCase):
    extra_env = {"RAGD_LLM_MODELS": "llama3.2,other-llm", "RAGD_MAX_BODY_BYTES": "4194304"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ingest_corpus(cls.srv, "other", False, n=200)

    def assertOllamaError(self, r, status, contains=""):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.content_type(), "application/json", r)
        self.assertIsInstance(r.body, dict, r)
        self.assertEqual(list(r.body), ["error"], r)
        self.assertIsInstance(r.body["error"], str, r)
        self.assertIn(contains, r.body["error"], r)

    # ---- models ----

    def test_tags_list_collections_and_backend_models(self):
        r = self.srv.request("GET", "/api/tags")
        self.assertEqual(r.status, 200, r)
        names = [m["name"] for m in r.body["models"]]
        self.assertIn("rag/kb:latest", names)
        self.assertIn("rag/other:latest", names)
        self.assertIn("llama3.2:latest", names)  # the backend's, passed through
        kb = next(m for m in r.body["models"] if m["name"] == "rag/kb:latest")
        self.assertEqual(kb["model"], "rag/kb:latest")
        self.assertEqual(kb["details"]["family"], "rag")
        self.assertEqual(kb["details"]["format"], "ragd")
        self.assertEqual(len(kb["digest"]), 64)
        self.assertGreater(kb["size"], 2000)

    def test_show_rag_model_passthrough_and_missing(self):
        r = self.post("/api/show", {"model": "rag/kb"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(sorted(r.body["capabilities"]), ["completion", "embedding"])
        info = r.body["model_info"]
        self.assertEqual(info["rag.documents"], 2001)
        self.assertEqual(info["rag.embed_model"], "ragd-hash-v1-512")
        self.assertEqual(info["rag.llm"], "llama3.2")
        self.assertEqual(self.post("/api/show", {"model": "rag/kb:latest"}).status, 200)
        r = self.post("/api/show", {"model": "llama3.2"})
        self.assertEqual(r.status, 200, r)
        self.assertIn("completion", r.body["capabilities"])
        self.assertOllamaError(self.post("/api/show", {"model": "nope"}), 404, "model 'nope' not found")
        self.assertOllamaError(self.post("/api/show", {"model": "rag/absent"}), 404, "not found")

    def test_version_and_ps(self):
        r = self.srv.request("GET", "/api/version")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["version"], "0.5.1")  # the backend's own
        self.assertTrue(r.body["ragd_version"])
        self.post("/api/chat", {"model": "llama3.2", "messages": question("hi"), "stream": False})
        r = self.srv.request("GET", "/api/ps")
        self.assertEqual(r.status, 200, r)
        self.assertIn("llama3.2:latest", [m["name"] for m in r.body["models"]])

    def test_root_says_ollama_is_running(self):
        r = self.srv.request("GET", "/")
        self.assertEqual((r.status, r.body), (200, b"Ollama is running"))

    # ---- rag/ chats ----

    def test_chat_streams_ndjson_by_default_with_counters(self):
        r = self.post("/api/chat", {"model": "rag/kb", "messages": question(), "options": {"seed": 1}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.content_type(), "application/x-ndjson")
        lines = ndjson(r.body)
        self.assertGreaterEqual(len(lines), 2)
        for line in lines[:-1]:
            self.assertIs(line["done"], False, line)
            self.assertEqual(line["model"], "rag/kb")
            self.assertEqual(line["message"]["role"], "assistant")
            self.assertTrue(line["created_at"].endswith("Z"))
        last = lines[-1]
        self.assertIs(last["done"], True, last)
        self.assertEqual(last["done_reason"], "stop")
        for k in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                  "eval_count", "eval_duration"):
            self.assertIsInstance(last[k], int, k)
        self.assertGreater(last["total_duration"], 0)
        text = "".join(line["message"]["content"] for line in lines)
        self.assertIn("1937", text)
        self.assertIn("\n\nSources:\n", text)
        self.assertRegex(text, r"\[\d+\] Zephyrine protocol \(zephyrine\)")
        self.assertIn("zephyrine", [s["doc_id"] for s in last["sources"]])
        self.assertEqual(last["rag"]["collection"], "kb")
        self.assertFalse(last["rag"]["degraded"])

    def test_chat_not_streamed(self):
        r = self.post("/api/chat", {"model": "rag/kb:latest", "messages": question(), "stream": False})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.content_type(), "application/json")
        self.assertIs(r.body["done"], True)
        self.assertIn("1937", r.body["message"]["content"])
        self.assertIn("Sources:", r.body["message"]["content"])
        self.assertIsInstance(r.body["eval_count"], int)

    def test_generate_answers_from_the_collection(self):
        r = self.post("/api/generate", {"model": "rag/kb", "prompt": "When was the Zephyrine protocol ratified?",
                                        "stream": False})
        self.assertEqual(r.status, 200, r)
        self.assertIn("1937", r.body["response"])
        r = self.post("/api/generate", {"model": "rag/kb", "prompt": "When was the Zephyrine protocol ratified?"})
        lines = ndjson(r.body)
        self.assertIn("1937", "".join(line["response"] for line in lines))
        self.assertIs(lines[-1]["done"], True)

    def test_fact_only_from_its_collection(self):
        r = self.post("/api/chat", {"model": "rag/other", "messages": question(), "stream": False})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("1937", r.body["message"]["content"])
        self.assertNotIn("zephyrine", [s["doc_id"] for s in r.body["sources"]])

    def test_follow_up_question_uses_the_conversation(self):
        follow = "And in which year did that happen?"
        alone = self.post("/api/chat", {"model": "rag/kb", "messages": question(follow), "stream": False})
        self.assertEqual(alone.status, 200, alone)
        self.assertNotIn("zephyrine", [s["doc_id"] for s in alone.body["sources"]])
        convo = [{"role": "system", "content": "You are terse."},
                 {"role": "user", "content": "Tell me about the Zephyrine protocol of the harbour council."},
                 {"role": "assistant", "content": "It is an agreement about lighthouse dues."},
                 {"role": "user", "content": follow}]
        r = self.post("/api/chat", {"model": "rag/kb", "messages": convo, "stream": False})
        self.assertEqual(r.status, 200, r)
        self.assertIn("zephyrine", [s["doc_id"] for s in r.body["sources"]])
        self.assertIn("1937", r.body["message"]["content"])

    def test_very_long_conversation_is_cut_to_the_budget(self):
        convo = []
        for i in range(1000):  # 2,001 messages: chat clients send the whole conversation every time
            convo.append({"role": "user", "content": f"Earlier question {i} " + "about bridges " * 50})
            convo.append({"role": "assistant", "content": f"Earlier answer {i} " + "the bridges stand " * 50})
        convo.append({"role": "user", "content": "When was the Zephyrine protocol ratified?"})
        r = self.post("/api/chat", {"model": "rag/kb", "messages": convo, "stream": False})
        self.assertEqual(r.status, 200, r)
        self.assertIn("1937", r.body["message"]["content"])
        prompt = self.fake.stats()["prompts"][-1]
        self.assertLess(len(prompt), sum(len(m["content"]) for m in convo) // 10)
        self.assertNotIn("Earlier question 0 ", prompt)  # the oldest turns are the ones dropped

    def test_options_keep_alive_and_format_reach_the_llm(self):
        r = self.post("/api/chat", {"model": "rag/kb", "messages": question(), "stream": False,
                                    "options": {"num_ctx": 3210, "temperature": 0.1}, "keep_alive": "1m",
                                    "format": "json"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.fake.stats()["chat_options"][-1].get("num_ctx"), 3210)
        r = self.post("/api/chat", {"model": "llama3.2", "messages": question("hello"), "stream": False,
                                    "options": {"num_ctx": 4321}, "keep_alive": 0})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.fake.stats()["chat_options"][-1].get("num_ctx"), 4321)

    def test_options_model_picks_an_allowed_llm_only(self):
        r = self.post("/api/chat", {"model": "rag/kb", "messages": question(), "stream": False,
                                    "options": {"model": "not-allowed"}})
        self.assertOllamaError(r, 400, "not-allowed")
        r = self.post("/api/chat", {"model": "rag/kb", "messages": question(), "stream": False,
                                    "options": {"model": "other-llm"}})
        # allowed by RAGD_LLM_MODELS, unknown to the fake: the engine answers extractively
        self.assertEqual(r.status, 200, r)
        self.assertIn("1937", r.body["message"]["content"])

    def test_empty_chat_only_loads_as_in_ollama(self):
        r = self.post("/api/chat", {"model": "rag/kb", "messages": []})
        self.assertEqual((r.status, r.body["done"], r.body["done_reason"]), (200, True, "load"), r)
        r = self.post("/api/chat", {"model": "llama3.2", "keep_alive": 0})
        self.assertEqual((r.status, r.body["done_reason"]), (200, "unload"), r)
        r = self.post("/api/generate", {"model": "rag/kb", "prompt": ""})
        self.assertEqual((r.status, r.body["done_reason"]), (200, "load"), r)

    def test_tools_refused_politely(self):
        tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
        r = self.post("/api/chat", {"model": "rag/kb", "messages": question(), "tools": tools})
        self.assertOllamaError(r, 400, "rag/kb does not support tools")
        r = self.post("/api/chat", {"model": "rag/kb", "messages": question(), "tools": [], "stream": False})
        self.assertEqual(r.status, 200, r)

    def test_mistyped_options_refused_before_they_open_the_breaker(self):
        # Ollama answers an option of the wrong type with a 500; sent on, a few such requests
        # would open the generator's breaker for every client (pass-through and rag/ alike).
        bad = {"temperature": "hot"}
        for _ in range(4):
            for model in ("llama3.2", "rag/kb"):
                r = self.post("/api/chat", {"model": model, "messages": question(), "options": bad, "stream": False})
                self.assertOllamaError(r, 400, "options.temperature: must be a number")
            r = self.post("/api/generate", {"model": "llama3.2", "prompt": "hi", "options": {"stop": [5]}})
            self.assertOllamaError(r, 400, "options.stop: must be a list of strings")
            r = self.post("/v1/chat/completions", {"model": "llama3.2", "messages": question(),
                                                   "options": {"use_mmap": "yes"}})
            self.assertEqual(r.status, 400, r)
            self.assertIn("options.use_mmap: must be true or false", r.body["error"]["message"])
            r = self.post("/api/query", {"db": "kb", "query": "When was it ratified?", "options": bad})
            self.assertEqual(r.status, 422, r)
        self.assertEqual(self.fake.stats()["requests"].get("/api/chat", 0), 0)
        r = self.srv.request("GET", "/health")
        self.assertEqual(r.body["services"]["ollama"]["circuit_breaker"]["state"], "CLOSED", r)
        r = self.post("/api/chat", {"model": "llama3.2", "messages": question(), "stream": False,
                                    "options": {"temperature": 0.2, "stop": ["\n\n"], "num_ctx": None, "custom": "x"}})
        self.assertEqual(r.status, 200, r)

    def test_images_refused_not_dropped(self):
        # the upstream API carries no images: a vision request must not be answered blind
        img = ["iVBORw0KGgo="]
        for model in ("llama3.2", "rag/kb"):
            msgs = [{"role": "user", "content": "What is in this picture?", "images": img}]
            r = self.post("/api/chat", {"model": model, "messages": msgs, "stream": False})
            self.assertOllamaError(r, 400, "messages[0].images: images are not supported")
            r = self.post("/api/generate", {"model": model, "prompt": "What is in it?", "images": img})
            self.assertOllamaError(r, 400, "images: images are not supported")
        self.assertEqual(self.fake.stats()["requests"].get("/api/chat", 0), 0)
        msgs = [{"role": "user", "content": "Say something", "images": []}]
        self.assertEqual(self.post("/api/chat", {"model": "llama3.2", "messages": msgs, "stream": False}).status, 200)

    def test_no_passages_is_not_called_an_llm_outage(self):
        # nothing retrieved: the LLM is not asked, so the answer must not say it is down
        r = self.post("/api/chat", {"model": "rag/kb", "messages": question("Qwxzv plonkrt?"), "stream": False})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["sources"], [], r)
        self.assertNotIn("LLM unavailable", r.body["message"]["content"])
        self.assertIn("No relevant passages", r.body["message"]["content"])
        self.assertIs(r.body["rag"]["degraded"], False, r)

    def test_generate_refuses_what_a_chat_cannot_honour(self):
        # an editor's autocompletion sends a raw, already templated prompt or a suffix: answered
        # as a chat it would be wrong, silently
        for extra in ({"raw": True}, {"suffix": "return total"}, {"template": "{{ .Prompt }}"}):
            r = self.post("/api/generate", {"model": "llama3.2", "prompt": "def add(a, b):", "stream": False, **extra})
            self.assertOllamaError(r, 400, "not supported")
        self.assertEqual(self.fake.stats()["requests"].get("/api/chat", 0), 0)
        r = self.post("/api/generate", {"model": "llama3.2", "prompt": "Say something", "stream": False,
                                        "raw": False, "suffix": "", "template": ""})
        self.assertEqual(r.status, 200, r)

    # ---- pass-through ----

    def test_passthrough_chat_streamed_and_not(self):
        r = self.post("/api/chat", {"model": "llama3.2", "messages": question("Say something about tides")})
        self.assertEqual(r.status, 200, r)
        lines = ndjson(r.body)
        self.assertIs(lines[-1]["done"], True)
        self.assertGreater(lines[-1]["eval_count"], 0)  # the backend's own counters
        self.assertNotIn("sources", lines[-1])
        self.assertTrue("".join(line["message"]["content"] for line in lines))
        r = self.post("/api/generate", {"model": "llama3.2", "prompt": "Say something", "stream": False})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.body["response"])
        self.assertIn("Say something", self.fake.stats()["prompts"][-1])

    def test_missing_model_is_404_in_ollamas_words(self):
        r = self.post("/api/chat", {"model": "nope", "messages": question("hi")})
        self.assertOllamaError(r, 404, 'model "nope" not found, try pulling it first')
        r = self.post("/api/chat", {"model": "rag/absent", "messages": question("hi")})
        self.assertOllamaError(r, 404, 'model "rag/absent" not found')
        r = self.post("/api/embed", {"model": "nope", "input": "x"})
        self.assertOllamaError(r, 404, "not found")

    def test_embeddings(self):
        r = self.post("/api/embed", {"model": "rag/kb", "input": ["gardens of district", "Zephyrine"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body["embeddings"]), 2)
        self.assertEqual(len(r.body["embeddings"][0]), 512)  # the collection's builtin embedder
        norm = sum(x * x for x in r.body["embeddings"][0])
        self.assertAlmostEqual(norm, 1.0, places=4)
        for empty in ("", []):
            r = self.post("/api/embed", {"model": "rag/kb", "input": empty})
            self.assertEqual((r.status, r.body["embeddings"]), (200, []), r)
        self.assertOllamaError(self.post("/api/embed", {"model": "rag/kb", "input": [1]}), 400, "invalid input type")
        r = self.post("/api/embed", {"model": "nomic-embed-text", "input": ["a", "b", "c"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([len(v) for v in r.body["embeddings"]], [768, 768, 768])  # the fake's
        r = self.post("/api/embeddings", {"model": "rag/kb", "prompt": "gardens"})
        self.assertEqual((r.status, len(r.body["embedding"])), (200, 512), r)
        r = self.post("/api/embeddings", {"model": "rag/kb", "prompt": ["a"]})
        self.assertOllamaError(r, 400, "cannot unmarshal array")

    # ---- errors in Ollama's shape ----

    def test_every_error_has_ollamas_shape(self):
        r = self.srv.request("POST", "/api/chat", body=b"{bad", content_type="application/json")
        self.assertOllamaError(r, 400, "not valid JSON")
        self.assertOllamaError(self.srv.request("GET", "/api/chat"), 405, "not allowed")
        self.assertOllamaError(self.srv.request("POST", "/api/tags", json_body={}), 405)
        # any Content-Type is read as JSON, as Ollama does (test_clients.py: curl -d's form label)
        r = self.srv.request("POST", "/api/chat", body=b"x", content_type="text/plain")
        self.assertOllamaError(r, 400, "not valid JSON")
        r = self.srv.raw(harness.build_raw_request("POST", "/api/chat", headers={"Content-Type": "application/json"},
                                                    content_length=5 << 20))
        self.assertOllamaError(r, 413)
        self.assertOllamaError(self.post("/api/chat", {"messages": question()}), 400, "model is required")
        self.assertOllamaError(self.post("/api/chat", {"model": "rag/kb", "messages": "hi"}), 400, "messages")
        self.assertOllamaError(self.post("/api/chat", {"model": "rag/kb", "messages": question(), "stream": "yes"}),
                               400, "stream")
        self.assertOllamaError(self.post("/api/chat", {"model": "x" * 300, "messages": question()}), 400, "model")
        self.assertOllamaError(self.post("/api/chat", {"model": "a b", "messages": question()}), 400, "model")
        many = [{"role": "user", "content": "q"}] * 10001  # COMPAT_MAX_MESSAGES + 1
        self.assertOllamaError(self.post("/api/chat", {"model": "rag/kb", "messages": many}), 400, "at most")
        bad_role = [{"role": "wizard", "content": "q"}]
        self.assertOllamaError(self.post("/api/chat", {"model": "rag/kb", "messages": bad_role}), 400, "role")
        # ragd's own routes keep ragd's envelope
        r = self.srv.request("POST", "/api/query", body=b"{bad", content_type="application/json")
        self.assertEnvelope(r, 400, "invalid_json")

    def test_random_bodies_get_an_answer_or_the_dialects_error(self):
        values = [None, 0, -1, 1.5, "", "x", "rag/kb", "rag/", "rag/kb:latest", "rag/..", [], [None], [1], [{}], {},
                  {"role": "user"}, [{"role": "user", "content": None}], [{"role": "user", "content": 5}],
                  [{"role": "user", "content": [{"type": "text"}]}], [{"role": "assistant", "content": "x"}],
                  True, {"model": 5}, {"model": "other-llm"}, "\u0000", "é" * 50, "a" * 9000,
                  {"type": "json_object"}, {"type": "bogus"}]
        routes = ["/api/chat", "/api/generate", "/v1/chat/completions", "/api/embed", "/api/embeddings",
                  "/v1/embeddings", "/api/show"]
        fields = ["model", "messages", "prompt", "input", "stream", "options", "format", "keep_alive", "tools",
                  "stream_options", "response_format", "stop", "temperature", "encoding_format", "system"]
        rnd = random.Random(10)
        for _ in range(600):
            body = {"model": rnd.choice(["rag/kb", "llama3.2", "nomic-embed-text", "rag/none"])}
            if rnd.random() < 0.5:
                body["messages"] = question("alpha?")
            for f in rnd.sample(fields, rnd.randint(0, 6)):
                body[f] = rnd.choice(values)
            route = rnd.choice(routes)
            r = self.post(route, body)
            where = f"{route} {body!r:.300} -> {r!r}"
            self.assertIn(r.status, (200, 400, 404, 413), where)
            if r.status != 200:
                err = r.body["error"]
                self.assertIsInstance(err, dict if route.startswith("/v1/") else str, where)
        self.assertEqual(self.srv.request("GET", "/health").status, 200)

    # ---- failures ----

    def test_llm_failure_mid_stream_ends_with_an_error_line(self):
        self.fake.configure(fault="error_line", fault_paths="/api/chat", fault_count=1, fault_lines=2)
        r = self.post("/api/chat", {"model": "llama3.2", "messages": question("tell me a story")})
        self.assertEqual(r.status, 200, r)
        lines = ndjson(r.body)
        self.assertIn("error", lines[-1], lines)
        self.assertFalse(any(line.get("done") for line in lines), lines)
        self.assertGreaterEqual(len(lines), 2)

    def test_stream_cut_without_done_says_so(self):
        # a backend stream that just ends: the error line says what happened, not a bare word
        self.fake.configure(fault="cut_stream", fault_paths="/api/chat", fault_count=1, fault_lines=2)
        r = self.post("/api/chat", {"model": "llama3.2", "messages": question("tell me a story")})
        self.assertEqual(r.status, 200, r)
        lines = ndjson(r.body)
        self.assertIn("the chat stream broke off", lines[-1]["error"], lines)

    def test_rag_llm_failure_after_tokens_ends_with_an_error_line(self):
        # a long answer that fails after 200 tokens went out: too late for the extractive answer
        self.fake.configure(fault="error_line", fault_paths="/api/chat", fault_count=1, fault_lines=200, tokens=400)
        r = self.post("/api/chat", {"model": "rag/kb", "messages": question(), "options": {"seed": 11}})
        self.assertEqual(r.status, 200, r)
        lines = ndjson(r.body)
        self.assertIn("backend error mid-stream", lines[-1]["error"], lines[-1])
        self.assertFalse(any(line.get("done") for line in lines))
        self.assertTrue("".join(line.get("message", {}).get("content", "") for line in lines[:-1]))

    def test_client_hangup_cancels_the_chat(self):
        self.fake.configure(token_ms=100, tokens=200)
        body = json.dumps({"model": "llama3.2", "messages": question("a long story please")}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=10)
        conn.request("POST", "/api/chat", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        first = resp.fp.readline()  # the chunk size line of the first piece
        self.assertTrue(first)
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.fake.stats()["cancelled"] == 0:
            time.sleep(0.05)
        self.assertGreaterEqual(self.fake.stats()["cancelled"], 1, "the backend call was not cancelled")
        # the server is still well
        self.assertEqual(self.srv.request("GET", "/api/version").status, 200)

    def test_client_hangup_before_the_first_piece_cancels_the_backend_call(self):
        self.fake.configure(latency_ms=30000)  # the backend is silent for 30 s
        for model in ("llama3.2", "rag/kb"):
            self.fake.reset_stats()
            body = json.dumps({"model": model, "messages": question("When was the Zephyrine protocol ratified?"),
                               "options": {"seed": 7}}).encode()
            sock = socket.create_connection(("127.0.0.1", self.srv.port), timeout=10)
            sock.sendall(harness.build_raw_request("POST", "/api/chat", headers={"Content-Type": "application/json"},
                                                   body=body))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.fake.stats()["in_flight"] == 0:
                time.sleep(0.02)
            sock.close()
            # ragd must hang up on the backend now, not when its answer comes in 30 s
            while time.monotonic() < deadline and self.fake.stats()["cancelled"] == 0:
                time.sleep(0.05)
            self.assertGreaterEqual(self.fake.stats()["cancelled"], 1, model)


class OllamaCompatGuardedTest(harness.E2ETestCase):
    """API keys and rate limits answer in Ollama's shape on its routes."""
    class_server = True
    KEY = "k" * 24
    server_env = {"RAGD_API_KEYS": KEY, "RATE_LIMIT_QUERY": "2/minute", "RAGD_EMBEDDER": "builtin"}

    def test_401_and_429_in_ollamas_shape(self):
        r = self.server.request("GET", "/api/tags")
        self.assertEqual(r.status, 401, r)
        self.assertIsInstance(r.body["error"], str, r)
        r = self.server.request("GET", "/api/dbs")
        self.assertEnvelope(r, 401, "unauthorized")  # ragd's own route: ragd's envelope
        auth = {"Authorization": f"Bearer {self.KEY}"}
        self.assertEqual(self.server.request("GET", "/api/tags", headers=auth).status, 200)
        statuses = []
        for _ in range(3):
            r = self.server.request("POST", "/api/embed", json_body={"model": "rag/none", "input": ""},
                                    headers=auth)
            statuses.append(r.status)
        self.assertEqual(statuses[-1], 429, statuses)
        self.assertIsInstance(r.body["error"], str, r)
        self.assertTrue(r.header("Retry-After"))


class OllamaCompatNoBackendTest(NoBackendCase):
    """The true defaults: no LLM anywhere. A rag/ chat still answers — extractive, and says so."""

    def test_rag_chat_answers_flagged_without_a_backend(self):
        r = self.server.request("POST", "/api/chat", json_body={"model": "rag/kb", "messages": question(),
                                                                 "stream": False})
        self.assertEqual(r.status, 200, r)
        content = r.body["message"]["content"]
        # no LLM in use is not an LLM down: not degraded, as /api/query says on these defaults
        self.assertTrue(content.startswith("(Extractive answer from the sources"), content)
        self.assertIn("1937", content)
        self.assertIs(r.body["rag"]["degraded"], False)
        q = self.server.request("POST", "/api/query", json_body={"db": "kb", "query": question()[-1]["content"]})
        self.assertEqual((q.status, q.body["provider"]), (200, "extractive"), q)
        self.assertIs(r.body["rag"]["degraded"], q.body["degraded"])
        self.assertEqual(r.body["rag"]["provider"], "extractive")
        r = self.server.request("POST", "/api/chat", json_body={"model": "rag/kb", "messages": question()})
        lines = ndjson(r.body)
        self.assertIs(lines[-1]["done"], True)
        self.assertTrue(lines[0]["message"]["content"].startswith("(Extractive answer from the sources"))

    def test_lists_only_collections_and_never_fails(self):
        r = self.server.request("GET", "/api/tags")
        self.assertEqual(r.status, 200, r)
        self.assertEqual([m["name"] for m in r.body["models"]], ["rag/kb:latest"])
        r = self.server.request("GET", "/api/ps")
        self.assertEqual((r.status, r.body), (200, {"models": []}))
        r = self.server.request("GET", "/api/version")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.body["version"])
        # a plain model goes to the default backend (http://localhost:11434), which is not there
        r = self.server.request("POST", "/api/chat", json_body={"model": "llama3.2", "messages": question("hi")})
        self.assertEqual(r.status, 503, r)
        self.assertIn("unavailable", r.body["error"])
        self.assertTrue(r.header("Retry-After"))


if __name__ == "__main__":
    unittest.main()


class SlowReaderTest(harness.E2ETestCase):
    """A pass-through stream whose client stops reading: once ragd's buffer for it is full
    (the stream is capped), the backend call stops too, instead of holding its slot and
    generating for nobody — until the upstream reply cap, which counts as the backend's
    failure."""
    class_server = False

    def test_client_that_stops_reading_frees_the_backend(self):
        fake = self.start_fake_ollama(parallel=4)
        srv = self.new_server(env={"RAGD_GENERATOR": "ollama", "OLLAMA_BASE_URL": fake.url,
                                   "RAGD_EMBEDDER": "builtin", "RAGD_GENERATE_TIMEOUT_S": "600",
                                   "RAGD_IDLE_TIMEOUT_S": "600"})
        fake.configure(fault="endless_stream", fault_paths="/api/chat")
        body = json.dumps({"model": "llama3.2", "messages": question("tell me everything")}).encode()
        head = (f"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        readers = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", srv.port))
            self.addCleanup(s.close)
            s.sendall(head + body)  # and never read
            readers.append(s)
        ollama = None
        deadline = time.monotonic() + 300  # a bound for a stuck run, not a speed check
        while time.monotonic() < deadline:
            ollama = srv.request("GET", "/health").body["services"]["ollama"]
            if ollama["backends"][0]["in_flight"] == 0 and fake.stats()["faults"].get("endless_stream", 0) >= 4:
                break
            time.sleep(0.5)
        self.assertEqual(ollama["backends"][0]["in_flight"], 0, ollama)
        # ragd stopped the calls: not the backend's fault (read on to the upstream cap, each
        # would have counted as a failure: five such clients would open the breaker)
        self.assertEqual(ollama["circuit_breaker"]["failure_count"], 0, ollama)
        self.assertIsNone(ollama["circuit_breaker"]["last_failure"], ollama)
        fake.configure(fault="none")
        r = srv.request("POST", "/api/chat", json_body={"model": "llama3.2", "messages": question(), "stream": False})
        self.assertEqual(r.status, 200, r)

    def test_non_stream_answer_cut_at_the_response_cap_says_length(self):
        fake = self.start_fake_ollama()
        srv = self.new_server(env={"RAGD_GENERATOR": "ollama", "OLLAMA_BASE_URL": fake.url,
                                   "RAGD_EMBEDDER": "builtin", "RAGD_MAX_RESPONSE_BYTES": "65536"})
        fake.configure(fault="endless_stream", fault_paths="/api/chat,/v1/chat/completions")
        r = srv.request("POST", "/api/chat", json_body={"model": "llama3.2", "messages": question(), "stream": False})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["done_reason"], "length")  # cut, and the client is told so
        self.assertLess(len(r.body["message"]["content"].encode()), 65536)
        r = srv.request("POST", "/v1/chat/completions", json_body={"model": "llama3.2", "messages": question()})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["choices"][0]["finish_reason"], "length")
