# ragd — build, test and run. `make help` lists the targets.
BUILD   ?= build
CC      ?= cc
PKGS    := libevent libevent_pthreads jansson sqlite3 libcurl libcrypto \
           libutf8proc libxml-2.0 md4c libpcre2-8 \
           poppler-glib libzip zlib
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
OPT     ?= -O2 -g
SAN     ?=
CFLAGS  += -std=c17 -D_GNU_SOURCE $(OPT) $(WARN) $(SAN) -Isrc -MMD -MP
LDFLAGS += $(SAN)
DEPS_OK := $(BUILD)/.deps-ok

SRC      := $(shell find src -name '*.c' ! -name main.c | sort)
# The web page's files, compiled into the binary (docs/internals/web.md): tools/web_embed
# writes them with their types and ETags into $(BUILD)/gen/web_assets.c, part of the library.
WEB_FILES := web/index.html web/app.css web/app.js
WEB_EMBED := $(BUILD)/tools/web_embed
WEB_GEN_C := $(BUILD)/gen/web_assets.c
WEB_GEN_O := $(BUILD)/gen/web_assets.o
OBJ      := $(SRC:%.c=$(BUILD)/%.o) $(WEB_GEN_O)
LIB      := $(BUILD)/libragd.a
BIN      := $(BUILD)/ragd
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
# libstemmer (Snowball) ships no pkg-config file in Debian: its header is in /usr/include.
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lstemmer -lpthread -lm

.PHONY: all deps clients-deps browser-deps browser browser-bench test unit e2e chaos soak asan tsan run bench eval fuzz fuzz-build clean help
all: $(BIN)

help:
	@echo "make          build $(BIN)"
	@echo "make run      build and serve on the embedded defaults (RAGD_LISTEN, RAGD_DATA_DIR, ...)"
	@echo "make test     unit tests (cmocka), end-to-end tests (python3, real HTTP on loopback), browser tests, chaos, torture pass, fuzz smoke"
	@echo "make browser  the web page in headless Chromium (tests/browser; screenshots in build/screenshots/)"
	@echo "make browser-bench  time to the first answer token in the browser (BENCHMARKS.md)"
	@echo "make chaos    seeded fault injection against build/asan/ragd (CHAOS_SEED=N replays one)"
	@echo "make soak     the same, longer: CHAOS_SEEDS (20) seeds of CHAOS_SECONDS (30) each"
	@echo "make asan     the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make tsan     the whole suite under ThreadSanitizer"
	@echo "make torture  fail every allocation of the ingest and query paths, one by one (docs/testing.md)"
	@echo "make bench    vector-index and HTTP benchmarks (results: BENCHMARKS.md)"
	@echo "make eval     retrieval quality on the pydoc pages of the standard library (EVAL_ARGS=\"--env RAGD_FUSION=rrf\")"
	@echo "make fuzz     libFuzzer targets, FUZZ_SECONDS each (default 60; docs/fuzzing.md)"
	@echo "make guard-train  train the prompt-injection classifier (writes src/guard/guard_model.c)"
	@echo "make guard-eval   measure the prompt-injection screen (BENCHMARKS.md)"
	@echo "make fuzz-smoke  each fuzz target FUZZ_SMOKE_SECONDS (default 10) from its seeds (part of make test)"
	@echo "make deps     install the Debian packages the build needs (scripts/deps.sh)"
	@echo "make clients-deps  npm ci of the real ollama/openai client libraries (tests/clients, for make e2e)"
	@echo "make browser-deps  npm ci of playwright-core (tests/browser, for make browser)"

deps: $(DEPS_OK)
$(DEPS_OK): scripts/deps.sh
	@scripts/deps.sh
	@mkdir -p $(@D) && touch $@

$(BUILD)/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

# The generator runs at build time, so it is built without the sanitizers of BUILD's variant
# (their reports are about ragd, not about a build step); libcrypto gives it SHA-256.
$(WEB_EMBED): tools/web_embed/web_embed.c | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 $(WARN) $(shell pkg-config --cflags libcrypto) -o $@ $< \
	  $(shell pkg-config --libs libcrypto)

