#!/usr/bin/env bash
# The bounded fuzz run of `make test`: every target of fuzz/Cargo.toml for FUZZ_SECONDS (default 30) each, on the
# machine's stable toolchain (libFuzzer's coverage instrumentation is stable; AddressSanitizer is not, and the
# targets are safe Rust, so `-s none`, with debug assertions on: an overflow is a crash). A crash fails the run and
# leaves its input in fuzz/artifacts/<target>/ (replay it with `cargo fuzz run -s none <target> <file>`).
#
# cargo-fuzz is installed once, pinned, into the stage cache ($CLAUDE_K8S_STAGE_CACHE/cargo-fuzz) like the stage's
# other tools. The seeds are the golden protocol corpus's requests and configs and the stream-json fixtures,
# copied into fuzz/corpus/<target>/ (not committed) where libFuzzer also keeps what it finds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CACHE=${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}
CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-30}
bin=$CACHE/cargo-fuzz/bin/cargo-fuzz

if [ "$("$bin" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "[fuzz] installing cargo-fuzz $CARGO_FUZZ_VERSION into $CACHE/cargo-fuzz"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$CACHE/cargo-fuzz"
fi
export PATH="$CACHE/cargo-fuzz/bin:$PATH"

# Seeds: one file per request line and per config of the golden corpus, and the fixtures' lines as a log stream.
python3 - <<'PY'
import json, os, glob
def put(target, name, data):
    d = os.path.join("fuzz/corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
for path in sorted(glob.glob("test/protocol/*.jsonl")):
    base = os.path.basename(path)[:-len(".jsonl")]
    for i, line in enumerate(open(path, encoding="utf-8").read().splitlines()):
        if line.startswith('{"send":'):
            request = line[len('{"send":'):-1]
            put("request", f"{base}-{i}", request.encode())
            try:
                config = json.loads(request).get("params", {}).get("config")
            except ValueError:
                config = None
            if isinstance(config, dict):
                put("config", f"{base}-{i}", json.dumps(config).encode())
        elif line.startswith('{"sendText":'):
            put("request", f"{base}-{i}", json.loads(line)["sendText"].encode())
for path in sorted(glob.glob("test/fixtures/**/*.jsonl", recursive=True)):
    lines = open(path, "rb").read().splitlines()
    stream = b"".join(b"2026-11-25T07:00:%02d.%09dZ " % (i // 1000 % 60, i) + l + b"\n" for i, l in enumerate(lines))
    put("transcript", os.path.basename(path), stream)
PY

# One build of every target (their dependencies are shared). cargo-fuzz compiles a release build as one codegen
# unit per crate, for speed of the fuzzed code; several units build the crate's Kubernetes dependencies in a
# fraction of the time on two cores and cost the fuzzer little.
fuzz=(cargo fuzz run -s none --codegen-units 16)
mkdir -p fuzz/logs
start=$SECONDS
cargo fuzz build -s none --codegen-units 16 >fuzz/logs/build.log 2>&1 || { tail -n 60 fuzz/logs/build.log >&2; exit 1; }
echo "[fuzz] built the targets in $((SECONDS - start))s"
for target in $(cargo fuzz list); do
  echo "[fuzz] $target for ${seconds}s"
  log=fuzz/logs/$target.log
  if ! "${fuzz[@]}" "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1; then
    grep -vE '^#[0-9]+' "$log" | tail -n 60 >&2
    echo "[fuzz] $target FAILED: the input is in fuzz/artifacts/$target/, the log in $log" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$log" || true
done
echo "[fuzz] every target ran ${seconds}s without a crash"
