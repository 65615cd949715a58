#!/usr/bin/env python3
"""A fault-injecting fake Ollama server (Python 3.11 standard library only).

It serves the endpoints, shapes and error texts of Ollama's API (docs/api.md and docs/openai.md
in github.com/ollama/ollama; what ragd relies on: docs/internals/ollama.md) (the native
/api/* API and the OpenAI-compatible /v1/* API) with deterministic answers and embeddings,
Ollama-like scheduling (parallel slots and a bounded queue per model, a cold-start load delay
before any header, keep-alive expiry) and fault modes switchable at run time.

Run:     python3 tools/fake_ollama/fake_ollama.py --port 11434 --admin-port 11435 [knobs]
Import:  from fake_ollama import FakeOllama
         fake = FakeOllama(port=0, admin_port=0, latency_ms=50).start()
         ... fake.url, fake.admin_url, fake.configure(fault="refuse"), fake.stats() ...
         fake.stop()

Admin routes (on the main port while it listens, and always on --admin-port):
  GET  /__admin/config         current knobs
  POST /__admin/config         JSON object of knob names -> values (partial update)
  GET  /__admin/stats          counters
  POST /__admin/stats/reset    zero the counters
  POST /__admin/unload         unload every model (the next call pays load_ms)
  POST /__admin/reset          knobs back to their start-up values, counters zeroed,
                               models unloaded, listener up
See docs/internals/fake_ollama.md for the knobs and what is not faked.
"""

import argparse
import base64
import collections
import copy
import functools
import hashlib
import json
import math
import random
import re
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BUSY_TEXT = "server busy, please try again.  maximum pending requests exceeded"
CONTEXT_TEXT = "the input length exceeds the context length"
# Hostile modes answer 200 with bytes no Ollama would send (see Handler._hostile).
HOSTILE_FAULTS = ("garbage", "endless_stream", "huge_line", "wrong_content_type", "stall_mid_line")
FAULT_MODES = ("none", "up", "error500", "refuse", "reset", "hang_before_headers",
               "hang_mid_stream", "error_line", "cut_stream", "close_mid_stream") + HOSTILE_FAULTS
JSON_CT = "application/json; charset=utf-8"
NDJSON_CT = "application/x-ndjson"
SSE_CT = "text/event-stream"
CREATED_UNIX = 1700000000
MODIFIED_AT = "2024-11-20T10:00:00.000000000Z"

# Knob name -> (type, default, help). Types: int, float, bool, str, list (of strings), dur
# (keep_alive: number of seconds or Go duration string).
KNOBS = {
    "chat_models": ("list", ["llama3.2"], "chat/generate models (name[=context_length])"),
    "embed_models": ("list", ["nomic-embed-text"], "embedding models (name[=dimension])"),
    "embed_dim": ("int", 768, "dimension of embedding models given without =DIM"),
    "context_length": ("int", 4096, "context length of chat models (tokens)"),
    "embed_context_length": ("int", 2048, "context length of embedding models (tokens)"),
    "latency_ms": ("float", 0.0, "per-request latency, inside a slot, before any header"),
    "token_ms": ("float", 0.0, "per-token latency of generation"),
    "tokens": ("int", 0, "tokens per answer (0 = the natural length of the answer)"),
    "embed_input_ms": ("float", 0.0, "extra latency per input of an embedding call"),
    "load_ms": ("float", 0.0, "cold-start load delay (first call, or after keep-alive expiry)"),
    "keep_alive": ("dur", "5m", "default keep_alive (seconds or Go duration, <0 = forever)"),
    "parallel": ("int", 1, "parallel slots per model (OLLAMA_NUM_PARALLEL)"),
    "max_queue": ("int", 512, "requests waiting for a slot per model (OLLAMA_MAX_QUEUE)"),
    "done_text": ("bool", True, "put the last token of a stream in the done:true chunk"),
    "fault": ("str", "none", "fault mode: " + ", ".join(FAULT_MODES)),
    "fault_paths": ("list", [], "paths the fault applies to (empty = all; 'p*' = prefix)"),
    "fault_count": ("int", 0, "apply the fault to the next N matching requests (0 = all)"),
    "fault_lines": ("int", 2, "content lines sent before a mid-stream fault"),
    "fault_hang_ms": ("float", 0.0, "how long hangs last (0 = until the config changes)"),
    "fault_message": ("str", "llama runner process has terminated: signal: killed",
                      "message of error500 and error_line faults"),
    "fault_huge_bytes": ("int", 64 << 20, "length of the one line the huge_line fault sends"),
    "version": ("str", "0.5.1", "what GET /api/version answers"),
    "answer": ("str", "", "a fixed answer instead of the built one (empty = built from the prompt)"),
    "echo": ("str", "none", "none | system: the answer is followed by the system prompt "
                            "(a model that leaks its instructions)"),
    "rerank_ms": ("float", 0.0, "latency of each rerank call (POST /rerank, /v1/rerank)"),
    "rerank_max_docs": ("int", 1000, "documents one rerank call may hold (more: a 413/400 error)"),
    "rerank_max_concurrent": ("int", 0, "rerank calls served at once (0 = any); more are refused "
                                        "busy: TEI 429 Overloaded, /v1/rerank 503"),
    "judge": ("str", "overlap", "how a chat that asks for a 0-10 relevance number is answered: "
                                "overlap (the word overlap of its Question and Passage, 0-10) | "
                                "words (an answer with no number) | off (answered like any chat)"),
}

WORD_RE = re.compile(r"\w+")
TOKEN_RE = re.compile(r"\w+|[^\w\s]")
PIECE_RE = re.compile(r"\S+\s*")
MARKER_LINE_RE = re.compile(r"^[ \t>*-]*\[(\d{1,4})\][ \t]*(.*)$", re.M)
SENTENCE_RE = re.compile(r"(.+?[.!?])(?=\s|$)", re.S)
DURATION_RE = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

OPTION_TYPES = {}
for _k in ("num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "mirostat", "num_ctx",
           "num_batch", "num_gpu", "main_gpu", "num_thread", "num_gqa"):
    OPTION_TYPES[_k] = "integer"
for _k in ("min_p", "typical_p", "top_p", "temperature", "repeat_penalty", "presence_penalty",
           "frequency_penalty", "mirostat_tau", "mirostat_eta", "tfs_z"):
    OPTION_TYPES[_k] = "float32"
for _k in ("penalize_newline", "numa", "low_vram", "f16_kv", "use_mmap", "use_mlock",
           "vocab_only", "logits_all"):
    OPTION_TYPES[_k] = "boolean"
OPTION_TYPES["stop"] = "array"

# Go struct field types of the request bodies, for Go-like unmarshal errors.
STRUCTS = {
    "GenerateRequest": {"model": "string", "prompt": "string", "suffix": "string",
                        "system": "string", "template": "string", "context": "[]int",
                        "stream": "bool", "raw": "bool", "images": "[]api.ImageData",
                        "options": "map[string]interface {}"},
    "ChatRequest": {"model": "string", "messages": "[]api.Message", "stream": "bool",
                    "tools": "api.Tools", "options": "map[string]interface {}"},
    "EmbedRequest": {"model": "string", "truncate": "bool", "dimensions": "int",
                     "options": "map[string]interface {}"},
    "EmbeddingRequest": {"model": "string", "prompt": "string",
                         "options": "map[string]interface {}"},
    "ShowRequest": {"model": "string", "name": "string", "system": "string",
                    "template": "string", "verbose": "bool",
                    "options": "map[string]interface {}"},
}
MESSAGE_FIELDS = {"role": "string", "content": "string", "thinking": "string"}


class ApiError(Exception):
    """An error answer: HTTP status and message (shaped per endpoint family when sent)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client closed its connection while we were waiting."""


class Abort(Exception):
    """Drop the connection without an answer (listener taken down, reset, cut)."""


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int((t % 1) * 1e9)


