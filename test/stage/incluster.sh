#!/usr/bin/env bash
# Paperclip itself in the cluster, on the stage: deploy/ applied as an operator applies it, with the stage's
# overlay (test/stage/incluster/kustomization.yaml says what it changes and why); the real Paperclip runs in the
# Deployment's pod with the adapter from its image, and talks to the API server with its service account.
#
#   incluster.sh images   the stage's image: the agent image, a stage-only layer with the system libraries the
#                         cached Paperclip install needs, and the adapter layer of deploy/image/Dockerfile, built
#                         by the stage's dockerd (no registry anywhere); Paperclip is mounted from the cache
#   incluster.sh libs DIR the stage-only layer's tree in DIR (no stage needed; `images` builds it itself)
#   incluster.sh up       apply the overlay (kubectl 1.20's kustomize) with the stage's operator policy
#                         (test/stage/policy.yaml) and wait until the Paperclip pod is ready
#   incluster.sh down     delete the Deployment, the Service and the policy ConfigMap and wait for the pod to go
#                         (the namespace, the RBAC and the claim are the stage's own and stay)
#   incluster.sh logs     the Paperclip pod's log (its init container's first)
#   incluster.sh test [FILE...]  images, up, the suite (node:test files in test/stage/incluster/), down
#
# The pod is Paperclip on 127.0.0.1:3100 with its data dir /paperclip, like test/stage/paperclip.sh's server on
# the host: `test` stops that one first (they would share the port and the database), and puts the host's
# adapter record (/paperclip/adapter-plugins.json) back afterwards. Run under the stage lock.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OVERLAY=$HERE/incluster
# What is applied: the overlay plus the stage's operator policy. kustomize reads files only from below a
# kustomization's own directory, so the policy every stage suite runs with (test/stage/policy.yaml) is copied
# next to a generated layer over the overlay that replaces deploy/policy.yaml's ConfigMap with it.
APPLIED=$ROOT/target/incluster/applied
CACHE=${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}
NS=paperclip
IMAGE=local/paperclip-claude-k8s:stage
PLUGINS=/paperclip/adapter-plugins.json
SAVED=$ROOT/target/incluster/adapter-plugins.json.host

