#!/bin/sh
# promtool.sh — prints the path of a promtool binary, fetching it first when needed.
# promtool comes from Debian's `prometheus` package, downloaded with `apt-get download` and
# unpacked with `dpkg -x` under build/promtool/ (no service, nothing installed system-wide).
# Cached: a second run only prints the path. Used by tests/e2e/test_ops_metrics.py, which
# runs `promtool check metrics` on a real /metrics scrape. A promtool already on PATH wins.
# Exit 1 with a message when it cannot be had (the test then fails: no silent skip).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/build/promtool"
bin="$dir/usr/bin/promtool"
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$dir/deb"
cd "$dir/deb"
rm -f ./*.deb
if ! apt-get download prometheus >/dev/null 2>&1; then
  # an empty or old package list: read it again (root, or sudo), then try once more
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q >/dev/null 2>&1 || true
  if ! apt-get download prometheus >&2; then
    echo "promtool.sh: 'apt-get download prometheus' failed; promtool is needed by test_ops_metrics" >&2
    exit 1
  fi
fi
deb=$(ls ./prometheus_*.deb | head -n 1)
dpkg -x "$deb" "$dir/unpacked"
rm -f ./*.deb
mkdir -p "$dir/usr/bin"
mv "$dir/unpacked/usr/bin/promtool" "$bin"
rm -rf "$dir/unpacked" "$dir/deb" # the server binary and the rest are not needed
if [ ! -x "$bin" ]; then
  echo "promtool.sh: $deb holds no usr/bin/promtool" >&2
  exit 1
fi
echo "$bin"
