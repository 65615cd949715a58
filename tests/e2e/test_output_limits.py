"""Bytes queued for clients are bounded (docs/api.md "Limits"): a reply that would take the
bytes queued for all clients over RAGD_MAX_OUTPUT_BYTES is refused with 503 `overloaded`
before it is queued, and a client that takes a waiting reply slower than RAGD_MIN_SEND_RATE
(measured once bytes have waited RAGD_IDLE_TIMEOUT_S) is closed. Sizes kept small by env."""
import socket
import struct
import time

import harness

TEXT = "Tidal pools hold anemones, crabs and small fish between the tides. " * 5000  # ~340 KB


class OutputBudgetTest(harness.E2ETestCase):
    server_env = {"RAGD_EMBEDDER": "builtin", "RAGD_MAX_OUTPUT_BYTES": "65536"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.class_call("POST", "/api/ingest", {"db": "big", "documents": [
            {"id": "big", "text": TEXT}, {"id": "small", "text": "a short note about crabs"}]})

    def test_reply_over_the_budget_is_refused_with_503(self):
        r = self.server.request("GET", "/api/dbs/big/documents/big")
        self.assertEnvelope(r, 503, "overloaded")
        self.assertIn("RAGD_MAX_OUTPUT_BYTES", r.body["error"]["message"])
        self.assertEqual(r.headers.get("Retry-After"), "1")

    def test_reply_within_the_budget_is_served(self):
        r = self.server.request("GET", "/api/dbs/big/documents/small")
        self.assertEqual(r.status, 200, r)


class SendRateTest(harness.E2ETestCase):
    """The document listing (~6 MB, streamed in pages) is larger than what the kernel buffers
    for a socket (up to 4 MB), so the rest waits in ragd's memory until the client is closed (by
    the rate check, or the write timeout when the socket stays full). The close is a reset, so
    the client sees it at once and the kernel drops its copy."""
    server_env = {"RAGD_EMBEDDER": "builtin", "RAGD_IDLE_TIMEOUT_S": "1", "RAGD_MIN_SEND_RATE": "16384"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for b in range(12):
            docs = [{"id": f"d{b}_{i}", "text": f"note {i} about crabs", "metadata": {"note": "m" * 50000}}
                    for i in range(10)]
            cls.class_call("POST", "/api/ingest", {"db": "big", "documents": docs})

    def test_client_reading_a_trickle_is_closed(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.settimeout(5.0)
        s.connect(("127.0.0.1", self.server.port))
        s.sendall(b"GET /api/dbs/big/documents?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        got, closed = 0, False
        try:
            for _ in range(60):  # 64 bytes every 0.5 s: ~128 B/s, far below 16 KiB/s
                time.sleep(0.5)
                try:
                    d = s.recv(64)
                except ConnectionResetError:
                    closed = True
                    break
                if not d:
                    closed = True
                    break
                got += len(d)
        finally:
            s.close()
        self.assertTrue(closed, f"a client taking ~128 B/s was still served after {got} bytes")

    def test_client_that_leaves_mid_reply_is_499(self):
        """A client that closes before its reply is out is logged and counted as 499 (client
        closed request), not as a server status."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.settimeout(5.0)
        s.connect(("127.0.0.1", self.server.port))
        s.sendall(b"GET /api/dbs/big/documents?limit=1000 HTTP/1.1\r\nHost: x\r\nX-Request-ID: leaver-1\r\n\r\n")
        s.recv(64)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a reset, the reply still being written
        for _ in range(50):  # the server notices on its next write
            if "id=leaver-1" in self.server.log_text():
                break
            time.sleep(0.1)
        line = [ln for ln in self.server.log_text().splitlines() if "id=leaver-1" in ln]
        self.assertTrue(line, "no access line")
        self.assertIn("GET /api/dbs/{name}/documents 499 ", line[-1])
        metrics = self.server.request("GET", "/metrics").raw.decode()
        self.assertRegex(metrics, r'ragd_http_requests_total\{route="/api/dbs/\{name\}/documents",method="GET",'
                                  r'code="499"\} [1-9]')
