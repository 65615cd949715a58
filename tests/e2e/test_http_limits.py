"""Connection-level limits of ragd's own HTTP/1.1 layer (docs/api.md "Limits"): deadlines for
the head (RAGD_HEADER_TIMEOUT_S) and the body (RAGD_BODY_TIMEOUT_S), half-closed clients, the
header block cap (431), the URI cap (414), strict framing (400/501/505), HTTP/1.0, pipelining,
the connection caps (total, per address, a reserve for /health*), and X-Forwarded-For from
trusted proxies only (docs/api.md "Rate limits"). Raw sockets throughout; every deadline is
set short through the environment so that each test takes a few seconds at most."""
import http.client
import json
import re
import socket
import threading
import time

import harness


def connect(port, timeout=5.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_response(sock, method="GET"):
    """One response from sock, or None when the server closed (or reset) without one."""
    resp = http.client.HTTPResponse(sock, method=method)
    try:
        resp.begin()
        raw = resp.read()
    except (http.client.RemoteDisconnected, http.client.BadStatusLine, http.client.IncompleteRead,
            ConnectionResetError):
        return None
    return harness.Response(resp.status, resp.headers, raw)


def read_to_end(sock):
    """Every byte until the server closes; b"" when it closed (or reset) without any."""
    out = b""
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return out
            out += b
    except ConnectionResetError:
        return out


GET_LIVE = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class DeadlineTest(harness.E2ETestCase):
    """The head must be complete within RAGD_HEADER_TIMEOUT_S of its first byte whatever the
    byte rate (libmicrohttpd reset its idle timer on every byte: one byte a second held a slot
    for ever); the body within RAGD_BODY_TIMEOUT_S."""

    server_env = {"RAGD_HEADER_TIMEOUT_S": "1", "RAGD_BODY_TIMEOUT_S": "1", "RAGD_IDLE_TIMEOUT_S": "30"}

    def test_slow_head_gets_408(self):
        s = connect(self.server.port)
        try:
            s.sendall(b"GET /health/live HTTP/1.1\r\n")
            got = b""
            s.settimeout(0.25)
            for i in range(16):  # one byte every 0.25 s: 4 s, past the 1 s deadline
                try:
                    s.sendall(b"X-Slow-%d: a\r\n" % i)
                except OSError:
                    break
                try:
                    got = s.recv(65536)
                    break
                except socket.timeout:
                    continue
            self.assertTrue(got, "no answer while the head dragged on")
            s.settimeout(5)
            got += read_to_end(s)
        finally:
            s.close()
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 408 "), got[:200])
        self.assertIn(b"connection: close", head.lower())
        self.assertEqual(json.loads(body)["error"]["code"], "request_timeout")

    def test_nothing_sent_is_closed_without_reply(self):
        s = connect(self.server.port)
        try:
            self.assertEqual(read_to_end(s), b"")  # closed after the 1 s deadline, no bytes
        finally:
            s.close()

    def test_slow_body_gets_408(self):
        s = connect(self.server.port)
        try:
            s.sendall(b"POST /api/retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"query\":")
            r = read_response(s, "POST")
        finally:
            s.close()
        self.assertIsNotNone(r, "closed without a reply")
        self.assertEnvelope(r, 408, "request_timeout")
        self.assertEqual(r.header("Connection", "").lower(), "close")
        self.assertIn("RAGD_BODY_TIMEOUT_S", r.body["error"]["message"])


class HalfCloseTest(harness.E2ETestCase):
    """A client that half-closes before its request is complete is closed at once (such a
    connection lingered for the whole idle timeout); after a complete request it still gets
    its reply."""

    server_env = {"RAGD_HEADER_TIMEOUT_S": "30", "RAGD_IDLE_TIMEOUT_S": "30"}

    def test_partial_request_then_fin_closed_at_once(self):
        for partial in (b"GET /health/live HTTP/1.1\r\nHost: x\r\n",
                        b"POST /api/retrieve HTTP/1.1\r\nContent-Length: 50\r\n\r\n{"):
            with self.subTest(partial=partial):
                s = connect(self.server.port, timeout=3.0)  # far below the 30 s timeouts
                try:
                    s.sendall(partial)
                    s.shutdown(socket.SHUT_WR)
                    try:
                        self.assertEqual(read_to_end(s), b"")
                    except socket.timeout:
                        self.fail("the half-closed connection was kept open")
                finally:
                    s.close()

    def test_complete_request_then_fin_is_answered(self):
        r = harness.raw_request(self.server.port, GET_LIVE, half_close=True, method="GET", timeout=3.0)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, {"status": "alive"})


