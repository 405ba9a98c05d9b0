#!/usr/bin/env bash
# The project's real Kubernetes test stage: a single-node Kubernetes v1.20.2 built from Debian bookworm's
# `kubernetes` source package, with Debian's etcd and docker.io, everything on 127.0.0.1.
#
#   cluster.sh install   apt prerequisites, deb-src entries (root; idempotent, quiet)
#   cluster.sh installed exit 0 when `install` has nothing to do; `cluster.sh built` likewise for `build`
#   cluster.sh build     kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl into
#                        $CACHE/k8s/bin (cached; about 5-10 min cold on 2 cores)
#   cluster.sh up        start etcd, apiserver, controller-manager, scheduler, dockerd, kubelet; load the local
#                        images; create namespace `paperclip`, RBAC, PVC, Secrets, ConfigMap and the stand-in
#                        `paperclip` pod; write target/testcluster/{admin,limited}.kubeconfig and stage.env
#   cluster.sh down      stop everything this script started (by pid file), unmount, remove the state dir
#   cluster.sh status    what is running; exit 0 only when the stage is up
#   cluster.sh restart-apiserver   stop kube-apiserver and start it again (log-resilience tests)
#   cluster.sh sim-node up|down|status   the simulated node `sim-0` beside the real one (crates/sim-node; scale
#                        tests): start it (building it if needed), stop it and remove its Node and pods, report
#
# Env: CLAUDE_K8S_STAGE_CACHE (binaries and image tarballs, default /var/cache/claude-k8s-stage),
#      CLAUDE_K8S_STAGE_STATE (runtime state, default /tmp/claude-k8s-stage),
#      CLAUDE_K8S_SIM_NODE, CLAUDE_K8S_SIM_NODE_ARGS (the simulated node's binary and extra flags).
# See test/stage/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}
STATE=${CLAUDE_K8S_STAGE_STATE:-/tmp/claude-k8s-stage}
BIN=$CACHE/k8s/bin
IMAGES=$CACHE/images
OUT=$ROOT/target/testcluster
MANIFESTS=$HERE/cluster
P=$STATE/pki

K8S_UPSTREAM=1.20.2
API_PORT=16443
ETCD_PORT=23790
ETCD_PEER_PORT=23800
KUBELET_PORT=10250
CM_PORT=10257
SCHED_PORT=10259
# Service ClusterIPs are virtual (there is no kube-proxy). A loopback range means that even a client that dials
# a ClusterIP (e.g. KUBERNETES_SERVICE_HOST) stays on this machine instead of following the default route.
SERVICE_CIDR=127.96.0.0/16
NS=paperclip
BUSYBOX_IMAGE=local/busybox:1
PAUSE_IMAGE=local/pause:1
REPLAY_IMAGE=local/claude-replay:1
AGENT_REPO=local/claude-agent
PAPERCLIP_DIR=/paperclip
# Every pull from a registry off this machine goes to a dead loopback port and fails at once.
# shellcheck disable=SC2054 # the commas are inside NO_PROXY's value
PROXY_ENV=(HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9
  https_proxy=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost)
export DOCKER_HOST=unix://$STATE/docker.sock
# Components in start order; down stops them in reverse.
COMPONENTS=(etcd apiserver controller-manager scheduler dockerd kubelet sim-node)
APT_PACKAGES=(golang-go golang-github-modern-go-reflect2-dev dpkg-dev make rsync xz-utils jq openssl curl
  ca-certificates etcd-server docker.io runc busybox-static bash iproute2 util-linux procps)

