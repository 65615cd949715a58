"""The real client libraries against ragd (issue 10, "What it must show").

The npm packages `ollama` and `openai` (pinned in tests/clients/package-lock.json, installed by
`make clients-deps`: npm ci) are run with node through tests/clients/drive.mjs, which makes
one library call and prints what the library returned (or the error it threw) as JSON. These
tests start ragd (and the fake Ollama of tools/fake_ollama, which answers a chat by quoting
the first sentence of the first two numbered passages it was given) and assert on that output:

- the models list holds `rag/<collection>` (both clients);
- a chat with `rag/<collection>`, streamed and not, carries a fact only one document of the
  collection holds; a follow-up question in the same conversation is answered about the
  document the conversation is about (and the same question alone is not);
- a plain model passes through: chat and embeddings equal what the backend itself answers;
- a missing model is each client's usual 404 (ollama: ResponseError, status_code 404;
  openai: NotFoundError);
- backend down → the rag/ chat still answers from the collection, flagged extractive;
- the way the clients call: the ollama client always sends `stream` (false by default),
  keep_alive, options (a wrongly typed one is that client's error only), format "json",
  tools (refused with ragd's message), a conversation of 500 turns (answered within the
  backend's context), openai's default base64 embeddings;
- API keys on: the openai client with its apiKey works, a wrong key is AuthenticationError.

node and the installed libraries are a precondition, not an option: without them the tests
fail (setUpClass) saying how to install them, never skip.
"""
import json
import os
import re
import shutil
import subprocess
import time

import harness

CLIENTS_DIR = os.path.join(harness.project_root(), "tests", "clients")
DRIVER = os.path.join(CLIENTS_DIR, "drive.mjs")
NODE_MIN = (18, 19)
CLIENT_TIMEOUT_S = 120.0

DB = "harbour"
# Each document's first sentence holds its fact: the fake answers with first sentences.
DOCS = [
    {"id": "zelkova", "text": "Fort Zelkova was designed by the engineer Tamsin Orrow in 1723. "
                              "The fort guards the northern harbour mouth with walls of grey basalt."},
    {"id": "quillby", "text": "The Quillby swing bridge was built in 1911 and opens for ships at four. "
                              "It was repainted green after the storm of 1998."},
    {"id": "marrow", "text": "Marrow Tower keeps the town archive of ship registers since 1802. "
                             "Its clock was a gift from the glassmakers' guild."},
    {"id": "mill", "text": "Who built it and when was it built is what every visitor asks about the old "
                           "Brent mill. The mill grinds oats for the harbour bakery."},
    {"id": "market", "text": "The fish market on Quay Street opens at five in the morning. "
                             "Herring and cod are sold by the crate."},
]
FACT = "Tamsin Orrow"            # only in "zelkova"
QUESTION = "Who designed Fort Zelkova?"
FOLLOW_UP = "And when was it built?"
PLAIN_MODEL = "llama3.2"         # the fake's chat model: passed through
EMBED_MODEL = "nomic-embed-text"  # the fake's embedding model, the collection's embedder


# --------------------------------------------------------------------------------------------
# node and the driver

