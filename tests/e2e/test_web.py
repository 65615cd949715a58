"""The web page's serving (docs/api.md "Web page", docs/internals/web.md): GET / gives the page
to a browser (an Accept naming text/html) and Ollama's "Ollama is running" to anything else;
/assets/app.js and /assets/app.css; the bytes are web/'s files compiled into the binary, with
their types, Cache-Control: no-cache, a strong ETag (SHA-256 of the bytes) and 304 on a
matching If-None-Match (weak comparison, lists, "*"); nosniff, no-referrer and the page's CSP;
HEAD; 404 for other /assets/ paths, 405 for other methods; no API key needed for these routes.

The page's content is the page helper's: these tests only compare the served bytes with the
files in web/ (read from disk), never their text.
"""

import hashlib
import http.client
import os
import re
import socket
import unittest

import harness

WEB_DIR = os.path.join(harness.project_root(), "web")
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# path -> (file in web/, Content-Type, request headers that select the file)
FILES = {
    "/": ("index.html", "text/html; charset=utf-8", {"Accept": BROWSER_ACCEPT}),
    "/assets/app.js": ("app.js", "text/javascript; charset=utf-8", {}),
    "/assets/app.css": ("app.css", "text/css; charset=utf-8", {}),
}
KEY = "web-test-key-0123456789"


def disk_bytes(name):
    with open(os.path.join(WEB_DIR, name), "rb") as f:
        return f.read()


def expected_etag(name):
    """What the build-time generator computes: the quoted first 32 hex digits of SHA-256."""
    return '"' + hashlib.sha256(disk_bytes(name)).hexdigest()[:32] + '"'


