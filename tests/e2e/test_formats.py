"""Document formats end to end, on the true defaults (no environment, no backend): each
fixture of fixtures_formats.py is ingested and its fact found by a query; the PDF's source
carries its page; documents that cannot be read are refused 422 naming the document, and
the collection is left as it was.

Two parts:
- JsonFormatsTest: text kinds sent as JSON strings (reStructuredText by its extension or
  "format": "rst", a README with no extension), and the refusals that the JSON route can
  carry.
- RawFormatsTest sends the files as raw bodies with their Content-Type
  (POST /api/ingest?db=&id=&source=).
"""
import glob
import os
import signal
import threading
import time
import urllib.parse

import fixtures_formats as ff
import harness

def doc_text(test, db, doc_id):
    """A stored document's text, from its chunks (GET /api/dbs/{db}/documents/{id})."""
    doc = test.call("GET", f"/api/dbs/{db}/documents/{urllib.parse.quote(doc_id, safe='')}")
    return "\n".join(c["text"] for c in doc["chunks"])


def top_sources(test, db, word, k=3):
    res = test.call("POST", "/api/retrieve", {"query": word, "db": db, "k": k})
    return res["sources"]


class JsonFormatsTest(harness.E2ETestCase):
    """Text kinds as JSON strings."""

    def test_rst_by_extension_gets_headings(self):
        text = ff.rst().decode()
        ack = self.call("POST", "/api/ingest", {"db": "jr", "documents": [{"text": text, "source": "daemon.rst"}]})
        self.assertEqual(ack["documents"], 1)
        src = top_sources(self, "jr", ff.WORDS["rst"])
        self.assertTrue(src and ff.WORDS["rst"] in src[0]["text"].lower(), src)
        # the section title became a heading: the stored text has no adornment lines
        text = doc_text(self, "jr", ack["ids"][0])
        self.assertIn("# Daemon Manual", text)
        self.assertNotIn("=============", text)

    def test_rst_format_field(self):
        ack = self.call("POST", "/api/ingest", {"db": "jf", "documents": [
            {"id": "r", "text": "Title\n=====\n\nbody words here\n", "format": "rst"}]})
        self.assertTrue(doc_text(self, "jf", "r").startswith("# Title"))
        self.assertEqual(ack["ids"], ["r"])

    def test_readme_without_extension(self):
        self.call("POST", "/api/ingest", {"db": "jn", "documents": [
            {"text": ff.readme().decode(), "source": "README"}]})
        src = top_sources(self, "jn", ff.WORDS["readme"])
        self.assertTrue(src and src[0]["source"] == "README", src)

    def test_binary_junk_in_json_refused_and_collection_intact(self):
        self.call("POST", "/api/ingest", {"db": "jj", "documents": [{"id": "keep", "text": ff.readme().decode()}]})
        junk = "\u0001\u0002\u0003\u0004\u0005\u0006" * 50  # control characters only: binary
        r = self.server.request("POST", "/api/ingest", json_body={"db": "jj", "documents": [
            {"id": "ok2", "text": "fine text"}, {"id": "junk.bin", "text": junk}]})
        self.assertEnvelope(r, 422, "validation_error")
        msg = r.body["error"]["message"]
        self.assertIn("junk.bin", msg)
        self.assertIn("not text: binary data", msg)
        docs = self.call("GET", "/api/dbs/jj/documents")
        ids = [d["id"] for d in docs["documents"]]
        self.assertEqual(ids, ["keep"])  # nothing of the refused job was stored


