"""End-to-end test harness for ragd: real processes, real HTTP on loopback.

Python 3.11 standard library only. What it gives the test files:

- `Server`: runs `RAGD_BIN serve` on a free loopback port with a fresh temporary data dir
  (RAGD_DATA_DIR) and an environment built from scratch (only PATH, HOME, locale and
  sanitizer variables are inherited; every RAGD_*/OLLAMA_*/OPENAI_* variable of the calling
  shell is dropped so a developer's settings never leak into a test). It waits for
  /health/ready (20 s cap), captures stdout+stderr to a log file, stops with SIGTERM and checks
  the exit status, kills with SIGKILL on request, and restarts on the same data dir.
- `request()`: one HTTP request over http.client, any method, any raw body, any Content-Type
  (or none), returning a `Response` that unpacks as (status, headers, body) where body is the
  parsed JSON for application/json responses and the raw bytes otherwise.
- `raw_request()`: writes bytes straight to a socket, for what http.client refuses to send (a
  Content-Length that lies, a huge declared length with no body, half-closed connections).
- `E2ETestCase`: a unittest.TestCase base class that owns servers (class-wide or per test),
  cleans up processes and temp dirs even when a test fails, and prints the server log of a
  failing test.
- `E2ETestCase.start_fake_ollama()`: the fake Ollama of tools/fake_ollama on free ports,
  stopped when the test ends.
- `run_cli()`: runs `RAGD_BIN <command> ...` (the client commands) and captures its output.

Set RAGD_E2E_KEEP=1 to keep data dirs and logs after the run (their paths are printed).
"""

import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_BYTES = 8000

_INHERITED_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
                  "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS")
_DROPPED_PREFIXES = ("RAGD_", "OLLAMA_", "OPENAI_")

# The fault-injecting fake Ollama (tools/fake_ollama), for E2ETestCase.start_fake_ollama and
# for tests that drive it directly (harness.fake_ollama.FakeOllama).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "fake_ollama"))
import fake_ollama  # noqa: E402

# Every server the harness ever started, so that an aborted run still kills them.
_live_servers = []