class StrictParsingTest(harness.E2ETestCase):
    """What the parser refuses, each in the envelope and with the connection closed."""

    def send(self, data):
        s = connect(self.server.port)
        try:
            try:
                s.sendall(data)
            except OSError:
                pass
            return read_to_end(s)
        finally:
            s.close()

    def assertRefusedRaw(self, data, status, code):
        got = self.send(data)
        self.assertEqual(len(re.findall(rb"(?:^|\r\n)HTTP/1\.1 \d{3} ", got)), 1, got[:400])  # one status line, not two
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 %d " % status), got[:300])
        self.assertIn(b"connection: close", head.lower())
        self.assertIn(b"x-request-id: ", head.lower())
        self.assertEqual(json.loads(body)["error"]["code"], code, body)

    def test_framing_refused(self):
        base = b"POST /api/retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        body = b'{"query":"q"}'
        cases = [
            (base + b"Content-Length: 13\r\nContent-Length: 14\r\n\r\n" + body, 400, "invalid_json"),
            (base + b"Content-Length: -1\r\n\r\n" + body, 400, "invalid_json"),
            (base + b"Content-Length: 1x\r\n\r\n" + body, 400, "invalid_json"),
            (base + b"Content-Length: 99999999999999999999999\r\n\r\n" + body, 400, "invalid_json"),
            (base + b"Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\nd\r\n" + body + b"\r\n0\r\n\r\n",
             400, "invalid_json"),
            (base + b"Transfer-Encoding: gzip, chunked\r\n\r\nd\r\n" + body + b"\r\n0\r\n\r\n",
             501, "not_implemented"),
            (base + b"Transfer-Encoding: identity\r\n\r\n", 501, "not_implemented"),
            (base + b"Content-Length : 13\r\n\r\n" + body, 400, "invalid_json"),
            (b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tfolded\r\n\r\n", 400, "invalid_json"),
            (b"GET /health/live HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n", 400, "invalid_json"),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "http_version_not_supported"),
            (b"GET /health/live HTTP/3.0\r\n\r\n", 505, "http_version_not_supported"),
            (b"GET /health/live HTTX/1.1\r\n\r\n", 400, "invalid_json"),
            (base + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body + b"\r\n0\r\n\r\n", 400, "invalid_json"),
            (base + b"Transfer-Encoding: chunked\r\n\r\n3\r\n" + body + b"\r\n0\r\n\r\n", 400, "invalid_json"),
        ]
        for data, status, code in cases:
            with self.subTest(data=data[:120]):
                self.assertRefusedRaw(data, status, code)

    def test_header_block_over_the_cap_gets_431(self):
        data = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (65 * 1024) + b"\r\n\r\n"
        self.assertRefusedRaw(data, 431, "header_too_large")

    def test_more_than_100_headers_gets_431(self):
        data = b"GET /health/live HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"\r\n"
        self.assertRefusedRaw(data, 431, "header_too_large")
        ok = b"GET /health/live HTTP/1.1\r\nConnection: close\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(98)) + b"\r\n"
        self.assertTrue(self.send(ok).startswith(b"HTTP/1.1 200 "))

    def test_uri_over_8k_gets_414(self):
        self.assertRefusedRaw(b"GET /health/live?x=" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long")

    def test_chunk_extensions_and_trailers_accepted(self):
        body = b'{"query":"anything","k":1}'
        data = (b"POST /api/retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                b"%x;name=value\r\n" % 5 + body[:5] + b"\r\n" + b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n"
                b"0\r\nX-Trailer: dropped\r\n\r\n")
        got = self.send(data)
        # the default collection does not exist here: the body was read and parsed
        self.assertIn(b"db_not_found", got, got[:300])


class SlowReaderTest(harness.E2ETestCase):
    """A client that pipelines requests and reads none of the replies: the server writes with
    backpressure (one request at a time, nothing read while a reply waits) and closes the
    connection once the client has taken no byte for RAGD_IDLE_TIMEOUT_S. (libmicrohttpd's
    idle timeout did that too: this one guards the behaviour, it does not fail on the old
    build.)"""

    server_env = {"RAGD_IDLE_TIMEOUT_S": "1"}
    N = 5000

    def test_client_that_reads_nothing_is_closed(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", self.server.port))

        def feed():
            try:
                s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n" * self.N)
            except OSError:
                pass  # closed by the server: what we want

        t = threading.Thread(target=feed, daemon=True)
        t.start()
        try:
            time.sleep(4)  # the server stalls on the full socket, then closes after 1 s
            got = read_to_end(s)
        finally:
            s.close()
            t.join(10)
        answered = got.count(b"HTTP/1.1 200 ")
        self.assertLess(answered, self.N, "every reply was written: the server waited for the reader")
        self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})


