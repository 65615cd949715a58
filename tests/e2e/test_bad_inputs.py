"""A table of bad requests: each must get the contract's status and error code in the error
envelope, and none may crash, hang or change the store."""

import http.client
import json
import socket
import threading
import time
import unittest
import urllib.parse

import harness

MAX_BODY = 65536
KNOWN_DB = "known"
KNOWN = [
    {"id": "k1", "text": "The okapi is a forest giraffe from the Congo with zebra-striped legs.",
     "metadata": {"lang": "en"}},
    {"id": "k2", "text": "A theremin is played without being touched, by moving the hands near "
                         "two antennas.", "metadata": {"lang": "en"}},
    {"id": "k3", "text": "Basalt columns form when thick lava cools slowly and cracks into "
                         "hexagons.", "metadata": {"lang": "de"}},
]
DEFAULT_DOC = {"id": "kd", "text": "Tardigrades survive boiling, freezing and the vacuum of space."}


def J(value):
    """A JSON body."""
    return json.dumps(value).encode("utf-8")


def nested(depth):
    """A JSON value made of `depth` nested objects."""
    v = {}
    for _ in range(depth - 1):
        v = {"a": v}
    return v


def nested_array(depth):
    return ("[" * depth + "]" * depth).encode()


def case(name, method, path, status, code, body=None, ctype="default", headers=None,
         field=None, allow=None, raw=None, alt=None):
    """One bad request. body: bytes (None: no body). ctype: Content-Type (None: none; by
    default application/json when there is a body).
    field: a name the 422 message must mention. allow: methods the Allow header must list.
    raw: bytes written to a socket instead of going through http.client.
    alt: other acceptable (status, code) pairs where the contract leaves room."""
    if ctype == "default":
        ctype = "application/json" if body is not None else None
    return {"name": name, "method": method, "path": path, "status": status, "code": code,
            "body": body, "ctype": ctype, "headers": headers or {}, "field": field,
            "allow": allow, "raw": raw, "alt": list(alt or [])}


# A hostile name in the path may also be refused as "no such collection" or, when the
# decoded '/' leaves a path no route matches, as an unknown route: never 2xx or 5xx.
NAME_404 = [(404, "db_not_found"), (404, "not_found")]

Q = "/api/query"
R = "/api/retrieve"
I = "/api/ingest"
D = "/api/dbs"
V = "validation_error"
BADJ = "invalid_json"


def raw_req(method, path, body=b"", ctype="application/json", content_length=None):
    headers = {"Content-Type": ctype} if ctype else {}
    return harness.build_raw_request(method, path, headers, body, content_length)