class RawFormatsTest(harness.E2ETestCase):
    """Files as raw bodies with their Content-Type."""

    def post_raw(self, db, data, source, ctype, doc_id=None):
        q = {"db": db, "source": source}
        if doc_id:
            q["id"] = doc_id
        return self.server.request("POST", "/api/ingest?" + urllib.parse.urlencode(q), body=data, content_type=ctype)

    def test_each_format_found_by_its_fact(self):
        for name, (make, source, ctype) in ff.GOOD.items():
            with self.subTest(name=name):
                db = f"raw_{name}"
                r = self.post_raw(db, make(), source, ctype)
                self.assertEqual(r.status, 200, f"{name}: {r!r}")
                keys = [k for k in ff.WORDS if k == name or k.startswith(name)]
                for key in keys:
                    src = top_sources(self, db, ff.WORDS[key])
                    self.assertTrue(src, f"{name}: nothing for {ff.WORDS[key]}")
                    self.assertIn(ff.WORDS[key], src[0]["text"].lower(), f"{name}: {src[0]}")

    def test_latin1_text_converted(self):
        r = self.post_raw("l1", ff.latin1(), "menu.txt", "text/plain; charset=iso-8859-1", doc_id="menu")
        self.assertEqual(r.status, 200, r)
        self.assertIn("crème brûlée of Zürich", doc_text(self, "l1", "menu"))
        # undeclared: guessed as windows-1252 (a superset of Latin-1)
        r = self.post_raw("l1", ff.latin1(), "menu2.txt", "application/octet-stream", doc_id="menu2")
        self.assertEqual(r.status, 200, r)
        self.assertIn("Café", doc_text(self, "l1", "menu2"))

    def test_pdf_sources_carry_pages(self):
        r = self.post_raw("pages", ff.pdf(), "report.pdf", "application/pdf")
        self.assertEqual(r.status, 200, r)
        for key, page in (("pdf_page1", 1), ("pdf_page2", 2), ("pdf_page3", 3)):
            with self.subTest(page=page):
                src = top_sources(self, "pages", ff.WORDS[key])[0]
                self.assertIn(ff.WORDS[key], src["text"].lower())
                first, last = src["page"], src.get("page_end", src["page"])
                self.assertLessEqual(first, page, src)
                self.assertGreaterEqual(last, page, src)
                self.assertLessEqual(last - first, 1, src)  # a chunk on one page, or across two
        res = self.call("POST", "/api/query", {"query": ff.WORDS["pdf_page2"], "db": "pages"})
        self.assertIn("page", res["sources"][0])
        # a document without pages has no such field
        self.call("POST", "/api/ingest", {"db": "pages", "documents": [{"id": "t", "text": "plain words only"}]})
        plain = [s for s in top_sources(self, "pages", "plain words only", k=10) if s["doc_id"] == "t"]
        self.assertTrue(plain and "page" not in plain[0], plain)

    def test_unreadable_documents_refused_naming_them(self):
        self.call("POST", "/api/ingest", {"db": "bad", "documents": [{"id": "keep", "text": "kept words"}]})
        cases = [
            (ff.pdf_truncated(), "cut.pdf", "application/pdf", "PDF could not be read"),
            (ff.pdf_scanned(), "scan.pdf", "application/pdf", "no text"),
            (ff.docx_zip_bomb(), "bomb.docx", ff.DOCX_TYPE, "unpacks to over"),
            (ff.docx_entity_bomb(), "lol.docx", ff.DOCX_TYPE, "DTD or entities"),
            (ff.junk(), "junk.bin", "application/octet-stream", "not text: binary data"),
        ]
        for data, source, ctype, why in cases:
            with self.subTest(source=source):
                r = self.post_raw("bad", data, source, ctype)
                self.assertEnvelope(r, 422, "validation_error")
                msg = r.body["error"]["message"]
                self.assertIn(source, msg)
                self.assertIn(why, msg)
        docs = self.call("GET", "/api/dbs/bad/documents")
        self.assertEqual([d["id"] for d in docs["documents"]], ["keep"])
        self.assertEqual(self.call("GET", "/health/ready", status=200).get("status", "ready"), "ready")


def child_pids(pid):
    """The live children of process pid (every thread's), from /proc."""
    kids = set()
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(task) as f:
                kids.update(int(k) for k in f.read().split())
        except OSError:
            pass
    return kids


