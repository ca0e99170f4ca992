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
	./scripts/check-deps.sh

test: deps check-deps build
	$(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets

bench:
	$(CARGO) bench --workspace
	./benches/psa-load.sh

ci: test
