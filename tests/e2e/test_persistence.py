"""Data survives restarts (graceful and kill -9); the command-line client ingests a folder
and queries it."""

import os
import random
import shutil
import tempfile
import unittest

import harness

DOCS = [
    {"id": "p_moth", "metadata": {"kind": "insect"},
     "text": "The peppered moth darkened during the industrial revolution because soot "
             "blackened the birch trees it rests on. Dark moths hid better from birds."},
    {"id": "p_sundial", "metadata": {"kind": "tool"},
     "text": "A sundial tells the time from the shadow of its gnomon, which must point at the "
             "celestial pole to be accurate all year."},
    {"id": "p_kelp", "metadata": {"kind": "plant"},
     "text": "Giant kelp can grow half a metre in a single day, forming underwater forests "
             "that shelter sea otters and urchins."},
    {"id": "p_abacus", "metadata": {"kind": "tool"},
     "text": "The soroban is a Japanese abacus with one bead above the bar and four below in "
             "each rod; skilled users calculate faster than with a pocket calculator."},
]

QUESTIONS = ["Why did the peppered moth become darker?", "How fast does giant kelp grow?",
             "How many beads does a soroban have?"]

WORDS = ("river stone window basket candle garden bridge forest meadow harbor pencil ladder "
         "market button lantern pocket saddle kettle blanket cottage orchard compass whistle "
         "feather mirror pillow carpet barrel shovel hammer anchor cabin valley canyon desert "
         "island castle tower village farmer baker tailor sailor painter singer dancer "
         "teacher doctor pilot walks carries paints finds builds opens closes watches "
         "follows gathers mends sells buys counts sorts washes folds polishes quietly "
         "slowly gently bravely early late often seldom yellow green silver wooden woolen "
         "copper narrow wide ancient modern tiny huge").split()

FACT_FILE = 137
FACT = ("The retired lighthouse keeper Obadiah Quillfeather hides the spare key of the "
        "boathouse under the seventh blue stone, and the password is PURPLE-WALRUS-7.")
FACT_QUESTION = "Where does Obadiah Quillfeather hide the spare key?"


def note_text(i, rng):
    sentences = [f"This is note number {i} of the e2e folder."]
    for _ in range(rng.randint(5, 9)):
        n = rng.randint(7, 13)
        words = [rng.choice(WORDS) for _ in range(n)]
        sentences.append(" ".join(words).capitalize() + ".")
    if i == FACT_FILE:
        sentences.insert(3, FACT)
    return " ".join(sentences) + "\n"