def raw_exchange(port, method, path, headers):
    """One request on a raw socket with Connection: close; returns (head text, the bytes after
    the head). Shows exactly what was sent, body bytes included (http.client would hide any
    body a HEAD or 304 response carried)."""
    data = harness.build_raw_request(method, path, headers=headers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            b = sock.recv(65536)
            if not b:
                break
            chunks.append(b)
    raw = b"".join(chunks)
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {raw[:300]!r}"
    return head.decode("latin-1"), rest


def head_field(head, name):
    """The values of a header field in a raw head (case-insensitive name)."""
    out = []
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            out.append(v.strip())
    return out


class WebServing(harness.E2ETestCase):
    """Without API keys."""

    def get(self, path, headers=None, method="GET", srv=None):
        return (srv or self.server).request(method, path, headers=headers or {})

    def assert_file_response(self, r, path, msg=""):
        name, ctype, _ = FILES[path]
        where = f"{path} {msg} {r!r}"
        self.assertEqual(r.status, 200, where)
        self.assertEqual(r.header("Content-Type"), ctype, where)
        self.assertEqual(r.raw, disk_bytes(name), where)
        self.assertEqual(r.header("Content-Length"), str(len(disk_bytes(name))), where)
        self.assertEqual(r.header("Cache-Control"), "no-cache", where)
        self.assertEqual(r.header("ETag"), expected_etag(name), where)
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff", where)
        self.assertEqual(r.header("Referrer-Policy"), "no-referrer", where)

    def test_page_for_a_browser(self):
        r = self.get("/", {"Accept": BROWSER_ACCEPT})
        self.assert_file_response(r, "/")
        self.assertEqual(r.header("Content-Security-Policy"), CSP)
        self.assertEqual(r.headers.get_all("Content-Security-Policy"), [CSP])
        self.assertEqual(r.header("Vary"), "Accept")
        # the media type is compared without case, wherever it stands in the list, and in
        # any Accept field when there are several; the query string does not matter
        for headers in ({"Accept": "TEXT/HTML"}, {"Accept": "*/*;q=0.1, text/html"}):
            self.assertEqual(self.get("/", headers).raw, disk_bytes("index.html"), headers)
        self.assertEqual(self.get("/?from=bookmark", {"Accept": "text/html"}).raw, disk_bytes("index.html"))
        head, rest = raw_exchange(self.server.port, "GET", "/", {"Accept": "application/json", "accept": "text/html"})
        self.assertEqual(rest, disk_bytes("index.html"), head)

    def test_root_for_other_clients_is_ollamas_answer(self):
        # what Ollama's clients (and curl) send: no Accept, */*, application/json
        for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}, {"Accept": "text/plain"}):
            for method in ("GET", "HEAD"):
                r = self.get("/", headers, method=method)
                where = f"{method} {headers} {r!r}"
                self.assertEqual(r.status, 200, where)
                self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8", where)
                self.assertEqual(r.raw, b"Ollama is running" if method == "GET" else b"", where)
                self.assertEqual(r.header("Content-Length"), "17", where)
                self.assertEqual(r.header("Cache-Control"), "no-store", where)
                self.assertIsNone(r.header("ETag"), where)
                self.assertIsNone(r.header("Content-Security-Policy"), where)
                self.assertEqual(r.header("Vary"), "Accept", where)
        # If-None-Match does not turn Ollama's answer into a 304
        r = self.get("/", {"If-None-Match": "*"})
        self.assertEqual((r.status, r.raw), (200, b"Ollama is running"))

    def test_assets(self):
        for path in ("/assets/app.js", "/assets/app.css"):
            r = self.get(path)
            self.assert_file_response(r, path)
            self.assertIsNone(r.header("Content-Security-Policy"), path)
            # the same whatever Accept says (a browser asks for a script with */*)
            self.assert_file_response(self.get(path, {"Accept": "text/html"}), path, "Accept text/html")

    def test_etags_differ_per_file(self):
        tags = {self.get(p, FILES[p][2]).header("ETag") for p in FILES}
        self.assertEqual(len(tags), 3, tags)
        for tag in tags:
            self.assertRegex(tag, r'^"[0-9a-f]{32}"$')  # strong: no W/

    def test_if_none_match(self):
        for path, (name, ctype, select) in FILES.items():
            tag = expected_etag(name)
            for value in (tag, "W/" + tag, '"nope", ' + tag, 'W/"nope",W/' + tag + ' , "other"', "*", " * ",
                          ", ," + tag):
                r = self.get(path, dict(select, **{"If-None-Match": value}))
                where = f"{path} If-None-Match {value!r}: {r!r}"
                self.assertEqual(r.status, 304, where)
                self.assertEqual(r.raw, b"", where)
                self.assertEqual(r.header("ETag"), tag, where)
                self.assertEqual(r.header("Cache-Control"), "no-cache", where)
                self.assertIn(r.header("Content-Length"), (None, str(len(disk_bytes(name)))), where)
            for value in ('"nope"', tag[:-2] + '"', tag.upper(), tag.strip('"'), "w/" + tag, '"nope" junk, ' + tag,
                          "*, " + tag, '""', ""):
                r = self.get(path, dict(select, **{"If-None-Match": value}))
                self.assert_file_response(r, path, f"If-None-Match {value!r}")
            # two fields are one list (RFC 9110 5.3)
            head, rest = raw_exchange(self.server.port, "GET", path, dict(select, **{"If-None-Match": '"a"',
                                                                                    "if-none-match": tag}))
            self.assertTrue(head.startswith("HTTP/1.1 304 "), head)
            self.assertEqual(rest, b"", head)
            # a list too long to keep is not evaluated: the full answer
            r = self.get(path, dict(select, **{"If-None-Match": ", ".join(['"%030d"' % i for i in range(40)] + [tag])}))
            self.assert_file_response(r, path, "a long If-None-Match")

    def test_304_sends_no_body_and_keeps_the_connection(self):
        """A 304 carries no body and no Content-Length of 0: the next response on the same
        connection must still be read right."""
        for path, (name, _, select) in FILES.items():
            tag = expected_etag(name)
            head, rest = raw_exchange(self.server.port, "GET", path, dict(select, **{"If-None-Match": tag}))
            self.assertTrue(head.startswith("HTTP/1.1 304 Not Modified\r\n"), head)
            self.assertEqual(rest, b"", head)
            self.assertNotIn("0", head_field(head, "Content-Length"), head)
            self.assertEqual(head_field(head, "ETag"), [tag], head)
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
            try:
                for inm, status in ((tag, 304), (None, 200), (tag, 304), ('"x"', 200)):
                    h = dict(select)
                    if inm:
                        h["If-None-Match"] = inm
                    conn.request("GET", path, headers=h)
                    resp = conn.getresponse()
                    body = resp.read()
                    self.assertEqual(resp.status, status, path)
                    self.assertEqual(body, b"" if status == 304 else disk_bytes(name), path)
            finally:
                conn.close()

    def test_head(self):
        for path, (name, ctype, select) in FILES.items():
            head, rest = raw_exchange(self.server.port, "HEAD", path, select)
            self.assertTrue(head.startswith("HTTP/1.1 200 "), head)
            self.assertEqual(rest, b"", head)
            self.assertEqual(head_field(head, "Content-Length"), [str(len(disk_bytes(name)))], head)
            self.assertEqual(head_field(head, "Content-Type"), [ctype], head)
            self.assertEqual(head_field(head, "ETag"), [expected_etag(name)], head)
            self.assertEqual(head_field(head, "X-Content-Type-Options"), ["nosniff"], head)
            if path == "/":
                self.assertEqual(head_field(head, "Content-Security-Policy"), [CSP], head)
            head, rest = raw_exchange(self.server.port, "HEAD", path, dict(select, **{"If-None-Match": "*"}))
            self.assertTrue(head.startswith("HTTP/1.1 304 "), head)
            self.assertEqual(rest, b"", head)

    def test_unknown_assets_are_404_envelopes(self):
        for path in ("/assets/", "/assets/app.jsx", "/assets/index.html", "/assets/app.js/x", "/assets/APP.JS",
                     "/assets/..%2Fapp.js", "/assets/%2e%2e/web/app.js", "/assets", "/index.html", "/app.js"):
            for method in ("GET", "HEAD"):
                r = self.get(path, {"Accept": BROWSER_ACCEPT}, method=method)
                if method == "GET":
                    self.assertEnvelope(r, 404, "not_found", f"{method} {path}")
                else:
                    self.assertEqual(r.status, 404, path)

    def test_other_methods(self):
        for path in FILES:
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                r = self.server.request(method, path, body=b"{}", content_type="application/json",
                                        headers={"Accept": BROWSER_ACCEPT})
                where = f"{method} {path} {r!r}"
                self.assertEqual(r.status, 405, where)
                self.assertEqual(r.header("Allow"), "GET, HEAD", where)
                self.assertIsNone(r.header("ETag"), where)
                self.assertEqual(r.header("Cache-Control"), "no-store", where)
                if path == "/":  # Ollama's route: Ollama's error shape, as before the page
                    self.assertEqual(r.body, {"error": f"{method} is not allowed on / (allowed: GET, HEAD)"}, where)
                else:
                    self.assertEnvelope(r, 405, "method_not_allowed", where)

    def test_counted_in_metrics_and_access_log(self):
        mark = self.server.log_size()
        self.get("/assets/app.css")
        self.get("/", {"Accept": BROWSER_ACCEPT, "If-None-Match": expected_etag("index.html")})
        metrics = self.get("/metrics").raw.decode()
        self.assertRegex(metrics, r'ragd_http_requests_total\{route="/assets/app.css",method="GET",code="200"\} [1-9]')
        self.assertRegex(metrics, r'ragd_http_requests_total\{route="/",method="GET",code="304"\} [1-9]')
        log = self.server.log_text(since=mark)
        self.assertIn("/assets/app.css", log)
        self.assertTrue(re.search(r"GET / 304", log), log[-2000:])


