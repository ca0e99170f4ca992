# The one entry point. `make run` starts the daemon; `make test` runs everything CI runs.
CARGO ?= cargo

.PHONY: run build test deps check-deps lint bench ci

run:
	$(CARGO) run --release -p pincluster-service -- daemon

build:
	$(CARGO) build --workspace --bins

deps:
	./scripts/setup-test-deps.sh

check-deps:
	./scripts/check-deps.py

# Benches are compiled (in the test profile) but never run here: speed is
# measured by `make bench`, not gated in CI.
test: deps check-deps lint build
	$(CARGO) test --workspace --benches --no-run
	./scripts/test-summary.sh $(CARGO) test --workspace --no-fail-fast --lib --bins --tests --examples

# Style and lint findings fail the suite, so they cannot land.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) bench --workspace
	./benches/psa-load.sh
	./benches/hostile-http.sh

ci: test