$(WEB_GEN_C): $(WEB_EMBED) $(WEB_FILES)
	@mkdir -p $(@D)
	$(WEB_EMBED) $@ $(WEB_FILES)

$(WEB_GEN_O): $(WEB_GEN_C) | $(DEPS_OK)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

# BIN_EXTRA / BIN_LDLIBS: empty here; the torture build links its fault module through them.
$(BIN): $(BUILD)/src/main.o $(LIB) $(BIN_EXTRA)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(BIN_LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS) -lcmocka

unit: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || fail=1; done; \
	  if [ $$fail -ne 0 ]; then echo "unit tests FAILED"; exit 1; fi

# The real client libraries (npm `ollama`, `openai`) that tests/e2e/test_clients.py drives with
# node: `npm ci` from the committed lock file into tests/clients/node_modules (ignored by git),
# its download cache in build/npm-cache. The stamp inside node_modules makes a second run a
# no-op until the lock file changes (npm ci empties node_modules, stamp included, first).
# $(call npm_ci,TARGET,USER): the recipe of a stamp DIR/node_modules/.ragd-npm-ci-ok — `npm ci`
# in DIR, or a message naming TARGET and who needs node and npm when they are missing.
define npm_ci
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
	  echo "$(1): node and npm are needed by $(2):" \
	       "install them with scripts/deps.sh (Debian packages nodejs, npm)" >&2; exit 1; }
	cd $(patsubst %/node_modules,%,$(@D)) && npm ci --cache "$(abspath $(BUILD))/npm-cache" --prefer-offline \
	  --no-audit --no-fund --loglevel=error
	@touch $@
endef

CLIENTS_DIR := tests/clients
CLIENTS_OK  := $(CLIENTS_DIR)/node_modules/.ragd-npm-ci-ok
clients-deps: $(CLIENTS_OK)
$(CLIENTS_OK): $(CLIENTS_DIR)/package.json $(CLIENTS_DIR)/package-lock.json | $(DEPS_OK)
	$(call npm_ci,clients-deps,tests/e2e/test_clients.py)

e2e: $(BIN) $(CLIENTS_OK)
	RAGD_BIN=$(abspath $(BIN)) python3 -m unittest discover -s tests/e2e -p 'test_*.py' -v

# The web page in a real browser (tests/browser, docs/testing.md): Debian's chromium
# (/usr/bin/chromium, from scripts/deps.sh) driven by the npm package playwright-core, which
# never downloads a browser; `npm ci` from the committed lock file as for tests/clients.
# BROWSER_TESTS: some of tests/browser/test_*.mjs (default: all). Screenshots of every step
# go to $(BUILD)/screenshots/ (the previous run's are removed first).
BROWSER_DIR   := tests/browser
BROWSER_OK    := $(BROWSER_DIR)/node_modules/.ragd-npm-ci-ok
BROWSER_TESTS ?=
browser-deps: $(BROWSER_OK)
$(BROWSER_OK): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json | $(DEPS_OK)
	$(call npm_ci,browser-deps,the browser tests)

browser: $(BIN) $(BROWSER_OK)
	@test -x "$${CHROMIUM:-/usr/bin/chromium}" || { \
	  echo "browser: $${CHROMIUM:-/usr/bin/chromium} not found: install Debian's chromium" \
	       "with scripts/deps.sh browser (or set CHROMIUM)" >&2; exit 1; }
	RAGD_BIN=$(abspath $(BIN)) RAGD_SCREENSHOTS=$(abspath $(BUILD))/screenshots \
	  node $(BROWSER_DIR)/run.mjs $(BROWSER_TESTS)

# Time from a click on Ask to the first answer text in the page, against the fake Ollama
# (BENCHMARKS.md "Web page"); BENCH_ARGS e.g. "--asks 50 --token-ms 20".
browser-bench: $(BIN) $(BROWSER_OK)
	RAGD_BIN=$(abspath $(BIN)) node $(BROWSER_DIR)/bench_ttft.mjs $(BENCH_ARGS)

