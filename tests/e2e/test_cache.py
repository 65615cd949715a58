"""The semantic answer cache end to end: a repeated question is answered `cached: true`
without asking the LLM again, a paraphrase close enough in embedding is too, an ingest into
the collection invalidates it, a streamed request replays a cached answer as a stream,
degraded answers are never cached, and use_cache: false bypasses it."""
import json
import unittest

import harness


DOCS = [
    {"id": "krakatoa", "text": "Krakatoa is a volcanic island in the Sunda Strait. It erupted in 1883 "
                               "with one of the loudest sounds ever recorded."},
    {"id": "tides", "text": "Tides are caused by the gravity of the Moon and the Sun acting on the oceans."},
]


class CacheTest(harness.E2ETestCase):
    class_server = False

    def setUp(self):
        super().setUp()
        self.fake = self.start_fake_ollama()
        self.srv = self.new_server(env={"OLLAMA_BASE_URL": self.fake.url, "RAGD_EMBEDDER": "builtin"})
        self.call("POST", "/api/ingest", {"db": "c", "documents": DOCS}, srv=self.srv)

    def chats(self):
        return self.fake.stats()["requests"].get("/api/chat", 0)

    def ask(self, q, **kw):
        return self.call("POST", "/api/query", dict({"query": q, "db": "c"}, **kw), srv=self.srv)

    def test_repeat_paraphrase_invalidate_stream(self):
        first = self.ask("When did Krakatoa erupt?")
        self.assertEqual(first["provider"], "ollama")
        self.assertIs(first["cached"], False)
        n = self.chats()
        again = self.ask("  when did KRAKATOA erupt?  ")  # the same after normalisation
        self.assertIs(again["cached"], True, again)
        self.assertEqual(again["answer"], first["answer"])
        self.assertEqual(again["sources"], first["sources"])
        self.assertEqual(self.chats(), n)  # no generation call
        # not the same text, but the same question by its embedding (cosine >= 0.95)
        para = self.ask("When did Krakatoa erupt")
        self.assertIs(para["cached"], True, para)
        self.assertEqual(self.chats(), n)
        # a different question is not
        self.assertIs(self.ask("What causes tides?")["cached"], False)
        n = self.chats()
        # other parameters are another answer
        other = self.ask("When did Krakatoa erupt?", k=1)
        self.assertIs(other["cached"], False)
        # bypass on request
        self.assertIs(self.ask("When did Krakatoa erupt?", use_cache=False)["cached"], False)
        # a streamed request replays the cached answer as a stream
        r = self.srv.request("POST", "/api/query", json_body={"query": "When did Krakatoa erupt?", "db": "c",
                                                              "stream": True})
        self.assertEqual(r.status, 200)
        events = harness.parse_sse(r.raw)
        self.assertEqual([e for e, _ in events], ["sources", "token", "done"])
        done = json.loads(events[-1][1])
        self.assertIs(done["cached"], True)
        self.assertEqual(json.loads(events[1][1])["text"], first["answer"])
        n = self.chats()
        # an ingest into the collection invalidates its answers
        self.call("POST", "/api/ingest", {"db": "c", "documents": [{"id": "new", "text": "Etna is in Sicily."}]},
                  srv=self.srv)
        fresh = self.ask("When did Krakatoa erupt?")
        self.assertIs(fresh["cached"], False)
        self.assertEqual(self.chats(), n + 1)
        self.assertIs(self.ask("When did Krakatoa erupt?")["cached"], True)
        # a delete too
        self.call("DELETE", "/api/dbs/c/documents/new", srv=self.srv)
        self.assertIs(self.ask("When did Krakatoa erupt?")["cached"], False)
        # /metrics counts hits and misses
        m = self.srv.request("GET", "/metrics").raw.decode()
        hits = [l for l in m.splitlines() if l.startswith('ragd_cache_requests_total{result="hit"}')]
        self.assertTrue(hits and float(hits[0].split()[-1]) >= 3, m[:2000])

    def test_degraded_answers_are_not_cached(self):
        self.fake.configure(fault="error500")
        a = self.ask("What causes tides?")
        self.assertIs(a["degraded"], True)
        b = self.ask("What causes tides?")
        self.assertIs(b["cached"], False)
        self.assertIs(b["degraded"], True)
        self.fake.configure(fault="none")


def notes(n):
    """n documents of two or three chunks each, every one different."""
    rivers = ["Danube", "Loire", "Vistula", "Ebro", "Tagus", "Rhone", "Elbe", "Oder"]
    return [{"id": f"note-{i}",
             "text": "\n\n".join(f"Note {i}, part {p}: the {rivers[(i + p) % 8]} ferry number {i * 3 + p} "
                                 f"leaves the pier at dawn and carries {i % 40 + p} passengers across. " * 4
                                 for p in range(2 + i % 2))}
            for i in range(n)]


class CacheDefaultsTest(harness.E2ETestCase):
    """On the true defaults (no variable set, no LLM listening) answers are extractive and
    passage lists have no answer at all: both are cached (2,250 chunks)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        docs = notes(1500)
        for i in range(0, len(docs), 250):
            cls.class_call("POST", "/api/ingest", {"db": "n", "documents": docs[i:i + 250]})
        cls.class_call("POST", "/api/ingest", {"db": "n", "documents": DOCS})

    def hits(self):
        m = self.server.request("GET", "/metrics").raw.decode()
        line = [l for l in m.splitlines() if l.startswith('ragd_cache_requests_total{result="hit"}')]
        return float(line[0].split()[-1])

    def test_query_and_retrieve_repeat(self):
        for path in ("/api/query", "/api/retrieve"):
            body = {"query": "When did Krakatoa erupt?", "db": "n"}
            first = self.call("POST", path, body)
            self.assertIs(first["cached"], False, path)
            self.assertEqual(first["sources"][0]["doc_id"], "krakatoa")
            hits = self.hits()
            again = self.call("POST", path, dict(body, query=" when did krakatoa ERUPT? "))
            self.assertIs(again["cached"], True, path)
            self.assertEqual(again["sources"], first["sources"])
            self.assertEqual(again.get("answer"), first.get("answer"))
            self.assertEqual(self.hits(), hits + 1)
        self.assertEqual(first["degraded"], False)

    def test_streamed_hit_and_invalidation(self):
        ask = {"query": "Which ferry carries passengers across the Loire?", "db": "n"}
        first = self.call("POST", "/api/query", ask)
        self.assertEqual(first["provider"], "extractive")
        r = self.server.request("POST", "/api/query", json_body=dict(ask, stream=True))
        events = harness.parse_sse(r.raw)
        self.assertEqual([e for e, _ in events], ["sources", "token", "done"])
        self.assertIs(json.loads(events[-1][1])["cached"], True)
        self.assertEqual(json.loads(events[1][1])["text"], first["answer"])
        self.call("POST", "/api/ingest", {"db": "n", "documents": [{"id": "late", "text": "A late note."}]})
        self.assertIs(self.call("POST", "/api/query", ask)["cached"], False)
        self.assertIs(self.call("POST", "/api/query", ask)["cached"], True)
        self.call("DELETE", "/api/dbs/n/documents/late")
        self.assertIs(self.call("POST", "/api/query", ask)["cached"], False)


class CacheOffTest(harness.E2ETestCase):
    server_env = {"RAGD_CACHE": "off"}

    def test_off(self):
        self.call("POST", "/api/ingest", {"db": "c", "documents": DOCS})
        for _ in range(2):
            self.assertIs(self.call("POST", "/api/query", {"query": "What causes tides?", "db": "c"})["cached"], False)


if __name__ == "__main__":
    unittest.main()
