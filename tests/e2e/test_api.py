"""The HTTP API against a real ragd process (builtin embedder, extractive generator)."""

import hashlib
import json
import re
import unittest
import urllib.parse

import harness

MAIN_DB = "api_main"

CORPUS = [
    {"id": "volcano", "metadata": {"topic": "geology", "lang": "en"},
     "text": "Krakatoa is a volcanic island in the Sunda Strait between Java and Sumatra. "
             "The Krakatoa eruption of 1883 was heard nearly five thousand kilometres away, "
             "and its ash cooled the whole planet for more than a year."},
    {"id": "sourdough", "metadata": {"topic": "food", "lang": "en"},
     "text": "Sourdough bread is leavened by a starter culture of wild yeast and lactobacilli. "
             "Bakers feed the starter with flour and water every day to keep it lively."},
    {"id": "chess", "metadata": {"topic": "games", "lang": "en"},
     "text": "In chess, castling is the only move that lets a player move two pieces at once, "
             "the king and a rook. The en passant rule lets a pawn capture another pawn that "
             "has just advanced two squares."},
    {"id": "honeybee", "metadata": {"topic": "biology", "lang": "en"},
     "text": "Honeybees tell their sisters where flowers are with the waggle dance. A forager "
             "back at the hive dances along a line whose angle to the vertical matches the "
             "angle between the flowers and the sun."},
    {"id": "tides", "metadata": {"topic": "physics", "lang": "en"},
     "text": "Ocean tides are caused mostly by the gravitational pull of the Moon. Spring tides "
             "happen when the Sun and the Moon line up; neap tides when they stand at right "
             "angles."},
    {"id": "espresso", "metadata": {"topic": "food", "lang": "en"},
     "text": "An espresso machine forces hot water through finely ground coffee at about nine "
             "bars of pressure. The crema on top is an emulsion of coffee oils and carbon "
             "dioxide."},
    {"id": "lighthouse", "metadata": {"topic": "history", "lang": "en"},
     "text": "The Bell Rock Lighthouse off the coast of Angus is the oldest surviving "
             "sea-washed lighthouse in the world. Robert Stevenson completed it in 1810 with "
             "interlocking granite blocks."},
    {"id": "glacier", "metadata": {"topic": "geology", "lang": "en"},
     "text": "A glacier moves downhill under its own weight, plucking boulders from its bed "
             "and carving U-shaped valleys. Crevasses open where the ice flows over a bump."},
]
IDS = [d["id"] for d in CORPUS]

MARKER = re.compile(r"\[(\d+)\]")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def q(**params):
    return urllib.parse.urlencode(params)


