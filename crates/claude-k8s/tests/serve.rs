//! `claude-k8s serve` speaks docs/protocol.md: the golden corpus of test/protocol/ (see its README) replayed into
//! the real binary, where no cluster is needed. The shim's tests play the same files' answers to the shim, so both
//! sides are held to one record of the protocol.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

mod common;

/// The corpus files this test replays; every other file must say it was recorded on the stage.
const REPLAYED: [&str; 11] = [
    "handshake.jsonl",
    "eof.jsonl",
    "bad-requests.jsonl",
    "malformed-execute.jsonl",
    "config-error.jsonl",
    "no-cluster.jsonl",
    "invalid-utf8.jsonl",
    "lone-surrogates.jsonl",
    "over-long-lines.jsonl",
    "duplicate-ids.jsonl",
    "huge-numbers.jsonl",
];

struct Serve {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    fn start() -> Self {
        let (child, stdin, lines) = common::spawn_with_lines(
            Command::new(env!("CARGO_BIN_EXE_claude-k8s"))
                .arg("serve")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .env_remove("KUBECONFIG")
                .env_remove("CLAUDE_K8S_SELF_POD")
                // `hello` reports Bedrock from serve's own environment.
                .env_remove("CLAUDE_CODE_USE_BEDROCK")
                .env_remove("ANTHROPIC_BEDROCK_BASE_URL")
                // The operator policy lets the corpus's configs name their (missing) kubeconfig: refused by default.
                .env(
                    "CLAUDE_K8S_POLICY",
                    r#"{"kubeconfigs": ["/nonexistent", "/nonexistent/*"]}"#,
                )
                .env_remove("CLAUDE_K8S_POLICY_FILE"),
        );
        let stdin = Some(stdin);
        Self {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, line: impl AsRef<[u8]>) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line.as_ref()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn next(&self, file: &str) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{file}: no line from serve within 30 s"));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{file}: non-JSON line {line:?}: {e}"))
    }

    fn wait_exit(&mut self, file: &str) -> i32 {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{file}: serve did not exit within 10 s");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test/protocol")
}

/// The header and the entries of a corpus file. A `send` entry gets `"line"`: the request's text exactly as the
/// file has it (`{"send":<request>}`), since serve's error messages quote columns of the line.
fn load(file: &str) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(corpus_dir().join(file)).unwrap();
    let mut values = text.lines().filter(|l| !l.trim().is_empty()).map(|l| {
        let mut entry = serde_json::from_str::<Value>(l)
            .unwrap_or_else(|e| panic!("{file}: bad corpus line {l:?}: {e}"));
        if let Some(request) = l
            .trim()
            .strip_prefix(r#"{"send":"#)
            .and_then(|r| r.strip_suffix('}'))
        {
            entry["line"] = Value::from(request);
        }
        entry
    });
    let header = values.next().unwrap_or_else(|| panic!("{file} is empty"));
    (header, values.collect())
}

/// `message` with every volatile path (a JSON pointer) checked to exist and then blanked out.
fn without_volatile(file: &str, mut message: Value, volatile: &[Value]) -> Value {
    for path in volatile.iter().filter_map(Value::as_str) {
        let shown = message.to_string();
        let slot = message
            .pointer_mut(path)
            .unwrap_or_else(|| panic!("{file}: {path} missing in {shown}"));
        *slot = Value::Null;
    }
    message
}

/// Checks a block of answers: lines of different ids may interleave in any order, those of one id may not.
fn check_block(file: &str, serve: &Serve, expected: &[&Value]) {
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let volatile_of = |e: &Value| e["volatile"].as_array().cloned().unwrap_or_default();
    let mut volatile: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
    for entry in expected {
        let key = entry["recv"]["id"].to_string();
        want.entry(key.clone()).or_default().push(without_volatile(
            file,
            entry["recv"].clone(),
            &volatile_of(entry),
        ));
        volatile.entry(key).or_default().push(volatile_of(entry));
    }
    for _ in expected {
        let line = serve.next(file);
        let key = line["id"].to_string();
        let index = got.get(&key).map_or(0, Vec::len);
        let paths = volatile
            .get(&key)
            .and_then(|v| v.get(index))
            .unwrap_or_else(|| panic!("{file}: unexpected line {line}"));
        got.entry(key)
            .or_default()
            .push(without_volatile(file, line, paths));
    }
    assert_eq!(got, want, "{file}: the answers differ from the corpus");
}

/// `text` with each `\xNN` turned into the byte NN (for lines that are not UTF-8).
fn with_raw_bytes(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        match rest {
            [b'\\', b'x', hi, lo, tail @ ..] => {
                let hex = std::str::from_utf8(&[*hi, *lo]).unwrap().to_owned();
                bytes.push(u8::from_str_radix(&hex, 16).expect("\\xNN with two hex digits"));
                rest = tail;
            }
            [b, tail @ ..] => {
                bytes.push(*b);
                rest = tail;
            }
            [] => unreachable!(),
        }
    }
    bytes
}

