# tenant-identity-operator — every entry point a developer or CI needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
BIN := target/debug/tenant-identity-operator
CHART := helm/tenant-identity-operator
CRD_FILE := $(CHART)/crds/tenantidentities.identity.tenancy.dev.yaml
IMAGE ?= ghcr.io/tenancy-dev/tenant-identity-operator:dev
# Where the e2e suite's emulators record the requests they serve (read by the chart test's RBAC
# check); emptied before each suite run so that only this run's requests count.
E2E_AUDIT_DIR := $(or $(KUBE_EMULATOR_AUDIT_DIR),target/e2e-audit)

.PHONY: all build test unit e2e chart-test static lint fmt clippy crd crd-check demo bench image clean

all: build

build:
	$(CARGO) build --workspace --all-targets

## test: every test — unit, schema conformance, emulator, e2e (real binary), chart.
test: crd-check lint unit chart-test static

## unit: all Rust tests of the workspace (includes the e2e suite against the emulator).
unit:
	$(CARGO) build --workspace --bins
	rm -f $(E2E_AUDIT_DIR)/audit-*.jsonl
	$(CARGO) nextest run --workspace --no-fail-fast

## e2e: only the end-to-end suite (set E2E_KUBECONFIG to use a real cluster).
e2e:
	$(CARGO) build --workspace --bins
	rm -f $(E2E_AUDIT_DIR)/audit-*.jsonl
	$(CARGO) nextest run -p tenant-identity-e2e --no-fail-fast

chart-test: build
	bash hack/chart/test.sh

## static: the image's static binary, built and checked (CI has no Docker engine).
static:
	bash hack/chart/static-binary.sh

lint: fmt clippy

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## crd: regenerate the chart's CRD from the Rust types.
crd:
	$(CARGO) run -q -p tenant-identity-operator -- crd > $(CRD_FILE)

## crd-check: fail when the committed CRD drifted from the types.
crd-check:
	$(CARGO) run -q -p tenant-identity-operator -- crd | diff -u $(CRD_FILE) - \
	  || { echo "CRD drift: run 'make crd' and commit $(CRD_FILE)"; exit 1; }

## demo: the operator's main job on the embedded default, no cluster needed.
demo:
	$(CARGO) build -q --workspace --bins
	bash hack/demo.sh

## bench: pure reconcile steps (criterion), fleet convergence of the real binary (emulator) and
## the scale goals' table (fleet: TENANTS=N, default 1000; FLEET_SMOKE=1 for 50).
bench:
	$(CARGO) build -q --workspace --bins
	$(CARGO) bench -p tenant-identity-operator
	$(CARGO) bench -p tenant-identity-e2e --bench converge
	$(CARGO) bench -p tenant-identity-e2e --bench fleet

## image: container image (needs a Docker engine; CI builds the static binary only).
image:
	docker build -t $(IMAGE) .

clean:
	$(CARGO) clean