def project_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ragd_bin():
    """The binary under test: $RAGD_BIN, else <project>/build/ragd. Raises when missing."""
    path = os.environ.get("RAGD_BIN") or os.path.join(project_root(), "build", "ragd")
    path = os.path.abspath(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(f"ragd binary not found or not executable: {path} "
                           "(set RAGD_BIN=/abs/path/build/ragd)")
    return path


def base_env(extra=None):
    """A clean environment for a ragd process: nothing inherited but the basics."""
    env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    for k in list(env):
        if k.startswith(_DROPPED_PREFIXES):
            del env[k]
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def free_port():
    """A loopback TCP port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keep_temp():
    return os.environ.get("RAGD_E2E_KEEP", "") not in ("", "0")


# --------------------------------------------------------------------------------------------
# HTTP

class Response:
    """An HTTP response. Unpacks as (status, headers, body); body is parsed JSON when the
    Content-Type is application/json and the bytes parse, else the raw bytes."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers          # http.client.HTTPMessage: case-insensitive get()
        self.raw = raw
        self.body = raw
        self.json_error = None
        if self.content_type() == "application/json":
            try:
                self.body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                self.json_error = e

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def content_type(self):
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def is_json(self):
        return self.content_type() == "application/json" and self.json_error is None

    def __repr__(self):
        text = self.raw[:600].decode("utf-8", "replace")
        more = "…" if len(self.raw) > 600 else ""
        return f"<HTTP {self.status} {self.headers.get('Content-Type')!r} {text!r}{more}>"


def request(port, method, path, body=None, json_body=None, headers=None, content_type=None,
            timeout=15.0, host="127.0.0.1"):
    """Sends one request on a new connection and reads the whole response.

    body: bytes or str (sent as is, UTF-8 for str); json_body: any JSON value (dumped, and
    Content-Type application/json unless content_type says otherwise). content_type: a
    Content-Type header value; None sends none (unless json_body). headers: extra headers.
    Returns a Response; connection-level failures raise (ConnectionError, socket.timeout...).
    """
    hdrs = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode("utf-8")
        if content_type is None:
            content_type = "application/json"
    if isinstance(body, str):
        body = body.encode("utf-8")
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return Response(resp.status, resp.headers, raw)
    finally:
        conn.close()


def build_raw_request(method, path, headers=None, body=b"", content_length=None):
    """The bytes of an HTTP/1.1 request. content_length: the declared length (may lie);
    None declares len(body) for a non-empty body or a POST/PUT/PATCH, and nothing otherwise."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if content_length is None and (body or method in ("POST", "PUT", "PATCH")):
        content_length = len(body)
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def raw_request(port, data, timeout=10.0, half_close=False, method="POST", source=None):
    """Writes data to a new connection and reads one response.

    Write errors (the server answering and closing early) are ignored so that the response
    can still be read. half_close: shut down the write side after sending. source: the local
    address to connect from (e.g. "127.0.0.2"). Returns a Response, or None when the server
    closed (or reset) the connection without a response."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0) if source else None)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            resp.begin()
            raw = resp.read()
        except (http.client.RemoteDisconnected, http.client.BadStatusLine,
                http.client.IncompleteRead, ConnectionResetError):
            return None
        return Response(resp.status, resp.headers, raw)
    finally:
        sock.close()


def parse_sse(raw):
    """Splits a text/event-stream body into [(event, data_text)]; event defaults to
    'message', multi-line data is joined with newlines, comments are skipped."""
    events = []
    text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    for block in text.split("\n\n"):
        event, data, seen = "message", [], False
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            seen = True
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
        if seen:
            events.append((event, "\n".join(data)))
    return events


# --------------------------------------------------------------------------------------------
# Server process

class ServerError(AssertionError):
    """The server did not start, stop or exit the way a test required."""


class Server:
    """One ragd server process (and its successors after restarts) on one data dir."""

    def __init__(self, env=None, args=None, name="ragd"):
        self.bin = ragd_bin()
        self.extra_env = dict(env or {})
        self.args = list(args or [])
        self.root = tempfile.mkdtemp(prefix=f"ragd-e2e-{name}-")
        self.data_dir = os.path.join(self.root, "data")
        os.mkdir(self.data_dir)
        self.log_path = os.path.join(self.root, "server.log")
        self.proc = None
        self.port = None
        self.starts = 0
        self.returncodes = []
        # Run in the child before exec (subprocess's preexec_fn), e.g. to set an rlimit;
        # read at each start, so a restart after setting it to None runs without.
        self.preexec = None
        _live_servers.append(self)

    # -- lifecycle ----------------------------------------------------------------------------
    def env(self):
        env = base_env({
            # Generous limits so that the suites are not throttled; tests that want limits
            # set them explicitly.
            "RATE_LIMIT_QUERY": "0",
            "RAGD_RATE_LIMIT_INGEST": "0",
            "RAGD_LOG_LEVEL": "info",
            # Nothing else: the suites run on the true defaults (RAGD_EMBEDDER=auto,
            # RAGD_GENERATOR=auto, OLLAMA_BASE_URL unset, so nothing answers at the default
            # address), as `make run` does. The generator suites point OLLAMA_BASE_URL at
            # the fake themselves.
        })
        env.update({k: str(v) for k, v in self.extra_env.items() if v is not None})
        for k, v in self.extra_env.items():
            if v is None:
                env.pop(k, None)
        env["RAGD_DATA_DIR"] = self.data_dir
        env["RAGD_LISTEN"] = f"127.0.0.1:{self.port}"
        return env

    def spawn(self):
        """Starts the process without waiting for readiness."""
        if self.running():
            raise ServerError("server already running")
        self.port = free_port()
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== e2e harness: start #{self.starts} on port {self.port} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen([self.bin, "serve", *self.args], env=self.env(),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=self.root, preexec_fn=self.preexec)

    def start(self, timeout=READY_TIMEOUT_S):
        """Starts the server and waits for /health/ready == 200. Retries on another port when
        the chosen one was taken in the meantime. Returns self."""
        for _ in range(3):
            self.spawn()
            try:
                self.wait_ready(timeout)
                return self
            except ServerError:
                tail = self.log_tail(2000).lower()
                if self.proc.poll() is not None and "in use" in tail:
                    continue
                raise
        raise ServerError("could not bind a free port three times\n" + self.log_tail())

    def restart(self, timeout=READY_TIMEOUT_S):
        """Starts a new process on the same data dir (the previous one must have exited)."""
        return self.start(timeout)

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.returncodes.append(rc)
                raise ServerError(f"ragd exited with status {rc} before it was ready\n"
                                  f"--- server log ---\n{self.log_tail()}")
            try:
                r = request(self.port, "GET", "/health/ready", timeout=2.0)
                last = r
                if r.status == 200:
                    return
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.05)
        self.kill()
        raise ServerError(f"ragd was not ready within {timeout} s (last: {last!r})\n"
                          f"--- server log ---\n{self.log_tail()}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT_S):
        """Waits for the process to exit; kills it and raises when it does not in time."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise ServerError(f"ragd did not exit within {timeout} s\n"
                              f"--- server log ---\n{self.log_tail()}")
        self.returncodes.append(rc)
        return rc

    def stop(self, expect=0, timeout=STOP_TIMEOUT_S):
        """SIGTERM, wait, and check the exit status (expect=None skips the check)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if expect is not None and rc != expect:
            raise ServerError(f"ragd exited with status {rc} after SIGTERM, expected {expect}\n"
                              f"--- server log ---\n{self.log_tail()}")
        return rc

    def kill(self):
        """SIGKILL (kill -9) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        """Kills a still-running process and removes the temp dirs (unless RAGD_E2E_KEEP)."""
        self.kill()
        if self in _live_servers:
            _live_servers.remove(self)
        if keep_temp():
            print(f"[e2e] kept {self.root} (log: {self.log_path})", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- logs ---------------------------------------------------------------------------------
    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_text(self, since=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, limit=LOG_TAIL_BYTES, since=0):
        text = self.log_text(since)
        if len(text) > limit:
            text = "…" + text[-limit:]
        return text

    # -- HTTP convenience ---------------------------------------------------------------------
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, path, **kw):
        return request(self.port, method, path, **kw)

    def raw(self, data, **kw):
        return raw_request(self.port, data, **kw)


@atexit.register
def _kill_leftovers():
    for s in list(_live_servers):
        try:
            s.cleanup()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def run_cli(args, env=None, timeout=60.0, cwd=None):
    """Runs `RAGD_BIN args...` with a clean environment; returns CompletedProcess (text).
    A command that outlives `timeout` is killed and reported as returncode None with a note
    on stderr, so that the test fails on it instead of erroring out."""
    try:
        return subprocess.run([ragd_bin(), *args], env=base_env(env), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or tempfile.gettempdir())
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return subprocess.CompletedProcess(e.cmd, None, out,
                                           err + f"\n[e2e] killed after {timeout} s")


# --------------------------------------------------------------------------------------------
# unittest base class

class E2ETestCase(unittest.TestCase):
    """Base class: `server_env` (class attribute) configures the class-wide server started in
    setUpClass when `class_server` is True; `self.new_server()` starts one for a single test.
    Every server is cleaned up (process killed, temp dirs removed) even on failure, and a
    failing test prints the log written by each of its servers while it ran."""

    class_server = True
    server_env = {}
    server = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.class_server:
            srv = Server(env=cls.server_env, name=cls.__name__)
            cls.addClassCleanup(srv.cleanup)
            srv.start()
            cls.server = srv

    def setUp(self):
        super().setUp()
        self._watched = []
        if self.server is not None:
            self._watch(self.server)

    @classmethod
    def class_call(cls, method, path, payload=None, status=200, **kw):
        """For setUpClass: a JSON request on the class server that must answer `status`;
        any failure raises with the server log attached (setUpClass has no tearDown)."""
        if payload is not None:
            kw["json_body"] = payload
        try:
            r = cls.server.request(method, path, **kw)
        except (OSError, http.client.HTTPException) as e:
            raise ServerError(f"{method} {path} in setUpClass: {e!r}\n"
                              f"--- server log ---\n{cls.server.log_tail()}") from e
        if r.status != status or not r.is_json():
            raise ServerError(f"{method} {path} in setUpClass: want {status}, got {r!r}\n"
                              f"--- server log ---\n{cls.server.log_tail()}")
        return r.body

    def _watch(self, srv):
        self._watched.append((srv, srv.log_size()))

    def new_server(self, env=None, start=True, args=None):
        """A server owned by this test (cleaned up when the test ends)."""
        srv = Server(env=env, args=args, name=self._testMethodName)
        self.addCleanup(srv.cleanup)
        self._watch(srv)
        if start:
            srv.start()
        return srv

    def start_fake_ollama(self, **options):
        """A fake Ollama on free loopback ports (API and admin), stopped when the test ends.
        options go to fake_ollama.FakeOllama (e.g. parallel=8)."""
        fake = fake_ollama.FakeOllama(port=0, admin_port=0, **options).start()
        self.addCleanup(fake.stop)
        return fake

    def _test_failed(self):
        """Whether this test (or one of its subtests) has failed so far. Reads the result
        object: during tearDown unittest's own success flag is reset."""
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return True  # cannot tell: better to show the log
        for test, _ in list(result.failures) + list(result.errors):
            if test is self or getattr(test, "test_case", None) is self:
                return True
        return False

    def tearDown(self):
        if self._test_failed() or os.environ.get("RAGD_E2E_VERBOSE"):
            for srv, mark in self._watched:
                print(f"\n--- ragd log of {self.id()} ({srv.log_path}) ---\n"
                      f"{srv.log_tail(since=mark)}\n--- end of log ---", file=sys.stderr)
        super().tearDown()

    # -- assertions ---------------------------------------------------------------------------
    def call(self, method, path, payload=None, status=200, srv=None, **kw):
        """A JSON request that must answer `status` with a JSON body; returns the body."""
        srv = srv or self.server
        if payload is not None:
            kw["json_body"] = payload
        r = srv.request(method, path, **kw)
        self.assertEqual(r.status, status, f"{method} {path}: {r!r}")
        self.assertTrue(r.is_json(), f"{method} {path}: expected a JSON body, got {r!r}")
        return r.body

    def assertEnvelope(self, r, status, code, msg=""):
        """r is an error response in the contract's envelope with this status and code."""
        where = f"{msg} {r!r}"
        self.assertEqual(r.status, status, where)
        self.assertEqual(r.content_type(), "application/json", where)
        self.assertIsNone(r.json_error, where)
        body = r.body
        self.assertIsInstance(body, dict, where)
        err = body.get("error")
        self.assertIsInstance(err, dict, where)
        self.assertEqual(err.get("code"), code, where)
        message = err.get("message")
        self.assertIsInstance(message, str, where)
        self.assertTrue(message.strip(), f"empty error.message: {where}")
        rid = r.header("X-Request-ID")
        self.assertTrue(rid, f"no X-Request-ID header: {where}")
        self.assertEqual(err.get("request_id"), rid, where)
        self.assertEqual(body.get("detail"), message, where)
        return err
