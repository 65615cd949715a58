# ragd — build, test and run. `make help` lists the targets.
BUILD   ?= build
CC      ?= cc
PKGS    := libmicrohttpd libevent libevent_pthreads jansson sqlite3 libcurl libcrypto \
           libutf8proc libxml-2.0 md4c
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
OPT     ?= -O2 -g
SAN     ?=
CFLAGS  += -std=c17 -D_GNU_SOURCE $(OPT) $(WARN) $(SAN) -Isrc -MMD -MP
LDFLAGS += $(SAN)
DEPS_OK := $(BUILD)/.deps-ok

SRC      := $(shell find src -name '*.c' ! -name main.c | sort)
OBJ      := $(SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libragd.a
BIN      := $(BUILD)/ragd
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lpthread -lm

.PHONY: all deps test unit e2e asan run bench clean help
all: $(BIN)

help:
	@echo "make          build $(BIN)"
	@echo "make run      build and serve on the embedded defaults (RAGD_LISTEN, RAGD_DATA_DIR, ...)"
	@echo "make test     unit tests (cmocka) and end-to-end tests (python3, real HTTP on loopback)"
	@echo "make asan     the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make bench    vector-index and HTTP benchmarks (results: BENCHMARKS.md)"
	@echo "make deps     install the Debian packages the build needs (scripts/deps.sh)"

deps: $(DEPS_OK)
$(DEPS_OK): scripts/deps.sh
	@scripts/deps.sh
	@mkdir -p $(@D) && touch $@

$(BUILD)/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB) | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS) -lcmocka

unit: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || fail=1; done; \
	  if [ $$fail -ne 0 ]; then echo "unit tests FAILED"; exit 1; fi

e2e: $(BIN)
	RAGD_BIN=$(abspath $(BIN)) python3 -m unittest discover -s tests/e2e -p 'test_*.py' -v

# Unit tests first, then end-to-end: sequential even under -j, so the output reads in order.
test: $(BIN) $(UNIT_BIN)
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory e2e

# Sanitizers: a separate build tree so the normal binary stays optimised.
asan:
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" test

$(BUILD)/bench_vindex: bench/bench_vindex.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(PKG_LIBS)

bench: $(BIN) $(BUILD)/bench_vindex
	$(BUILD)/bench_vindex 100000 512 200
	RAGD_BIN=$(abspath $(BIN)) python3 bench/bench_http.py 5000 2000 8

run: $(BIN)
	$(BIN) serve

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(BUILD)/src/main.d
