//! A driver for the real `claude-k8s serve` binary, as the shim drives it (docs/protocol.md).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use super::{RunRecord, Stage, stage_policy};

/// The real `claude-k8s serve`, driven as the shim drives it.
pub struct Serve {
    child: Child,
    stdin: ChildStdin,
    messages: mpsc::UnboundedReceiver<(Value, std::time::SystemTime)>,
    records: HashMap<String, RunRecord>,
    next_id: u32,
}

impl Serve {
    pub fn start(stage: &Stage) -> Self {
        Self::start_with_env(stage, &[])
    }

    /// Like [`Serve::start`], with extra environment for the serve process (e.g. shorter time limits, or another
    /// stand-in pod as the adapter's own: `CLAUDE_K8S_SELF_POD`).
    pub fn start_with_env(stage: &Stage, env: &[(&str, &str)]) -> Self {
        // The defaults first, so that `env` can replace any of them. The stage's operator policy allows what
        // its runs need beyond the secure default; a test of a refusal sets its own.
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_claude-k8s"))
            .arg("serve")
            .env("CLAUDE_K8S_SELF_POD", "paperclip/paperclip")
            .env("KUBECONFIG", &stage.limited_kubeconfig)
            .env("CLAUDE_K8S_LOG", "info")
            .env("CLAUDE_K8S_POLICY_FILE", stage_policy())
            .env_remove("CLAUDE_K8S_POLICY")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn claude-k8s serve");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, messages) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let message =
                    serde_json::from_str::<Value>(&line).expect("serve writes JSON lines");
                // Stamped on arrival, not when a test gets around to reading it.
                let _ = tx.send((message, std::time::SystemTime::now()));
            }
        });
        Self {
            child,
            stdin,
            messages,
            records: HashMap::new(),
            next_id: 0,
        }
    }

    pub async fn send_execute(&mut self, params: &Value) -> String {
        self.next_id += 1;
        let id = format!("e{}", self.next_id);
        let line = json!({"type": "execute", "id": id, "params": params}).to_string() + "\n";
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.records.insert(id.clone(), RunRecord::default());
        id
    }

    pub async fn cancel(&mut self, id: &str) {
        let line = json!({"type": "cancel", "id": id}).to_string() + "\n";
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// Sends `test_environment` as the shim does and returns the AdapterEnvironmentTestResult.
    pub async fn test_environment(&mut self, config: &Value) -> Value {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        let params =
            json!({"companyId": "company-e2e", "adapterType": "claude_k8s", "config": config});
        let line =
            json!({"type": "test_environment", "id": id, "params": params}).to_string() + "\n";
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.records.insert(id.clone(), RunRecord::default());
        self.wait_result(&id).await.result
    }

    /// Takes one message into the records; false on timeout.
    async fn pump(&mut self, timeout: Duration) -> bool {
        let Ok(Some((m, at))) = tokio::time::timeout(timeout, self.messages.recv()).await else {
            return false;
        };
        let id = m["id"].as_str().unwrap_or_default().to_owned();
        let Some(rec) = self.records.get_mut(&id) else {
            return true;
        };
        match m["type"].as_str() {
            Some("log") => {
                rec.logs.push((
                    m["stream"].as_str().unwrap().into(),
                    m["chunk"].as_str().unwrap().into(),
                ));
                rec.log_at.push(at);
            }
            Some("meta") => rec.meta = Some(m["meta"].clone()),
            Some("result") => {
                rec.result = m["result"].clone();
                rec.result_at = Some(at);
            }
            Some("error") => rec.result = json!({"protocolError": m}),
            _ => {}
        }
        true
    }

    pub async fn wait_for_log(
        &mut self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.records[id].logs.iter().any(|(_, c)| pred(c)) {
                return true;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.pump(left).await {
                return false;
            }
        }
    }

    pub async fn wait_result(&mut self, id: &str) -> RunRecord {
        self.wait_result_within(id, Duration::from_secs(300)).await
    }

    pub async fn wait_result_within(&mut self, id: &str, limit: Duration) -> RunRecord {
        let deadline = tokio::time::Instant::now() + limit;
        while self.records[id].result.is_null() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero() && self.pump(left).await,
                "no result for {id} within {} s",
                limit.as_secs()
            );
        }
        self.records.remove(id).unwrap()
    }

    /// Takes messages for up to `timeout`; the ids that have a result by then.
    pub async fn collect_for(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.pump(left).await {
                break;
            }
        }
        self.records
            .iter()
            .filter(|(_, r)| !r.result.is_null())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether `id` was sent and has no result yet.
    pub fn has_pending(&self, id: &str) -> bool {
        self.records.get(id).is_some_and(|r| r.result.is_null())
    }

    /// The record of an execute that has its result (see [`Serve::collect_for`]).
    pub fn take(&mut self, id: &str) -> RunRecord {
        self.records.remove(id).unwrap()
    }

    /// The serve process's pid (for its RSS and CPU time in /proc, and its environment there).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// SIGKILL: the serve process dies mid-run as in a crash or an OOM kill of the Paperclip pod.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    pub async fn execute(&mut self, params: &Value) -> RunRecord {
        let id = self.send_execute(params).await;
        self.wait_result(&id).await
    }

    pub async fn shutdown(mut self) {
        let _ = self.stdin.write_all(b"{\"type\":\"shutdown\"}\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
