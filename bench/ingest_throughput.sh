#!/bin/sh
# ingest_throughput.sh BIN PORT CORPUS [EXTRA_ENV...]: one `BIN ingest CORPUS` into a fresh
# server, and what it cost. Prints one line:
#   bytes=B wall_s=W MB_s=R server_cpu_s=S client_cpu_s=C rss_after_mib=M chunks=N
# MB/s is the corpus's file bytes (what the client reads, 10^6 bytes a MB) over the wall time
# of the `ragd ingest` command alone (server start and stop not counted). server_cpu_s is the
# server's user+system time from /proc at the end of the ingest; rss_after_mib its VmRSS
# then (freed ingest buffers retained by malloc show here), rss_restarted_mib a new
# server's on the same data once ready (the indexes alone). EXTRA_ENV (NAME=VALUE ...) are
# given to the server; INGEST_ARGS (e.g. "--jobs 1") are added to the `ragd ingest` command.
# Made for BENCHMARKS.md "Ingest throughput (issue 11)".
set -eu
BIN=$1; PORT=$2; CORPUS=$3; shift 3
D=$(mktemp -d ${BENCH_TMP:+-p $BENCH_TMP})
env RAGD_DATA_DIR="$D" RAGD_LISTEN=127.0.0.1:"$PORT" "$@" "$BIN" serve >"$D.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 0.1; done
BYTES=$(find -L "$CORPUS" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
TICK=$(getconf CLK_TCK)
T0=$(date +%s.%N)
/usr/bin/time -f '%U %S' -o "$D.time" "$BIN" ingest "$CORPUS" --db q ${INGEST_ARGS:-} --url "http://127.0.0.1:$PORT" >"$D.out" 2>&1 || {
    echo "ingest failed:"; tail -5 "$D.out"; }
T1=$(date +%s.%N)
SRV=$(awk -v t="$TICK" '{printf "%.2f", ($14 + $15) / t}' /proc/$PID/stat)
RSS=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$PID/status)
CHUNKS=$(curl -sf "http://127.0.0.1:$PORT/api/dbs" | grep -o '"chunks":[0-9]*' | head -1 | cut -d: -f2)
kill $PID; wait $PID 2>/dev/null || true
# The same data loaded by a fresh server: what the indexes need, without the ingest's garbage.
env RAGD_DATA_DIR="$D" RAGD_LISTEN=127.0.0.1:"$PORT" "$@" "$BIN" serve >"$D.log" 2>&1 &
PID=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.1; done
RSS2=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$PID/status)
kill $PID; wait $PID 2>/dev/null || true
awk -v b="$BYTES" -v t0="$T0" -v t1="$T1" -v s="$SRV" -v r="$RSS" -v r2="$RSS2" -v n="${CHUNKS:-?}" '
    NR == 1 {printf "bytes=%d wall_s=%.2f MB_s=%.2f server_cpu_s=%s client_cpu_s=%.2f rss_after_mib=%s rss_restarted_mib=%s chunks=%s\n",
             b, t1 - t0, b / 1e6 / (t1 - t0), s, $1 + $2, r, r2, n}' "$D.time"
rm -rf "$D" "$D.log" "$D.time" "$D.out"