CASES = [
    # --- not JSON -----------------------------------------------------------------------
    case("malformed json (trailing comma)", "POST", Q, 400, BADJ, b'{"query": "x",}'),
    case("malformed json (bare key)", "POST", Q, 400, BADJ, b'{query: "x"}'),
    case("truncated json", "POST", Q, 400, BADJ, b'{"query": "what is'),
    case("truncated json ingest", "POST", I, 400, BADJ, b'{"documents": [{"text": "abc"}'),
    case("empty body", "POST", Q, 400, BADJ, b""),
    case("empty body, no content type", "POST", Q, 400, BADJ, b"", ctype=None),
    case("whitespace body", "POST", D, 400, BADJ, b"   \n "),
    case("invalid utf-8 in json string", "POST", Q, 400, BADJ, b'{"query": "caf\xe9 \xff"}'),
    case("surrogate bytes in json string", "POST", Q, 400, BADJ, b'{"query": "\xed\xa0\x80x"}'),
    case("invalid utf-8 in ingest json", "POST", I, 400, BADJ,
         b'{"db": "known", "documents": [{"text": "ok \xc3\x28 no"}]}'),
    case("nesting depth 65 (object)", "POST", Q, 400, BADJ,
         J({"query": "depth", "options": nested(64)})),
    case("nesting depth 65 (array)", "POST", Q, 400, BADJ, nested_array(65)),
    case("lying short Content-Length (truncated json)", "POST", Q, 400, BADJ,
         raw=raw_req("POST", Q, b'{"query": "hello"}', content_length=5)),
    # --- valid JSON, wrong shape ----------------------------------------------------------
    case("json array instead of object", "POST", Q, 422, V, J([{"query": "x"}])),
    case("json string instead of object", "POST", Q, 422, V, J("what is rag")),
    case("json array instead of object (ingest)", "POST", I, 422, V, J([{"text": "x"}])),
    case("nesting depth 64 array is only a shape error", "POST", Q, 422, V, nested_array(64)),
    case("query missing", "POST", Q, 422, V, J({"k": 3}), field="query"),
    case("query number", "POST", Q, 422, V, J({"query": 5}), field="query"),
    case("query null", "POST", Q, 422, V, J({"query": None}), field="query"),
    case("query array", "POST", R, 422, V, J({"query": ["a", "b"]}), field="query"),
    case("query empty", "POST", Q, 422, V, J({"query": ""}), field="query"),
    case("query whitespace only", "POST", Q, 422, V, J({"query": " \t\n  "}), field="query"),
    case("query too long", "POST", Q, 422, V, J({"query": "x" * 8193}), field="query"),
    case("k 0", "POST", Q, 422, V, J({"query": "x", "k": 0}), field="k"),
    case("k 101", "POST", Q, 422, V, J({"query": "x", "k": 101}), field="k"),
    case("k 1.5", "POST", Q, 422, V, J({"query": "x", "k": 1.5}), field="k"),
    case("k \"5\"", "POST", Q, 422, V, J({"query": "x", "k": "5"}), field="k"),
    case("k -1 on retrieve", "POST", R, 422, V, J({"query": "x", "k": -1}), field="k"),
    case("top_k 0", "POST", Q, 422, V, J({"query": "x", "top_k": 0}), field="k"),
    case("db number", "POST", Q, 422, V, J({"query": "x", "db": 5}), field="db"),
    case("db ../etc", "POST", Q, 422, V, J({"query": "x", "db": "../etc"}), field="db"),
    case("method unknown", "POST", Q, 422, V, J({"query": "x", "method": "semantic"}),
         field="method"),
    case("method number", "POST", R, 422, V, J({"query": "x", "method": 1}), field="method"),
    case("stream string", "POST", Q, 422, V, J({"query": "x", "stream": "yes"}), field="stream"),
    case("filter string", "POST", Q, 422, V, J({"query": "x", "filter": "lang=en"}),
         field="filter"),
    case("filter unknown operator", "POST", Q, 422, V,
         J({"query": "x", "filter": {"lang": {"$gt": 3}}}), field="filter"),
    case("filter $in not a list", "POST", R, 422, V,
         J({"query": "x", "filter": {"lang": {"$in": "en"}}}), field="filter"),
    case("provider unknown", "POST", Q, 422, V, J({"query": "x", "provider": "skynet"}),
         field="provider"),
    case("documents missing", "POST", I, 422, V, J({"db": KNOWN_DB}), field="documents"),
    case("documents string", "POST", I, 422, V, J({"documents": "abc"}), field="documents"),
    case("documents empty", "POST", I, 422, V, J({"documents": []}), field="documents"),
    case("document not an object", "POST", I, 422, V, J({"documents": [5]}), field="documents"),
    case("document without text", "POST", I, 422, V,
         J({"db": KNOWN_DB, "documents": [{"id": "x1"}]}), field="text"),
    case("text number", "POST", I, 422, V, J({"db": KNOWN_DB, "documents": [{"text": 5}]}),
         field="text"),
    case("text empty", "POST", I, 422, V, J({"db": KNOWN_DB, "documents": [{"text": ""}]}),
         field="text"),
    case("metadata string", "POST", I, 422, V,
         J({"db": KNOWN_DB, "documents": [{"text": "fine text", "metadata": "m"}]}),
         field="metadata"),
    case("metadata array", "POST", I, 422, V,
         J({"db": KNOWN_DB, "documents": [{"text": "fine text", "metadata": ["m"]}]}),
         field="metadata"),
    case("id too long", "POST", I, 422, V,
         J({"db": KNOWN_DB, "documents": [{"id": "i" * 257, "text": "fine text"}]}), field="id"),
    case("id with control character", "POST", I, 422, V,
         J({"db": KNOWN_DB, "documents": [{"id": "a\nb", "text": "fine text"}]}), field="id"),
    case("valid doc batched with a bad one (nothing stored)", "POST", I, 422, V,
         J({"db": KNOWN_DB, "documents": [{"id": "sneaky", "text": "should not be stored"},
                                          {"text": 7}]}), field="text"),
    case("db wrong type on ingest", "POST", I, 422, V,
         J({"db": ["known"], "documents": [{"text": "fine text"}]}), field="db"),
    # --- hostile collection names ---------------------------------------------------------
    case("ingest into ../etc", "POST", I, 422, V,
         J({"db": "../etc", "documents": [{"text": "pwn"}]}), field="db"),
    case("ingest into .hidden", "POST", I, 422, V,
         J({"db": ".hidden", "documents": [{"text": "pwn"}]}), field="db"),
    case("create a/b", "POST", D, 422, V, J({"name": "a/b"}), field="name"),
    case("create 65 chars", "POST", D, 422, V, J({"name": "n" * 65}), field="name"),
    case("create name with space", "POST", D, 422, V, J({"name": "name with space"}),
         field="name"),
    # \u0000 is valid JSON; the server refuses it at parse time (400), a check of
    # the name would say 422: either is a refusal in the envelope.
    case("create name with NUL", "POST", D, 400, BADJ, J({"name": "ab\u0000cd"}),
         alt=[(422, V)]),
    case("create empty name", "POST", D, 422, V, J({"name": ""}), field="name"),
    case("create name missing", "POST", D, 422, V, J({"chunk_size": 500}), field="name"),
    case("create chunk_size 99", "POST", D, 422, V, J({"name": "okname", "chunk_size": 99}),
         field="chunk_size"),
    case("create overlap >= half", "POST", D, 422, V,
         J({"name": "okname", "chunk_size": 400, "chunk_overlap": 200}), field="chunk_overlap"),
    case("create other embed model", "POST", D, 422, V,
         J({"name": "okname", "embed_model": "nomic-embed-text-v9"}), field="embed_model"),
    case("raw ingest db ../etc via %2F", "POST", f"{I}?db=..%2Fetc&id=x", 422, V, b"text",
         ctype="text/plain", field="db"),
    case("raw ingest db with NUL", "POST", f"{I}?db=ab%00cd&id=x", 400, BADJ, b"text",
         ctype="text/plain", alt=[(422, V)]),
    case("malformed %-escape in query string", "POST", f"{I}?db=kn%zzown&id=x", 400, BADJ,
         b"text", ctype="text/plain", alt=[(422, V)]),
    case("bad escape after a good argument", "GET", "/health?a=1&b=%zz", 400, BADJ),
    case("more than 32 query arguments", "GET",
         f"{D}/known/documents?" + "&".join(f"a{i}={i}" for i in range(40)) + "&limit=abc", 400, BADJ),
    case("filter $in over 100 values", "POST", "/api/retrieve", 422, V,
         J({"query": "x", "db": "known", "filter": {"lang": {"$in": list(range(5000))}}}), field="filter"),
    case("raw ingest db .hidden", "POST", f"{I}?db=.hidden", 422, V, b"text",
         ctype="text/plain", field="db"),
    case("get a%2Fb", "GET", f"{D}/a%2Fb", 422, V, alt=NAME_404),
    case("delete ..%2Fetc", "DELETE", f"{D}/..%2Fetc", 422, V, alt=NAME_404),
    case("get 65-char name", "GET", f"{D}/{'n' * 65}", 422, V, alt=NAME_404),
    # --- raw text ingest ------------------------------------------------------------------
    # undeclared, such bytes are read as a legacy charset (docs/api.md "Ingest"); declared
    # UTF-8 they are refused
    case("raw text/plain invalid utf-8", "POST", f"{I}?db={KNOWN_DB}&id=bad8", 422, V,
         b"caf\xe9 au lait \xff\xfe", ctype="text/plain; charset=utf-8"),
    case("raw text/plain empty", "POST", f"{I}?db={KNOWN_DB}&id=empty", 422, V, b"",
         ctype="text/plain"),
    # --- not found ------------------------------------------------------------------------
    case("query unknown collection", "POST", Q, 404, "db_not_found",
         J({"query": "x", "db": "no_such_db"})),
    case("retrieve unknown collection", "POST", R, 404, "db_not_found",
         J({"query": "x", "db": "no_such_db"})),
    case("get unknown collection", "GET", f"{D}/no_such_db", 404, "db_not_found", ctype=None),
    case("documents of unknown collection", "GET", f"{D}/no_such_db/documents", 404,
         "db_not_found", ctype=None),
    case("delete unknown collection", "DELETE", f"{D}/no_such_db", 404, "db_not_found",
         ctype=None),
    case("get unknown document", "GET", f"{D}/{KNOWN_DB}/documents/nope", 404,
         "document_not_found", ctype=None),
    case("delete unknown document", "DELETE", f"{D}/{KNOWN_DB}/documents/nope", 404,
         "document_not_found", ctype=None),
    case("unknown route", "GET", "/api/nope", 404, "not_found", ctype=None),
    case("unknown route, POST", "POST", "/api/queryx", 404, "not_found", J({"query": "x"})),
    # the document id is the rest of the path (ids may hold '/'), so this is an unknown id
    case("path below a document", "GET", f"{D}/{KNOWN_DB}/documents/k1/extra", 404,
         "document_not_found", ctype=None, alt=[(404, "not_found")]),
    case("unknown route below a collection", "GET", f"{D}/{KNOWN_DB}/chunks", 404,
         "not_found", ctype=None),
    case("unknown route, DELETE", "DELETE", "/nope", 404, "not_found", ctype=None),
    # --- bad query strings ----------------------------------------------------------------
    case("documents limit 0", "GET", f"{D}/{KNOWN_DB}/documents?limit=0", 422, V, ctype=None,
         field="limit"),
    case("documents limit 1001", "GET", f"{D}/{KNOWN_DB}/documents?limit=1001", 422, V,
         ctype=None, field="limit"),
    case("documents offset -1", "GET", f"{D}/{KNOWN_DB}/documents?offset=-1", 422, V,
         ctype=None, alt=[(400, BADJ)]),
    case("documents limit abc", "GET", f"{D}/{KNOWN_DB}/documents?limit=abc", 400, BADJ,
         ctype=None),
    # --- wrong method ---------------------------------------------------------------------
    case("GET /api/query", "GET", Q, 405, "method_not_allowed", ctype=None, allow={"POST"}),
    case("DELETE /api/ingest", "DELETE", I, 405, "method_not_allowed", ctype=None,
         allow={"POST"}),
    case("PUT /api/dbs", "PUT", D, 405, "method_not_allowed", J({"name": "x"}),
         allow={"GET", "POST"}),
    case("POST /health", "POST", "/health", 405, "method_not_allowed", b"{}", allow={"GET"}),
    case("PATCH /api/dbs/known", "PATCH", f"{D}/{KNOWN_DB}", 405, "method_not_allowed", b"{}",
         allow={"GET", "DELETE"}),
    case("POST documents list", "POST", f"{D}/{KNOWN_DB}/documents", 405, "method_not_allowed",
         J({"text": "x"}), allow={"GET"}),
    case("GET /api/retrieve", "GET", R, 405, "method_not_allowed", ctype=None, allow={"POST"}),
    # --- wrong content type ---------------------------------------------------------------
    case("text/plain to /api/query", "POST", Q, 415, "unsupported_media_type",
         J({"query": "x"}), ctype="text/plain"),
    case("form to /api/query", "POST", Q, 415, "unsupported_media_type", b"query=x",
         ctype="application/x-www-form-urlencoded"),
    case("form to /api/ingest", "POST", I, 415, "unsupported_media_type", b"text=x",
         ctype="application/x-www-form-urlencoded"),
    case("multipart to /api/ingest without its closing boundary", "POST", I, 400,
         "invalid_multipart",
         b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
         b"hello\r\n", ctype="multipart/form-data; boundary=XyZ"),
    case("xml to /api/dbs", "POST", D, 415, "unsupported_media_type", b"<name>x</name>",
         ctype="application/xml"),
    case("image to /api/ingest", "POST", I, 415, "unsupported_media_type", b"\x89PNG\r\n",
         ctype="image/png"),
    # --- too large ------------------------------------------------------------------------
    case("real body over the cap (raw text)", "POST", I, 413, "payload_too_large",
         raw=raw_req("POST", f"{I}?db={KNOWN_DB}&id=huge", b"a" * (MAX_BODY + 40000),
                     ctype="text/plain")),
    case("real body over the cap (json)", "POST", Q, 413, "payload_too_large",
         raw=raw_req("POST", Q, J({"query": "y" * (MAX_BODY + 10)}))),
    case("declared Content-Length 10^12, no body", "POST", I, 413, "payload_too_large",
         raw=raw_req("POST", f"{I}?db={KNOWN_DB}&id=huge", b"", ctype="text/plain",
                     content_length=10 ** 12)),
    case("declared Content-Length cap+1, no body", "POST", Q, 413, "payload_too_large",
         raw=raw_req("POST", Q, b"", content_length=MAX_BODY + 1)),
]

