"""A document's metadata is capped (RAGD_MAX_METADATA_BYTES, default 64 KiB as stored JSON):
it comes back with every passage of the document, and one 51-byte /api/retrieve over
documents with 9 MB of metadata each once built a 540 MB response. Over the cap: 422 naming
the document and the variable, and nothing of the request is stored."""
import harness


class MetadataCapTest(harness.E2ETestCase):
    server_env = {"RAGD_MAX_METADATA_BYTES": "1024", "RAGD_EMBEDDER": "builtin"}

    def test_over_the_cap_is_refused_whole(self):
        ok = {"id": "ok", "text": "Kelp forests grow in cold water.", "metadata": {"note": "x" * 900}}
        big = {"id": "big", "text": "Fjords are carved by glaciers.", "metadata": {"note": "y" * 1100}}
        r = self.server.request("POST", "/api/ingest", json_body={"db": "m", "documents": [ok, big]})
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.body["error"]["code"], "validation_error")
        self.assertIn("documents[1]", r.body["error"]["message"])
        self.assertIn("RAGD_MAX_METADATA_BYTES", r.body["error"]["message"])
        self.assertEqual(self.server.request("GET", "/api/dbs/m").status, 404)  # nothing stored
        r = self.server.request("POST", "/api/ingest", json_body={"db": "m", "documents": [ok]})
        self.assertEqual(r.status, 200, r)
        # the source given apart joins the metadata and counts too
        r = self.server.request("POST", "/api/ingest?db=m&id=raw&source=" + "s" * 1100, body="Some text.",
                                content_type="text/plain")
        self.assertEqual(r.status, 422, r)
        self.assertIn("source", r.body["error"]["message"])

    def test_default_cap_and_bad_values(self):
        srv = self.new_server(env={"RAGD_EMBEDDER": "builtin"})
        doc = {"id": "d", "text": "Moss grows on stones.", "metadata": {"note": "z" * 70000}}
        r = srv.request("POST", "/api/ingest", json_body={"db": "m", "documents": [doc]})
        self.assertEqual(r.status, 422, r)
        self.assertIn("65536", r.body["error"]["message"])
        doc["metadata"]["note"] = "z" * 60000
        self.assertEqual(srv.request("POST", "/api/ingest", json_body={"db": "m", "documents": [doc]}).status, 200)
        for value in ("100", "64MB", "-1"):
            p = harness.run_cli(["serve"], env={"RAGD_MAX_METADATA_BYTES": value, "RAGD_LISTEN": "127.0.0.1:0"},
                                timeout=15)
            self.assertEqual(p.returncode, 2, (value, p))
            self.assertIn("RAGD_MAX_METADATA_BYTES", p.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
