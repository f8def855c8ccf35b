# Two commands on a fresh Debian 12 machine: `make run` and `make test`.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: deps build run test test-sanitize bench fuzz clean

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/mta/ternd

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 600

# The integration tests that exercise parsing, pipelining, TLS, POP3, the
# spool's error paths and delivery (on several loops), once more against an ASan+UBSan Debug build: an
# unoptimised build is where unbounded recursion shows, and the sanitizers
# turn a silent memory error into a failed test (CI runs this after `make test`);
# LeakSanitizer checks ternd at exit (a session left suspended at shutdown shows).
SANITIZE_TESTS ?= test_limits.py test_smtp_commands.py test_data.py test_tls.py test_local_pop3.py \
	test_storage_full.py test_privileges.py test_delivery.py test_delivery_loops.py
test-sanitize: deps
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DTERN_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS) --target ternd ternctl tern-sink unit_io_tests unit_proto_tests
	$(BUILD)-asan/tests/unit_io_tests
	$(BUILD)-asan/tests/unit_proto_tests
	cd tests/integration && ASAN_OPTIONS=detect_leaks=1 TERN_BUILD=$(abspath $(BUILD)-asan) /usr/bin/python3 -m pytest -q -p no:cacheprovider $(SANITIZE_TESTS)

fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B $(BUILD)-fuzz -DTERN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD)-fuzz -j $(JOBS)

bench: build
	/usr/bin/python3 bench/side_by_side.py --build $(BUILD) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz $(BUILD)-asan