class WebWithApiKeys(harness.E2ETestCase):
    """With API keys on, the page and its files need none (they hold no data, and the page
    must load to ask for a key); the API still does."""

    server_env = {"RAGD_API_KEYS": f"{KEY}"}

    def test_no_key_needed(self):
        for path, (name, ctype, select) in FILES.items():
            for headers in (select, dict(select, Authorization="Bearer wrong-key-0123456789"),
                            dict(select, Authorization=f"Bearer {KEY}")):
                r = self.server.request("GET", path, headers=headers)
                where = f"{path} {headers} {r!r}"
                self.assertEqual(r.status, 200, where)
                self.assertEqual(r.raw, disk_bytes(name), where)
                self.assertIsNone(r.header("WWW-Authenticate"), where)
            r = self.server.request("GET", path, headers=dict(select, **{"If-None-Match": expected_etag(name)}))
            self.assertEqual(r.status, 304, path)
            self.assertEqual(self.server.request("HEAD", path, headers=select).status, 200, path)
        r = self.server.request("GET", "/")  # Ollama's probe: no data in it either
        self.assertEqual((r.status, r.raw), (200, b"Ollama is running"))

    def test_api_still_needs_a_key(self):
        r = self.server.request("GET", "/api/dbs", headers={"Accept": BROWSER_ACCEPT})
        self.assertEnvelope(r, 401, "unauthorized")
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="ragd"')
        self.assertEqual(self.server.request("GET", "/api/dbs", headers={"Authorization": f"Bearer {KEY}"}).status,
                         200)
        self.assertEqual(self.server.request("GET", "/api/tags").status, 401)
        self.assertEqual(self.server.request("GET", "/assets/other.js").status, 404)


if __name__ == "__main__":
    unittest.main()
