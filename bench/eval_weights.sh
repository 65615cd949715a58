#!/bin/sh
# eval_weights.sh [FILES...] — builds bench/eval_kindex.c for a grid of BM25F field weights
# and prints the known-item scores of each (docs/internals/kindex.md, "Weights"). Default
# corpus: the project's own markdown (docs/, README.md, BENCHMARKS.md).
set -eu
cd "$(dirname "$0")/.."
make -s build/libragd.a
[ $# -gt 0 ] || set -- docs/*.md docs/internals/*.md README.md BENCHMARKS.md
CFLAGS="-std=c17 -D_GNU_SOURCE -O2 -Isrc $(pkg-config --cflags libutf8proc)"
LIBS="build/libragd.a $(pkg-config --libs libmicrohttpd libevent libevent_pthreads jansson sqlite3 libcurl libcrypto libutf8proc libxml-2.0 md4c) -lstemmer -lpthread -lm"
for wt in 0 0.5 1 2 3 5; do
  for wh in 0 0.5 1 2 3; do
    cc $CFLAGS -DKINDEX_W_TITLE=$wt -DKINDEX_W_HEADING=$wh -o build/eval_kindex bench/eval_kindex.c $LIBS 2>/dev/null
    build/eval_kindex "$@"
  done
done