# Unit tests first, then end-to-end, the web page in the browser, then the randomized fault
# injection (chaos, on its ASan build), the allocation torture pass (its own ASan build,
# build/torture) and a short run of every fuzz target (fuzz-smoke, its clang build in
# build/fuzz) — these four not again under make asan/tsan, whose BUILD differs: sequential
# even under -j, so the output reads in order.
test: $(BIN) $(UNIT_BIN)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory e2e
	@if [ "$(BUILD)" = build ]; then $(MAKE) --no-print-directory browser; fi
	@if [ "$(BUILD)" = build ]; then $(MAKE) --no-print-directory chaos; fi
	@if [ "$(BUILD)" = build ]; then $(MAKE) --no-print-directory torture-test; fi
	@if [ "$(BUILD)" = build ]; then $(MAKE) --no-print-directory fuzz-smoke; fi

# Chaos (tests/chaos, docs/testing.md): always on the ASan+UBSan binary, whatever BUILD is.
ASAN_VARS := BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
CHAOS_RUN := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
             RAGD_BIN=$(abspath build/asan/ragd) python3 tests/chaos/test_chaos.py
chaos:
	@$(MAKE) --no-print-directory $(ASAN_VARS) build/asan/ragd
	$(CHAOS_RUN)
soak:
	@$(MAKE) --no-print-directory $(ASAN_VARS) build/asan/ragd
	CHAOS_SEEDS=$${CHAOS_SEEDS:-20} CHAOS_SECONDS=$${CHAOS_SECONDS:-30} $(CHAOS_RUN)

# Sanitizers: a separate build tree so the normal binary stays optimised.
asan:
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(MAKE) $(ASAN_VARS) test

$(BUILD)/bench_vindex: bench/bench_vindex.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench_guard: bench/bench_guard.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench_cache: bench/bench_cache.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench_kindex: bench/bench_kindex.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench_fence: bench/bench_fence.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench_extractive: bench/bench_extractive.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench_prompt: bench/bench_prompt.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench_pdf_child: bench/bench_pdf_child.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(BUILD)/bench_multipart: bench/bench_multipart.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