def rfc3339_at(epoch):
    epoch = min(epoch, 1e11)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def json_bytes(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def count_tokens(text):
    return len(TOKEN_RE.findall(text))


def full_name(name):
    """'llama3.2' -> 'llama3.2:latest' (Ollama's default tag)."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else name + ":latest"


def parse_duration(value, default_s):
    """keep_alive value -> seconds (math.inf = forever). Raises ApiError(400) when invalid."""
    if value is None:
        return default_s
    if isinstance(value, bool):
        raise ApiError(400, "json: cannot unmarshal bool into Go value of type time.Duration")
    if isinstance(value, (int, float)):
        return math.inf if value < 0 else float(value)
    if isinstance(value, str):
        s = value.strip()
        neg = s.startswith("-")
        body = s.lstrip("+-")
        if body == "0":
            return 0.0
        parts = DURATION_RE.findall(body)
        if not body or "".join(a + b for a, b in parts) != body:
            raise ApiError(400, 'time: invalid duration "%s"' % value)
        secs = sum(float(a) * DURATION_UNITS[b] for a, b in parts)
        return math.inf if neg else secs
    raise ApiError(400, "json: cannot unmarshal %s into Go value of type time.Duration"
                   % go_json_type(value))


def go_json_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def go_type_ok(v, gotype):
    if v is None:
        return True                      # Go leaves the field at its zero value
    if gotype == "string":
        return isinstance(v, str)
    if gotype == "bool":
        return isinstance(v, bool)
    if gotype == "int":
        return isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()
    if gotype.startswith("map["):
        return isinstance(v, dict)
    if gotype.startswith("[]") or gotype == "api.Tools":
        return isinstance(v, list)
    return True


def go_unmarshal_check(body, struct):
    """Mimic encoding/json's first UnmarshalTypeError for the fields we know. Raises 400."""
    if not isinstance(body, dict):
        if body is None:
            return {}
        raise ApiError(400, "json: cannot unmarshal %s into Go value of type api.%s"
                       % (go_json_type(body), struct))
    fields = STRUCTS[struct]
    for key, val in body.items():
        gotype = fields.get(key)
        if gotype and not go_type_ok(val, gotype):
            jt = go_json_type(val)
            if jt == "number" and gotype == "int":
                jt = "number %s" % json.dumps(val)
            raise ApiError(400, "json: cannot unmarshal %s into Go struct field %s.%s of type %s"
                           % (jt, struct, key, gotype))
        if key == "messages" and isinstance(val, list):
            for m in val:
                if not isinstance(m, dict):
                    if m is None:
                        continue
                    raise ApiError(400, "json: cannot unmarshal %s into Go struct field "
                                   "ChatRequest.messages of type api.Message" % go_json_type(m))
                for mk, mv in m.items():
                    mt = MESSAGE_FIELDS.get(mk)
                    if mt and not go_type_ok(mv, mt):
                        raise ApiError(400, "json: cannot unmarshal %s into Go struct field "
                                       "ChatRequest.messages.%s of type %s"
                                       % (go_json_type(mv), mk, mt))
    return body


def check_options(options):
    """Ollama's Options.FromMap type checks: a wrong type is a 500 (found at scheduling)."""
    if not options:
        return {}
    for key, val in options.items():
        want = OPTION_TYPES.get(key)
        if want is None or val is None:
            continue
        if want == "integer" and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise ApiError(500, 'option "%s" must be of type integer' % key)
        if want == "float32" and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise ApiError(500, 'option "%s" must be of type float32' % key)
        if want == "boolean" and not isinstance(val, bool):
            raise ApiError(500, 'option "%s" must be of type boolean' % key)
        if want == "array":
            if not isinstance(val, list):
                raise ApiError(500, 'option "%s" must be of type array' % key)
            if not all(isinstance(x, str) for x in val):
                raise ApiError(500, 'option "%s" must be of an array of strings' % key)
    return options


def go_json_error(exc, text):
    """A Go-like message for malformed JSON."""
    rest = text[exc.pos:].lstrip() if exc.pos < len(text) else ""
    if not rest:
        return "unexpected EOF"
    ch = rest[0]
    return "invalid character '%s' looking for beginning of value" % ch


# ---------------------------------------------------------------------------------------------
# Deterministic embeddings and answers
# ---------------------------------------------------------------------------------------------

STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his i in is it its of on or our "
    "she so that the their them they this to was we were what when where which who why will "
    "with you your".split())


@functools.lru_cache(maxsize=200000)
def _word_features(word, dim):
    """(index, signed weight) pairs of one lower-cased word: the word and its char trigrams."""
    feats = []
    keys = [("w:" + word, 1.0)]
    padded = "<" + word + ">"
    for i in range(len(padded) - 2):
        keys.append(("t:" + padded[i:i + 3], 0.35))
    head = min(dim, 32)
    for key, weight in keys:
        data = key.encode("utf-8")
        h = zlib.crc32(data)
        h2 = zlib.crc32(data, 0x9E3779B9)
        sign = 1.0 if h2 & 1 else -1.0
        feats.append((h % dim, sign * weight))
        # A second, weaker copy in the first 32 dimensions, so that a vector cut to a few
        # dimensions (the "dimensions" field) still carries the text's similarity, as
        # Matryoshka-trained models do.
        feats.append(((h2 >> 1) % head, (1.0 if h2 & 2 else -1.0) * weight * 0.3))
    return tuple(feats)


def raw_vector(words, text, dim):
    """Hashed bag of words + char trigrams, not normalised."""
    vec = [0.0] * dim
    if not words:
        h = hashlib.sha256(("s:" + text).encode("utf-8")).digest()
        idx = int.from_bytes(h[:8], "little") % dim
        vec[idx] = 1.0
        return vec
    for w, n in collections.Counter(words).items():
        scale = (1.0 + math.log(n)) * (0.15 if w in STOPWORDS else 1.0)
        for idx, wt in _word_features(w, dim):
            vec[idx] += wt * scale
    return vec


@functools.lru_cache(maxsize=4096)
def _embedding(toks, text, dim, dims):
    """The L2-normalised vector of a (possibly truncated) token list, cut to dims if asked."""
    words = [w.lower() for w in toks if WORD_RE.fullmatch(w)]
    v = normalise(raw_vector(words, text, dim))
    if dims and 0 < dims < len(v):
        v = normalise(v[:dims])
    return v


def normalise(vec):
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0.0:
        out = [0.0] * len(vec)
        if out:
            out[0] = 1.0
        return out
    return [x / norm for x in vec]


def format_vec32(vec):
    return "[" + ",".join(["%.9g" % x for x in vec]) + "]"


def first_sentence(text, limit=300):
    text = " ".join(text.split())
    m = SENTENCE_RE.match(text)
    s = m.group(1) if m else text
    return s[:limit].strip()


def build_answer(context_text, question):
    """A deterministic answer: the first sentence of the first (up to two) numbered passages
    of the context, each followed by its citation marker; else an echo of the question."""
    parts = []
    lines = context_text.splitlines()
    seen = set()
    for m in MARKER_LINE_RE.finditer(context_text):
        num = m.group(1)
        if num in seen:
            continue
        rest = m.group(2).strip().lstrip(":-)] ").strip()
        if not rest:
            # The passage starts on the next non-empty line.
            line_no = context_text.count("\n", 0, m.end())
            for nxt in lines[line_no + 1:line_no + 4]:
                if nxt.strip() and not MARKER_LINE_RE.match(nxt):
                    rest = nxt.strip()
                    break
        if not rest:
            continue
        sentence = first_sentence(rest)
        if sentence:
            seen.add(num)
            parts.append("%s [%s]" % (sentence, num))
        if len(parts) == 2:
            break
    if parts:
        return " ".join(parts)
    q = first_sentence(question or context_text)
    return q if q else "I have nothing to say."


def overlap_score(query, doc):
    """The rerank score of doc for query: the share of the query's distinct words (lower
    case, 3+ letters) that doc contains, 0..1, plus a tie-breaker under 0.001 that prefers
    shorter documents. Deterministic."""
    q = {w for w in WORD_RE.findall(query.lower()) if len(w) >= 3}
    d = set(WORD_RE.findall(doc.lower()))
    if not q:
        return 0.0
    return round(len(q & d) / len(q) + 0.001 / (1 + len(doc)), 6)


