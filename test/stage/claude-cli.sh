#!/usr/bin/env bash
# The pinned real Claude Code CLI (native linux-x64 binary) for the test stage.
#
#   claude-cli.sh install   fetch + unpack (idempotent, safe to run concurrently)
#   claude-cli.sh installed exit 0 when the pinned version is installed
#   claude-cli.sh path      print the binary path
#   claude-cli.sh version   print the pinned version
#
# The binary ends up at ${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}/claude-code/bin/claude.
# It is fetched with `npm pack` (no install scripts run) and unpacked with tar.
set -euo pipefail

CLAUDE_CODE_VERSION="2.1.328"
CLAUDE_CODE_PACKAGE="@anthropic-ai/claude-code-linux-x64"

CACHE="${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}"
ROOT="$CACHE/claude-code"
BIN="$ROOT/bin/claude"
STAMP="$ROOT/.version"

log() { echo "claude-cli.sh: $*" >&2; }

installed() {
  [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$CLAUDE_CODE_VERSION" ]]
}

do_install() {
  mkdir -p "$ROOT"
  exec 9>"$ROOT/.lock"
  flock 9
  if installed; then
    return 0
  fi
  local tmp
  tmp="$(mktemp -d "$ROOT/.tmp.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  log "fetching $CLAUDE_CODE_PACKAGE@$CLAUDE_CODE_VERSION"
  (cd "$tmp" && npm pack --silent --ignore-scripts "$CLAUDE_CODE_PACKAGE@$CLAUDE_CODE_VERSION" >/dev/null)
  local tgz
  tgz="$(ls "$tmp"/*.tgz)"
  mkdir -p "$tmp/unpacked"
  tar -xzf "$tgz" -C "$tmp/unpacked"
  local src
  src="$(find "$tmp/unpacked" -type f -name claude | head -n1)"
  if [[ -z "$src" ]]; then
    log "no 'claude' binary in $tgz"
    exit 1
  fi
  chmod 0755 "$src"
  mkdir -p "$ROOT/bin"
  mv -f "$src" "$BIN.new"
  mv -f "$BIN.new" "$BIN"
  echo "$CLAUDE_CODE_VERSION" >"$STAMP.new"
  mv -f "$STAMP.new" "$STAMP"
  # Readable/executable by non-root users (the CLI refuses skip-permissions as root).
  chmod 0755 "$CACHE" "$ROOT" "$ROOT/bin" 2>/dev/null || true
  log "installed $BIN ($("$BIN" --version 2>/dev/null || echo '?'))"
}

case "${1:-}" in
  install) do_install ;;
  installed) installed ;;
  path) echo "$BIN" ;;
  version) echo "$CLAUDE_CODE_VERSION" ;;
  *)
    echo "usage: $0 install|installed|path|version" >&2
    exit 2
    ;;
esac