def zombie_children(pid):
    """Children of pid that exited and were not waited for (state Z)."""
    zombies = []
    for kid in child_pids(pid):
        try:
            with open(f"/proc/{kid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    zombies.append(kid)
        except OSError:
            pass
    return zombies


class PdfChildTest(harness.E2ETestCase):
    """PDFs are read in a child process (`ragd __extract-pdf`): one that takes too long is
    killed at RAGD_EXTRACT_TIMEOUT_S, one that crashes is a 422; the server stays up, answers
    meanwhile and leaves no child behind."""

    class_server = False

    def ingest_in_background(self, srv, data, source):
        """POSTs data as a PDF on a thread; returns (thread, box) where box["r"] gets the reply."""
        box = {}

        def run():
            q = urllib.parse.urlencode({"db": "fan", "source": source})
            try:
                box["r"] = srv.request("POST", "/api/ingest?" + q, body=data, content_type="application/pdf",
                                       timeout=120)
            except OSError as exc:  # the server stopped under it
                box["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        return t, box

    def wait_for_child(self, srv):
        """The pid of the server's PDF reader once it runs."""
        for _ in range(2000):
            kids = child_pids(srv.pid())
            if kids:
                return kids.pop()
            time.sleep(0.01)
        self.fail("no PDF reader child appeared")

    def test_fanout_pdf_killed_at_the_deadline(self):
        srv = self.new_server(env={"RAGD_EXTRACT_TIMEOUT_S": "2"})
        srv.request("POST", "/api/ingest", json_body={"db": "fan", "documents": [{"id": "k", "text": "kept words"}]})
        t, box = self.ingest_in_background(srv, ff.pdf_fanout(levels=7), "fanout.pdf")
        self.wait_for_child(srv)
        # while the reader runs, the server answers
        res = self.call("POST", "/api/retrieve", {"query": "kept words", "db": "fan"}, srv=srv)
        self.assertEqual(res["sources"][0]["doc_id"], "k")
        t.join(120)
        r = box["r"]
        self.assertEnvelope(r, 422, "validation_error")
        msg = r.body["error"]["message"]
        self.assertIn("fanout.pdf", msg)
        self.assertIn("took over 2 seconds", msg)
        self.assertEqual(self.call("GET", "/health/ready", srv=srv).get("status", "ready"), "ready")
        self.assertEqual(child_pids(srv.pid()), set())  # killed and waited for
        # the good PDF still reads, through the child, with its pages
        r = srv.request("POST", "/api/ingest?db=fan&source=report.pdf", body=ff.pdf(), content_type="application/pdf")
        self.assertEqual(r.status, 200, r)
        src = self.call("POST", "/api/retrieve", {"query": ff.WORDS["pdf_page2"], "db": "fan"}, srv=srv)["sources"]
        self.assertTrue(src and ff.WORDS["pdf_page2"] in src[0]["text"].lower(), src)
        self.assertIn("page", src[0])
        self.assertEqual(child_pids(srv.pid()), set())

    def test_crashed_reader_refused(self):
        srv = self.new_server()  # the true default deadline (30 s): the kill comes first
        t, box = self.ingest_in_background(srv, ff.pdf_fanout(levels=7), "crash.pdf")
        kid = self.wait_for_child(srv)
        os.kill(kid, signal.SIGSEGV)
        t.join(120)
        r = box["r"]
        self.assertEnvelope(r, 422, "validation_error")
        msg = r.body["error"]["message"]
        self.assertIn("crash.pdf", msg)
        self.assertIn("the reader crashed (signal 11)", msg)
        self.assertTrue(srv.running())
        self.assertEqual(self.call("GET", "/health/ready", srv=srv).get("status", "ready"), "ready")
        self.assertEqual(zombie_children(srv.pid()), [])
        self.assertEqual(child_pids(srv.pid()), set())

    def test_shutdown_kills_running_reader(self):
        # a deadline far past the harness's 20 s stop bound: only the kill at shutdown ends it
        srv = self.new_server(env={"RAGD_EXTRACT_TIMEOUT_S": "600", "RAGD_SHUTDOWN_GRACE_S": "0.5"})
        t, box = self.ingest_in_background(srv, ff.pdf_fanout(levels=8), "slow.pdf")
        kid = self.wait_for_child(srv)
        srv.stop(expect=0)
        t.join(120)
        self.assertFalse(os.path.exists(f"/proc/{kid}"), "the reader outlived the server")
        if "r" in box:
            self.assertEqual(box["r"].status, 422, box["r"])
            self.assertIn("the server is stopping", box["r"].body["error"]["message"])