JUDGE_ASK_RE = re.compile(r"number from 0 to 10", re.I)
JUDGE_QUESTION_RE = re.compile(r"Question:\s*(.*?)\n\s*\n", re.S)
JUDGE_PASSAGE_RE = re.compile(r"\u00abDATA [0-9a-f]+\u00bb\n(?:\[\d+\] )?(.*?)\n\u00abEND [0-9a-f]+\u00bb", re.S)


def judge_answer(mode, user_text):
    """A relevance judge's reply to a user message that asks for a 0-10 number (ragd's LLM
    reranker), or None when the message is no such request or mode is off."""
    if mode == "off" or not JUDGE_ASK_RE.search(user_text or ""):
        return None
    if mode == "words":
        return "The passage seems somewhat related."
    q = JUDGE_QUESTION_RE.search(user_text)
    p = JUDGE_PASSAGE_RE.search(user_text)
    if not q or not p:
        return "0"
    passage = p.group(1).replace("\u02c6", " ")
    return "%d" % round(10 * min(1.0, overlap_score(q.group(1), passage)))


def answer_pieces(text, ntokens):
    """Split an answer into stream pieces whose concatenation is the answer; with ntokens > 0,
    exactly ntokens pieces (cut, or padded by repeating the answer)."""
    pieces = PIECE_RE.findall(text) or [text]
    if ntokens <= 0:
        return pieces
    if len(pieces) >= ntokens:
        return pieces[:ntokens]
    out = list(pieces)
    if not out[-1].endswith((" ", "\n")):
        out[-1] += " "
    i = 0
    while len(out) < ntokens:
        p = pieces[i % len(pieces)]
        out.append(p if p.endswith((" ", "\n")) else p + " ")
        i += 1
    out[-1] = out[-1].rstrip()
    return out


# ---------------------------------------------------------------------------------------------
# Models and scheduling
# ---------------------------------------------------------------------------------------------

class ModelInfo:
    def __init__(self, name, kind, dim, ctx):
        self.name = full_name(name)
        self.kind = kind                       # "chat" or "embed"
        self.dim = dim
        self.ctx = ctx
        base = self.name.split(":")[0].rsplit("/", 1)[-1]
        self.family = "nomic-bert" if kind == "embed" else re.sub(r"[^a-z]", "", base) or "llama"
        self.digest = hashlib.sha256(self.name.encode()).hexdigest()
        self.size = 274302450 if kind == "embed" else 2019393189
        self.parameter_size = "137M" if kind == "embed" else "3.2B"
        self.quant = "F16" if kind == "embed" else "Q4_K_M"

    def details(self):
        return {"parent_model": "", "format": "gguf", "family": self.family,
                "families": [self.family], "parameter_size": self.parameter_size,
                "quantization_level": self.quant}

    def tag(self):
        return {"name": self.name, "model": self.name, "modified_at": MODIFIED_AT,
                "size": self.size, "digest": self.digest, "details": self.details()}


def parse_models(cfg):
    models = {}
    for spec in cfg["chat_models"]:
        name, _, extra = spec.partition("=")
        ctx = int(extra) if extra else cfg["context_length"]
        m = ModelInfo(name.strip(), "chat", 3072, ctx)
        models[m.name] = m
    for spec in cfg["embed_models"]:
        name, _, extra = spec.partition("=")
        dim = int(extra) if extra else cfg["embed_dim"]
        m = ModelInfo(name.strip(), "embed", dim, cfg["embed_context_length"])
        models[m.name] = m
    return models


class ModelState:
    """Per-model slots (FIFO), queue depth and load state."""

    def __init__(self):
        self.cond = threading.Condition()
        self.active = 0
        self.max_active = 0
        self.waiters = collections.deque()
        self.load_lock = threading.Lock()
        self.loaded = False
        self.expires = 0.0                     # monotonic time; math.inf = forever
        self.expires_wall = 0.0
        self.inflight = 0


# ---------------------------------------------------------------------------------------------
# The HTTP side
# ---------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr, app, admin_only):
        self.app = app
        self.admin_only = admin_only
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        if self.app.verbose:
            super().handle_error(request, client_address)


ROUTES = {
    "/": ("GET", "HEAD"),
    "/api/version": ("GET", "HEAD"),
    "/api/tags": ("GET", "HEAD"),
    "/api/ps": ("GET", "HEAD"),
    "/v1/models": ("GET", "HEAD"),
    "/api/show": ("POST",),
    "/api/embed": ("POST",),
    "/api/embeddings": ("POST",),
    "/api/generate": ("POST",),
    "/api/chat": ("POST",),
    "/v1/chat/completions": ("POST",),
    "/v1/embeddings": ("POST",),
    "/rerank": ("POST",),
    "/v1/rerank": ("POST",),
}


