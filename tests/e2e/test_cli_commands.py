"""The command line against a real server (TRUE defaults: no environment but the data dir
and the port), the real binary run as a subprocess: ids from folders, --id-prefix, raw
bodies for files that are not UTF-8 text, --sync, --watch, docs, rm, dbs create/rm,
config, backup while serving, and the messages that say how to ingest.

Cases marked NEEDS_FORMATS run only when the server reads PDF (the formats and uploads
branches): they are skipped, saying so, on a build without them."""

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import harness

try:
    import fixtures_formats as ff  # the formats branch's real small documents
except ImportError:  # not merged yet
    ff = None

WAIT_S = 20.0  # a bound on waiting for --watch to act, never a speed claim


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


class CliCommandsTest(harness.E2ETestCase):
    """One server with the defaults for the whole class; each test uses its own collection."""

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="ragd-e2e-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def cli(self, *args, env=None, timeout=60):
        return harness.run_cli([*args, "--url", self.server.url] if args and args[0] not in
                               ("config", "backup", "help", "version") else list(args),
                               env=env, timeout=timeout, cwd=self.dir)

    def ids(self, db):
        r = self.server.request("GET", f"/api/dbs/{db}/documents?limit=1000")
        if r.status == 404:
            return []
        self.assertEqual(r.status, 200, r)
        return [d["id"] for d in r.body["documents"]]

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    # ---------------------------------------------------------------- ids

    def test_two_folders_with_the_same_file_name_give_two_ids(self):
        write(self.path("a", "manual.html"), "<html><body><p>The alpha manual covers turbines.</p></body></html>")
        write(self.path("b", "manual.html"), "<html><body><p>The beta manual covers pumps.</p></body></html>")
        write(self.path("c", "sub", "manual.html"), "<html><body><p>The gamma manual covers valves.</p></body></html>")
        p = self.cli("ingest", "a/", "b", self.path("c"), "--db", "twofolders")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(sorted(self.ids("twofolders")), ["a/manual.html", "b/manual.html", "c/sub/manual.html"])
        self.assertIn("ingested 3 documents", p.stdout)
        # a file argument keeps its name alone
        p = self.cli("ingest", self.path("a", "manual.html"), "--db", "twofolders")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("manual.html", self.ids("twofolders"))

    def test_id_prefix(self):
        write(self.path("docs", "x.md"), "# X\n\nThe x document talks about ferns.\n")
        p = self.cli("ingest", "docs", "--id-prefix", "host1/", "--db", "prefixed")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(self.ids("prefixed"), ["host1/docs/x.md"])
        p = self.cli("ingest", "docs", "--id-prefix", "bad\x01", "--db", "prefixed")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("--id-prefix", p.stderr)

    def test_every_file_is_sent(self):
        """No extension and unknown extensions go as JSON text; pictures are skipped and
        counted; a file that is not UTF-8 goes raw and, without the formats branch, is that
        file's error only."""
        write(self.path("d", "README"), "The README says the wumbler starts at dawn.\n")
        write(self.path("d", "changelog.Debian"), "ragd (1.0) unstable; urgency=low: the gorpfish release.\n")
        write(self.path("d", "logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "wb")
        write(self.path("d", "latin1.txt"), "Caf\xe9 quixadelle au lait.\n".encode("latin-1"), "wb")
        p = self.cli("ingest", "d", "--db", "everyfile")
        ids = self.ids("everyfile")
        self.assertIn("d/README", ids)
        self.assertIn("d/changelog.Debian", ids)
        self.assertNotIn("d/logo.png", ids)
        self.assertIn("1 not a document type", p.stderr)
        if "d/latin1.txt" in ids:  # a server that reads legacy charsets (formats branch)
            self.assertEqual(p.returncode, 0, p)
        else:
            self.assertEqual(p.returncode, 1, p)
            self.assertIn("ragd: error: d/latin1.txt:", p.stderr)
            self.assertIn("1 failed", p.stderr)

    @unittest.skipIf(ff is None, "NEEDS_FORMATS: fixtures_formats.py (formats branch) is not here")
    def test_pdf_and_unknown_binary_go_raw(self):
        """NEEDS_FORMATS+UPLOADS: a PDF is sent as application/pdf, a DOCX under an unknown
        extension as application/octet-stream (sniffed), one request each, and found."""
        write(self.path("raw", "report.pdf"), ff.pdf(), "wb")
        write(self.path("raw", "letter.bin2"), ff.docx(), "wb")
        p = self.cli("ingest", "raw", "--db", "rawfiles")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(sorted(self.ids("rawfiles")), ["raw/letter.bin2", "raw/report.pdf"])
        for word in (ff.WORDS["pdf_page2"], ff.WORDS["docx"]):
            body = self.call("POST", "/api/query", {"query": word, "db": "rawfiles", "method": "keyword"})
            self.assertTrue(body["sources"], (word, body))

    # ---------------------------------------------------------------- sync

    def test_sync_adds_changes_and_removes(self):
        write(self.path("s", "keep.md"), "# Keep\n\nThe keep note is about otters.\n")
        write(self.path("s", "edit.md"), "# Edit\n\nThe edit note is about beavers.\n")
        write(self.path("s", "sub", "gone.md"), "# Gone\n\nThe gone note is about lynxes.\n")
        write(self.path("other", "x.md"), "# Other\n\nNot under s.\n")
        p = self.cli("ingest", "s", "other", "--db", "synced")
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(len(self.ids("synced")), 4)

        write(self.path("s", "edit.md"), "# Edit\n\nThe edit note is now about herons.\n")
        write(self.path("s", "new.md"), "# New\n\nThe new note is about puffins.\n")
        os.remove(self.path("s", "sub", "gone.md"))
        p = self.cli("ingest", "--sync", "s", "--db", "synced")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("synced synced: 1 added, 1 changed, 1 unchanged, 1 removed", p.stdout)
        # other/x.md is not under the walked root: it stays
        self.assertEqual(sorted(self.ids("synced")), ["other/x.md", "s/edit.md", "s/keep.md", "s/new.md"])
        doc = self.call("GET", "/api/dbs/synced/documents/s/edit.md")
        self.assertIn("herons", " ".join(c["text"] for c in doc["chunks"]))
        # nothing changed: nothing sent
        p = self.cli("ingest", "--sync", "s", "--db", "synced")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("0 added, 0 changed, 3 unchanged, 0 removed", p.stdout)
        # a sync into a collection that does not exist yet creates it
        p = self.cli("ingest", "--sync", "s", "--db", "fresh_sync")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("3 added", p.stdout)

    def test_watch_picks_up_a_new_file_and_a_deletion(self):
        write(self.path("w", "first.md"), "# First\n\nThe first note is about moles.\n")
        cmd = [harness.ragd_bin(), "ingest", "--watch", "w", "--db", "watched", "--url", self.server.url]
        proc = subprocess.Popen(cmd, cwd=self.dir, env=harness.base_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())

        def wait_ids(want, what):
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                if sorted(self.ids("watched")) == want:
                    return
                if proc.poll() is not None:
                    self.fail(f"--watch ended early: {proc.communicate()}")
                time.sleep(0.1)
            self.fail(f"{what}: the collection never became {want}: {self.ids('watched')}")

        wait_ids(["w/first.md"], "first sync")
        write(self.path("w", "deeper", "second.md"), "# Second\n\nThe second note is about voles.\n")
        wait_ids(["w/deeper/second.md", "w/first.md"], "a new file in a new folder")
        os.remove(self.path("w", "first.md"))
        wait_ids(["w/deeper/second.md"], "a deleted file")
        os.rename(self.path("w", "deeper", "second.md"), self.path("w", "moved.md"))
        wait_ids(["w/moved.md"], "a moved file")
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.fail("--watch did not end on SIGINT")
        self.assertEqual(proc.returncode, 0, (out, err))
        self.assertIn("stopped watching", err)

    def test_watch_does_not_resend_a_refused_file_until_it_changes(self):
        """A file the server refused (422) is remembered by --watch with its stat: later
        rounds skip it and say so; touching it sends it again."""
        write(self.path("wr", "bad.pdf"), b"%PDF-1.4 not really a PDF", "wb")
        write(self.path("wr", "a.md"), "# A\n\nThe a note is about shrews.\n")
        cmd = [harness.ragd_bin(), "ingest", "--watch", "wr", "--db", "watchref", "--url", self.server.url]
        proc = subprocess.Popen(cmd, cwd=self.dir, env=harness.base_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        rounds = []  # the "synced ..." line of each round, read as --watch prints them
        reader = threading.Thread(target=lambda: rounds.extend(
            l for l in proc.stdout if l.startswith("synced ")), daemon=True)
        reader.start()

        def wait_rounds(n, what):
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline and len(rounds) < n:
                if proc.poll() is not None:
                    self.fail(f"--watch ended early: {proc.communicate()}")
                time.sleep(0.1)
            self.assertGreaterEqual(len(rounds), n, f"{what}: round {n} never came")

        wait_rounds(1, "first sync")
        write(self.path("wr", "b.md"), "# B\n\nThe b note is about moles.\n")
        wait_rounds(2, "a new file")
        os.utime(self.path("wr", "bad.pdf"))
        wait_rounds(3, "the refused file touched")
        proc.send_signal(signal.SIGINT)
        try:
            err = proc.stderr.read()
            proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.fail("--watch did not end on SIGINT")
        summaries = [l for l in err.splitlines() if l.startswith("ragd: ") and " files: " in l]
        self.assertEqual(len(summaries), 3, err)
        self.assertIn("1 failed", summaries[0])
        self.assertIn("1 refused before and unchanged since", summaries[1])
        self.assertNotIn("failed", summaries[1])
        self.assertIn("1 failed", summaries[2])  # touched: sent again, refused again
        self.assertEqual(err.count("ragd: error: wr/bad.pdf"), 2, err)

    # ---------------------------------------------------------------- docs, rm, dbs

    def test_docs_and_rm(self):
        write(self.path("r", "one.md"), "# One\n\nThe first document is about eels.\n")
        write(self.path("r", "two.md"), "# Two\n\nThe second document is about carp.\n")
        write(self.path("r", "page.html"), "<html><head><title>Pike\tbiology</title></head><body><p>Pikes hunt.</p></body></html>")
        self.assertEqual(self.cli("ingest", "r", "--db", "docsrm").returncode, 0)
        p = self.cli("docs", "docsrm")
        self.assertEqual(p.returncode, 0, p)
        rows = {line.split()[0]: line for line in p.stdout.splitlines()}
        # the title ingest derived: the first markdown heading, the HTML <title> (blanks folded)
        self.assertTrue(rows["r/one.md"].endswith("  One"), rows)
        self.assertTrue(rows["r/two.md"].endswith("  Two"), rows)
        self.assertTrue(rows["r/page.html"].endswith("  Pike biology"), rows)
        self.assertIn("3 of 3 documents", p.stdout)
        p = self.cli("docs", "docsrm", "--json")
        self.assertEqual(p.returncode, 0, p)
        listing = json.loads(p.stdout)
        self.assertEqual(sorted(d["id"] for d in listing["documents"]), ["r/one.md", "r/page.html", "r/two.md"])
        self.assertEqual({d["id"]: d["title"] for d in listing["documents"]},
                         {"r/one.md": "One", "r/two.md": "Two", "r/page.html": "Pike biology"})
        self.assertEqual(listing["total"], 3)
        p = self.cli("rm", "docsrm", "r/one.md", "r/nope.md")
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("deleted r/one.md", p.stdout)
        self.assertIn("r/nope.md", p.stderr)
        self.assertIn("404", p.stderr)
        self.assertEqual(self.ids("docsrm"), ["r/page.html", "r/two.md"])
        p = self.cli("docs", "no_such_db")
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("no_such_db", p.stderr)

    def test_dbs_create_and_rm(self):
        p = self.cli("dbs", "create", "made", "--chunk-size", "500", "--embedder", "builtin")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("made created", p.stdout)
        self.assertEqual(self.call("GET", "/api/dbs/made")["chunk_size"], 500)
        p = self.cli("dbs", "create", "made", "--embedder", "nomic-embed-text")
        self.assertEqual(p.returncode, 1, p)  # the server's 422, one line
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p)
        p = self.cli("dbs", "rm", "made")  # stdin is not a terminal: --yes is required
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("--yes", p.stderr)
        self.call("GET", "/api/dbs/made")
        p = self.cli("dbs", "rm", "made", "--yes")
        self.assertEqual(p.returncode, 0, p)
        self.call("GET", "/api/dbs/made", status=404)
        p = self.cli("dbs", "frobnicate", "x")
        self.assertEqual(p.returncode, 2, p)

    def test_query_says_how_to_ingest(self):
        p = self.cli("query", "anything at all", "--db", "never_made")
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("ragd ingest PATH --db never_made", p.stderr)
        self.assertEqual(self.cli("dbs", "create", "left_empty").returncode, 0)
        p = self.cli("query", "anything at all", "--db", "left_empty")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("ragd ingest PATH --db left_empty", p.stdout)

    # ---------------------------------------------------------------- usage

    def test_help_lists_every_command_and_flag(self):
        p = self.cli("help")
        self.assertEqual(p.returncode, 0, p)
        for cmd in ("serve", "ingest", "query", "dbs", "dbs create", "dbs rm", "docs", "rm", "health",
                    "reembed", "config", "backup", "version"):
            self.assertIn(f"  {cmd}", p.stdout)
        p = self.cli("ingest", "--help")
        for flag in ("--db", "--id-prefix", "--sync", "--watch", "--all", "--batch", "--url",
                     "RAGD_MAX_BODY_BYTES"):
            self.assertIn(flag, p.stdout)
        p = harness.run_cli(["backup", "--help"])
        for flag in ("--data", "--force"):
            self.assertIn(flag, p.stdout)


class CliConfigTest(harness.E2ETestCase):
    class_server = False

    def test_config_redacts_secrets(self):
        key = "k3y-0f-the-e2e-test-aaaaaaaaaaaa"
        openai = "sk-openai-secret-bbbbbbbbbbbbbbbb"
        p = harness.run_cli(["config"], env={"RAGD_API_KEYS": key, "OPENAI_API_KEY": openai,
                                             "RAGD_CHUNK_SIZE": "800", "OLLAMA_BASE_URL": "http://me:pw@127.0.0.1:9",
                                             "RAGD_API_KEY": key, "RAGD_CHUNKSIZE": "1"})
        self.assertEqual(p.returncode, 0, p)
        out = p.stdout + p.stderr
        for secret in (key, openai, "pw@"):
            self.assertNotIn(secret, out)
        rows = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln.strip()}
        self.assertIn("(set, redacted", rows["RAGD_API_KEYS"])
        self.assertTrue(rows["RAGD_API_KEYS"].endswith("env"), rows["RAGD_API_KEYS"])
        self.assertIn("(set, redacted)", rows["OPENAI_API_KEY"])
        self.assertIn("(set, redacted)", rows["RAGD_API_KEY"])
        self.assertRegex(rows["RAGD_CHUNK_SIZE"], r"\s800\s+env$")
        self.assertRegex(rows["RAGD_CHUNK_OVERLAP"], r"\s150\s+default$")
        self.assertIn("RAGD_CHUNKSIZE is set but ragd reads no such variable", p.stderr)
        # the client's own URL may carry credentials too (a proxy in front of the server)
        p = harness.run_cli(["config"], env={"RAGD_URL": "https://me:clientpw@proxy:8443/?api_key=q1"})
        self.assertEqual(p.returncode, 0, p)
        self.assertNotIn("clientpw", p.stdout + p.stderr)
        self.assertNotIn("q1", p.stdout + p.stderr)
        self.assertIn("https://***@proxy:8443/", p.stdout)

    def test_error_messages_hide_the_urls_credentials(self):
        # nothing listens on port 9 of loopback: the message names the server it could not reach
        for url in ("http://me:clientpw@127.0.0.1:9", "http://me" + "x" * 300 + ":clientpw@127.0.0.1:9",
                    "http://me:clientpw@127.0.0.1:9/" + "p" * 300):
            with self.subTest(url=url[:40]):
                p = harness.run_cli(["health"], env={"RAGD_URL": url})
                self.assertEqual(p.returncode, 2, p)
                self.assertIn("cannot reach http://***@127.0.0.1:9", p.stderr)
                self.assertNotIn("clientpw", p.stderr)
        # an invalid value: the server would not start, and config says why
        p = harness.run_cli(["config"], env={"RAGD_CHUNK_SIZE": "12"})
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("RAGD_CHUNK_SIZE", p.stderr)


class CliBackupTest(harness.E2ETestCase):
    class_server = False

    def test_backup_while_serving_and_ingesting(self):
        srv = self.new_server()
        folder = tempfile.mkdtemp(prefix="ragd-e2e-backup-")
        self.addCleanup(shutil.rmtree, folder, True)
        for i in range(40):
            write(os.path.join(folder, "notes", f"n{i:02d}.md"),
                  f"# Note {i}\n\n" + f"The note number {i} is about the salamander {i}. " * 40 + "\n")
        p = harness.run_cli(["ingest", os.path.join(folder, "notes"), "--db", "bk", "--url", srv.url])
        self.assertEqual(p.returncode, 0, p)

        stop = threading.Event()
        written = []

        def keep_ingesting():  # writes all through the backup
            i = 0
            while not stop.is_set():
                r = srv.request("POST", "/api/ingest", json_body={"db": "bk", "documents": [
                    {"id": f"live/{i}", "text": f"Live document {i} about newts. " * 50}]})
                if r.status == 200:
                    written.append(i)
                i += 1

        t = threading.Thread(target=keep_ingesting)
        t.start()
        try:
            dest = os.path.join(folder, "copy.db")
            p = harness.run_cli(["backup", dest, "--data", srv.data_dir], timeout=120)
        finally:
            stop.set()
            t.join()
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("integrity_check ok", p.stdout)
        self.assertFalse(os.path.exists(dest + ".tmp"))
        db = sqlite3.connect(dest)
        try:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            n = db.execute("SELECT count(*) FROM documents").fetchone()[0]
        finally:
            db.close()
        self.assertGreaterEqual(n, 40)
        self.assertLessEqual(n, 40 + len(written) + 1)

        # no overwrite without --force; with it, a fresh copy
        p = harness.run_cli(["backup", dest, "--data", srv.data_dir])
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("--force", p.stderr)
        p = harness.run_cli(["backup", dest, "--data", srv.data_dir, "--force"])
        self.assertEqual(p.returncode, 0, p)
        # a missing data dir is named
        p = harness.run_cli(["backup", dest + "2", "--data", os.path.join(folder, "nowhere")])
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("--data", p.stderr)
        self.assertFalse(os.path.exists(dest + "2.tmp"))
        # PATH.tmp that is not ours (the user's file, or another backup's copy in progress)
        # is never removed without --force
        other = os.path.join(folder, "other.db")
        write(other + ".tmp", "the user's own file\n")
        p = harness.run_cli(["backup", other, "--data", srv.data_dir])
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("other.db.tmp exists", p.stderr)
        with open(other + ".tmp") as f:
            self.assertEqual(f.read(), "the user's own file\n")
        self.assertFalse(os.path.exists(other))
        p = harness.run_cli(["backup", other, "--data", srv.data_dir, "--force"])
        self.assertEqual(p.returncode, 0, p)
        self.assertFalse(os.path.exists(other + ".tmp"))
        # --force replaces a backup file, never a FIFO (or a device: /dev/full as root)
        fifo = os.path.join(folder, "pipe")
        os.mkfifo(fifo)
        p = harness.run_cli(["backup", fifo, "--data", srv.data_dir, "--force"])
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("not a regular file", p.stderr)
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))
        self.assertFalse(os.path.exists(fifo + ".tmp"))

        # the copy is a database ragd opens, holding the documents
        restored = self.new_server(start=False)
        shutil.copy(dest, os.path.join(restored.data_dir, "ragd.db"))
        restored.start()
        coll = self.call("GET", "/api/dbs/bk", srv=restored)
        self.assertGreaterEqual(coll["documents"], 40)
        body = self.call("POST", "/api/query", {"query": "salamander 7", "db": "bk", "method": "keyword"},
                         srv=restored)
        self.assertTrue(body["sources"], body)


if __name__ == "__main__":
    unittest.main()
