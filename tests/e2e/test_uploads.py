"""Files sent to /api/ingest the way people send them (docs/api.md "Ingest"), on the true
defaults: multipart/form-data uploads (curl -F, the real curl binary included), raw bodies of
every accepted type, a declared charset, the 415 that says how to send a file, the 413 that
names RAGD_MAX_BODY_BYTES, and malformed multipart bodies refused whole (400, nothing
stored)."""
import gzip
import io
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse

import harness

import fixtures_formats  # the formats helper's small real PDF/DOCX/ODT/EPUB files, made by stdlib code

CURL = shutil.which("curl")
MAX_BODY = 10 * 1024 * 1024  # RAGD_MAX_BODY_BYTES's default


def form(parts, boundary="ragd-test-boundary-7f3a", preamble=b"", epilogue=b"\r\n"):
    """A multipart/form-data body: parts are (name, filename or None, content type or None,
    bytes). Returns (content type header, body)."""
    out = io.BytesIO()
    out.write(preamble)
    for name, filename, ctype, data in parts:
        out.write(b"--" + boundary.encode() + b"\r\n")
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out.write(disp.encode("utf-8") + b"\r\n")
        if ctype:
            out.write(f"Content-Type: {ctype}\r\n".encode())
        out.write(b"\r\n")
        out.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        out.write(b"\r\n")
    out.write(b"--" + boundary.encode() + b"--" + epilogue)
    return f"multipart/form-data; boundary={boundary}", out.getvalue()


LATIN1_HTML = "<html><body><p>Café crème and crêpes are served in Paris.</p></body></html>".encode("iso-8859-1")