log() { echo "[cluster.sh $(date +%T)] $*" >&2; }
die() { echo "[cluster.sh $(date +%T)] ERROR: $*" >&2; exit 1; }
kubectl_admin() { "$BIN/kubectl" --kubeconfig "$STATE/admin.kubeconfig" "$@"; }
api() { curl -s --max-time 5 --cacert "$P/ca.crt" -H "Authorization: Bearer $(admin_token)" "https://127.0.0.1:$API_PORT$1"; }
# Debian's docker.io client matches its dockerd (any newer client negotiates the API version down, too).
docker() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }
remove_containers() { # every container of the stage's dockerd (pods' containers and sandboxes)
  local ids
  ids=$(docker ps -aq 2>/dev/null) || return 0
  # shellcheck disable=SC2086 # one id per word
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
}
admin_token() { cut -d, -f1 "$P/tokens.csv" | head -1; }
claude_version() {
  if [ -x "$HERE/claude-cli.sh" ]; then "$HERE/claude-cli.sh" version; else echo 2.1.328; fi
}
agent_image() { echo "$AGENT_REPO:$(claude_version)"; }
alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------------- install
cmd_install() {
  [ "$(id -u)" = 0 ] || die "install needs root"
  local added=0 missing=()
  # `apt-get source` needs deb-src entries mirroring the machine's own deb entries (same archive, same suites).
  if ! has_deb_src; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
        >/etc/apt/sources.list.d/debian-src.sources
    elif grep -qs '^deb ' /etc/apt/sources.list; then
      sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >/etc/apt/sources.list.d/debian-src.list
    else
      die "no Debian apt sources found to derive deb-src entries from"
    fi
    added=1
  fi
  mapfile -t missing < <(missing_packages)
  if [ "$added" = 1 ] || [ ${#missing[@]} -gt 0 ] || { ! built && ! apt_has_source; }; then
    log "apt-get update"
    apt-get update -qq >/dev/null
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  log "apt prerequisites present"
}
# The apt packages of APT_PACKAGES (and npm, when there is none) that are not installed.
missing_packages() {
  local pkgs=("${APT_PACKAGES[@]}") p
  # test/stage/claude-cli.sh fetches Claude Code with `npm pack`; take Debian's npm only if there is none at all.
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}
has_deb_src() { grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; }
# `install` has nothing to do: the deb-src entries and every package are there.
cmd_installed() { has_deb_src && [ -z "$(missing_packages)" ]; }
apt_has_source() { apt-cache showsrc kubernetes 2>/dev/null | grep -q "^Version: .*$K8S_UPSTREAM"; }

# ---------------------------------------------------------------------------------------------------- build
built() {
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do [ -x "$BIN/$b" ] || return 1; done
  [ -f "$BIN/.built" ]
}

cmd_build() {
  built && { log "Kubernetes binaries cached in $BIN ($(head -1 "$BIN/.built"))"; return 0; }
  mkdir -p "$CACHE/k8s"
  exec 8>"$CACHE/k8s/.lock"
  flock 8
  built && { log "Kubernetes binaries cached in $BIN"; return 0; }
  apt_has_source || die "no kubernetes $K8S_UPSTREAM source package in apt: run '$0 install' first"
  local t0=$SECONDS src=$CACHE/k8s/src
  rm -rf "$src"
  mkdir -p "$src"
  log "apt-get source kubernetes (Debian's 1.20.2 tree with vendor/ and Debian's patches)"
  (cd "$src" && apt-get source -qq kubernetes >"$src/source.log" 2>&1) || { tail -20 "$src/source.log"; die "apt-get source failed"; }
  local tree
  tree=$(find "$src" -maxdepth 1 -type d -name "kubernetes-*$K8S_UPSTREAM" | head -1)
  [ -n "$tree" ] || die "the kubernetes source package is not upstream $K8S_UPSTREAM: $(ls "$src")"
  local debver
  debver=$(cd "$tree" && dpkg-parsechangelog -S Version)
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes" # as debian/rules does
  # The vendored reflect2 v1.0.1 is incompatible with Go >= 1.18: kube-apiserver dies with a SIGSEGV in
  # runtime.mapiternext under json-iterator seconds after start. Swap in Debian's reflect2 1.0.2.
  local r2=/usr/share/gocode/src/github.com/modern-go/reflect2
  [ -f "$r2/reflect2.go" ] || die "$r2 missing: run '$0 install' first"
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  mkdir -p "$tree/vendor/github.com/modern-go/reflect2"
  cp "$r2"/*.go "$r2"/*.s "$tree/vendor/github.com/modern-go/reflect2/"
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' "$tree/go.mod" "$tree/vendor/modules.txt"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl in $tree (5-10 min on 2 cores; log $src/build.log)"
  (cd "$tree" && env "${PROXY_ENV[@]}" GOPATH="$tree/.go" GOPROXY=off CGO_ENABLED=0 HOME="$src/home" \
    GOCACHE="$src/go-build" make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kubectl" \
    >"$src/build.log" 2>&1) || { tail -30 "$src/build.log"; die "build failed (log: $src/build.log)"; }
  local tmp=$CACHE/k8s/bin.new
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp "$tree"/_output/local/bin/linux/amd64/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kubectl} "$tmp/"
  printf 'kubernetes %s (upstream %s), vendored reflect2 1.0.2, %s, built %s in %ss\n' "$debver" "$K8S_UPSTREAM" \
    "$(go version | cut -d' ' -f3)" "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >"$tmp/.built"
  rm -rf "$BIN"
  mv "$tmp" "$BIN"
  rm -rf "$src" # keep only the binaries (~400 MB)
  log "built in $((SECONDS - t0))s: $(head -1 "$BIN/.built")"
}

# ---------------------------------------------------------------------------------------------------- images
ensure_claude() {
  local c=$CACHE/claude-code/bin/claude
  [ -x "$c" ] && return 0
  if [ -x "$HERE/claude-cli.sh" ]; then
    "$HERE/claude-cli.sh" install
  else
    # Same place and method as test/stage/claude-cli.sh: npm pack (no install scripts) + tar.
    local v tmp
    v=$(claude_version)
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent --ignore-scripts "@anthropic-ai/claude-code-linux-x64@$v" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp"
    mkdir -p "$CACHE/claude-code/bin"
    install -m 0755 "$(find "$tmp" -type f -name claude | head -1)" "$c"
    echo "$v" >"$CACHE/claude-code/.version"
    rm -rf "$tmp"
  fi
  [ -x "$c" ] || die "no Claude Code binary at $c"
}

copy_with_libs() { # rootfs, binary, destination path inside the rootfs
  local r=$1 b=$2 dest=$3 lib
  mkdir -p "$r$(dirname "$dest")"
  cp "$b" "$r$dest"
  chmod 0755 "$r$dest"
  for lib in $(ldd "$b" | grep -oE '/[^ ]+' | sort -u); do
    [ -e "$r$lib" ] && continue
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
  done
}

busybox_rootfs() { # dir: /bin/busybox with every applet, /usr/bin/env
  local r=$1 a
  mkdir -p "$r/bin" "$r/usr/bin" "$r/tmp" "$r/etc"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
  ln -sf /bin/busybox "$r/usr/bin/env"
  chmod 1777 "$r/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  # The pause container and the stand-in pod: sleep forever, but exit at once on SIGTERM (a plain `sleep` as PID 1
  # ignores it, which would make every pod deletion wait out its grace period).
  printf '#!/bin/sh\ntrap "exit 0" TERM INT\nsleep 2147483647 &\nwait\n' >"$r/bin/sleep-forever"
  chmod 0755 "$r/bin/sleep-forever"
}

# The agent image's tree in dir: Claude Code (native, glibc), busybox as /bin/sh and applets, bash (Claude Code's
# Bash tool accepts only bash or zsh), the glibc libraries both need (from ldd), users root and agent (1000:1000,
# home /paperclip), a writable /tmp.
agent_rootfs() {
  local r=$1
  busybox_rootfs "$r"
  copy_with_libs "$r" "$CACHE/claude-code/bin/claude" /usr/local/bin/claude
  copy_with_libs "$r" /bin/bash /bin/bash
  printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/paperclip:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n' >"$r/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$r/etc/nsswitch.conf"
  mkdir -p "$r/root" "$r/paperclip"
  chmod 0700 "$r/root"
  chown 1000:1000 "$r/paperclip"
  chmod 0775 "$r/paperclip"
}

# Builds the rootfs tarballs once per (busybox, Claude Code) version into $CACHE/images; `up` imports them.
build_image_tars() {
  ensure_claude
  mkdir -p "$IMAGES"
  exec 7>"$IMAGES/.lock"
  flock 7
  local bbver cver stamp
  bbver=$(dpkg-query -W -f='${Version}' busybox-static)
  cver=$(claude_version)
  stamp="busybox $bbver; claude $cver; bash $(dpkg-query -W -f='${Version}' bash); replay $(sha256sum <"$HERE/images/claude-replay.sh" | cut -c1-16); image-layout 2"
  if [ -f "$IMAGES/busybox.tar" ] && [ -f "$IMAGES/agent-$cver.tar" ] && [ -f "$IMAGES/replay.tar" ] &&
    [ "$(cat "$IMAGES/.stamp-$cver" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  log "building image rootfs tarballs in $IMAGES"
  local tmp=$IMAGES/tmp
  rm -rf "$tmp"
  mkdir -p "$tmp/busybox" "$tmp/agent"
  busybox_rootfs "$tmp/busybox"
  tar --numeric-owner -C "$tmp/busybox" -cf "$IMAGES/busybox.tar.new" .
  local r=$tmp/agent
  agent_rootfs "$r"
  tar --numeric-owner -C "$r" -cf "$IMAGES/agent-$cver.tar.new" .
  # The replay image: the agent image's users and layout with test/stage/images/claude-replay.sh as `claude`
  # (a stand-in that prints stream-json shapes quickly; for log-resilience tests and the scale benchmark).
  local rr=$tmp/replay
  mkdir -p "$rr"
  busybox_rootfs "$rr"
  copy_with_libs "$rr" /bin/bash /bin/bash
  install -D -m 0755 "$HERE/images/claude-replay.sh" "$rr/usr/local/bin/claude"
  cp "$r/etc/passwd" "$r/etc/group" "$rr/etc/"
  mkdir -p "$rr/root" "$rr/paperclip"
  chmod 0700 "$rr/root"
  chown 1000:1000 "$rr/paperclip"
  tar --numeric-owner -C "$rr" -cf "$IMAGES/replay.tar.new" .
  mv "$IMAGES/replay.tar.new" "$IMAGES/replay.tar"
  mv "$IMAGES/busybox.tar.new" "$IMAGES/busybox.tar"
  mv "$IMAGES/agent-$cver.tar.new" "$IMAGES/agent-$cver.tar"
  echo "$stamp" >"$IMAGES/.stamp-$cver"
  rm -rf "$tmp"
}

load_images() {
  local cver
  cver=$(claude_version)
  docker import -c 'ENTRYPOINT ["/bin/sleep-forever"]' "$IMAGES/busybox.tar" "$PAUSE_IMAGE" >/dev/null
  docker import -c 'CMD ["/bin/sh"]' "$IMAGES/busybox.tar" "$BUSYBOX_IMAGE" >/dev/null
  docker import -c 'USER 1000:1000' -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'ENV SHELL=/bin/bash' \
    -c 'WORKDIR /paperclip' -c 'CMD ["/bin/sh"]' "$IMAGES/agent-$cver.tar" "$(agent_image)" >/dev/null
  docker import -c 'USER 1000:1000' -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'WORKDIR /paperclip' \
    -c 'CMD ["/bin/sh"]' "$IMAGES/replay.tar" "$REPLAY_IMAGE" >/dev/null
}

# ---------------------------------------------------------------------------------------------------- up
start() { # name, command... (its own session, so it outlives the shell that started it; pid file = its pid)
  local name=$1
  shift
  rm -f "$STATE/$name.pid"
  # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
  # No descriptor beyond stdio is inherited: under `flock LOCK cluster.sh up` every daemon would keep the lock.
  # (No redirection around the loop: bash would park stderr on a descriptor above 2, the loop would close that
  # copy, and the daemon's stderr would stay /dev/null. Closing a descriptor that is not open is no error.)
  setsid bash -c 'echo $$ >"$0"; for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; exec "$@"' \
    "$STATE/$name.pid" "$@" >"$STATE/$name.log" 2>&1 </dev/null &
  local i
  for i in $(seq 1 50); do [ -s "$STATE/$name.pid" ] && return 0; sleep 0.1; done
  die "$name did not start"
}

wait_for() { # seconds, description, command...
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && { log "$what after $((i / 2))s"; return 0; }
    sleep 0.5
  done
  log "$what: not after ${secs}s"
  return 1
}

kubeconfig() { # user token namespace
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: claude-k8s-stage
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$P/ca.crt")
users:
- name: $1
  user:
    token: $2
contexts:
- name: $1@claude-k8s-stage
  context: {cluster: claude-k8s-stage, user: $1, namespace: $3}
current-context: $1@claude-k8s-stage
EOF
}

make_pki() {
  mkdir -p "$P"
  chmod 0700 "$P"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.crt" -days 3650 -subj /CN=claude-k8s-stage-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$P/apiserver.key" -out "$P/apiserver.csr" -subj /CN=kube-apiserver 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.96.0.1\n' >"$P/ext"
  openssl x509 -req -in "$P/apiserver.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -out "$P/apiserver.crt" \
    -days 3650 -extfile "$P/ext" 2>/dev/null
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
  openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
  # Static bearer tokens, fresh per `up`. `limited` is in no group: it has exactly what RBAC binds to it
  # (test/stage/cluster/limited-rbac.yaml) plus the defaults every authenticated user gets (discovery, SSAR/SSRR).
  local t1 t2 t3
  t1=admin-$(openssl rand -hex 16) t2=limited-$(openssl rand -hex 16) t3=node-$(openssl rand -hex 16)
  cat >"$P/tokens.csv" <<EOF
$t1,admin,1,"system:masters"
$t2,limited,2
$t3,system:node:localhost,3,"system:nodes"
EOF
  kubeconfig admin "$t1" default >"$STATE/admin.kubeconfig"
  kubeconfig limited "$t2" "$NS" >"$STATE/limited.kubeconfig"
  kubeconfig system:node:localhost "$t3" default >"$STATE/node.kubeconfig"
  chmod 0600 "$STATE"/*.kubeconfig
}

start_apiserver() {
  # The audit log counts the adapter's API requests for `make bench` (requests of service accounts and of the
  # `limited` user only, metadata level: no bodies, no secrets).
  cat >"$STATE/audit-policy.yaml" <<'AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["limited"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
AUDIT
  start apiserver env "${PROXY_ENV[@]}" "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port=$API_PORT --insecure-port=0 --advertise-address=127.0.0.1 \
    --endpoint-reconciler-type=none --cert-dir="$STATE/apiserver-certs" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --token-auth-file="$P/tokens.csv" --authorization-mode=Node,RBAC \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=$SERVICE_CIDR \
    --allow-privileged=true --kubelet-preferred-address-types=Hostname,InternalIP \
    --feature-gates=TTLAfterFinished=true --profiling=false \
    --audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$STATE/audit.log" \
    --audit-log-maxsize=200 --audit-log-maxbackup=1
  wait_for 60 "apiserver ready" bash -c "[ \"\$(curl -s --max-time 2 --cacert '$P/ca.crt' -H 'Authorization: Bearer $(admin_token)' https://127.0.0.1:$API_PORT/readyz)\" = ok ]" ||
    { tail -20 "$STATE/apiserver.log" >&2; die "kube-apiserver did not become ready (log: $STATE/apiserver.log)"; }
}

start_control_plane() {
  start etcd env "${PROXY_ENV[@]}" etcd --name stage --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "stage=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" --enable-pprof=false
  start_apiserver
  local K=$STATE/admin.kubeconfig
  start controller-manager env "${PROXY_ENV[@]}" "$BIN/kube-controller-manager" --kubeconfig="$K" \
    --authentication-kubeconfig="$K" --authorization-kubeconfig="$K" \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --use-service-account-credentials=false --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=$CM_PORT --port=0 --profiling=false \
    --feature-gates=TTLAfterFinished=true --flex-volume-plugin-dir="$STATE/flexvolume" \
    --pvclaimbinder-sync-period=2s
  start scheduler env "${PROXY_ENV[@]}" "$BIN/kube-scheduler" --kubeconfig="$K" --authentication-kubeconfig="$K" \
    --authorization-kubeconfig="$K" --leader-elect=false --bind-address=127.0.0.1 --secure-port=$SCHED_PORT --port=0 \
    --profiling=false
}

node_ready() {
  api /api/v1/nodes/localhost | jq -e '.status | objects | .conditions[]? | select(.type=="Ready" and .status=="True")' >/dev/null
}

# The real tier: dockerd + kubelet (dockershim). Returns non-zero when this machine cannot run them.
start_real_node() {
  # runc wrapper: a sandbox without CAP_SYS_RESOURCE cannot lower oom_score_adj, so the -998 that the kubelet sets
  # on every pod sandbox makes runc fail ("can't get final child's PID from pipe: EOF"). Clamp negatives to 0.
  cat >"$STATE/runc-nooom" <<'EOF'
#!/bin/bash
b=""; a=("$@")
for ((i=0; i<${#a[@]}; i++)); do case "${a[$i]}" in --bundle|-b) b="${a[$((i+1))]}";; --bundle=*) b="${a[$i]#--bundle=}";; esac; done
if [ -n "$b" ] && [ -f "$b/config.json" ]; then
  jq -c 'if (.process.oomScoreAdj // 0) < 0 then .process.oomScoreAdj = 0 else . end' "$b/config.json" >"$b/config.json.tmp" && mv "$b/config.json.tmp" "$b/config.json"
fi
exec /usr/sbin/runc "$@"
EOF
  chmod +x "$STATE/runc-nooom"
  echo '{}' >"$STATE/daemon.json"
  # Pods with dnsPolicy Default (or ClusterFirst, which falls back to it: there is no cluster DNS) get this
  # resolv.conf instead of the machine's, whose nameserver is not on loopback. Nothing listens on 127.0.0.1:53,
  # so a lookup fails at once on this machine.
  printf 'nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n' >"$STATE/resolv.conf"
  # No iptables rules, no masquerading, no ip_forward sysctl, no docker0 bridge (--bridge=none): containers get
  # no network of their own, so no private-range address exists; the pods we run are hostNetwork. A dead loopback
  # proxy for every pull (NO_PROXY keeps a registry on 127.0.0.1 reachable for pull tests).
  start dockerd env "${PROXY_ENV[@]}" dockerd --config-file "$STATE/daemon.json" \
    --data-root "$STATE/docker" --exec-root "$STATE/docker-exec" -H "$DOCKER_HOST" --pidfile "$STATE/dockerd.pid.own" \
    --iptables=false --ip-masq=false --ip-forward=false --bridge=none --userland-proxy=false \
    --add-runtime "runc-nooom=$STATE/runc-nooom" --default-runtime runc-nooom
  wait_for 30 "dockerd ready" docker info || { tail -20 "$STATE/dockerd.log" >&2; return 1; }
  # The images load while the kubelet registers (it needs the pause image only for the first pod).
  load_images &
  local loader=$!
  mkdir -p "$STATE/kubelet"
  start kubelet env "${PROXY_ENV[@]}" "$BIN/kubelet" --kubeconfig="$STATE/node.kubeconfig" --hostname-override=localhost \
    --container-runtime=docker --docker-endpoint="$DOCKER_HOST" --pod-infra-container-image=$PAUSE_IMAGE \
    --root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet/pki" --volume-plugin-dir="$STATE/kubelet/volume-plugins" \
    --experimental-dockershim-root-directory="$STATE/dockershim" \
    --address=127.0.0.1 --port=$KUBELET_PORT --read-only-port=0 --healthz-port=0 \
    --anonymous-auth=true --authorization-mode=AlwaysAllow \
    --fail-swap-on=false --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= \
    --eviction-hard='memory.available<1Mi,nodefs.available<1%,imagefs.available<1%' \
    --image-gc-high-threshold=100 --image-gc-low-threshold=99 --resolv-conf="$STATE/resolv.conf" \
    --cluster-domain=cluster.local --serialize-image-pulls=false --node-status-update-frequency=4s
  wait "$loader" || { log "docker import failed"; return 1; }
  log "images loaded: $BUSYBOX_IMAGE $PAUSE_IMAGE $(agent_image) $REPLAY_IMAGE"
  wait_for 90 "node Ready" node_ready || { tail -20 "$STATE/kubelet.log" >&2; return 1; }
}

apply_objects() {
  mkdir -p "$PAPERCLIP_DIR"
  chown 1000:1000 "$PAPERCLIP_DIR"
  chmod 0775 "$PAPERCLIP_DIR"
  # The project's deploy manifests, exactly as an operator applies them, then what only the stage has.
  local d=$ROOT/deploy
  kubectl_admin apply -f "$d/namespace.yaml" -f "$d/serviceaccount.yaml" -f "$d/role.yaml" -f "$d/rolebinding.yaml" \
    -f "$d/clusterrole-self-review.yaml" \
    -f "$MANIFESTS/limited-rbac.yaml" -f "$MANIFESTS/storage.yaml" -f "$MANIFESTS/config.yaml" >/dev/null
}

apply_pod() {
  # Pods need the namespace's default ServiceAccount and its token Secret (1.20 admission) first.
  wait_for 30 "ServiceAccount $NS/default has its token" bash -c \
    "[ -n \"\$('$BIN/kubectl' --kubeconfig '$STATE/admin.kubeconfig' -n $NS get sa default -o jsonpath='{.secrets[0].name}')\" ]" ||
    die "no token for ServiceAccount $NS/default"
  # The claim binds while the node starts (the PV controller; takes up to ~15 s).
  wait_for 60 "PVC paperclip-data Bound" bash -c \
    "[ \"\$('$BIN/kubectl' --kubeconfig '$STATE/admin.kubeconfig' -n $NS get pvc paperclip-data -o jsonpath='{.status.phase}')\" = Bound ]" ||
    die "PVC paperclip-data did not bind"
  sed "s#@AGENT_IMAGE@#$(agent_image)#g" "$MANIFESTS/paperclip-pod.yaml" | kubectl_admin apply -f - >/dev/null
}

pod_running() {
  [ "$(kubectl_admin -n $NS get pod paperclip -o jsonpath='{.status.phase}' 2>/dev/null)" = Running ]
}

write_outputs() { # tier
  mkdir -p "$OUT"
  # World-readable on purpose (throwaway tokens of a loopback-only cluster): tests and Paperclip run the adapter
  # as UID 1000 with these.
  install -m 0644 "$STATE/admin.kubeconfig" "$OUT/admin.kubeconfig"
  install -m 0644 "$STATE/limited.kubeconfig" "$OUT/limited.kubeconfig"
  cat >"$OUT/stage.env.new" <<EOF
# Written by test/stage/cluster.sh up at $(date -u +%FT%TZ). Facts about the running stage; shell-sourcable.
KUBECONFIG_ADMIN=$OUT/admin.kubeconfig
KUBECONFIG_LIMITED=$OUT/limited.kubeconfig
AGENT_IMAGE=$(agent_image)
BUSYBOX_IMAGE=$BUSYBOX_IMAGE
PAUSE_IMAGE=$PAUSE_IMAGE
REPLAY_IMAGE=$REPLAY_IMAGE
TIER=$1
CLAUDE_VERSION=$(claude_version)
CLAUDE_BIN=$CACHE/claude-code/bin/claude
KUBECTL=$BIN/kubectl
K8S_VERSION=v$K8S_UPSTREAM
APISERVER=https://127.0.0.1:$API_PORT
NAMESPACE=$NS
PVC=paperclip-data
PVC_HOST_PATH=$PAPERCLIP_DIR
SELF_POD=$NS/paperclip
STAGE_STATE=$STATE
STAGE_DOCKER_HOST=$DOCKER_HOST
AUDIT_LOG=$STATE/audit.log
EOF
  mv "$OUT/stage.env.new" "$OUT/stage.env"
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "up needs root"
  if [ -d "$STATE" ]; then
    if cmd_status >/dev/null 2>&1; then
      log "the stage is already up ($STATE); refreshing $OUT"
      write_outputs "$(cat "$STATE/tier")"
      return 0
    fi
    log "a stale or partial stage is in $STATE: taking it down first"
    cmd_down
  fi
  local t0=$SECONDS
  cmd_install
  cmd_build
  build_image_tars
  for port in $API_PORT $ETCD_PORT $ETCD_PEER_PORT $KUBELET_PORT $CM_PORT $SCHED_PORT; do
    if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "127.0.0.1:$port is already in use"; fi
  done
  mkdir -p "$STATE"
  chmod 0755 "$STATE"
  make_pki
  start_control_plane
  apply_objects

  # Only the real tier: a stage without containers could not run one of the suites (they test the real claude
  # CLI in real pods), so a machine where dockerd or the kubelet cannot run fails here, with the logs that say why.
  # (The simulated node for scale tests is an addition beside the real node: `sim-node up`.)
  local tier=real
  if ! { start_real_node && apply_pod && wait_for 90 "stand-in pod $NS/paperclip Running" pod_running; }; then
    kubectl_admin -n $NS describe pod paperclip 2>/dev/null | tail -15 >&2 || true
    die "the real kubelet tier cannot run on this machine (dockerd, the kubelet or the first pod failed); logs in $STATE"
  fi
  echo "$tier" >"$STATE/tier"
  write_outputs "$tier"
  log "stage up in $((SECONDS - t0))s, TIER=$tier; kubeconfigs and stage.env in $OUT"
}

# ---------------------------------------------------------------------------------------------------- down
wait_gone() { # names... (up to 20 s, then SIGKILL)
  local n i
  for n in "$@"; do
    [ -f "$STATE/$n.pid" ] || continue
    local pid
    pid=$(cat "$STATE/$n.pid")
    for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$n ($pid) still running after 20s: SIGKILL"
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

# Stops kube-apiserver and starts it again with the same flags (the log-resilience test's "API server restart":
# every watch and log stream of the adapter breaks, and the apiserver is away for a few seconds).
cmd_restart_apiserver() {
  alive apiserver || die "the apiserver is not running (make cluster-up)"
  kill "$(cat "$STATE/apiserver.pid")" 2>/dev/null || true
  wait_gone apiserver
  log "apiserver stopped; starting it again"
  cp "$STATE/apiserver.log" "$STATE/apiserver.before-restart.log" 2>/dev/null || true
  start_apiserver
  log "apiserver ready again"
}

cmd_down() {
  if [ ! -d "$STATE" ]; then
    rm -f "$OUT/stage.env" "$OUT/admin.kubeconfig" "$OUT/limited.kubeconfig"
    log "nothing to stop ($STATE does not exist)"
    return 0
  fi
  local n
  for n in sim-node kubelet scheduler controller-manager apiserver; do
    if alive "$n"; then kill "$(cat "$STATE/$n.pid")" 2>/dev/null || true; fi
  done
  wait_gone sim-node kubelet scheduler controller-manager apiserver
  if alive dockerd; then
    remove_containers
    kill "$(cat "$STATE/dockerd.pid")" 2>/dev/null || true
    wait_gone dockerd
  fi
  # If dockerd left anything behind: its containers' processes (their shims then exit) and its containerd.
  local f
  for f in "$STATE"/docker-exec/containerd/daemon/io.containerd.runtime.v2.task/moby/*/init.pid \
    "$STATE"/docker-exec/containerd/containerd.pid; do
    if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
      log "left behind: pid $(cat "$f") ($f): SIGKILL"
      kill -9 "$(cat "$f")" 2>/dev/null || true
    fi
  done
  if alive etcd; then kill "$(cat "$STATE/etcd.pid")" 2>/dev/null || true; fi
  wait_gone etcd
  # kubelet bind-mounts its root dir and pod volumes, docker its overlays and netns: unmount all under $STATE.
  local m
  for i in 1 2 3; do
    m=$(awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r)
    [ -z "$m" ] && break
    echo "$m" | xargs -r -n1 umount -l 2>/dev/null || true
  done
  # The kubelet's container log links live in fixed places (/var/log/pods, /var/log/containers); drop ours.
  find /var/log/pods -type l -lname "$STATE/*" -delete 2>/dev/null || true
  find /var/log/pods -mindepth 1 -type d -empty -delete 2>/dev/null || true
  find /var/log/containers -xtype l -lname '/var/log/pods/*' -delete 2>/dev/null || true
  rm -rf "$STATE"
  # Their tokens and CA died with the state: stale copies would only give confusing connection errors.
  rm -f "$OUT/stage.env" "$OUT/admin.kubeconfig" "$OUT/limited.kubeconfig"
  log "stage down ($STATE removed; $PAPERCLIP_DIR and $CACHE kept)"
}

# ---------------------------------------------------------------------------------------------------- status
cmd_status() {
  [ -d "$STATE" ] || { echo "stage: down ($STATE does not exist)"; return 1; }
  local tier ok=0 n
  tier=$(cat "$STATE/tier" 2>/dev/null || echo starting)
  echo "stage: state $STATE, tier $tier"
  local need=(etcd apiserver controller-manager scheduler)
  case $tier in
    real) need+=(dockerd kubelet) ;;
    *) ok=1 ;;
  esac
  for n in "${COMPONENTS[@]}"; do
    if alive "$n"; then
      printf '  %-19s running (pid %s)\n' "$n" "$(cat "$STATE/$n.pid")"
    elif [ -f "$STATE/$n.pid" ] || [[ " ${need[*]} " == *" $n "* ]]; then
      printf '  %-19s NOT running\n' "$n"
      [[ " ${need[*]} " == *" $n "* ]] && ok=1
    fi
  done
  if [ -f "$P/tokens.csv" ] && [ "$(api /readyz)" = ok ]; then
    echo "  apiserver           https://127.0.0.1:$API_PORT ready"
    if node_ready; then echo "  node localhost      Ready"; else echo "  node localhost      NOT Ready"; ok=1; fi
    echo "  stand-in pod        $NS/paperclip $(kubectl_admin -n $NS get pod paperclip -o jsonpath='{.status.phase}' 2>/dev/null || echo absent)"
  else
    echo "  apiserver           NOT ready"
    ok=1
  fi
  [ -f "$OUT/stage.env" ] && echo "  stage.env           $OUT/stage.env"
  return $ok
}