/// `{"head", "fill", "tail", "bytes"}`: a line of exactly `bytes` bytes, `head` + `fill` repeated + `tail`.
fn long_line(file: &str, long: &Value) -> Vec<u8> {
    let part = |k: &str| {
        long[k]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: sendLong.{k}"))
    };
    let (head, fill, tail) = (part("head"), part("fill"), part("tail"));
    let bytes = long["bytes"].as_u64().expect("sendLong.bytes") as usize;
    let fills = bytes.saturating_sub(head.len() + tail.len()) / fill.len().max(1);
    let line = [head, &fill.repeat(fills), tail].concat().into_bytes();
    assert_eq!(line.len(), bytes, "{file}: sendLong does not add up");
    line
}

fn replay(file: &str) {
    let (header, entries) = load(file);
    assert_eq!(header["serve"], "replayed", "{file}: header {header}");
    let mut serve = Serve::start();
    let mut block: Vec<&Value> = Vec::new();
    let mut exited = false;
    for entry in &entries {
        if entry.get("recv").is_some() {
            block.push(entry);
            continue;
        }
        check_block(file, &serve, &block);
        block.clear();
        if entry.get("send").is_some() {
            let line = entry["line"].as_str();
            serve.send(
                line.unwrap_or_else(|| panic!("{file}: write a send entry as {{\"send\":...}}")),
            );
        } else if let Some(text) = entry["sendText"].as_str() {
            serve.send(text);
        } else if let Some(text) = entry["sendBytes"].as_str() {
            serve.send(with_raw_bytes(text));
        } else if let Some(long) = entry.get("sendLong") {
            serve.send(long_line(file, long));
        } else if entry["close"] == "stdin" {
            drop(serve.stdin.take());
        } else if let Some(code) = entry["exit"].as_i64() {
            assert_eq!(i64::from(serve.wait_exit(file)), code, "{file}: exit code");
            exited = true;
        } else {
            panic!("{file}: unknown corpus entry {entry}");
        }
    }
    check_block(file, &serve, &block);
    assert!(exited, "{file}: a replayed file ends with the child's exit");
    std::thread::sleep(Duration::from_millis(100));
    let extra: Vec<String> = serve.lines.try_iter().collect();
    assert!(
        extra.is_empty(),
        "{file}: lines the corpus does not have: {extra:?}"
    );
}

#[test]
fn handshake_and_shutdown() {
    replay("handshake.jsonl");
}

#[test]
fn stdin_eof_is_a_shutdown() {
    replay("eof.jsonl");
}

#[test]
fn garbage_and_unknown_requests_get_errors_and_serve_keeps_serving() {
    replay("bad-requests.jsonl");
}

#[test]
fn a_malformed_execute_is_answered_with_its_id() {
    replay("malformed-execute.jsonl");
}

#[test]
fn a_bad_config_fails_the_run_before_anything_is_created() {
    replay("config-error.jsonl");
}

#[test]
fn runs_without_a_cluster_are_multiplexed_and_each_gets_one_result() {
    replay("no-cluster.jsonl");
}

#[test]
fn lines_that_are_not_utf8_are_answered_and_skipped() {
    replay("invalid-utf8.jsonl");
}

#[test]
fn lone_surrogates_are_answered_with_the_id_and_the_escape() {
    replay("lone-surrogates.jsonl");
}

#[test]
fn over_long_lines_are_skipped_with_an_error_naming_their_id() {
    replay("over-long-lines.jsonl");
}

#[test]
fn a_used_id_is_refused_naming_it() {
    replay("duplicate-ids.jsonl");
}

#[test]
fn numbers_of_any_size_get_answers_and_nothing_panics() {
    replay("huge-numbers.jsonl");
}

#[test]
fn hello_names_this_binary_version() {
    let (_, entries) = load("handshake.jsonl");
    assert_eq!(entries[0]["recv"]["version"], env!("CARGO_PKG_VERSION"));
}

/// The recorded files (real exchanges from the stage, which need a cluster) are not replayed here, but each of
/// their requests, as the real shim sent it, must be one this binary reads.
#[test]
fn every_corpus_file_is_replayed_or_recorded_and_recorded_requests_parse() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    files.sort();
    for file in &files {
        let (header, entries) = load(file);
        match header["serve"].as_str() {
            Some("replayed") => assert!(
                REPLAYED.contains(&file.as_str()),
                "{file} is not in REPLAYED"
            ),
            Some("recorded") => {
                for request in entries.iter().filter_map(|e| e.get("send")) {
                    serde_json::from_value::<claude_k8s::serve::protocol::Request>(request.clone())
                        .unwrap_or_else(|e| panic!("{file}: {request} does not parse: {e}"));
                }
            }
            other => {
                panic!("{file}: header `serve` is {other:?}, not \"replayed\" or \"recorded\"")
            }
        }
    }
    for file in REPLAYED {
        assert!(files.iter().any(|f| f == file), "{file} is missing");
    }
}
