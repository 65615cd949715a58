#!/usr/bin/env python3
"""Randomized, seeded fault-injection ("chaos") test of ragd under ASan + UBSan.

Per seed: a fake Ollama (tools/fake_ollama, its own process) and ragd with tight,
random resilience settings (RAGD_MAX_CONCURRENT 1-10, RAGD_MAX_QUEUE 0-32, RAGD_EMBED_BATCH
4-32, timeouts of a few seconds, a short breaker recovery, RAGD_EMBEDDER auto|ollama,
RAGD_GENERATOR auto|ollama).
Client threads then ingest (1 to 3,000 chunks, JSON and raw text/plain, into builtin,
Ollama-embedded, fallback and new collections), query (plain and streamed), retrieve, read
documents back and hang up early, while a chaos thread switches the fake among up, flaky (up, but the
next few calls fail), refuse, error500, reset, hang_before_headers, hang_mid_stream, error_line, cut_stream,
close_mid_stream, busy (503 "server busy") and slow.

The oracle (docs/testing.md has the full list):
- the server process stays alive;
- every request that was not hung up gets a status and body documented in docs/api.md:
  200 with the right shape, 503 overloaded/upstream_unavailable with Retry-After, 504
  upstream_timeout, 409 conflict only where asked for; streams are well-formed SSE
  (sources, token..., then done or error); never 500, a reset, a cut body or no answer within
  CHAOS_REQUEST_TIMEOUT (60 s);
- afterwards every acknowledged document is complete (its chunks reproduce its text, as many
  as the ingest reported) and retrievable, every refused one is absent, a hung-up ingest is
  all or nothing, the collections hold nothing else, and every passage a query returned was
  the exact text of a document that ended up stored;
- SIGTERM exits 0 with no sanitizer report, and PRAGMA integrity_check says ok.

Run:  make chaos                      (builds build/asan/ragd; CHAOS_SEEDS seeds, default 4)
      CHAOS_SEED=1234 make chaos      (replays one seed; a comma list replays several)
      make soak                       (CHAOS_SEEDS=20, CHAOS_SECONDS=30)
      CHAOS_UPSTREAM=off make chaos   (builtin embedder + extractive generator: the oracle's
                                       self-check, no request should ever be refused)
Other knobs: CHAOS_SECONDS (chaos phase per seed, default 8), CHAOS_REQUEST_TIMEOUT (60),
CHAOS_THREADS (client threads; default random 5-12), CHAOS_VERBOSE=1 (every answer and fault
switch), RAGD_E2E_KEEP=1 (keep every dir).
A seed fixes the configuration, the operations each thread issues and the fault schedule;
the interleaving still depends on timing, so a replay re-runs the same plan, not the same
schedule to the microsecond.
"""

import http.client
import json
import math
import os
import random
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import traceback
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

FAKE = os.path.join(ROOT, "tools", "fake_ollama", "fake_ollama.py")

SEEDS_DEFAULT = 4
SECONDS_DEFAULT = 8.0
VERBOSE = os.environ.get("CHAOS_VERBOSE", "") not in ("", "0")
REQUEST_TIMEOUT = float(os.environ.get("CHAOS_REQUEST_TIMEOUT", "60"))
EMBED_DIM = 64          # the fake's vectors: small, so that 3,000-chunk ingests stay cheap
MAX_CHUNKS = 3000

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer")

# What docs/api.md documents for a refused request during normal operation (not start-up,
# not shutdown): the status and the error codes that may come with it.
REFUSALS = {503: {"overloaded", "upstream_unavailable"}, 504: {"upstream_timeout"}}

ANIMALS = ["otter", "heron", "badger", "lynx", "marten", "ibis", "gecko", "tapir", "okapi",
           "quokka", "walrus", "egret", "dingo", "ocelot", "newt", "bison"]
VERBS = ["watches", "guards", "crosses", "paints", "counts", "follows", "builds", "measures"]
THINGS = ["bridge", "lantern", "harbour", "orchard", "glacier", "market", "tower", "canal",
          "meadow", "quarry", "library", "furnace"]
COLOURS = ["amber", "cobalt", "crimson", "ivory", "jade", "ochre", "silver", "violet"]

# Fault modes of the chaos thread and their weights.
MODES = [("up", 25), ("flaky", 15), ("refuse", 12), ("error500", 10), ("busy", 8), ("slow", 8),
         ("hang_before_headers", 8), ("hang_mid_stream", 8), ("reset", 5), ("error_line", 4),
         ("cut_stream", 4), ("close_mid_stream", 3)]


def weighted(rng, pairs):
    total = sum(w for _, w in pairs)
    x = rng.uniform(0, total)
    for item, w in pairs:
        x -= w
        if x <= 0:
            return item
    return pairs[-1][0]


# --------------------------------------------------------------------------------------------
# The fake Ollama, in its own process (its embedding work is CPU-bound Python)

