"""A full store: every write route answers 507 `insufficient_storage`, /health says
`degraded` with the reason in `services.store`, nothing already stored is lost, and once
there is space again the next write succeeds and /health is healthy again.

Two ways to fill the store: the store quota RAGD_MAX_DB_BYTES (always runs), and a really
full filesystem — a small tmpfs mounted on the data dir, when the tests run as root and
`mount` works here (skipped with the reason printed otherwise)."""

import errno
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import unittest

import harness

WORDS = ("anchor basket candle desert ember forest garden harbor island juniper kettle "
         "lantern meadow nectar orchard pepper quarry river saddle timber umber valley "
         "willow yonder zephyr").split()

KEEP = [{"id": f"keep{i}", "metadata": {"n": i},
         "text": f"Keeper record {i}: the archivist Philippa{i} shelves the brass astrolabe "
                 f"number {i * 17} in the east vault."} for i in range(5)]


def filler_text(i, size):
    rng = random.Random(i)
    words = [f"fillmark{i}"]
    length = 0
    while length < size:
        w = rng.choice(WORDS) + str(rng.randrange(1000))
        words.append(w)
        length += len(w) + 1
    return " ".join(words) + "."


class FullStoreCase(harness.E2ETestCase):
    class_server = False

    def health_store(self, srv):
        body = self.call("GET", "/health", srv=srv)
        return body["status"], body["services"]["store"]

    def assert_healthy(self, srv):
        status, store = self.health_store(srv)
        self.assertEqual(status, "healthy", store)
        self.assertIs(store["healthy"], True, store)

    def assert_full(self, srv):
        status, store = self.health_store(srv)
        self.assertEqual(status, "degraded", store)
        self.assertIs(store["healthy"], False, store)
        self.assertTrue(store["message"].startswith("disk full: "), store)
        # Reads still work, so the server stays ready (docs/api.md).
        self.call("GET", "/health/ready", srv=srv)
        return store

    def assert_keep_intact(self, srv, extra=0):
        self.assertEqual(self.call("GET", "/api/dbs/keep", srv=srv)["documents"], len(KEEP) + extra)
        for d in KEEP:
            doc = self.call("GET", f"/api/dbs/keep/documents/{d['id']}", srv=srv)
            self.assertEqual(doc["chunks"][0]["text"], d["text"])
        for method in ("vector", "keyword", "hybrid"):
            body = self.call("POST", "/api/query", {"query": "archivist Philippa3 astrolabe",
                                                    "db": "keep", "k": 3, "method": method},
                             srv=srv)
            self.assertEqual(body["sources"][0]["doc_id"], "keep3", method)

    def assert_507(self, r, what):
        err = self.assertEnvelope(r, 507, "insufficient_storage", what)
        self.assertIn("disk full", err["message"], what)
        return err