REQUEST_ID_CASES = {"malformed json (trailing comma)", "k 101", "unknown route",
                    "GET /api/query", "form to /api/query", "declared Content-Length cap+1, no body"}


class BadInputTest(harness.E2ETestCase):
    # A short idle timeout, so that a test that leaves a connection open does not hold the
    # server for long (a client that half-closes mid-body is closed at once: test_http_limits).
    server_env = {"RAGD_MAX_BODY_BYTES": str(MAX_BODY), "RAGD_IDLE_TIMEOUT_S": "3"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for db, docs in ((KNOWN_DB, KNOWN), (None, [DEFAULT_DOC])):
            payload = {"documents": docs}
            if db:
                payload["db"] = db
            cls.class_call("POST", "/api/ingest", payload)

    def snapshot(self):
        body = self.call("GET", "/api/dbs")
        return sorted((d["name"], d["documents"], d["chunks"]) for d in body["dbs"])

    def send(self, c, rid):
        headers = dict(c["headers"])
        if rid:
            headers["X-Request-ID"] = rid
        if c["raw"] is not None:
            data = c["raw"]
            if rid:
                head, sep, rest = data.partition(b"\r\n")
                data = head + sep + f"X-Request-ID: {rid}\r\n".encode() + rest
            return self.server.raw(data, timeout=8.0)
        return self.server.request(c["method"], c["path"], body=c["body"], content_type=c["ctype"],
                                   headers=headers, timeout=8.0)

    def check_case(self, c):
        rid = f"bad-{CASES.index(c)}" if c["name"] in REQUEST_ID_CASES else None
        started = time.monotonic()
        try:
            r = self.send(c, rid)
        except (socket.timeout, TimeoutError):
            self.fail(f"no response within {time.monotonic() - started:.1f} s")
        elapsed = time.monotonic() - started
        self.assertIsNotNone(r, "connection closed without a response")
        self.assertLess(elapsed, 5.0, "a bad request took too long to be refused")
        status, code = c["status"], c["code"]
        got = r.body.get("error") if isinstance(r.body, dict) else None
        got_code = got.get("code") if isinstance(got, dict) else None
        for alt_status, alt_code in c["alt"]:
            if r.status == alt_status and got_code == alt_code:
                status, code = alt_status, alt_code
        err = self.assertEnvelope(r, status, code)
        if rid:
            self.assertEqual(r.header("X-Request-ID"), rid)
            self.assertEqual(err["request_id"], rid)
        if c["field"]:
            self.assertIn(c["field"], err["message"], f"message does not name the field: {r!r}")
        if c["allow"]:
            allow = {m.strip().upper() for m in (r.header("Allow") or "").split(",") if m.strip()}
            self.assertTrue(c["allow"] <= allow, f"Allow: {r.header('Allow')!r}, want {c['allow']}")
            self.assertNotIn(c["method"], allow)

    def test_bad_requests_table(self):
        self.assertGreaterEqual(len(CASES), 25)
        before = self.snapshot()
        for c in CASES:
            with self.subTest(c["name"]):
                self.check_case(c)
        # still alive, nothing lost, nothing added
        self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})
        self.assertEqual(self.call("GET", "/health/ready"), {"status": "ready"})
        self.assertEqual(self.snapshot(), before)
        for d in KNOWN:
            doc = self.call("GET", f"/api/dbs/{KNOWN_DB}/documents/{d['id']}")
            self.assertEqual(" ".join(ch["text"] for ch in doc["chunks"]), d["text"])
            body = self.call("POST", "/api/query", {"query": d["text"], "db": KNOWN_DB, "k": 1})
            self.assertEqual(body["sources"][0]["doc_id"], d["id"])
        self.assertEqual(self.call("GET", f"/api/dbs/default/documents/{DEFAULT_DOC['id']}")["id"],
                         DEFAULT_DOC["id"])
        for missing in ("sneaky", "bad8", "empty", "huge", "x1"):
            r = self.server.request("GET", f"/api/dbs/{KNOWN_DB}/documents/{missing}")
            self.assertEnvelope(r, 404, "document_not_found", missing)
        names = {n for n, _, _ in self.snapshot()}
        for hostile in ("etc", "..", ".hidden", "okname", "no_such_db", "a"):
            self.assertNotIn(hostile, names)

    def test_depth_64_is_not_a_parse_error(self):
        r = self.server.request("POST", "/api/query",
                                json_body={"query": "okapi forest", "db": KNOWN_DB,
                                           "options": nested(63)})
        self.assertNotEqual(r.status, 400, r)
        self.assertIn(r.status, (200, 422), r)
        if r.status == 200:
            self.assertEqual(r.body["sources"][0]["doc_id"], "k1")

    def test_body_at_the_cap_is_accepted(self):
        # exactly MAX_BODY bytes of JSON is not over the cap (the padding sits in `options`,
        # which the extractive generator ignores)
        base = {"query": "okapi forest", "db": KNOWN_DB, "k": 1, "options": {"pad": ""}}
        pad = MAX_BODY - len(J(base))
        body = J(dict(base, options={"pad": "p" * pad}))
        self.assertEqual(len(body), MAX_BODY)
        r = self.server.request("POST", "/api/query", body=body, content_type="application/json")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body["sources"][0]["doc_id"], "k1")

    def test_lying_content_length_does_not_block_others(self):
        # declares 1000 bytes, sends 10 and keeps the connection open
        data = harness.build_raw_request("POST", "/api/query", {"Content-Type": "application/json"},
                                         b'{"query": ', content_length=1000)
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=5)
        try:
            s.sendall(data)
            t0 = time.monotonic()
            self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})
            body = self.call("POST", "/api/query", {"query": "theremin antennas", "db": KNOWN_DB})
            self.assertEqual(body["sources"][0]["doc_id"], "k2")
            self.assertLess(time.monotonic() - t0, 3.0)
        finally:
            s.close()
        # the same lie, then end of input: the server drops it without a success
        r = self.server.raw(data, half_close=True, timeout=10.0)
        if r is not None:
            self.assertGreaterEqual(r.status, 400, r)
            self.assertLess(r.status, 500, r)
        self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})

    def test_name_limits_accepted(self):
        # the edges of the allowed form are accepted (64 chars, dots, dashes)
        for name in ("b" * 64, "a.b-c_d", "X9"):
            with self.subTest(name=name):
                created = self.call("POST", "/api/dbs", {"name": name}, status=201)
                self.assertEqual(created["name"], name)
                self.assertEqual(self.call("GET", f"/api/dbs/{urllib.parse.quote(name)}")["name"], name)
                self.assertEqual(self.call("DELETE", f"/api/dbs/{name}"), {"deleted": name})


    # --- one filter limit: the HTTP layer refuses what the store would refuse --------------
    def retrieve_with_filter(self, route, flt):
        return self.server.request("POST", route, json_body={"query": "okapi forest", "db": KNOWN_DB,
                                                             "filter": flt})

    def test_filter_over_the_total_value_limit(self):
        # 11 keys × 100 values: each list is within the 100 per key, the total (1100) is over
        # the store's 1024; this used to reach the store and come back 500 "filter: too large"
        flt = {f"key{i}": {"$in": list(range(100))} for i in range(11)}
        for route in (R, Q):
            with self.subTest(route=route):
                err = self.assertEnvelope(self.retrieve_with_filter(route, flt), 422, V)
                self.assertIn("filter", err["message"])
                self.assertIn("1024", err["message"], "the message names the limit")

    def test_filter_at_the_total_value_limit(self):
        # 1024 values in all: 10 lists of 100 (no document has these keys) and one of 24
        flt = {f"key{i}": {"$in": list(range(100))} for i in range(10)}
        flt["lang"] = {"$in": ["en"] + [f"x{i}" for i in range(23)]}
        self.assertEqual(sum(len(v["$in"]) for v in flt.values()), 1024)
        body = self.call("POST", R, {"query": "okapi forest", "db": KNOWN_DB, "filter": flt})
        self.assertEqual(body["documents"], [])
        # a filter within the limits is applied, not ignored
        body = self.call("POST", R, {"query": "okapi forest", "db": KNOWN_DB, "k": 3,
                                     "filter": {"lang": {"$in": ["en"] + [f"x{i}" for i in range(99)]}}})
        got = {s["doc_id"] for s in body["sources"]}
        self.assertIn("k1", got)
        self.assertLessEqual(got, {"k1", "k2"}, "k3 (lang de) passed the filter")

    def test_filter_with_33_keys(self):
        flt = {f"key{i}": "v" for i in range(33)}
        for route in (R, Q):
            with self.subTest(route=route):
                err = self.assertEnvelope(self.retrieve_with_filter(route, flt), 422, V)
                self.assertIn("filter", err["message"])
                self.assertIn("32", err["message"], "the message names the limit")


