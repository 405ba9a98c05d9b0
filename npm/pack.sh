#!/usr/bin/env bash
# Builds the npm tarball: target/npm/paperclip-adapter-claude-k8s-<version>.tgz, with the release binary inside.
#
#   npm/pack.sh            (after `cargo build --release -p claude-k8s`; `make package` does both)
#
# The package is staged as a clean copy in target/npm/stage/ (the source tree is never modified), the binary is
# copied to bin/claude-k8s with mode 755, and `npm pack` writes the tarball. Checks: the package version equals
# the Cargo workspace version, the binary reports that version, the package has no install scripts, and the
# tarball holds the binary with its run bit. Env: CLAUDE_K8S_RELEASE_BINARY overrides the binary's path.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/npm"
OUT="$REPO/target/npm"
STAGE="$OUT/stage"
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

rm -rf "$STAGE"
mkdir -p "$STAGE/src" "$STAGE/bin"
cp "$SRC/package.json" "$STAGE/"
[[ -f "$SRC/README.md" ]] && cp "$SRC/README.md" "$STAGE/"
cp "$SRC"/src/*.js "$SRC"/src/*.cjs "$STAGE/src/"
install -m 0755 "$BINARY" "$STAGE/bin/claude-k8s"

name="paperclip-adapter-claude-k8s-$pkg_version.tgz"
rm -f "$OUT/$name"
(cd "$STAGE" && npm pack --silent --ignore-scripts --pack-destination "$OUT" >/dev/null) || die "npm pack failed"
[[ -f "$OUT/$name" ]] || die "npm pack did not write $OUT/$name"

listing="$(tar -tvzf "$OUT/$name")"
grep -Eq '^-rwxr-xr-x .* package/bin/claude-k8s$' <<<"$listing" ||
  die "package/bin/claude-k8s is missing from $name or has lost its run bit:"$'\n'"$listing"
for f in package/package.json package/src/index.js package/src/ui-parser.cjs; do
  grep -q " $f\$" <<<"$listing" || die "$f is missing from $name"
done
if grep -Eq ' package/(test|test-support)/' <<<"$listing"; then die "tests leaked into $name"; fi

echo "$OUT/$name"