# ---------------------------------------------------------------------------------------------------- sim-node
# The simulated node (crates/sim-node) for scale tests, beside the real node: Node `sim-0`, tainted
# node.claude-k8s.io/simulated=true:NoSchedule (only pods that tolerate it land there), kubelet API on
# https://127.0.0.1:10260. It plays each pod from a recorded transcript of test/fixtures/claude-2.1.328 instead
# of running containers. It reports as `admin` (like the controller-manager): the audit log, which counts the
# adapter's requests for `make bench`, stays the adapter's alone. See test/stage/README.md.
SIM_NODE=sim-0
SIM_PORT=10260
SIM_TRANSCRIPTS=$ROOT/test/fixtures/claude-2.1.328

sim_node_bin() { # the binary: $CLAUDE_K8S_SIM_NODE, else a release build of this tree (cargo: a no-op when fresh)
  if [ -n "${CLAUDE_K8S_SIM_NODE:-}" ]; then
    [ -x "$CLAUDE_K8S_SIM_NODE" ] || die "CLAUDE_K8S_SIM_NODE=$CLAUDE_K8S_SIM_NODE is not an executable"
    echo "$CLAUDE_K8S_SIM_NODE"
    return 0
  fi
  command -v cargo >/dev/null 2>&1 || die "no cargo to build crates/sim-node (or set CLAUDE_K8S_SIM_NODE)"
  log "cargo build --release -p sim-node"
  # In a clean environment: under `cargo test` (a stage test calling `sim-node up`) cargo's variables would
  # change the build's fingerprints, and every call would rebuild everything (3 min here).
  local keep=(PATH="$PATH" HOME="$HOME") v
  for v in CARGO_HOME RUSTUP_HOME; do [ -z "${!v:-}" ] || keep+=("$v=${!v}"); done
  (cd "$ROOT" && env -i "${keep[@]}" cargo build --release --quiet -p sim-node) >&2 || die "cargo build -p sim-node failed"
  echo "$ROOT/target/release/sim-node"
}

