//! The operator policy through the real `claude-k8s serve` and `doctor`, no cluster needed: a refused field fails
//! the run before any cluster access (there is none here, so anything that got further would fail otherwise), the
//! policy comes only from the process environment, and a bad policy stops `serve` before its handshake.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

mod common;

/// A value that must never be printed: it stands for a key file the config points at.
const FILE_SECRET: &str = "-----BEGIN PRIVATE KEY----- policy-test-3f9a1c";

struct Serve {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

/// The binary with a clean environment for the policy: no cluster, and only the policy variables given.
fn command(sub: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_claude-k8s"));
    cmd.arg(sub)
        .env_remove("KUBECONFIG")
        .env_remove("CLAUDE_K8S_SELF_POD")
        .env_remove("CLAUDE_K8S_POLICY")
        .env_remove("CLAUDE_K8S_POLICY_FILE")
        .env_remove("KUBERNETES_SERVICE_HOST")
        // No ~/.kube/config either: nothing here may reach a cluster.
        .env("HOME", "/nonexistent-claude-k8s-home")
        .envs(env.iter().copied());
    cmd
}

impl Serve {
    fn start(env: &[(&str, &str)]) -> Self {
        let (child, stdin, lines) = common::spawn_with_lines(
            command("serve", env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let s = Self {
            child,
            stdin,
            lines,
        };
        assert_eq!(s.next()["type"], "hello");
        s
    }

    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a line from serve within 30 s");
        serde_json::from_str(&line).unwrap()
    }

    /// Sends a request and returns every message of its id up to its answer, the answer last.
    fn call(&mut self, request: Value) -> Vec<Value> {
        let id = request["id"].as_str().unwrap().to_owned();
        writeln!(self.stdin, "{request}").unwrap();
        self.stdin.flush().unwrap();
        let mut seen = Vec::new();
        loop {
            let v = self.next();
            if v["id"] != id.as_str() {
                continue;
            }
            let done = matches!(v["type"].as_str(), Some("result" | "error"));
            seen.push(v);
            if done {
                return seen;
            }
        }
    }

    fn execute(&mut self, id: &str, config: Value) -> (Value, String) {
        let messages = self.call(json!({"type": "execute", "id": id, "params": {
            "runId": format!("run-{id}"),
            "agent": {"id": "agent-1", "companyId": "co-1", "name": "Policy test"},
            "config": config,
            "authToken": "run-token-policy-test-0123456789",
            "prompt": {"fresh": "hi"},
            "promptBundle": {"instanceRoot": "/paperclip/instances/default"}
        }}));
        let all = serde_json::to_string(&messages).unwrap();
        let last = messages.last().unwrap();
        assert_eq!(last["type"], "result", "{all}");
        (last["result"].clone(), all)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("claude-k8s-policy-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Each hostile field of issue 14, alone, with the default policy: refused with `policy_denied`, the field and
/// the setting that would allow it, before any cluster access.
#[test]
fn hostile_configs_are_refused_before_anything_else_happens() {
    let dir = scratch("hostile");
    let key = dir.join("master.key");
    std::fs::write(&key, FILE_SECRET).unwrap();
    let key = key.display().to_string();
    let mut serve = Serve::start(&[]);
    for (i, (config, field, setting)) in [
        (json!({"podSpecPatch": {"hostPID": true}}), "podSpecPatch.hostPID", "\"podSpecPatch\": {\"allowHostNamespaces\": [\"hostPID\"]}"),
        (json!({"podSpecPatch": {"containers": [{"name": "claude", "image": "x", "securityContext": {"privileged": true}}]}}),
         "podSpecPatch.containers", "\"podSpecPatch\": {\"allowedKeys\": [\"containers\"]}"),
        (json!({"podSpecPatch": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}), "podSpecPatch.volumes[0].hostPath", "\"allowHostPath\": true"),
        (json!({"podSpecPatch": {"nodeName": "control-plane"}}), "podSpecPatch.nodeName", "\"allowNodeName\": true"),
        (json!({"podSpecPatch": {"initContainers": []}}), "podSpecPatch.initContainers", "\"allowInitContainers\": true"),
        (json!({"podSpecPatch": {"serviceAccountName": "paperclip"}}), "podSpecPatch.serviceAccountName", "\"allowServiceAccount\": true"),
        (json!({"serviceAccountName": "paperclip"}), "serviceAccountName", "\"serviceAccountNames\": [\"paperclip\"]"),
        (json!({"namespace": "kube-system"}), "namespace", "\"namespaces\": [\"kube-system\"]"),
        (json!({"image": "evil.example/claude:1"}), "image", "\"images\": [\"evil.example/claude:1\"]"),
        (json!({"initImage": "evil.example/busybox:1"}), "initImage", "\"initImages\": [\"evil.example/busybox:1\"]"),
        (json!({"kubeconfig": key}), "kubeconfig", "\"kubeconfigs\": ["),
        (json!({"paperclipApiUrl": "https://collector.evil.example"}), "paperclipApiUrl", "\"paperclipApiUrls\""),
        (json!({"env": {"ANTHROPIC_BASE_URL": "https://evil.example"}}), "env.ANTHROPIC_BASE_URL", "\"env\": {\"allow\": [\"ANTHROPIC_BASE_URL\"]}"),
        (json!({"instructionsFilePath": "/paperclip/instances/default/.env"}), "instructionsFilePath", "\"instructionsRoots\""),
    ]
    .into_iter()
    .enumerate()
    {
        let (result, all) = serve.execute(&format!("h{i}"), config.clone());
        assert_eq!(result["errorCode"], "policy_denied", "{config}: {all}");
        let message = result["errorMessage"].as_str().unwrap();
        assert!(message.contains(&format!("{field} is not allowed by the operator policy")), "{message}");
        assert!(message.contains(setting), "{config}: {message}");
        assert!(message.contains("CLAUDE_K8S_POLICY"), "{message}");
        assert!(result["exitCode"].is_null());
        // Refused first: no client was made, so nothing of the cluster (or its absence) is mentioned.
        assert!(!all.contains("k8s_client_unavailable") && !all.contains("no Kubernetes configuration"), "{all}");
        assert!(!all.contains(FILE_SECRET), "{all}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// The same fields pass when the policy allows them: the run then goes on to the cluster, which this test has
/// none of (so it fails there, with the client error, not the policy's).
#[test]
fn the_policy_in_the_environment_allows_what_it_names() {
    let policy = json!({
        "podSpecPatch": {"allowedKeys": ["dnsPolicy"], "allowHostNamespaces": ["hostNetwork", "hostPID"]},
        "namespaces": ["agents-*"],
        "images": ["registry.example.com/agents/*"],
        "env": {"allow": ["ANTHROPIC_BASE_URL"]}
    });
    let config = json!({
        "podSpecPatch": {"hostPID": true, "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"},
        "namespace": "agents-a",
        "image": "registry.example.com/agents/claude:2",
        "env": {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    });
    let mut serve = Serve::start(&[("CLAUDE_K8S_POLICY", &policy.to_string())]);
    let (result, all) = serve.execute("allowed", config.clone());
    assert_eq!(result["errorCode"], "k8s_client_unavailable", "{all}");
    // One field beyond the policy is still refused, and the message says exactly which.
    let mut wider = config;
    wider["podSpecPatch"]["hostIPC"] = json!(true);
    let (result, _) = serve.execute("wider", wider);
    assert_eq!(result["errorCode"], "policy_denied");
    assert_eq!(
        result["errorMessage"],
        "podSpecPatch.hostIPC is not allowed by the operator policy; to allow it set \"podSpecPatch\": \
         {\"allowHostNamespaces\": [\"hostIPC\"]} in CLAUDE_K8S_POLICY. Hint: only the operator can allow these, \
         in CLAUDE_K8S_POLICY; docs/security.md lists every setting"
    );
    assert_eq!(
        result["errorMeta"]["policyDenied"][0]["field"],
        "podSpecPatch.hostIPC"
    );
}

/// The policy file (YAML, as a ConfigMap would hold it) is read the same way, and a kubeconfig it lists is read
/// without ever quoting the file when it is not a kubeconfig.
#[test]
fn a_policy_file_allows_kubeconfig_paths_and_a_bad_kubeconfig_is_never_quoted() {
    let dir = scratch("file");
    let key = dir.join("not-a.kubeconfig");
    std::fs::write(&key, format!("{FILE_SECRET}\n  : [\n")).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "# operator policy\nkubeconfigs:\n  - {}/*.kubeconfig\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut serve = Serve::start(&[("CLAUDE_K8S_POLICY_FILE", &policy.display().to_string())]);
    let (result, all) = serve.execute("k", json!({"kubeconfig": key.display().to_string()}));
    assert_eq!(result["errorCode"], "k8s_client_unavailable", "{all}");
    assert!(
        result["errorMessage"]
            .as_str()
            .unwrap()
            .contains(&key.display().to_string()),
        "{all}"
    );
    assert!(
        !all.contains(FILE_SECRET) && !all.contains("BEGIN"),
        "{all}"
    );
    // test_environment of the same unsaved draft: refused by the policy when unlisted, never quoted when listed.
    let other = dir.join("elsewhere.key");
    std::fs::write(&other, FILE_SECRET).unwrap();
    for (i, path) in [key.display().to_string(), other.display().to_string()]
        .into_iter()
        .enumerate()
    {
        let answer = serve.call(json!({"type": "test_environment", "id": format!("t{i}"),
            "params": {"companyId": "co-1", "adapterType": "claude_k8s", "config": {"kubeconfig": path}}}));
        let text = serde_json::to_string(&answer).unwrap();
        assert!(
            !text.contains(FILE_SECRET) && !text.contains("BEGIN"),
            "{text}"
        );
        let checks = &answer.last().unwrap()["result"]["checks"];
        let code = checks[0]["code"].as_str().unwrap();
        assert_eq!(
            code,
            if i == 0 {
                "k8s_api_unreachable"
            } else {
                "policy_denied"
            },
            "{text}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Numbers past their bound are refused when the config is parsed (a `timeoutSec` of 1e300 used to panic a run
/// after its Job and Lease existed).
#[test]
fn huge_numbers_are_invalid_config() {
    let mut serve = Serve::start(&[]);
    for field in [
        "timeoutSec",
        "graceSec",
        "ttlSecondsAfterFinished",
        "maxTurnsPerRun",
    ] {
        let (result, all) = serve.execute(field, json!({ field: 1e300 }));
        assert_eq!(result["errorCode"], "invalid_config", "{all}");
        assert!(
            result["errorMessage"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`: must be at most")),
            "{all}"
        );
    }
}

/// A policy that cannot be used stops `serve` before its handshake, naming the variable and the setting, and never
/// quoting the policy text; `doctor` says the same.
#[test]
fn a_bad_policy_is_a_startup_error_that_names_the_setting() {
    let secret = "sk-ant-policy-value-never-printed";
    let bad = json!({"podSpecPatch": {"allowPrivileged": secret}}).to_string();
    for sub in ["serve", "doctor"] {
        let out = command(sub, &[("CLAUDE_K8S_POLICY", &bad)])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{sub}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stdout.contains("\"hello\""),
            "{sub}: no handshake: {stdout}"
        );
        assert!(
            stderr.contains("invalid operator policy in CLAUDE_K8S_POLICY: `podSpecPatch.allowPrivileged` must be true or false"),
            "{sub}: {stderr}"
        );
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{sub}: {stderr}"
        );
    }
    let dir = scratch("bad-file");
    let file = dir.join("policy.yaml");
    std::fs::write(&file, format!("images: [{secret}\n")).unwrap();
    let out = command(
        "serve",
        &[("CLAUDE_K8S_POLICY_FILE", &file.display().to_string())],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "{} (CLAUDE_K8S_POLICY_FILE): not valid YAML or JSON",
            file.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Masking is in place before the config is parsed: an error that quotes a config value never carries a known
/// secret (here the run token, pasted where a model effort belongs).
#[test]
fn errors_before_the_cluster_carry_no_known_secret() {
    let mut serve = Serve::start(&[("SOME_SERVICE_TOKEN", "own-env-token-value-42")]);
    for (id, value) in [
        ("t", "run-token-policy-test-0123456789"),
        ("o", "own-env-token-value-42"),
    ] {
        let (result, all) = serve.execute(id, json!({"effort": value}));
        assert_eq!(result["errorCode"], "invalid_config", "{all}");
        assert!(!all.contains(value), "{all}");
        assert!(
            result["errorMessage"]
                .as_str()
                .unwrap()
                .contains("***REDACTED***"),
            "{all}"
        );
    }
}
