"""Re-embedding survives kill -9 at seeded random moments (docs/internals/reembed.md).

Ten kill points, RAGD_E2E_SEED (default 1) picks them: a collection moved back and forth
between the builtin embedder and the fake's model, with ingests and deletes during the jobs,
the server killed at a random delay (within the first batches, mid-job, around the swap)
and restarted each time. After every restart: the collection answers GET with every
document ingested and not deleted, and a vector search finds candidates (the index's
dimension is the collection's); at the end the last job finishes and the same holds."""
import os
import random
import sys
import time
import unittest

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "fake_ollama"))
import fake_ollama  # noqa: E402

KILLS = 10
WAIT_S = 120  # an upper bound for the last job, not a speed assertion
BUILTIN = "ragd-hash-v1-512"


def doc(i):
    return {"id": f"d{i}", "text": f"The tapir number {i} lives near river {i * 7 + 3}."}


class ReembedKillTest(harness.E2ETestCase):
    class_server = False

    def test_kill_at_seeded_random_moments(self):
        rnd = random.Random(int(os.environ.get("RAGD_E2E_SEED", "1")))
        fake = fake_ollama.FakeOllama(port=0, admin_port=0)
        fake.start()
        self.addCleanup(fake.stop)
        srv = self.new_server(env={"RAGD_EMBEDDER": "ollama", "OLLAMA_BASE_URL": fake.url,
                                   "RAGD_GENERATOR": "extractive", "RAGD_BREAKER_FAILURES": "1000"})
        self.call("POST", "/api/dbs", {"name": "big"}, status=201, srv=srv)
        self.call("POST", "/api/ingest", {"db": "big", "documents": [doc(i) for i in range(1200)]}, srv=srv)
        expected = {f"d{i}" for i in range(1200)}
        fake.configure(embed_input_ms=1.0)  # a job of ~1 s: the kills land before, in and after it
        next_id = 1200

        def check(when):
            coll = self.call("GET", "/api/dbs/big", srv=srv)
            self.assertEqual(coll["documents"], len(expected), (when, coll))
            probe = int(rnd.choice(sorted(expected))[1:])
            res = self.call("POST", "/api/retrieve", {"db": "big", "method": "vector", "k": 5, "use_cache": False,
                                                      "query": f"The tapir number {probe} lives near river {probe * 7 + 3}"},
                            srv=srv)
            self.assertTrue(res["sources"], (when, coll, res))
            return coll

        for k in range(KILLS):
            coll = check(f"before kill {k}")
            job = coll.get("reembed")
            if not job or job["state"] != "running":
                body = ({"embedder": "builtin"} if coll["embed_model"] != BUILTIN
                        else {"embedder": "ollama", "model": "nomic-embed-text"})
                self.call("POST", "/api/dbs/big/reembed", body, status=202, srv=srv)
            if rnd.random() < 0.7:  # an ingest during the job (embedded by the old model)
                new = [doc(i) for i in range(next_id, next_id + rnd.randint(1, 40))]
                next_id += len(new)
                r = srv.request("POST", "/api/ingest", json_body={"db": "big", "documents": new})
                if r.status == 200:
                    expected.update(d["id"] for d in new)
                else:  # only a swap that committed under it may refuse it
                    self.assertEqual(r.status, 409, r)
            if rnd.random() < 0.5:
                victim = rnd.choice(sorted(expected))
                self.call("DELETE", f"/api/dbs/big/documents/{victim}", srv=srv)
                expected.discard(victim)
            time.sleep(rnd.choice([rnd.uniform(0, 0.05), rnd.uniform(0, 0.6), rnd.uniform(0.3, 2.0)]))
            srv.kill()
            srv.restart()
        check("after the last restart")
        deadline = time.monotonic() + WAIT_S
        coll = None
        while time.monotonic() < deadline:
            coll = self.call("GET", "/api/dbs/big", srv=srv)
            if not coll.get("reembed") or coll["reembed"]["state"] != "running":
                break
            time.sleep(0.1)
        self.assertEqual(coll["reembed"]["state"], "done", coll)
        self.assertEqual(coll["reembed"]["done"], len(expected), coll)
        self.assertEqual(coll["embed_model"], coll["reembed"]["model"], coll)
        check("after the last job")


if __name__ == "__main__":
    unittest.main()
