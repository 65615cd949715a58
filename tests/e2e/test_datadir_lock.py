"""One server per data directory: a second `ragd serve` on a directory another ragd is
serving exits 2 with a message naming the directory and the other process, and the lock
goes away with the process that held it (SIGTERM or kill -9)."""

import unittest

import harness

DOC = {"id": "lk1", "text": "The lockkeeper Ottoline opens the canal gates at dawn for the barges."}


class DataDirLockTest(harness.E2ETestCase):
    class_server = False

    def on_same_dir(self, first):
        """A server (not started) whose data dir is first's."""
        srv = harness.Server(name=self._testMethodName + "-2")
        self.addCleanup(srv.cleanup)
        srv.data_dir = first.data_dir
        self._watch(srv)
        return srv

    def assert_has_doc(self, srv):
        doc = self.call("GET", "/api/dbs/locked/documents/lk1", srv=srv)
        self.assertEqual(doc["chunks"][0]["text"], DOC["text"])

    def test_second_server_refused(self):
        first = self.new_server()
        self.call("POST", "/api/ingest", {"db": "locked", "documents": [DOC]}, srv=first)

        second = self.on_same_dir(first)
        second.spawn()
        rc = second.wait_exit(timeout=15)
        log = second.log_text()
        self.assertEqual(rc, 2, f"the second server should refuse to start\n{log}")
        self.assertIn(first.data_dir, log)
        self.assertIn(f"pid {first.pid()}", log)
        self.assertIn("another ragd", log)

        # The first one is unaffected: it still reads, writes and is ready.
        self.assertTrue(first.running())
        self.call("GET", "/health/ready", srv=first)
        self.call("POST", "/api/ingest", {"db": "locked", "documents": [
            {"id": "lk2", "text": "A second record written after the refused start."}]}, srv=first)
        self.assert_has_doc(first)
        self.assertEqual(first.stop(), 0)

        # With the first gone, a new server starts on the same directory.
        third = self.on_same_dir(first)
        third.start()
        self.assert_has_doc(third)
        self.assertEqual(self.call("GET", "/api/dbs/locked", srv=third)["documents"], 2)
        self.assertEqual(third.stop(), 0)

    def test_kill9_releases_lock(self):
        """The lock is a flock: the kernel drops it when its holder dies, however it dies.
        (A pid-file lock left behind by kill -9 would fail this.)"""
        first = self.new_server()
        self.call("POST", "/api/ingest", {"db": "locked", "documents": [DOC]}, srv=first)
        first.kill()
        second = self.on_same_dir(first)
        second.start()
        self.assert_has_doc(second)
        self.assertEqual(second.stop(), 0)


if __name__ == "__main__":
    unittest.main()
