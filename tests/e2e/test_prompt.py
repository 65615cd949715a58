"""The prompt of /api/query against the fake Ollama (docs/internals/passages.md):
neighbouring chunks merged into one passage, the prompt fitted to the model's context
(passages cut or dropped, the question kept whole), citations to sources the model was not
given removed from the answer, streamed or not."""
import json

import harness


SENTENCES = ["Sentence number %d says that the backup of volume %d runs nightly at %d o'clock."
             % (i, i, i % 12 + 1) for i in range(1, 13)]
LONG_DOC = " ".join(SENTENCES)

# Three documents of about 900 bytes each: together more than a small context holds.
TOPICS = ["backups", "restores", "retention"]
DOCS = [{"id": t, "text": " ".join("The %s policy clause %d explains how %s are handled for volume %d "
                                     "in the %s region." % (t, i, t, i, t) for i in range(1, 11))}
        for t in TOPICS]


class PromptTest(harness.E2ETestCase):
    class_server = False

    def setUp(self):
        super().setUp()
        self.fake = self.start_fake_ollama()
        self.srv = self.new_server(env={
            "RAGD_GENERATOR": "ollama",
            "OLLAMA_BASE_URL": self.fake.url,
            "RAGD_EMBEDDER": "builtin",
            "RAGD_CHUNK_SIZE": "200",
            "RAGD_CHUNK_OVERLAP": "60",
        })

    def ask(self, db, query, **extra):
        body = {"db": db, "query": query, "k": 20, "use_cache": False}
        body.update(extra)
        return self.call("POST", "/api/query", body, srv=self.srv)

    def test_neighbouring_chunks_become_one_passage_without_repeated_overlap(self):
        self.call("POST", "/api/ingest", {"db": "long", "documents": [{"id": "long", "text": LONG_DOC}]},
                  srv=self.srv)
        chunks = self.call("POST", "/api/retrieve", {"db": "long", "query": "backup volume nightly", "k": 20},
                           srv=self.srv)["sources"]
        self.assertGreater(len(chunks), 3, "the document must span several overlapping chunks")
        self.assertNotIn("chunks", chunks[0], "/api/retrieve returns chunks as they are")
        res = self.ask("long", "backup volume nightly")
        self.assertEqual(len(res["sources"]), 1, res["sources"])
        src = res["sources"][0]
        self.assertEqual(src["chunks"], list(range(len(chunks))))
        self.assertEqual(src["chunk"], 0)
        self.assertEqual(src["id"], "long#0")
        self.assertEqual((src["start"], src["end"]), (0, len(LONG_DOC)))
        self.assertEqual(src["text"], LONG_DOC)
        for s in SENTENCES:
            self.assertEqual(src["text"].count(s), 1, s)
        # the model got the one passage, each sentence once
        prompt = self.fake.stats()["prompts"][-1]
        self.assertEqual(prompt.count(SENTENCES[5]), 1)
        self.assertEqual(res["cited"], [1])
        # the semantic cache keeps the passage's shape
        first = self.ask("long", "backup volume nightly", use_cache=True)
        again = self.ask("long", "backup volume nightly", use_cache=True)
        self.assertFalse(first["cached"])
        self.assertTrue(again["cached"], again)
        self.assertEqual(again["sources"], first["sources"])
        self.assertEqual(again["cited"], [1])
        self.assertNotIn("prompt", again)

    def test_a_chunk_cut_mid_sentence_starts_at_a_sentence(self):
        self.call("POST", "/api/ingest", {"db": "long", "documents": [{"id": "long", "text": LONG_DOC}]},
                  srv=self.srv)
        body = {"db": "long", "query": "volume 7 runs nightly at 8", "k": 1, "method": "keyword"}
        chunk = self.call("POST", "/api/retrieve", body, srv=self.srv)["sources"][0]
        self.assertTrue(chunk["text"][0].islower(), chunk)  # the chunker's overlap cut a sentence
        body.update(use_cache=False, provider="extractive")
        src = self.call("POST", "/api/query", body, srv=self.srv)["sources"][0]
        self.assertEqual(src["chunk"], chunk["chunk"])
        self.assertTrue(src["text"].startswith("Sentence number "), src)
        self.assertTrue(chunk["text"].endswith(src["text"]) or src["text"] in chunk["text"], (src, chunk))
        self.assertEqual(LONG_DOC[src["start"]:src["end"]], src["text"])
        self.assertGreater(src["start"], chunk["start"])

    def test_small_context_cuts_passages_and_keeps_the_question(self):
        self.call("POST", "/api/ingest", {"db": "many", "documents": DOCS}, srv=self.srv)
        question = "How are backups, restores and retention handled for volume 7?"
        whole = self.ask("many", question)
        self.assertEqual(whole["prompt"]["passages_dropped"], 0, whole["prompt"])
        self.assertFalse(whole["prompt"]["truncated"])
        given = len(whole["sources"])
        self.assertGreaterEqual(given, 3)
        res = self.ask("many", question, options={"num_ctx": 1100, "num_predict": 100})
        self.assertEqual(res["provider"], "ollama", res)
        p = res["prompt"]
        self.assertEqual(p["context_tokens"], 1100)
        self.assertEqual(p["budget"], 1000)
        self.assertLessEqual(p["tokens_estimate"], p["budget"])
        self.assertTrue(p["truncated"] or p["passages_dropped"] > 0, p)
        self.assertLess(p["passages"], given)
        self.assertEqual(len(res["sources"]), given, "the sources still list every passage")
        prompt = self.fake.stats()["prompts"][-1]
        self.assertIn("Question: " + question + "\n", prompt)
        self.assertLess(len(prompt), len(self.fake.stats()["prompts"][-2]))
        if p["truncated"]:
            # the last passage given ends at a sentence end
            last = prompt.split("[%d] " % p["passages"], 1)[1].split("\n", 1)[0]
            self.assertTrue(last.endswith("."), last)
        # a citation of a passage the model was not given is not kept
        for n in res["cited"]:
            self.assertLessEqual(n, p["passages"])

    def test_question_bigger_than_the_context_is_answered_extractively(self):
        self.call("POST", "/api/ingest", {"db": "many", "documents": DOCS}, srv=self.srv)
        question = "How are backups handled? " + "Please consider volume seven carefully. " * 40
        before = len(self.fake.stats()["prompts"])
        res = self.ask("many", question, options={"num_ctx": 600})
        self.assertEqual(res["provider"], "extractive", res)
        self.assertTrue(res["degraded"])
        self.assertIn("more than the", res["degraded_reason"])
        self.assertEqual(res["prompt"]["passages"], 0)
        self.assertEqual(len(self.fake.stats()["prompts"]), before, "nothing was sent cut")

    def test_citation_to_a_missing_source_is_removed(self):
        self.call("POST", "/api/ingest", {"db": "many", "documents": DOCS}, srv=self.srv)
        n = len(self.ask("many", "backups policy")["sources"])
        bogus = n + 4
        # long enough (past the output guard's 96-byte hold-back) that the stream releases it
        # in several pieces, markers on both sides of the first release
        filler = "The policy text is long and detailed about every volume and region. "
        self.fake.configure(answer="Backups are handled by the policy [1]. See also [%d] and [1, %d]. %s"
                                   "Retention [2-%d] matters. %sEnd [%d][1]." % (bogus, bogus, filler * 2, bogus,
                                                                                filler * 3, bogus))
        want = ("Backups are handled by the policy [1]. See also and [1]. %sRetention [2-%d] matters. %sEnd[1]."
                % (filler * 2, n, filler * 3))
        res = self.ask("many", "backups policy")
        self.assertEqual(res["answer"], want)
        # RAGD_CONTEXT_TOKENS unset: Ollama runs at its own num_ctx, none is sent
        self.assertNotIn("num_ctx", self.fake.stats()["chat_options"][-1])
        self.assertEqual(res["cited"], list(range(1, n + 1)))
        # streamed: the tokens and the done event carry the same checked answer
        r = self.srv.request("POST", "/api/query", json_body={"db": "many", "query": "backups policy", "k": 20,
                                                              "use_cache": False, "stream": True})
        self.assertEqual(r.status, 200, r)
        events = harness.parse_sse(r.raw)
        pieces = [json.loads(d)["text"] for e, d in events if e == "token"]
        self.assertGreater(len(pieces), 3, pieces)
        self.assertEqual("".join(pieces), want)
        done = [json.loads(d) for e, d in events if e == "done"][-1]
        self.assertEqual(done["answer"], want)
        self.assertEqual(done["cited"], list(range(1, n + 1)))

    def test_an_answer_of_only_missing_citations_is_answered_extractively(self):
        self.call("POST", "/api/ingest", {"db": "many", "documents": DOCS}, srv=self.srv)
        n = len(self.ask("many", "backups policy")["sources"])
        # short, and longer than the output guard's 96-byte hold-back (released in pieces)
        for answer, stream in [(a, st) for a in ("[0] [%d][%d]" % (n + 1, n + 9), "[0] [%d] " % (n + 1) * 30)
                               for st in (False, True)]:
            self.fake.configure(answer=answer)
            r = self.srv.request("POST", "/api/query", json_body={"db": "many", "query": "backups policy", "k": 20,
                                                                  "use_cache": False, "stream": stream})
            self.assertEqual(r.status, 200, r)
            res = [json.loads(d) for e, d in harness.parse_sse(r.raw) if e == "done"][-1] if stream else r.body
            self.assertEqual(res["provider"], "extractive", res)
            self.assertTrue(res["degraded"], res)
            self.assertIn("cited only sources it was not given", res["degraded_reason"], res)
            self.assertIn("[1]", res["answer"], res)
            if stream:
                self.assertEqual("".join(json.loads(d)["text"] for e, d in harness.parse_sse(r.raw) if e == "token"),
                                 res["answer"])

    def test_configured_context_and_the_openai_backend(self):
        srv = self.new_server(env={"RAGD_GENERATOR": "ollama", "OLLAMA_BASE_URL": self.fake.url,
                                   "RAGD_EMBEDDER": "builtin", "RAGD_CONTEXT_TOKENS": "1100"})
        self.call("POST", "/api/ingest", {"db": "many", "documents": DOCS}, srv=srv)
        body = {"db": "many", "query": "How are restores handled?", "k": 20, "use_cache": False}
        res = self.call("POST", "/api/query", body, srv=srv)
        self.assertEqual(res["prompt"]["context_tokens"], 1100)
        self.assertEqual(res["prompt"]["budget"], 1100 - 275)  # a quarter kept for the answer
        # ... and Ollama is asked to run at it (its own default may be smaller or larger)
        self.assertEqual(self.fake.stats()["chat_options"][-1].get("num_ctx"), 1100)
        body["options"] = {"num_ctx": 3000, "temperature": 0}  # the request's num_ctx is what Ollama runs at
        self.assertEqual(self.call("POST", "/api/query", body, srv=srv)["prompt"]["context_tokens"], 3000)
        self.assertEqual(self.fake.stats()["chat_options"][-1], {"num_ctx": 3000, "temperature": 0})
        body["options"] = {"temperature": 0}  # other options kept, num_ctx added
        self.call("POST", "/api/query", body, srv=srv)
        self.assertEqual(self.fake.stats()["chat_options"][-1], {"num_ctx": 1100, "temperature": 0})
        del body["options"]
        srv.stop()
        # an OpenAI-compatible model not in the table: 4096; max_tokens is the reserve; the
        # citations are checked on that path too
        srv = self.new_server(env={"RAGD_GENERATOR": "openai", "OPENAI_BASE_URL": self.fake.url,
                                   "RAGD_EMBEDDER": "builtin"})
        self.call("POST", "/api/ingest", {"db": "many", "documents": DOCS}, srv=srv)
        self.fake.configure(answer="Restores are handled by policy [1] and [77].")
        body["options"] = {"max_tokens": 300}
        res = self.call("POST", "/api/query", body, srv=srv)
        self.assertEqual(res["provider"], "openai", res)
        self.assertEqual(res["prompt"]["context_tokens"], 4096)
        self.assertEqual(res["prompt"]["budget"], 4096 - 300)
        self.assertEqual(res["answer"], "Restores are handled by policy [1] and.")
        self.assertEqual(res["cited"], [1])

    def test_extractive_answers_list_their_citations(self):
        self.call("POST", "/api/ingest", {"db": "many", "documents": DOCS}, srv=self.srv)
        res = self.ask("many", "How are restores handled?", provider="extractive")
        self.assertEqual(res["provider"], "extractive")
        self.assertNotIn("prompt", res)
        self.assertTrue(res["cited"], res)
        for n in res["cited"]:
            self.assertIn("[%d]" % n, res["answer"])


if __name__ == "__main__":
    import unittest
    unittest.main()
