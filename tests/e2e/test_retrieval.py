"""Hybrid retrieval on ragd's true defaults: weighted fusion of the vector and keyword lists,
at most RAGD_MAX_CHUNKS_PER_DOC (2) chunks of one document in the top k, and the relevance
floor (a query that nothing matches gets no passages and the documented answer). Plus the
RAGD_FUSION* settings: `rrf` works, bad values stop start-up naming the variable.
"""
import os
import shutil
import tempfile
import unittest

import harness

DB = "retr"
NO_PASSAGES = "No relevant passages were found in collection '{}'."


def paragraph(i, topic):
    """About 500 characters on a topic; every paragraph different (its number)."""
    return (f"Section {i} of the {topic} notes. " +
            f"The {topic} is described here in plain words, part {i}, with enough text to fill "
            f"a passage of its own so that the chunker cuts the document into several pieces. ") * 3


# One long document that matches "lighthouse keeper" in every chunk, and shorter ones that
# match it less; plus unrelated ones.
DOCS = [
    {"id": "keeper-manual",
     "text": "\n\n".join(paragraph(i, "lighthouse keeper") for i in range(12))},
    {"id": "coast-guide",
     "text": "A guide to the coast. The lighthouse keeper on the northern cape trims the lamp "
             "every evening. " + paragraph(1, "harbour")},
    {"id": "history",
     "text": "A history of the keeper's cottage beside the old lighthouse, built in 1821. "
             + paragraph(2, "village")},
    {"id": "fog",
     "text": "Fog signals: when the lighthouse cannot be seen, a horn sounds every thirty seconds. "
             + paragraph(3, "weather")},
    {"id": "bread",
     "text": "Sourdough bread rises slowly; the starter needs flour and water every day. "
             "The crust browns at a high oven temperature."},
    {"id": "chess",
     "text": "Castling moves the king two squares towards a rook, which jumps over the king."},
    {"id": "unique",
     "text": "The periwinkle quasar emits a steady turquoise glow over the observatory dome."},
]


