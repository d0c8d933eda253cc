# Rapport: `make run` starts the suite, `make test` runs every test.
SHELL := /bin/bash
BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf
KUBE_VALIDATE_VERSION := 1.32.0
KUBE_VALIDATE := .tools/python/bin/kubernetes-validate
PYTHON := .tools/python/bin/python
# The Python SDK's generator and test tools, pinned (from PyPI into .tools/).
PYTHON_SDK_TOOLS := grpcio-tools==1.85.4 grpcio==1.85.4 grpcio-status==1.85.3 \
	googleapis-common-protos==1.76.0 protobuf==7.36.2 pytest==9.2.0

.PHONY: run test lint fmt proto-lint manifest-lint release-contract sdk bench tools

## run: build and start every service on a local PostgreSQL (Ctrl-C stops it)
run:
	@deploy/local/run.sh

## test: unit, PostgreSQL integration, isolation, end-to-end and fault tests
## (the binaries are built first: fault tests run them as processes; the
## SDKs are generated first: their scenarios run against the suite)
test: sdk
	cargo build --workspace --bins --locked
	@export RAPPORT_TEST_DATABASE_URL="$$(deploy/local/postgres.sh)" && cargo test --workspace --locked

## lint: formatting, clippy (warnings are errors), the layer rules, buf lint,
## buf breaking and the Kubernetes manifests
lint: proto-lint manifest-lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	tests/check-layers.sh

fmt:
	cargo fmt --all

## proto-lint: buf lint on proto/, and buf breaking against the released
## contract (buf comes from the npm registry into .tools/)
proto-lint: $(BUF)
	cd proto && ../$(BUF) lint
	tests/check-contract.sh

## manifest-lint: deploy/k8s (base and every overlay) validated offline
## against the Kubernetes schemas (kubernetes-validate from PyPI into .tools/)
manifest-lint: $(KUBE_VALIDATE)
	tests/check-manifests.sh

## sdk: the client SDKs generated from proto/, beside their hand-written
## layers; nothing generated is committed. Python: messages, stubs and .pyi
## types in sdk/python/src/rapport/<package>/v1 (grpcio-tools from PyPI).
## TypeScript: ES modules with types in sdk/typescript/src/gen (buf with
## the local protoc-gen-es plugin from npm), google.rpc's error details
## included from the googleapis protos that came with the Python tools.
GOOGLEAPIS := $$($(CURDIR)/$(PYTHON) -c 'import google.rpc, os; print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))')
sdk: $(PYTHON) $(BUF)
	$(PYTHON) -m pip install --quiet $(PYTHON_SDK_TOOLS)
	rm -rf $(filter-out %.py %.typed,$(wildcard sdk/python/src/rapport/*))
	$(PYTHON) -m grpc_tools.protoc -I proto --python_out=sdk/python/src \
		--pyi_out=sdk/python/src --grpc_python_out=sdk/python/src \
		$$(find proto/rapport -name '*.proto' | sort)
	npm ci --silent --prefix sdk/typescript
	rm -rf sdk/typescript/src/gen
	cd sdk/typescript && ../../$(BUF) generate ../../proto
	cd sdk/typescript && googleapis="$(GOOGLEAPIS)" && \
		../../$(BUF) generate "$$googleapis" --path "$$googleapis/google/rpc/error_details.proto"

$(PYTHON):
	python3 -m venv .tools/python

$(KUBE_VALIDATE): $(PYTHON)
	$(PYTHON) -m pip install --quiet kubernetes-validate==$(KUBE_VALIDATE_VERSION)

## release-contract: records proto/ as the released contract, which
## `make lint` then keeps every later change compatible with (run when a
## release is cut, and commit proto/released.binpb)
release-contract: $(BUF)
	cd proto && ../$(BUF) build --exclude-source-info -o released.binpb

$(BUF):
	npm install --silent --prefix .tools @bufbuild/buf@$(BUF_VERSION)

## bench: load figures of the issues (release build, local PostgreSQL)
bench:
	cargo build --release --locked --bins
	@export RAPPORT_BENCH_DATABASE_URL="$$(deploy/local/postgres.sh)" && target/release/rapport-bench