class NulByteTest(harness.E2ETestCase):
    """A NUL byte in the request line or a header, raw or as %00, is refused with 400 before
    any handler runs: ragd's parser refuses the byte where it stands. (With libmicrohttpd 0.9.x,
    which handed the request over as C strings, a raw NUL used to cut the path short:
    DELETE /api/dbs/victim\\0_backup deleted `victim`.)"""

    server_env = {"RAGD_IDLE_TIMEOUT_S": "3"}
    DBS = {"victim": "vdoc", "victim_backup": "bdoc"}

    def setUp(self):
        super().setUp()
        for db, doc_id in self.DBS.items():
            self.call("POST", "/api/ingest", {"db": db, "documents": [
                {"id": doc_id, "text": f"The only document of {db}, kept safe from hostile bytes."}]})

    def assertIntact(self):
        for db, doc_id in self.DBS.items():
            info = self.call("GET", f"/api/dbs/{db}")
            self.assertEqual(info["documents"], 1, f"{db}: {info}")
            doc = self.call("GET", f"/api/dbs/{db}/documents/{doc_id}")
            self.assertEqual(doc["id"], doc_id)

    def send(self, data):
        r = self.server.raw(data, timeout=8.0)
        self.assertIsNotNone(r, "connection closed without a response")
        return r

    def assertRefused(self, data, envelope=True):
        r = self.send(data)
        if envelope:
            err = self.assertEnvelope(r, 400, BADJ)
            self.assertEqual(r.header("Connection", "").lower(), "close", r)
            return err
        self.assertEqual(r.status, 400, r)
        return None

    def test_raw_nul_in_path(self):
        err = self.assertRefused(b"DELETE /api/dbs/victim\x00_backup HTTP/1.1\r\n"
                                 b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertIn("NUL", err["message"])
        self.assertIntact()

    def test_raw_nul_at_the_end_of_the_path(self):
        self.assertRefused(b"DELETE /api/dbs/victim_backup\x00 HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertIntact()

    def test_raw_nul_in_method(self):
        # the method reached ragd as "DELETE", cut at the NUL
        self.assertRefused(b"DELETE\x00X /api/dbs/victim HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertIntact()

    def test_raw_nul_in_query_string(self):
        body = b"A sneaky document that must not be stored anywhere."
        for target in (b"/api/ingest?db=victim\x00_backup&id=sneak",
                       b"/api/ingest?db=victim&id=sneak\x00y"):
            with self.subTest(target=target):
                self.assertRefused(b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Connection: close\r\nContent-Type: text/plain\r\n"
                                   + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.assertIntact()
        self.assertEnvelope(self.server.request("GET", "/api/dbs/victim/documents/sneak"), 404,
                            "document_not_found")

    def test_raw_nul_in_header_value(self):
        for value in (b"a\x00b", b"\x00", b"trailing\x00\x00", b"a\x00\r\nX-Other: b"):
            with self.subTest(value=value):
                self.assertRefused(b"DELETE /api/dbs/victim_backup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"X-Trace: " + value + b"\r\nConnection: close\r\n\r\n")
        self.assertIntact()

    def test_raw_nul_in_last_header_value(self):
        self.assertRefused(b"DELETE /api/dbs/victim_backup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Connection: close\r\nX-Trace: a\x00b\r\n\r\n")
        self.assertIntact()

    def test_header_line_starting_with_nul(self):
        # libmicrohttpd took a line that starts with NUL for the empty line that ends the
        # header block: what follows would have been read as the body or the next request
        self.assertRefused(b"DELETE /api/dbs/victim_backup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"\x00X-Trace: b\r\nConnection: close\r\n\r\n")
        self.assertIntact()

    def test_raw_nul_in_header_name(self):
        # no ':' before the NUL (libmicrohttpd refused it with its own 400, not the envelope)
        self.assertRefused(b"DELETE /api/dbs/victim_backup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"X-Tr\x00ace: b\r\nConnection: close\r\n\r\n")
        self.assertIntact()

    def test_folded_header_line(self):
        # obs-fold (RFC 9112 5.2: reject with 400 or unfold): ragd refuses it
        self.assertRefused(b"DELETE /api/dbs/victim_backup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"X-Trace: a\r\n  b\r\nConnection: close\r\n\r\n")
        self.assertIntact()

    def test_percent_00_in_path_segment(self):
        self.assertRefused(b"DELETE /api/dbs/victim%00_backup HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        self.assertIntact()

    def test_percent_00_in_query_argument(self):
        body = b"A sneaky document that must not be stored anywhere."
        self.assertRefused(b"POST /api/ingest?db=victim%00_backup&id=sneak HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\nConnection: close\r\nContent-Type: text/plain\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.assertIntact()

    def test_clean_requests_still_work(self):
        # the check accepts what clients really send: bare LF line ends, tabs and several
        # spaces around values, empty values, a request line with extra spaces
        for data in (b"GET /api/dbs/victim HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n",
                     b"GET /api/dbs/victim HTTP/1.1\r\nHost:127.0.0.1\r\nX-A: \t spaced \t\r\n"
                     b"X-Empty:\r\nX-Blank:   \r\nConnection: close\r\n\r\n",
                     b"GET  /api/dbs/victim?x=1&y&z=%41+b HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Connection: close\r\n\r\n",
                     b"GET /api/dbs/victim HTTP/1.0\r\n\r\n"):
            with self.subTest(data=data):
                r = self.send(data)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body["name"], "victim")
        self.assertIntact()
        self.assertEqual(self.call("DELETE", "/api/dbs/victim_backup"), {"deleted": "victim_backup"})


class ChunkedOverCapTest(harness.E2ETestCase):
    """A chunked body is answered 413 as soon as it passes RAGD_MAX_BODY_BYTES, and the
    connection is closed: the rest is never read, however long the client goes on."""

    CAP = 8192
    server_env = {"RAGD_MAX_BODY_BYTES": str(CAP)}

    HEAD = (b"POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")

    @staticmethod
    def chunk(data):
        return b"%x\r\n" % len(data) + data + b"\r\n"

    def rss_kib(self):
        with open(f"/proc/{self.server.pid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        self.fail("no VmRSS")

    def read_response(self, sock):
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        return harness.Response(resp.status, resp.headers, resp.read())

    def test_over_the_cap_then_stalls(self):
        # passes the cap by half, then sends nothing more (no last chunk): the 413 comes
        # while the body is still open
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        try:
            s.sendall(self.HEAD + b"".join(self.chunk(b"x" * 1024) for _ in range(12)))
            t0 = time.monotonic()
            try:
                r = self.read_response(s)
            except (socket.timeout, TimeoutError):
                self.fail("no response while the body was open")
            self.assertLess(time.monotonic() - t0, 5.0)
            err = self.assertEnvelope(r, 413, "payload_too_large")
            self.assertIn(str(self.CAP), err["message"])
            self.assertEqual(r.header("Connection", "").lower(), "close", r)
            # and the server closes its side
            s.settimeout(5)
            try:
                self.assertEqual(s.recv(1), b"")
            except ConnectionResetError:
                pass
        finally:
            s.close()
        self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})

    def test_endless_body(self):
        # one client sends 16 KiB chunks as fast as the server takes them, for up to 64 MiB;
        # the server must answer 413 and stop reading long before that
        rss0 = self.rss_kib()
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        sent = [0]
        stop = threading.Event()

        def feed():
            piece = self.chunk(b"y" * 16384)
            try:
                s.sendall(self.HEAD)
                while not stop.is_set() and sent[0] < 64 << 20:
                    s.sendall(piece)
                    sent[0] += len(piece)
            except OSError:
                pass  # the server closed the connection: what we want

        t = threading.Thread(target=feed, daemon=True)
        t0 = time.monotonic()
        t.start()
        try:
            try:
                r = self.read_response(s)
            except (socket.timeout, TimeoutError, http.client.HTTPException, OSError) as e:
                self.fail(f"no 413 while the body went on ({sent[0]} bytes sent): {e!r}")
            self.assertLess(time.monotonic() - t0, 5.0)
            self.assertEnvelope(r, 413, "payload_too_large")
            self.assertEqual(r.header("Connection", "").lower(), "close", r)
            # the server is still responsive while (or after) the client pushes
            self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})
            t.join(10)
            self.assertFalse(t.is_alive(), f"the server still reads the body ({sent[0]} bytes sent)")
            # what the client got in is the socket buffers' worth, not the 64 MiB
            self.assertLess(sent[0], 32 << 20)
        finally:
            stop.set()
            s.close()
            t.join(10)
        self.assertLess(self.rss_kib() - rss0, 16 * 1024, "the server's memory grew")
        self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})

    def test_chunked_body_within_the_cap(self):
        body = J({"query": "anything", "k": 1})
        s = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        try:
            s.sendall(self.HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
                      + self.chunk(body[:10]) + self.chunk(body[10:]) + b"0\r\n\r\n")
            r = self.read_response(s)
        finally:
            s.close()
        # the default collection does not exist in this server: the body was read and parsed
        self.assertEnvelope(r, 404, "db_not_found")


if __name__ == "__main__":
    unittest.main()
