//! The running stage: its facts (target/testcluster/stage.env), clients, and what a run on it needs (a workspace
//! on the shared volume, an agent config, execute params).

use std::collections::HashMap;
use std::path::PathBuf;

use fake_anthropic::FakeAnthropic;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

/// The run token the tests hand the adapter; it must never show up in a Job or a log.
pub const RUN_TOKEN: &str = "run-jwt-e2e-0123456789abcdef";

/// The namespace of the stand-in Paperclip pod, and of the Jobs unless a test says otherwise.
pub const NAMESPACE: &str = "paperclip";

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

/// The stage's operator policy (test/stage/policy.yaml): every serve process of the stage suites runs with it
/// unless a test sets its own.
pub fn stage_policy() -> String {
    repo_root()
        .join("test/stage/policy.yaml")
        .display()
        .to_string()
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
        client_for(&self.admin_kubeconfig).await
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
}

/// A client for any kubeconfig of the stage (the admin's, the limited user's, an impersonating one).
pub async fn client_for(kubeconfig: &str) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    Client::try_from(
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap(),
    )
    .unwrap()
}

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

/// One fact of the running stage (`target/testcluster/stage.env`, e.g. `KUBECTL`).
pub fn stage_env(key: &str) -> String {
    stage_vars()
        .remove(key)
        .unwrap_or_else(|| panic!("{} lacks {key}", stage_env_path().display()))
}
