#!/usr/bin/env bash
# `make bench`: the benchmarks of issue 8 on the real stage (crates/claude-k8s/tests/bench, built --release).
# Writes bench/results.json and BENCHMARKS.md; BENCH_QUICK=1 runs a 3-run smoke into target/bench instead.
# Brings the stage up first if it is not running. Takes about 15 minutes (the 300 s run and 100 pods dominate).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if ! test/stage/cluster.sh status >/dev/null 2>&1; then
  echo "[run-bench] the stage is not up: starting it (make cluster-up)" >&2
  test/stage/cluster.sh up
fi
# shellcheck disable=SC1091
source target/testcluster/stage.env
if [ "${TIER:-}" != real ]; then
  echo "[run-bench] WARNING: the stage runs the ${TIER:-unknown} tier: these figures are not the real thing" >&2
fi
if [ -z "${AUDIT_LOG:-}" ]; then
  echo "[run-bench] the stage predates the audit log: restarting the API server with it" >&2
  test/stage/cluster.sh restart-apiserver
  echo "AUDIT_LOG=$STAGE_STATE/audit.log" >>target/testcluster/stage.env
fi
export CLAUDE_K8S_REQUIRE_STAGE=1
cargo test --release -p claude-k8s --test bench -- --ignored --nocapture