sim_node_ready() {
  api "/api/v1/nodes/$SIM_NODE" | jq -e '.status | objects | .conditions[]? | select(.type=="Ready" and .status=="True")' >/dev/null &&
    [ "$(curl -sk --max-time 2 "https://127.0.0.1:$SIM_PORT/healthz")" = ok ]
}

sim_node_pods() { # namespace/name of every pod bound to the simulated node
  kubectl_admin get pods -A --field-selector "spec.nodeName=$SIM_NODE" \
    -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}' 2>/dev/null
}

cmd_sim_node_up() {
  cmd_status >/dev/null 2>&1 || die "the stage is not up: run '$0 up' first"
  if alive sim-node && sim_node_ready; then
    log "simulated node $SIM_NODE already up (pid $(cat "$STATE/sim-node.pid"), https://127.0.0.1:$SIM_PORT)"
    return 0
  fi
  if alive sim-node; then
    log "simulated node running but not Ready: restarting it"
    kill "$(cat "$STATE/sim-node.pid")" 2>/dev/null || true
    wait_gone sim-node
  fi
  if (echo >"/dev/tcp/127.0.0.1/$SIM_PORT") 2>/dev/null; then die "127.0.0.1:$SIM_PORT is already in use"; fi
  local bin
  bin=$(sim_node_bin)
  # Its serving certificate, from the stage's CA (the API server does not verify kubelet certificates here).
  if [ ! -s "$P/sim-node.crt" ]; then
    openssl req -newkey rsa:2048 -nodes -keyout "$P/sim-node.key" -out "$P/sim-node.csr" -subj "/CN=$SIM_NODE" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' >"$P/sim-node.ext"
    openssl x509 -req -in "$P/sim-node.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -out "$P/sim-node.crt" \
      -days 3650 -extfile "$P/sim-node.ext" 2>/dev/null
  fi
  # shellcheck disable=SC2086 # CLAUDE_K8S_SIM_NODE_ARGS is a list of flags
  # No proxy variables: it talks only to the API server on loopback (and kube refuses a proxy it cannot use).
  start sim-node env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy "$bin" --kubeconfig "$STATE/admin.kubeconfig" --node-name "$SIM_NODE" \
    --listen "127.0.0.1:$SIM_PORT" --tls-cert "$P/sim-node.crt" --tls-key "$P/sim-node.key" \
    --transcripts "$SIM_TRANSCRIPTS" ${CLAUDE_K8S_SIM_NODE_ARGS:-}
  wait_for 30 "simulated node $SIM_NODE Ready" sim_node_ready ||
    { tail -20 "$STATE/sim-node.log" >&2; die "the simulated node did not become Ready (log: $STATE/sim-node.log)"; }
}

