#!/usr/bin/env bash
# Runs the end-to-end tests that need the real stage: the stage tests (crates/claude-k8s/tests/stage, one binary) and
# the fake API's real-CLI tests. Brings the cluster up first if it is not running.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if ! test/stage/cluster.sh status >/dev/null 2>&1; then
  echo "[run-cluster-tests] the stage is not up: starting it (make cluster-up)" >&2
  test/stage/cluster.sh up
fi
# shellcheck disable=SC1091
source target/testcluster/stage.env
if [ "${TIER:-}" != real ]; then
  echo "[run-cluster-tests] WARNING: the stage runs the ${TIER:-unknown} tier, not a real kubelet" >&2
fi

export CLAUDE_K8S_REQUIRE_STAGE=1
export CLAUDE_BIN=${CLAUDE_BIN:-$(test/stage/claude-cli.sh path)}
# The real-CLI tests of the fake API (host processes, run as UID 1000 by the tests themselves).
cargo test -p fake-anthropic --test real_cli -- --include-ignored
# The stage tests but `resilience::` and `cli::` (the pipeline; configuration, checks and Bedrock; failures;
# instructions, skills and MCP tools; the simulated node's runs). Two tests at a time: each run is a pod on the one
# node. The scale baseline on the simulated node is a measurement, run by hand (tests/stage/sim_node.rs).
cargo test -p claude-k8s --test stage -- --ignored --test-threads 2 --skip resilience:: --skip cli:: --skip sim_node::scale_baseline
# `resilience::` (races, adoption, log resilience and masking), one test at a time: one of them restarts the API
# server.
cargo test -p claude-k8s --test stage -- --ignored --test-threads 1 resilience::
# `cli::` (the operator CLI: jobs, logs --follow, gc), one test at a time: gc deletes every finished Job in the
# namespace.
cargo test -p claude-k8s --test stage -- --ignored --test-threads 1 cli::
