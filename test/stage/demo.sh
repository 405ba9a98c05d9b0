#!/usr/bin/env bash
# `make demo`: the main job end to end on the local stage, for a newcomer. Installs what is missing (cached) and
# brings up the real Kubernetes stage, builds and packs the adapter, starts a real Paperclip with the adapter
# installed, and runs one heartbeat of a claude_k8s agent as a Job: its live transcript, then the result Paperclip
# recorded. Each step says how long it took.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
t_step=
say() {
  done_step
  printf '\n\033[1m== %s\033[0m\n' "$*"
  t_step=$(date +%s.%N)
}
done_step() {
  [ -n "$t_step" ] && awk -v a="$t_step" -v b="$(date +%s.%N)" 'BEGIN { printf "   (step done in %.1f s)\n", b - a }'
  return 0
}

say "1/4 set-up: prerequisites (cached after the first run) and the Kubernetes stage (Kubernetes 1.20, dockerd, real kubelet)"
test/stage/setup.sh demo
set -a
# shellcheck disable=SC1091
source target/testcluster/stage.env
set +a

if [ -x target/release/claude-k8s ]; then
  say "2/4 the adapter package (Rust binary inside the npm tarball) and the fake Messages API"
else
  say "2/4 the adapter package (Rust binary inside the npm tarball) and the fake Messages API (first build of a clone: about 6 min on 2 cores)"
fi
make --no-print-directory package
cargo build -q -p fake-anthropic

say "3/4 a real Paperclip 2026.916.1 on 127.0.0.1:3100 (data dir /paperclip, the PVC's hostPath)"
CLAUDE_K8S_SELF_POD="$SELF_POD" KUBECONFIG="$KUBECONFIG_LIMITED" CLAUDE_K8S_POLICY_FILE="$root/test/stage/policy.yaml" \
  test/stage/paperclip.sh start
eval "$(test/stage/paperclip.sh env)"

say "4/4 one heartbeat of a claude_k8s agent"
REPO_ROOT="$root" \
  node test/stage/demo.mjs
done_step

cat <<EOT

The stage and Paperclip keep running: open http://127.0.0.1:3100 to see the run in the UI.
  claude-k8s jobs:   target/release/claude-k8s jobs --kubeconfig $KUBECONFIG_ADMIN
  stop everything:   test/stage/paperclip.sh stop && make cluster-down
EOT
