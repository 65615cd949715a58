"""The semantic cache's configuration and metrics, before the query path uses the cache
(docs/internals/cache.md): a bad RAGD_CACHE* value stops start-up with exit status 2 naming
the variable, good ones start, and /metrics carries the cache families (at 0).
"""
import os
import shutil
import tempfile

import harness


class CacheConfigTest(harness.E2ETestCase):
    server_env = {"RAGD_CACHE": "on", "RAGD_CACHE_THRESHOLD": "0.9", "RAGD_CACHE_MAX_BYTES": "1048576",
                  "RAGD_CACHE_TTL_S": "60"}

    def test_bad_values_refused(self):
        data = tempfile.mkdtemp(prefix="ragd-e2e-cachecfg-")
        self.addCleanup(shutil.rmtree, data, True)
        bad = [("RAGD_CACHE", "yes"), ("RAGD_CACHE_THRESHOLD", "0"), ("RAGD_CACHE_THRESHOLD", "1.5"),
               ("RAGD_CACHE_MAX_BYTES", "64MB"), ("RAGD_CACHE_TTL_S", "0")]
        for name, value in bad:
            p = harness.run_cli(["serve"], env={name: value, "RAGD_LISTEN": "127.0.0.1:0", "RAGD_DATA_DIR": data},
                                timeout=15)
            self.assertEqual(p.returncode, 2, (name, value, p))
            self.assertIn(name, p.stderr, (name, value))
        self.assertEqual(os.listdir(data), [], "a refused configuration must not open the store")

    def test_metrics_families(self):
        r = self.server.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        text = r.raw.decode()
        for line in ('ragd_cache_requests_total{result="hit"} 0', 'ragd_cache_requests_total{result="miss"} 0',
                     'ragd_cache_evictions_total{reason="size"} 0', 'ragd_cache_evictions_total{reason="ttl"} 0',
                     'ragd_cache_evictions_total{reason="invalidated"} 0', "ragd_cache_entries 0",
                     "ragd_cache_bytes 0", "# TYPE ragd_cache_requests_total counter"):
            self.assertIn(line + "\n", text)


if __name__ == "__main__":
    import unittest
    unittest.main()
