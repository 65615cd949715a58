"""Keyword retrieval from the in-memory index (docs/internals/kindex.md), end to end.

A chunk is found by its document's title and its markdown heading path, not only by its
own words; stemming joins word forms; a replace, a delete and a restart (the index is
rebuilt from the store) keep the keyword side in step; a filter applies to it."""
import unittest

import harness

GUIDE = """# Ollama

Ollama runs large language models on your own machine.

## Install

### Debian

Download the script and run it as root. The installer adds a service
that starts at boot and listens on port 11434.

## Models

Pull a model before the first question, for example llama3.2.
"""

OTHER = """Notes on packages

The packaging tools of the distribution install software from signed repositories.
Ollama is mentioned here once, among many other words about archives and mirrors,
so that a keyword match on the name alone is not enough to rank this first.
"""


class KeywordTest(harness.E2ETestCase):
    def retrieve(self, query, method="keyword", k=5, **extra):
        body = {"db": "kw", "query": query, "k": k, "method": method, **extra}
        r = self.server.request("POST", "/api/retrieve", json_body=body)
        self.assertEqual(r.status, 200, r.body)
        return r.body["sources"]

    def ingest(self, docs):
        r = self.server.request("POST", "/api/ingest", json_body={"db": "kw", "documents": docs})
        self.assertEqual(r.status, 200, r.body)
        return r.body

    def test_title_heading_stems_replace_delete_restart(self):
        self.ingest([
            {"id": "guide.md", "text": GUIDE, "source": "notes/ollama.md", "metadata": {"team": "a"}},
            {"id": "other", "text": OTHER, "metadata": {"team": "b"}},
        ])
        # The paragraph on installing never names Ollama or Debian: its title and its
        # heading path ("Ollama > Install > Debian") do.
        src = self.retrieve("how do I install ollama on debian")
        self.assertGreaterEqual(len(src), 1)
        self.assertEqual(src[0]["doc_id"], "guide.md")
        self.assertIn("Download the script", src[0]["text"])
        # Stemming: "installing" finds "installer"/"install" forms; scores are ordered
        src = self.retrieve("installing debian")
        self.assertEqual(src[0]["doc_id"], "guide.md")
        self.assertTrue(all(a["score"] >= b["score"] for a, b in zip(src, src[1:])))
        # A filter applies to the keyword side
        src = self.retrieve("ollama", filter={"team": "b"})
        self.assertEqual({s["doc_id"] for s in src}, {"other"})
        # Hybrid finds it too
        src = self.retrieve("how do I install ollama on debian", method="hybrid")
        self.assertIn("guide.md", [s["doc_id"] for s in src[:3]])

        # Replace: the old words are gone from the keyword side, the new ones are found
        self.ingest([{"id": "other", "text": "Zymurgy is the chemistry of fermentation.", "metadata": {"team": "b"}}])
        self.assertEqual(self.retrieve("mirrors archives"), [])
        self.assertEqual([s["doc_id"] for s in self.retrieve("zymurgy")], ["other"])
        # Delete: gone
        r = self.server.request("DELETE", "/api/dbs/kw/documents/other")
        self.assertIn(r.status, (200, 204), r.body)
        self.assertEqual(self.retrieve("zymurgy fermentation"), [])

        # Restart: the index is rebuilt from the store, titles and headings included
        before = self.retrieve("how do I install ollama on debian")
        self.server.stop()
        self.server.start()
        after = self.retrieve("how do I install ollama on debian")
        self.assertEqual([(s["id"], s["score"]) for s in before], [(s["id"], s["score"]) for s in after])
        self.assertEqual(self.retrieve("zymurgy"), [])

    def test_dropped_collection(self):
        r = self.server.request("POST", "/api/ingest", json_body={"db": "gone", "documents": [
            {"id": "x", "text": "Quixotic ideas about windmills."}]})
        self.assertEqual(r.status, 200, r.body)
        r = self.server.request("POST", "/api/retrieve", json_body={"db": "gone", "query": "windmills",
                                                                    "method": "keyword"})
        self.assertEqual([s["doc_id"] for s in r.body["sources"]], ["x"])
        r = self.server.request("DELETE", "/api/dbs/gone")
        self.assertIn(r.status, (200, 204), r.body)
        r = self.server.request("POST", "/api/ingest", json_body={"db": "gone", "documents": [
            {"id": "y", "text": "Something else entirely."}]})
        self.assertEqual(r.status, 200, r.body)
        r = self.server.request("POST", "/api/retrieve", json_body={"db": "gone", "query": "windmills",
                                                                    "method": "keyword"})
        self.assertEqual(r.body["sources"], [])


if __name__ == "__main__":
    unittest.main()
