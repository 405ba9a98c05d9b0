//! The run's view of the shared volume: a hostile agent (the real claude's Bash tool) reads nothing of Paperclip's
//! instance root, another agent's workspace or Claude home, or the seed's shared Claude home; its own workspace, its
//! own home and `--resume` work. The operator's whole-volume opt-out is a warning of the environment checks, and
//! with it the same probe does read them (so the probe can fail).

use std::path::Path;

use serde_json::json;

use super::everything;
use crate::support::{RunRecord, World, stage_policy, uuid};

const MARKER: &str = "ISOLATION-PLANTED-7c21";

/// Paperclip's own files on the stage's volume (the stage's real Paperclip instance keeps its own there; what is
/// missing is planted, owned by the agent's UID as Paperclip's are), another agent's workspace and Claude home, and
/// the seed's shared Claude home. Each exists on the volume when this returns; the planted ones to remove after.
fn plant_targets(other_agent: &str) -> (Vec<String>, Vec<String>) {
    let root = "/paperclip/instances/default";
    let other_home =
        format!("/paperclip/claude-k8s/companies/company-e2e/claude-k8s-homes/{other_agent}");
    let targets = vec![
        format!("{root}/.env"),
        format!("{root}/secrets/master.key"),
        format!("{root}/db"),
        format!("/paperclip/test-workspaces/{other_agent}/notes.txt"),
        format!("{other_home}/.claude/projects/p/{other_agent}.jsonl"),
        format!("/paperclip/.claude/isolation-{other_agent}.txt"),
    ];
    let mut planted = Vec::new();
    for t in &targets {
        let path = Path::new(t);
        if path.exists() {
            continue;
        }
        let mut made = path.to_path_buf();
        if t.ends_with("/db") {
            std::fs::create_dir_all(path).unwrap();
            made = path.join("x");
        }
        std::fs::create_dir_all(made.parent().unwrap()).unwrap();
        std::fs::write(&made, MARKER).unwrap();
        let mut d = made.clone();
        while d != Path::new("/paperclip") {
            std::os::unix::fs::chown(&d, Some(1000), Some(1000)).unwrap();
            d.pop();
        }
        planted.push(made.display().to_string());
    }
    for t in &targets {
        assert!(Path::new(t).exists(), "{t} is on the volume");
    }
    (targets, planted)
}