log() { echo "[incluster.sh $(date +%T)] $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

stage_env() {
  [ -f "$ROOT/target/testcluster/stage.env" ] || die "the stage is not up: make cluster-up"
  set -a
  # shellcheck disable=SC1091
  source "$ROOT/target/testcluster/stage.env"
  set +a
  K=("$KUBECTL" --kubeconfig "$KUBECONFIG_ADMIN" -n "$NS")
}
docker() { DOCKER_HOST=$STAGE_DOCKER_HOST command docker "$@"; }

# The stage's stand-in for Paperclip's image, which cannot be pulled here: the agent image (the real claude, bash,
# busybox, UID 1000), with Node 24 and Paperclip mounted from the cache by the overlay (a hostPath, stage only),
# one stage-only layer with the system libraries that install needs (below), and on it the adapter layer of
# deploy/image/Dockerfile, built by the stage's dockerd as an operator builds it.
cmd_images() {
  stage_env
  local t0=$SECONDS context out base=local/paperclip-base:stage
  [ "$CACHE" = /var/cache/claude-k8s-stage ] ||
    die "the overlay mounts Paperclip from /var/cache/claude-k8s-stage; CLAUDE_K8S_STAGE_CACHE=$CACHE is not supported here"
  "$HERE/paperclip.sh" install >/dev/null
  context=$ROOT/target/incluster/base-image
  rm -rf "$context"
  mkdir -p "$context"
  cmd_libs "$context/rootfs"
  printf 'ARG AGENT_IMAGE\nFROM ${AGENT_IMAGE}\nCOPY rootfs/ /\n' >"$context/Dockerfile"
  # The legacy builder of the stage's docker 20.10; no network (both Dockerfiles only copy).
  out=$(docker build --network none -q -t "$base" --build-arg "AGENT_IMAGE=$AGENT_IMAGE" "$context" 2>&1) ||
    { echo "$out" >&2; die "docker build of $base failed"; }
  context=$("$ROOT/deploy/image/build-context.sh")
  out=$(docker build --network none -q -t "$IMAGE" --build-arg "PAPERCLIP_IMAGE=$base" "$context" 2>&1) ||
    { echo "$out" >&2; die "docker build of $IMAGE failed"; }
  log "image ready in $((SECONDS - t0))s: $IMAGE ($AGENT_IMAGE, the system libraries of the cached Paperclip, deploy/image/Dockerfile's layer)"
}

# The stage-only layer's tree in $1: what the agent image lacks for Node and Paperclip's native parts (embedded
# PostgreSQL, image and ssh addons), i.e. every system library that ldd lists for the cached node binary and for
# the ELF files of the cached install, copied from this machine (where the cache was installed and runs), minus
# those the agent image already has. libstdc++ and libgcc_s are the ones Node itself needs. Libraries inside the
# install come with its mount; a prebuilt part for a newer glibc lists "lib: version ... not found", has no path
# to copy, and is unloadable anyway.
cmd_libs() {
  local r=${1:?usage: incluster.sh libs DIR} pc=$CACHE/paperclip agent have f lib n=0
  "$HERE/paperclip.sh" installed >/dev/null 2>&1 || die "Paperclip is not installed in $pc: test/stage/paperclip.sh install"
  # The agent image's tree, as test/stage/cluster.sh builds it (its files, to leave out).
  agent=$CACHE/images/agent-$("$HERE/claude-cli.sh" version).tar
  [ -f "$agent" ] || die "no agent image tree at $agent: make cluster-up"
  have=$(tar -tf "$agent" | sed 's#^\.##')
  mkdir -p "$r"
  while IFS= read -r lib; do
    [ -f "$lib" ] || continue
    grep -qxF "$lib" <<<"$have" && continue
    [ -e "$r$lib" ] && continue
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
    n=$((n + 1))
  done < <(
    {
      ldd "$(readlink -f "$pc/node/bin/node")"
      find "$pc/app" -type f \( -name '*.node' -o -name '*.so' -o -name '*.so.*' -o -perm -u+x \) -print0 |
        while IFS= read -r -d '' f; do
          [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] && { ldd "$f" 2>/dev/null || true; }
        done
    } | grep -oE '/[^ :()]+' | grep -v "^$pc/" | sort -u
  )
  chmod -R a+rX "$r"
  log "$n system libraries for the cached Paperclip in $r"
}

pod_name() {
  "${K[@]}" get pods -l app.kubernetes.io/component=server -o jsonpath='{.items[*].metadata.name}' 2>/dev/null
}

write_applied() {
  mkdir -p "$APPLIED"
  cp "$HERE/policy.yaml" "$APPLIED/policy.yaml"
  cat >"$APPLIED/kustomization.yaml" <<EOF
# Generated by test/stage/incluster.sh: the stage's overlay with the stage's operator policy.
bases:
- $(realpath --relative-to="$APPLIED" "$OVERLAY")
configMapGenerator:
- name: claude-k8s-policy
  behavior: replace
  files:
  - policy.yaml
EOF
}

cmd_up() {
  stage_env
  local t0=$SECONDS
  write_applied
  "${K[@]}" apply -k "$APPLIED" >/dev/null
  # The rollout waits for the startup and readiness probes (/api/health), i.e. Paperclip serves.
  if ! "${K[@]}" rollout status deployment/paperclip --timeout=300s >/dev/null; then
    "${K[@]}" describe pods -l app.kubernetes.io/component=server | tail -25 >&2 || true
    cmd_logs | tail -40 >&2 || true
    die "the Paperclip Deployment did not become ready"
  fi
  log "Paperclip runs in pod $(pod_name) (ready after $((SECONDS - t0))s)"
}

cmd_down() {
  stage_env
  "${K[@]}" delete deployment/paperclip service/paperclip --ignore-not-found --wait=true >/dev/null
  # The policy ConfigMaps of earlier applies (each content has its own hashed name).
  local cm
  for cm in $("${K[@]}" get configmaps -o name 2>/dev/null | grep '^configmap/claude-k8s-policy-' || true); do
    "${K[@]}" delete "$cm" --ignore-not-found >/dev/null
  done
  local i
  for i in $(seq 1 120); do
    [ -z "$("${K[@]}" get pods -l app.kubernetes.io/component=server -o name 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  die "the Paperclip pod is still there 60 s after its Deployment was deleted"
}

cmd_logs() {
  stage_env
  local pod
  for pod in $("${K[@]}" get pods -l app.kubernetes.io/component=server -o name 2>/dev/null); do
    echo "--- $pod (init container register-adapter)"
    "${K[@]}" logs "$pod" -c register-adapter 2>&1 || true
    echo "--- $pod (paperclip)"
    "${K[@]}" logs "$pod" -c paperclip --tail="${1:-200}" 2>&1 || true
  done
}

restore_host_record() {
  [ -f "$SAVED" ] || return 0
  if [ -s "$SAVED" ]; then cp "$SAVED" "$PLUGINS"; else rm -f "$PLUGINS"; fi
  chown 1000:1000 "$PLUGINS" 2>/dev/null || true
  rm -f "$SAVED"
}

cmd_test() {
  if ! "$HERE/cluster.sh" status >/dev/null 2>&1; then
    log "the stage is not up: starting it"
    "$HERE/cluster.sh" up
  fi
  stage_env
  "$HERE/paperclip.sh" install >/dev/null
  if "$HERE/paperclip.sh" status >/dev/null 2>&1; then
    log "Paperclip runs on the host (port 3100, data dir /paperclip): stopping it for the in-cluster server"
    "$HERE/paperclip.sh" stop
  fi
  mkdir -p "$(dirname "$SAVED")"
  if [ -f "$PLUGINS" ]; then cp "$PLUGINS" "$SAVED"; else : >"$SAVED"; fi
  local rc=0
  (
    trap 'cmd_down || true' EXIT
    cmd_images
    cmd_down
    cmd_up
    local files=("$@")
    if ((${#files[@]} == 0)); then mapfile -t files < <(find "$OVERLAY" -maxdepth 1 -name '*.test.mjs' | sort); fi
    eval "$("$HERE/paperclip.sh" env)"
    PAPERCLIP_URL=http://127.0.0.1:3100 REPO_ROOT="$ROOT" PAPERCLIP_INCLUSTER=1 \
      timeout --kill-after=10 "${PAPERCLIP_TEST_TIMEOUT:-900}" \
      node --test --test-concurrency=1 --test-reporter=spec "${files[@]}" || {
      local r=$?
      log "the in-cluster suite failed (rc $r)"
      cmd_logs 80 >&2
      exit "$r"
    }
  ) || rc=$?
  restore_host_record
  return "$rc"
}

case "${1:-}" in
  images) cmd_images ;;
  libs) cmd_libs "${2:-}" ;;
  up) cmd_up ;;
  down) cmd_down ;;
  logs) cmd_logs "${2:-200}" ;;
  test)
    shift
    cmd_test "$@"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