class StoreQuotaTest(FullStoreCase):
    QUOTA = 2 * 1024 * 1024

    def test_quota_full_then_space_returns(self):
        srv = self.new_server(env={"RAGD_MAX_DB_BYTES": str(self.QUOTA)})
        self.call("POST", "/api/ingest", {"db": "keep", "documents": KEEP}, srv=srv)
        self.assert_healthy(srv)
        _, store = self.health_store(srv)
        self.assertEqual(store["quota_bytes"], self.QUOTA)
        self.assertLessEqual(store["used_bytes"], self.QUOTA)

        # Fill: ~16 KB documents until the quota stops one.
        full = None
        for i in range(400):
            r = srv.request("POST", "/api/ingest", json_body={"db": "fill", "documents": [
                {"id": f"f{i}", "text": filler_text(i, 16000)}]})
            if r.status != 200:
                full = i
                err = self.assert_507(r, f"ingest f{i}")
                self.assertIn("RAGD_MAX_DB_BYTES", err["message"])
                break
        self.assertIsNotNone(full, "2 MB of quota never stopped an ingest")
        self.assertGreater(full, 0)

        store = self.assert_full(srv)
        self.assertIn("RAGD_MAX_DB_BYTES", store["message"])
        self.assertLessEqual(store["used_bytes"], self.QUOTA)
        # Nothing of the failed write is kept; everything before it is.
        self.assertEnvelope(srv.request("GET", f"/api/dbs/fill/documents/f{full}"), 404,
                            "document_not_found")
        self.assertEqual(self.call("GET", "/api/dbs/fill", srv=srv)["documents"], full)
        self.assert_keep_intact(srv)
        # The same write fails the same way, and so do smaller ones once the store is at
        # its limit: shrink until even a one-line document does not fit.
        self.assert_507(srv.request("POST", "/api/ingest", json_body={"db": "fill", "documents": [
            {"id": f"f{full}", "text": filler_text(full, 16000)}]}), "retry")
        size, attempt = 8000, 0
        while size >= 100:
            attempt += 1
            self.assertLess(attempt, 500, "small ingests never stopped fitting")
            r = srv.request("POST", "/api/ingest", json_body={"db": "fill", "documents": [
                {"id": f"small{attempt}", "text": filler_text(10000 + attempt, size)}]})
            if r.status == 200:
                continue  # it fitted: another of the same size
            self.assert_507(r, f"ingest of {size} bytes")
            size //= 2
        # Creating collections: each needs a little room; the first that needs a new page
        # is refused. Every answer is 201 or 507, never 500.
        created = refused = 0
        for i in range(300):
            r = srv.request("POST", "/api/dbs", json_body={"name": f"quota_coll_{i:03d}_" + "x" * 40})
            if r.status == 201:
                created += 1
                continue
            self.assert_507(r, f"create #{i}")
            refused += 1
            break
        self.assertEqual(refused, 1, f"{created} collections created, none refused")

        # Space comes back by deleting: a delete needs no new page.
        self.call("DELETE", "/api/dbs/fill/documents/f0", srv=srv)
        self.call("DELETE", "/api/dbs/fill", srv=srv)
        self.call("POST", "/api/ingest", {"db": "keep", "documents": [
            {"id": "after", "text": "Written once the quota had room again: the otter Bramwell."}]},
                  srv=srv)
        self.assert_healthy(srv)
        self.call("POST", "/api/dbs", {"name": "after_space"}, srv=srv, status=201)

        self.assertEqual(srv.stop(), 0)
        srv.restart()
        self.assert_keep_intact(srv, extra=1)
        self.assertEqual(srv.stop(), 0)

    def test_bad_quota_refused(self):
        data = tempfile.mkdtemp(prefix="ragd-e2e-badquota-")
        self.addCleanup(shutil.rmtree, data, True)
        for bad in ("abc", "-1", "1000", "1.5"):
            p = harness.run_cli(["serve"], env={"RAGD_MAX_DB_BYTES": bad,
                                                "RAGD_LISTEN": "127.0.0.1:0",
                                                "RAGD_DATA_DIR": data},
                                timeout=15)
            self.assertEqual(p.returncode, 2, (bad, p))
            self.assertIn("RAGD_MAX_DB_BYTES", p.stderr, bad)
        self.assertEqual(os.listdir(data), [], "a refused configuration must not open the store")


def largest_file(root):
    """The size of the largest file under root (the database, its WAL)."""
    sizes = [os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files]
    return max(sizes, default=0)


