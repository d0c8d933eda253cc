# Rapport: `make run` starts the suite, `make test` runs every test.
SHELL := /bin/bash
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf

.PHONY: run test lint fmt proto-lint bench tools

## run: build and start every service on a local PostgreSQL (Ctrl-C stops it)
run:
	@deploy/local/run.sh

## test: unit, PostgreSQL integration, isolation, end-to-end and fault tests
## (the binaries are built first: fault tests run them as processes)
test:
	cargo build --workspace --bins --locked
	@export RAPPORT_TEST_DATABASE_URL="$$(deploy/local/postgres.sh)" && cargo test --workspace --locked

## lint: formatting, clippy (warnings are errors), the layer rules and buf lint
lint: proto-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	tests/check-layers.sh

fmt:
	cargo fmt --all

## proto-lint: buf lint on proto/ (buf comes from the npm registry into .tools/)
proto-lint: $(BUF)
	cd proto && ../$(BUF) lint

$(BUF):
	npm install --silent --prefix .tools @bufbuild/buf@$(BUF_VERSION)

## bench: load figures of the issues (release build, local PostgreSQL)
bench:
	cargo build --release --locked --bins
	@export RAPPORT_BENCH_DATABASE_URL="$$(deploy/local/postgres.sh)" && target/release/rapport-bench
