#!/usr/bin/env bash
# `make bench`: the benchmarks of issues 8 and 15 on the real stage, then BENCHMARKS.md rendered from their results.
#
#   in process       crates/claude-k8s/tests/bench (built --release): bench/results.json, about 15 minutes (the
#                    300 s run and 100 pods dominate)
#   through Paperclip test/stage/bench/paperclip-bench.mjs: heartbeats through the host's real Paperclip, 8 of about
#                    10 s and 8 of about 60 s after a warm-up each: bench/paperclip.json, about 12 minutes
#   the report       BENCHMARKS.md from both (report.rs), keeping the part written by hand
#
# BENCH_ONLY=inside | paperclip | report runs one part (`report` measures nothing: it renders the results already
# written; `inside` and `paperclip` render the report after measuring). BENCH_QUICK=1 is a smoke of the same
# (3 runs per in-process figure, 2 heartbeats per length with shorter tool calls) into target/bench instead.
# Installs what is missing and brings the stage up first (test/stage/setup.sh demo). The Makefile's targets build
# what this needs first: the package (`make package`) and the fake Messages API (`cargo build -p fake-anthropic`).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

only=${BENCH_ONLY:-all}
case $only in
  all | inside | paperclip | report) ;;
  *)
    echo "[run-bench] BENCH_ONLY=$only: expected inside, paperclip or report (or unset for all)" >&2
    exit 2
    ;;
esac
if [ "${BENCH_QUICK:-}" = 1 ]; then out=target/bench; else out=bench; fi

# The bench binary, which also renders the report; cargo builds it on the first call.
bench_test() { cargo test --release -p claude-k8s --test bench -- --ignored --nocapture --exact "$@"; }

if [ "$only" != report ]; then
  test/stage/setup.sh demo
  # shellcheck disable=SC1091
  source target/testcluster/stage.env
  if [ "${TIER:-}" != real ]; then
    echo "[run-bench] WARNING: the stage runs the ${TIER:-unknown} tier: these figures are not the real thing" >&2
  fi
fi

if [ "$only" = all ] || [ "$only" = inside ]; then
  if [ -z "${AUDIT_LOG:-}" ]; then
    echo "[run-bench] the stage predates the audit log: restarting the API server with it" >&2
    test/stage/cluster.sh restart-apiserver
    echo "AUDIT_LOG=$STAGE_STATE/audit.log" >>target/testcluster/stage.env
  fi
  CLAUDE_K8S_REQUIRE_STAGE=1 bench_test bench
fi

if [ "$only" = all ] || [ "$only" = paperclip ]; then
  # The host's Paperclip gets the stage's facts as `make test-paperclip` gives them. It is (re)started here, so that
  # the adapter runs with exactly this environment and nothing of an earlier session's runs goes on beside the bench;
  # it is stopped again at the end unless it was running before.
  (
    export CLAUDE_K8S_SELF_POD="$SELF_POD" KUBECONFIG="$KUBECONFIG_LIMITED" \
      CLAUDE_K8S_POLICY_FILE="$root/test/stage/policy.yaml"
    was_running=0
    if test/stage/paperclip.sh status >/dev/null 2>&1; then was_running=1; fi
    test/stage/paperclip.sh restart
    eval "$(test/stage/paperclip.sh env)"
    export REPO_ROOT="$root" PAPERCLIP_URL=http://127.0.0.1:3100 PAPERCLIP_DATA_DIR=/paperclip \
      PAPERCLIP_SERVER_LOG="${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}/paperclip/run/server.log"
    rc=0
    node test/stage/bench/paperclip-bench.mjs install || rc=$?
    if [ "$rc" = 0 ]; then
      node test/stage/bench/paperclip-bench.mjs measure "$out/paperclip.json" || rc=$?
    fi
    if [ "$was_running" = 0 ]; then test/stage/paperclip.sh stop || true; fi
    exit "$rc"
  )
fi

bench_test report_only