class FakeProcess:
    def __init__(self, log_path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, FAKE, "--port", "0", "--admin-port", "0", "--embed-dim", str(EMBED_DIM),
             "--parallel", "4"], stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"fake_ollama did not start: {line!r}")
        parts = line.split()
        self.url = parts[parts.index("on") + 1]
        self.admin_url = parts[parts.index("admin") + 1]

    def _post(self, path, obj):
        data = json.dumps(obj).encode()
        req = urllib.request.Request(self.admin_url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def configure(self, **knobs):
        last = None
        for _ in range(5):  # re-binding after "refuse" can race a port in TIME_WAIT
            try:
                return self._post("/__admin/config", knobs)
            except OSError as e:
                last = e
                time.sleep(0.1)
        raise RuntimeError(f"fake_ollama admin config failed: {last!r}")

    def stats(self):
        with urllib.request.urlopen(self.admin_url + "/__admin/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


# --------------------------------------------------------------------------------------------
# Documents and what happened to them

class Doc:
    def __init__(self, db, doc_id, text, marker):
        self.db = db
        self.id = doc_id
        self.text = text
        self.marker = marker
        self.acked = False         # some ingest of it was answered 200
        self.refused = 0           # ingests of it answered 503/504
        self.hung = False          # some ingest of it was hung up before its answer
        self.chunks = None         # chunk count from a 200 that wrote it (single-doc request)


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.docs = {}             # (db, id) -> Doc
        self.collections = {}      # name -> kind ("builtin", "ollama", "fallback", "new")
        self.seen_sources = []     # (db, doc_id, chunk, start, end, text) from query answers
        self.group_chunks = []     # ([Doc], chunks) of acknowledged multi-doc ingests

    def add(self, doc):
        with self.lock:
            self.docs[(doc.db, doc.id)] = doc


class Failures:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []
        self.stop = threading.Event()

    def add(self, msg):
        with self.lock:
            self.items.append(msg)
        self.stop.set()

    def __bool__(self):
        return bool(self.items)


def make_text(rng, marker, target_chars):
    """ASCII sentences (so that byte offsets are string offsets) with a unique marker word in
    the first sentence and now and then."""
    out = [f"Record {marker} opens here."]
    n = 0
    size = len(out[0])
    while size < target_chars:
        n += 1
        s = (f"The {rng.choice(COLOURS)} {rng.choice(ANIMALS)} {rng.choice(VERBS)} the "
             f"{rng.choice(THINGS)} number {rng.randrange(100000)} near {rng.choice(THINGS)} {n}.")
        if n % 40 == 0:
            s += f" Marker {marker} again."
        out.append(s)
        size += len(s) + 1
        if n % 9 == 0:
            out.append("\n")
    return " ".join(out)


# --------------------------------------------------------------------------------------------
# HTTP helpers

class Answer:
    """One HTTP answer: status, headers, raw body, parsed JSON or SSE events."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        self.body = None
        self.json_error = None
        if self.ctype == "application/json":
            try:
                self.body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                self.json_error = e

    def short(self):
        return f"{self.status} {self.ctype} {self.raw[:400]!r}"


def build_request(method, path, body=None, ctype=None, headers=None):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    body = body or b""
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Client:
    """Requests to the server under test; a request either returns an Answer, returns None
    (hung up on purpose) or raises Broken (reset, cut body, no answer in time)."""

    class Broken(Exception):
        pass

    def __init__(self, port):
        self.port = port

    def call(self, method, path, obj=None, body=None, ctype=None, headers=None, hangup=None):
        if obj is not None:
            body = json.dumps(obj).encode()
            ctype = ctype or "application/json"
        if isinstance(body, str):
            body = body.encode()
        data = build_request(method, path, body, ctype, headers)
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT)
        except OSError as e:
            raise Client.Broken(f"connect failed: {e!r}")
        try:
            try:
                sock.sendall(data)
            except OSError as e:
                raise Client.Broken(f"sending the request failed: {e!r}")
            if hangup is not None:
                # Hang up after `delay` s, or, with `after_bytes`, once the answer has begun
                # (a stream's first event). An answer that is complete before the delay is
                # read and judged like any other.
                delay, after_bytes, rst = hangup
                r, _, _ = select.select([sock], [], [], delay if not after_bytes else REQUEST_TIMEOUT)
                if after_bytes and not r:
                    raise Client.Broken(f"no answer began within {REQUEST_TIMEOUT:.0f} s")
                if not r or after_bytes:
                    if rst:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return None
            resp = http.client.HTTPResponse(sock, method=method)
            try:
                resp.begin()
                raw = resp.read()
            except socket.timeout:
                raise Client.Broken(f"no complete answer within {REQUEST_TIMEOUT:.0f} s")
            except (http.client.HTTPException, OSError) as e:
                raise Client.Broken(f"connection broken: {e!r}")
            return Answer(resp.status, resp.headers, raw)
        finally:
            sock.close()


def parse_sse(raw):
    """[(event, data)] of a text/event-stream body; raises ValueError when malformed."""
    text = raw.decode("utf-8")
    if text and not text.endswith("\n\n"):
        raise ValueError("the stream does not end with a blank line")
    events = []
    for block in text.split("\n\n")[:-1]:
        event, data = None, []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            else:
                raise ValueError(f"unknown SSE field {field!r}")
        if event is None and not data:
            continue
        events.append((event or "message", json.loads("\n".join(data))))
    return events


# --------------------------------------------------------------------------------------------
# One seed

class Run:
    def __init__(self, seed, seconds, upstream=True, threads=None):
        self.seed = seed
        self.seconds = seconds
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.failures = Failures()
        self.ledger = Ledger()
        self.timeline = []              # (t, fault mode) of the chaos thread
        self.counts = {}                # (route, status, code) -> n
        self.counts_lock = threading.Lock()
        self.t0 = None
        self.doc_serial = 0
        self.serial_lock = threading.Lock()
        rng = self.rng
        self.env = {
            "RAGD_MAX_CONCURRENT": rng.randint(1, 10),
            "RAGD_MAX_QUEUE": rng.choice([0, 1, 2, 4, 8, 16, 32, 32]),
            "RAGD_EMBED_TIMEOUT_S": rng.choice([2, 3, 4, 5]),
            "RAGD_GENERATE_TIMEOUT_S": rng.choice([2, 3, 4, 5]),
            # Short open periods (they double on each re-open): many breaker cycles per second.
            "RAGD_BREAKER_RECOVERY_S": rng.choice(["0.1", "0.2", "0.3", "0.5", "1"]),
            "RAGD_BREAKER_FAILURES": rng.randint(1, 8),
            "RAGD_EMBED_BATCH": rng.choice([4, 8, 16, 32, 32]),
            "RAGD_EMBEDDER": rng.choice(["auto", "ollama"]),
            "RAGD_GENERATOR": rng.choice(["auto", "ollama"]),
            "RAGD_CHUNK_SIZE": rng.choice([100, 150, 200, 300, 500]),
            "RAGD_SHUTDOWN_GRACE_S": 10,
            "RAGD_LOG_LEVEL": "info",
        }
        self.env["RAGD_CHUNK_OVERLAP"] = rng.randint(0, self.env["RAGD_CHUNK_SIZE"] // 4)
        if not upstream:
            self.env["RAGD_EMBEDDER"] = "builtin"
            self.env["RAGD_GENERATOR"] = "extractive"
        self.nthreads = threads or rng.randint(5, 12)
        # Without an upstream nothing may be refused: the oracle's self-check is strict.
        self.refusals = REFUSALS if upstream else {}

    # -- bookkeeping ------------------------------------------------------------------------
    def now(self):
        return time.monotonic() - self.t0

    def fail(self, what, msg):
        self.failures.add(f"[t={self.now():6.2f}s] {what}: {msg}")

    def count(self, route, ans, what=""):
        code = None
        if ans is not None and isinstance(ans.body, dict) and isinstance(ans.body.get("error"), dict):
            code = ans.body["error"].get("code")
        if VERBOSE:
            msg = ans.body["error"].get("message") if code else ""
            print(f"chaos:   [t={self.now():6.2f}s] {route}: {ans.status if ans else 'hung up'} {code or ''} {what}"
                  f"{' -- ' + str(msg)[:160] if msg else ''}", flush=True)
        key = (route, ans.status if ans is not None else "hung up", code)
        with self.counts_lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def new_doc(self, db, rng, chunks_target, chunk_size, overlap):
        with self.serial_lock:
            self.doc_serial += 1
            n = self.doc_serial
        marker = f"mk{self.seed % 100000}x{n}z"
        # Chunks end at sentence ends in the second half of the window: about 0.8 of the
        # chunk size each, minus the overlap.
        step = max(30, int(chunk_size * 0.8) - overlap)
        text = make_text(rng, marker, max(20, chunks_target * step - step // 2))
        doc = Doc(db, f"doc-{n}-{rng.randrange(1 << 30):x}", text, marker)
        self.ledger.add(doc)
        return doc

    # -- the oracle for one answer -----------------------------------------------------------
    def check_envelope(self, what, ans, allowed):
        """ans is an error answer: documented status and code, the envelope, Retry-After."""
        codes = allowed.get(ans.status)
        if codes is None:
            self.fail(what, f"undocumented status here: {ans.short()}")
            return False
        if ans.ctype != "application/json" or not isinstance(ans.body, dict):
            self.fail(what, f"error without the JSON envelope: {ans.short()}")
            return False
        err = ans.body.get("error")
        if not isinstance(err, dict) or err.get("code") not in codes:
            self.fail(what, f"status {ans.status} with code outside {sorted(codes)}: {ans.short()}")
            return False
        rid = ans.headers.get("X-Request-ID")
        if not err.get("message") or err.get("request_id") != rid or ans.body.get("detail") != err.get("message"):
            self.fail(what, f"malformed envelope (X-Request-ID {rid!r}): {ans.short()}")
            return False
        if ans.status == 503 and not ans.headers.get("Retry-After"):
            self.fail(what, f"503 without Retry-After: {ans.short()}")
            return False
        return True

    def check_sources(self, what, db, body):
        srcs = body.get("sources")
        if not isinstance(srcs, list):
            self.fail(what, f"no sources list: {str(body)[:300]}")
            return False
        for i, s in enumerate(srcs):
            if not isinstance(s, dict) or s.get("n") != i + 1 or not isinstance(s.get("text"), str):
                self.fail(what, f"malformed source {i}: {str(s)[:300]}")
                return False
            with self.ledger.lock:
                self.ledger.seen_sources.append((db, s.get("doc_id"), s.get("chunk"), s.get("start"),
                                                 s.get("end"), s.get("text")))
        return True

    def check_answer_body(self, what, db, body, streamed=False):
        if not isinstance(body, dict):
            self.fail(what, f"200 without a JSON object: {str(body)[:300]}")
            return
        if not self.check_sources(what, db, body):
            return
        n = len(body["sources"])
        for key in ("metadatas", "distances") if streamed else ("documents", "metadatas", "distances"):
            if not isinstance(body.get(key), list) or len(body[key]) != n:
                self.fail(what, f"{key} does not match sources: {str(body)[:300]}")
                return
        if not isinstance(body.get("answer"), str) or not body["answer"]:
            self.fail(what, f"no answer: {str(body)[:300]}")
        if body.get("provider") not in ("ollama", "extractive"):
            self.fail(what, f"provider {body.get('provider')!r}")
        if not isinstance(body.get("degraded"), bool):
            self.fail(what, f"degraded is not a boolean: {str(body)[:300]}")
        elif body["degraded"] and not body.get("degraded_reason"):
            self.fail(what, "degraded without a degraded_reason")
        if body.get("provider") == "extractive" and n and self.upstream and not body.get("degraded"):
            self.fail(what, "an extractive answer under an LLM generator that is not flagged degraded")
        if not self.upstream and body.get("degraded"):
            self.fail(what, f"degraded without any upstream: {body.get('degraded_reason')}")

    def judge_query(self, what, db, ans, stream):
        if ans.status != 200:
            self.check_envelope(what, ans, self.refusals)
            return
        if not stream:
            if ans.ctype != "application/json":
                self.fail(what, f"200 that is not JSON: {ans.short()}")
                return
            self.check_answer_body(what, db, ans.body)
            return
        if ans.ctype != "text/event-stream":
            self.fail(what, f"streamed 200 that is not text/event-stream: {ans.short()}")
            return
        try:
            events = parse_sse(ans.raw)
        except (ValueError, UnicodeDecodeError) as e:
            self.fail(what, f"malformed SSE ({e}): {ans.raw[-400:]!r}")
            return
        names = [e for e, _ in events]
        if len(names) < 2 or names[0] != "sources" or names[-1] not in ("done", "error") \
                or any(n != "token" for n in names[1:-1]):
            self.fail(what, f"SSE events out of order: {names[:20]}")
            return
        if not self.check_sources(what, db, events[0][1]):
            return
        last = events[-1][1]
        if names[-1] == "done":
            if "documents" in last:
                self.fail(what, "done carries documents")
            self.check_answer_body(what, db, last, streamed=True)
            text = "".join(d.get("text", "") for n, d in events if n == "token")
            if text != last.get("answer"):
                self.fail(what, f"tokens {text[:200]!r} do not make the answer {str(last.get('answer'))[:200]!r}")
        else:
            err = last.get("error") if isinstance(last, dict) else None
            if not isinstance(err, dict) or err.get("code") not in ("upstream_unavailable", "upstream_timeout") \
                    or not err.get("message") or last.get("detail") != err.get("message") \
                    or err.get("request_id") != ans.headers.get("X-Request-ID"):
                self.fail(what, f"malformed error event: {str(last)[:300]}")
            if "token" not in names:
                self.fail(what, "an error event before any token (docs/api.md: degrade instead)")

    # -- operations ----------------------------------------------------------------------------
    def collections_for_ingest(self, rng):
        kinds = [("ollama", 45), ("builtin", 20), ("new", 15)]
        if self.env["RAGD_EMBEDDER"] == "auto":
            kinds.append(("fallback", 15))
        kind = weighted(rng, kinds)
        if kind == "new":
            return f"new{rng.randrange(4)}"
        names = [n for n, k in self.ledger.collections.items() if k == kind]
        return rng.choice(names)

    def chunk_params(self, db):
        if db.startswith("b"):
            return self.builtin_chunking[db]
        return self.env["RAGD_CHUNK_SIZE"], self.env["RAGD_CHUNK_OVERLAP"]

    def op_ingest(self, client, rng, big=False):
        db = f"o{rng.randrange(2)}" if big else self.collections_for_ingest(rng)
        if big:
            # Sized against the bulkhead: the batches fit in flight, need the queue, or
            # overflow it (each regime has its own way of failing).
            c, q, b = (self.env[k] for k in ("RAGD_MAX_CONCURRENT", "RAGD_MAX_QUEUE", "RAGD_EMBED_BATCH"))
            regime = rng.choice(["fit", "queue", "queue", "queue", "queue", "overflow", "any"])
            if regime == "fit":
                batches = rng.randint(1, c)
            elif regime == "queue" and q > 0:
                batches = rng.randint(c + 1, c + q)
            elif regime == "overflow":
                batches = rng.randint(c + q + 1, c + q + 20)
            else:
                batches = rng.randint(1, MAX_CHUNKS // b)
            total = max(1, min(MAX_CHUNKS, batches * b - rng.randrange(b)))
        else:
            total = max(1, min(MAX_CHUNKS, int(math.exp(rng.uniform(0, math.log(MAX_CHUNKS))))))
        size, overlap = self.chunk_params(db)
        raw = rng.random() < 0.35
        ndocs = 1 if raw else rng.choice([1, 1, 1, 2, 3])
        docs = [self.new_doc(db, rng, max(1, total // ndocs), size, overlap) for _ in range(ndocs)]
        hangup = None
        if rng.random() < 0.15:
            hangup = (rng.uniform(0.0, 2.0), False, rng.random() < 0.5)
        retries = rng.choice([0, 0, 1, 2])
        what = f"ingest {'raw' if raw else 'json'} db={db} docs={[d.id for d in docs]} " \
               f"~{total} chunks{' (hang-up)' if hangup else ''}"
        for attempt in range(retries + 1):
            if raw:
                d = docs[0]
                path = f"/api/ingest?db={db}&id={urllib.parse.quote(d.id)}&source={d.id}.txt"
                ans = client.call("POST", path, body=d.text, ctype="text/plain", hangup=hangup)
            else:
                obj = {"db": db, "documents": [{"id": d.id, "text": d.text, "metadata": {"seed": self.seed}}
                                               for d in docs]}
                ans = client.call("POST", "/api/ingest", obj=obj, hangup=hangup)
            self.count("ingest", ans, what)
            if ans is None:
                for d in docs:
                    d.hung = True
                return
            if ans.status == 200:
                self.judge_ingest_ok(what, db, docs, ans)
                return
            if not self.check_envelope(what, ans, self.refusals):
                return
            for d in docs:
                d.refused += 1
            time.sleep(rng.uniform(0.05, 0.4))

    def judge_ingest_ok(self, what, db, docs, ans):
        b = ans.body
        if not isinstance(b, dict) or b.get("db") != db or b.get("documents") != len(docs) \
                or b.get("ids") != [d.id for d in docs] or not isinstance(b.get("chunks"), int):
            self.fail(what, f"200 with a wrong body: {ans.short()}")
            return
        new = len(docs) - b.get("duplicates", 0)
        if new and b["chunks"] < new:
            self.fail(what, f"{b['chunks']} chunks written for {new} new documents")
        for d in docs:
            d.acked = True
        if b.get("duplicates", 0) == 0:
            if len(docs) == 1:
                docs[0].chunks = b["chunks"]
            else:
                with self.ledger.lock:
                    self.ledger.group_chunks.append((docs, b["chunks"]))

    def query_body(self, rng, db):
        with self.ledger.lock:
            known = [d for (cdb, _), d in self.ledger.docs.items() if cdb == db]
        doc = rng.choice(known) if known else None
        if doc is not None and rng.random() < 0.5:
            q = f"What happens in record {doc.marker}?"
        else:
            q = f"Which {rng.choice(ANIMALS)} {rng.choice(VERBS)} the {rng.choice(THINGS)}?"
        body = {"query": q, "db": db, "k": rng.randint(1, 8)}
        if rng.random() < 0.5:
            body["method"] = rng.choice(["hybrid", "vector", "keyword"])
        return body

    def op_query(self, client, rng, route):
        db = rng.choice(list(self.ledger.collections))
        body = self.query_body(rng, db)
        stream = route == "query" and rng.random() < 0.5
        if stream:
            body["stream"] = True
        hangup = None
        if rng.random() < 0.15:
            hangup = (rng.uniform(0.0, 1.5), stream and rng.random() < 0.5, rng.random() < 0.5)
        what = f"{route}{' stream' if stream else ''} db={db} {json.dumps(body)[:120]}" \
               f"{' (hang-up)' if hangup else ''}"
        ans = client.call("POST", f"/api/{route}", obj=body, hangup=hangup)
        self.count(route + (" stream" if stream else ""), ans, what)
        if ans is None:
            return
        if route == "query":
            self.judge_query(what, db, ans, stream)
        elif ans.status != 200:
            self.check_envelope(what, ans, self.refusals)
        elif not isinstance(ans.body, dict) or not self.check_sources(what, db, ans.body):
            self.fail(what, f"retrieve 200 with a wrong body: {ans.short()}")
        elif any(not isinstance(ans.body.get(k), list) or len(ans.body[k]) != len(ans.body["sources"])
                 for k in ("documents", "metadatas", "distances")):
            self.fail(what, f"retrieve: documents/metadatas/distances do not match sources: {ans.short()}")

    def op_read(self, client, rng):
        with self.ledger.lock:
            acked = [d for d in self.ledger.docs.values() if d.acked]
        if not acked:
            return
        d = rng.choice(acked)
        what = f"read acknowledged {d.db}/{d.id}"
        ans = client.call("GET", f"/api/dbs/{d.db}/documents/{urllib.parse.quote(d.id)}")
        self.count("read", ans)
        if ans.status != 200:
            self.check_envelope(what, ans, {503: {"overloaded"}})
            return
        self.check_document(what, d, ans.body)

    def op_misc(self, client, rng):
        pick = rng.random()
        if pick < 0.4:
            ans = client.call("GET", "/health")
            self.count("health", ans)
            if ans.status != 200 or not isinstance(ans.body, dict) or \
                    ans.body.get("status") not in ("healthy", "degraded"):
                self.fail("GET /health", f"not 200 healthy|degraded: {ans.short()}")
        elif pick < 0.7:
            db = rng.choice(sorted(self.builtin_chunking))
            size, overlap = self.builtin_chunking[db]
            same = rng.random() < 0.5
            obj = {"name": db, "embed_model": "builtin", "chunk_size": size if same else size + 50,
                   "chunk_overlap": overlap}
            ans = client.call("POST", "/api/dbs", obj=obj)
            self.count("create", ans)
            what = f"POST /api/dbs {obj}"
            if same and ans.status == 200:
                if not isinstance(ans.body, dict) or ans.body.get("name") != db:
                    self.fail(what, f"wrong body: {ans.short()}")
            elif not same and ans.status == 409:
                self.check_envelope(what, ans, {409: {"conflict"}})
            else:
                self.check_envelope(what, ans, {503: {"overloaded"}})
        else:
            db = rng.choice(list(self.ledger.collections))
            ans = client.call("GET", f"/api/dbs/{db}/documents?limit=50")
            self.count("list", ans)
            if ans.status != 200:
                self.check_envelope(f"GET /api/dbs/{db}/documents", ans, {503: {"overloaded"}})

    def client_thread(self, index, deadline):
        rng = random.Random(self.seed * 1000003 + index)
        client = Client(self.port)
        first = True
        while time.monotonic() < deadline and not self.failures.stop.is_set():
            try:
                if (first and rng.random() < 0.6) or rng.random() < 0.2:
                    self.op_ingest(client, rng, big=True)
                else:
                    kind = weighted(rng, [("ingest", 35), ("query", 25), ("retrieve", 15),
                                          ("read", 10), ("misc", 15)])
                    if kind == "ingest":
                        self.op_ingest(client, rng)
                    elif kind in ("query", "retrieve"):
                        self.op_query(client, rng, kind)
                    elif kind == "read":
                        self.op_read(client, rng)
                    else:
                        self.op_misc(client, rng)
            except Client.Broken as e:
                self.fail(f"client {index}", str(e))
            except Exception:  # noqa: BLE001 - a bug in the test itself: report it
                self.fail(f"client {index}", "test error\n" + traceback.format_exc())
            first = False

    # -- chaos ------------------------------------------------------------------------------
    def chaos_thread(self, deadline):
        rng = random.Random(self.seed * 7919 + 1)
        while time.monotonic() < deadline and not self.failures.stop.is_set():
            mode = weighted(rng, MODES)
            knobs = {"fault": "none", "latency_ms": 0, "token_ms": rng.choice([0, 0, 5, 20]),
                     "parallel": rng.randint(2, 8), "max_queue": 512, "fault_hang_ms": 0,
                     "fault_paths": [], "fault_count": 0}
            if mode == "up":
                knobs["latency_ms"] = rng.choice([0, 20, 50, 150, 300])  # a real model takes a while
            elif mode == "flaky":
                # Up, but the next few calls fail: failures that meet closed breakers while
                # other calls are in flight and queued.
                knobs.update(fault=rng.choice(["error500", "error500", "reset", "close_mid_stream"]),
                             fault_count=rng.randint(1, 8), latency_ms=rng.choice([20, 50, 150, 300]))
            elif mode == "busy":
                knobs.update(parallel=1, max_queue=0, latency_ms=rng.uniform(100, 400))
            elif mode == "slow":
                knobs.update(latency_ms=rng.uniform(200, 6000))
            elif mode != "up":
                knobs["fault"] = mode
                if mode.startswith("hang"):
                    knobs["fault_hang_ms"] = rng.choice([0, 0, 500, 3000, 8000])
                if rng.random() < 0.3:
                    knobs["fault_paths"] = [rng.choice(["/api/embed", "/api/chat"])]
                if rng.random() < 0.2:
                    knobs["fault_count"] = rng.randint(1, 5)
            try:
                self.fake.configure(**knobs)
            except Exception as e:  # noqa: BLE001
                self.fail("chaos thread", f"fake_ollama would not switch to {mode}: {e!r}")
                return
            self.timeline.append((round(self.now(), 2), mode))
            if VERBOSE:
                print(f"chaos:   [t={self.now():6.2f}s] fault -> {mode} {knobs}", flush=True)
            # Up long enough for the breakers to close again (recovery + one trial), so that
            # the next fault meets closed breakers and calls in flight and queued.
            self.failures.stop.wait(rng.uniform(0.3, 2.0) if mode == "up" else rng.uniform(0.15, 1.2))
        try:
            self.fake.configure(fault="none", latency_ms=0, token_ms=0, parallel=4, max_queue=512,
                                fault_paths=[], fault_count=0)
        except Exception as e:  # noqa: BLE001
            self.fail("chaos thread", f"fake_ollama would not come back up: {e!r}")
        self.timeline.append((round(self.now(), 2), "up (end)"))

    def monitor_thread(self, done):
        while not done.is_set():
            rc = self.srv.proc.poll()
            if rc is not None:
                self.fail("server", f"the ragd process died (exit status {rc})")
                return
            done.wait(0.05)

    # -- setup and final checks -----------------------------------------------------------
    def must(self, method, path, obj=None, body=None, ctype=None, status=200):
        ans = Client(self.port).call(method, path, obj=obj, body=body, ctype=ctype)
        if ans.status != status:
            raise AssertionError(f"setup: {method} {path}: want {status}, got {ans.short()}")
        return ans.body

    def setup_collections(self):
        rng = self.rng
        self.builtin_chunking = {}
        for i in range(2):
            name = f"b{i}"
            size = rng.choice([100, 200, 400])
            overlap = rng.randint(0, size // 4)
            self.builtin_chunking[name] = (size, overlap)
            self.must("POST", "/api/dbs", {"name": name, "embed_model": "builtin", "chunk_size": size,
                                           "chunk_overlap": overlap}, status=201)
            self.ledger.collections[name] = "builtin"
        kinds = [("o0", "ollama"), ("o1", "ollama")]
        if self.env["RAGD_EMBEDDER"] == "auto":
            kinds.append(("f0", "fallback"))
        for name, kind in kinds:
            if kind == "fallback":
                self.fake.configure(fault="refuse")
            docs = [self.new_doc(name, rng, rng.randint(1, 3), *self.chunk_params(name)) for _ in range(3)]
            body = self.must("POST", "/api/ingest", {"db": name, "documents": [
                {"id": d.id, "text": d.text} for d in docs]})
            for d in docs:
                d.acked = True
            self.ledger.group_chunks.append((docs, body["chunks"]))
            if kind == "fallback":
                self.fake.configure(fault="none")
                self.heal()
            coll = self.must("GET", f"/api/dbs/{name}")
            want_builtin = kind == "fallback" or not self.upstream
            if (coll["embed_model"] == "ragd-hash-v1-512") != want_builtin:
                raise AssertionError(f"setup: collection {name} has embed_model {coll['embed_model']}")
            self.ledger.collections[name] = kind
        for name in self.builtin_chunking:
            docs = [self.new_doc(name, rng, rng.randint(1, 3), *self.builtin_chunking[name]) for _ in range(2)]
            body = self.must("POST", "/api/ingest", {"db": name, "documents": [
                {"id": d.id, "text": d.text} for d in docs]})
            for d in docs:
                d.acked = True
            self.ledger.group_chunks.append((docs, body["chunks"]))

    def heal(self):
        """The refused calls of the fallback set-up may have opened the embed breaker: query
        an Ollama collection until it is closed again, so that the chaos starts from
        closed breakers."""
        client = Client(self.port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ans = client.call("POST", "/api/retrieve", obj={"query": "heron", "db": "o0", "method": "vector"})
            health = client.call("GET", "/health")
            if ans.status == 200 and not ans.body.get("degraded") and \
                    health.body["services"]["ollama"]["circuit_breaker"]["state"] == "CLOSED":
                return
            time.sleep(0.1)
        raise AssertionError(f"setup: the embed breaker did not close again: {health.short()}")

    def check_document(self, what, d, body):
        """body (GET /api/dbs/{db}/documents/{id}) holds all of d: chunks 0..n-1 whose texts are
        d.text[start:end], in order, covering every non-space character; n as acknowledged."""
        if not isinstance(body, dict) or body.get("id") != d.id or not isinstance(body.get("chunks"), list):
            self.fail(what, f"wrong document body: {str(body)[:300]}")
            return None
        chunks = body["chunks"]
        prev_start = prev_end = -1
        for i, c in enumerate(chunks):
            s, e = c.get("start"), c.get("end")
            if c.get("chunk") != i or not isinstance(s, int) or not isinstance(e, int) \
                    or not (0 <= s < e <= len(d.text)) or s <= prev_start or e <= prev_end:
                self.fail(what, f"chunk {i} out of order or out of range: {str(c)[:200]}")
                return None
            if c.get("text") != d.text[s:e]:
                self.fail(what, f"chunk {i} text differs from the document's [{s}:{e}]")
                return None
            if d.text[max(prev_end, 0):s].strip():
                self.fail(what, f"text [{max(prev_end, 0)}:{s}] before chunk {i} is in no chunk: incomplete document")
                return None
            prev_start, prev_end = s, e
        if d.text[max(prev_end, 0):].strip():
            self.fail(what, f"{len(chunks)} chunks leave the text from {max(prev_end, 0)} uncovered: incomplete document")
            return None
        if d.chunks is not None and len(chunks) != d.chunks:
            self.fail(what, f"{len(chunks)} chunks stored, the ingest acknowledged {d.chunks}")
            return None
        return len(chunks)

    def final_checks(self):
        client = Client(self.port)
        ans = client.call("GET", "/health/live")
        if ans.status != 200:
            self.fail("after chaos", f"/health/live: {ans.short()}")
        stored = {}                      # (db, id) -> chunk count
        with self.ledger.lock:
            docs = list(self.ledger.docs.values())
        by_db = {}
        for d in docs:
            by_db.setdefault(d.db, []).append(d)
        for db, ds in sorted(by_db.items()):
            listed = set()
            info = client.call("GET", f"/api/dbs/{db}")
            if info.status == 404:
                if any(d.acked for d in ds):
                    self.fail(f"collection {db}", "missing although ingests into it were acknowledged")
                continue
            if info.status != 200:
                self.fail(f"collection {db}", f"GET: {info.short()}")
                continue
            offset = 0
            while True:
                page = client.call("GET", f"/api/dbs/{db}/documents?limit=1000&offset={offset}")
                if page.status != 200:
                    self.fail(f"collection {db}", f"listing: {page.short()}")
                    break
                listed.update(x["id"] for x in page.body["documents"])
                offset += len(page.body["documents"])
                if not page.body["documents"] or offset >= page.body["total"]:
                    break
            known = {d.id: d for d in ds}
            for extra in sorted(listed - set(known)):
                self.fail(f"collection {db}", f"holds a document nobody ingested: {extra}")
            for d in ds:
                what = f"document {db}/{d.id} (acked={d.acked} refused={d.refused} hung={d.hung})"
                r = client.call("GET", f"/api/dbs/{db}/documents/{urllib.parse.quote(d.id)}")
                if r.status == 200:
                    if not d.acked and not d.hung:
                        self.fail(what, "present although every ingest of it was refused")
                        continue
                    if d.id not in listed:
                        self.fail(what, "readable but not listed")
                    n = self.check_document(what, d, r.body)
                    if n is not None:
                        stored[(db, d.id)] = n
                elif r.status == 404 and isinstance(r.body, dict) and \
                        r.body.get("error", {}).get("code") == "document_not_found":
                    if d.acked:
                        self.fail(what, "acknowledged but absent (404)")
                    if d.id in listed:
                        self.fail(what, "listed but not readable")
                else:
                    self.fail(what, f"unexpected answer: {r.short()}")
            want_docs = sum(1 for (cdb, _) in stored if cdb == db)
            want_chunks = sum(n for (cdb, _), n in stored.items() if cdb == db)
            if info.body.get("documents") != want_docs or info.body.get("chunks") != want_chunks:
                self.fail(f"collection {db}", f"counts {info.body.get('documents')} documents / "
                          f"{info.body.get('chunks')} chunks, the documents add up to {want_docs} / {want_chunks}")
        for group, n in self.ledger.group_chunks:
            got = sum(stored.get((d.db, d.id), 0) for d in group)
            if got != n:
                self.fail(f"ingest of {[d.id for d in group]}", f"acknowledged {n} chunks, {got} stored")
        # every passage a query or retrieve returned was the text of a document that is stored
        with self.ledger.lock:
            seen = list(self.ledger.seen_sources)
        for db, doc_id, chunk, s, e, text in seen:
            d = self.ledger.docs.get((db, doc_id))
            if d is None or (db, doc_id) not in stored:
                self.fail("a query answer", f"cited {db}/{doc_id}#{chunk}, which is not a stored document")
                break
            if not isinstance(s, int) or not isinstance(e, int) or d.text[s:e] != text:
                self.fail("a query answer", f"cited {db}/{doc_id}#{chunk} [{s}:{e}] with text that is not the document's")
                break
        # retrievable: keyword search for a document's marker finds it
        present = [d for d in docs if (d.db, d.id) in stored]
        for d in random.Random(self.seed).sample(present, min(25, len(present))):
            r = client.call("POST", "/api/retrieve", obj={"query": d.marker, "db": d.db, "method": "keyword", "k": 5})
            if r.status != 200 or d.id not in [s.get("doc_id") for s in r.body.get("sources", [])]:
                self.fail(f"document {d.db}/{d.id}", f"not found by its marker {d.marker}: {r.short()}")
        return stored

    # -- the whole seed ------------------------------------------------------------------------
    def run(self):
        keep = harness.keep_temp()
        self.srv = harness.Server(env={}, name=f"chaos-{self.seed}")
        self.fake = FakeProcess(os.path.join(self.srv.root, "fake_ollama.log"))
        self.srv.extra_env = dict(self.env, OLLAMA_BASE_URL=self.fake.url)
        ok = False
        stored = {}
        started = time.monotonic()
        try:
            self.srv.start()
            self.port = self.srv.port
            self.t0 = time.monotonic()
            self.setup_collections()
            done = threading.Event()
            mon = threading.Thread(target=self.monitor_thread, args=(done,), daemon=True)
            mon.start()
            deadline = time.monotonic() + self.seconds
            chaos = threading.Thread(target=self.chaos_thread, args=(deadline,), daemon=True)
            workers = [threading.Thread(target=self.client_thread, args=(i, deadline), daemon=True)
                       for i in range(self.nthreads)]
            chaos.start()
            for t in workers:
                t.start()
            chaos.join(REQUEST_TIMEOUT)
            bound = time.monotonic() + REQUEST_TIMEOUT + 10
            for t in workers:
                t.join(max(0.1, bound - time.monotonic()))
            if any(t.is_alive() for t in workers):
                self.fail("client threads", "still waiting past the bound after the chaos ended")
            if not self.failures and self.srv.running():
                try:
                    stored = self.final_checks()
                except Client.Broken as e:
                    self.fail("after chaos", str(e))
            done.set()
            mon.join()
            if self.srv.running():
                rc = self.srv.stop(expect=None)
                if rc != 0:
                    self.fail("SIGTERM", f"exit status {rc} (expected 0)")
            log = self.srv.log_text()
            for marker in SANITIZER_MARKS:
                if marker in log:
                    self.fail("sanitizer", f"the server log has a sanitizer report ({marker})")
                    break
            db_path = os.path.join(self.srv.data_dir, "ragd.db")
            if not self.failures:
                con = sqlite3.connect(db_path)
                try:
                    res = con.execute("PRAGMA integrity_check").fetchall()
                finally:
                    con.close()
                if res != [("ok",)]:
                    self.fail("integrity_check", repr(res[:10]))
            ok = not self.failures
        except Exception:  # noqa: BLE001 - setup errors fail the seed like any other
            self.failures.add("test error\n" + traceback.format_exc())
        finally:
            self.srv.kill()
            self.fake.stop()
            elapsed = time.monotonic() - started
            summary = self.summary(stored, elapsed)
            if ok:
                print(summary, flush=True)
                if not keep:
                    self.srv.cleanup()
            else:
                if self.srv in harness._live_servers:
                    harness._live_servers.remove(self.srv)  # keep its dir for the post-mortem
            self.elapsed = elapsed
        if not ok:
            report = self.report(summary)
            try:
                with open(os.path.join(self.srv.root, "chaos-report.txt"), "w") as f:
                    f.write(report + "\n")
            except OSError:
                pass
            raise AssertionError(report)

    def summary(self, stored, elapsed):
        cfg = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()) if k != "RAGD_LOG_LEVEL")
        counts = ", ".join(f"{r} {s}{'/' + c if c else ''}: {n}" for (r, s, c), n in
                           sorted(self.counts.items(), key=lambda kv: str(kv[0])))
        acked = sum(1 for d in self.ledger.docs.values() if d.acked)
        return (f"chaos: seed {self.seed}: {elapsed:.1f} s, {self.nthreads} client threads, {cfg}\n"
                f"       {len(self.timeline)} fault switches; answers: {counts}\n"
                f"       documents: {len(self.ledger.docs)} in the plan, {acked} acknowledged, "
                f"{len(stored)} stored")

    def report(self, summary):
        lines = [f"CHAOS FAILURE, seed {self.seed} (replay: CHAOS_SEED={self.seed} make chaos"
                 f"{'' if self.upstream else ' CHAOS_UPSTREAM=off'})", summary]
        # the root cause first: a dead server explains every broken connection after it
        items = sorted(self.failures.items, key=lambda f: not any(k in f for k in ("] server:", "] sanitizer:")))
        lines += ["  " + f for f in items[:25]]
        if len(self.failures.items) > 25:
            lines.append(f"  ... and {len(self.failures.items) - 25} more")
        lines.append(f"  fault timeline (t, mode): {self.timeline[-25:]}")
        lines.append(f"  kept: {self.srv.root} (chaos-report.txt, server.log, fake_ollama.log, data/)")
        log = self.srv.log_text()
        at = min((i for i in (log.find(m) for m in SANITIZER_MARKS) if i >= 0), default=-1)
        if at >= 0:  # the sanitizer report, with what the server logged just before it
            lines.append("--- ragd log around the sanitizer report ---\n" + log[max(0, at - 3000):at + 9000]
                         + "\n--- end of log excerpt ---")
        else:
            lines.append("--- ragd log (tail) ---\n" + self.srv.log_tail(12000) + "\n--- end of log ---")
        return "\n".join(lines)


def seeds_from_env():
    one = os.environ.get("CHAOS_SEED", "").strip()
    if one:
        return [int(s) for s in one.split(",") if s.strip()]
    n = int(os.environ.get("CHAOS_SEEDS", str(SEEDS_DEFAULT)))
    sysrand = random.SystemRandom()
    return [sysrand.randrange(1, 10 ** 6) for _ in range(n)]


def is_asan_binary(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data and b"__ubsan_handle" in data


class ChaosTest(unittest.TestCase):
    def test_chaos(self):
        os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        binary = harness.ragd_bin()
        if not is_asan_binary(binary) and os.environ.get("CHAOS_ALLOW_PLAIN", "") in ("", "0"):
            self.fail(f"{binary} is not an AddressSanitizer + UBSan build (make chaos builds build/asan/ragd; "
                      "CHAOS_ALLOW_PLAIN=1 runs anyway)")
        upstream = os.environ.get("CHAOS_UPSTREAM", "on") != "off"
        seconds = float(os.environ.get("CHAOS_SECONDS", str(SECONDS_DEFAULT)))
        threads = int(os.environ["CHAOS_THREADS"]) if os.environ.get("CHAOS_THREADS") else None
        seeds = seeds_from_env()
        print(f"\nchaos: {len(seeds)} seed(s) {seeds}, {seconds:g} s of faults each, binary {binary}"
              f"{'' if upstream else ', CHAOS_UPSTREAM=off (builtin embedder, extractive generator)'}",
              flush=True)
        for seed in seeds:
            print(f"chaos: seed {seed} starting (replay: CHAOS_SEED={seed} make chaos)", flush=True)
            Run(seed, seconds, upstream, threads).run()


if __name__ == "__main__":
    unittest.main()
