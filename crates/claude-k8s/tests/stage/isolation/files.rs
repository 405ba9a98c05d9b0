//! Files the server reads and writes for a run stay where they belong.

use std::path::Path;

use serde_json::json;

use super::{everything, world_with_the_pods_key};

/// Makes `dir` and its parents below `/paperclip/test-instances` owned by the agent's UID, as Paperclip (UID 1000)
/// writes them: the pod can replace what is in them.
fn owned_by_the_agent(dir: &str, file: &str) {
    let mut d = std::path::PathBuf::from(dir);
    while d.starts_with("/paperclip/test-instances") {
        std::os::unix::fs::chown(&d, Some(1000), Some(1000)).unwrap();
        d.pop();
    }
    std::os::unix::fs::chown(file, Some(1000), Some(1000)).unwrap();
}

/// The agent tries to replace its own AGENTS.md with a link to the server's environment (`ln -sf /proc/<pid>/environ`,
/// the serve process's here, as /proc/1 is the Paperclip server in a real pod): its instructions folder is a
/// read-only mount, so it cannot. Planted anyway (as an agent of the whole-volume layout could), the next run's
/// system prompt holds none of it, and the run log says why the instructions were left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_instructions_symlink_planted_by_the_agent_leaks_nothing() {
    const MARKER: &str = "SERVER-ONLY-MARKER-5f1e";
    let mut w = world_with_the_pods_key(&[("SERVE_ONLY_MARKER", MARKER)]).await;
    let agent = w.agent();
    let instance = format!("/paperclip/test-instances/{agent}");
    let folder = format!("{instance}/companies/company-e2e/agents/{agent}/instructions");
    let agents_md = format!("{folder}/AGENTS.md");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(&agents_md, "# Agent\nINSTRUCTIONS-OK\n").unwrap();
    owned_by_the_agent(&folder, &agents_md);
    let config = w.config(&agent, json!({"instructionsFilePath": agents_md}));
    let params = |w: &crate::support::World, prompt: &str| {
        let mut p = w.stage.params(&agent, &config, prompt, None);
        p["promptBundle"] = json!({"instanceRoot": instance});
        p
    };
    let environ = format!("/proc/{}/environ", w.serve.pid());
    let plant = params(
        &w,
        &format!(
            "Plant it [[fake:bash ln -sf {environ} {agents_md} && ls -l {folder}]] [[fake:text planted]]"
        ),
    );
    let first = w.serve.execute(&plant).await;
    assert_eq!(first.result["exitCode"], 0, "{}", everything(&first));
    // Its `ln` ran and failed (busybox says "File exists" when it cannot remove the file on a read-only mount).
    assert!(first.log_text().contains("ln: "), "{}", first.log_text());
    assert_eq!(
        std::fs::read_to_string(&agents_md).unwrap(),
        "# Agent\nINSTRUCTIONS-OK\n",
        "the read-only mount kept the agent from planting the link"
    );
    std::fs::remove_file(&agents_md).unwrap();
    std::os::unix::fs::symlink(&environ, &agents_md).unwrap();
    assert_eq!(std::fs::read_link(&agents_md).unwrap(), Path::new(&environ));
    let before = w.fake.message_requests().len();
    let again = params(&w, "Again [[fake:text second]]");
    let second = w.serve.execute(&again).await;
    assert_eq!(second.result["exitCode"], 0, "{}", everything(&second));
    let log = second.log_text();
    assert!(
        log.contains("could not read agent instructions file") && log.contains("outside"),
        "{log}"
    );
    for request in &w.fake.message_requests()[before..] {
        let system = request.system_text();
        assert!(!system.contains(MARKER), "{system}");
        assert!(!system.contains("INSTRUCTIONS-OK"));
    }
    assert!(!everything(&second).contains(MARKER));
    std::fs::remove_dir_all(&instance).unwrap();
    w.finish().await;
}

/// A skill runtime name that climbs (`../../x`) or is absolute fails the run with the skill named, before any Job,
/// and nothing is written outside the bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_skill_runtime_name_cannot_write_outside_the_bundle() {
    let mut w = world_with_the_pods_key(&[]).await;
    let (agent, config) = w.new_agent(json!({}));
    let src = std::env::temp_dir().join(format!("claude-k8s-isolation-skill-{agent}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("SKILL.md"), "---\nname: x\n---\n").unwrap();
    let instance = format!("/paperclip/test-instances/{agent}");
    for name in ["../../escaped", "/paperclip/test-instances/escaped-abs"] {
        let mut p = w
            .stage
            .params(&agent, &config, "Never runs [[fake:text no]]", None);
        p["promptBundle"] = json!({
            "instanceRoot": instance,
            "skills": [{"key": "evil/skill", "runtimeName": name, "source": src.display().to_string()}]
        });
        let run = w.serve.execute(&p).await;
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
        w.stage.assert_nothing_created("paperclip", &agent).await;
    }
    let cache = format!("{instance}/companies/company-e2e");
    for escaped in [
        format!("{cache}/escaped"),
        format!("{instance}/companies/escaped"),
        "/paperclip/test-instances/escaped-abs".to_owned(),
    ] {
        assert!(!Path::new(&escaped).exists(), "{escaped}");
    }
    assert!(w.fake.message_requests().is_empty());
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir_all(&instance);
    w.finish().await;
}
