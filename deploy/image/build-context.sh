#!/usr/bin/env bash
# Prepares the build context of deploy/image/Dockerfile in target/adapter-image/ (`make adapter-image` runs it
# after `make package`): the packed adapter unpacked to package/ with its npm dependencies installed from the
# lock file (npm ci: the versions the tests ran with; needs the npm registry, once, here and not in the cluster),
# the Dockerfile and the registration script.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$REPO/target/adapter-image"
version="$(node -p 'require(process.argv[1]).version' "$REPO/npm/package.json")"
tarball="$REPO/target/npm/paperclip-adapter-claude-k8s-$version.tgz"
[[ -f "$tarball" ]] || { echo "build-context.sh: $tarball is missing: make package" >&2; exit 1; }
# Already prepared from this very tarball, lock file and these two files: nothing to do.
stamp="$(cat "$tarball" "$REPO/npm/package-lock.json" "$REPO/deploy/image/Dockerfile" "$REPO/deploy/image/register-adapter.mjs" | sha256sum)"
if [[ -f "$OUT/.stamp" && "$(cat "$OUT/.stamp")" == "$stamp" ]]; then
  echo "$OUT"
  exit 0
fi
rm -rf "$OUT"
mkdir -p "$OUT"
tar -xzf "$tarball" -C "$OUT"
cp "$REPO/npm/package-lock.json" "$OUT/package/"
(cd "$OUT/package" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
rm "$OUT/package/package-lock.json"
cp "$REPO/deploy/image/Dockerfile" "$REPO/deploy/image/register-adapter.mjs" "$REPO/deploy/image/.dockerignore" "$OUT/"
chmod -R a+rX "$OUT"
echo "$stamp" >"$OUT/.stamp"
echo "$OUT"
