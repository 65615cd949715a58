"""The semantic answer cache end to end: a repeated question is answered `cached: true`
without asking the LLM again, a paraphrase close enough in embedding is too, an ingest into
the collection invalidates it, a streamed request replays a cached answer as a stream,
degraded answers are never cached, and use_cache: false bypasses it."""
import json
import os
import sys
import unittest

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "fake_ollama"))
import fake_ollama  # noqa: E402

DOCS = [
    {"id": "krakatoa", "text": "Krakatoa is a volcanic island in the Sunda Strait. It erupted in 1883 "
                               "with one of the loudest sounds ever recorded."},
    {"id": "tides", "text": "Tides are caused by the gravity of the Moon and the Sun acting on the oceans."},
]


class CacheTest(harness.E2ETestCase):
    class_server = False

    def setUp(self):
        super().setUp()
        self.fake = fake_ollama.FakeOllama(port=0, admin_port=0).start()
        self.addCleanup(self.fake.stop)
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


class CacheOffTest(harness.E2ETestCase):
    server_env = {"RAGD_CACHE": "off"}

    def test_off(self):
        self.call("POST", "/api/ingest", {"db": "c", "documents": DOCS})
        for _ in range(2):
            self.assertIs(self.call("POST", "/api/query", {"query": "What causes tides?", "db": "c"})["cached"], False)


if __name__ == "__main__":
    unittest.main()
