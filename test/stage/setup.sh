#!/usr/bin/env bash
# Everything `make demo` or `make test` needs on this machine, installed if missing (cached, idempotent) and
# brought up, one step at a time with its time. The first run on a fresh machine is slow (the Kubernetes build
# dominates); each step then only checks its cache and says so.
#
#   setup.sh demo   apt prerequisites, Kubernetes 1.20 binaries, Claude Code, Node 24 + Paperclip, the stage up
#   setup.sh test   the same plus the browser for the UI suite (Debian's chromium, playwright-core)
#
# Each step is the same command `make stage-install` / `make cluster-up` runs (the scripts own the details and
# the caches under ${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}); this script only orders them, tells
# which are cached, and times them. Needs root (apt, dockerd, the kubelet).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
what=${1:-}
case $what in
  demo | test) ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac

# Cold-run figures measured on this machine's kind (2 cores, Debian 12): what a first run should expect.
steps=(
  "apt prerequisites (Go, etcd, docker.io, runc, busybox, ...)|$here/cluster.sh installed|$here/cluster.sh install|about 30 s (apt-get update and the downloads)"
  "Kubernetes 1.20.2 binaries, built from Debian's source package|$here/cluster.sh built|$here/cluster.sh build|5 to 10 min on 2 cores (measured 5 min 20 s and 7 min 50 s)"
  "Claude Code CLI (pinned)|$here/claude-cli.sh installed|$here/claude-cli.sh install|about 10 s (one npm tarball)"
  "Node 24 and Paperclip 2026.916.1|$here/paperclip.sh installed|$here/paperclip.sh install|about 1 to 2 min (npm install of about 400 packages)"
)
if [ "$what" = test ]; then
  steps+=("browser for the UI suite (Debian's chromium, playwright-core)|$here/browser.sh installed|$here/browser.sh install|about 1 min (apt and one npm package)")
fi
steps+=("the local Kubernetes stage|$here/cluster.sh status|$here/cluster.sh up|about 30 s the first time (image tarballs), 16 s after")

total=${#steps[@]}
t_all=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { d = b - a; if (d < 60) printf "%.1f s", d; else printf "%d min %d s", d / 60, d % 60 }'; }
n=0
for s in "${steps[@]}"; do
  n=$((n + 1))
  IFS='|' read -r name check run usual <<<"$s"
  t0=$(date +%s.%N)
  if $check >/dev/null 2>&1; then
    echo "[setup $n/$total] $name: present"
    # Still run it: each step verifies its cache (a stamp, a version) in well under a second when present.
    $run >/dev/null
  else
    echo "[setup $n/$total] $name: not present yet, installing (first run: $usual)"
    $run
  fi
  echo "[setup $n/$total] $name: done in $(secs "$t0")"
done
echo "[setup] all $total steps done in $(secs "$t_all")"