STREAMING_PATHS = ("/api/generate", "/api/chat", "/v1/chat/completions")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    # -- connection plumbing ------------------------------------------------------------------
    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self):
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.server.app.verbose:
            sys.stderr.write("fake_ollama: %s - %s\n" % (self.address_string(), fmt % args))

    def send_response(self, code, message=None):
        # Like Go's net/http: a Date header, no Server header.
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ClientGone, Abort, BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = \
        lambda self: self._dispatch()

    # -- low-level writers --------------------------------------------------------------------
    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise Abort()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(8)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise Abort()
        return self.rfile.read(n) if n > 0 else b""

    def _send_body(self, status, body, ctype, fault=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        if self.command == "HEAD":
            self.flush_headers()
            return
        if fault in ("hang_mid_stream", "cut_stream", "close_mid_stream") and len(body) > 1:
            half = len(body) // 2
            self._headers_buffer.append(body[:half])
            self.flush_headers()
            self.server.app.count_fault(fault)
            if fault == "hang_mid_stream":
                self._hang()
                self.wfile.write(body[half:])
                return
            self._drop(rst=False)
            return
        self._headers_buffer.append(body)
        self.flush_headers()

    def _send_json(self, status, obj, fault=None):
        self._send_body(status, json_bytes(obj), JSON_CT, fault)

    def _send_text(self, status, text, extra_headers=None):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text.encode())))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text.encode())

    def _send_error(self, status, message):
        app = self.server.app
        app.count_status(status)
        if self._path == "/rerank":  # TEI: {"error", "error_type"}
            etype = {413: "Validation", 422: "Validation", 429: "Overloaded",
                     503: "Unhealthy"}.get(status, "Backend")
            obj = {"error": message, "error_type": etype}
        elif self._path == "/v1/rerank":  # llama.cpp server: {"error": {"code", "message", "type"}}
            etype = {400: "invalid_request_error", 404: "not_found_error",
                     503: "unavailable_error"}.get(status, "server_error")
            obj = {"error": {"code": status, "message": message, "type": etype}}
        elif self._path.startswith("/v1/"):
            etype = {400: "invalid_request_error", 404: "not_found_error"}.get(
                status, "api_error")
            obj = {"error": {"message": message, "type": etype, "param": None, "code": None}}
        else:
            obj = {"error": message}
        self._send_json(status, obj)

    def _start_stream(self, ctype):
        self._chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self.end_headers()

    def _chunk(self, data):
        if self._chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)

    def _end_stream(self):
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _drop(self, rst):
        """Close the connection now: with RST (SO_LINGER 0) or a plain FIN."""
        self.close_connection = True
        sock = self.connection
        try:
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except OSError:
                pass
        try:
            sock.close()
        except OSError:
            pass
        raise Abort()

    # -- waiting ------------------------------------------------------------------------------
    def _client_gone(self, timeout):
        """Wait up to timeout seconds; True when the peer closed (or reset) the connection."""
        p = select.poll()
        p.register(self.connection, select.POLLIN | select.POLLRDHUP)
        ev = p.poll(max(0, int(timeout * 1000)))
        if not ev:
            return False
        mask = ev[0][1]
        if mask & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
            return True
        try:
            data = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if not data:
            return True
        return None                            # pipelined bytes: cannot tell, stop polling

    def _pause(self, seconds):
        """Sleep, but notice a client that goes away (it counts as a cancelled call)."""
        end = time.monotonic() + seconds
        while True:
            rem = end - time.monotonic()
            if rem <= 0:
                return
            gone = self._client_gone(rem)
            if gone:
                self.server.app.count("cancelled")
                raise ClientGone()
            if gone is None:
                time.sleep(max(0.0, end - time.monotonic()))
                return

    def _check_down(self):
        app = self.server.app
        if not self.server.admin_only and app.down:
            self._drop(rst=False)

    def _hang(self):
        """Hold the connection for fault_hang_ms, or until the config changes (0)."""
        app = self.server.app
        gen = app.gen
        ms = self._cfg["fault_hang_ms"]
        deadline = time.monotonic() + ms / 1000.0 if ms > 0 else math.inf
        while app.gen == gen:
            self._check_down()
            rem = deadline - time.monotonic()
            if rem <= 0:
                break
            self._pause(min(0.05, rem))
        self._check_down()

    # -- dispatch -----------------------------------------------------------------------------
    def _dispatch(self):
        app = self.server.app
        self._path = urlsplit(self.path).path
        self._chunked = True
        body = self._read_body() if self.command in ("POST", "PUT", "PATCH", "DELETE") else b""
        if self._path.startswith("/__admin/"):
            return self._admin(body)
        if self.server.admin_only:
            return self._send_text(404, "404 page not found")
        self._cfg = app.snapshot()
        self._check_down()
        app.request_started(self._path)
        try:
            self._serve(body)
        finally:
            app.request_finished()

    def _serve(self, body):
        app = self.server.app
        methods = ROUTES.get(self._path)
        if methods is None:
            app.count_status(404)
            return self._send_text(404, "404 page not found")
        if self.command not in methods:
            app.count_status(405)
            return self._send_text(405, "405 method not allowed",
                                   {"Allow": ", ".join(methods)})
        fault = app.take_fault(self._path)
        if fault == "error500":
            app.count_fault(fault)
            return self._send_error(500, self._cfg["fault_message"])
        if fault == "reset":
            app.count_fault(fault)
            self._drop(rst=True)
        if fault == "hang_before_headers":
            app.count_fault(fault)
            self._hang()
            fault = None
        if fault in HOSTILE_FAULTS:
            app.count_fault(fault)
            app.count_status(200)
            return self._hostile(fault)
        if fault == "error_line" and self._path not in STREAMING_PATHS:
            # No stream to put an error line in: fail the way a non-stream call fails.
            app.count_fault(fault)
            return self._send_error(500, self._cfg["fault_message"])
        self._fault = fault
        try:
            if self.command == "POST":
                req = self._parse_json(body)
                getattr(self, "_h_" + self._path.strip("/").replace("/", "_"))(req)
            else:
                self._get()
        except ApiError as e:
            self._send_error(e.status, e.message)

    def _hostile(self, fault):
        """A 200 no Ollama would send; every one ends when the client hangs up.
        garbage: 4 KiB of random bytes (NULs, invalid UTF-8) labelled JSON, then a clean end;
        endless_stream: token lines (NDJSON, or SSE on /v1) forever, never `done`;
        huge_line: one line of fault_huge_bytes without a newline, then a clean end;
        wrong_content_type: an HTML page as text/html; stall_mid_line: fault_lines token
        lines, half a line, then silence for fault_hang_ms (0 = until the config changes)."""
        cfg = self._cfg
        openai = self._path.startswith("/v1/")
        if fault == "wrong_content_type":
            page = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>\n"
            return self._send_body(200, page, "text/html; charset=utf-8")
        self._start_stream(SSE_CT if openai and self._path in STREAMING_PATHS else
                           NDJSON_CT if self._path in STREAMING_PATHS else JSON_CT)
        if openai:
            line = b'data: {"choices":[{"index":0,"delta":{"content":"more "}}]}\n\n'
        else:
            line = b'{"model":"x","response":"more ","message":{"role":"assistant","content":"more "},"done":false}\n'
        if fault == "garbage":
            rnd = random.Random(7)
            self._chunk(bytes(rnd.randrange(256) for _ in range(4096)))
        elif fault == "endless_stream":
            batch = line * 64
            while True:
                self._chunk(batch)
                self._pause(0.001)  # bounded CPU; notices a client that went away
        elif fault == "huge_line":
            piece = b"a" * 65536
            left = cfg["fault_huge_bytes"]
            while left > 0:
                self._chunk(piece[:left])
                left -= len(piece)
        elif fault == "stall_mid_line":
            for _ in range(cfg["fault_lines"]):
                self._chunk(line)
            self._chunk(line[: len(line) // 2])
            self._hang()
        self._end_stream()

    def _parse_json(self, body):
        if not body.strip():
            raise ApiError(400, "missing request body")
        text = body.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ApiError(400, go_json_error(e, text))
        except RecursionError:
            raise ApiError(400, "exceeded max depth")

    # -- GET endpoints ------------------------------------------------------------------------
    def _get(self):
        app = self.server.app
        cfg = self._cfg
        p = self._path
        if p == "/":
            app.count_status(200)
            return self._send_text(200, "Ollama is running")
        if p == "/api/version":
            obj = {"version": cfg["version"]}
        elif p == "/api/tags":
            obj = {"models": [m.tag() for m in cfg["_models"].values()]}
        elif p == "/api/ps":
            obj = {"models": app.loaded_models(cfg)}
        else:
            obj = {"object": "list", "data": [
                {"id": m.name, "object": "model", "created": CREATED_UNIX, "owned_by": "library"}
                for m in cfg["_models"].values()]}
        app.count_status(200)
        self._send_json(200, obj, self._fault)

    # -- model lookup and scheduling ----------------------------------------------------------
    def _model(self, name, missing_fmt):
        if not name:
            raise ApiError(400, "model is required")
        m = self._cfg["_models"].get(full_name(name))
        if m is None:
            raise ApiError(404, missing_fmt % name)
        return m

    def _with_slot(self, model, keep_alive, work, load=True):
        """Admission (503 busy), FIFO slot, cold-start load, then work(load_ns); all before
        any byte is sent. Refreshes the model's keep-alive when done."""
        app = self.server.app
        cfg = self._cfg
        ka = parse_duration(keep_alive, parse_duration(cfg["keep_alive"], 300.0))
        st = app.state(model.name)
        ticket = object()
        t0 = time.monotonic()
        with st.cond:
            if st.active >= cfg["parallel"] and len(st.waiters) >= cfg["max_queue"]:
                app.count("queue_rejections")
                raise ApiError(503, BUSY_TEXT)
            st.waiters.append(ticket)
            try:
                while st.waiters[0] is not ticket or st.active >= app.cfg["parallel"]:
                    st.cond.wait(0.1)
                    if st.waiters[0] is not ticket or st.active >= app.cfg["parallel"]:
                        if self._client_gone(0):
                            app.count("cancelled")
                            raise ClientGone()
                        if app.down and not self.server.admin_only:
                            raise Abort()
            except BaseException:
                st.waiters.remove(ticket)
                st.cond.notify_all()
                raise
            st.waiters.popleft()
            st.active += 1
            st.max_active = max(st.max_active, st.active)
            st.cond.notify_all()
        try:
            load_ns = 0
            if load:
                load_ns = self._ensure_loaded(model, st, t0)
            work(load_ns)
        finally:
            with st.cond:
                st.active -= 1
                if load:
                    now = time.monotonic()
                    st.expires = now + ka
                    st.expires_wall = time.time() + ka
                    if ka == 0:
                        st.loaded = False
                st.cond.notify_all()

    def _ensure_loaded(self, model, st, t0):
        app = self.server.app
        with st.load_lock:
            if st.loaded and time.monotonic() < st.expires:
                return int(max(0.0, time.monotonic() - t0) * 1e9) + 500000
            delay = self._cfg["load_ms"] / 1000.0
            if delay > 0:
                self._pause(delay)
            st.loaded = True
            st.expires = math.inf
            st.expires_wall = 1e11
            app.count_load(model.name)
            return int((time.monotonic() - t0) * 1e9)

    def _num_ctx(self, opts, default):
        v = opts.get("num_ctx")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 \
            else default

    # -- /api/show ----------------------------------------------------------------------------
    def _h_api_show(self, req):
        req = go_unmarshal_check(req, "ShowRequest")
        name = req.get("model") or req.get("name")
        m = self._model(name, "model '%s' not found")
        arch = m.family.replace("-", "_") if m.kind == "embed" else "llama"
        info = {"general.architecture": arch, "general.parameter_count": 3212749888
                if m.kind == "chat" else 136727040,
                arch + ".context_length": m.ctx, arch + ".embedding_length": m.dim}
        obj = {"license": "", "modelfile": "FROM %s\n" % m.name,
               "parameters": "" if m.kind == "embed" else 'stop "<|eot_id|>"',
               "template": "" if m.kind == "embed" else "{{ .Prompt }}",
               "details": m.details(), "model_info": info,
               "capabilities": ["embedding"] if m.kind == "embed" else ["completion"],
               "modified_at": MODIFIED_AT}
        self.server.app.count_status(200)
        self._send_json(200, obj, self._fault)

    # -- embeddings ---------------------------------------------------------------------------
    def _embed_vectors(self, m, texts, opts, truncate, dims):
        ctx = self._num_ctx(opts, m.ctx)
        vecs = []
        total = 0
        for t in texts:
            toks = TOKEN_RE.findall(t)
            if len(toks) > ctx:
                if not truncate:
                    raise ApiError(400, CONTEXT_TEXT)
                toks = toks[:ctx]
            total += len(toks)
            vecs.append(_embedding(tuple(toks), t, m.dim, dims))
        return vecs, total

    def _h_api_embed(self, req):
        req = go_unmarshal_check(req, "EmbedRequest")
        self._do_embed(req, openai=False)

    def _h_v1_embeddings(self, req):
        if not isinstance(req, dict):
            raise ApiError(400, "invalid request")
        inp = req.get("input")
        if inp == "":
            inp = [""]
        if inp is None:
            raise ApiError(400, "invalid input")
        r = {"model": req.get("model"), "input": inp}
        if isinstance(req.get("dimensions"), int):
            r["dimensions"] = req["dimensions"]
        self._do_embed(r, openai=True, b64=req.get("encoding_format") == "base64")

    def _do_embed(self, req, openai, b64=False):
        app = self.server.app
        inp = req.get("input")
        texts = []
        if isinstance(inp, str):
            if inp:
                texts.append(inp)
        elif isinstance(inp, list):
            for v in inp:
                if not isinstance(v, str):
                    raise ApiError(400, "invalid input type")
                texts.append(v)
        elif inp is not None:
            raise ApiError(400, "invalid input type")
        model_name = req.get("model") or ""
        if not texts and not openai:
            app.count_status(200)
            return self._send_json(200, {"model": model_name, "embeddings": []}, self._fault)
        m = self._model(model_name, 'model "%s" not found, try pulling it first')
        opts = check_options(req.get("options"))
        truncate = req.get("truncate") is not False
        dims = int(req.get("dimensions") or 0)
        app.count_embed(len(texts))
        result = {}

        def work(load_ns):
            t0 = time.monotonic()
            vecs, ntok = self._embed_vectors(m, texts, opts, truncate, dims)
            delay = (self._cfg["latency_ms"] + self._cfg["embed_input_ms"] * len(texts)) / 1000
            self._pause(max(0.0, delay - (time.monotonic() - t0)))
            result.update(vecs=vecs, ntok=ntok, load_ns=load_ns,
                          total_ns=int((time.monotonic() - t0) * 1e9) + load_ns)

        self._with_slot(m, req.get("keep_alive"), work)
        vecs = result["vecs"]
        if openai:
            if b64:
                data = [{"object": "embedding", "index": i, "embedding": base64.b64encode(
                    struct.pack("<%df" % len(v), *v)).decode()} for i, v in enumerate(vecs)]
                body = json_bytes({"object": "list", "data": data, "model": model_name,
                                   "usage": {"prompt_tokens": result["ntok"],
                                             "total_tokens": result["ntok"]}})
            else:
                parts = ['{"object":"embedding","embedding":%s,"index":%d}'
                         % (format_vec32(v), i) for i, v in enumerate(vecs)]
                body = ('{"object":"list","data":[%s],"model":%s,"usage":{"prompt_tokens":%d,'
                        '"total_tokens":%d}}' % (",".join(parts), json.dumps(model_name),
                                                  result["ntok"], result["ntok"])).encode()
        else:
            body = ('{"model":%s,"embeddings":[%s],"total_duration":%d,"load_duration":%d,'
                    '"prompt_eval_count":%d}' % (
                        json.dumps(model_name), ",".join(format_vec32(v) for v in vecs),
                        result["total_ns"], result["load_ns"], result["ntok"])).encode()
        app.count_status(200)
        self._send_body(200, body, JSON_CT, self._fault)

    def _h_api_embeddings(self, req):
        app = self.server.app
        req = go_unmarshal_check(req, "EmbeddingRequest")
        name = req.get("model") or ""
        m = self._model(name, 'model "%s" not found, try pulling it first')
        opts = check_options(req.get("options"))
        prompt = req.get("prompt") or ""
        result = {}

        def work(load_ns):
            if not prompt:
                result["vec"] = []
                return
            t0 = time.monotonic()
            toks = TOKEN_RE.findall(prompt)[:self._num_ctx(opts, m.ctx)]
            words = [w.lower() for w in toks if WORD_RE.fullmatch(w)]
            result["vec"] = raw_vector(words, prompt, m.dim)
            delay = (self._cfg["latency_ms"] + self._cfg["embed_input_ms"]) / 1000
            self._pause(max(0.0, delay - (time.monotonic() - t0)))

        if prompt:
            app.count_embed(1)
        self._with_slot(m, req.get("keep_alive"), work)
        app.count_status(200)
        self._send_json(200, {"embedding": result["vec"]}, self._fault)

    # -- generation ---------------------------------------------------------------------------
    def _h_api_generate(self, req):
        req = go_unmarshal_check(req, "GenerateRequest")
        self._generate(req, kind="generate")

    def _h_api_chat(self, req):
        req = go_unmarshal_check(req, "ChatRequest")
        self._generate(req, kind="chat")

    def _h_v1_chat_completions(self, req):
        if not isinstance(req, dict):
            raise ApiError(400, "invalid request")
        opts = {}
        if req.get("max_tokens") is not None:
            opts["num_predict"] = req["max_tokens"]
        for k in ("temperature", "top_p", "seed"):
            if req.get(k) is not None:
                opts[k] = req[k]
        msgs = req.get("messages")
        if not isinstance(msgs, list):
            raise ApiError(400, "[] is too short - 'messages'")
        fmt = None
        rf = req.get("response_format")
        if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
            fmt = "json"
        native = {"model": req.get("model"), "messages": msgs, "options": opts,
                  "stream": bool(req.get("stream", False)), "format": fmt}
        so = req.get("stream_options")
        usage = isinstance(so, dict) and so.get("include_usage") is True
        self._generate(native, kind="openai", include_usage=usage)

    def _generate(self, req, kind, include_usage=False):
        app = self.server.app
        cfg = self._cfg
        name = req.get("model") or ""
        if kind == "generate":
            if not name:
                raise ApiError(400, "model is required")
        elif not name:
            raise ApiError(400, "model is required")
        m = self._model(name, "model '%s' not found")
        if m.kind == "embed":
            raise ApiError(400, '"%s" does not support %s'
                           % (name, "generate" if kind == "generate" else "chat"))
        opts = check_options(req.get("options"))
        stream = req.get("stream")
        stream = True if stream is None else bool(stream)
        keep_alive = req.get("keep_alive")

        if kind == "generate":
            question = req.get("prompt") or ""
            system_text = req.get("system") or ""
            context_text = system_text + "\n" + question
            empty = question == ""
        else:
            msgs = [x for x in (req.get("messages") or []) if isinstance(x, dict)]
            users = [x.get("content") or "" for x in msgs if x.get("role") == "user"]
            question = users[-1] if users else ""
            system_text = "\n".join(x.get("content") or "" for x in msgs if x.get("role") == "system")
            context_text = "\n".join(x.get("content") or "" for x in msgs)
            empty = not msgs

        if empty and kind != "openai":
            return self._load_call(m, name, kind, keep_alive)

        prompt_tokens = count_tokens(context_text)
        if prompt_tokens > self._num_ctx(opts, m.ctx):
            raise ApiError(400, CONTEXT_TEXT)
        app.record_prompt(context_text)
        app.record_options(opts)
        answer = cfg["answer"] or build_answer(context_text, question)
        judged = judge_answer(cfg["judge"], question)
        if judged is not None:
            app.count("judge_calls")
            answer = judged
        if cfg["echo"] == "system" and system_text:
            answer = answer + "\n" + system_text
        if req.get("format") is not None:
            answer = json.dumps({"answer": answer}, ensure_ascii=False)
        pieces = answer_pieces(answer, cfg["tokens"])
        done_reason = "stop"
        npred = opts.get("num_predict")
        if isinstance(npred, (int, float)) and npred >= 0 and len(pieces) > npred:
            pieces = pieces[:int(npred)]
            done_reason = "length"
        meta = {"model": name, "m": m, "pieces": pieces, "done_reason": done_reason,
                "prompt_tokens": prompt_tokens, "kind": kind, "include_usage": include_usage}

        def work(load_ns):
            meta["load_ns"] = load_ns
            meta["t0"] = time.monotonic()
            if stream:
                self._pause(cfg["latency_ms"] / 1000.0)
                self._write_stream(meta)
            else:
                self._pause((cfg["latency_ms"] + cfg["token_ms"] * len(pieces)) / 1000.0)
                self._write_whole(meta)

        self._with_slot(m, keep_alive, work)

    # -- rerank (TEI's POST /rerank; llama.cpp / Cohere / Jina / Infinity POST /v1/rerank) --
    def _h_rerank(self, req):
        """TEI: {"query", "texts", "raw_scores"?, "return_text"?, "truncate"?} ->
        [{"index", "score"(, "text")}] sorted best first; errors {"error", "error_type"}."""
        if not isinstance(req, dict):
            raise ApiError(422, "Failed to deserialize the JSON body into the target type")
        query, texts = req.get("query"), req.get("texts")
        if not isinstance(query, str):
            raise ApiError(422, "query: missing field `query`" if query is None else "query: invalid type")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ApiError(422, "texts: invalid type: expected a sequence of strings")
        if not texts:
            raise ApiError(422, "`texts` cannot be empty")
        if len(texts) > self._cfg["rerank_max_docs"]:
            raise ApiError(413, "batch size %d > maximum allowed batch size %d"
                           % (len(texts), self._cfg["rerank_max_docs"]))
        ranked = self._rerank_scores(query, texts)
        out = []
        for i, score in ranked:
            item = {"index": i, "score": score}
            if req.get("return_text"):
                item["text"] = texts[i]
            out.append(item)
        self.server.app.count_status(200)
        self._send_json(200, out, self._fault)

    def _h_v1_rerank(self, req):
        """llama.cpp server / Cohere style: {"model"?, "query", "documents", "top_n"?} ->
        {"model", "object": "list", "usage", "results": [{"index", "relevance_score"}]} best
        first, top_n of them; errors {"error": {"code", "message", "type"}}."""
        if not isinstance(req, dict):
            raise ApiError(400, "invalid request")
        query, docs = req.get("query"), req.get("documents")
        if not isinstance(query, str):
            raise ApiError(400, "\"query\" must be provided")
        if not isinstance(docs, list) or not docs or not all(isinstance(d, str) for d in docs):
            raise ApiError(400, "\"documents\" must be a non-empty string array")
        if len(docs) > self._cfg["rerank_max_docs"]:
            raise ApiError(400, "too many documents: %d > %d" % (len(docs), self._cfg["rerank_max_docs"]))
        top_n = req.get("top_n")
        ranked = self._rerank_scores(query, docs)
        if isinstance(top_n, int) and not isinstance(top_n, bool) and top_n > 0:
            ranked = ranked[:top_n]
        tokens = sum(count_tokens(query) + count_tokens(d) for d in docs)
        obj = {"model": req.get("model") or "bge-reranker-v2-m3", "object": "list",
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
               "results": [{"index": i, "relevance_score": score} for i, score in ranked]}
        self.server.app.count_status(200)
        self._send_json(200, obj, self._fault)

    def _rerank_scores(self, query, docs):
        """[(index, score)] best first (ties: input order), after rerank_ms, counted in the
        rerank stats (calls, documents, concurrent calls)."""
        app = self.server.app
        if not app.rerank_begin(len(docs), self._cfg["rerank_max_concurrent"]):
            app.count("queue_rejections")
            if self._path == "/rerank":
                raise ApiError(429, "Model is overloaded")
            raise ApiError(503, "Loading model")  # llama.cpp's busy answer
        try:
            self._pause(self._cfg["rerank_ms"] / 1000.0)
        finally:
            app.rerank_end()
        scores = [(i, overlap_score(query, d)) for i, d in enumerate(docs)]
        return sorted(scores, key=lambda x: (-x[1], x[0]))

    def _load_call(self, m, name, kind, keep_alive):
        app = self.server.app
        ka = parse_duration(keep_alive, 300.0)
        if ka == 0:
            st = app.state(m.name)
            with st.cond:
                st.loaded = False
            reason = "unload"
        else:
            reason = "load"
            self._with_slot(m, keep_alive, lambda load_ns: None)
        obj = {"model": name, "created_at": now_rfc3339()}
        if kind == "generate":
            obj["response"] = ""
        else:
            obj["message"] = {"role": "assistant", "content": ""}
        obj.update(done=True, done_reason=reason)
        app.count_status(200)
        self._send_json(200, obj)

    def _metrics(self, meta, eval_count):
        now = time.monotonic()
        total = int((now - meta["t0"]) * 1e9) + meta["load_ns"]
        pe = int(meta["prompt_tokens"] * 20000)
        return {"total_duration": total, "load_duration": meta["load_ns"],
                "prompt_eval_count": meta["prompt_tokens"], "prompt_eval_duration": pe,
                "eval_count": eval_count,
                "eval_duration": max(0, total - meta["load_ns"] - pe)}

    def _native_chunk(self, meta, text, done):
        obj = {"model": meta["model"], "created_at": now_rfc3339()}
        if meta["kind"] == "generate":
            obj["response"] = text
        else:
            obj["message"] = {"role": "assistant", "content": text}
        obj["done"] = done
        if done:
            obj["done_reason"] = meta["done_reason"]
            if meta["kind"] == "generate":
                n = min(meta["prompt_tokens"] + len(meta["pieces"]), 4096)
                obj["context"] = list(range(1, n + 1))
            obj.update(self._metrics(meta, len(meta["pieces"])))
        return obj

    def _openai_id(self):
        return "chatcmpl-%d" % (zlib.crc32(("%s%f" % (id(self), time.time())).encode()) % 1000)

    def _write_whole(self, meta):
        app = self.server.app
        text = "".join(meta["pieces"])
        if meta["kind"] == "openai":
            n = len(meta["pieces"])
            obj = {"id": self._openai_id(), "object": "chat.completion", "created": int(time.time()),
                   "model": meta["model"], "system_fingerprint": "fp_ollama",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                "finish_reason": meta["done_reason"]}],
                   "usage": {"prompt_tokens": meta["prompt_tokens"], "completion_tokens": n,
                             "total_tokens": meta["prompt_tokens"] + n}}
        else:
            obj = self._native_chunk(meta, text, True)
        fault = self._fault
        if fault == "error_line":
            app.count_fault(fault)
            raise ApiError(500, self._cfg["fault_message"])
        app.count_status(200)
        self._send_json(200, obj, fault)

    def _write_stream(self, meta):
        app = self.server.app
        cfg = self._cfg
        fault = self._fault if self._fault in (
            "hang_mid_stream", "error_line", "cut_stream", "close_mid_stream") else None
        pieces = meta["pieces"]
        openai = meta["kind"] == "openai"
        app.count_status(200)
        self._start_stream(SSE_CT if openai else NDJSON_CT)
        sid = self._openai_id()
        created = int(time.time())

        def sse(obj):
            self._chunk(b"data: " + json_bytes(obj) + b"\n\n")

        def oa_chunk(delta, finish):
            return {"id": sid, "object": "chat.completion.chunk", "created": created,
                    "model": meta["model"], "system_fingerprint": "fp_ollama",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        body_pieces = pieces
        last = ""
        if cfg["done_text"] and not openai and pieces:
            body_pieces, last = pieces[:-1], pieces[-1]
        sent = 0
        for i, p in enumerate(body_pieces):
            if fault and sent >= cfg["fault_lines"]:
                break
            if i > 0 or sent > 0:
                self._pause(cfg["token_ms"] / 1000.0)
            if openai:
                sse(oa_chunk({"role": "assistant", "content": p}, None))
            else:
                self._chunk(json_bytes(self._native_chunk(meta, p, False)) + b"\n")
            sent += 1
        if fault:
            app.count_fault(fault)
            if fault == "hang_mid_stream":
                self._hang()
                fault = None
                for p in body_pieces[sent:]:
                    self._pause(cfg["token_ms"] / 1000.0)
                    if openai:
                        sse(oa_chunk({"role": "assistant", "content": p}, None))
                    else:
                        self._chunk(json_bytes(self._native_chunk(meta, p, False)) + b"\n")
            elif fault == "error_line":
                msg = cfg["fault_message"]
                if openai:
                    sse({"error": {"message": msg, "type": "api_error", "param": None,
                                   "code": None}})
                else:
                    self._chunk(json_bytes({"error": msg}) + b"\n")
                self._end_stream()
                return
            elif fault == "cut_stream":
                self._end_stream()
                return
            else:
                self._drop(rst=False)
        if pieces:
            self._pause(cfg["token_ms"] / 1000.0)
        if openai:
            sse(oa_chunk({"role": "assistant", "content": ""}, meta["done_reason"]))
            if meta["include_usage"]:
                n = len(pieces)
                u = oa_chunk({}, None)
                u["choices"] = []
                u["usage"] = {"prompt_tokens": meta["prompt_tokens"], "completion_tokens": n,
                              "total_tokens": meta["prompt_tokens"] + n}
                sse(u)
            self._chunk(b"data: [DONE]\n\n")
        else:
            self._chunk(json_bytes(self._native_chunk(meta, last, True)) + b"\n")
        self._end_stream()

    # -- admin --------------------------------------------------------------------------------
    def _admin(self, body):
        app = self.server.app
        p = self._path
        try:
            if p == "/__admin/config" and self.command == "GET":
                return self._send_json(200, app.public_config())
            if p == "/__admin/stats" and self.command == "GET":
                return self._send_json(200, app.stats())
            if self.command != "POST":
                return self._send_text(405, "405 method not allowed")
            if p == "/__admin/config":
                try:
                    changes = json.loads(body.decode("utf-8") or "{}")
                except json.JSONDecodeError as e:
                    raise ApiError(400, "malformed JSON: %s" % e)
                if not isinstance(changes, dict):
                    raise ApiError(400, "expected a JSON object of knobs")
                # On the main port, "refuse" takes the listener down before answering,
                # keeping only this connection open for the answer.
                keep = None if self.server.admin_only else self.connection
                going_down = app.configure(changes, keep=keep)
                self.close_connection = self.close_connection or going_down
                self._send_json(200, app.public_config())
                return None
            if p == "/__admin/stats/reset":
                app.reset_stats()
                return self._send_json(200, app.stats())
            if p == "/__admin/unload":
                app.unload_all()
                return self._send_json(200, {"unloaded": True})
            if p == "/__admin/reset":
                app.reset()
                return self._send_json(200, app.public_config())
            return self._send_text(404, "404 page not found")
        except ApiError as e:
            self._send_json(e.status, {"error": e.message})


# ---------------------------------------------------------------------------------------------
# The application object
# ---------------------------------------------------------------------------------------------

def coerce_knob(name, value):
    """Validate one knob value (from JSON or a command-line string). Raises ApiError(400)."""
    if name not in KNOBS:
        raise ApiError(400, "unknown knob %r (known: %s)" % (name, ", ".join(sorted(KNOBS))))
    kind = KNOBS[name][0]
    try:
        if kind == "list":
            if isinstance(value, str):
                value = [x.strip() for x in value.split(",") if x.strip()]
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise ValueError("a list of strings")
            return list(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("an integer")
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("a number")
            return float(value)
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError("a boolean")
            if not isinstance(value, bool):
                raise ValueError("a boolean")
            return value
        if kind == "dur":
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    parse_duration(value, 0)
                    return value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("seconds or a Go duration string")
            return value
        if not isinstance(value, str):
            raise ValueError("a string")
        if name == "fault" and value not in FAULT_MODES:
            raise ValueError("one of " + ", ".join(FAULT_MODES))
        return value
    except (ValueError, TypeError) as e:
        raise ApiError(400, "knob %s must be %s" % (name, e))


class FakeOllama:
    """The fake: a main listener (which 'refuse' takes down) and an optional admin listener."""

    def __init__(self, host="127.0.0.1", port=0, admin_port=None, verbose=False, **knobs):
        self.host = host
        self.port = port
        self.admin_port = admin_port
        self.verbose = verbose
        self.cfg = {k: copy.deepcopy(v[1]) for k, v in KNOBS.items()}
        for k, v in knobs.items():
            self.cfg[k] = coerce_knob(k, v)
        self.cfg["_models"] = parse_models(self.cfg)
        self.initial = dict(self.cfg)
        self.lock = threading.Lock()
        self.gen = 0
        self.down = False
        self.states = {}
        self._main = None
        self._admin = None
        self._updown = threading.Lock()
        self.reset_stats()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self):
        self._main = self._listen(self.port, admin_only=False)
        self.port = self._main.server_address[1]
        if self.admin_port is not None:
            self._admin = self._listen(self.admin_port, admin_only=True)
            self.admin_port = self._admin.server_address[1]
        if self.cfg["fault"] == "refuse":
            self.set_down(True)
        return self

    def _listen(self, port, admin_only):
        srv = _Server((self.host, port), self, admin_only)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02},
                             daemon=True, name="fake-ollama-%d" % port)
        t.start()
        return srv

    def stop(self):
        self.set_down(True)
        if self._admin is not None:
            self._admin.shutdown()
            self._admin.server_close()
            self._close_conns(self._admin)
            self._admin = None
        with self.lock:
            self.gen += 1

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    @property
    def admin_url(self):
        port = self.admin_port if self.admin_port is not None else self.port
        return "http://%s:%d" % (self.host, port)

    @staticmethod
    def _close_conns(srv, keep=None):
        with srv.conns_lock:
            conns = [c for c in srv.conns if c is not keep]
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_down(self, down, keep=None):
        """Take the main listener down (connection refused, open connections but `keep`
        closed) or bring it back on the same port. Returns when done."""
        with self._updown:
            if down and self._main is not None:
                self.down = True
                with self.lock:
                    self.gen += 1
                srv, self._main = self._main, None
                srv.shutdown()
                srv.server_close()
                self._close_conns(srv, keep)
            elif not down and self._main is None:
                self._main = self._listen(self.port, admin_only=False)
                self.down = False

    # -- config -------------------------------------------------------------------------------
    def snapshot(self):
        with self.lock:
            return dict(self.cfg)

    def public_config(self):
        with self.lock:
            out = {k: v for k, v in self.cfg.items() if not k.startswith("_")}
        out["listening"] = not self.down
        out["port"] = self.port
        out["admin_port"] = self.admin_port
        return out

    def configure(self, changes=None, keep=None, **kw):
        """Apply knob changes (all validated first); "refuse" takes the main listener down
        (keeping the connection `keep` open), any other mode brings it back. Returns True
        when the listener went down."""
        changes = dict(changes or {}, **kw)
        clean = {k: coerce_knob(k, v) for k, v in changes.items()}
        with self.lock:
            new = dict(self.cfg)
            new.update(clean)
            if "fault" in clean and clean["fault"] == "up":
                new["fault"] = "none"
            try:
                new["_models"] = parse_models(new)
            except ValueError as e:
                raise ApiError(400, "bad model list: %s" % e)
            self.cfg = new
            self.gen += 1
        want_down = self.cfg["fault"] == "refuse"
        if want_down and not self.down:
            self.set_down(True, keep=keep)
            return True
        elif not want_down and self.down:
            self.set_down(False)
        return False

    def take_fault(self, path):
        """The fault mode for this request (consuming one of fault_count), or None."""
        with self.lock:
            mode = self.cfg["fault"]
            if mode in ("none", "up", "refuse"):
                return None
            paths = self.cfg["fault_paths"]
            if paths and not any(path == p or (p.endswith("*") and path.startswith(p[:-1]))
                                 for p in paths):
                return None
            n = self.cfg["fault_count"]
            if n > 0:
                cfg = dict(self.cfg)
                cfg["fault_count"] = n - 1
                if n == 1:
                    cfg["fault"] = "none"
                    cfg["fault_count"] = 0
                self.cfg = cfg
            return mode

    def reset(self):
        with self.lock:
            self.cfg = dict(self.initial)
            self.gen += 1
        self.unload_all()
        self.reset_stats()
        self.set_down(self.cfg["fault"] == "refuse")

    # -- models -------------------------------------------------------------------------------
    def state(self, name):
        with self.lock:
            st = self.states.get(name)
            if st is None:
                st = self.states[name] = ModelState()
            return st

    def unload_all(self):
        with self.lock:
            states = list(self.states.values())
        for st in states:
            with st.cond:
                st.loaded = False

    def loaded_models(self, cfg):
        out = []
        now = time.monotonic()
        with self.lock:
            items = list(self.states.items())
        for name, st in items:
            m = cfg["_models"].get(name)
            if m is None or not st.loaded or (st.active == 0 and st.expires <= now):
                continue
            t = m.tag()
            t.update(expires_at=rfc3339_at(st.expires_wall), size_vram=m.size,
                     context_length=m.ctx)
            out.append(t)
        return out

    # -- stats --------------------------------------------------------------------------------
    def reset_stats(self):
        self._stats_lock = getattr(self, "_stats_lock", threading.Lock())
        with self._stats_lock:
            # in_flight and rerank_in_flight are gauges of live requests, not counters: a
            # request of an earlier test still running must not finish into -1 after a reset
            live = getattr(self, "_st", {})
            self._st = {"requests": collections.Counter(), "statuses": collections.Counter(),
                        "faults": collections.Counter(), "loads": collections.Counter(),
                        "embed_calls": 0, "embed_inputs_total": 0,
                        "embed_inputs": collections.deque(maxlen=10000),
                        "in_flight": 0, "max_in_flight": 0, "queue_rejections": 0,
                        "cancelled": 0, "prompts": collections.deque(maxlen=32),
                        "chat_options": collections.deque(maxlen=32),
                        "rerank_calls": 0, "rerank_documents": 0, "rerank_in_flight": 0,
                        "rerank_max_in_flight": 0, "judge_calls": 0}
            for gauge in ("in_flight", "rerank_in_flight"):
                self._st[gauge] = live.get(gauge, 0)
            for st in getattr(self, "states", {}).values():
                st.max_active = st.active

    def request_started(self, path):
        with self._stats_lock:
            s = self._st
            s["requests"][path] += 1
            s["in_flight"] += 1
            s["max_in_flight"] = max(s["max_in_flight"], s["in_flight"])

    def request_finished(self):
        with self._stats_lock:
            self._st["in_flight"] -= 1

    def count(self, key):
        with self._stats_lock:
            self._st[key] += 1

    def count_status(self, status):
        with self._stats_lock:
            self._st["statuses"][str(status)] += 1

    def count_fault(self, mode):
        with self._stats_lock:
            self._st["faults"][mode] += 1

    def count_load(self, name):
        with self._stats_lock:
            self._st["loads"][name] += 1

    def record_prompt(self, text):
        """The whole text of a generation request (system and user messages), last 32 kept."""
        with self._stats_lock:
            self._st["prompts"].append(text)

    def record_options(self, opts):
        """The options object of a generation request, last 32 kept."""
        with self._stats_lock:
            self._st["chat_options"].append(dict(opts))

    def rerank_begin(self, ndocs, limit=0):
        """Counts a rerank call in; False (nothing counted) when limit calls already run."""
        with self._stats_lock:
            s = self._st
            if limit > 0 and s["rerank_in_flight"] >= limit:
                return False
            s["rerank_calls"] += 1
            s["rerank_documents"] += ndocs
            s["rerank_in_flight"] += 1
            s["rerank_max_in_flight"] = max(s["rerank_max_in_flight"], s["rerank_in_flight"])
            return True

    def rerank_end(self):
        with self._stats_lock:
            self._st["rerank_in_flight"] -= 1

    def count_embed(self, n):
        with self._stats_lock:
            self._st["embed_calls"] += 1
            self._st["embed_inputs_total"] += n
            self._st["embed_inputs"].append(n)

    def stats(self):
        with self._stats_lock:
            s = self._st
            out = {"requests": dict(s["requests"]), "statuses": dict(s["statuses"]),
                   "faults": dict(s["faults"]), "loads": dict(s["loads"]),
                   "embed_calls": s["embed_calls"], "embed_inputs_total": s["embed_inputs_total"],
                   "embed_inputs": list(s["embed_inputs"]), "in_flight": s["in_flight"],
                   "max_in_flight": s["max_in_flight"],
                   "queue_rejections": s["queue_rejections"], "cancelled": s["cancelled"],
                   "prompts": list(s["prompts"]), "chat_options": list(s["chat_options"]),
                   "rerank": {"calls": s["rerank_calls"], "documents": s["rerank_documents"],
                              "in_flight": s["rerank_in_flight"],
                              "max_in_flight": s["rerank_max_in_flight"]},
                   "judge_calls": s["judge_calls"]}
        with self.lock:
            items = list(self.states.items())
        out["models"] = {n: {"active": st.active, "max_active": st.max_active,
                             "waiting": len(st.waiters), "loaded": st.loaded}
                         for n, st in items}
        out["listening"] = not self.down
        return out


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def raise_fd_limit():
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="A fault-injecting fake Ollama server.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=11434, help="0 = any free port")
    ap.add_argument("--admin-port", type=int, default=None,
                    help="an always-up port serving only /__admin/* (0 = any free port)")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    for name, (kind, default, help_text) in KNOBS.items():
        shown = ",".join(default) if isinstance(default, list) else default
        ap.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                        help="%s (default %s)" % (help_text, shown))
    args = ap.parse_args(argv)
    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}
    raise_fd_limit()
    try:
        fake = FakeOllama(args.host, args.port, args.admin_port, args.verbose, **knobs)
    except ApiError as e:
        ap.error(e.message)
    fake.start()
    line = "fake_ollama listening on %s" % fake.url
    if args.admin_port is not None:
        line += " admin %s" % fake.admin_url
    print(line, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    while not stop.wait(3600):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
