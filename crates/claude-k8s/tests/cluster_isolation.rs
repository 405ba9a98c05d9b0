//! Issue 14 on the real stage: the attacks of a hostile agent (through the real claude's Bash tool) and of a hostile
//! adapterConfig get nothing. Each serve process gets its operator policy explicitly: the default one (nothing
//! widened) for the refusals, the stage's (test/stage/policy.yaml) where a run must reach the fake API.
//!
//! The serve process runs on the host, standing in for the Paperclip pod: it is given that pod's inherited
//! `ANTHROPIC_API_KEY` in its own environment, as the real pod has it, so the adapter can resolve the
//! `secretKeyRef` it sees in the pod spec.

mod stage;

use fake_anthropic::FakeAnthropic;
use serde_json::json;
use stage::{RUN_TOKEN, RunRecord, Serve, Stage};

/// The stand-in Paperclip pod's `ANTHROPIC_API_KEY` (Secret `paperclip-secrets`, test/stage/cluster/config.yaml).
const STAGE_API_KEY: &str = "sk-ant-test-stage-key";

fn stage_policy() -> String {
    stage::repo_root()
        .join("test/stage/policy.yaml")
        .display()
        .to_string()
}

/// A serve process with the stage's policy and the pod's inherited key in its own environment.
fn serve_with_stage_policy(stage: &Stage, extra: &[(&str, &str)]) -> Serve {
    let policy = stage_policy();
    let mut env = vec![
        ("CLAUDE_K8S_POLICY", ""),
        ("CLAUDE_K8S_POLICY_FILE", policy.as_str()),
        ("ANTHROPIC_API_KEY", STAGE_API_KEY),
    ];
    env.extend_from_slice(extra);
    Serve::start_with_env(stage, &env)
}

fn everything(run: &RunRecord) -> String {
    format!("{}\n{}\n{:?}", run.log_text(), run.result, run.meta)
}

/// Each hostile config of issue 14 with the default policy: `policy_denied`, the field named, nothing created
/// (no Job, pod, Lease) and no model request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn hostile_configs_are_refused_and_nothing_is_created() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start_with_env(
        &stage,
        &[("CLAUDE_K8S_POLICY", ""), ("CLAUDE_K8S_POLICY_FILE", "")],
    );
    let agent = stage::uuid();
    let base = json!({"env": {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}});
    for (field, value, expect) in [
        (
            "podSpecPatch",
            json!({"hostPID": true}),
            "podSpecPatch.hostPID",
        ),
        (
            "podSpecPatch",
            json!({"hostNetwork": true}),
            "podSpecPatch.hostNetwork",
        ),
        (
            "podSpecPatch",
            json!({"serviceAccountName": "paperclip"}),
            "podSpecPatch.serviceAccountName",
        ),
        (
            "podSpecPatch",
            json!({"initContainers": []}),
            "podSpecPatch.initContainers",
        ),
        (
            "podSpecPatch",
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
            "hostPath",
        ),
        (
            "serviceAccountName",
            json!("paperclip"),
            "serviceAccountName",
        ),
        ("namespace", json!("kube-system"), "namespace"),
        ("image", json!(stage.agent_image), "image"),
        ("kubeconfig", json!(stage.admin_kubeconfig), "kubeconfig"),
        (
            "kubeconfig",
            json!("/paperclip/instances/default/secrets/master.key"),
            "kubeconfig",
        ),
        (
            "paperclipApiUrl",
            json!("https://collector.invalid"),
            "paperclipApiUrl",
        ),
        (
            "env",
            json!({"ANTHROPIC_BASE_URL": fake.url()}),
            "env.ANTHROPIC_BASE_URL",
        ),
    ] {
        let mut config = base.clone();
        config[field] = value;
        let run = serve
            .execute(&stage.params(&agent, &config, "Never runs [[fake:text no]]", None))
            .await;
        assert_eq!(
            run.result["errorCode"],
            "policy_denied",
            "{field}: {}",
            everything(&run)
        );
        let message = run.result["errorMessage"].as_str().unwrap();
        assert!(
            message.contains(expect) && message.contains("to allow it set"),
            "{message}"
        );
        assert!(run.meta.is_none(), "nothing was planned: {:?}", run.meta);
    }
    stage.assert_nothing_left(&agent).await;
    assert!(fake.message_requests().is_empty());
    serve.shutdown().await;
}

