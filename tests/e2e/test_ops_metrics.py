"""/metrics after real traffic, checked whole by `promtool check metrics` (Debian's
prometheus package, fetched by scripts/promtool.sh: apt-get download + dpkg -x into build/).
Traffic: an ingest embedded upstream, queries by every method (one answered from the cache),
a retrieval, a 404, and a second backend that is down so that breaker and failure series
exist. A missing promtool fails the test: there is no silent skip."""

import os
import re
import subprocess
import tempfile
import time
import unittest

import harness

DOCS = [{"id": f"d{i}", "text": f"Document {i}: Krakatoa erupted in 1883; Etna is on Sicily; tides follow the Moon."}
        for i in range(12)]


def promtool():
    script = os.path.join(harness.project_root(), "scripts", "promtool.sh")
    p = subprocess.run([script], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise AssertionError(f"promtool is needed and could not be had: {p.stderr.strip()}")
    return p.stdout.strip().splitlines()[-1]


def sample(text, name, **labels):
    """The value of the one sample of `name` whose labels include `labels`; None if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


class MetricsExpositionTest(harness.E2ETestCase):
    class_server = False

    def test_promtool_accepts_the_exposition_after_real_traffic(self):
        tool = promtool()
        fake = self.start_fake_ollama()
        dead = harness.free_port()  # nothing listens there
        srv = self.new_server(env={
            "OLLAMA_BASE_URL": f"{fake.url},http://127.0.0.1:{dead}",
            "RAGD_EMBEDDER": "ollama",
            "RAGD_EMBED_BATCH": "8",
            "RAGD_BREAKER_FAILURES": "1",
            "RAGD_WORKERS": "3",
            "RAGD_INGEST_WORKERS": "1",
            "RATE_LIMIT_QUERY": "6/minute",  # the traffic below sends 6 query-limited requests
        })
        r = srv.request("POST", "/api/ingest", json_body={"db": "m", "documents": DOCS},
                        headers={"X-Request-ID": "ops-ingest-1"})
        self.assertEqual(r.status, 200, r)
        for method in ("hybrid", "vector", "keyword"):
            self.call("POST", "/api/query", {"query": "When did Krakatoa erupt?", "db": "m", "method": method}, srv=srv)
        self.call("POST", "/api/query", {"query": "When did Krakatoa erupt?", "db": "m", "method": "hybrid"}, srv=srv)
        self.call("POST", "/api/retrieve", {"query": "Etna", "db": "m", "method": "keyword"}, srv=srv)
        self.assertEnvelope(srv.request("GET", "/api/dbs/none"), 404, "db_not_found")
        r = srv.request("POST", "/api/embed", json_body={"model": "nomic-embed-text", "input": ["hello", "world"]},
                        headers={"X-Request-ID": "ops-embed-1"})
        self.assertEqual(r.status, 200, r)
        self.assertEnvelope(srv.request("POST", "/api/retrieve", json_body={"query": "Etna", "db": "m"}),
                            429, "rate_limited")
        r = srv.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        text = r.raw.decode()

        with tempfile.NamedTemporaryFile("w", suffix=".prom", delete=False) as f:
            f.write(text)
            path = f.name
        self.addCleanup(os.unlink, path)
        with open(path) as f:
            p = subprocess.run([tool, "check", "metrics"], stdin=f, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, f"promtool check metrics:\n{p.stdout}{p.stderr}")
        self.assertEqual((p.stdout + p.stderr).strip(), "", "promtool reported lint problems")

        up = re.escape(fake.url.split("://", 1)[1])
        chat = [ln for ln in text.splitlines()
                if ln.startswith("ragd_upstream_request_duration_seconds_count{") and 'op="chat"' in ln]
        self.assertTrue(any(re.search(up, ln) for ln in chat), chat)
        self.assertTrue(sample(text, "ragd_upstream_request_duration_seconds_bucket", op="embed", le="120") > 0)
        batches = [ln for ln in text.splitlines() if ln.startswith("ragd_embed_batch_size")]
        self.assertGreaterEqual(sample(text, "ragd_embed_batch_size_count"), 2, batches)
        self.assertEqual(sample(text, "ragd_embed_batch_size_bucket", le="8"),
                         sample(text, "ragd_embed_batch_size_count"), "no batch over RAGD_EMBED_BATCH")
        self.assertEqual(sample(text, "ragd_queries_total", method="vector", generator="llm"), 1)
        self.assertEqual(sample(text, "ragd_queries_total", method="keyword", generator="llm"), 1)
        self.assertEqual(sample(text, "ragd_queries_total", method="hybrid", generator="cache"), 1)
        self.assertEqual(sample(text, "ragd_queries_total", method="keyword", generator="none"), 1)
        self.assertIsNotNone(sample(text, "ragd_breaker_state", backend=f"http://127.0.0.1:{dead}"),
                             "the backend that is down has breaker series")
        # the access lines of the pass-through embedding and of the ingest carry the upstream time
        for rid in ("ops-embed-1", "ops-ingest-1"):
            for _ in range(100):  # the line is written when the reply is out: wait for it, not a speed check
                line = [ln for ln in srv.log_text().splitlines() if f"id={rid}" in ln]
                if line:
                    break
                time.sleep(0.05)
            self.assertTrue(line and " embed_ms=" in line[-1], line)
        # the pools of /api/pool/stats, and the 429
        self.assertEqual(sample(text, "ragd_worker_threads", pool="query"), 3)
        self.assertEqual(sample(text, "ragd_worker_threads", pool="ingest"), 1)
        for pool in ("query", "ingest"):
            self.assertIsNotNone(sample(text, "ragd_worker_busy", pool=pool))
            self.assertIsNotNone(sample(text, "ragd_worker_queued", pool=pool))
        self.assertGreaterEqual(sample(text, "ragd_store_write_groups_total"), 1)
        self.assertGreaterEqual(sample(text, "ragd_store_writes_total"), 1)
        self.assertGreaterEqual(sample(text, "ragd_pool_acquires_total"), 1)
        self.assertIsNotNone(sample(text, "ragd_pool_wait_seconds_total"))
        self.assertEqual(sample(text, "ragd_store_write_queue"), 0)
        self.assertEqual(sample(text, "ragd_rate_limited_total"), 1)
        self.assertIsNotNone(sample(text, "ragd_http_requests_total", route="unmatched", code="404") or
                             sample(text, "ragd_http_requests_total", code="404"))


if __name__ == "__main__":
    unittest.main()