class FileSizeLimitTest(FullStoreCase):
    """RLIMIT_FSIZE (`ulimit -f`): a write past it fails with EFBIG (and SIGXFSZ, which kills
    a process that does not ignore it). ragd counts it as a full store: 507, /health full,
    nothing acknowledged lost; restarted without the limit, everything is there."""
    HEADROOM = 3 << 20

    def test_file_size_limit_is_storage_full(self):
        srv = self.new_server()
        self.call("POST", "/api/ingest", {"db": "keep", "documents": KEEP}, srv=srv)
        self.assertEqual(srv.stop(), 0)
        limit = largest_file(srv.data_dir) + self.HEADROOM
        # the soft limit only, so that the test can lift it in the running process
        srv.preexec = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        srv.restart()
        self.assert_healthy(srv)

        acked, refused = [], 0
        for i in range(400):
            r = srv.request("POST", "/api/ingest", json_body={"db": "fill", "documents": [
                {"id": f"f{i}", "text": filler_text(i, 16000)}]})
            self.assertTrue(srv.running(), f"ragd died at f{i} (SIGXFSZ?): {srv.returncodes}")
            if r.status == 200:
                self.assertEqual(refused, 0, f"f{i} stored after a refusal: {r!r}")
                acked.append(i)
                continue
            err = self.assert_507(r, f"ingest f{i}")
            self.assertIn("file-size limit", err["message"])
            refused += 1
            if refused == 3:
                break
        self.assertEqual(refused, 3, f"{limit} bytes of RLIMIT_FSIZE never stopped an ingest")
        self.assertGreater(len(acked), 0)
        store = self.assert_full(srv)
        self.assertIn("file-size limit", store["message"])
        self.assert_keep_intact(srv)
        self.assertEqual(self.call("GET", "/api/dbs/fill", srv=srv)["documents"], len(acked))
        self.assertLessEqual(largest_file(srv.data_dir), limit)

        # The limit lifted in the running process: the next write succeeds, /health clears.
        resource.prlimit(srv.pid(), resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.call("POST", "/api/ingest", {"db": "fill", "documents": [
            {"id": f"f{len(acked)}", "text": filler_text(len(acked), 16000)}]}, srv=srv)
        acked.append(len(acked))
        self.assert_healthy(srv)
        resource.prlimit(srv.pid(), resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        self.assert_507(srv.request("POST", "/api/ingest", json_body={"db": "fill", "documents": [
            {"id": "again", "text": filler_text(999, 16000)}]}), "limit set again")
        self.assertEqual(srv.stop(), 0)

        # Without the limit: every acknowledged document is there, and writes work again.
        srv.preexec = None
        srv.restart()
        self.assert_keep_intact(srv)
        self.assertEqual(self.call("GET", "/api/dbs/fill", srv=srv)["documents"], len(acked))
        for i in acked:
            doc = self.call("GET", f"/api/dbs/fill/documents/f{i}", srv=srv)
            self.assertTrue(doc["chunks"][0]["text"].startswith(f"fillmark{i} "), i)
        self.assertEnvelope(srv.request("GET", f"/api/dbs/fill/documents/f{len(acked)}"), 404,
                            "document_not_found")
        self.call("POST", "/api/ingest", {"db": "fill", "documents": [
            {"id": "after", "text": "Written once the limit was lifted: the heron Tamsin."}]}, srv=srv)
        self.assertEqual(self.call("GET", "/api/dbs/fill", srv=srv)["documents"], len(acked) + 1)
        self.assert_healthy(srv)
        self.assertEqual(srv.stop(), 0)


def tmpfs_unavailable():
    """None when a tmpfs can be mounted here, else the reason."""
    if os.geteuid() != 0:
        return "not running as root"
    probe = tempfile.mkdtemp(prefix="ragd-e2e-tmpfs-probe-")
    try:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return f"mount -t tmpfs failed: {p.stderr.strip() or p.returncode}"
        subprocess.run(["umount", probe], check=False)
        return None
    except OSError as e:
        return f"cannot run mount: {e}"
    finally:
        os.rmdir(probe)


def fill_filesystem(path):
    """Writes `path` until the filesystem has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


class RealDiskFullTest(FullStoreCase):
    TMPFS_SIZE = "16m"

    def setUp(self):
        reason = tmpfs_unavailable()
        if reason:
            print(f"\n[e2e] skipping the real disk-full test: {reason}", file=sys.stderr)
            self.skipTest(reason)
        super().setUp()

    def mount_tmpfs(self, srv):
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.TMPFS_SIZE},mode=0755", "tmpfs",
                        srv.data_dir], check=True, capture_output=True)

        def unmount():
            srv.kill()
            if subprocess.run(["umount", srv.data_dir], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", srv.data_dir], capture_output=True)
        self.addCleanup(unmount)

    def test_enospc_then_space_returns(self):
        srv = self.new_server(start=False)
        self.mount_tmpfs(srv)
        srv.start()
        self.call("POST", "/api/ingest", {"db": "keep", "documents": KEEP}, srv=srv)
        self.call("POST", "/api/dbs", {"name": "spare"}, srv=srv, status=201)
        self.assert_healthy(srv)

        filler = os.path.join(srv.data_dir, "filler")
        fill_filesystem(filler)
        st = os.statvfs(srv.data_dir)
        self.assertEqual(st.f_bavail, 0, "precondition: the tmpfs is full")

        # Every write route: 507, nothing of it kept.
        self.assert_507(srv.request("POST", "/api/ingest", json_body={"db": "keep", "documents": [
            {"id": "nospace", "text": filler_text(1, 20000)}]}), "ingest")
        store = self.assert_full(srv)
        self.assertIn("no space", store["message"])
        self.assert_507(srv.request("POST", "/api/dbs", json_body={"name": "nospace_coll"}),
                        "create collection")
        self.assert_507(srv.request("DELETE", "/api/dbs/keep/documents/keep0"), "delete document")
        self.assert_507(srv.request("DELETE", "/api/dbs/spare"), "drop collection")
        self.assertEnvelope(srv.request("GET", "/api/dbs/keep/documents/nospace"), 404,
                            "document_not_found")
        self.assertEnvelope(srv.request("GET", "/api/dbs/nospace_coll"), 404, "db_not_found")
        self.call("GET", "/api/dbs/spare", srv=srv)
        self.assert_keep_intact(srv)
        self.assert_full(srv)

        # Space returns: the next write succeeds and health recovers.
        os.unlink(filler)
        self.call("POST", "/api/ingest", {"db": "keep", "documents": [
            {"id": "nospace", "text": filler_text(1, 20000)}]}, srv=srv)
        self.assert_healthy(srv)
        self.call("POST", "/api/dbs", {"name": "nospace_coll"}, srv=srv, status=201)
        self.call("DELETE", "/api/dbs/spare", srv=srv)

        self.assertEqual(srv.stop(), 0)
        srv.restart()
        self.assert_keep_intact(srv, extra=1)
        self.call("GET", "/api/dbs/nospace_coll", srv=srv)
        self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    unittest.main()