class ProtocolTest(harness.E2ETestCase):
    def test_http10_closes_unless_keep_alive_asked(self):
        s = connect(self.server.port)
        try:
            s.sendall(b"GET /health/live HTTP/1.0\r\n\r\n")
            got = read_to_end(s)
        finally:
            s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 200 "), got[:200])
        s = connect(self.server.port)
        try:
            for _ in range(2):
                s.sendall(b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                r = read_response(s)
                self.assertIsNotNone(r)
                self.assertEqual(r.status, 200)
        finally:
            s.close()

    def test_absolute_form_target_is_served_by_its_path(self):
        """RFC 9112 3.2.2: a server must accept the absolute form; its path (and query) route."""
        for target in (b"http://127.0.0.1/health/live", b"HTTP://example.org:8080/health/live",
                       b"http://x/api/dbs?limit=5"):
            with self.subTest(target=target):
                r = harness.raw_request(self.server.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n", method="GET")
                self.assertIsNotNone(r)
                self.assertEqual(r.status, 200, r)

    def test_pipelined_requests_in_order(self):
        s = connect(self.server.port)
        try:
            s.sendall(b"GET /health/live HTTP/1.1\r\nX-Request-ID: first\r\n\r\n"
                      b"GET /api/dbs HTTP/1.1\r\nX-Request-ID: second\r\n\r\n"
                      b"GET /health/live HTTP/1.1\r\nX-Request-ID: third\r\nConnection: close\r\n\r\n")
            got = read_to_end(s)
        finally:
            s.close()
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", got)
        ids = re.findall(rb"X-Request-ID: (\w+)\r\n", got)
        self.assertEqual(statuses, [b"200", b"200", b"200"], got)
        self.assertEqual(ids, [b"first", b"second", b"third"])


class SlotsTest(harness.E2ETestCase):
    """64 slots, the last 4 kept for /health*: slow clients that hold the other 60 do not keep
    a supervisor from /health/live; with every slot taken, a new connection is closed at once."""

    server_env = {"RAGD_MAX_CONNECTIONS": "64", "RAGD_MAX_CONNECTIONS_PER_IP": "63",
                  "RAGD_HEADER_TIMEOUT_S": "30", "RAGD_IDLE_TIMEOUT_S": "30"}

    def hold(self, n, source="127.0.0.1", settle=0.5):
        socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5.0)
            s.bind((source, 0))
            s.connect(("127.0.0.1", self.server.port))
            s.sendall(b"GET /health/live HTTP/1.1\r\n")  # a head that never ends
            socks.append(s)
        time.sleep(settle)  # let the server accept them all (no assertion on time)
        return socks

    def test_reserve_for_health_then_full(self):
        held = self.hold(60)
        try:
            r = harness.raw_request(self.server.port, GET_LIVE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
                                    method="GET", timeout=5.0)
            self.assertIsNotNone(r, "/health/live not answered while slow clients hold the slots")
            self.assertEqual(r.status, 200)
            # from another address: one reserve slot per address, and the probe's may not be free yet
            r = harness.raw_request(self.server.port, b"GET /api/dbs HTTP/1.1\r\nConnection: close\r\n\r\n",
                                    method="GET", timeout=5.0, source="127.0.0.9")
            self.assertIsNotNone(r)
            self.assertEnvelope(r, 503, "overloaded")
            # every slot taken, from other addresses (one reserve slot per address); their heads
            # never end, so each is closed after 1 s: the check below runs before that
            for a in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
                held += self.hold(1, a, settle=0)
            # A slot may still be free (a connection answered above not yet gone when the four
            # were accepted, on a slow build): a connection that gets an answer keeps its slot
            # (keep-alive) and the next one tries; once every slot is taken, one is closed at once.
            for _ in range(4):
                s = connect(self.server.port)
                try:
                    s.sendall(GET_LIVE)
                except OSError:
                    pass
                try:
                    first = s.recv(65536)
                except ConnectionResetError:
                    first = b""
                if first == b"":
                    s.close()
                    break  # closed at once, not left in the backlog
                self.assertTrue(first.startswith(b"HTTP/1.1 200"), first)
                held.append(s)
            else:
                self.fail("with every slot taken, new connections were still served")
        finally:
            for s in held:
                s.close()
        time.sleep(0.3)
        self.assertEqual(self.call("GET", "/health/live"), {"status": "alive"})

    def test_per_address_cap(self):
        srv = self.new_server(env={"RAGD_MAX_CONNECTIONS": "64", "RAGD_MAX_CONNECTIONS_PER_IP": "4",
                                   "RAGD_HEADER_TIMEOUT_S": "30"})
        held = []
        time.sleep(0.3)  # the start-up check's connection is gone (it would count as one)
        try:
            for _ in range(4):
                s = connect(srv.port)
                s.sendall(b"GET /health/live HTTP/1.1\r\n")
                held.append(s)
            time.sleep(0.3)
            r = harness.raw_request(srv.port, GET_LIVE, method="GET", timeout=5.0)
            if r is not None:  # a 503, or closed without a reply
                self.assertEnvelope(r, 503, "overloaded")
        finally:
            for s in held:
                s.close()
        time.sleep(0.3)
        self.assertEqual(srv.request("GET", "/health/live").status, 200)


class ForwardedForTest(harness.E2ETestCase):
    """X-Forwarded-For names the client for the rate limits only when the peer is a trusted
    proxy (RAGD_TRUSTED_PROXIES); by default it is ignored, so it cannot dodge a limit."""

    ENV = {"RATE_LIMIT_QUERY": "5/minute", "RAGD_EMBEDDER": "builtin", "RAGD_GENERATOR": "extractive"}
    class_server = False

    def remaining(self, srv, xff):
        r = srv.request("POST", "/api/retrieve", json_body={"query": "q"}, headers={"X-Forwarded-For": xff})
        return r.header("X-RateLimit-Remaining")

    def test_ignored_by_default(self):
        srv = self.new_server(env=self.ENV)
        self.assertEqual([self.remaining(srv, "203.0.113.1"), self.remaining(srv, "203.0.113.2")], ["4", "3"])

    def test_honoured_from_a_trusted_proxy(self):
        srv = self.new_server(env={**self.ENV, "RAGD_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
        self.assertEqual([self.remaining(srv, "203.0.113.1"), self.remaining(srv, "203.0.113.2"),
                          self.remaining(srv, "203.0.113.1, 10.1.2.3")], ["4", "4", "3"])

    def test_bad_list_stops_start_up(self):
        p = harness.run_cli(["serve"], env={"RAGD_TRUSTED_PROXIES": "10.0.0.0/33", "RAGD_LISTEN": "127.0.0.1:0"},
                            timeout=15)
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("RAGD_TRUSTED_PROXIES", p.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()


def probe_live(port, tries=40):
    """GET /health/live from 127.0.0.1 on a fresh connection, retried (a refused probe is
    closed at once) until answered; the response, or None."""
    for _ in range(tries):
        r = harness.raw_request(port, GET_LIVE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
                                method="GET", timeout=3.0)
        if r is not None:
            return r
        time.sleep(0.25)
    return None


def open_idle(port, addresses, per_address):
    """Connections that send nothing, from each source address; those the server keeps."""
    socks = []
    for a in addresses:
        for _ in range(per_address):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5.0)
            s.bind((a, 0))
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
    time.sleep(0.5)  # let the server take them all before the probe (no assertion on time)
    return socks


class ReserveTest(harness.E2ETestCase):
    """The reserve holds against many addresses that fill every slot with connections that
    never send a request: one reserve slot per address, and a 1 s head deadline there."""

    class_server = False

    def test_idle_connections_from_many_addresses_leave_health_answered(self):
        srv = self.new_server(env={"RAGD_MAX_CONNECTIONS": "64", "RAGD_MAX_CONNECTIONS_PER_IP": "8",
                                   "RAGD_HEADER_TIMEOUT_S": "60", "RAGD_IDLE_TIMEOUT_S": "60"})
        held = open_idle(srv.port, [f"127.0.0.{i}" for i in range(2, 18)], 8)
        try:
            r = probe_live(srv.port)
            self.assertIsNotNone(r, "/health/live not answered while idle connections fill every slot")
            self.assertEqual(r.status, 200)
        finally:
            for s in held:
                s.close()


class DescriptorLimitTest(harness.E2ETestCase):
    """With a low descriptor limit (hard 256) the connection cap is lowered to fit at start
    (one warning naming the numbers), so the reserve is reached before accept() fails."""

    class_server = False

    def test_cap_lowered_to_the_descriptor_limit(self):
        import os
        import stat
        import sys
        import tempfile
        wrapper = os.path.join(tempfile.mkdtemp(prefix="ragd-nofile-"), "ragd-256")
        with open(wrapper, "w") as f:
            f.write(f"#!{sys.executable}\nimport os, resource, sys\n"
                    "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
                    f"os.execv({harness.ragd_bin()!r}, [{harness.ragd_bin()!r}] + sys.argv[1:])\n")
        os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR)
        srv = self.new_server(env={"RAGD_HEADER_TIMEOUT_S": "60", "RAGD_IDLE_TIMEOUT_S": "60"}, start=False)
        srv.bin = wrapper
        srv.start()
        log = srv.log_text()
        self.assertIn("does not fit the descriptor limit (RLIMIT_NOFILE 256", log)
        m = re.search(r"at most (\d+) connections", log)
        self.assertIsNotNone(m, log)
        cap = int(m.group(1))
        self.assertLess(cap, 256)
        held = open_idle(srv.port, [f"127.0.0.{i}" for i in range(2, 8)], 60)  # 360 > 256
        try:
            r = probe_live(srv.port)
            self.assertIsNotNone(r, "/health/live not answered with every descriptor in use")
            self.assertEqual(r.status, 200)
        finally:
            for s in held:
                s.close()


def vm_size_kib(pid):
    """The process's virtual size (VmSize in /proc/PID/status), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])
    raise AssertionError("no VmSize")


class ClaimedBodyTest(harness.E2ETestCase):
    """A client that claims a large Content-Length and sends nothing holds at most
    CONN_BODY_RESERVE_MAX (1 MiB) of reserved room per connection (docs/internals/http.md),
    not RAGD_MAX_BODY_BYTES: reserving the whole claimed length made 16 such connections
    cost 16 GiB of address space (commit charge under strict overcommit or RLIMIT_AS)."""

    CLAIMERS = 16
    server_env = {"RAGD_MAX_BODY_BYTES": str(1 << 30), "RAGD_BODY_TIMEOUT_S": "30"}

    def test_claimed_body_reserves_bounded_memory(self):
        pid = self.server.proc.pid
        before = vm_size_kib(pid)
        socks = []
        try:
            for _ in range(self.CLAIMERS):
                s = connect(self.server.port)
                socks.append(s)
                s.sendall(b"POST /api/ingest HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                          b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (1 << 30))
                # "100 Continue" is sent after the body's room was reserved (conn_begin)
                got = b""
                while b"\r\n\r\n" not in got:
                    b = s.recv(4096)
                    self.assertTrue(b, "closed before 100 Continue")
                    got += b
                self.assertTrue(got.startswith(b"HTTP/1.1 100"), got)
            grown_mib = (vm_size_kib(pid) - before) / 1024
            self.assertLess(grown_mib, 256, f"{self.CLAIMERS} claimers grew the address space {grown_mib:.0f} MiB")
            # each holds exactly 1 MiB of buffer (its room: 1 MiB less the NUL's byte), not the
            # 2 MiB a reservation of a full 1 MiB of room rounds up to
            text = self.server.request("GET", "/metrics").raw.decode()
            held = int(re.search(r"^ragd_request_body_bytes (\d+)$", text, re.M).group(1))
            self.assertEqual(held, self.CLAIMERS * ((1 << 20) - 1))
            # the server still answers
            self.assertEqual(self.server.request("GET", "/health/live").status, 200)
        finally:
            for s in socks:
                s.close()


MIB = 1 << 20


def ingest_body(doc_id, size):
    """A valid /api/ingest JSON body of exactly `size` bytes (trailing whitespace pads it)."""
    body = json.dumps({"db": "budget", "documents": [
        {"id": doc_id, "text": f"A held body, {doc_id}: the lamplighter Oswin trims the wick."}]}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def post_head(length=None, chunked=False):
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % length
    return (b"POST /api/ingest HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n" + framing + b"\r\n")


class BodyBudgetTest(harness.E2ETestCase):
    """RAGD_MAX_BODY_BYTES_TOTAL: the request-body bytes held in memory by all connections
    together. A Content-Length over what is left is answered 503 `overloaded` with Retry-After
    at once (its body unread) and the connection closed; a chunked body that grows past it, the
    same when it crosses. Bytes come back when a body is freed: completed, refused, or its
    client gone mid-body (ragd_request_body_bytes in /metrics shows them)."""

    server_env = {"RAGD_MAX_BODY_BYTES": str(MIB), "RAGD_MAX_BODY_BYTES_TOTAL": str(2 * MIB),
                  "RAGD_BODY_TIMEOUT_S": "30"}

    def body_bytes(self):
        text = self.server.request("GET", "/metrics").raw.decode()
        m = re.search(r"^ragd_request_body_bytes (\d+)$", text, re.M)
        self.assertIsNotNone(m, "no ragd_request_body_bytes gauge")
        return int(m.group(1))

    def wait_body_bytes(self, want, timeout=5.0):
        deadline = time.monotonic() + timeout
        got = self.body_bytes()
        while got != want and time.monotonic() < deadline:
            time.sleep(0.02)
            got = self.body_bytes()
        self.assertEqual(got, want, "request-body bytes held (ragd_request_body_bytes)")

    def hold(self, length, body, send):
        """A connection mid-body: the head of a `length`-byte body and its first `send` bytes."""
        s = connect(self.server.port)
        self.addCleanup(s.close)
        s.sendall(post_head(length) + body[:send])
        return s

    def assertShed(self, sock, what):
        r = read_response(sock, "POST")
        self.assertIsNotNone(r, f"{what}: closed without a reply")
        err = self.assertEnvelope(r, 503, "overloaded", what)
        self.assertIn("RAGD_MAX_BODY_BYTES_TOTAL", err["message"], what)
        self.assertEqual(r.header("Retry-After"), "1", what)
        self.assertEqual(read_to_end(sock), b"", f"{what}: the connection stays open after the 503")

    def test_declared_length_over_what_is_left_is_shed(self):
        self.wait_body_bytes(0)
        b1, b2 = ingest_body("held1", MIB), ingest_body("held2", MIB)
        h1 = self.hold(MIB, b1, 100 << 10)
        h2 = self.hold(MIB, b2, 100 << 10)
        self.wait_body_bytes(2 * MIB)  # each body's room is its length: the budget is used up

        # A new body, whatever its size: 503 at once, its body never read.
        s = connect(self.server.port)
        s.sendall(post_head(512 << 10))
        self.assertShed(s, "a 512 KiB body with the budget used up")
        s.close()
        # Requests without a body still go through.
        self.assertEqual(self.server.request("GET", "/health/live").status, 200)

        # The first client hangs up mid-body: its megabyte comes back.
        h1.close()
        self.wait_body_bytes(MIB)
        small = ingest_body("after_hangup", 300 << 10)
        self.call("POST", "/api/ingest", headers={"Content-Type": "application/json"}, body=small)
        self.wait_body_bytes(MIB)

        # The second finishes its body: answered, and its megabyte comes back.
        h2.sendall(b2[100 << 10:])
        r = read_response(h2, "POST")
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, r)
        self.wait_body_bytes(0)
        # and a body as large as the cap passes again
        self.call("POST", "/api/ingest", headers={"Content-Type": "application/json"},
                  body=ingest_body("full_size", MIB))
        self.wait_body_bytes(0)
        for doc_id in ("after_hangup", "held2", "full_size"):
            self.call("GET", f"/api/dbs/budget/documents/{doc_id}")
        self.assertEnvelope(self.server.request("GET", "/api/dbs/budget/documents/held1"), 404,
                            "document_not_found")

    def test_chunked_body_crossing_what_is_left_is_shed(self):
        self.wait_body_bytes(0)
        h1 = self.hold(MIB, ingest_body("held1", MIB), 1000)
        h2 = self.hold(512 << 10, ingest_body("held2", 512 << 10), 1000)
        self.wait_body_bytes(MIB + (512 << 10))  # 512 KiB left

        s = connect(self.server.port)
        s.sendall(post_head(chunked=True))
        sent = 0
        piece = b" " * (32 << 10)
        try:
            while sent < 900 << 10:  # under the 1 MiB cap, over the 512 KiB left
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed while we were still sending
        self.assertShed(s, f"a chunked body past the budget ({sent} bytes sent)")
        s.close()
        self.wait_body_bytes(MIB + (512 << 10))  # the refused body's bytes came back

        h1.close()
        h2.close()
        self.wait_body_bytes(0)
        # a chunked body of the same size passes now
        body = ingest_body("chunked", 900 << 10)
        s = connect(self.server.port)
        s.sendall(post_head(chunked=True) + b"".join(
            b"%x\r\n" % len(body[i:i + (64 << 10)]) + body[i:i + (64 << 10)] + b"\r\n"
            for i in range(0, len(body), 64 << 10)) + b"0\r\n\r\n")
        r = read_response(s, "POST")
        s.close()
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, r)
        self.wait_body_bytes(0)
