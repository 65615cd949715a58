#!/usr/bin/env python3
"""Allocation torture pass for ragd: fail allocations one by one, as curl's torture tests
and SQLite's fault simulation do, and check that every failure is a documented error.

It drives build/torture/ragd (tests/torture/fault.c linked in; `make torture-build`) through
its control socket (RAGD_TORTURE_CTL). For each path and N = 1, 2, 3, ...: arm "fail the
Nth allocation from now", send one request, wait until the server logged the request's
completion, disarm, and check

- the server is alive (/health/live) and did not report anything (ASan, UBSan);
- the answer is 200 and exactly what the same request gets without a failure (timings and
  request ids aside), or 503 overloaded / not_ready / upstream_unavailable in the error
  envelope with Retry-After. Anything else (500 internal, 400, 422, no answer, a timeout)
  is a finding: the client sent nothing wrong;
- the store is consistent: an acknowledged ingest reads back in full and every chunk of it
  is found by vector search (the in-memory index); a refused one left nothing behind;
- no leak: a LeakSanitizer check after every N (--leak-every);

until the Nth allocation is no longer reached by the request. At the end: SIGTERM, exit
status 0, no LeakSanitizer report. Findings listed in known.py are reported as KNOWN and do
not fail the pass. docs/testing.md ("Allocation torture") has the rest.

Python 3.11 standard library only; uses tests/e2e/harness.py for the server process.

  RAGD_BIN=build/torture/ragd python3 tests/torture/torture.py                # full pass
  ... torture.py --path query --only 137                                       # replay one N
  ... torture.py --path ingest_json --from 100 --to 200 --verbose
"""

import argparse
import json
import os
import socket
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402
from known import KNOWN  # noqa: E402

ALLOWED_503 = ("overloaded", "not_ready", "upstream_unavailable")
REQUEST_TIMEOUT_S = 10.0   # an armed request not answered by then is a hang
COMPLETE_TIMEOUT_S = 5.0   # its completion line must be logged by then
CHUNK_SIZE = 200
CHUNK_OVERLAP = 40

SERVER_ENV = {
    "RAGD_EMBEDDER": "builtin",
    "RAGD_GENERATOR": "extractive",
    "RAGD_LOG_LEVEL": "info",
    "RAGD_POOL_SIZE": "2",
    "RAGD_CHUNK_SIZE": str(CHUNK_SIZE),
    "RAGD_CHUNK_OVERLAP": str(CHUNK_OVERLAP),
}

# The query collection: distinct facts, metadata for the filter, enough text for a few
# sentences per passage.
QUERY_DOCS = [
    ("alpine", "en", "The Alpine salamander is black and gives birth to live young after a pregnancy of "
                     "two to three years. It lives above 800 metres in the Alps. Its skin secretes toxins."),
    ("kelp", "en", "Giant kelp grows up to half a metre a day in cold coastal water. Kelp forests shelter "
                   "sea otters, urchins and hundreds of fish species. Storms tear kelp from the rocks."),
    ("basalt", "de", "Basalt forms when lava rich in magnesium and iron cools quickly at the surface. "
                     "Columnar basalt, as at the Giant's Causeway, cracks into hexagonal columns."),
    ("ferment", "en", "Sourdough rises because wild yeast and lactic acid bacteria ferment the flour. "
                      "The bacteria make the bread sour; the yeast makes carbon dioxide that lifts it."),
    ("orbit", "de", "A geostationary orbit lies 35,786 kilometres above the equator. A satellite there "
                    "circles once per sidereal day, so it seems to stand still over one point."),
    ("lichen", "en", "A lichen is a partnership of a fungus with an alga or a cyanobacterium. Lichens "
                     "colonise bare rock and are among the first life after a glacier retreats."),
]
QUESTION = "How long is the pregnancy of the Alpine salamander and where does it live?"


def doc_text(tag, n):
    """A document of a few chunks (at CHUNK_SIZE 200), unique to (tag, n)."""
    words = ["amber", "birch", "cobalt", "dune", "ember", "fjord", "glacier", "harbour"]
    parts = [f"Torture document {tag} number {n} begins here."]
    for i, w in enumerate(words):
        parts.append(f"Sentence {i} of {tag}{n} mentions the {w} and the marker {tag}x{n}x{i}.")
    return " ".join(parts)


