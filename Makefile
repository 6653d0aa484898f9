# peermesh: `make run` to chat, `make test` to run every test.
# Both install what is missing (as root, with apt-get), configure and build.

BUILD    ?= build
ARGS     ?=
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
# CI builds with warnings as errors and the sanitizers; so can you: make test CI=1
ifneq ($(strip $(CI)),)
CMAKE_FLAGS += -DPM_WERROR=ON -DPM_SANITIZE=ON
endif

DEB_BUILD := cmake pkg-config liblua5.4-dev libuv1-dev \
             libsodium-dev libsqlite3-dev lua-luv-dev
DEB_TEST  := python3

.PHONY: all build configure deps deps-test run test install clean format check-format

all: build

deps:
	@./tests/ensure-deps.sh $(DEB_BUILD)

deps-test:
	@./tests/ensure-deps.sh $(DEB_BUILD) $(DEB_TEST)

# Several terminals may run `make run` at once: a lock keeps their builds of
# the shared build directory from overlapping. Configuring runs only when
# the build directory is new or options are given; later builds re-run CMake
# by themselves when a CMakeLists.txt changes.
LOCKED = mkdir -p $(BUILD) && flock $(BUILD)/.make.lock
CONFIGURE = { [ -f $(BUILD)/CMakeCache.txt ] && [ -z "$(strip $(CMAKE_FLAGS))" ] || \
              cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null; }

configure: deps
	@$(LOCKED) sh -c '$(CONFIGURE)'

build: deps
	@$(LOCKED) sh -c '$(CONFIGURE) && cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory'

run: deps
	@$(LOCKED) sh -c '$(CONFIGURE) && cmake --build $(BUILD) -j $(JOBS) --target peermesh -- --no-print-directory >/dev/null'
	./$(BUILD)/peermesh $(ARGS)

test: deps-test
	@$(LOCKED) sh -c '$(CONFIGURE) && cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory'
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

# Speed and memory (tests/sim/bench.py): the simulator, built for speed in
# $(BENCH_BUILD), runs 1,000 nodes x 1,000 messages under each scenario and
# prints the figures; BENCH_BIG=1 adds 10,000 nodes steady (about 5 GB of
# memory and under a minute).
BENCH_BUILD ?= build-bench
.PHONY: bench
bench: deps-test
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BENCH_BUILD) -j $(JOBS) --target peermesh-sim -- --no-print-directory
	@python3 tests/sim/bench.py $(BENCH_BUILD) $(if $(BENCH_BIG),--big) $(if $(BENCH_QUICK),--quick)

# Fuzzing (tests/fuzz/README.md): builds the libFuzzer targets with clang
# (libclang-rt-dev holds libFuzzer and the sanitizer runtimes) in
# $(FUZZ_BUILD) and runs each for FUZZ_SECONDS. New inputs go to
# $(FUZZ_BUILD)/corpus, crashes to $(FUZZ_BUILD)/crash-*; the committed
# corpus in tests/fuzz/corpus is only read.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := frame node resolver secure
.PHONY: fuzz
fuzz: deps
	@./tests/ensure-deps.sh clang libclang-rt-dev
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DPM_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS)) -- --no-print-directory
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t && \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s" && \
	  ./$(FUZZ_BUILD)/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
	    -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/ \
	    $(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done
