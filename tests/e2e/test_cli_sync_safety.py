"""`ragd ingest --sync` deletes only documents it knows are gone: not those of a folder the
walk could not list (too deep, unreadable, vanished), not an id a paged listing repeated
(a document added while the pages are read shifts the next page), and nothing when the
listing is not one (missing ids, wrong types).

The listing cases use a small fake server (stdlib http.server on loopback) that records
every request, so a server that lies can be played; the deep-folder case uses the real one."""

import hashlib
import http.server
import json
import os
import shutil
import tempfile
import threading
import unittest
import urllib.parse

import harness


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


class FakeListingServer:
    """Answers /health, the document listing (pages from `pages`, by offset) and records
    every DELETE and POST; anything else is a 404."""

    def __init__(self, pages):
        self.pages = pages  # offset -> answer object
        self.deleted = []
        self.posted = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                if u.path == "/health":
                    return self.reply(200, {"status": "healthy", "default_db": "s"})
                if u.path == "/api/dbs/s/documents":
                    q = urllib.parse.parse_qs(u.query)
                    off = int(q.get("offset", ["0"])[0])
                    if off in outer.pages:
                        return self.reply(200, outer.pages[off])
                return self.reply(404, {"error": {"code": "not_found", "message": "no"}})

            def do_DELETE(self):
                outer.deleted.append(urllib.parse.unquote(self.path))
                self.reply(200, {"deleted": True})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                outer.posted += 1
                self.reply(200, {"db": "s", "documents": 1, "chunks": 1, "duplicates": 0})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SyncListingTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ragd-e2e-sync-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.texts = {"root/a.md": b"# A\n\nalpha\n", "root/b.md": b"# B\n\nbeta\n"}
        for rel, data in self.texts.items():
            write(os.path.join(self.dir, rel), data)

    def doc(self, doc_id):
        return {"id": doc_id, "content_hash": hashlib.sha256(self.texts[doc_id]).hexdigest()}

    def sync(self, pages):
        return self.sync_args(["root"], pages)

    def sync_args(self, paths, pages):
        fake = FakeListingServer(pages)
        self.addCleanup(fake.close)
        p = harness.run_cli(["ingest", "--sync", *paths, "--db", "s", "--url", fake.url],
                            cwd=self.dir, timeout=30)
        return fake, p

    def test_an_id_repeated_across_pages_is_not_deleted(self):
        # A document added while the pages are read moves root/b.md onto the next page too.
        fake, p = self.sync({
            0: {"documents": [self.doc("root/a.md"), self.doc("root/b.md")], "truncated": True},
            2: {"documents": [self.doc("root/b.md")], "total": 3},
        })
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(fake.deleted, [], p)
        self.assertIn("0 added, 0 changed, 2 unchanged, 0 removed", p.stdout)

    def test_a_listing_that_is_not_one_deletes_nothing(self):
        gone = {"id": "root/gone.md", "content_hash": "0" * 64}
        for name, page in [
            ("entry without id", {"documents": [gone, {"content_hash": "1" * 64}]}),
            ("entry not an object", {"documents": [gone, "root/x.md"]}),
            ("id not a string", {"documents": [gone, {"id": 7}]}),
            ("documents not a list", {"documents": {"id": "root/gone.md"}}),
        ]:
            with self.subTest(name):
                fake, p = self.sync({0: page})
                self.assertEqual(p.returncode, 1, p)
                self.assertEqual(fake.deleted, [], p)
                self.assertEqual(fake.posted, 0, p)

    def test_sync_of_the_root_folder_needs_an_id_prefix(self):
        # ids under "/" have no folder name in front: "faq-1" (sent as JSON) would be "gone"
        fake, p = self.sync_args(["/"], {0: {"documents": [{"id": "faq-1", "content_hash": "0" * 64}]}})
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("--id-prefix", p.stderr)
        self.assertEqual((fake.deleted, fake.posted), ([], 0), p)

    def test_a_document_truly_gone_is_deleted(self):
        # the control: the same fake does see a DELETE when a listed file is gone
        fake, p = self.sync({0: {"documents": [self.doc("root/a.md"), self.doc("root/b.md"),
                                               {"id": "root/gone.md", "content_hash": "0" * 64},
                                               {"id": "rootx/gone.md", "content_hash": "0" * 64}]}})
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(fake.deleted, ["/api/dbs/s/documents/root/gone.md"], p)


class SyncUnlistedFolderTest(harness.E2ETestCase):
    """A folder the walk cannot list keeps its documents (the real server)."""

    def test_a_folder_nested_too_deeply_keeps_its_documents(self):
        d = tempfile.mkdtemp(prefix="ragd-e2e-sync-")
        self.addCleanup(shutil.rmtree, d, True)
        deep_rel = "root/" + "n/" * 66 + "deep.md"  # past the walker's 64 levels
        write(os.path.join(d, deep_rel), b"deep otter text\n")
        write(os.path.join(d, "root", "top.md"), b"top text\n")
        # the deep file's document came in by other means (JSON, or an older walk)
        r = self.server.request("POST", "/api/ingest", json_body={
            "db": "deep", "documents": [{"id": deep_rel, "text": "deep otter text\n"}]})
        self.assertEqual(r.status, 200, r)
        p = harness.run_cli(["ingest", "--sync", "root", "--db", "deep", "--url", self.server.url],
                            cwd=d)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("folders nested too deeply", p.stderr)
        self.assertIn("1 added, 0 changed, 0 unchanged, 0 removed", p.stdout)
        r = self.server.request("GET", "/api/dbs/deep/documents?limit=1000")
        self.assertEqual(sorted(x["id"] for x in r.body["documents"]), sorted([deep_rel, "root/top.md"]))


if __name__ == "__main__":
    unittest.main()
