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
