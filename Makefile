# The two Quick start commands (README): `make demo` and `make test`.
# Everything else here is a convenience around CMake + Ninja.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 20
# Every target runs under this memory limit (libFuzzer's -rss_limit_mb, which also caps
# single allocations): hostile input must not make mup allocate what it states.
FUZZ_RSS_MB  ?= 2048

.PHONY: deps build demo test test-asan fuzz bench format format-check clean

deps:
	scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS)

# Packs v1 and v2 of a sample tree, shows what a v1 node must fetch for v2, rebuilds v2
# from v1 plus that, and verifies it (in a temp dir).
demo: build
	scripts/demo.sh $(BUILD)/src/cli/mup
	scripts/agent-demo.sh $(BUILD)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -LE soak

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMUP_SANITIZE=ON -DMUP_BUILD_BENCH=OFF
	ninja -C $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE soak

# Each libFuzzer target for FUZZ_SECONDS under FUZZ_RSS_MB (clang, ASan+UBSan), from an empty corpus.
fuzz: deps
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DMUP_SANITIZE=ON -DMUP_BUILD_FUZZ=ON -DMUP_BUILD_TESTS=OFF -DMUP_BUILD_BENCH=OFF \
	  -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link
	ninja -C $(FUZZ_BUILD) -j $(JOBS) $$(cd fuzz && ls *_fuzzer.cpp | sed 's/.cpp$$//')
	for f in fuzz/*_fuzzer.cpp; do n=$$(basename $$f .cpp); mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	  echo "fuzzing $$n for $(FUZZ_SECONDS)s"; \
	  $(FUZZ_BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=$(FUZZ_RSS_MB) $(FUZZ_BUILD)/corpus/$$n \
	    > $(FUZZ_BUILD)/$$n.log 2>&1 || { tail -40 $(FUZZ_BUILD)/$$n.log; exit 1; }; \
	  tail -1 $(FUZZ_BUILD)/$$n.log; done

# Side-by-side with the peers on the shared corpus (long; see bench/README.md).
bench: build
	scripts/install-deps.sh --bench
	bench/compare.sh

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