# Stops the process, then removes what it leaves in the API: pods still bound to it (force; a Job that still
# exists makes a new pod, which stays Pending: delete the Job), its Node and its Lease.
cmd_sim_node_down() {
  [ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  if alive sim-node; then kill "$(cat "$STATE/sim-node.pid")" 2>/dev/null || true; fi
  wait_gone sim-node
  rm -f "$STATE/sim-node.pid"
  [ -f "$P/tokens.csv" ] && [ "$(api /readyz)" = ok ] || { log "simulated node stopped (the apiserver is not up)"; return 0; }
  local left
  left=$(sim_node_pods)
  if [ -n "$left" ]; then
    log "removing $(echo "$left" | wc -l) pods still on $SIM_NODE: $(echo "$left" | head -5 | tr '\n' ' ')"
    kubectl_admin delete pods -A --field-selector "spec.nodeName=$SIM_NODE" --force --grace-period=0 >/dev/null 2>&1 || true
  fi
  kubectl_admin delete node "$SIM_NODE" --ignore-not-found >/dev/null
  kubectl_admin -n kube-node-lease delete lease "$SIM_NODE" --ignore-not-found >/dev/null
  log "simulated node $SIM_NODE down"
}

cmd_sim_node_status() {
  local ok=0
  if alive sim-node; then
    echo "sim-node: running (pid $(cat "$STATE/sim-node.pid"), https://127.0.0.1:$SIM_PORT, log $STATE/sim-node.log)"
  else
    echo "sim-node: NOT running"
    ok=1
  fi
  if [ -f "$P/tokens.csv" ] && [ "$(api /readyz)" = ok ]; then
    if sim_node_ready; then echo "  node $SIM_NODE         Ready"; else echo "  node $SIM_NODE         NOT Ready"; ok=1; fi
    echo "  pods on it          $(sim_node_pods | grep -c . || true)"
  else
    echo "  apiserver           NOT ready"
    ok=1
  fi
  return $ok
}

cmd_sim_node() {
  case "${1:-}" in
    up) cmd_sim_node_up ;;
    down) cmd_sim_node_down ;;
    status) cmd_sim_node_status ;;
    *)
      echo "usage: $0 sim-node up|down|status" >&2
      exit 2
      ;;
  esac
}

case "${1:-}" in
  install) cmd_install ;;
  installed) cmd_installed ;;
  built) built ;;
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  restart-apiserver) cmd_restart_apiserver ;;
  sim-node) cmd_sim_node "${2:-}" ;;
  *)
    echo "usage: $0 install|installed|build|built|up|down|status|restart-apiserver|sim-node up|down|status" >&2
    exit 2
    ;;
esac