/// A Bash command that tries each target and prints `READ:<path>` or `NOPE:<path>` (never the content). The
/// command's own text (in the log as the tool call's input) spells them `READ"":`, so only its output matches.
fn probe(targets: &[String]) -> String {
    targets
        .iter()
        .map(|t| {
            format!("(cat {t} || ls {t}) >/dev/null 2>&1 && echo READ\"\":{t} || echo NOPE\"\":{t}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn outcome_of(run: &RunRecord, target: &str) -> &'static str {
    let log = run.log_text();
    if log.contains(&format!("READ:{target}")) {
        "read"
    } else if log.contains(&format!("NOPE:{target}")) {
        "denied"
    } else {
        "not probed"
    }
}

/// Paperclip's `.env`, `secrets/master.key` and `db/`, another agent's workspace and `~/.claude`, and the shared
/// `/paperclip/.claude` all fail to read; the agent writes its workspace and its home, and the next heartbeat resumes
/// its session and finds its home as it left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_agent_reads_nothing_but_its_own_and_still_resumes() {
    let mut w = World::start().await;
    let (agent, config) = w.new_agent(json!({}));
    let other = uuid();
    std::fs::create_dir_all(format!("/paperclip/test-workspaces/{other}")).unwrap();
    let (targets, planted) = plant_targets(&other);
    let bash = format!(
        "{}; echo own > own.txt && echo kept-in\"\"-home > $HOME/own-home.txt && echo HOME\"\"=$HOME",
        probe(&targets)
    );
    let first = w
        .run(
            &agent,
            &config,
            &format!("Look around [[fake:bash {bash}]] [[fake:text First answer]]"),
        )
        .await;
    for p in &planted {
        let _ = std::fs::remove_file(p);
    }
    assert_eq!(first.result["exitCode"], 0, "{}", everything(&first));
    for t in &targets {
        assert_eq!(outcome_of(&first, t), "denied", "{t}: {}", first.log_text());
    }
    assert!(!everything(&first).contains(MARKER));
    let workspace = w.stage.workspace(&agent);
    assert_eq!(
        std::fs::read_to_string(format!("{workspace}/own.txt"))
            .unwrap()
            .trim(),
        "own"
    );
    let home = format!("/paperclip/claude-k8s/companies/company-e2e/claude-k8s-homes/{agent}");
    assert!(
        first.log_text().contains(&format!("HOME={home}")),
        "{}",
        first.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(format!("{home}/own-home.txt"))
            .unwrap()
            .trim(),
        "kept-in-home"
    );

    let session = first.result["sessionId"].as_str().unwrap().to_owned();
    let before = w.fake.message_requests().len();
    let params = w.stage.params(
        &agent,
        &config,
        "Again [[fake:bash cat $HOME/own-home.txt]] [[fake:text Second answer]]",
        Some(&session),
    );
    let second = w.serve.execute(&params).await;
    assert_eq!(second.result["exitCode"], 0, "{}", everything(&second));
    assert_eq!(
        second.result["sessionId"],
        session.as_str(),
        "{}",
        everything(&second)
    );
    let resumed = w.fake.message_requests()[before..].iter().any(|r| {
        r.messages()
            .iter()
            .any(|m| m.to_string().contains("First answer"))
    });
    assert!(
        resumed,
        "the resumed request carried the first conversation"
    );
    assert!(
        second.log_text().contains("kept-in-home"),
        "{}",
        second.log_text()
    );
    w.finish().await;
}

/// A session saved in the seed's shared `/paperclip/.claude` (before agents had their own home) starts fresh, with
/// a `[claude-k8s]` line that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_session_left_in_the_shared_home_starts_fresh_and_says_why() {
    let mut w = World::start().await;
    let (agent, config) = w.new_agent(json!({}));
    let old = uuid();
    let project = format!("/paperclip/.claude/projects/-isolation-{agent}");
    std::fs::create_dir_all(&project).unwrap();
    let transcript = format!("{project}/{old}.jsonl");
    std::fs::write(&transcript, "").unwrap();
    let params = w
        .stage
        .params(&agent, &config, "Hello [[fake:text fresh]]", Some(&old));
    let run = w.serve.execute(&params).await;
    std::fs::remove_dir_all(&project).unwrap();
    assert_eq!(run.result["exitCode"], 0, "{}", everything(&run));
    let log = run.log_text();
    assert!(
        log.contains(&format!(
            "[claude-k8s] session `{old}` was saved in the Claude home shared by every agent"
        )),
        "{log}"
    );
    assert_ne!(run.result["sessionId"], old.as_str());
    let args = run.meta.as_ref().unwrap()["commandArgs"].to_string();
    assert!(!args.contains("--resume"), "{args}");
    w.finish().await;
}

/// `wholeVolume: true` in the operator policy: the environment checks warn, and the same probe reads Paperclip's
/// `.env` and another agent's workspace (the seed's layout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn the_whole_volume_opt_out_is_a_warning_and_opens_everything() {
    let policy = std::env::temp_dir().join(format!("claude-k8s-whole-volume-{}.yaml", uuid()));
    let text = std::fs::read_to_string(stage_policy()).unwrap() + "\nwholeVolume: true\n";
    std::fs::write(&policy, text).unwrap();
    let mut w =
        World::start_with_env(&[("CLAUDE_K8S_POLICY_FILE", policy.to_str().unwrap())]).await;
    let (agent, config) = w.new_agent(json!({}));
    let r = w
        .serve
        .test_environment(&json!({"kubeconfig": w.stage.limited_kubeconfig}))
        .await;
    let warned = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "whole_volume_mounted")
        .unwrap_or_else(|| panic!("no whole_volume_mounted check: {r:#}"));
    assert_eq!(warned["level"], "warn", "{r:#}");
    assert!(
        warned["hint"].as_str().unwrap().contains("wholeVolume"),
        "{r:#}"
    );
    let other = uuid();
    std::fs::create_dir_all(format!("/paperclip/test-workspaces/{other}")).unwrap();
    let (targets, planted) = plant_targets(&other);
    let run = w
        .run(
            &agent,
            &config,
            &format!(
                "Look around [[fake:bash {}]] [[fake:text done]]",
                probe(&targets[..1])
            ),
        )
        .await;
    for p in &planted {
        let _ = std::fs::remove_file(p);
    }
    std::fs::remove_file(&policy).unwrap();
    assert_eq!(run.result["exitCode"], 0, "{}", everything(&run));
    assert_eq!(outcome_of(&run, &targets[0]), "read", "{}", run.log_text());
    w.finish().await;
}
