# stasis: the only Makefile (non-recursive). See README.md for the targets.
#
#   make                  release build of the three binaries into build/release/bin
#   make SANITIZER=address,undefined   the same with sanitizers, into build/asan
#   make test             deps, then unit + fuzz replay + integration under ASan+UBSan
#   make bench            every benchmark (bench-webhook, ...)
#   make V=1              show commands

SANITIZER ?=
comma     := ,
CC        ?= cc
FUZZ_CC   ?= clang
PKGS      := libmicrohttpd gnutls libcurl json-c yaml-0.1 openssl libzstd zlib
Q         := $(if $(V),,@)

ifeq ($(SANITIZER),)
VARIANT   := release
OPTFLAGS  := -O2 -g
else
# Each sanitizer set gets its own tree: TSan and ASan objects cannot be mixed.
VARIANT   := $(if $(filter thread,$(subst $(comma), ,$(SANITIZER))),tsan,asan)
OPTFLAGS  := -fsanitize=$(SANITIZER) -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1
endif

B         := build/$(VARIANT)
WARN      := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wvla -Wpointer-arith -Wcast-qual $(if $(CI),-Werror,)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
CFLAGS    ?=
CPPFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -D_GNU_SOURCE -I. $(PKG_CFLAGS)
ALLCFLAGS := $(CPPFLAGS) $(WARN) $(OPTFLAGS) $(CFLAGS) -MMD -MP
LDFLAGS_  := $(OPTFLAGS) -Wl,--as-needed $(LDFLAGS)

LIB_SRCS  := $(sort $(wildcard pkg/*.c pkg/*/*.c webhook/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(B)/obj/%.o)
LIB       := $(B)/libstasis.a
CMDS      := $(notdir $(wildcard cmd/*))
BINS      := $(CMDS:%=$(B)/bin/%)
UNIT_SRCS := $(sort $(wildcard tests/unit/*_test.c))
UNITS     := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/*_fuzz.c))
REPLAYS   := $(FUZZ_SRCS:tests/fuzz/%.c=$(B)/fuzz/%-replay)
FUZZERS   := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
HEADERS   := $(sort $(wildcard pkg/*.h pkg/*/*.h webhook/*.h))

.PHONY: all test test-unit test-fuzz-replay test-integration unit fuzz bench demo manifests \
        format format-check lint headercheck check deps clean tsan valgrind $(BENCHES)

.SECONDARY:

all: $(BINS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<",)
	$(Q)$(CC) $(ALLCFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@.$$$$ && ar rcs $@.$$$$ $^ && mv -f $@.$$$$ $@

$(B)/bin/%: $(B)/obj/cmd/%/main.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@",)
	$(Q)$(CC) $(LDFLAGS_) -o $@ $< $(LIB) $(PKG_LIBS)

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@",)
	$(Q)$(CC) $(LDFLAGS_) -o $@ $< $(LIB) $(PKG_LIBS) -lcmocka

$(B)/fuzz/%-replay: $(B)/obj/tests/fuzz/%.o $(B)/obj/tests/fuzz/replay.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS_) -o $@ $^ $(PKG_LIBS)

# libFuzzer builds (clang), separate tree so flags never mix.
build/fuzz/%: tests/fuzz/%.c $(LIB_SRCS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined -o $@ $< $(LIB_SRCS) $(PKG_LIBS)

unit: $(UNITS)

deps:
	$(Q)bash hack/install-deps.sh

# The test entry point: always sanitized, always from a fresh dependency check.
test: deps
	$(Q)$(MAKE) --no-print-directory SANITIZER=address,undefined test-all

.PHONY: test-all
test-all: $(BINS) $(UNITS) $(REPLAYS)
	$(Q)bash hack/run-tests.sh $(B)

test-unit: $(UNITS)
	$(Q)STASIS_ONLY=unit bash hack/run-tests.sh $(B)

test-fuzz-replay: $(REPLAYS)
	$(Q)STASIS_ONLY=fuzz bash hack/run-tests.sh $(B)

test-integration: $(BINS)
	$(Q)STASIS_ONLY=integration bash hack/run-tests.sh $(B)

fuzz: $(FUZZERS)
	@echo "fuzzers built in build/fuzz; run e.g. build/fuzz/admission_fuzz tests/fuzz/corpus/admission_fuzz"

BENCHES := $(patsubst tests/bench/%.sh,%,$(wildcard tests/bench/bench-*.sh))
bench: $(BENCHES)
$(BENCHES): deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)STASIS_BENCH_DEPS=1 bash hack/install-deps.sh
	$(Q)bash tests/bench/$@.sh build/release

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)bash hack/demo.sh build/release

manifests: all
	$(Q)bash hack/render-manifests.sh build/release out/manifests

format:
	$(Q)clang-format -i $(wildcard pkg/*.[ch] pkg/*/*.[ch] webhook/*.[ch] cmd/*/*.c tests/*/*.c)

format-check:
	$(Q)clang-format --dry-run --Werror $(wildcard pkg/*.[ch] pkg/*/*.[ch] webhook/*.[ch] cmd/*/*.c tests/*/*.c)

headercheck:
	$(Q)for h in $(HEADERS); do \
		printf '#include "%s"\nextern int st_headercheck_unit;\n' "$$h" | \
			$(CC) $(CPPFLAGS) -Wall -Wextra -pedantic -Werror -x c -fsyntax-only - || exit 1; \
	done; echo "headercheck: $(words $(HEADERS)) headers compile alone"

lint: headercheck
	$(Q)bash hack/checksrc.sh
	$(Q)clang-tidy --quiet $(LIB_SRCS) $(wildcard cmd/*/main.c) -- $(CPPFLAGS) 2>/dev/null | grep -E 'warning|error' || true
	$(Q)cppcheck --quiet --error-exitcode=1 --enable=warning,portability -I. $(LIB_SRCS) $(wildcard cmd/*/main.c)

# The threaded servers under ThreadSanitizer: the webhook (MHD worker pool) and
# the agent daemon, through their integration tests.
tsan:
	$(Q)$(MAKE) --no-print-directory SANITIZER=thread all
	$(Q)TSAN_OPTIONS=halt_on_error=1 STASIS_ONLY=integration STASIS_TEST='webhook' \
		bash hack/run-tests.sh build/tsan

clean:
	rm -rf build out

-include $(shell find build -name '*.d' 2>/dev/null)