class RetrievalDefaultsTest(harness.E2ETestCase):
    """The class server runs on ragd's true defaults (no variable set)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.class_call("POST", "/api/ingest", {"db": DB, "documents": DOCS})
        cls.class_call("POST", "/api/ingest", {"db": "single", "documents": [DOCS[0]]})

    def retrieve(self, query, **kw):
        return self.call("POST", "/api/retrieve", {"query": query, "db": DB, **kw})

    def test_gibberish_gets_no_passages(self):
        for q in ("zxqv blorp", "qwfp gxmz trelbo vukk"):
            with self.subTest(query=q):
                body = self.call("POST", "/api/query", {"query": q, "db": DB})
                self.assertEqual(body["method"], "hybrid")
                self.assertEqual(body["sources"], [])
                self.assertEqual(body["documents"], [])
                self.assertEqual(body["metadatas"], [])
                self.assertEqual(body["distances"], [])
                self.assertEqual(body["answer"], NO_PASSAGES.format(DB))
                self.assertIs(body["degraded"], False)
                body = self.retrieve(q)
                self.assertEqual(body["sources"], [], body)
                self.assertEqual(body["distances"], [])
                # streamed: the same answer, no passages
                r = self.server.request("POST", "/api/query", json_body={"query": q, "db": DB, "stream": True})
                self.assertEqual(r.status, 200, r)
                text = r.raw.decode()
                self.assertIn('"sources":[]', text.replace(" ", ""))
                self.assertIn(NO_PASSAGES.format(DB), text)

    def test_vector_method_has_no_floor(self):
        # The floor belongs to hybrid retrieval; `vector` asks for the nearest chunks as such.
        body = self.retrieve("zxqv blorp", method="vector", k=3)
        self.assertEqual(len(body["sources"]), 3, body)
        body = self.retrieve("zxqv blorp", method="keyword")
        self.assertEqual(body["sources"], [])

    def test_a_real_question_still_answers(self):
        body = self.call("POST", "/api/query", {"query": "What does the periwinkle quasar emit?", "db": DB})
        self.assertGreaterEqual(len(body["sources"]), 1)
        self.assertEqual(body["sources"][0]["doc_id"], "unique")
        self.assertIn("turquoise", body["answer"])

    def test_at_most_two_chunks_per_document(self):
        for method in ("hybrid", "vector"):
            with self.subTest(method=method):
                body = self.retrieve("lighthouse keeper notes", method=method, k=5)
                ids = [s["doc_id"] for s in body["sources"]]
                self.assertEqual(len(ids), 5, ids)
                self.assertEqual(ids[0], "keeper-manual", ids)
                self.assertEqual(ids.count("keeper-manual"), 2, ids)
                d = body["distances"]
                self.assertEqual(d, sorted(d), d)
        # The other lighthouse documents come before the manual's third chunk.
        ids = [s["doc_id"] for s in self.retrieve("lighthouse keeper", k=5)["sources"]]
        for doc in ("coast-guide", "history"):
            self.assertIn(doc, ids)
        # Keyword: every document that has one of the words comes in (BM25F scores them all;
        # "lighthouse" alone brings "fog"), and the manual, which would fill all five, keeps two.
        body = self.retrieve("lighthouse keeper notes", method="keyword", k=5)
        ids = [s["doc_id"] for s in body["sources"]]
        self.assertEqual(len(ids), 5, ids)
        self.assertEqual(sorted(set(ids)), ["coast-guide", "fog", "history", "keeper-manual"], ids)
        self.assertEqual(ids.count("keeper-manual"), 2, ids)
        self.assertEqual(ids[0], "keeper-manual", ids)
        d = body["distances"]
        self.assertEqual(d, sorted(d), d)
        # The refill: a question only the manual answers still gets k passages, all its own.
        body = self.retrieve("keeper notes", method="keyword", k=5)
        ids = [s["doc_id"] for s in body["sources"]]
        self.assertIn("keeper-manual", ids)

    def test_one_document_still_gives_k_chunks(self):
        # With no other document to prefer, the cap does not cut the answer short.
        body = self.call("POST", "/api/retrieve", {"query": "lighthouse keeper section", "db": "single", "k": 4})
        ids = [s["doc_id"] for s in body["sources"]]
        self.assertEqual(ids, ["keeper-manual"] * 4)
        d = body["distances"]
        self.assertEqual(d, sorted(d), d)

    def test_hybrid_scores(self):
        # The chunk both lists rank first scores exactly 1 (distance 0); all scores in [0, 1].
        body = self.retrieve("periwinkle quasar turquoise glow observatory", k=5)
        top = body["sources"][0]
        self.assertEqual(top["doc_id"], "unique")
        self.assertEqual(top["score"], 1.0)
        self.assertEqual(body["distances"][0], 0.0)
        for s, dist in zip(body["sources"], body["distances"]):
            self.assertGreaterEqual(s["score"], 0.0)
            self.assertLessEqual(s["score"], 1.0)
            self.assertAlmostEqual(s["score"], 1.0 - dist, places=12)


class RetrievalSettingsTest(harness.E2ETestCase):
    class_server = False

    def test_rrf_and_no_floor(self):
        srv = self.new_server(env={"RAGD_FUSION": "rrf", "RAGD_RELEVANCE_FLOOR": "0",
                                   "RAGD_MAX_CHUNKS_PER_DOC": "0"})
        self.call("POST", "/api/ingest", {"db": DB, "documents": DOCS}, srv=srv)
        body = self.call("POST", "/api/retrieve", {"query": "periwinkle quasar turquoise glow", "db": DB},
                         srv=srv)
        self.assertEqual(body["sources"][0]["doc_id"], "unique")
        self.assertEqual(body["distances"][0], 0.0)  # first in both lists
        # floor off: gibberish gets the nearest chunks again
        body = self.call("POST", "/api/retrieve", {"query": "zxqv blorp", "db": DB}, srv=srv)
        self.assertGreater(len(body["sources"]), 0)
        # no cap: the long document may fill the top 5
        body = self.call("POST", "/api/retrieve", {"query": "lighthouse keeper notes section", "db": DB,
                                                   "method": "keyword", "k": 5}, srv=srv)
        self.assertGreater([s["doc_id"] for s in body["sources"]].count("keeper-manual"), 2)

    def test_bad_settings_stop_start_up(self):
        data = tempfile.mkdtemp(prefix="ragd-e2e-badfusion-")
        self.addCleanup(shutil.rmtree, data, True)
        for var, bad in (("RAGD_FUSION", "linear"), ("RAGD_FUSION_WEIGHTS", "0.7,0.3"),
                         ("RAGD_FUSION_WEIGHTS", "keyword:0,vector:0"), ("RAGD_FUSION_DEPTH", "0"),
                         ("RAGD_MAX_CHUNKS_PER_DOC", "x"), ("RAGD_RELEVANCE_FLOOR", "2")):
            with self.subTest(var=var, value=bad):
                p = harness.run_cli(["serve"], env={var: bad, "RAGD_LISTEN": "127.0.0.1:0", "RAGD_DATA_DIR": data},
                                    timeout=15)
                self.assertEqual(p.returncode, 2, p)
                self.assertIn(var, p.stderr)
        self.assertEqual(os.listdir(data), [], "a refused configuration must not open the store")


if __name__ == "__main__":
    unittest.main()
