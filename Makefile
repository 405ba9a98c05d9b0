# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Every target is a thin call into a script or cargo; the scripts own the details.
SHELL := /bin/bash
STAGE := test/stage

.PHONY: all build package adapter-image test test-unit test-fuzz test-cluster test-paperclip test-incluster \
  test-browser cluster-up cluster-down \
  demo setup-demo setup-test stage-install lint bench bench-paperclip bench-report

all: build

build:
	cargo build --workspace

## The npm tarball with the release binary inside: target/npm/paperclip-adapter-claude-k8s-<version>.tgz; the shim
## is bundled into one entry file by esbuild, which npm/pack.sh installs from npm/package-lock.json (npm ci).
package:
	cargo build --release -p claude-k8s
	npm/pack.sh

## The build context of deploy/image/Dockerfile (the Paperclip image with the adapter layer): target/adapter-image
adapter-image: package
	deploy/image/build-context.sh

lint:
	@rustup component list --installed 2>/dev/null | grep -q clippy && rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add clippy rustfmt
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Prerequisites of the real stage (apt packages, Kubernetes binaries, Claude Code, Node 24, Paperclip); cached.
stage-install:
	$(STAGE)/cluster.sh install
	$(STAGE)/cluster.sh build
	$(STAGE)/claude-cli.sh install
	$(STAGE)/paperclip.sh install

## What `make demo` / `make test` install and bring up first: the steps above, timed, cached, then the stage up
## (`make test` adds the browser of the UI suite). A fresh machine needs no other command before either.
setup-demo:
	$(STAGE)/setup.sh demo

setup-test:
	$(STAGE)/setup.sh test

cluster-up:
	$(STAGE)/cluster.sh up

cluster-down:
	$(STAGE)/cluster.sh down

## Unit tests: the Rust workspace (pure modules, the serve protocol against the real binary) and the npm shim.
## The shim runs inside Paperclip, so its tests run on Paperclip's Node 24 when `make stage-install` put it there,
## else on the machine's Node (they pass on Node 20 too: the package's engines say >=20).
PAPERCLIP_BIN := $(or $(CLAUDE_K8S_STAGE_CACHE),/var/cache/claude-k8s-stage)/paperclip/bin
test-unit:
	cargo test --workspace
	cd npm && PATH="$$( [ -x '$(PAPERCLIP_BIN)/node' ] && echo '$(PAPERCLIP_BIN):' )$$PATH" && export PATH && \
	  echo "npm tests on node $$(node --version)" && npm ci --ignore-scripts --no-audit --no-fund && npm test

## Bounded fuzzing on the stable toolchain (fuzz/run.sh): the request, config and transcript targets, FUZZ_SECONDS
## (30) each; a crash or panic fails it. Measured cold on a 2-core machine that other builds shared (load 5-8):
## cargo-fuzz install 2m30s, the targets' build 20m25s (14m23s CPU), fuzzing 1m33s; an idle machine should need
## about 10 minutes in all (the build's CPU time over two cores). Warm, after a change in the crate: 6m13s.
test-fuzz:
	fuzz/run.sh

test-cluster:
	$(STAGE)/run-cluster-tests.sh

## The host's Paperclip gets the stage's facts the way a real Deployment has them in its environment (its own pod,
## its credentials, the operator policy).
PAPERCLIP_ON_STAGE := set -a && source target/testcluster/stage.env && set +a && \
  CLAUDE_K8S_SELF_POD="$$SELF_POD" KUBECONFIG="$$KUBECONFIG_LIMITED" \
  CLAUDE_K8S_POLICY_FILE="$(CURDIR)/$(STAGE)/policy.yaml" $(STAGE)/paperclip.sh

## The Paperclip end-to-end suite: the packed adapter in a real Paperclip; heartbeats run on the stage.
test-paperclip: package
	cargo build -p fake-anthropic
	$(PAPERCLIP_ON_STAGE) test

## Paperclip itself in the cluster: deploy/ applied on the stage (with test/stage/incluster/, the stage's overlay),
## the real Paperclip in the pod, heartbeats with in-cluster auth; a restart of its pod mid-run.
test-incluster: package
	cargo build -p fake-anthropic
	$(STAGE)/incluster.sh test

## The Paperclip UI in a real browser (Debian's chromium, headless, playwright-core); screenshots in target/browser.
test-browser: package
	cargo build -p fake-anthropic
	$(PAPERCLIP_ON_STAGE) test test/stage/browser/*.test.mjs

test: setup-test lint test-unit test-fuzz test-cluster test-paperclip test-incluster test-browser

## The main job end to end (test/stage/demo.sh runs setup.sh demo as its first step).
demo:
	$(STAGE)/demo.sh

## Benchmarks on the real stage (not part of `make test`): bench/results.json (in process), bench/paperclip.json
## (heartbeats through the host's Paperclip) and BENCHMARKS.md rendered from both; BENCH_QUICK=1 is a smoke of it
## into target/bench. bench-paperclip measures the Paperclip part alone, bench-report renders BENCHMARKS.md again
## from the results already written (measuring nothing).
bench: package
	cargo build -p fake-anthropic
	$(STAGE)/run-bench.sh

bench-paperclip: package
	cargo build -p fake-anthropic
	BENCH_ONLY=paperclip $(STAGE)/run-bench.sh

bench-report:
	BENCH_ONLY=report $(STAGE)/run-bench.sh
