#!/bin/sh
# ingest_bench.sh BIN PORT [CORPUS]: one whole ingest, for paired timings with farm-bench
# (BENCHMARKS.md): a fresh data dir, `BIN serve &`, wait for /health/live,
# `BIN ingest CORPUS --db q`, stop. CORPUS (default /tmp/ragd-doc-corpus) is made on first
# use from this machine's documentation: up to 400 text files from /usr/share/doc
# (README*, *.txt, NEWS*, 2-200 KB) plus the repository's docs.
set -eu
BIN=$1; PORT=$2; CORPUS=${3:-/tmp/ragd-doc-corpus}
if [ ! -d "$CORPUS" ]; then
  mkdir -p "$CORPUS"; i=0
  for f in $(find /usr/share/doc -type f \( -name 'README*' -o -name '*.txt' -o -name 'NEWS*' \) \
             ! -name '*.gz' -size +2k -size -200k | sort | head -400); do
    if file -b "$f" | grep -q text; then i=$((i + 1)); cp "$f" "$CORPUS/$i.txt"; fi
  done
  cp "$(dirname "$0")"/../docs/*.md "$(dirname "$0")"/../docs/internals/*.md "$CORPUS/"
fi
D=$(mktemp -d)
RAGD_DATA_DIR=$D RAGD_LISTEN=127.0.0.1:$PORT "$BIN" serve >/dev/null 2>&1 &
PID=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 0.1; done
"$BIN" ingest "$CORPUS" --db q --url "http://127.0.0.1:$PORT" >/dev/null 2>&1
kill $PID; wait $PID 2>/dev/null || true
rm -rf "$D"