/// The agent prints the inherited `ANTHROPIC_API_KEY` (from `secretKeyRef`), its base64 and URL-encoded forms and a
/// config secret through the real claude's Bash tool: none of them appears in the run log, the result or the meta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_agent_printing_its_secrets_leaks_none_of_them() {
    const CONFIG_SECRET: &str = "cfg-secret-Zx9/+k=value-7741";
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let agent = stage::uuid();
    let mut config = stage.agent_config(&fake, &agent, json!({}));
    config["env"]["UPSTREAM_API_TOKEN"] = json!(CONFIG_SECRET);
    let mut serve = serve_with_stage_policy(&stage, &[]);
    let bash = "printf 'raw=%s\\n' \"$ANTHROPIC_API_KEY\"; \
                printf %s \"$ANTHROPIC_API_KEY\" | base64; \
                printf 'x%s' \"$ANTHROPIC_API_KEY\" | base64; \
                printf %s \"$UPSTREAM_API_TOKEN\" | base64; \
                printf 'cfg=%s\\n' \"$UPSTREAM_API_TOKEN\"; \
                printf %s \"$UPSTREAM_API_TOKEN\" | od -An -tx1 | tr -d ' \\n' | sed 's/\\(..\\)/%\\1/g'; echo; \
                echo \"token=$PAPERCLIP_API_KEY\"";
    let run = serve
        .execute(&stage.params(
            &agent,
            &config,
            &format!("Print them [[fake:bash {bash}]] [[fake:text done]]"),
            None,
        ))
        .await;
    assert_eq!(run.result["exitCode"], 0, "{}", everything(&run));
    let all = everything(&run);
    assert!(all.contains("raw=***REDACTED***"), "the command ran: {all}");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let url_encoded: String = CONFIG_SECRET.bytes().map(|b| format!("%{b:02x}")).collect();
    for (what, leak) in [
        ("the inherited key", STAGE_API_KEY.to_owned()),
        (
            "its base64",
            b64.encode(STAGE_API_KEY).trim_end_matches('=').to_owned(),
        ),
        (
            "its base64 at offset 1",
            b64.encode(format!("x{STAGE_API_KEY}"))[4..24].to_owned(),
        ),
        ("the config secret", CONFIG_SECRET.to_owned()),
        (
            "its base64",
            b64.encode(CONFIG_SECRET).trim_end_matches('=').to_owned(),
        ),
        ("its URL encoding", url_encoded),
        ("the run token", RUN_TOKEN.to_owned()),
    ] {
        assert!(!all.contains(&leak), "{what} leaked ({leak}): {all}");
    }
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// The agent replaces its own AGENTS.md with a link to the server's environment (`ln -sf /proc/<pid>/environ`, the
/// serve process's here, as /proc/1 is the Paperclip server in a real pod): the next run's system prompt holds none
/// of it, and the run log says why the instructions were left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_instructions_symlink_planted_by_the_agent_leaks_nothing() {
    const MARKER: &str = "SERVER-ONLY-MARKER-5f1e";
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let agent = stage::uuid();
    let instance = format!("/paperclip/test-instances/{agent}");
    let folder = format!("{instance}/companies/company-e2e/agents/{agent}/instructions");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(format!("{folder}/AGENTS.md"), "# Agent\nINSTRUCTIONS-OK\n").unwrap();
    // Owned by the agent's UID, as Paperclip (UID 1000) writes it: the pod can replace it.
    let mut dir = std::path::PathBuf::from(&folder);
    while dir.starts_with("/paperclip/test-instances") {
        std::os::unix::fs::chown(&dir, Some(1000), Some(1000)).unwrap();
        dir.pop();
    }
    std::os::unix::fs::chown(format!("{folder}/AGENTS.md"), Some(1000), Some(1000)).unwrap();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"instructionsFilePath": format!("{folder}/AGENTS.md")}),
    );
    let params = |prompt: &str| {
        let mut p = stage.params(&agent, &config, prompt, None);
        p["promptBundle"] = json!({"instanceRoot": instance});
        p
    };
    let mut serve = serve_with_stage_policy(&stage, &[("SERVE_ONLY_MARKER", MARKER)]);
    let environ = format!("/proc/{}/environ", serve.pid());
    let first = serve
        .execute(&params(&format!(
            "Plant it [[fake:bash ln -sf {environ} {folder}/AGENTS.md && ls -l {folder}]] [[fake:text planted]]"
        )))
        .await;
    assert_eq!(first.result["exitCode"], 0, "{}", everything(&first));
    let link = std::fs::read_link(format!("{folder}/AGENTS.md")).unwrap();
    assert_eq!(
        link,
        std::path::Path::new(&environ),
        "the agent planted the link"
    );
    let before = fake.message_requests().len();
    let second = serve.execute(&params("Again [[fake:text second]]")).await;
    assert_eq!(second.result["exitCode"], 0, "{}", everything(&second));
    let log = second.log_text();
    assert!(
        log.contains("could not read agent instructions file") && log.contains("outside"),
        "{log}"
    );
    for request in &fake.message_requests()[before..] {
        let system = request.system_text();
        assert!(!system.contains(MARKER), "{system}");
        assert!(!system.contains("INSTRUCTIONS-OK"));
    }
    assert!(!everything(&second).contains(MARKER));
    std::fs::remove_dir_all(&instance).unwrap();
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// A skill runtime name that climbs (`../../x`) or is absolute fails the run with the skill named, before any Job,
/// and nothing is written outside the bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_skill_runtime_name_cannot_write_outside_the_bundle() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let agent = stage::uuid();
    let src = std::env::temp_dir().join(format!("claude-k8s-isolation-skill-{agent}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("SKILL.md"), "---\nname: x\n---\n").unwrap();
    let instance = format!("/paperclip/test-instances/{agent}");
    let config = stage.agent_config(&fake, &agent, json!({}));
    let mut serve = serve_with_stage_policy(&stage, &[]);
    for name in ["../../escaped", "/paperclip/test-instances/escaped-abs"] {
        let mut p = stage.params(&agent, &config, "Never runs [[fake:text no]]", None);
        p["promptBundle"] = json!({
            "instanceRoot": instance,
            "skills": [{"key": "evil/skill", "runtimeName": name, "source": src.display().to_string()}]
        });
        let run = serve.execute(&p).await;
        assert_eq!(
            run.result["errorCode"],
            "prompt_bundle_failed",
            "{}",
            everything(&run)
        );
        let message = run.result["errorMessage"].as_str().unwrap();
        assert!(
            message.contains("evil/skill") && message.contains("not a plain name"),
            "{message}"
        );
    }
    let cache = format!("{instance}/companies/company-e2e");
    for escaped in [
        format!("{cache}/escaped"),
        format!("{instance}/companies/escaped"),
        "/paperclip/test-instances/escaped-abs".to_owned(),
    ] {
        assert!(!std::path::Path::new(&escaped).exists(), "{escaped}");
    }
    stage.assert_nothing_left(&agent).await;
    assert!(fake.message_requests().is_empty());
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&instance);
    serve.shutdown().await;
}
