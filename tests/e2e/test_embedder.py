"""The upstream embedder against the fake Ollama: a collection embedded by Ollama in
batches of 32, queries embedded by it, keyword-only retrieval (flagged) when it is down,
ingest refused (503) when it is down, and RAGD_EMBEDDER=auto falling back to builtin for a
new collection when Ollama does not answer."""
import math
import time
import unittest

import harness


ANIMALS = ["otter", "heron", "badger", "lynx", "marten", "ibis", "gecko", "tapir", "okapi", "quokka"]


def docs(n):
    return [{"id": f"d{i}", "text": f"Note {i}: the {ANIMALS[i % 10]} number {i} lives near river {i * 7}."}
            for i in range(n)]


class EmbedderTest(harness.E2ETestCase):
    class_server = False

    def start(self, **env):
        self.fake = self.start_fake_ollama()
        base = {"RAGD_EMBEDDER": "ollama", "OLLAMA_BASE_URL": self.fake.url, "RAGD_BREAKER_FAILURES": "50"}
        base.update(env)
        self.srv = self.new_server(env=base)

    def test_ollama_collection_batches_and_queries(self):
        self.start()
        res = self.call("POST", "/api/ingest", {"db": "emb", "documents": docs(70)}, srv=self.srv)
        self.assertEqual(res["chunks"], 70)
        st = self.fake.stats()
        self.assertEqual(st["embed_calls"], math.ceil(70 / 32))  # batched: 3 calls, not 70
        self.assertEqual(st["embed_inputs_total"], 70)
        coll = self.call("GET", "/api/dbs/emb", srv=self.srv)
        self.assertEqual(coll["embed_model"], "nomic-embed-text")
        self.assertEqual(coll["dim"], 768)
        body = self.call("POST", "/api/retrieve", {"query": "the tapir number 38 near river 266", "db": "emb",
                                                   "method": "vector", "k": 3}, srv=self.srv)
        self.assertEqual(body["sources"][0]["doc_id"], "d38")
        self.assertFalse(body["degraded"])
        self.assertEqual(self.fake.stats()["embed_calls"], 4)  # the query's embedding

        # the embedder goes away: retrieval is keyword-only and says so; ingest is refused
        self.fake.configure(fault="refuse")
        body = self.call("POST", "/api/query", {"query": "tapir number 38", "db": "emb", "k": 3}, srv=self.srv)
        self.assertTrue(body["degraded"])
        self.assertIn("keyword retrieval only", body["degraded_reason"])
        self.assertIn("d38", [s["doc_id"] for s in body["sources"]])
        r = self.srv.request("POST", "/api/ingest", json_body={"db": "emb", "documents": [{"text": "new text"}]})
        self.assertEnvelope(r, 503, "upstream_unavailable")
        self.assertEqual(self.call("GET", "/api/dbs/emb", srv=self.srv)["documents"], 70)  # nothing lost

    def test_auto_falls_back_to_builtin_for_a_new_collection(self):
        self.start(RAGD_EMBEDDER="auto")
        self.fake.configure(fault="refuse")
        res = self.call("POST", "/api/ingest", {"db": "auto", "documents": docs(5)}, srv=self.srv)
        self.assertEqual(res["documents"], 5)
        coll = self.call("GET", "/api/dbs/auto", srv=self.srv)
        self.assertEqual(coll["embed_model"], "ragd-hash-v1-512")
        body = self.call("POST", "/api/retrieve", {"query": "badger number 2", "db": "auto"}, srv=self.srv)
        self.assertEqual(body["sources"][0]["doc_id"], "d2")

    def test_racing_first_ingests_under_auto_both_succeed(self):
        # Two first ingests into one new collection under auto: B is embedded by the
        # backend (slowly), A's embedding fails and falls back to builtin and commits first,
        # creating the collection as builtin. B's write then conflicts; it must not answer
        # 409 (nothing is wrong with B) but run again against the collection as it now is.
        self.start(RAGD_EMBEDDER="auto")
        import threading
        self.fake.configure(latency_ms=1500)
        results = {}
        b = threading.Thread(target=lambda: results.__setitem__("b", self.srv.request(
            "POST", "/api/ingest", json_body={"db": "race", "documents": docs(100)})))
        b.start()
        time.sleep(0.4)  # B's batches are at the fake, which snapshot the slow config
        self.fake.configure(latency_ms=0, fault="error500", fault_count=3)
        a = self.srv.request("POST", "/api/ingest", json_body={"db": "race", "documents": [
            {"id": "a1", "text": "the aardvark digs at night"}]})
        b.join()
        self.assertEqual(a.status, 200, a)
        self.assertEqual(a.body["embedder"], "builtin")
        self.assertEqual(len(a.body["warnings"]), 1)
        self.assertEqual(results["b"].status, 200, results["b"])
        self.assertEqual(results["b"].body["embed_model"], "ragd-hash-v1-512")
        coll = self.call("GET", "/api/dbs/race", srv=self.srv)
        self.assertEqual(coll["documents"], 101)
        self.assertEqual(coll["embed_model"], "ragd-hash-v1-512")

    def test_unknown_embed_model_is_refused(self):
        self.start(EMBED_MODEL="no-such-model")
        r = self.srv.request("POST", "/api/ingest", json_body={"db": "x", "documents": docs(2)})
        self.assertEnvelope(r, 503, "upstream_unavailable")
        # the backend's 404 is LLM_NOT_FOUND (issue 10), with its own message
        self.assertIn("not_found", r.body["error"]["message"])
        self.assertIn("no-such-model", r.body["error"]["message"])
        self.assertEqual(self.srv.request("GET", "/api/dbs/x").status, 404)  # nothing half-created


if __name__ == "__main__":
    unittest.main()