def strip_volatile(v):
    """A response body without what differs between two identical requests."""
    if isinstance(v, dict):
        return {k: strip_volatile(x) for k, x in v.items() if k not in ("timings_ms", "request_id")}
    if isinstance(v, list):
        return [strip_volatile(x) for x in v]
    return v


def first_difference(a, b, where="body"):
    """A short description of where a and b first differ, or None."""
    if type(a) is not type(b):
        return f"{where}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                return f"{where}.{k}: missing"
            if k not in b:
                return f"{where}.{k}: unexpected"
            d = first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} elements, expected {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{where}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"


# --------------------------------------------------------------------------------------------
# The control socket and the server log

class Control:
    """The fault module's control socket (tests/torture/fault.c)."""

    def __init__(self, path, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.f = self.sock.makefile("rw", encoding="utf-8", errors="replace")

    def readline(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("control socket closed (the server is gone)")
        return line.rstrip("\n")

    def cmd(self, line, multi=False):
        self.f.write(line + "\n")
        self.f.flush()
        out = [self.readline()]
        while multi and out[-1] != "end":
            out.append(self.readline())
        if out[0].startswith("error"):
            raise RuntimeError(f"control: {line}: {out[0]}")
        return out[:-1] if multi else out[0]

    def arm(self, n, domains, persist=False):
        self.cmd(f"arm {n} {domains}" + (" persist" if persist else ""))

    def count(self, domains):
        self.cmd(f"count {domains}")

    def disarm(self):
        st = {}
        for kv in self.cmd("disarm").split():
            k, _, v = kv.partition("=")
            st[k] = int(v) if v.isdigit() else v
        return st

    def stack(self):
        return self.cmd("stack", multi=True)

    def sites(self):
        return self.cmd("sites", multi=True)

    def leaks(self):
        return self.cmd("leaks") != "leaks=0"

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class LogFollower:
    """Reads the server log by file offset (the log only grows, restarts append to it)."""

    def __init__(self, path):
        self.path = path

    def _read(self, start, limit=None):
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                return f.read() if limit is None else f.read(limit)
        except OSError:
            return b""

    def mark(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def since(self, mark, limit=200_000):
        data = self._read(mark, limit)
        return data.decode("utf-8", "replace")

    def wait_for(self, needle, since, timeout):
        """Whether needle shows up in the log after offset since within timeout seconds."""
        want = needle.encode()
        deadline = time.monotonic() + timeout
        pos, carry = since, b""
        while True:
            data = self._read(pos)
            pos += len(data)
            text = carry + data
            if want in text:
                return True
            carry = text[-len(want):]
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: AddressSanitizer", "ERROR: UndefinedBehaviorSanitizer")


# --------------------------------------------------------------------------------------------
# Paths: one request each, its expected answer and its effect on the store

class Path:
    name = "?"
    db = None

    def setup(self, t):
        """Seeds what the path needs and records its baseline (unarmed)."""

    def request(self, n):
        """(method, url, body bytes or None, headers) for iteration n."""
        raise NotImplementedError

    def check_ok(self, t, n, resp):
        """Problems with a 200 answer (a list of strings)."""
        return []

    def check_state(self, t, n, resp):
        """Problems with the store after the armed request (unarmed reads)."""
        return []

    def measured(self, resp):
        """The answer to the counting request (request(-1), unarmed)."""


def json_request(path, body):
    return ("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})


class ReadPath(Path):
    """A read-only request: a 200 must be byte for byte the unarmed answer (volatile fields
    aside)."""

    def setup(self, t):
        t.seed_query_collection()
        first = self.normalised(t.plain(*self.request(0)))
        second = self.normalised(t.plain(*self.request(0)))
        if first != second:
            raise RuntimeError(f"{self.name}: two unarmed answers differ: {first_difference(first, second)}")
        self.baseline = first

    def normalised(self, r):
        if r.status != 200 or not r.is_json():
            raise RuntimeError(f"{self.name}: unarmed request failed: {r!r}")
        return strip_volatile(r.body)

    def check_ok(self, t, n, resp):
        if not resp.is_json():
            return [f"200 without a JSON body: {resp!r}"]
        d = first_difference(strip_volatile(resp.body), self.baseline)
        return [f"200 differs from the unarmed answer: {d}"] if d else []


class Retrieve(ReadPath):
    """The whole pipeline each time (use_cache: false): embed, retrieve, fuse, render."""
    name = "retrieve"

    def request(self, n):
        return json_request("/api/retrieve", {"db": "tq", "query": QUESTION, "k": 3, "use_cache": False,
                                               "filter": {"lang": {"$in": ["en", "de"]}}})


class Query(ReadPath):
    name = "query"

    def request(self, n):
        return json_request("/api/query", {"db": "tq", "query": QUESTION, "k": 3, "use_cache": False})


class CachedReadPath(ReadPath):
    """The semantic cache's read-back (the default use_cache): after the first request every
    unarmed one is a hit. An armed one may miss (a failed lookup or decode computes the answer
    again), so `cached` is the one field allowed to differ; everything else must not."""

    def normalised(self, r):
        body = super().normalised(r)
        body.pop("cached", None)
        return body

    def check_ok(self, t, n, resp):
        if not resp.is_json():
            return [f"200 without a JSON body: {resp!r}"]
        body = strip_volatile(resp.body)
        body.pop("cached", None)
        d = first_difference(body, self.baseline)
        return [f"200 differs from the unarmed answer: {d}"] if d else []


class RetrieveCached(CachedReadPath):
    name = "retrieve_cached"

    def request(self, n):
        return json_request("/api/retrieve", {"db": "tq", "query": QUESTION, "k": 3})


class QueryCached(CachedReadPath):
    name = "query_cached"

    def request(self, n):
        return json_request("/api/query", {"db": "tq", "query": QUESTION, "k": 3})


class QueryStream(ReadPath):
    name = "query_stream"

    def request(self, n):
        return json_request("/api/query", {"db": "tq", "query": QUESTION, "k": 3, "stream": True,
                                           "use_cache": False})

    @staticmethod
    def events(r):
        evs = []
        for ev, data in harness.parse_sse(r.raw):
            try:
                evs.append((ev, strip_volatile(json.loads(data))))
            except ValueError:
                evs.append((ev, {"unparseable": data}))
        return evs

    def normalised(self, r):
        if r.status != 200 or r.content_type() != "text/event-stream":
            raise RuntimeError(f"{self.name}: unarmed request failed: {r!r}")
        evs = self.events(r)
        if [e for e, _ in evs] != ["sources", "token", "done"]:
            raise RuntimeError(f"{self.name}: unexpected events {evs!r}")
        return evs

    def check_ok(self, t, n, resp):
        if resp.content_type() != "text/event-stream":
            return [f"200 that is not an event stream: {resp!r}"]
        try:
            evs = self.events(resp)
        except UnicodeDecodeError:
            return ["event stream is not UTF-8"]
        d = first_difference([list(e) for e in evs], [list(e) for e in self.baseline], "events")
        return [f"200 stream differs from the unarmed one: {d}"] if d else []


class IngestPath(Path):
    """An ingest of a fresh document: acknowledged → stored in full and indexed; refused →
    absent."""

    def doc_id(self, n):
        return f"{self.tag}-{n}"

    def db_of(self, n):
        return self.db

    def meta_filter(self, n):
        return {"tag": self.doc_id(n)}

    def setup(self, t):
        r = t.plain(*self.request(0))  # creates the collection (and warms every statement up)
        if r.status != 200:
            raise RuntimeError(f"{self.name}: unarmed ingest failed: {r!r}")
        problems = self.check_ok(t, 0, r) + self.check_state(t, 0, r)
        if problems:
            raise RuntimeError(f"{self.name}: unarmed ingest inconsistent: {problems}")

    def expected_created(self, n):
        return n == 0  # the set-up ingest creates the collection

    def check_ok(self, t, n, resp):
        b = resp.body if resp.is_json() else None
        if not isinstance(b, dict):
            return [f"200 without a JSON object: {resp!r}"]
        want = {"db": self.db_of(n), "documents": 1, "duplicates": 0, "ids": [self.doc_id(n)],
                "created": self.expected_created(n)}
        got = {k: b.get(k) for k in want}
        problems = [first_difference(got, want)] if got != want else []
        if not isinstance(b.get("chunks"), int) or b["chunks"] < 2:
            problems.append(f"chunks: {b.get('chunks')!r}, expected >= 2")
        return problems

    def check_state(self, t, n, resp):
        acked = resp is not None and resp.status == 200
        problems = t.check_document(self.db_of(n), self.doc_id(n), doc_text(self.tag, n) if acked else None,
                                    self.meta_filter(n), resp.body.get("chunks") if acked and resp.is_json() else None)
        if acked and not problems:
            # The same document again must be a duplicate: that proves the stored content hash.
            r = t.plain(*self.request(n))
            if r.status != 200 or not r.is_json() or r.body.get("duplicates") != 1 or r.body.get("chunks") != 0:
                problems.append(f"re-ingesting the acknowledged document is not a duplicate: {r!r}")
        return problems


class IngestJson(IngestPath):
    name = "ingest_json"
    db = "tj"
    tag = "j"

    def request(self, n):
        return json_request("/api/ingest", {"db": self.db, "documents": [
            {"id": self.doc_id(n), "text": doc_text(self.tag, n), "metadata": {"tag": self.doc_id(n)}}]})


class IngestRaw(IngestPath):
    name = "ingest_raw"
    db = "tr"
    tag = "r"

    def meta_filter(self, n):
        return {"source": f"{self.doc_id(n)}.txt"}

    def request(self, n):
        q = urllib.parse.urlencode({"db": self.db, "id": self.doc_id(n), "source": f"{self.doc_id(n)}.txt"})
        return ("POST", f"/api/ingest?{q}", doc_text(self.tag, n).encode(), {"Content-Type": "text/plain"})


class IngestNewDb(IngestJson):
    """Each N into a collection of its own: creation, and the index's first rows."""
    name = "ingest_new_db"
    tag = "n"

    def db_of(self, n):
        return f"tn-{n}"

    def expected_created(self, n):
        return True

    def request(self, n):
        return json_request("/api/ingest", {"db": self.db_of(n), "documents": [
            {"id": self.doc_id(n), "text": doc_text(self.tag, n), "metadata": {"tag": self.doc_id(n)}}]})


class IngestReplace(Path):
    """One id re-ingested with new text each N: the store holds the new version when
    acknowledged, else exactly the previous one (never a mix), and the index follows."""
    name = "ingest_replace"
    db = "tx"
    doc = "replace-me"

    def request(self, n):
        return json_request("/api/ingest", {"db": self.db, "documents": [
            {"id": self.doc, "text": doc_text("x", n), "metadata": {"v": n}}]})

    def setup(self, t):
        r = t.plain(*self.request(0))
        if r.status != 200:
            raise RuntimeError(f"{self.name}: unarmed ingest failed: {r!r}")
        self.current = 0
        self.chunks = r.body["chunks"]

    def measured(self, resp):
        self.current = -1
        self.chunks = resp.body["chunks"]

    def check_ok(self, t, n, resp):
        b = resp.body if resp.is_json() else None
        if not isinstance(b, dict):
            return [f"200 without a JSON object: {resp!r}"]
        want = {"db": self.db, "documents": 1, "duplicates": 0, "ids": [self.doc], "created": False}
        got = {k: b.get(k) for k in want}
        return [first_difference(got, want)] if got != want else []

    def check_state(self, t, n, resp):
        acked = resp is not None and resp.status == 200
        if acked and resp.is_json():
            self.current = n
            self.chunks = resp.body.get("chunks")
        problems = t.check_document(self.db, self.doc, doc_text("x", self.current), {"v": self.current},
                                    self.chunks, meta={"v": self.current})
        if not acked and self.current != n:
            stale = t.vector_hits(self.db, doc_text("x", n), {"v": n})
            if stale:
                problems.append(f"refused version {n} is found by vector search ({stale} chunks)")
        if problems:  # follow what the store holds, so that one finding is reported once
            r = t.plain("GET", f"/api/dbs/{self.db}/documents/{self.doc}")
            if r.status == 200 and r.is_json() and isinstance(r.body.get("metadata", {}).get("v"), int):
                self.current = r.body["metadata"]["v"]
                self.chunks = len(r.body.get("chunks", []))
        return problems


PATHS = [Retrieve, RetrieveCached, Query, QueryCached, QueryStream, IngestJson, IngestRaw, IngestReplace, IngestNewDb]


# --------------------------------------------------------------------------------------------
# The run

# Allocator plumbing: frames that never explain a finding.
PLUMBING = ("src/util/jsonmem.c", "src/util/strbuf.c")


class Finding:
    def __init__(self, path, n, kind, detail, evidence="", stack=None):
        self.path, self.n, self.kind, self.detail = path, n, kind, detail
        self.evidence = evidence
        self.stack = stack or []
        self.known = None

    def origin(self):
        """The innermost frame in src/ that is not allocator plumbing, without its number."""
        for f in self.stack:
            if " src/" in f and not any(p in f for p in PLUMBING):
                return f.split(" ", 1)[1] if f.startswith("#") else f
        return self.stack[0].split(" ", 1)[-1] if self.stack else "?"

    def matches(self, k):
        stack = "\n".join(self.stack)
        return (self.kind in k["kinds"]
                and (not k.get("origin") or any(o in self.origin() for o in k["origin"]))
                and all(x in stack for x in k.get("stack", ()))
                and (not k.get("detail") or any(d in self.detail for d in k["detail"]))
                and (not k.get("paths") or self.path in k["paths"]))

    def headline(self):
        return f"{self.path} N={self.n}: {self.kind}: {self.detail} [failed allocation in {self.origin()}]"


class Torture:
    def __init__(self, args):
        self.args = args
        self.findings = []
        self.seq = 0
        self.server = None
        self.ctl = None
        self.seeded = False
        self.known_seen = set()

    # -- server -----------------------------------------------------------------------------
    def start(self):
        env = dict(SERVER_ENV)
        self.server = harness.Server(env=env, name="torture")
        self.ctl_path = os.path.join(self.server.root, "ctl.sock")
        self.server.extra_env["RAGD_TORTURE_CTL"] = self.ctl_path
        self.log = LogFollower(self.server.log_path)
        self.server.start()
        self.ctl = Control(self.ctl_path)

    def restart(self, why):
        print(f"  [restarting the server: {why}]", flush=True)
        self.ctl.close()
        if self.server.running():
            self.server.stop(expect=None)
        else:
            self.server.wait_exit()
        self.server.restart()
        self.ctl = Control(self.ctl_path)

    def stop(self):
        """SIGTERM: exit 0 and no sanitizer report."""
        self.ctl.close()
        mark = self.log.mark()
        rc = self.server.stop(expect=None)
        tail = self.log.since(mark)
        if rc != 0 or any(m in tail for m in SANITIZER_MARKS):
            self.add(Finding("shutdown", 0, "exit", f"exit status {rc} after SIGTERM", tail[-6000:]))

    def alive(self):
        if not self.server.running():
            return False
        try:
            return self.server.request("GET", "/health/live", timeout=5.0).status == 200
        except OSError:
            return False

    # -- requests ---------------------------------------------------------------------------
    def rid(self, what):
        self.seq += 1
        return f"tt{self.seq}-{what}"

    def send(self, method, url, body, headers, rid, timeout):
        h = dict(headers)
        h["X-Request-ID"] = rid
        h["Connection"] = "close"
        ct = h.pop("Content-Type", None)
        return harness.request(self.server.port, method, url, body=body, headers=h, content_type=ct,
                               timeout=timeout)

    def plain(self, method, url, body=None, headers=None):
        """An unarmed request; waits for its completion line."""
        rid = self.rid("check")
        mark = self.log.mark()
        r = self.send(method, url, body, headers or {}, rid, REQUEST_TIMEOUT_S)
        self.log.wait_for(f"id={rid}\n", mark, COMPLETE_TIMEOUT_S)
        return r

    def plain_json(self, method, url, payload):
        return self.plain(method, url, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def seed_query_collection(self):
        if self.seeded:
            return
        docs = [{"id": i, "text": text, "metadata": {"lang": lang}} for i, lang, text in QUERY_DOCS]
        r = self.plain_json("POST", "/api/ingest", {"db": "tq", "documents": docs})
        if r.status != 200:
            raise RuntimeError(f"seeding tq failed: {r!r}")
        self.seeded = True

    # -- store checks -----------------------------------------------------------------------
    def vector_hits(self, db, text, filt):
        r = self.plain_json("POST", "/api/retrieve", {"db": db, "query": text[:2000], "method": "vector",
                                                      "k": 100, "filter": filt})
        if r.status == 404:
            return 0
        if r.status != 200 or not r.is_json():
            return -1
        return len(r.body.get("sources", []))

    def check_document(self, db, doc_id, text, filt, chunks, meta=None):
        """text None: the document must not exist. Else it must read back as text (every
        chunk is text[start:end], together they cover every non-space character), hold
        `chunks` chunks when given, and vector search with filt must find every chunk."""
        url = f"/api/dbs/{urllib.parse.quote(db, safe='')}/documents/{urllib.parse.quote(doc_id, safe='')}"
        r = self.plain("GET", url)
        if text is None:
            if r.status == 404 and r.is_json() and r.body.get("error", {}).get("code") in (
                    "document_not_found", "db_not_found"):
                if self.vector_hits(db, doc_id, filt) > 0:
                    return ["refused document is found by vector search"]
                return []
            return [f"refused ingest left the document behind: GET answers {r.status} {r.raw[:200]!r}"]
        if r.status != 200 or not r.is_json():
            return [f"acknowledged document does not read back: {r!r}"]
        b = r.body
        problems = []
        got = b.get("chunks", [])
        if chunks is not None and len(got) != chunks:
            problems.append(f"{len(got)} chunks stored, the ingest answered {chunks}")
        covered = [False] * len(text)
        for c in got:
            s, e = c.get("start"), c.get("end")
            if not (isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text)) or text[s:e] != c.get("text"):
                problems.append(f"chunk {c.get('chunk')} is not text[{s}:{e}]")
                break
            for i in range(s, e):
                covered[i] = True
        if not problems and any(not covered[i] and not text[i].isspace() for i in range(len(text))):
            problems.append("the stored chunks do not cover the text")
        if meta is not None and b.get("metadata") != meta:
            problems.append(f"metadata {b.get('metadata')!r}, expected {meta!r}")
        hits = self.vector_hits(db, text, filt)
        if hits != len(got):
            problems.append(f"vector search finds {hits} of its {len(got)} chunks (in-memory index)")
        return problems

    # -- findings ---------------------------------------------------------------------------
    def add(self, f):
        for k in KNOWN:
            if f.matches(k):
                f.known = k["id"]
                self.known_seen.add(k["id"])
                break
        self.findings.append(f)
        if f.known and not self.args.verbose:
            return  # counted in the summary
        tag = f"KNOWN {f.known}" if f.known else "FINDING"
        print(f"  {tag}: {f.headline()}", flush=True)
        if self.args.verbose or not f.known:
            for line in f.stack[:14]:
                print(f"      {line}")
            if f.evidence and (self.args.verbose or f.kind in ("crash", "leak", "exit", "hang")):
                print("      --- server log ---")
                for line in f.evidence.strip().splitlines()[:60]:
                    print(f"      {line}")

    # -- one N ------------------------------------------------------------------------------
    def check_envelope(self, r, rid):
        if not r.is_json() or not isinstance(r.body, dict):
            return [f"{r.status} without a JSON body: {r!r}"]
        err = r.body.get("error")
        if not isinstance(err, dict):
            return [f"{r.status} outside the error envelope: {r!r}"]
        problems = []
        if not (isinstance(err.get("message"), str) and err["message"].strip()):
            problems.append("error.message empty")
        static_oom = err.get("message") == "out of memory" and "request_id" not in err
        if static_oom and self.args.persistent and r.header("X-Request-ID") == rid:
            pass  # the static 503 body (no memory even for the envelope): id in the header only
        elif err.get("request_id") != rid or r.header("X-Request-ID") != rid:
            problems.append(f"request id {err.get('request_id')!r} / {r.header('X-Request-ID')!r}, sent {rid!r}")
        if r.body.get("detail") != err.get("message"):
            problems.append("detail != message")
        return problems

    def one(self, path, n):
        """Runs iteration n of path. Returns the disarm status (fired = 0: past the end)."""
        method, url, body, headers = path.request(n)
        rid = self.rid(f"{path.name}-{n}")
        mark = self.log.mark()
        self.ctl.arm(n, self.args.domains, self.args.persistent)
        resp, kind, detail = None, None, None
        try:
            resp = self.send(method, url, body, headers, rid, REQUEST_TIMEOUT_S)
        except TimeoutError:
            kind, detail = "hang", f"no answer within {REQUEST_TIMEOUT_S:.0f} s"
        except OSError as e:
            kind, detail = "no_response", f"connection failed: {e!r}"
        except Exception as e:  # http.client.RemoteDisconnected and friends
            kind, detail = "no_response", f"no HTTP answer: {e!r}"
        completed = self.log.wait_for(f"id={rid}\n", mark, COMPLETE_TIMEOUT_S) if self.server.running() else False
        try:
            st = self.ctl.disarm()
        except OSError:  # the server is gone: go on with the next N after the restart
            st = {"fired": 1, "seen": -1}
        problems = []
        if kind:
            problems.append((kind, detail))
        alive = self.alive()
        evidence = self.log.since(mark)
        if not alive:
            problems.append(("crash", "the server died"))
        elif any(m in evidence for m in SANITIZER_MARKS):
            problems.append(("sanitizer", "sanitizer report in the log"))
        if alive and resp is not None:
            if not completed:
                problems.append(("no_completion", "answered, but the request never completed in the server"))
            if resp.status == 200:
                problems += [("wrong_200", p) for p in path.check_ok(self, n, resp)]
            elif resp.status == 503:
                code = resp.body.get("error", {}).get("code") if resp.is_json() and isinstance(resp.body, dict) else None
                if code not in ALLOWED_503:
                    problems.append(("bad_status", f"503 with code {code!r}"))
                problems += [("bad_envelope", p) for p in self.check_envelope(resp, rid)]
                if not resp.header("Retry-After"):
                    problems.append(("bad_envelope", "503 without Retry-After"))
            else:
                code = resp.body.get("error", {}).get("code") if resp.is_json() and isinstance(resp.body, dict) else None
                problems.append(("bad_status", f"{resp.status} {code or ''}".strip()
                                 + (f": {resp.body['error'].get('message')}" if code else f": {resp.raw[:160]!r}")))
        if alive:
            problems += [("inconsistent", p) for p in path.check_state(self, n, resp)]
            if self.args.leak_every and (n % self.args.leak_every == 0 or not st.get("fired")):
                if self.ctl.leaks():
                    problems.append(("leak", "LeakSanitizer found unreachable memory"))
                    evidence = self.log.since(mark)
        stack = []
        if st.get("fired") and (problems or self.args.verbose) and self.server.running():
            try:
                stack = self.ctl.stack()  # before the next arm, which forgets it
            except OSError:
                pass
        if self.args.verbose:
            status = resp.status if resp is not None else kind
            print(f"  {path.name} N={n}: {status} seen={st.get('seen')} fired={st.get('fired')} "
                  f"dom={st.get('dom')} size={st.get('size')}" + (f" at {stack[0]}" if stack else ""))
            if self.args.only:
                print(f"    answer: {resp!r}")
                for line in stack:
                    print(f"      {line}")
        for kind, detail in problems:
            self.add(Finding(path.name, n, kind, detail, evidence[-8000:], stack))
        if not alive or any(k in ("leak", "sanitizer", "hang") for k, _ in problems):
            if self.args.only is None and not self.args.keep_going and any(
                    not f.known for f in self.findings):
                raise SystemExit(self.report(1))
            self.restart("after " + ", ".join(sorted({k for k, _ in problems})))
        return st

    # -- a path -----------------------------------------------------------------------------
    def measure(self, path):
        """Allocations of one unarmed request of the path, per domain, and ragd's sites."""
        method, url, body, headers = path.request(-1)
        rid = self.rid(f"{path.name}-count")
        mark = self.log.mark()
        self.ctl.count(self.args.domains)
        r = self.send(method, url, body, headers, rid, REQUEST_TIMEOUT_S)
        self.log.wait_for(f"id={rid}\n", mark, COMPLETE_TIMEOUT_S)
        st = self.ctl.disarm()
        st["sites"] = len(self.ctl.sites())
        if r.status != 200:
            raise RuntimeError(f"{path.name}: the unarmed request failed: {r!r}")
        path.measured(r)
        return st

    def run_path(self, path):
        t0 = time.monotonic()
        path.setup(self)
        st = self.measure(path)
        doms = " ".join(f"{d}={st[d]}" for d in "rjseo" if st.get(d))
        print(f"== {path.name}: {st['seen']} allocations per request ({doms}; {st['sites']} call sites in ragd)",
              flush=True)
        a = self.args
        if a.only is not None:
            ns = [a.only]
        else:
            ns = range(a.start, (a.to or 10**9) + 1, a.stride)
        ran, last = 0, 0
        for n in ns:
            res = self.one(path, n)
            ran += 1
            last = n
            if not res.get("fired"):
                break
        dt = time.monotonic() - t0
        print(f"   {path.name}: N = {a.start}..{last} step {a.stride}: {ran} requests in {dt:.1f} s", flush=True)
        return {"path": path.name, "allocs": st["seen"], "by_domain": doms, "sites": st["sites"],
                "runs": ran, "last": last, "seconds": dt}

    def run(self):
        t0 = time.monotonic()
        self.start()
        if self.ctl.leaks():
            raise RuntimeError("LeakSanitizer reports leaks before any fault: the oracle is unusable")
        summary = []
        try:
            for cls in PATHS:
                if self.args.path and cls.name not in self.args.path:
                    continue
                summary.append(self.run_path(cls()))
        finally:
            if self.server and self.server.running():
                self.stop()
        print("\n== summary")
        for s in summary:
            print(f"   {s['path']:<15} {s['allocs']:>5} allocations ({s['by_domain']}), {s['sites']:>3} ragd sites; "
                  f"{s['runs']:>5} runs in {s['seconds']:6.1f} s")
        print(f"   total {time.monotonic() - t0:.1f} s")
        return self.report(0)

    def report(self, rc):
        new = [f for f in self.findings if not f.known]
        known = [f for f in self.findings if f.known]
        if known:
            print(f"\n!! {len(known)} results matched KNOWN findings: unfixed bugs, skipped so that the pass")
            print("!! can run (tests/torture/known.py says where each is and how to fix it):")
            for k in KNOWN:
                hits = [f for f in known if f.known == k["id"]]
                if hits:
                    where = []
                    for p in dict.fromkeys(f.path for f in hits):
                        ns = list(dict.fromkeys(f.n for f in hits if f.path == p))
                        more = f",... ({len(ns)} N)" if len(ns) > 4 else ""
                        where.append(f"{p} N={','.join(map(str, ns[:4]))}{more}")
                    where = "; ".join(where)
                    print(f"!!   {k['id']:<20} {len(hits):>4} x  {k['file']}  ({where})")
        # Only a full one-shot pass reaches every known finding (in persistent mode the
        # failures that follow the first turn most wrong 200s into 503s).
        full = (self.args.only is None and not self.args.path and self.args.stride == 1 and not self.args.to
                and self.args.start == 1 and not self.args.persistent)
        stale = [k["id"] for k in KNOWN if k["id"] not in self.known_seen and not k.get("persistent_only")]
        if full and stale:
            print(f"\n!! KNOWN entries never matched in this full pass (fixed? remove them): {', '.join(stale)}")
            new.append(Finding("known.py", 0, "stale", ", ".join(stale)))
        if new:
            print(f"\nFAILED: {len(new)} new findings:")
            for f in new:
                print(f"  - {f.headline()}")
            return 1
        print("\ntorture: OK" + (" (with known findings)" if known else ""))
        return rc


def sanitizer_env():
    """ASan/UBSan options for the server: leaks on; a small quarantine, because every
    LeakSanitizer check walks all of it (256 MB by default: 60 ms a check instead of 4)."""
    opts = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
    keys = {o.split("=", 1)[0] for o in opts}
    for o in ("detect_leaks=1", "quarantine_size_mb=16"):
        if o.split("=", 1)[0] not in keys:
            opts.append(o)
    os.environ["ASAN_OPTIONS"] = ":".join(opts)
    if "UBSAN_OPTIONS" not in os.environ:
        os.environ["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", action="append", choices=[p.name for p in PATHS],
                    help="run only this path (repeatable); default: all")
    ap.add_argument("--domains", default="rjseo",
                    help="allocators to fail: r ragd, j jansson, s SQLite, e libevent, o OpenSSL (default rjseo)")
    ap.add_argument("--only", type=int, help="replay one N (with --path), verbosely")
    ap.add_argument("--from", dest="start", type=int, default=1, help="first N (default 1)")
    ap.add_argument("--to", type=int, help="last N (default: until the failure no longer triggers)")
    ap.add_argument("--stride", type=int, default=1, help="every STRIDE-th N only (a sample)")
    ap.add_argument("--leak-every", type=int, default=1,
                    help="LeakSanitizer check every K N (and at the end of each path); 0: only at exit")
    ap.add_argument("--persistent", action="store_true", help="fail the Nth allocation and every later one")
    ap.add_argument("--keep-going", action="store_true", help="after a crash, leak or hang: restart and go on")
    ap.add_argument("--verbose", action="store_true", help="one line per N")
    args = ap.parse_args()
    if args.only is not None:
        args.verbose = True
        args.keep_going = True
        if not args.path:
            ap.error("--only needs --path")
    sanitizer_env()
    return Torture(args).run()


if __name__ == "__main__":
    sys.exit(main())
