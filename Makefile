# ringstore: the two commands a new user needs are `make run` and `make test`.
# Each installs missing Debian packages (scripts/setup), builds, then does its job.

BUILD ?= build
NODES ?= 3
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
  CMAKE_FLAGS += -DRING_WERROR=ON
endif

.PHONY: all setup build run test test-asan fuzz bench clean

all: build

setup:
	@scripts/setup

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Build, then start a local cluster in the foreground. Ctrl-C stops it.
run: build
	$(BUILD)/bin/ringctl playground --nodes $(NODES)

# Build, then run every test: unit, integration (real ringd processes), fault.
test: build
	cd $(BUILD) && ctest --output-on-failure

# Unit and simulation tests under AddressSanitizer + UBSan, in a separate build tree.
test-asan: setup
	cmake -S . -B build-asan -G Ninja -DRING_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j $(JOBS)
	build-asan/bin/ring_tests "~[integration]~[fault]"

# libFuzzer on the frame and message decoder. FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 60
fuzz: setup
	CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DRING_FUZZ=ON
	cmake --build build-fuzz --target frame_fuzzer -j $(JOBS)
	mkdir -p fuzz/corpus && python3 fuzz/make_corpus.py fuzz/corpus
	build-fuzz/bin/frame_fuzzer -max_total_time=$(FUZZ_SECONDS) fuzz/corpus

# ringstore side by side with Redis on loopback (installs redis-server).
bench: build
	RING_SETUP_BENCH=1 scripts/setup
	scripts/bench-vs-redis.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz
