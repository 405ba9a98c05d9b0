//! `claude-k8s serve` speaks docs/protocol.md: checked against the real binary, no cluster needed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

struct Serve {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
}

impl Serve {
    fn start(env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_claude-k8s"));
        cmd.arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.env_remove("KUBECONFIG")
            .env_remove("CLAUDE_K8S_SELF_POD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn claude-k8s serve");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("non-JSON line {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn next(&self) -> Value {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from serve within 30 s")
    }

    /// The first message for `id` of the given types, skipping others.
    fn until(&self, id: &str, types: &[&str]) -> Value {
        loop {
            let v = self.next();
            if v["id"] == id && types.contains(&v["type"].as_str().unwrap_or("")) {
                return v;
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn says_hello_first_with_protocol_and_version() {
    let s = Serve::start(&[]);
    let hello = s.next();
    assert_eq!(
        hello,
        json!({"type": "hello", "protocol": 1, "version": env!("CARGO_PKG_VERSION")})
    );
}

#[test]
fn answers_garbage_and_unknown_requests_with_errors() {
    let mut s = Serve::start(&[]);
    s.next();
    s.send("this is not json");
    let e = s.next();
    assert_eq!(
        (e["type"].as_str(), e["id"].is_null(), e["code"].as_str()),
        (Some("error"), true, Some("bad_request"))
    );
    s.send(r#"{"type":"frobnicate","id":"f1"}"#);
    let e = s.next();
    assert_eq!(
        (e["id"].as_str(), e["code"].as_str()),
        (Some("f1"), Some("unknown_request"))
    );
    s.send(r#"{"type":"execute","id":"e1","params":{"runId":5}}"#);
    let e = s.next();
    assert_eq!(
        (e["id"].as_str(), e["code"].as_str()),
        (Some("e1"), Some("bad_request"))
    );
    // Cancelling an unknown id is a no-op; the service is still alive afterwards.
    s.send(r#"{"type":"cancel","id":"nobody"}"#);
    s.send(r#"{"type":"frobnicate","id":"f2"}"#);
    assert_eq!(s.next()["id"], "f2");
}

#[test]
fn a_bad_config_fails_the_run_before_anything_is_created() {
    let mut s = Serve::start(&[]);
    s.next();
    let req = json!({"type": "execute", "id": "r1", "params": {
        "runId": "run-1", "agent": {"id": "a", "companyId": "c", "name": "n"},
        "config": {"effort": "extreme"}, "prompt": {"fresh": "hi"}}});
    s.send(&req.to_string());
    let result = s.until("r1", &["result"]);
    assert_eq!(result["result"]["errorCode"], "invalid_config");
    assert!(
        result["result"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("low, medium, high")
    );
}

#[test]
fn runs_are_multiplexed_and_each_gets_one_result() {
    let mut s = Serve::start(&[("KUBECONFIG", "/nonexistent/kubeconfig")]);
    s.next();
    for id in ["a", "b", "c"] {
        let req = json!({"type": "execute", "id": id, "params": {
            "runId": id, "agent": {"id": id}, "config": {"kubeconfig": "/nonexistent/kubeconfig"}, "prompt": {"fresh": "hi"}}});
        s.send(&req.to_string());
    }
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 3 {
        let v = s.next();
        if v["type"] == "result" {
            assert!(
                seen.insert(
                    v["id"].as_str().unwrap().to_owned(),
                    v["result"]["errorCode"].clone()
                )
                .is_none()
            );
        }
    }
    assert!(
        seen.values().all(|code| code == "k8s_client_unavailable"),
        "{seen:?}"
    );
}

#[test]
fn test_environment_reports_an_unreachable_cluster_as_fail() {
    let mut s = Serve::start(&[]);
    s.next();
    s.send(r#"{"type":"test_environment","id":"t1","params":{"companyId":"c","adapterType":"claude_k8s","config":{"kubeconfig":"/nonexistent"}}}"#);
    let r = s.until("t1", &["result"]);
    assert_eq!(r["result"]["adapterType"], "claude_k8s");
    assert_eq!(r["result"]["status"], "fail");
    assert_eq!(r["result"]["checks"][0]["code"], "k8s_api_unreachable");
    assert!(r["result"]["testedAt"].is_string());
}

#[test]
fn shutdown_and_eof_exit_promptly_with_success() {
    let mut s = Serve::start(&[]);
    s.next();
    s.send(r#"{"type":"shutdown"}"#);
    assert!(wait_exit(&mut s.child).success());
    let mut s = Serve::start(&[]);
    s.next();
    drop(s.stdin.take());
    assert!(wait_exit(&mut s.child).success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("serve did not exit within 5 s");
}
