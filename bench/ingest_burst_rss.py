"""ingest_burst_rss.py BIN PORT: 8 concurrent raw text/plain uploads of 8 MiB each into a
fresh server on the defaults; prints the idle server's VmRSS 1 s after the last answer and,
with GDB_TRIM=1, again after gdb makes it call malloc_trim(0) (what glibc still held).
Made for BENCHMARKS.md "Ingest throughput (issue 11)", Memory."""
import http.client, os, random, subprocess, sys, tempfile, threading, time
BIN, PORT = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
env = dict(os.environ, RAGD_DATA_DIR=d, RAGD_LISTEN=f"127.0.0.1:{PORT}")
p = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=open(d + ".log", "w"))
for _ in range(100):
    try:
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5); c.request("GET", "/health/ready")
        if c.getresponse().status == 200: break
    except OSError: pass
    time.sleep(0.1)
W = "basalt caldera magma tephra pumice lahar fumarole vent crater ash plume dome rift summit lava".split()
def body(seed):
    r = random.Random(seed); out = []; n = 0
    while n < 8 << 20:
        s = " ".join(r.choice(W) for _ in range(14)) + ".\n"; out.append(s); n += len(s)
    return "".join(out).encode()
bodies = [body(i) for i in range(8)]
def rss():
    return [l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]
def up(i):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=600)
    c.request("POST", f"/api/ingest?db=b{i}&id=d{i}", body=bodies[i], headers={"Content-Type": "text/plain"})
    assert c.getresponse().status == 200
t0 = time.monotonic()
ts = [threading.Thread(target=up, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
wall = time.monotonic() - t0
time.sleep(1)
after = int(rss())/1024
trimmed = ""
if os.environ.get("GDB_TRIM"):
    subprocess.run(["gdb", "-p", str(p.pid), "-batch", "-ex", "call (int)malloc_trim(0)"], capture_output=True)
    trimmed = f" rss_after_manual_trim_mib={int(rss())/1024:.1f}"
print(f"uploads=8x8MiB wall_s={wall:.2f} rss_after_mib={after:.1f}{trimmed}")
p.terminate()
p.wait()
subprocess.run(["rm", "-rf", d, d + ".log"])
