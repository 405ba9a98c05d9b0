#!/usr/bin/env bash
# The browser of the UI suite (test/stage/browser/): Debian's chromium, driven by playwright-core (no browser
# download of Playwright's own: it drives the system's /usr/bin/chromium).
#
#   browser.sh install     apt-get install chromium (and fonts for readable screenshots); npm install the pinned
#                          playwright-core into the cache (idempotent, safe to run concurrently)
#   browser.sh installed   exit 0 when both are there
#   browser.sh path        print the playwright-core package directory
#
# playwright-core lives in ${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}/browser/node_modules.
set -euo pipefail

PLAYWRIGHT_VERSION="1.65.1"
APT_PACKAGES=(chromium fonts-liberation)
CACHE="${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}"
ROOT="$CACHE/browser"
PW="$ROOT/node_modules/playwright-core"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "browser.sh: $*" >&2; }

missing_packages() {
  local p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

playwright_installed() {
  [[ -f "$PW/package.json" ]] && grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$PW/package.json"
}

installed() { [[ -z "$(missing_packages)" && -x /usr/bin/chromium ]] && playwright_installed; }

do_install() {
  mkdir -p "$ROOT"
  exec 9>"$ROOT/.lock"
  flock 9
  local missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} > 0)); then
    [[ "$(id -u)" == 0 ]] || { log "installing ${missing[*]} needs root"; exit 1; }
    log "apt-get install ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! playwright_installed; then
    # Paperclip's Node 24 and npm when test/stage/paperclip.sh installed them (the suite runs on them), else any npm.
    local path=$PATH
    eval "$("$HERE/paperclip.sh" env 2>/dev/null || true)"
    command -v npm >/dev/null || { PATH=$path; log "no npm: run test/stage/paperclip.sh install first"; exit 1; }
    log "npm install playwright-core@$PLAYWRIGHT_VERSION into $ROOT"
    [[ -f "$ROOT/package.json" ]] || echo '{"name":"claude-k8s-stage-browser","private":true}' >"$ROOT/package.json"
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing anyway; belt and braces.
    (cd "$ROOT" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error \
      "playwright-core@$PLAYWRIGHT_VERSION" >&2)
    PATH=$path
    chmod -R a+rX "$ROOT"
  fi
  installed || { log "chromium or playwright-core still missing after install"; exit 1; }
  log "chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright-core $PLAYWRIGHT_VERSION"
}

case "${1:-}" in
  install) do_install ;;
  installed) installed ;;
  path) echo "$PW" ;;
  *)
    echo "usage: $0 install|installed|path" >&2
    exit 2
    ;;
esac