bench: $(BIN) $(BUILD)/bench_vindex $(BUILD)/bench_cache $(BUILD)/bench_kindex $(BUILD)/bench_fence $(BUILD)/bench_extractive
	@scripts/deps.sh bench
	$(BUILD)/bench_vindex 100000 512 200
	$(BUILD)/bench_cache 10000 768 1 4096
	$(BUILD)/bench_kindex 10000 2000 10
	$(BUILD)/bench_kindex 1000000 500 10
	$(BUILD)/bench_fence 20000
	$(BUILD)/bench_extractive 50 5 README.md docs/*.md docs/internals/*.md
	RAGD_BIN=$(abspath $(BIN)) python3 bench/bench_http.py 5000 2000 8
	RAGD_BIN=$(abspath $(BIN)) python3 bench/bench_generator.py
	RAGD_BIN=$(abspath $(BIN)) python3 bench/bench_rerank.py
	RAGD_BIN=$(abspath $(BIN)) python3 bench/bench_ingest_upstream.py 5000
	RAGD_BIN=$(abspath $(BIN)) python3 bench/bench_real.py --seconds 15

# Retrieval quality (bench/eval/eval_retrieval.py, results in BENCHMARKS.md): recall@5 and
# MRR@10 of vector, keyword and hybrid retrieval against a plain FTS5 BM25 baseline, on
# hand-written questions over the pydoc pages of ~170 standard library modules.
eval: $(BIN)
	RAGD_BIN=$(abspath $(BIN)) python3 bench/eval/eval_retrieval.py $(EVAL_ARGS)

# ThreadSanitizer: the whole suite on a TSan build (the server's threads and the
# resilience modules' races included).
tsan:
	TSAN_OPTIONS="halt_on_error=1 suppressions=$(abspath tests/tsan.supp)" $(MAKE) BUILD=build/tsan OPT="-O1 -g" SAN="-fsanitize=thread" test

run: $(BIN)
	$(BIN) serve

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(BUILD)/src/main.d $(BIN_EXTRA:.o=.d)

# ---- Fuzzing (libFuzzer + ASan + UBSan, clang): tests/fuzz/fuzz_*.c, docs/fuzzing.md ----
# The sources are rebuilt with clang and the sanitizers into build/fuzz/ (never the -O2 build).
# `make fuzz` runs each target FUZZ_SECONDS on build/fuzz/corpus-<target>, seeded from
# tests/fuzz/corpus/<target> (never written to); crash inputs go to build/fuzz/artifacts-<target>/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 30
FUZZ_DIR     := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  := -std=c17 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer $(WARN) -Isrc -MMD -MP
FUZZ_OBJ     := $(SRC:%.c=$(FUZZ_DIR)/obj/%.o) $(FUZZ_DIR)/obj/gen/web_assets.o
FUZZ_LIB     := $(FUZZ_DIR)/libragd-fuzz.a
FUZZ_SRC     := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_DEPS_OK := $(FUZZ_DIR)/.deps-ok

.PHONY: fuzz fuzz-build fuzz-smoke
fuzz-build: $(FUZZ_BIN)

$(FUZZ_DEPS_OK): scripts/deps.sh | $(DEPS_OK)
	@scripts/deps.sh fuzz
	@mkdir -p $(@D) && touch $@

$(FUZZ_DIR)/obj/%.o: %.c | $(FUZZ_DEPS_OK)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) $(PKG_CFLAGS) -c $< -o $@

$(FUZZ_DIR)/obj/gen/web_assets.o: $(WEB_GEN_C) | $(FUZZ_DEPS_OK)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(FUZZ_SAN) $(PKG_CFLAGS) -c $< -o $@

$(FUZZ_LIB): $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB) | $(FUZZ_DEPS_OK)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) $(PKG_CFLAGS) -o $@ $< $(FUZZ_LIB) $(PKG_LIBS)

fuzz: $(FUZZ_BIN)
	@fail=""; for b in $(FUZZ_BIN); do t=$${b##*/}; \
	  c=$(FUZZ_DIR)/corpus-$$t; a=$(FUZZ_DIR)/artifacts-$$t/; mkdir -p $$c $$a; \
	  cp tests/fuzz/corpus/$$t/* $$c/ 2>/dev/null || true; \
	  echo "== $$t: $(FUZZ_SECONDS) s (log: $(FUZZ_DIR)/$$t.log)"; \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $$b -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
	    -artifact_prefix=$$a $$c >$(FUZZ_DIR)/$$t.log 2>&1 || fail="$$fail $$t"; \
	  grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)|^(==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)' \
	    $(FUZZ_DIR)/$$t.log | sed 's/^/   /'; \
	done; \
	if [ -n "$$fail" ]; then echo "fuzz: FAILED:$$fail (inputs in $(FUZZ_DIR)/artifacts-*/)"; exit 1; fi; \
	echo "fuzz: no crashes"

