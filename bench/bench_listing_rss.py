"""Peak resident memory of ragd while it answers one document listing of N documents, each
with ~64 KiB of metadata (RAGD_MAX_METADATA_BYTES' default), `limit` = N (BENCHMARKS.md).

    RAGD_BIN=build/ragd python3 bench/bench_listing_rss.py [N=1000]

The documents are ingested first; the server is then restarted on the same data dir, so
that the peak (VmHWM of /proc/<pid>/status) measured around the listing is not the
ingest's. Prints VmHWM before and after GET /api/dbs/{name}/documents?limit=N — repeated
from offset + the documents received while the server says "truncated" (a listing stops
at RAGD_MAX_RESPONSE_BYTES, 15 MiB at most) — the bytes received, the requests needed and
how long they took."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import harness  # noqa: E402


def vm_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    srv = harness.Server(env={"RAGD_EMBEDDER": "builtin", "RAGD_LOG_LEVEL": "warn"}, name="bench-listing")
    try:
        srv.start()
        note = "n" * 65000  # the stored metadata JSON stays just under 64 KiB
        for start in range(0, n, 50):
            docs = [{"id": f"doc{i:05d}", "text": f"Document number {i}.", "metadata": {"note": note}}
                    for i in range(start, min(n, start + 50))]
            r = srv.request("POST", "/api/ingest", json_body={"db": "list", "documents": docs}, timeout=120)
            if r.status != 200:
                raise SystemExit(f"ingest: {r!r}")
        srv.stop()
        srv.restart()
        pid = srv.pid()
        before = vm_kb(pid, "VmHWM")
        t0 = time.monotonic()
        got, size, requests = 0, 0, 0
        while got < n:
            r = srv.request("GET", f"/api/dbs/list/documents?limit={n - got}&offset={got}", timeout=300)
            if r.status != 200 or not r.is_json() or not r.body["documents"]:
                raise SystemExit(f"listing: {r!r}")
            got += len(r.body["documents"])
            size += len(r.raw)
            requests += 1
        took = time.monotonic() - t0
        after = vm_kb(pid, "VmHWM")
        print(f"{srv.bin}: {n} documents, {size / 1e6:.1f} MB in {requests} request(s), {took:.2f} s; "
              f"VmHWM {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after (+{(after - before) / 1024:.1f} MiB)")
    finally:
        srv.cleanup()


if __name__ == "__main__":
    main()