class ApiTest(harness.E2ETestCase):
    server_env = {"RAGD_POOL_SIZE": "4"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ingest_result = cls.class_call("POST", "/api/ingest",
                                           {"db": MAIN_DB, "documents": CORPUS})

    # -- helpers ------------------------------------------------------------------------------
    def query(self, payload, path="/api/query", status=200):
        return self.call("POST", path, payload, status=status)

    def doc_ids(self, body):
        return [s["doc_id"] for s in body["sources"]]

    def assert_result_shape(self, body, max_k):
        """Common checks of a query/retrieve body with at least one hit."""
        for key in ("documents", "metadatas", "distances", "sources", "timings_ms"):
            self.assertIn(key, body)
        srcs = body["sources"]
        self.assertIsInstance(srcs, list)
        self.assertGreaterEqual(len(srcs), 1, body)
        self.assertLessEqual(len(srcs), max_k, body)
        self.assertEqual(len(body["documents"]), len(srcs), body)
        self.assertEqual(len(body["metadatas"]), len(srcs), body)
        self.assertEqual(len(body["distances"]), len(srcs), body)
        d = body["distances"]
        for a, b in zip(d, d[1:]):
            self.assertLessEqual(a, b + 1e-9, f"distances do not ascend: {d}")
        for i, s in enumerate(srcs):
            self.assertEqual(s["n"], i + 1, s)
            self.assertIsInstance(s["doc_id"], str)
            self.assertIsInstance(s["chunk"], int)
            self.assertEqual(s["id"], f"{s['doc_id']}#{s['chunk']}", s)
            self.assertIsInstance(s["score"], (int, float))
            self.assertIsInstance(s["text"], str)
            self.assertTrue(s["text"])
            self.assertIsInstance(s["metadata"], dict)
            self.assertEqual(body["documents"][i], s["text"], "documents[i] != sources[i].text")
            self.assertIsInstance(body["metadatas"][i], dict)
        # the doc's own metadata travels with its chunks
        by_id = {c["id"]: c for c in CORPUS}
        for i, s in enumerate(srcs):
            if s["doc_id"] in by_id and body.get("db", MAIN_DB) == MAIN_DB:
                for k, v in by_id[s["doc_id"]]["metadata"].items():
                    self.assertEqual(body["metadatas"][i].get(k), v, body["metadatas"][i])
        t = body["timings_ms"]
        for k in ("embed", "retrieve", "rerank", "total"):
            self.assertIsInstance(t.get(k), (int, float), t)
            self.assertGreaterEqual(t[k], 0, t)

    def assert_markers(self, body):
        answer = body["answer"]
        self.assertIsInstance(answer, str)
        self.assertTrue(answer.strip())
        marks = [int(m) for m in MARKER.findall(answer)]
        self.assertTrue(marks, f"no [n] marker in answer {answer!r}")
        for m in marks:
            self.assertGreaterEqual(m, 1, answer)
            self.assertLessEqual(m, len(body["sources"]), f"marker [{m}] beyond sources: {answer!r}")

    # -- health -------------------------------------------------------------------------------
    def test_health_shapes(self):
        body = self.call("GET", "/health")
        self.assertIn(body["status"], ("healthy", "degraded", "unhealthy"))
        self.assertEqual(body["status"], "healthy", body)  # builtin + extractive: nothing to fail
        self.assertIsInstance(body["services"], dict)
        self.assertIs(body["services"]["store"]["healthy"], True, body)
        self.assertRegex(body["timestamp"], ISO_UTC)
        self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})
        self.assertEqual(self.call("GET", "/health/ready"), {"status": "ready"})

    def test_request_id_echoed_and_generated(self):
        r = self.server.request("GET", "/health/live", headers={"X-Request-ID": "e2e-req.42:a_b"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Request-ID"), "e2e-req.42:a_b")
        r1 = self.server.request("GET", "/health/live")
        r2 = self.server.request("GET", "/health/live")
        self.assertRegex(r1.header("X-Request-ID") or "", HEX32)
        self.assertRegex(r2.header("X-Request-ID") or "", HEX32)
        self.assertNotEqual(r1.header("X-Request-ID"), r2.header("X-Request-ID"))
        # an id outside 1..128 of [A-Za-z0-9._:-] is replaced by a generated one
        for bad in ("has space", "x" * 129, "semi;colon"):
            r = self.server.request("GET", "/health/live", headers={"X-Request-ID": bad})
            self.assertRegex(r.header("X-Request-ID") or "", HEX32, bad)
        # on a query response the header and the body agree, and the client's id is echoed
        r = self.server.request("POST", "/api/query", headers={"X-Request-ID": "q-1"},
                                json_body={"query": "glacier crevasses", "db": MAIN_DB})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Request-ID"), "q-1")
        self.assertEqual(r.body["request_id"], "q-1")
        # and on an error
        r = self.server.request("GET", "/api/no-such-route", headers={"X-Request-ID": "err-1"})
        err = self.assertEnvelope(r, 404, "not_found")
        self.assertEqual(err["request_id"], "err-1")

    # -- ingest + query -----------------------------------------------------------------------
    def test_ingest_response(self):
        res = self.ingest_result
        self.assertEqual(res["db"], MAIN_DB)
        self.assertEqual(res["documents"], len(CORPUS))
        self.assertEqual(res["duplicates"], 0)
        self.assertEqual(res["ids"], IDS)
        self.assertGreaterEqual(res["chunks"], len(CORPUS))
        coll = self.call("GET", f"/api/dbs/{MAIN_DB}")
        self.assertEqual(coll["name"], MAIN_DB)
        self.assertEqual(coll["documents"], len(CORPUS))
        self.assertEqual(coll["chunks"], res["chunks"])
        self.assertIsInstance(coll["embed_model"], str)
        self.assertTrue(coll["embed_model"])
        self.assertIsInstance(coll["dim"], int)
        self.assertGreater(coll["dim"], 0)
        if coll["embed_model"] == "ragd-hash-v1-512":
            self.assertEqual(coll["dim"], 512)

    def test_query_finds_right_doc(self):
        body = self.query({"query": "When did the Krakatoa eruption happen?", "db": MAIN_DB})
        self.assert_result_shape(body, 5)
        self.assertIn("volcano", self.doc_ids(body))
        self.assertEqual(body["sources"][0]["doc_id"], "volcano", self.doc_ids(body))
        self.assert_markers(body)
        self.assertIn("Krakatoa", body["answer"])
        self.assertEqual(body["db"], MAIN_DB)
        self.assertEqual(body["method"], "hybrid")
        self.assertEqual(body["provider"], "extractive")
        self.assertIsNone(body["model"])
        self.assertIs(body["degraded"], False)
        self.assertIsNone(body["degraded_reason"])
        self.assertIsInstance(body["cached"], bool)
        self.assertIsInstance(body["timings_ms"].get("generate"), (int, float))
        self.assertRegex(body["request_id"], HEX32)

    def test_query_k_and_top_k(self):
        body = self.query({"query": "coffee pressure crema", "db": MAIN_DB, "k": 2})
        self.assert_result_shape(body, 2)
        self.assertIn("espresso", self.doc_ids(body))
        body = self.query({"query": "coffee pressure crema", "db": MAIN_DB, "top_k": 1})
        self.assert_result_shape(body, 1)
        self.assertEqual(self.doc_ids(body), ["espresso"])
        body = self.query({"query": "the", "db": MAIN_DB, "k": 100, "method": "vector"})
        self.assertLessEqual(len(body["sources"]), 100)

    def test_markers_across_queries(self):
        for question in ("How do honeybees find flowers?", "What causes spring tides?",
                         "How does castling work in chess?", "How do glaciers carve valleys?"):
            with self.subTest(question=question):
                body = self.query({"query": question, "db": MAIN_DB, "k": 3})
                self.assert_result_shape(body, 3)
                self.assert_markers(body)

    def test_retrieve_shape(self):
        r = self.server.request("POST", "/api/retrieve",
                                json_body={"query": "waggle dance of the forager", "db": MAIN_DB, "k": 3})
        self.assertEqual(r.status, 200, r)
        body = r.body
        self.assert_result_shape(body, 3)
        self.assertIn("honeybee", self.doc_ids(body))

    def test_methods_find_exact_phrase(self):
        phrase = "oldest surviving sea-washed lighthouse"
        for method in ("vector", "keyword", "hybrid"):
            with self.subTest(method=method):
                body = self.query({"query": phrase, "db": MAIN_DB, "k": 3, "method": method})
                self.assertEqual(body["method"], method)
                self.assert_result_shape(body, 3)
                self.assertIn("lighthouse", self.doc_ids(body), self.doc_ids(body))
                if method == "keyword":
                    self.assertEqual(body["sources"][0]["doc_id"], "lighthouse")
                if method == "vector":
                    for dist in body["distances"]:
                        self.assertGreaterEqual(dist, -1e-6)
                        self.assertLessEqual(dist, 2 + 1e-6)
                self.assert_markers(body)

    def test_no_hits(self):
        body = self.query({"query": "xylophonist quarterback zeugma", "db": MAIN_DB,
                           "method": "keyword"})
        self.assertEqual(body["sources"], [])
        self.assertEqual(body["documents"], [])
        self.assertEqual(body["distances"], [])
        self.assertIsInstance(body["answer"], str)
        self.assertTrue(body["answer"].strip())
        self.assertEqual(MARKER.findall(body["answer"]), [])

    def test_metadata_filter(self):
        db = "api_filter"
        docs = [{"id": f"f_{lang}", "metadata": {"lang": lang, "n": i},
                 "text": f"The harbour lighthouse keeper number {i} speaks {word} and "
                         f"polishes the brass lantern every {day}."}
                for i, (lang, word, day) in enumerate([("en", "English", "Monday"),
                                                        ("de", "German", "Tuesday"),
                                                        ("fr", "French", "Wednesday"),
                                                        ("es", "Spanish", "Thursday")])]
        self.call("POST", "/api/ingest", {"db": db, "documents": docs})
        question = "harbour lighthouse keeper brass lantern"
        body = self.query({"query": question, "db": db, "k": 10})
        self.assertEqual(sorted(self.doc_ids(body)), ["f_de", "f_en", "f_es", "f_fr"])

        body = self.query({"query": question, "db": db, "k": 10, "filter": {"lang": "de"}})
        self.assertEqual(self.doc_ids(body), ["f_de"])
        self.assertEqual([m["lang"] for m in body["metadatas"]], ["de"])
        self.assertEqual(body["sources"][0]["metadata"]["lang"], "de")

        body = self.query({"query": question, "db": db, "k": 10,
                           "filter": {"lang": {"$in": ["de", "fr"]}}})
        self.assertEqual(sorted(self.doc_ids(body)), ["f_de", "f_fr"])
        self.assertEqual(sorted(m["lang"] for m in body["metadatas"]), ["de", "fr"])

        body = self.query({"query": question, "db": db, "k": 10, "filter": {"n": 3}})
        self.assertEqual(self.doc_ids(body), ["f_es"])

        for method in ("vector", "keyword"):
            body = self.query({"query": question, "db": db, "k": 10, "method": method,
                               "filter": {"lang": {"$in": ["es"]}}})
            self.assertEqual(self.doc_ids(body), ["f_es"], method)

        body = self.query({"query": question, "db": db, "k": 10, "filter": {"lang": "nl"}})
        self.assertEqual(body["sources"], [])

    # -- raw ingest ---------------------------------------------------------------------------
    def test_raw_text_markdown_html_ingest(self):
        db = "api_raw"
        plain = ("The pangolin is the only mammal covered in keratin scales. "
                 "It rolls into a tight ball when threatened.")
        res = self.call("POST", f"/api/ingest?{q(db=db, id='plain1', source='notes.txt')}",
                        body=plain, content_type="text/plain; charset=utf-8")
        self.assertEqual(res["db"], db)
        self.assertEqual(res["ids"], ["plain1"])
        self.assertEqual(res["documents"], 1)
        self.assertGreaterEqual(res["chunks"], 1)
        doc = self.call("GET", f"/api/dbs/{db}/documents/plain1")
        self.assertEqual(doc["source"], "notes.txt")
        self.assertEqual(doc["chunks"][0]["text"], plain)

        md = ("# Axolotl care\n\nThe **axolotl** keeps its feathery gills for life and can "
              "regrow a lost limb.\n\n- cool water\n- no gravel\n")
        res = self.call("POST", f"/api/ingest?{q(db=db, id='md1', source='care.md')}",
                        body=md, content_type="text/markdown")
        self.assertEqual(res["ids"], ["md1"])

        html = ("<!DOCTYPE html><html><head><title>Festival</title>"
                "<script>var zanzibarquokka = 'mongoosetrapeze';</script>"
                "<style>.x { color: red }</style></head><body>"
                "<p>The marmalade festival in Dundee celebrates the city's famous orange "
                "preserve.</p><script>document.write('zanzibarquokka')</script>"
                "<div>Jars are judged by a panel of grocers.</div></body></html>")
        res = self.call("POST", f"/api/ingest?{q(db=db, id='html1', source='page.html')}",
                        body=html, content_type="text/html")
        self.assertEqual(res["ids"], ["html1"])

        body = self.query({"query": "pangolin keratin scales", "db": db, "k": 3})
        self.assertEqual(body["sources"][0]["doc_id"], "plain1")
        body = self.query({"query": "axolotl regrow a lost limb", "db": db, "k": 3})
        self.assertEqual(body["sources"][0]["doc_id"], "md1")
        self.assertIn("axolotl", body["sources"][0]["text"])
        body = self.query({"query": "marmalade festival Dundee", "db": db, "k": 3})
        self.assertEqual(body["sources"][0]["doc_id"], "html1")
        self.assertIn("marmalade festival", body["sources"][0]["text"])
        self.assertNotIn("<p>", body["sources"][0]["text"])

        # script (and style) content is not retrievable by any method
        for method in ("keyword", "vector", "hybrid"):
            body = self.query({"query": "zanzibarquokka mongoosetrapeze", "db": db, "k": 5,
                               "method": method})
            for s in body["sources"]:
                self.assertNotIn("zanzibarquokka", s["text"], method)
                self.assertNotIn("mongoosetrapeze", s["text"], method)
                self.assertNotIn("color: red", s["text"], method)
        doc = self.call("GET", f"/api/dbs/{db}/documents/html1")
        all_text = " ".join(c["text"] for c in doc["chunks"])
        self.assertIn("marmalade festival", all_text)
        self.assertIn("Jars are judged", all_text)
        self.assertNotIn("zanzibarquokka", all_text)
        self.assertNotIn("<div>", all_text)

    # -- de-dup and replace -------------------------------------------------------------------
    def test_dedup_same_text(self):
        db = "api_dedup"
        text = "Narwhals have a single long spiral tusk, which is actually an enlarged tooth."
        res = self.call("POST", "/api/ingest", {"db": db, "documents": [{"text": text}]})
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self.assertEqual(res["ids"], [digest])
        self.assertEqual(res["duplicates"], 0)
        res = self.call("POST", "/api/ingest", {"db": db, "documents": [{"text": text}]})
        self.assertEqual(res["ids"], [digest])
        self.assertEqual(res["duplicates"], 1)
        coll = self.call("GET", f"/api/dbs/{db}")
        self.assertEqual(coll["documents"], 1)
        # the same text under an explicit id, twice: one new document, then a no-op
        res = self.call("POST", "/api/ingest",
                        {"db": db, "documents": [{"id": "narwhal", "text": text}]})
        self.assertEqual(res["duplicates"], 0)
        res = self.call("POST", "/api/ingest",
                        {"db": db, "documents": [{"id": "narwhal", "text": text}]})
        self.assertEqual(res["duplicates"], 1)
        self.assertEqual(self.call("GET", f"/api/dbs/{db}")["documents"], 2)

    def test_same_id_twice_in_one_batch(self):
        # The stored text comes back as the second of two versions in one batch: the first
        # replaces it, so the second must be chunked again, not skipped as a duplicate.
        db = "api_twice"
        first = "Alpha bravo charlie delta echo foxtrot."
        self.call("POST", "/api/ingest", {"db": db, "documents": [{"id": "X", "text": first}]})
        res = self.call("POST", "/api/ingest", {"db": db, "documents": [
            {"id": "X", "text": "Zulu yankee xray whiskey."}, {"id": "X", "text": first}]})
        self.assertEqual(res["duplicates"], 0)
        doc = self.call("GET", f"/api/dbs/{db}/documents/X")
        self.assertEqual([c["text"] for c in doc["chunks"]], [first])
        self.assertEqual(self.call("GET", f"/api/dbs/{db}")["chunks"], 1)
        body = self.query({"query": "bravo charlie", "db": db, "method": "keyword"})
        self.assertEqual([s["doc_id"] for s in body["sources"]], ["X"])

    def test_replace_by_id(self):
        db = "api_replace"
        old = "The aardvarkium alloy melts at a surprisingly low temperature."
        res = self.call("POST", "/api/ingest", {"db": db, "documents": [{"id": "rep", "text": old}]})
        self.assertEqual(res["chunks"], 1)
        doc1 = self.call("GET", f"/api/dbs/{db}/documents/rep")
        self.assertEqual(len(doc1["chunks"]), 1)

        paras = []
        for i in range(16):
            paras.append(f"Paragraph {i} describes airship number {i}. It carried {i * 7} "
                         f"passengers across the northern sea in calm weather and storms alike, "
                         f"and its captain kept a careful logbook of every crossing.")
        paras.insert(8, "The zeppelinite hull coating made the airships nearly fireproof.")
        new = "\n\n".join(paras)
        self.assertGreater(len(new), 2500)
        res = self.call("POST", "/api/ingest", {"db": db, "documents": [{"id": "rep", "text": new}]})
        self.assertEqual(res["duplicates"], 0)
        self.assertGreaterEqual(res["chunks"], 3)
        doc2 = self.call("GET", f"/api/dbs/{db}/documents/rep")
        self.assertEqual(len(doc2["chunks"]), res["chunks"])
        self.assertNotEqual(len(doc2["chunks"]), len(doc1["chunks"]))
        self.assertGreater(doc2["version"], doc1["version"])
        coll = self.call("GET", f"/api/dbs/{db}")
        self.assertEqual(coll["documents"], 1)
        self.assertEqual(coll["chunks"], res["chunks"])

        for method in ("keyword", "vector", "hybrid"):
            body = self.query({"query": "aardvarkium alloy", "db": db, "k": 10, "method": method})
            for s in body["sources"]:
                self.assertNotIn("aardvarkium", s["text"], method)
            body = self.query({"query": "zeppelinite hull coating", "db": db, "k": 3,
                               "method": method})
            self.assertTrue(any("zeppelinite" in s["text"] for s in body["sources"]),
                            (method, body["sources"]))

    # -- collections --------------------------------------------------------------------------
    def test_collections_lifecycle(self):
        name = "api_coll"
        spec = {"name": name, "chunk_size": 500, "chunk_overlap": 50}
        created = self.call("POST", "/api/dbs", spec, status=201)
        self.assertEqual(created["name"], name)
        self.assertEqual(created["documents"], 0)
        self.assertEqual(created["chunks"], 0)
        self.assertEqual(created["chunk_size"], 500)
        self.assertEqual(created["chunk_overlap"], 50)
        again = self.call("POST", "/api/dbs", spec, status=200)
        self.assertEqual(again["name"], name)
        self.assertEqual(again["created_at"], created["created_at"])
        r = self.server.request("POST", "/api/dbs", json_body={"name": name, "chunk_size": 600,
                                                               "chunk_overlap": 50})
        self.assertEnvelope(r, 409, "conflict")

        listing = self.call("GET", "/api/dbs")
        self.assertIsInstance(listing["dbs"], list)
        names = [d["name"] for d in listing["dbs"]]
        self.assertIn(name, names)
        self.assertIn(MAIN_DB, names)
        self.assertEqual(len(names), len(set(names)))
        for d in listing["dbs"]:
            for key in ("name", "documents", "chunks", "embed_model", "dim", "created_at"):
                self.assertIn(key, d)
        main = next(d for d in listing["dbs"] if d["name"] == MAIN_DB)
        self.assertEqual(main["documents"], len(CORPUS))

        docs = [{"id": f"d{i}", "text": f"Document {i} is about the colour {c} and the number {i}.",
                 "metadata": {"i": i}, "source": f"d{i}.txt"}
                for i, c in enumerate(["red", "green", "blue", "amber", "violet"])]
        self.call("POST", "/api/ingest", {"db": name, "documents": docs})
        self.assertEqual(self.call("GET", f"/api/dbs/{name}")["documents"], 5)

        seen = []
        for offset in (0, 2, 4):
            page = self.call("GET", f"/api/dbs/{name}/documents?limit=2&offset={offset}")
            self.assertEqual(page["db"], name)
            self.assertEqual(page["total"], 5)
            self.assertEqual(page["limit"], 2)
            self.assertEqual(page["offset"], offset)
            self.assertEqual(len(page["documents"]), 2 if offset < 4 else 1)
            for d in page["documents"]:
                for key in ("id", "source", "metadata", "chunks", "version", "created_at",
                            "updated_at"):
                    self.assertIn(key, d)
                self.assertEqual(d["chunks"], 1)
                self.assertEqual(d["title"], d["id"])  # no title, heading or <title>: the file name, less its extension
            seen += [d["id"] for d in page["documents"]]
        self.assertEqual(sorted(seen), [f"d{i}" for i in range(5)])
        page = self.call("GET", f"/api/dbs/{name}/documents?offset=10")
        self.assertEqual(page["documents"], [])
        self.assertEqual(page["total"], 5)

        doc = self.call("GET", f"/api/dbs/{name}/documents/d3")
        self.assertEqual(doc["id"], "d3")
        self.assertEqual(doc["title"], "d3")
        # the title ingest derived, else null (no source, an id that is no file name, a long first line)
        self.call("POST", "/api/ingest", {"db": name, "documents": [
            {"id": "titled", "text": "Body.", "metadata": {"title": "Given title"}},
            {"id": "untitled", "text": "word " * 40}]})
        self.assertEqual(self.call("GET", f"/api/dbs/{name}/documents/titled")["title"], "Given title")
        self.assertIsNone(self.call("GET", f"/api/dbs/{name}/documents/untitled")["title"])
        self.call("DELETE", f"/api/dbs/{name}/documents/titled")
        self.call("DELETE", f"/api/dbs/{name}/documents/untitled")
        self.assertEqual(doc["db"], name)
        self.assertEqual(doc["source"], "d3.txt")
        self.assertEqual(doc["metadata"].get("i"), 3)
        self.assertEqual(doc["chunks"][0]["text"], docs[3]["text"])

        deleted = self.call("DELETE", f"/api/dbs/{name}/documents/d3")
        self.assertEqual(deleted, {"deleted": "d3", "db": name})
        r = self.server.request("GET", f"/api/dbs/{name}/documents/d3")
        self.assertEnvelope(r, 404, "document_not_found")
        r = self.server.request("DELETE", f"/api/dbs/{name}/documents/d3")
        self.assertEnvelope(r, 404, "document_not_found")
        self.assertEqual(self.call("GET", f"/api/dbs/{name}")["documents"], 4)
        body = self.query({"query": "colour amber", "db": name, "k": 5, "method": "keyword"})
        self.assertNotIn("d3", self.doc_ids(body))

        self.assertEqual(self.call("DELETE", f"/api/dbs/{name}"), {"deleted": name})
        self.assertEnvelope(self.server.request("GET", f"/api/dbs/{name}"), 404, "db_not_found")
        self.assertEnvelope(self.server.request("GET", f"/api/dbs/{name}/documents"), 404,
                            "db_not_found")
        self.assertEnvelope(self.server.request("POST", "/api/query",
                                                json_body={"query": "colour", "db": name}),
                            404, "db_not_found")
        self.assertEnvelope(self.server.request("DELETE", f"/api/dbs/{name}"), 404, "db_not_found")
        self.assertNotIn(name, [d["name"] for d in self.call("GET", "/api/dbs")["dbs"]])
        # the other collections are untouched
        self.assertEqual(self.call("GET", f"/api/dbs/{MAIN_DB}")["documents"], len(CORPUS))

    def test_sources_carry_their_documents_title(self):
        """A passage's "title" is the one ingest derived for its document: the metadata's, the
        HTML <title>, the first markdown heading; null when there is none. The same after a
        restart-free cache hit, and on /api/retrieve and the Ollama chat route."""
        db = "titles"
        self.call("POST", "/api/ingest", {"db": db, "documents": [
            {"id": "h", "text": "<html><head><title>Marmot almanac</title></head><body><p>Marmots whistle "
                                "at the quokkafern when hawks circle.</p></body></html>", "format": "html"},
            {"id": "m", "text": "# Beaver ledger\n\nBeavers gnaw the quokkafern in spring.", "format": "markdown"},
            {"id": "g", "text": "Gophers dig under the quokkafern.", "metadata": {"title": "Gopher notes"}},
            {"id": "x", "text": "quokkafern " + "otter " * 40}]})
        want = {"h": "Marmot almanac", "m": "Beaver ledger", "g": "Gopher notes", "x": None}
        for path in ("/api/retrieve", "/api/query", "/api/query"):  # the second query: a cache hit
            body = self.call("POST", path, {"query": "quokkafern", "db": db, "method": "keyword", "k": 8})
            got = {s["doc_id"]: s["title"] for s in body["sources"]}
            self.assertEqual(got, want, (path, body.get("cached")))
        self.assertIs(body["cached"], True)
        chat = self.call("POST", "/api/chat", {"model": f"rag/{db}", "stream": False,
                                               "messages": [{"role": "user", "content": "quokkafern"}]})
        got = {s["doc_id"]: s["title"] for s in chat["sources"]}
        self.assertEqual(got, {k: v for k, v in want.items() if k in got}, chat["sources"])
        self.assertIn("Marmot almanac", got.values())
        self.call("DELETE", f"/api/dbs/{db}")

    def test_document_chunk_offsets(self):
        name = "api_chunks"
        self.call("POST", "/api/dbs", {"name": name, "chunk_size": 200, "chunk_overlap": 20},
                  status=201)
        sentences = [f"Sentence {i} talks about the migration of arctic terns over {i * 13} "
                     f"kilometres." for i in range(30)]
        paras = [" ".join(sentences[i:i + 5]) for i in range(0, 30, 5)]
        original = "\n\n".join(paras) + "\n"
        self.assertTrue(original.isascii())
        res = self.call("POST", "/api/ingest",
                        {"db": name, "documents": [{"id": "terns", "text": original}]})
        doc = self.call("GET", f"/api/dbs/{name}/documents/terns")
        chunks = doc["chunks"]
        self.assertEqual(len(chunks), res["chunks"])
        self.assertGreaterEqual(len(chunks), 8)  # ~2150 chars in chunks of <= 200
        covered = set()
        prev_start = -1
        for i, c in enumerate(chunks):
            self.assertEqual(c["chunk"], i)
            self.assertTrue(0 <= c["start"] < c["end"] <= len(original), c)
            self.assertEqual(c["text"], original[c["start"]:c["end"]], c)
            self.assertLessEqual(len(c["text"]), 200)
            self.assertGreater(c["start"], prev_start)
            prev_start = c["start"]
            covered.update(range(c["start"], c["end"]))
        missing = [i for i, ch in enumerate(original) if not ch.isspace() and i not in covered]
        self.assertEqual(missing, [], "characters not covered by any chunk")
        # a document id with characters that need percent-encoding in the path
        self.call("POST", "/api/ingest",
                  {"db": name, "documents": [{"id": "a b/c?d", "text": "Odd id text."}]})
        doc = self.call("GET", f"/api/dbs/{name}/documents/{urllib.parse.quote('a b/c?d', safe='')}")
        self.assertEqual(doc["id"], "a b/c?d")

    # -- operations ---------------------------------------------------------------------------
    def test_pool_stats(self):
        body = self.call("GET", "/api/pool/stats")
        for key in ("pool_size", "available", "in_use", "initialized"):
            self.assertIn(key, body)
        self.assertEqual(body["pool_size"], 4)  # RAGD_POOL_SIZE=4
        self.assertIs(body["initialized"], True)
        self.assertGreaterEqual(body["in_use"], 0)
        self.assertGreaterEqual(body["available"], 0)
        self.assertEqual(body["available"] + body["in_use"], body["pool_size"])

    # -- streaming ----------------------------------------------------------------------------
    def stream(self, payload, headers=None):
        r = self.server.request("POST", "/api/query", json_body=payload, headers=headers)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.content_type(), "text/event-stream", r)
        self.assertTrue(r.header("X-Request-ID"))
        return harness.parse_sse(r.raw)

    def check_stream(self, events, plain):
        names = [e for e, _ in events]
        self.assertGreaterEqual(len(names), 3, names)
        self.assertEqual(names[0], "sources", names)
        self.assertEqual(names[-1], "done", names)
        self.assertTrue(all(n == "token" for n in names[1:-1]), names)
        self.assertNotIn("error", names)
        sources = json.loads(events[0][1])["sources"]
        self.assertEqual([s["id"] for s in sources], [s["id"] for s in plain["sources"]])
        text = "".join(json.loads(d)["text"] for e, d in events if e == "token")
        done = json.loads(events[-1][1])
        self.assertNotIn("documents", done)
        self.assertEqual(done["answer"], text)
        self.assertEqual(done["answer"], plain["answer"])
        self.assertEqual([s["id"] for s in done["sources"]], [s["id"] for s in plain["sources"]])
        self.assertEqual(done["provider"], "extractive")

    def test_stream_query(self):
        base = {"query": "What did Robert Stevenson build?", "db": MAIN_DB, "k": 3,
                "use_cache": False}
        plain = self.query(base)
        self.assertIn("lighthouse", self.doc_ids(plain))
        self.check_stream(self.stream(dict(base, stream=True)), plain)
        # Accept: text/event-stream asks for the same
        self.check_stream(self.stream(base, headers={"Accept": "text/event-stream"}), plain)


if __name__ == "__main__":
    unittest.main()