class UploadsTest(harness.E2ETestCase):
    server_env = {}  # the true defaults: RAGD_EMBEDDER=auto, no backend answering → builtin

    def post(self, path, ctype, body, **kw):
        return self.server.request("POST", path, body=body, content_type=ctype, **kw)

    def doc_text(self, db, doc_id):
        body = self.call("GET", f"/api/dbs/{db}/documents/{urllib.parse.quote(doc_id, safe='')}")
        return " ".join(c["text"] for c in body["chunks"]), body

    def assertNothingStored(self, db):
        self.assertEqual(self.server.request("GET", f"/api/dbs/{db}").status, 404, f"{db} exists")

    # -- multipart ---------------------------------------------------------------------------
    @unittest.skipUnless(CURL, "curl is not installed")
    def test_curl_uploads_three_files_with_metadata(self):
        with tempfile.TemporaryDirectory() as d:
            paths = {"notes.txt": b"Kelp forests grow in cold water along rocky coasts.\n",
                     "fjords.md": b"# Fjords\n\nFjords are carved by glaciers over many ice ages.\n",
                     "menu.html": LATIN1_HTML}
            for name, data in paths.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
            cmd = [CURL, "-sS", "-F", "file=@notes.txt", "-F", "file=@fjords.md",
                   "-F", "file=@menu.html;type=text/html;charset=iso-8859-1",
                   "-F", 'metadata={"team": "ocean", "year": 2026}',
                   "-w", "\n%{http_code}", f"{self.server.url}/api/ingest?db=curl3"]
            p = subprocess.run(cmd, cwd=d, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p)
        out, _, code = p.stdout.decode().rpartition("\n")
        self.assertEqual(code, "200", out)
        import json
        ack = json.loads(out)
        self.assertEqual(ack["ids"], ["notes.txt", "fjords.md", "menu.html"])  # the file names as sent
        self.assertEqual(ack["documents"], 3)
        text, doc = self.doc_text("curl3", "menu.html")
        self.assertIn("Café crème", text)  # the part's charset was applied
        self.assertNotIn("<p>", text)      # read as HTML
        self.assertEqual(doc["metadata"], {"team": "ocean", "year": 2026, "source": "menu.html"})
        text, doc = self.doc_text("curl3", "fjords.md")
        self.assertIn("carved by glaciers", text)
        self.assertEqual(doc["metadata"]["source"], "fjords.md")
        r = self.call("POST", "/api/retrieve", {"db": "curl3", "query": "kelp forests cold water", "k": 1})
        self.assertEqual(r["sources"][0]["doc_id"], "notes.txt")
        self.assertEqual(r["sources"][0]["metadata"]["team"], "ocean")

    def test_fields_ids_preamble_and_filename_star(self):
        ctype, body = form([("id", None, None, "first"),
                            ("file", "a.txt", "text/plain", "Lichens are a partnership of fungi and algae."),
                            ("db", None, None, "fields"),
                            ("file", "b.rst", None, "Tides\n=====\n\nThe moon pulls the tides twice a day.\n"),
                            ("id", None, None, "second")],
                           preamble=b"This preamble is ignored.\r\n", epilogue=b"\r\nand so is this epilogue")
        r = self.post("/api/ingest", ctype, body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["db"], "fields")
        self.assertEqual(r.body["ids"], ["first", "second"])  # id fields name the files in order
        text, _ = self.doc_text("fields", "second")
        self.assertIn("moon pulls the tides", text)
        # filename* (RFC 5987) beats filename; ?id= names a single file
        boundary = "xyz"
        raw = (b"--xyz\r\nContent-Disposition: form-data; name=\"f\"; filename=\"fallback.txt\"; "
               b"filename*=UTF-8''r%C3%A9sum%C3%A9.md\r\n\r\n# R\xc3\xa9sum\xc3\xa9\n\nOtters hold hands while "
               b"sleeping.\r\n--xyz--")
        r = self.post("/api/ingest?db=fields", f"multipart/form-data; boundary=\"{boundary}\"", raw)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["ids"], ["résumé.md"])
        r = self.post("/api/ingest?db=fields&id=solo", *form([("file", "c.txt", None, "Solo text about herons.")]))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["ids"], ["solo"])

    def test_form_mistakes_are_validation_errors(self):
        cases = [
            ("ids do not match files", [("file", "a.txt", None, "x1"), ("id", None, None, "a"),
                                        ("id", None, None, "b")], "id: 2 id fields for 1 file"),
            ("metadata not an object", [("file", "a.txt", None, "x2"), ("metadata", None, None, "[1]")],
             "metadata: must be a JSON object"),
            ("metadata nested 65 deep", [("file", "a.txt", None, "x6"),
                                         ("metadata", None, None, '{"a":' * 65 + "1" + "}" * 65)],
             "metadata: JSON nested deeper than 64"),
            ("bad db field", [("file", "a.txt", None, "x3"), ("db", None, None, "../etc")], "db:"),
            ("db field with a NUL", [("file", "a.txt", None, "x5"), ("db", None, None, b"ab\x00cd")], "db:"),
            ("no file", [("db", None, None, "nofile")], "files: the form must hold 1 to 10000 files"),
            ("empty file", [("file", "a.txt", None, "")], "part 1 (a.txt): the file is empty"),
            ("bad id field", [("file", "a.txt", None, "x4"), ("id", None, None, "bad\x01id")], "part 2: id:"),
        ]
        for i, (what, parts, needle) in enumerate(cases):
            with self.subTest(what):
                db = f"mistake{i}"
                r = self.post(f"/api/ingest?db={db}", *form(parts))
                self.assertEnvelope(r, 422, "validation_error", what)
                self.assertIn(needle, r.body["error"]["message"])
                self.assertNothingStored(db)
        # a file of a type ingest does not take: 415 naming the part
        r = self.post("/api/ingest?db=mistake_png", *form([("file", "cat.png", "image/png", b"\x89PNG\r\n\x1a\n")]))
        self.assertEnvelope(r, 415, "unsupported_media_type")
        self.assertIn("part 1 (cat.png)", r.body["error"]["message"])
        self.assertNothingStored("mistake_png")
        # ?id= with several files
        r = self.post("/api/ingest?db=mistake_id&id=x", *form([("file", "a.txt", None, "one"),
                                                               ("file", "b.txt", None, "two")]))
        self.assertEnvelope(r, 422, "validation_error")
        self.assertNothingStored("mistake_id")

    def test_a_bad_file_stores_nothing_of_the_request(self):
        junk = bytes(range(256)) * 8  # binary junk: no format reads it
        r = self.post("/api/ingest?db=allornothing", *form([("file", "good.txt", None, "Good text about owls."),
                                                             ("file", "junk.bin", None, junk)]))
        self.assertEnvelope(r, 422, "validation_error")
        self.assertIn("junk.bin", r.body["error"]["message"])
        self.assertNothingStored("allornothing")

    def test_malformed_multipart_is_refused_whole(self):
        ok_part = b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nSeals nap on ice.\r\n"
        huge_headers = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nX-Pad: "
                        + b"p" * 20000 + b"\r\n\r\nx\r\n--B--")
        empty_parts = b"--B\r\nContent-Disposition: form-data; name=\"e\"\r\n\r\n\r\n" * 10000 + b"--B--"
        too_many = (b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\nx\r\n" * 20003
                    + b"--B--")
        cases = [
            ("no boundary parameter", "multipart/form-data", ok_part + b"--B--", "without a boundary"),
            ("boundary not in the body", "multipart/form-data; boundary=Other", ok_part + b"--B--",
             "no boundary line"),
            # an empty body has no buffer at all (it once reached memmem as NULL: UBSan abort)
            ("empty body", "multipart/form-data; boundary=B", b"", "no boundary line"),
            ("missing final boundary", "multipart/form-data; boundary=B", ok_part, "ends inside part 1"),
            ("final boundary cut", "multipart/form-data; boundary=B", ok_part + b"--B", "closing boundary"),
            ("huge part headers", "multipart/form-data; boundary=B", huge_headers, "headers over 8192 bytes"),
            ("10k empty parts without a filename", "multipart/form-data; boundary=B", empty_parts,
             "not a file (it has no filename)"),
            ("more parts than files and ids can need", "multipart/form-data; boundary=B", too_many,
             "more than 20002 parts"),
            ("part without filename", "multipart/form-data; boundary=B",
             b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nSeals nap on ice.\r\n--B--",
             "curl -F 'file=@path'"),
            ("part without Content-Disposition", "multipart/form-data; boundary=B",
             b"--B\r\nContent-Type: text/plain\r\n\r\nSeals.\r\n--B--", "no Content-Disposition"),
            ("base64 part", "multipart/form-data; boundary=B",
             ok_part.replace(b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: base64\r\n\r\n") + b"--B--",
             "base64 is not supported"),
            ("bad boundary parameter", "multipart/form-data; boundary=\"open", ok_part + b"--B--", "malformed"),
            ("parameters over 511 bytes", "multipart/form-data; boundary=B; x=" + "y" * 600, ok_part + b"--B--",
             "too long"),
        ]
        for i, (what, ctype, body, needle) in enumerate(cases):
            with self.subTest(what):
                db = f"malformed{i}"
                r = self.post(f"/api/ingest?db={db}", ctype, body)
                self.assertEqual(r.status, 400, f"{what}: {r!r}")
                self.assertIn(r.body["error"]["code"], ("invalid_multipart", "invalid_json"), what)
                self.assertIn(needle, r.body["error"]["message"], what)
                self.assertNothingStored(db)
        # the server is fine afterwards
        r = self.post("/api/ingest?db=malformed_after", "multipart/form-data; boundary=B", ok_part + b"--B--")
        self.assertEqual(r.status, 200, r)

    # -- raw bodies --------------------------------------------------------------------------
    def test_latin1_text_body_with_charset(self):
        text = "Le café crème coûte deux euros à Genève.".encode("iso-8859-1")
        r = self.post("/api/ingest?db=latin&id=menu", "text/plain; charset=ISO-8859-1", text)
        self.assertEqual(r.status, 200, r)
        stored, _ = self.doc_text("latin", "menu")
        self.assertIn("café crème coûte", stored)
        r = self.post("/api/ingest?db=latin&id=page&source=page.html", "text/html; charset=iso-8859-1", LATIN1_HTML)
        self.assertEqual(r.status, 200, r)
        stored, _ = self.doc_text("latin", "page")
        self.assertIn("Café crème", stored)
        r = self.post("/api/ingest?db=latin&id=w", "text/plain; charset=windows-1252", b"Smart \x93quotes\x94 \x80 5")
        self.assertEqual(r.status, 200, r)
        stored, _ = self.doc_text("latin", "w")
        self.assertIn("\u201cquotes\u201d \u20ac 5", stored)

    def test_raw_text_types(self):
        cases = [
            ("text/markdown", "md", b"# Otters\n\nSea otters use stones as tools.\n", "stones as tools"),
            ("text/x-rst", "rst", b"Beavers\n=======\n\nBeavers build dams of wood and mud.\n", "dams of wood"),
            ("application/gzip", "gz", gzip.compress(b"Puffins nest in burrows on cliffs.\n"), "nest in burrows"),
            ("application/x-gzip", "xgz", gzip.compress(b"Walruses haul out on ice floes.\n"), "ice floes"),
            ("application/octet-stream", "sniffed", b"Narwhals have one long tusk.\n", "long tusk"),
        ]
        for ctype, doc_id, data, needle in cases:
            with self.subTest(ctype):
                r = self.post(f"/api/ingest?db=raw&id={doc_id}", ctype, data)
                self.assertEqual(r.status, 200, r)
                stored, _ = self.doc_text("raw", doc_id)
                self.assertIn(needle, stored)
        # binary junk sniffed: refused, naming the document, nothing stored
        r = self.post("/api/ingest?db=raw_junk&id=junk", "application/octet-stream", bytes(range(256)) * 4)
        self.assertEnvelope(r, 422, "validation_error")
        self.assertIn("junk", r.body["error"]["message"])
        self.assertNothingStored("raw_junk")

    def test_raw_binary_types(self):
        """Every GOOD fixture of the formats helper sent as a raw body of its type, then all
        of them again as one curl-style upload (parts typed application/octet-stream, as
        curl labels .docx, .odt, .epub, .gz and README): each is read and its fact found."""
        ff = fixtures_formats
        for name, (make, source, ctype) in ff.GOOD.items():
            with self.subTest(ctype):
                r = self.post(f"/api/ingest?db=bin&source={source}", ctype, make())
                self.assertEqual(r.status, 200, r)
                stored, doc = self.doc_text("bin", r.body["ids"][0])
                fact = ff.WORDS["pdf_page2" if name == "pdf" else "epub2" if name == "epub" else name]
                self.assertIn(fact, stored.lower())
                self.assertEqual(doc["metadata"]["source"], source)
        parts = [("file", source, "application/octet-stream", make()) for make, source, _ in ff.GOOD.values()]
        r = self.post("/api/ingest?db=bin_form", *form(parts))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["ids"], [source for _, source, _ in ff.GOOD.values()])
        r = self.call("POST", "/api/retrieve", {"db": "bin_form", "query": ff.WORDS["docx"], "k": 1})
        self.assertEqual(r["sources"][0]["doc_id"], "protocol.docx")
        # PDF pages come back with the passage
        r = self.call("POST", "/api/retrieve", {"db": "bin_form", "query": ff.WORDS["pdf_page2"], "k": 1})
        self.assertEqual((r["sources"][0]["doc_id"], r["sources"][0].get("page")), ("report.pdf", 2))
        # an unreadable PDF in a form stores nothing of it
        r = self.post("/api/ingest?db=bin_bad", *form([("file", "good.txt", None, "Voles dig tunnels."),
                                                         ("file", "broken.pdf", "application/pdf",
                                                          ff.pdf_truncated())]))
        self.assertEnvelope(r, 422, "validation_error")
        self.assertIn("broken.pdf", r.body["error"]["message"])
        self.assertNothingStored("bin_bad")

    def test_no_text_is_422_naming_the_document(self):
        """A document whose text comes out empty or whitespace only is refused by the ingest
        run with one message for every format ("document 'x': no text"), and nothing of the
        request is stored (formerly: stored with 0 chunks)."""
        ff = fixtures_formats
        empty_docx = ff._zip(ff._docx_parts(
            f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{ff._W}"><w:body></w:body></w:document>'))
        cases = [
            ("text/plain", "spaces", b"   \n\t  \r\n "),
            ("application/gzip", "empty.gz", gzip.compress(b"")),
            ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "empty.docx", empty_docx),
            ("text/html", "blank.html", b"<html><body><p>  </p><script>x = 1;</script></body></html>"),
        ]
        for ctype, doc_id, data in cases:
            with self.subTest(ctype):
                db = "notext_" + doc_id.replace(".", "_")
                r = self.post(f"/api/ingest?db={db}&id={doc_id}", ctype, data)
                self.assertEnvelope(r, 422, "validation_error")
                self.assertEqual(r.body["error"]["message"], f"document '{doc_id}': no text")
                self.assertNothingStored(db)
        # in a form, next to a good file: the whole request is refused, naming the empty one
        r = self.post("/api/ingest?db=notext_form", *form([("file", "good.txt", None, "Voles dig tunnels."),
                                                             ("file", "blank.txt", "text/plain", " \n \n")]))
        self.assertEnvelope(r, 422, "validation_error")
        self.assertIn("document 'blank.txt': no text", r.body["error"]["message"])
        self.assertNothingStored("notext_form")
        # JSON: an HTML text that reads as nothing, the same message
        r = self.server.request("POST", "/api/ingest", json_body={
            "db": "notext_json", "documents": [{"id": "j", "text": "<p> </p>", "format": "html"}]})
        self.assertEnvelope(r, 422, "validation_error")
        self.assertEqual(r.body["error"]["message"], "document 'j': no text")
        self.assertNothingStored("notext_json")

    # -- refusals ----------------------------------------------------------------------------
    def test_415_names_the_types_and_the_curl_commands(self):
        r = self.post("/api/ingest?db=x", "application/x-www-form-urlencoded", b"text=hello")
        self.assertEnvelope(r, 415, "unsupported_media_type")
        msg = r.body["error"]["message"]
        for needle in ("multipart/form-data", "application/pdf", "text/x-rst", "application/octet-stream",
                       "what curl --data-binary sends", "curl -F file=@doc.pdf",
                       "curl --data-binary @doc.pdf -H 'Content-Type: application/pdf'",
                       f"127.0.0.1:{self.server.port}/api/ingest"):
            self.assertIn(needle, msg)
        r = self.post("/api/ingest", "image/png", b"\x89PNG\r\n")
        self.assertEnvelope(r, 415, "unsupported_media_type")
        self.assertIn("curl -F file=@doc.pdf", r.body["error"]["message"])
        self.assertNotIn("what curl --data-binary sends", r.body["error"]["message"])
        # every other route names what it takes
        for path in ("/api/query", "/api/retrieve", "/api/dbs", "/v1/embeddings"):
            with self.subTest(path):
                r = self.post(path, "text/plain", b"{}")
                self.assertEqual(r.status, 415, r)
                self.assertIn("application/json", r.raw.decode())

    @unittest.skipUnless(CURL, "curl is not installed")
    def test_curl_data_binary_without_type_gets_the_hint(self):
        with tempfile.NamedTemporaryFile(suffix=".txt") as f:
            f.write(b"Terns migrate from pole to pole.\n")
            f.flush()
            p = subprocess.run([CURL, "-sS", "--data-binary", f"@{f.name}", f"{self.server.url}/api/ingest?db=x"],
                               capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn(b"unsupported_media_type", p.stdout)
        self.assertIn(b"curl --data-binary @doc.pdf -H", p.stdout)

    def test_413_names_the_variable(self):
        raw = harness.build_raw_request("POST", "/api/ingest?db=big&id=big",
                                        headers={"Content-Type": "application/pdf"}, content_length=MAX_BODY + 1)
        r = harness.raw_request(self.server.port, raw)
        self.assertEnvelope(r, 413, "payload_too_large")
        self.assertIn(f"RAGD_MAX_BODY_BYTES ({MAX_BODY} bytes)", r.body["error"]["message"])
        # a chunked body is counted as it arrives: the same words
        chunk = b"a" * 65536
        data = (b"POST /api/ingest?db=big&id=big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                + (b"10000\r\n" + chunk + b"\r\n") * (MAX_BODY // 65536 + 2) + b"0\r\n\r\n")
        r = harness.raw_request(self.server.port, data)
        self.assertIsNotNone(r)
        self.assertEnvelope(r, 413, "payload_too_large")
        self.assertIn("RAGD_MAX_BODY_BYTES", r.body["error"]["message"])
        self.assertNothingStored("big")


if __name__ == "__main__":
    unittest.main()