def make_folder(root, count=300):
    rng = random.Random(20240601)
    os.makedirs(os.path.join(root, "sub", "deeper"))
    paths = []
    for i in range(count):
        # a few files in sub-folders: the CLI walks whole folders
        sub = "" if i % 50 else os.path.join("sub", "deeper" if i % 100 == 0 else "")
        path = os.path.join(root, sub, f"note_{i:03d}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(note_text(i, rng))
        paths.append(path)
    return paths


def source_names(s):
    """The strings that identify where a source came from."""
    meta = s.get("metadata") or {}
    return " ".join(str(x) for x in (s.get("doc_id"), s.get("source"), meta.get("source")) if x)


class PersistenceTest(harness.E2ETestCase):
    class_server = False

    def ask(self, srv, question, **extra):
        payload = {"query": question, "db": "persist", "k": 3, "use_cache": False}
        payload.update(extra)
        body = self.call("POST", "/api/query", payload, srv=srv)
        return {"answer": body["answer"], "ids": [s["id"] for s in body["sources"]],
                "distances": body["distances"], "documents": body["documents"]}

    def test_sigterm_restart_same_answers(self):
        srv = self.new_server()
        res = self.call("POST", "/api/ingest", {"db": "persist", "documents": DOCS}, srv=srv)
        self.assertEqual(res["documents"], len(DOCS))
        before = {(q, m): self.ask(srv, q, method=m)
                  for q in QUESTIONS for m in ("hybrid", "keyword", "vector")}
        self.assertIn("p_moth#0", before[(QUESTIONS[0], "hybrid")]["ids"])
        dbs_before = self.call("GET", "/api/dbs", srv=srv)["dbs"]
        doc_before = self.call("GET", "/api/dbs/persist/documents/p_kelp", srv=srv)
        self.assertEqual(srv.stop(), 0)

        for round_ in (1, 2):  # two restarts: a restart must not change anything either
            srv.restart()
            for key, want in before.items():
                with self.subTest(round=round_, question=key):
                    got = self.ask(srv, key[0], method=key[1])
                    self.assertEqual(got["answer"], want["answer"])
                    self.assertEqual(got["ids"], want["ids"])
                    self.assertEqual(got["documents"], want["documents"])
                    for a, b in zip(got["distances"], want["distances"]):
                        self.assertAlmostEqual(a, b, places=5)
            self.assertEqual(self.call("GET", "/api/dbs", srv=srv)["dbs"], dbs_before)
            doc = self.call("GET", "/api/dbs/persist/documents/p_kelp", srv=srv)
            self.assertEqual(doc["chunks"], doc_before["chunks"])
            self.assertEqual(doc["metadata"], doc_before["metadata"])
            self.assertEqual(srv.stop(), 0)

    def test_sigterm_leaves_no_wal(self):
        """A clean shutdown checkpoints the WAL into the database file and removes it
        (docs/internals/store.md: the write connection closes last)."""
        srv = self.new_server()
        rng = random.Random(7)
        for batch in range(4):
            docs = [{"id": f"wal{batch}_{i}",
                     "text": " ".join(rng.choice(WORDS) for _ in range(1500)) + f" walmarker{batch}x{i}."}
                    for i in range(10)]
            self.call("POST", "/api/ingest", {"db": "walgrow", "documents": docs}, srv=srv)
        wal = os.path.join(srv.data_dir, "ragd.db-wal")
        size = os.path.getsize(wal) if os.path.exists(wal) else 0
        self.assertGreater(size, 256 * 1024, "precondition: the ingests should have grown the WAL")
        self.assertEqual(srv.stop(), 0)
        left = os.path.getsize(wal) if os.path.exists(wal) else 0
        self.assertEqual(left, 0, f"{wal} is {left} bytes after a clean shutdown (was {size})")

        srv.restart()
        coll = self.call("GET", "/api/dbs/walgrow", srv=srv)
        self.assertEqual(coll["documents"], 40)
        body = self.call("POST", "/api/query", {"query": "walmarker3x9", "db": "walgrow", "k": 1,
                                                "method": "keyword"}, srv=srv)
        self.assertEqual(body["sources"][0]["doc_id"], "wal3_9")
        self.assertEqual(srv.stop(), 0)

    def test_kill9_after_ack_keeps_data(self):
        srv = self.new_server()
        self.call("POST", "/api/dbs", {"name": "k9_empty", "chunk_size": 300, "chunk_overlap": 30},
                  srv=srv, status=201)
        texts = {}
        for i in range(20):
            text = (f"Record {i}: the courier pigeon named Bartholomew{i} carried message "
                    f"number {i * 31} across the valley.")
            texts[f"kp{i}"] = text
            self.call("POST", "/api/ingest",
                      {"db": "persist", "documents": [{"id": f"kp{i}", "text": text}]}, srv=srv)
        texts["kp0"] = "Replaced: the carrier falcon Gwendolyn brought the final report."
        self.call("POST", "/api/ingest",
                  {"db": "persist", "documents": [{"id": "kp0", "text": texts["kp0"]}]}, srv=srv)
        self.call("DELETE", "/api/dbs/persist/documents/kp1", srv=srv)
        del texts["kp1"]
        self.call("POST", f"/api/ingest?db=persist&id=kp_raw&source=raw.txt", srv=srv,
                  body="Raw body: the stork Ignatius delivered the last parcel.",
                  content_type="text/plain")
        texts["kp_raw"] = "Raw body: the stork Ignatius delivered the last parcel."
        srv.kill()  # kill -9 right after the last acknowledgement

        srv.restart()
        coll = self.call("GET", "/api/dbs/persist", srv=srv)
        self.assertEqual(coll["documents"], len(texts))
        for doc_id, text in texts.items():
            doc = self.call("GET", f"/api/dbs/persist/documents/{doc_id}", srv=srv)
            self.assertEqual(doc["chunks"][0]["text"], text, doc_id)
        r = srv.request("GET", "/api/dbs/persist/documents/kp1")
        self.assertEnvelope(r, 404, "document_not_found")
        empty = self.call("GET", "/api/dbs/k9_empty", srv=srv)
        self.assertEqual(empty["chunk_size"], 300)
        # the in-memory index was rebuilt from the store
        for method in ("vector", "keyword", "hybrid"):
            body = self.call("POST", "/api/query", {"query": "carrier falcon Gwendolyn",
                                                    "db": "persist", "k": 3, "method": method},
                             srv=srv)
            self.assertEqual(body["sources"][0]["doc_id"], "kp0", method)
            body = self.call("POST", "/api/query", {"query": "Bartholomew17 courier pigeon",
                                                    "db": "persist", "k": 3, "method": method},
                             srv=srv)
            self.assertIn("kp17", [s["doc_id"] for s in body["sources"]], method)
        body = self.call("POST", "/api/query", {"query": "Bartholomew1 pigeon", "db": "persist",
                                                "k": 25, "method": "keyword"}, srv=srv)
        self.assertNotIn("kp1", [s["doc_id"] for s in body["sources"]])
        self.assertEqual(srv.stop(), 0)


class CliTest(harness.E2ETestCase):
    """The command-line client against a running server."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.folder = tempfile.mkdtemp(prefix="ragd-e2e-folder-")
        cls.addClassCleanup(shutil.rmtree, cls.folder, True)
        cls.paths = make_folder(cls.folder)
        cls.ingest = harness.run_cli(["ingest", cls.folder, "--url", cls.server.url, "--db", "files"],
                                     timeout=90)

    def cli(self, *args, timeout=30):
        return harness.run_cli(list(args), timeout=timeout)

    def assert_one_line_error(self, proc):
        self.assertNotEqual(proc.returncode, 0, proc)
        err = proc.stderr.strip()
        self.assertTrue(err, proc)
        self.assertEqual(len(err.splitlines()), 1, f"want a one-line message, got {proc.stderr!r}")

    def test_folder_ingest(self):
        p = self.ingest
        self.assertEqual(p.returncode, 0, f"stdout={p.stdout!r} stderr={p.stderr!r}")
        coll = self.call("GET", "/api/dbs/files")
        self.assertEqual(coll["documents"], len(self.paths))
        body = self.call("POST", "/api/query", {"query": FACT_QUESTION, "db": "files", "k": 5})
        hits = [s for s in body["sources"] if "Quillfeather" in s["text"]]
        self.assertTrue(hits, [source_names(s) for s in body["sources"]])
        self.assertIn(f"note_{FACT_FILE:03d}.txt", source_names(hits[0]))
        self.assertEqual(body["sources"][0]["text"], hits[0]["text"])
        self.assertIn("Quillfeather", body["answer"])
        # a file in a sub-folder made it too
        body = self.call("POST", "/api/query", {"query": "note number 100 of the e2e folder",
                                                "db": "files", "k": 5, "method": "keyword"})
        self.assertTrue(any("note_100.txt" in source_names(s) for s in body["sources"]),
                        [source_names(s) for s in body["sources"]])
        # ingesting the same folder again changes nothing
        again = self.cli("ingest", self.folder, "--url", self.server.url, "--db", "files",
                         timeout=90)
        self.assertEqual(again.returncode, 0, again)
        self.assertEqual(self.call("GET", "/api/dbs/files")["documents"], len(self.paths))

    def test_query_command(self):
        self.assertEqual(self.ingest.returncode, 0)
        p = self.cli("query", FACT_QUESTION, "--db", "files", "--url", self.server.url)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("Quillfeather", p.stdout)
        self.assertIn(f"note_{FACT_FILE:03d}.txt", p.stdout)
        self.assertRegex(p.stdout, r"\[1\]")
        p = self.cli("query", FACT_QUESTION, "--db", "files", "--k", "1", "--stream",
                     "--url", self.server.url)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("Quillfeather", p.stdout)
        p = self.cli("query", "anything", "--db", "no_such_db", "--url", self.server.url)
        self.assert_one_line_error(p)
        self.assertIn("no_such_db", p.stderr)
        p = self.cli("query", "anything", "--k", "0", "--url", self.server.url)
        self.assertNotEqual(p.returncode, 0, p)

    def test_dbs_command(self):
        self.assertEqual(self.ingest.returncode, 0)
        p = self.cli("dbs", "--url", self.server.url)
        self.assertEqual(p.returncode, 0, p)
        line = next((ln for ln in p.stdout.splitlines() if "files" in ln), None)
        self.assertIsNotNone(line, p.stdout)
        self.assertIn(str(len(self.paths)), line)

    def test_health_command(self):
        p = self.cli("health", "--url", self.server.url)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("healthy", p.stdout)
        dead = f"http://127.0.0.1:{harness.free_port()}"
        p = self.cli("health", "--url", dead)
        self.assertEqual(p.returncode, 2, p)
        self.assertTrue(p.stderr.strip(), p)

    def test_unreachable_and_usage(self):
        dead = f"http://127.0.0.1:{harness.free_port()}"
        self.assert_one_line_error(self.cli("query", "hello", "--url", dead))
        self.assert_one_line_error(self.cli("dbs", "--url", dead))
        self.assert_one_line_error(self.cli("ingest", self.paths[0], "--url", dead))
        p = self.cli("ingest", os.path.join(self.folder, "does-not-exist"), "--url", self.server.url)
        self.assertNotEqual(p.returncode, 0, p)
        self.assertTrue(p.stderr.strip())
        p = self.cli("version")
        self.assertEqual(p.returncode, 0, p)
        self.assertTrue(p.stdout.strip())
        p = self.cli("--help")
        self.assertEqual(p.returncode, 0, p)
        for cmd in ("serve", "ingest", "query", "dbs", "health"):
            self.assertIn(cmd, p.stdout)
        p = self.cli("query", "--help")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("--db", p.stdout)
        p = self.cli("no-such-command")
        self.assertNotEqual(p.returncode, 0, p)
        self.assertTrue(p.stderr.strip())


if __name__ == "__main__":
    unittest.main()