def node_precondition():
    """Raises RuntimeError saying what to do when node (>= 18.19) or the installed client
    libraries are missing: these tests must fail then, not skip."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: tests/e2e/test_clients.py runs the real ollama "
                           "and openai npm libraries with it. Install nodejs and npm "
                           "(scripts/deps.sh), then `make clients-deps`.")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    m = re.match(r"v(\d+)\.(\d+)", out.stdout.strip())
    if not m or (int(m.group(1)), int(m.group(2))) < NODE_MIN:
        raise RuntimeError(f"node {out.stdout.strip()!r} is too old: the client tests need "
                           f">= {NODE_MIN[0]}.{NODE_MIN[1]}")
    for pkg in ("ollama", "openai"):
        if not os.path.isfile(os.path.join(CLIENTS_DIR, "node_modules", pkg, "package.json")):
            raise RuntimeError(f"the npm package {pkg!r} is not installed in {CLIENTS_DIR}: run "
                               "`make clients-deps` (npm ci from the committed lock file)")
    return node


def run_client(url, client, op, args=None, api_key=None, headers=None, max_retries=None):
    """One call with the real library (tests/clients/drive.mjs); returns its JSON line:
    {"ok": True, "result", "chunks"?} or {"ok": False, "error": {"class", "status", ...}}."""
    spec = {"client": client, "url": url, "op": op, "args": args or {}}
    if api_key is not None:
        spec["api_key"] = api_key
    if headers is not None:
        spec["headers"] = headers
    if max_retries is not None:
        spec["max_retries"] = max_retries
    proc = subprocess.run([shutil.which("node"), DRIVER], input=json.dumps(spec),
                          capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
                          cwd=CLIENTS_DIR, env=harness.base_env())
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"drive.mjs {client} {op} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def ollama_chat_text(out):
    """The answer of an ollama-client chat (streamed: the pieces joined, done chunk included)."""
    if "chunks" in out:
        return "".join(c.get("message", {}).get("content", "") for c in out["chunks"])
    return out["result"]["message"]["content"]


def openai_chat_text(out):
    if "chunks" in out:
        return "".join((c["choices"][0].get("delta") or {}).get("content") or ""
                       for c in out["chunks"] if c.get("choices"))
    return out["result"]["choices"][0]["message"]["content"]


def base_name(model):
    return model[:-len(":latest")] if model.endswith(":latest") else model


def rag_extras(obj):
    """The "rag" member ragd adds to a rag/ answer (docs/api.md), or {}."""
    extras = obj.get("rag") if isinstance(obj, dict) else None
    return extras if isinstance(extras, dict) else {}


class ClientTestCase(harness.E2ETestCase):
    """Base: checks node and the libraries first, and gives the call helpers."""

    @classmethod
    def setUpClass(cls):
        node_precondition()
        super().setUpClass()

    def client(self, client, op, args=None, srv=None, **kw):
        return run_client((srv or self.server).url, client, op, args, **kw)

    def ok(self, client, op, args=None, srv=None, **kw):
        out = self.client(client, op, args, srv=srv, **kw)
        self.assertTrue(out["ok"], f"{client} {op} {json.dumps(args)[:300]}: {out}")
        return out

    def error(self, client, op, args=None, srv=None, **kw):
        out = self.client(client, op, args, srv=srv, **kw)
        self.assertFalse(out["ok"], f"{client} {op}: expected an error, got {str(out)[:600]}")
        return out["error"]

    def chat(self, client, model, messages, stream, srv=None, **extra):
        """A chat with either client; returns (answer text, the driver's output)."""
        args = {"model": model, "messages": messages, **extra}
        if stream is not None:
            args["stream"] = stream
        out = self.ok(client, "chat", args, srv=srv)
        text = ollama_chat_text(out) if client == "ollama" else openai_chat_text(out)
        return text, out

    def assert_stream_shape(self, client, out):
        """A streamed answer ended the way the protocol says (the libraries check part of it)."""
        chunks = out["chunks"]
        self.assertTrue(chunks, out)
        if client == "ollama":
            self.assertIs(chunks[-1]["done"], True, chunks[-1])
            self.assertFalse(any(c["done"] for c in chunks[:-1]), chunks)
        else:
            self.assertTrue(all(c["object"] == "chat.completion.chunk" for c in chunks), chunks)
            finishes = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
            self.assertIn("stop", finishes, chunks)


def ingest(srv, documents=DOCS, db=DB, headers=None):
    """Ingests the documents into the collection on srv; raises with the server log on failure."""
    r = srv.request("POST", "/api/ingest", json_body={"db": db, "documents": documents},
                    headers=headers)
    if r.status != 200:
        raise AssertionError(f"ingest: {r!r}\n--- server log ---\n{srv.log_tail()}")
    return r.body


# --------------------------------------------------------------------------------------------

class ClientsAgainstFakeBackendTest(ClientTestCase):
    """ragd in front of the fake Ollama (generation and embeddings), one collection."""

    @classmethod
    def setUpClass(cls):
        node_precondition()
        cls.fake = harness.fake_ollama.FakeOllama(port=0, admin_port=0).start()
        cls.addClassCleanup(cls.fake.stop)
        # the answer cache off: every chat here must reach the fake, whose recorded prompts
        # and options these tests read (test_cache.py tests the cache)
        cls.server_env = {"OLLAMA_BASE_URL": cls.fake.url, "RAGD_CACHE": "off"}
        super().setUpClass()
        ingest(cls.server)

    def setUp(self):
        super().setUp()
        self.fake.configure(tokens=0)

    def fake_call(self, method, path, payload=None):
        r = harness.request(self.fake.port, method, path, json_body=payload)
        self.assertEqual(r.status, 200, r)
        return json.loads(r.raw)

    def fake_stats(self):
        return self.fake_call("GET", "/__admin/stats")

    # -- models -------------------------------------------------------------------------------
    def test_list_models_finds_the_collection(self):
        tags = self.ok("ollama", "list")["result"]["models"]
        names = [base_name(m["name"]) for m in tags]
        self.assertIn(f"rag/{DB}", names, tags)
        rag = next(m for m in tags if base_name(m["name"]) == f"rag/{DB}")
        self.assertEqual(base_name(rag["model"]), f"rag/{DB}", rag)
        ids = [base_name(i) for i in self.ok("openai", "models")["result"]["ids"]]
        self.assertIn(f"rag/{DB}", ids)
        # models.retrieve() sends the id URL-encoded: /v1/models/rag%2Fharbour
        model = self.ok("openai", "model", {"model": f"rag/{DB}"})["result"]
        self.assertEqual((base_name(model["id"]), model["object"]), (f"rag/{DB}", "model"), model)
        err = self.error("openai", "model", {"model": "rag/no_such_collection"})
        self.assertEqual((err["class"], err["status"]), ("NotFoundError", 404), err)
        # /api/show describes it, and /api/version answers as Ollama's does
        shown = self.ok("ollama", "show", {"model": f"rag/{DB}"})["result"]
        self.assertIn("completion", shown.get("capabilities", []), shown)
        version = self.ok("ollama", "version")["result"]
        self.assertRegex(version["version"], r"^\d+\.\d+\.\d+", version)

    # -- rag/ chats ---------------------------------------------------------------------------
    def test_rag_chat_carries_the_collections_fact(self):
        messages = [{"role": "user", "content": QUESTION}]
        for client in ("ollama", "openai"):
            for stream in (False, True):
                with self.subTest(client=client, stream=stream):
                    text, out = self.chat(client, f"rag/{DB}", messages, stream)
                    self.assertIn(FACT, text, out)
                    self.assertRegex(text, r"\[1\]", out)  # numbered citations in the text
                    if stream:
                        self.assert_stream_shape(client, out)
                    else:
                        result = out["result"]
                        if client == "ollama":
                            self.assertIs(result["done"], True, result)
                            self.assertEqual(base_name(result["model"]), f"rag/{DB}")
                        else:
                            self.assertEqual(result["object"], "chat.completion", result)
                            self.assertEqual(result["choices"][0]["finish_reason"], "stop")
                            self.assertGreater(result["usage"]["total_tokens"], 0, result)
                        # the LLM wrote it (not the extractive fallback), from our document
                        extras = rag_extras(result)
                        self.assertEqual(extras.get("provider"), "ollama", result)
                        self.assertIs(extras.get("degraded"), False, result)
        # the fake was given the document's passage: the answer came through the LLM
        self.assertTrue(any(FACT in p for p in self.fake_stats()["prompts"]))

    def test_rag_generate_carries_the_collections_fact(self):
        # the ollama library's generate(): the prompt is the question
        out = self.ok("ollama", "generate", {"model": f"rag/{DB}", "prompt": QUESTION})
        self.assertIn(FACT, out["result"]["response"], out)
        self.assertIs(out["result"]["done"], True)
        out = self.ok("ollama", "generate", {"model": f"rag/{DB}", "prompt": QUESTION, "stream": True})
        self.assertIn(FACT, "".join(c["response"] for c in out["chunks"]), out)
        self.assertIs(out["chunks"][-1]["done"], True)

    def test_rag_chat_streams_in_pieces(self):
        # an answer longer than the output guard's hold-back (docs/internals/fence.md), so
        # that it streams piece by piece, as generated
        self.fake.configure(tokens=120)
        messages = [{"role": "user", "content": QUESTION}]
        text, out = self.chat("ollama", f"rag/{DB}", messages, True)
        self.assertIn(FACT, text)
        self.assertGreater(len(out["chunks"]), 2, out["chunks"][:3])
        text, out = self.chat("openai", f"rag/{DB}", messages, True,
                              stream_options={"include_usage": True})
        self.assertIn(FACT, text)
        self.assertGreater(len([c for c in out["chunks"] if c.get("choices")]), 2)
        usage = [c["usage"] for c in out["chunks"] if c.get("usage")]
        self.assertTrue(usage and usage[-1]["total_tokens"] > 0, out["chunks"][-2:])

    def test_follow_up_question_is_about_the_conversations_document(self):
        for client in ("ollama", "openai"):
            with self.subTest(client=client):
                first, _ = self.chat(client, f"rag/{DB}", [{"role": "user", "content": QUESTION}], False)
                self.assertIn(FACT, first)
                conversation = [{"role": "user", "content": QUESTION},
                                {"role": "assistant", "content": first},
                                {"role": "user", "content": FOLLOW_UP}]
                text, out = self.chat(client, f"rag/{DB}", conversation, False)
                self.assertIn(FACT, text, out)
                # the control: the follow-up alone is about nothing, and does not find it
                alone, out = self.chat(client, f"rag/{DB}", [{"role": "user", "content": FOLLOW_UP}], False)
                self.assertNotIn(FACT, alone, out)

    def test_long_conversation_is_answered_within_the_backends_context(self):
        # 500 turns (messages, as docs/api.md counts them; the cap is 10,000): 499 earlier ones of
        # ~20 words (about 10 000 tokens: more than twice the fake's 4096-token context, which
        # it refuses with a 400), then the question
        conversation = []
        for i in range(499):
            if i % 2 == 0:
                text = (f"Tell me about the weather on day {i} of the long voyage along the "
                        f"rocky northern coast, and what the crew saw from the deck.")
            else:
                text = (f"On day {i} the sky was grey, the wind came from the west, and the crew "
                        f"saw seals resting on the rocks near the shore.")
            conversation.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
        conversation.append({"role": "user", "content": QUESTION})
        self.assertEqual(len(conversation), 500)
        context = self.fake_call("POST", "/api/show", {"model": PLAIN_MODEL})["model_info"]
        ctx = next(v for k, v in context.items() if k.endswith(".context_length"))
        for client, stream in (("ollama", False), ("openai", True)):
            with self.subTest(client=client, stream=stream):
                text, out = self.chat(client, f"rag/{DB}", conversation, stream)
                self.assertIn(FACT, text, str(out)[:2000])
                prompts = self.fake_stats()["prompts"]
                self.assertTrue(prompts and FACT in prompts[-1], prompts[-1:])
                # what the backend got fits its context (tokens ≈ words and punctuation)
                self.assertLess(len(re.findall(r"\w+|[^\w\s]", prompts[-1])), ctx)
                if not stream:
                    self.assertIs(rag_extras(out["result"]).get("degraded"), False, out["result"])

    # -- pass-through -------------------------------------------------------------------------
    def test_plain_model_chat_passes_through(self):
        # with no numbered passages the fake answers the question's first sentence: exactly
        # what the backend says, and the backend got exactly the client's message
        question = "The harbour pilot's password is quince. Repeat it."
        for client in ("ollama", "openai"):
            for stream in (False, True):
                with self.subTest(client=client, stream=stream):
                    text, out = self.chat(client, PLAIN_MODEL, [{"role": "user", "content": question}], stream)
                    self.assertEqual(text, "The harbour pilot's password is quince.", out)
                    self.assertEqual(self.fake_stats()["prompts"][-1], question)
                    if stream:
                        self.assert_stream_shape(client, out)
                    elif client == "ollama":
                        self.assertEqual(base_name(out["result"]["model"]), PLAIN_MODEL)
                        self.assertGreater(out["result"]["eval_count"], 0, out["result"])

    def fake_vectors(self, texts):
        return self.fake_call("POST", "/api/embed", {"model": EMBED_MODEL, "input": texts})["embeddings"]

    def assert_vectors_close(self, got, want):
        self.assertEqual(len(got), len(want))
        for g, w in zip(got, want):
            self.assertEqual(len(g), len(w))
            self.assertLess(max(abs(a - b) for a, b in zip(g, w)), 1e-6)

    def test_embeddings_pass_through_and_for_a_collection(self):
        texts = ["grey basalt walls", "herring by the crate"]
        want = self.fake_vectors(texts)
        for model in (EMBED_MODEL, f"rag/{DB}"):  # a rag/ model embeds with the collection's embedder
            with self.subTest(model=model, client="ollama embed"):
                res = self.ok("ollama", "embed", {"model": model, "input": texts})["result"]
                self.assert_vectors_close(res["embeddings"], want)
            with self.subTest(model=model, client="ollama embeddings (legacy)"):
                res = self.ok("ollama", "embeddings", {"model": model, "prompt": texts[0]})["result"]
                norm = sum(x * x for x in res["embedding"]) ** 0.5
                self.assert_vectors_close([[x / norm for x in res["embedding"]]], want[:1])
            with self.subTest(model=model, client="openai (its default: base64)"):
                res = self.ok("openai", "embeddings", {"model": model, "input": texts})["result"]
                self.assertEqual([d["index"] for d in res["data"]], [0, 1])
                self.assert_vectors_close([d["embedding"] for d in res["data"]], want)
            with self.subTest(model=model, client="openai float"):
                res = self.ok("openai", "embeddings", {"model": model, "input": texts,
                                                       "encoding_format": "float"})["result"]
                self.assert_vectors_close([d["embedding"] for d in res["data"]], want)

    # -- errors -------------------------------------------------------------------------------
    def test_missing_model_is_the_clients_usual_404(self):
        messages = [{"role": "user", "content": QUESTION}]
        for model in ("rag/no_such_collection", "no-such-model"):
            with self.subTest(model=model, client="ollama"):
                err = self.error("ollama", "chat", {"model": model, "messages": messages})
                self.assertEqual((err["class"], err["status"]), ("ResponseError", 404), err)
                self.assertIn("not found", err["message"])
                err = self.error("ollama", "embed", {"model": model, "input": "x"})
                self.assertEqual((err["class"], err["status"]), ("ResponseError", 404), err)
            with self.subTest(model=model, client="openai"):
                err = self.error("openai", "chat", {"model": model, "messages": messages})
                self.assertEqual((err["class"], err["status"]), ("NotFoundError", 404), err)
                self.assertIn(model, err["message"])  # OpenAI's words: "does not exist"
                err = self.error("openai", "embeddings", {"model": model, "input": "x"})
                self.assertEqual((err["class"], err["status"]), ("NotFoundError", 404), err)

    def test_tools_are_refused_with_ragds_message(self):
        tool = {"type": "function", "function": {
            "name": "get_tide", "description": "The tide at a harbour",
            "parameters": {"type": "object", "properties": {"harbour": {"type": "string"}}}}}
        messages = [{"role": "user", "content": QUESTION}]
        for model in (f"rag/{DB}", PLAIN_MODEL):
            with self.subTest(model=model, client="ollama"):
                err = self.error("ollama", "chat", {"model": model, "messages": messages, "tools": [tool]})
                self.assertEqual((err["class"], err["status"]), ("ResponseError", 400), err)
                self.assertIn("tool", err["message"].lower())  # ragd's words, not "Error 400"
            with self.subTest(model=model, client="openai"):
                err = self.error("openai", "chat", {"model": model, "messages": messages, "tools": [tool]})
                self.assertEqual((err["class"], err["status"]), ("BadRequestError", 400), err)
                self.assertIn("tool", err["message"].lower())

    # -- the way the clients call -------------------------------------------------------------
    def test_ollama_client_stream_default_and_raw_default(self):
        # the ollama library always sends "stream" (false unless asked): one JSON object
        text, out = self.chat("ollama", f"rag/{DB}", [{"role": "user", "content": QUESTION}], None)
        self.assertIn(FACT, text)
        self.assertIs(out["result"]["done"], True)
        # a raw client that leaves it out gets Ollama's default: an NDJSON stream. Sent as
        # `curl URL -d '{...}'` sends it (the way Ollama's own API docs call it): labelled
        # application/x-www-form-urlencoded, which Ollama does not look at
        r = self.server.request("POST", "/api/chat", body=json.dumps({
            "model": f"rag/{DB}", "messages": [{"role": "user", "content": QUESTION}]}),
            content_type="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.content_type(), "application/x-ndjson", r)
        lines = [json.loads(x) for x in r.raw.decode().splitlines() if x.strip()]
        self.assertIs(lines[-1]["done"], True, lines[-1])
        self.assertIn(FACT, "".join(x["message"]["content"] for x in lines))

    def loaded_expiry_year(self, model):
        """The year the fake will unload `model` (its /api/ps), or None when not loaded."""
        for m in self.fake_call("GET", "/api/ps")["models"]:
            if base_name(m["name"]) == model:
                return int(m["expires_at"][:4])
        return None

    def assert_expiry(self, model, check, what):
        """The fake sets a model's expiry just after its answer went out: polls its /api/ps
        (at most 10 s, a bound on a wait, not a speed requirement) until check(year) holds."""
        deadline = time.monotonic() + 10.0
        year = self.loaded_expiry_year(model)
        while not check(year) and time.monotonic() < deadline:
            time.sleep(0.05)
            year = self.loaded_expiry_year(model)
        self.assertTrue(check(year), f"{what}: the fake's /api/ps expiry year of {model} is {year}")

    def test_keep_alive_reaches_the_backend(self):
        messages = [{"role": "user", "content": QUESTION}]
        forever = lambda year: year is not None and year > 3000  # noqa: E731
        # negative = keep it loaded for ever (the fake's expiry is then far in the future)
        self.chat("ollama", f"rag/{DB}", messages, False, keep_alive=-1)
        self.assert_expiry(PLAIN_MODEL, forever, "rag/ chat, keep_alive -1")
        self.chat("ollama", f"rag/{DB}", messages, True, keep_alive="10m")
        self.assert_expiry(PLAIN_MODEL, lambda y: y is not None and y < 3000, "rag/ chat, 10m")
        # 0 = unload after the answer
        self.chat("ollama", PLAIN_MODEL, messages, False, keep_alive=0)
        self.assert_expiry(PLAIN_MODEL, lambda y: y is None, "pass-through, keep_alive 0")
        self.chat("ollama", PLAIN_MODEL, messages, False, keep_alive="-1s")
        self.assert_expiry(PLAIN_MODEL, forever, "pass-through, keep_alive -1s")

    def test_options_reach_the_backend(self):
        messages = [{"role": "user", "content": QUESTION}]
        for model in (f"rag/{DB}", PLAIN_MODEL):
            with self.subTest(model=model, client="ollama"):
                self.chat("ollama", model, messages, False, options={"temperature": 0.25, "num_ctx": 8192})
                opts = self.fake_stats()["chat_options"][-1]
                self.assertEqual(opts.get("temperature"), 0.25, opts)
                self.assertEqual(opts.get("num_ctx"), 8192, opts)
            with self.subTest(model=model, client="openai"):
                self.chat("openai", model, messages, False, temperature=0.75, seed=7)
                opts = self.fake_stats()["chat_options"][-1]
                self.assertEqual(opts.get("temperature"), 0.75, opts)
                self.assertEqual(opts.get("seed"), 7, opts)

    def test_a_clients_wrong_option_is_its_own_error(self):
        # Ollama answers a wrongly typed option 500 'option "temperature" must be of type
        # float32'. That is this client's mistake: it gets the error, and the backend stays
        # in use for everyone else (a breaker opened by it would degrade every chat). Its
        # own server, so that the class server's breaker is not at stake.
        srv = self.new_server(env={"OLLAMA_BASE_URL": self.fake.url, "RAGD_CACHE": "off"})
        ingest(srv)
        messages = [{"role": "user", "content": QUESTION}]
        for _ in range(6):  # more than RAGD_BREAKER_FAILURES (5)
            err = self.error("ollama", "chat", {"model": PLAIN_MODEL, "messages": messages,
                                                "options": {"temperature": "hot"}}, srv=srv)
            self.assertEqual(err["class"], "ResponseError", err)
            self.assertIn(err["status"], (400, 500), err)  # not 503: the backend is fine
            self.assertIn("temperature", err["message"], err)
        text, out = self.chat("ollama", PLAIN_MODEL, messages, False, srv=srv)
        self.assertEqual(text, "Who designed Fort Zelkova?", out)
        text, out = self.chat("ollama", f"rag/{DB}", messages, False, srv=srv)
        self.assertEqual(rag_extras(out["result"]).get("provider"), "ollama", out["result"])

    def json_object(self, text):
        """text parsed as a JSON object, or a test failure that shows it."""
        try:
            value = json.loads(text)
        except ValueError as e:
            self.fail(f"not JSON ({e}): {text!r}")
        self.assertIsInstance(value, dict, text)
        return value

    def test_format_json_gives_json(self):
        messages = [{"role": "user", "content": QUESTION}]
        for model in (f"rag/{DB}", PLAIN_MODEL):
            for stream in (False, True):
                with self.subTest(model=model, stream=stream):
                    text, out = self.chat("ollama", model, messages, stream, format="json")
                    self.json_object(text)
            with self.subTest(model=model, client="openai"):
                text, out = self.chat("openai", model, messages, False,
                                      response_format={"type": "json_object"})
                self.json_object(text)
        # the rag/ one is still about the collection's document
        text, _ = self.chat("ollama", f"rag/{DB}", messages, False, format="json")
        self.assertIn(FACT, self.json_object(text)["answer"])


# --------------------------------------------------------------------------------------------

class ClientsBackendDownTest(ClientTestCase):
    """No backend answering: a rag/ chat still answers from the collection, flagged."""
    class_server = False

    def check_flagged_answers(self, srv, degraded):
        """degraded: the value rag.degraded must have, or None to leave it unchecked."""
        for client in ("ollama", "openai"):
            for stream in (False, True):
                with self.subTest(client=client, stream=stream):
                    text, out = self.chat(client, f"rag/{DB}", [{"role": "user", "content": QUESTION}],
                                          stream, srv=srv)
                    self.assertIn(FACT, text, out)          # quoted from the document
                    self.assertIn("extractive", text.lower(), text)  # and says what it is
                    if not stream:
                        extras = rag_extras(out["result"])
                        self.assertEqual(extras.get("provider"), "extractive", out["result"])
                        if degraded is not None:
                            self.assertIs(extras.get("degraded"), degraded, out["result"])

    def test_true_defaults_nothing_answers(self):
        # OLLAMA_BASE_URL unset and nothing at the default address: builtin embeddings,
        # extractive answers, not degraded (no LLM in use is not an LLM down), as /api/query.
        srv = self.new_server()
        ingest(srv)
        self.check_flagged_answers(srv, degraded=False)
        # a plain model has no backend to pass through to: a clean error, not a hang or a 200
        err = self.error("ollama", "chat", {"model": PLAIN_MODEL, "messages": [
            {"role": "user", "content": "hello"}]}, srv=srv)
        self.assertEqual(err["class"], "ResponseError", err)
        self.assertIn(err["status"], (404, 503), err)  # no backend: unknown model, or unavailable

    def test_configured_backend_down(self):
        fake = self.start_fake_ollama()
        srv = self.new_server(env={"OLLAMA_BASE_URL": fake.url})
        ingest(srv)
        fake.configure(fault="refuse")
        self.check_flagged_answers(srv, degraded=True)


# --------------------------------------------------------------------------------------------

class ClientsWithApiKeysTest(ClientTestCase):
    KEY = "clients-key-0123456789abcdef"
    READ_KEY = "clients-read-0123456789abcdef"
    server_env = {"RAGD_API_KEYS": f"{KEY},{READ_KEY}:read", "RAGD_EMBEDDER": "builtin",
                  "RAGD_GENERATOR": "extractive"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        ingest(cls.server, headers={"Authorization": f"Bearer {cls.KEY}"})

    def test_openai_client_with_its_api_key(self):
        ids = [base_name(i) for i in self.ok("openai", "models", api_key=self.KEY)["result"]["ids"]]
        self.assertIn(f"rag/{DB}", ids)
        out = self.ok("openai", "chat", {"model": f"rag/{DB}", "messages": [
            {"role": "user", "content": QUESTION}]}, api_key=self.KEY)
        self.assertIn(FACT, openai_chat_text(out))
        # a read-only key is enough for a chat client (docs/api.md)
        out = self.ok("openai", "chat", {"model": f"rag/{DB}", "messages": [
            {"role": "user", "content": QUESTION}], "stream": True}, api_key=self.READ_KEY)
        self.assertIn(FACT, openai_chat_text(out))
        for op, args in (("models", None), ("chat", {"model": f"rag/{DB}", "messages": [
                {"role": "user", "content": QUESTION}]})):
            with self.subTest(op=op):
                err = self.error("openai", op, args, api_key="wrong-key-0123456789abcdef")
                self.assertEqual((err["class"], err["status"]), ("AuthenticationError", 401), err)

    def test_ollama_client_with_an_authorization_header(self):
        auth = {"Authorization": f"Bearer {self.KEY}"}
        names = [base_name(m["name"]) for m in self.ok("ollama", "list", headers=auth)["result"]["models"]]
        self.assertIn(f"rag/{DB}", names)
        out = self.ok("ollama", "chat", {"model": f"rag/{DB}", "messages": [
            {"role": "user", "content": QUESTION}]}, headers=auth)
        self.assertIn(FACT, ollama_chat_text(out))
        err = self.error("ollama", "list")
        self.assertEqual((err["class"], err["status"]), ("ResponseError", 401), err)
