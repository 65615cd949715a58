#!/bin/sh
# deps.sh — the one place that lists what ragd needs from Debian to build, test and run.
# Idempotent: installs only the packages that are missing; uses sudo when not root.
set -eu
PACKAGES="gcc make pkg-config python3 curl ca-certificates
libevent-dev libcurl4-openssl-dev libsqlite3-dev libjansson-dev
libssl-dev libutf8proc-dev libxml2-dev libmd4c-dev libstemmer-dev libcmocka-dev
libpcre2-dev libpoppler-glib-dev libzip-dev zlib1g-dev"
# clang and its libFuzzer/sanitizer runtime: `make test` runs every fuzz target briefly (fuzz-smoke).
PACKAGES="$PACKAGES clang libclang-rt-14-dev"
# node and npm: tests/e2e/test_clients.py drives the real `ollama` and `openai` npm client
# libraries (`make clients-deps`: npm ci in tests/clients). Debian 12 has node 18.19, npm 9.2.
PACKAGES="$PACKAGES nodejs npm"
# chromium: the browser tests (tests/browser, `make browser`) drive Debian's /usr/bin/chromium
# in headless mode with the npm package playwright-core, which never downloads a browser.
PACKAGES="$PACKAGES chromium"
# promtool (Debian's `prometheus` package, for tests/e2e/test_ops_metrics.py) is not installed:
# scripts/promtool.sh fetches it with `apt-get download` and unpacks it under build/ on first use.
# `deps.sh fuzz`: only what `make fuzz` needs (clang and its runtime, in the base list too).
# `deps.sh bench`: only what `make bench` needs on top (wrk, the HTTP load generator).
# `deps.sh clients`: only node and npm.
# `deps.sh browser`: only what `make browser` needs (node, npm and chromium).
case "${1:-}" in
  "") ;;
  fuzz) PACKAGES="clang libclang-rt-14-dev" ;;
  bench) PACKAGES="wrk" ;;
  clients) PACKAGES="nodejs npm" ;;
  browser) PACKAGES="nodejs npm chromium" ;;
  *) echo "usage: deps.sh [fuzz|bench|clients|browser]" >&2; exit 2 ;;
esac

missing=""
for p in $PACKAGES; do
  # A node installed another way counts (NodeSource's nodejs package brings npm itself and
  # conflicts with Debian's npm package): the commands are what the tests run.
  case "$p" in
    nodejs) if command -v node >/dev/null 2>&1; then continue; fi ;;
    npm) if command -v npm >/dev/null 2>&1; then continue; fi ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "deps.sh: installing:$missing" >&2
$SUDO apt-get update -q >/dev/null
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