# The CI pass (`make test`, BUILD=build): each target FUZZ_SMOKE_SECONDS (default 10) from its
# seed corpus only, in a scratch corpus emptied first, so every run starts from the same seeds;
# FUZZ_SMOKE_JOBS (2) targets at a time, one core each.
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SMOKE_JOBS    ?= 2
FUZZ_SMOKE_ONE = t=$${0\#\#*/}; s=$(FUZZ_DIR)/smoke-$$t; a=$(FUZZ_DIR)/artifacts-$$t/; \
  rm -rf $$s $(FUZZ_DIR)/smoke-$$t.failed; mkdir -p $$s $$a; \
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    $$0 -max_total_time=$(FUZZ_SMOKE_SECONDS) -max_len=65536 -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
    -artifact_prefix=$$a $$s tests/fuzz/corpus/$$t >$(FUZZ_DIR)/smoke-$$t.log 2>&1 || touch $(FUZZ_DIR)/smoke-$$t.failed; \
  rm -rf $$s; \
  echo "== fuzz-smoke $$t: $$(sed -n "s/^stat::number_of_executed_units: *//p" $(FUZZ_DIR)/smoke-$$t.log) runs"
fuzz-smoke: $(FUZZ_BIN)
	@printf '%s\n' $(FUZZ_BIN) | xargs -P $(FUZZ_SMOKE_JOBS) -n 1 sh -c '$(FUZZ_SMOKE_ONE)'; \
	fail=$$(ls $(FUZZ_DIR)/smoke-*.failed 2>/dev/null | sed 's|.*/smoke-||; s|\.failed$$||' | tr '\n' ' '); \
	if [ -n "$$fail" ]; then echo "fuzz-smoke: FAILED: $$fail(logs $(FUZZ_DIR)/smoke-*.log, inputs in $(FUZZ_DIR)/artifacts-*/)"; exit 1; fi; \
	echo "fuzz-smoke: no crashes"

-include $(FUZZ_OBJ:.o=.d) $(FUZZ_BIN:=.d)

# ---- Allocation torture (docs/testing.md): tests/torture/ ----
# build/torture/ragd: the same sources under ASan+UBSan, linked with tests/torture/fault.c,
# which fails chosen allocations of ragd (-Wl,--wrap), jansson, SQLite, libevent and OpenSSL.
# `make torture`: every path for N = 1, 2, ... until the failure no longer triggers, once
# failing only the Nth allocation, once failing it and every later one (--persistent).
# `make test` runs the first in full and a 1-in-7 sample of the second (torture-test).
TORTURE_DIR  := build/torture
TORTURE_WRAP := malloc calloc realloc reallocarray strdup strndup asprintf vasprintf
TORTURE_ARGS ?=
TORTURE_RUN  := ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=16 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                RAGD_BIN=$(abspath $(TORTURE_DIR)/ragd) python3 tests/torture/torture.py

.PHONY: torture torture-build torture-test
torture-build:
	@$(MAKE) --no-print-directory BUILD=$(TORTURE_DIR) OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  BIN_EXTRA=$(TORTURE_DIR)/tests/torture/fault.o \
	  BIN_LDLIBS="$(foreach s,$(TORTURE_WRAP),-Wl,--wrap=$(s))" $(TORTURE_DIR)/ragd
	@tests/torture/check_wraps.sh $(TORTURE_DIR)/libragd.a $(TORTURE_WRAP)

torture: torture-build
	$(TORTURE_RUN) $(TORTURE_ARGS)
	$(TORTURE_RUN) --persistent $(TORTURE_ARGS)

torture-test: torture-build
	$(TORTURE_RUN)
	$(TORTURE_RUN) --persistent --stride 7

# ---- Prompt-injection screen (docs/internals/guard.md, BENCHMARKS.md) ----
# guard-train: trains the classifier on data/injection (train split) and the train part of
# the doc chunks (doc_chunks.py: pydoc, man pages and /usr/share/doc of a fixed package list,
# ragd docs; ~30 s to render), and writes src/guard/guard_model.c (committed, embedded): a
# query model (question-like rows) and a chunk model (passages), each with its thresholds.
# guard-eval: the measurements of BENCHMARKS.md "Prompt-injection screen" (as Markdown).
GUARD_TRAIN := $(BUILD)/guard_train
GUARD_DOCS  := $(BUILD)/guard/doc_chunks.jsonl
GUARD_SEED  ?= 1

$(GUARD_TRAIN): tools/guard_train/guard_train.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

$(GUARD_DOCS): tools/guard_train/doc_chunks.py
	@mkdir -p $(@D)
	python3 tools/guard_train/doc_chunks.py > $@.tmp && mv $@.tmp $@

.PHONY: guard-train guard-eval
guard-train: $(GUARD_TRAIN) $(GUARD_DOCS)
	$(GUARD_TRAIN) train --data data/injection --docs $(GUARD_DOCS) --seed $(GUARD_SEED) --out src/guard/guard_model.c
	@$(MAKE) --no-print-directory $(BIN)

guard-eval: $(GUARD_TRAIN) $(GUARD_DOCS)
	$(GUARD_TRAIN) eval --data data/injection --docs $(GUARD_DOCS) --seed $(GUARD_SEED)
