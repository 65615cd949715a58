"""Ingest has its own worker pool (RAGD_INGEST_WORKERS, niced threads): on the true defaults,
queries and retrieval answer while large ingests hold every ingest worker. Ordering, not
timing: each query's response arrives before any ingest's."""
import random
import threading
import time
import unittest

import harness

WORDS = ("basalt caldera magma tephra pumice lahar fumarole vent crater ash plume dome rift "
         "summit lava flow obsidian scoria geyser sulfur eruption column strata tuff").split()


def big_text(seed, n_bytes):
    """Plain text of about n_bytes: sentences of random words, so thousands of chunks."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_bytes:
        s = " ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + ".\n"
        out.append(s)
        size += len(s)
    return "".join(out).encode()


class IngestPoolTest(harness.E2ETestCase):
    server_env = {}  # the true defaults: one ingest worker per core, builtin embedder

    def test_queries_answer_while_ingests_hold_every_ingest_worker(self):
        self.call("POST", "/api/ingest", {"db": "small", "documents": [
            {"id": "k", "text": "Krakatoa erupted in 1883 and was heard 4,800 km away."}]})
        stats = self.call("GET", "/api/pool/stats")
        threads = stats["ingest_workers"]["threads"]
        self.assertGreaterEqual(threads, 1)
        health = self.call("GET", "/health")
        self.assertEqual(health["pools"]["ingest_workers"]["threads"], threads)
        self.assertEqual(health["pools"]["workers"]["threads"], stats["workers"]["threads"])

        # three ingests per ingest worker: every one busy, two rounds queued
        n_ingests = 3 * threads
        bodies = [big_text(i, 3 << 20) for i in range(n_ingests)]
        order, lock = [], threading.Lock()

        def ingest(i):
            r = self.server.request("POST", f"/api/ingest?db=big{i}&id=big{i}", body=bodies[i],
                                    content_type="text/plain", timeout=300)
            with lock:
                order.append(("ingest", r.status, r.body.get("chunks") if isinstance(r.body, dict) else None))

        workers = [threading.Thread(target=ingest, args=(i,)) for i in range(n_ingests)]
        for t in workers:
            t.start()
        # wait (by state, not by time) until every ingest worker is busy and one waits
        while True:
            s = self.call("GET", "/api/pool/stats")["ingest_workers"]
            if s["busy"] == threads and s["queued"] >= n_ingests - threads:
                break
            with lock:
                self.assertEqual(order, [], "an ingest ended before all ingest workers were busy: make them larger")
            time.sleep(0.01)
        r = self.server.request("POST", "/api/retrieve", json_body={"db": "small", "query": "When did Krakatoa erupt?"})
        with lock:
            order.append(("retrieve", r.status, None))
        q = self.server.request("POST", "/api/query", json_body={"db": "small", "query": "When did Krakatoa erupt?"})
        with lock:
            order.append(("query", q.status, None))
        # FIFO: on a pool shared with ingest, both would have waited until every queued
        # ingest had started; here ingests queued before them have still not started
        still_queued = self.call("GET", "/api/pool/stats")["ingest_workers"]["queued"]
        for t in workers:
            t.join()
        self.assertGreaterEqual(still_queued, 1, order)
        kinds = [k for k, _, _ in order]
        self.assertEqual(kinds[:2], ["retrieve", "query"], order)
        self.assertTrue(all(status == 200 for _, status, _ in order), order)
        self.assertTrue(all(chunks and chunks >= 1000 for k, _, chunks in order if k == "ingest"), order)


class IngestQueueFullTest(harness.E2ETestCase):
    """One ingest thread and a queue of one: a third ingest is shed with a 503 that says
    what is full in the user's words and names the settings to raise."""
    server_env = {"RAGD_INGEST_WORKERS": "1", "RAGD_WORKER_QUEUE": "1", "RAGD_EMBEDDER": "builtin"}

    def test_a_full_ingest_queue_names_its_settings(self):
        bodies = [big_text(100 + i, 6 << 20) for i in range(4)]
        results, lock = [], threading.Lock()

        def ingest(i):
            r = self.server.request("POST", f"/api/ingest?db=full{i}&id=f{i}", body=bodies[i],
                                    content_type="text/plain", timeout=300)
            with lock:
                results.append((r.status, r.body["error"]["message"] if r.status != 200 else ""))

        def stats():
            return self.call("GET", "/api/pool/stats")["ingest_workers"]

        shed = None
        # one ingest runs, then a second waits (each seen by state, not by time), then one
        # more is sent; should the running one end first, a second pair tries again
        for pair in range(2):
            first = threading.Thread(target=ingest, args=(2 * pair,))
            second = threading.Thread(target=ingest, args=(2 * pair + 1,))
            first.start()
            while first.is_alive() and stats()["busy"] != 1:
                time.sleep(0.01)
            second.start()
            while first.is_alive():
                s = stats()
                if s["busy"] == 1 and s["queued"] == 1:
                    r = self.server.request("POST", "/api/ingest?db=extra&id=x", body=b"One more document.\n",
                                            content_type="text/plain")
                    if r.status == 503:
                        shed = r
                    break
                time.sleep(0.01)
            first.join()
            second.join()
            if shed is not None:
                break
        self.assertIsNotNone(shed, "no ingest was shed while one ran and one waited")
        self.assertEnvelope(shed, 503, "overloaded")
        self.assertEqual(shed.headers.get("Retry-After"), "1")
        msg = shed.body["error"]["message"]
        self.assertIn("1 ingest requests are already waiting for the ingest threads", msg)
        for setting in ("RAGD_WORKER_QUEUE", "RAGD_INGEST_WORKERS"):
            self.assertIn(setting, msg)
        self.assertNotIn("worker queue", msg)
        self.assertTrue(all(status == 200 for status, _ in results), results)


if __name__ == "__main__":
    unittest.main()
