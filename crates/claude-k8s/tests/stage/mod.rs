//! Test support for the real stage: its facts (target/testcluster/stage.env), clients, and a driver for the
//! real `claude-k8s serve` binary.

// Each test binary (cluster, cluster_config) uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fake_anthropic::FakeAnthropic;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

/// The run token the tests hand the adapter; it must never show up in a Job or a log.
pub const RUN_TOKEN: &str = "run-jwt-e2e-0123456789abcdef";

pub struct Stage {
    pub admin_kubeconfig: String,
    pub limited_kubeconfig: String,
    pub agent_image: String,
    pub busybox_image: String,
    /// The light stand-in for claude (test/stage/images/claude-replay.sh) for tests of the pipe, not the agent.
    pub replay_image: String,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn short_id() -> String {
    uuid()[..8].to_owned()
}

/// A random UUID v4 string (agent and run ids look like Paperclip's).
pub fn uuid() -> String {
    let mut bytes = [0u8; 16];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        ^ (std::process::id() as u128) << 64
        ^ (&bytes as *const _ as usize as u128);
    let mut x = seed as u64 ^ (seed >> 64) as u64 ^ 0x9e37_79b9_7f4a_7c15;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Stage {
    pub fn load() -> Self {
        let path = stage_env_path();
        let vars = stage_vars();
        let get = |k: &str| {
            vars.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{} lacks {k}", path.display()))
        };
        if vars.get("TIER").map(String::as_str) != Some("real") {
            eprintln!(
                "WARNING: the stage runs the {:?} tier, not a real kubelet",
                vars.get("TIER")
            );
        }
        Self {
            admin_kubeconfig: get("KUBECONFIG_ADMIN"),
            limited_kubeconfig: get("KUBECONFIG_LIMITED"),
            agent_image: get("AGENT_IMAGE"),
            busybox_image: get("BUSYBOX_IMAGE"),
            replay_image: get("REPLAY_IMAGE"),
        }
    }

    /// A copy of the least-privilege kubeconfig that reaches the API server through `addr` (a proxy on
    /// loopback; the server certificate names 127.0.0.1, so TLS still verifies).
    pub fn kubeconfig_via(&self, addr: std::net::SocketAddr) -> String {
        let text = std::fs::read_to_string(&self.limited_kubeconfig).unwrap();
        let api = stage_env("APISERVER");
        assert!(text.contains(&api), "the kubeconfig names {api}");
        let path = std::env::temp_dir().join(format!("claude-k8s-via-{}.kubeconfig", addr.port()));
        std::fs::write(&path, text.replace(&api, &format!("https://{addr}"))).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// The API server's address on loopback.
    pub fn apiserver_addr(&self) -> std::net::SocketAddr {
        let api = stage_env("APISERVER");
        api.trim_start_matches("https://").parse().unwrap()
    }

    pub async fn admin_client(&self) -> Client {
        let kc = Kubeconfig::read_from(&self.admin_kubeconfig).unwrap();
        Client::try_from(
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .unwrap(),
        )
        .unwrap()
    }

    /// The agent's workspace on the shared volume, created as the agent's user (UID 1000) like Paperclip does.
    pub fn workspace(&self, agent: &str) -> String {
        let dir = format!("/paperclip/test-workspaces/{agent}");
        std::fs::create_dir_all(&dir).unwrap();
        for d in ["/paperclip/test-workspaces", dir.as_str()] {
            std::os::unix::fs::chown(d, Some(1000), Some(1000)).unwrap();
        }
        dir
    }

    /// A config that runs on this stage: local images, host network (to reach the fake API on 127.0.0.1),
    /// small requests so several runs fit the node.
    pub fn agent_config(&self, fake: &FakeAnthropic, agent: &str, extra: Value) -> Value {
        let mut config = json!({
            "kubeconfig": self.limited_kubeconfig,
            "image": self.agent_image,
            "initImage": self.busybox_image,
            "cwd": self.workspace(agent),
            "resources.requests.cpu": "100m",
            "resources.requests.memory": "128Mi",
            "resources.limits.memory": "2Gi",
            "podSpecPatch": {"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"},
            "paperclipApiUrl": "http://127.0.0.1:3100",
            "env": {
                "ANTHROPIC_BASE_URL": fake.url(),
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "CLAUDE_CODE_MAX_RETRIES": "1"
            }
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        config
    }

    pub fn params(
        &self,
        agent: &str,
        config: &Value,
        prompt: &str,
        session: Option<&str>,
    ) -> Value {
        let run = format!("run-{agent}");
        json!({
            "runId": if session.is_some() { format!("{run}-2") } else { run.clone() },
            "agent": {"id": agent, "companyId": "company-e2e", "name": "E2E agent"},
            "runtime": {"sessionId": session, "sessionParams": null, "taskKey": null},
            "config": config,
            "context": {},
            "authToken": RUN_TOKEN,
            "prompt": {"fresh": prompt, "resume": prompt},
            "paperclipEnv": {"PAPERCLIP_RUN_ID": if session.is_some() { format!("{run}-2") } else { run },
                              "PAPERCLIP_AGENT_ID": agent, "PAPERCLIP_COMPANY_ID": "company-e2e"}
        })
    }

    /// No Job, pod or Lease of the agent remains. The result of a normal end goes out before the pods are gone
    /// (the adapter finishes the cleanup right after it), so this waits for that, bounded.
    pub async fn assert_nothing_left(&self, agent: &str) {
        let client = self.admin_client().await;
        let lp = ListParams::default().labels(&format!("paperclip.io/agent-id={agent}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let names = |v: Vec<Option<String>>| v.into_iter().flatten().collect::<Vec<_>>();
            let jobs = Api::<Job>::namespaced(client.clone(), "paperclip")
                .list(&lp)
                .await
                .unwrap();
            let pods = Api::<Pod>::namespaced(client.clone(), "paperclip")
                .list(&lp)
                .await
                .unwrap();
            let leases = Api::<Lease>::namespaced(client.clone(), "paperclip")
                .list(&lp)
                .await
                .unwrap();
            let left = (
                names(jobs.items.into_iter().map(|j| j.metadata.name).collect()),
                names(pods.items.into_iter().map(|p| p.metadata.name).collect()),
                names(leases.items.into_iter().map(|l| l.metadata.name).collect()),
            );
            if left.0.is_empty() && left.1.is_empty() && left.2.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "left after 60 s: Jobs {:?}, pods {:?}, Leases {:?}",
                left.0,
                left.1,
                left.2
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// What the host saw for one execute.
#[derive(Debug, Default)]
pub struct RunRecord {
    pub logs: Vec<(String, String)>,
    /// When each of `logs` arrived (wall clock, to compare with times the container wrote).
    pub log_at: Vec<std::time::SystemTime>,
    pub result_at: Option<std::time::SystemTime>,
    pub meta: Option<Value>,
    pub result: Value,
}

impl RunRecord {
    pub fn log_text(&self) -> String {
        self.logs.iter().map(|(_, c)| c.as_str()).collect()
    }

    pub fn stdout_json(&self) -> Vec<Value> {
        self.logs
            .iter()
            .filter(|(s, _)| s == "stdout")
            .filter_map(|(_, c)| serde_json::from_str(c.trim_end()).ok())
            .collect()
    }
}

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

    /// Like [`Serve::start`], with extra environment for the serve process (e.g. shorter time limits).
    pub fn start_with_env(stage: &Stage, env: &[(&str, &str)]) -> Self {
        // The defaults first, so that `env` can replace any of them.
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_claude-k8s"))
            .arg("serve")
            .env("CLAUDE_K8S_SELF_POD", "paperclip/paperclip")
            .env("KUBECONFIG", &stage.limited_kubeconfig)
            .env("CLAUDE_K8S_LOG", "info")
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

    /// The serve process's pid (for its RSS and CPU time in /proc).
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

/// One value of target/testcluster/stage.env (e.g. `KUBECTL`).
fn stage_env_path() -> PathBuf {
    repo_root().join("target/testcluster/stage.env")
}

/// The facts `make cluster-up` wrote, as a map.
fn stage_vars() -> HashMap<String, String> {
    let path = stage_env_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Bring the stage up first: make cluster-up",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("export ")
                .unwrap_or(l.trim())
                .split_once('=')
        })
        .map(|(k, v)| {
            (
                k.trim().to_owned(),
                v.trim().trim_matches(['"', '\'']).to_owned(),
            )
        })
        .collect()
}

/// One fact of the running stage (`target/testcluster/stage.env`).
pub fn stage_env(key: &str) -> String {
    stage_vars()
        .remove(key)
        .unwrap_or_else(|| panic!("{} lacks {key}", stage_env_path().display()))
}

impl Serve {
    /// Like [`Serve::start`], with another stand-in pod as the adapter's own (`CLAUDE_K8S_SELF_POD`).
    pub fn start_as_pod(stage: &Stage, self_pod: &str) -> Self {
        Self::start_with_env(stage, &[("CLAUDE_K8S_SELF_POD", self_pod)])
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
}
