#!/usr/bin/env bash
# Builds the npm tarball: target/npm/paperclip-adapter-claude-k8s-<version>.tgz, with the release binary inside.
#
#   npm/pack.sh            (after `cargo build --release -p claude-k8s`; `make package` does both)
#
# The package is staged as a clean copy in target/npm/stage/ (the source tree is never modified): the shim's
# modules npm/src/*.js bundled by esbuild into the one entry file src/index.js, src/ui-parser.cjs as it is (Paperclip
# serves it to the UI on its own), and the release binary at bin/claude-k8s with mode 755; `npm pack` writes the
# tarball. One entry file because Paperclip's reload (`POST /api/adapters/:type/reload`, or an install from
# another path) imports the entry again under a new URL, while Node keeps every module it imported before by its
# URL: sibling modules would stay those of the version the server loaded first. The bundle imports only Node's
# builtins and the package's dependencies (@paperclipai/adapter-utils, from Paperclip's install).
#
# esbuild comes from npm/package-lock.json (a devDependency), installed with `npm ci` into target/npm/build-deps/
# once per lock file (needs the npm registry or npm's cache the first time).
#
# Checks: the package version equals the Cargo workspace version, the binary reports that version, the package
# has no install scripts, the bundle imports nothing but builtins and dependencies, it loads and exports what
# npm/src/index.js exports and its adapter has the same keys (npm/check-bundle.mjs), and the tarball holds exactly
# package.json, README.md, the bundle, the UI parser and the binary with its run bit. Env: CLAUDE_K8S_RELEASE_BINARY
# overrides the binary's path.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/npm"
OUT="$REPO/target/npm"
STAGE="$OUT/stage"
BUILD_DEPS="$OUT/build-deps"
BINARY="${CLAUDE_K8S_RELEASE_BINARY:-$REPO/target/release/claude-k8s}"

die() {
  echo "npm/pack.sh: $*" >&2
  exit 1
}

command -v node >/dev/null || die "node is required"
command -v npm >/dev/null || die "npm is required"

cargo_version="$(awk '
  /^\[/ { section = $0 }
  section == "[workspace.package]" && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
' "$REPO/Cargo.toml")"
[[ -n "$cargo_version" ]] || die "no [workspace.package] version in $REPO/Cargo.toml"
pkg_version="$(node -p 'require(process.argv[1]).version' "$SRC/package.json")"
[[ "$pkg_version" == "$cargo_version" ]] ||
  die "npm/package.json version $pkg_version differs from the Cargo workspace version $cargo_version"

# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
  const pkg = require(process.argv[1]);
  const bad = ["preinstall", "install", "postinstall", "prepare", "prepack", "postpack"].filter((s) => pkg.scripts?.[s]);
  if (bad.length) { console.error(`npm/package.json must have no install scripts: ${bad.join(", ")}`); process.exit(1); }
' "$SRC/package.json" || die "install scripts found"

[[ -f "$BINARY" ]] || die "no binary at $BINARY: run 'cargo build --release -p claude-k8s' (or 'make package')"
[[ -x "$BINARY" ]] || die "$BINARY is not executable"
binary_version="$("$BINARY" --version 2>/dev/null | awk '{print $2}')"
[[ "$binary_version" == "$cargo_version" ]] ||
  die "$BINARY reports version '${binary_version:-?}', expected $cargo_version (stale build?)"

# esbuild at the lock file's version: `npm ci` again only when the lock file or package.json changed.
deps_stamp="$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum)"
ESBUILD="$BUILD_DEPS/node_modules/.bin/esbuild"
if [[ ! -x "$ESBUILD" || ! -f "$BUILD_DEPS/.stamp" || "$(cat "$BUILD_DEPS/.stamp")" != "$deps_stamp" ]]; then
  echo "npm/pack.sh: installing esbuild from npm/package-lock.json into $BUILD_DEPS" >&2
  rm -rf "$BUILD_DEPS"
  mkdir -p "$BUILD_DEPS"
  cp "$SRC/package.json" "$SRC/package-lock.json" "$BUILD_DEPS/"
  (cd "$BUILD_DEPS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
    die "npm ci in $BUILD_DEPS failed (esbuild, a devDependency in npm/package-lock.json)"
  echo "$deps_stamp" >"$BUILD_DEPS/.stamp"
fi

rm -rf "$STAGE"
mkdir -p "$STAGE/src" "$STAGE/bin"
cp "$SRC/package.json" "$STAGE/"
cp "$SRC/README.md" "$STAGE/"
# --packages=external: the dependencies stay imports (Paperclip installs them beside the package); Node's builtins
# are external on --platform=node. The entry keeps its place (src/index.js), so the paths the shim derives from
# import.meta.url (../package.json, ../bin/claude-k8s, the skills' module dir) are those of the source tree.
"$ESBUILD" "$SRC/src/index.js" --bundle --platform=node --format=esm --target=node20 --packages=external \
  --metafile="$OUT/bundle-meta.json" --outfile="$STAGE/src/index.js" --log-level=warning ||
  die "esbuild could not bundle $SRC/src/index.js"
cp "$SRC/src/ui-parser.cjs" "$STAGE/src/"
install -m 0755 "$BINARY" "$STAGE/bin/claude-k8s"

node "$SRC/check-bundle.mjs" "$OUT/bundle-meta.json" "$STAGE/src/index.js" "$SRC/src/index.js" "$STAGE/package.json" ||
  die "the bundle check failed (npm/check-bundle.mjs)"

name="paperclip-adapter-claude-k8s-$pkg_version.tgz"
rm -f "$OUT/$name"
(cd "$STAGE" && npm pack --silent --ignore-scripts --pack-destination "$OUT" >/dev/null) || die "npm pack failed"
[[ -f "$OUT/$name" ]] || die "npm pack did not write $OUT/$name"

listing="$(tar -tvzf "$OUT/$name")"
grep -Eq '^-rwxr-xr-x .* package/bin/claude-k8s$' <<<"$listing" ||
  die "package/bin/claude-k8s is missing from $name or has lost its run bit:"$'\n'"$listing"
expected="package/README.md
package/bin/claude-k8s
package/package.json
package/src/index.js
package/src/ui-parser.cjs"
files="$(tar -tzf "$OUT/$name" | LC_ALL=C sort)"
[[ "$files" == "$expected" ]] ||
  die "$name must hold exactly:"$'\n'"$expected"$'\n'"but holds:"$'\n'"$files"

echo "$OUT/$name"
