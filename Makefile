# Thin wrapper over CMake: deps, build, run, test, bench, fuzz.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
PYTHON     ?= /usr/bin/python3
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 20

# Quiet by default: the build prints what it builds, then only compiler diagnostics and
# errors (they go to stderr); V=1 (or VERBOSE=1) shows every command. Test runners always
# print their summaries.
V ?= 0
LOUD := $(filter-out 0,$(V)$(VERBOSE))
MAKEFLAGS += --no-print-directory
# cmake_build DIR: builds DIR (configure output is dropped by each caller; errors still
# reach stderr).
cmake_build = @echo "building $(1)/$(if $(LOUD),, (V=1 shows each command))"; \
	cmake --build $(1) -j $(JOBS) $(if $(LOUD),-v,>/dev/null)

.PHONY: all deps build install deb run test format-check docs-check unit e2e e2e-asan fuzz fuzz-build fuzz-short bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	$(call cmake_build,$(BUILD))

# The binary, man pages, docs, /etc/mlcdn and the systemd units (docs/operations.md,
# "Packaging"). PREFIX defaults to CMake's /usr/local; DESTDIR stages the tree.
install: build
	@cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

# The Debian package (CPack), written into $(BUILD).
deb: build
	@cd $(BUILD) && cpack -G DEB

# The whole CDN on this machine (docs/deploy.md): four regions, the reference models at
# every edge; mlcdn run writes its own city database for the regions' users (and, with
# --geo-places, for real addresses of each continent).
run: build
	@$(BUILD)/mlcdn run --models tests/fixtures/models --geo-places tests/fixtures/geo/test-ips.csv

# The docs' commands, unit tests under ASan+UBSan, then end-to-end tests against the release
# build, then a short bounded fuzz pass. Each runner prints its own summary; any failure
# fails the target.
test: deps format-check docs-check unit e2e e2e-asan fuzz-short

# The C code's layout is .clang-format's: a difference fails the test target, so style
# never needs a review comment. Fix with clang-format -i FILE.
format-check: deps
	@scripts/check-format.sh

# Every command in README.md and docs/ runs (in a private network namespace) or, where
# annotated `<!-- not run: REASON -->`, has its command, flags and files checked.
docs-check: build
	@$(PYTHON) scripts/check-docs.py --bin $(abspath $(BUILD))/mlcdn

unit: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMLCDN_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	$(call cmake_build,$(ASAN_BUILD))
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

e2e: build
	@MLCDN_BIN=$(abspath $(BUILD))/mlcdn $(PYTHON) -m pytest -q tests/e2e

# The HTTP daemons' end-to-end tests again, against the ASan+UBSan binary built by `unit`:
# use-after-free and leaks in callback code show up here, not in unit tests.
e2e-asan: unit
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 MLCDN_BIN=$(abspath $(ASAN_BUILD))/mlcdn \
	    $(PYTHON) -m pytest -q tests/e2e/test_edge.py tests/e2e/test_origin.py tests/e2e/test_run.py \
	        tests/e2e/test_hardening_request.py tests/e2e/test_hardening_origin.py \
	        tests/e2e/test_hardening_load.py tests/e2e/test_tls.py tests/e2e/test_reload.py \
	        tests/e2e/test_drain.py tests/e2e/test_http2.py tests/e2e/test_invalidate.py
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 MLCDN_BIN=$(abspath $(ASAN_BUILD))/mlcdn \
	    $(PYTHON) -m pytest -q tests/e2e/test_tiers.py -k "not 2gib"

fuzz-build: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLCDN_FUZZ=ON -DMLCDN_TESTS=OFF $(CMAKE_FLAGS) >/dev/null
	$(call cmake_build,$(FUZZ_BUILD))

fuzz-short: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

fuzz: fuzz-build
	@scripts/fuzz.sh $(FUZZ_BUILD) 600

bench: build
	@scripts/install-deps.sh --bench
	@bench/run-all.sh $(abspath $(BUILD))/mlcdn

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
