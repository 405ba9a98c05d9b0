//! Issue 6 on the real stage: one Job per agent under races between processes, adoption of a Job after its
//! supervising process died, a transcript that loses and repeats nothing when connections break, and secrets
//! masked in everything forwarded.
//!
//! One at a time (`make test-cluster` runs `resilience::` with `--test-threads 1`): the log test restarts the API
//! server, which every other run would feel.

use std::time::{Duration, Instant};

use fake_anthropic::FakeAnthropic;
use fault_proxy::FaultProxy;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};

use crate::support::{NAMESPACE, RUN_TOKEN, RunRecord, Serve, Stage, World, repo_root};

/// How many claude processes talked to the fake API (each sends its own `x-claude-code-session-id`).
fn claude_processes(fake: &FakeAnthropic) -> usize {
    fake.message_requests()
        .iter()
        .filter_map(|r| r.headers.get("x-claude-code-session-id").cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Params of one run of `agent` for task `task`, with its own run id.
fn task_params(
    stage: &Stage,
    agent: &str,
    config: &Value,
    prompt: &str,
    run: &str,
    task: &str,
) -> Value {
    let mut p = stage.params(agent, config, prompt, None);
    p["runId"] = json!(run);
    p["paperclipEnv"]["PAPERCLIP_RUN_ID"] = json!(run);
    p["context"] = json!({"taskId": task});
    p
}

/// Starts a run of `task` in a serve process of its own, waits until claude talks to the (held) model, then kills
/// the process with SIGKILL: the Job is left running with nobody watching it.
async fn orphan_a_held_run(world: &World, agent: &str, config: &Value, prompt: &str, task: &str) {
    let mut first = Serve::start(&world.stage);
    let p = task_params(
        &world.stage,
        agent,
        config,
        prompt,
        &format!("run-{agent}-1"),
        task,
    );
    let id = first.send_execute(&p).await;
    assert!(world.fake.wait_for_held(Duration::from_secs(120)).await);
    assert!(
        first
            .wait_for_log(&id, Duration::from_secs(30), |l| l
                .contains("\"subtype\":\"init\""))
            .await,
        "claude's init line arrived before the kill"
    );
    first.kill().await;
}

/// Twenty executes for one agent, half from each of two serve processes (two Paperclip replicas), each for its
/// own task: exactly one Job is created, the other nineteen are refused at once naming it, and a run of another
/// agent is not held up meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn twenty_concurrent_executes_from_two_processes_make_one_job() {
    let mut world = World::start().await;
    let mut replica = Serve::start(&world.stage);
    let (agent, config) = world.new_agent(json!({"graceSec": 2}));
    let mut serves = [&mut world.serve, &mut replica];
    let mut sent: Vec<(usize, String)> = Vec::new();
    for i in 0..20 {
        let p = task_params(
            &world.stage,
            &agent,
            &config,
            "Hold [[fake:hold Working on it]]",
            &format!("run-{agent}-{i}"),
            &format!("task-{i}"),
        );
        let which = i % 2;
        let id = serves[which].send_execute(&p).await;
        sent.push((which, id));
    }

    // Nineteen refusals come back quickly; the winner is held by the fake API.
    let mut refused: Vec<RunRecord> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while refused.len() < 19 && Instant::now() < deadline {
        for serve in serves.iter_mut() {
            for id in serve.collect_for(Duration::from_millis(200)).await {
                refused.push(serve.take(&id));
            }
        }
    }
    assert_eq!(
        refused.len(),
        19,
        "19 executes end at once; got {}: {:#?}",
        refused.len(),
        refused.iter().map(|r| r.result.clone()).collect::<Vec<_>>()
    );
    let jobs = world.stage.agent_jobs(&agent).await;
    assert_eq!(jobs.len(), 1, "exactly one Job for the agent");
    let job = jobs[0].metadata.name.clone().unwrap();
    for r in &refused {
        assert_eq!(
            r.result["errorCode"],
            "k8s_concurrent_run_blocked",
            "{}",
            r.dump()
        );
        let msg = r.result["errorMessage"].as_str().unwrap();
        assert!(
            msg.contains(&job),
            "the refusal names the blocking Job {job}: {msg}"
        );
    }
    let held = world.stage.agent_objects::<Lease>(NAMESPACE, &agent).await;
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0].spec.as_ref().unwrap().holder_identity.as_deref(),
        Some(job.as_str()),
        "the agent's Lease names the one Job"
    );

    // Another agent runs meanwhile, unhindered.
    let other = world.agent();
    let other_config = world.config(&other, json!({}));
    let serves = [&mut world.serve, &mut replica];
    let other_params = world
        .stage
        .params(&other, &other_config, "Say [[fake:text hello]]", None);
    let other_run = serves[0].execute(&other_params).await;
    assert_eq!(other_run.result["exitCode"], 0, "{}", other_run.dump());

    assert!(world.fake.wait_for_held(Duration::from_secs(120)).await);
    world.fake.release();
    let (which, id) = sent
        .iter()
        .find(|(w, id)| serves[*w].has_pending(id))
        .cloned()
        .expect("one execute is still running");
    let winner = serves[which].wait_result(&id).await;
    assert_eq!(winner.result["exitCode"], 0, "{}", winner.dump());
    world.assert_nothing_left(&agent).await;
    world.assert_nothing_left(&other).await;
    replica.shutdown().await;
    world.finish().await;
}

/// The serve process dies mid-run (SIGKILL): the Job keeps running, and the next execute of the same task and
/// session, in another serve process (the world's), adopts it, forwards its transcript from the first line
/// exactly once, and records its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_new_serve_process_adopts_a_running_job() {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(json!({"graceSec": 2}));
    let prompt = "Hold [[fake:hold Still working]]";
    orphan_a_held_run(&world, &agent, &config, prompt, "task-a").await;
    let jobs = world.stage.agent_jobs(&agent).await;
    assert_eq!(jobs.len(), 1, "the Job outlives its supervisor");
    let job = jobs[0].metadata.name.clone().unwrap();

    let p2 = task_params(
        &world.stage,
        &agent,
        &config,
        prompt,
        &format!("run-{agent}-2"),
        "task-a",
    );
    let id = world.serve.send_execute(&p2).await;
    assert!(
        world
            .serve
            .wait_for_log(&id, Duration::from_secs(60), |l| l.contains("adopting Job"))
            .await,
        "the new process says it adopts the Job"
    );
    world.fake.release();
    let run = world.serve.wait_result(&id).await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    assert!(run.log_text().contains(&job), "{}", run.log_text());
    let lines = run.transcript_lines();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("\"subtype\":\"init\""),
        1,
        "init exactly once:\n{}",
        lines.join("\n")
    );
    assert_eq!(count("\"type\":\"result\""), 1, "result exactly once");
    assert!(
        !run.log_text().contains("created in namespace"),
        "no second Job was created:\n{}",
        run.log_text()
    );
    assert_eq!(
        claude_processes(&world.fake),
        1,
        "one claude process ever ran (none was started after the restart)"
    );
    world.finish().await;
}

/// A Job that finished while no serve process watched it: the next execute of the same task and session reads
/// its result from the pod instead of starting the work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_job_that_finished_unwatched_is_recovered_once() {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(json!({"graceSec": 2}));
    let prompt = "Hold [[fake:hold Done soon]]";
    orphan_a_held_run(&world, &agent, &config, prompt, "task-b").await;
    world.fake.release();
    // Wait (bounded) for the Job to complete with nobody watching.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let jobs = world.stage.agent_jobs(&agent).await;
        let done = jobs.first().is_some_and(|j| {
            j.status
                .as_ref()
                .and_then(|s| s.succeeded)
                .unwrap_or_default()
                > 0
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the orphaned Job did not complete"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let requests = world.fake.message_requests().len();

    let p2 = task_params(
        &world.stage,
        &agent,
        &config,
        prompt,
        &format!("run-{agent}-2"),
        "task-b",
    );
    let run = world.serve.execute(&p2).await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    assert!(
        run.log_text()
            .contains("finished while no adapter process watched it")
    );
    assert!(
        run.result["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("Done soon")
            || run.log_text().contains("Done soon"),
        "{}",
        run.dump()
    );
    assert_eq!(
        world.fake.message_requests().len(),
        requests,
        "claude was not run again"
    );
    assert_eq!(claude_processes(&world.fake), 1);
    world.assert_nothing_left(&agent).await;

    // Recorded once: the next execute of that task starts new work instead of reporting it again.
    let p3 = task_params(
        &world.stage,
        &agent,
        &config,
        "Say [[fake:text again]]",
        &format!("run-{agent}-3"),
        "task-b",
    );
    let again = world.serve.execute(&p3).await;
    assert_eq!(again.result["exitCode"], 0, "{}", again.dump());
    assert!(
        !again.log_text().contains("adopting"),
        "{}",
        again.log_text()
    );
    world.finish().await;
}

/// 10,000 lines through a proxy that cuts every connection 20 times, with one API server restart in between:
/// the forwarded transcript equals the container's output line for line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn the_transcript_survives_cut_connections_and_an_apiserver_restart() {
    const LINES: usize = 10_000;
    let mut world = World::start().await;
    let proxy = FaultProxy::start(world.stage.apiserver_addr())
        .await
        .unwrap();
    let (agent, config) = world.new_agent(json!({
        "kubeconfig": world.stage.kubeconfig_via(proxy.addr()),
        "image": world.stage.replay_image,
        "env": {"REPLAY_LINES": LINES.to_string(), "REPLAY_BATCH": "50", "REPLAY_PAUSE_MS": "250"},
    }));
    let id = world.send(&agent, &config, "replay").await;
    assert!(
        world
            .serve
            .wait_for_log(&id, Duration::from_secs(120), |l| l
                .contains("replay line 1 of"))
            .await,
        "the transcript starts"
    );
    let mut cuts = 0;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cuts += proxy.cut_all();
        if i == 10 {
            let out = std::process::Command::new(repo_root().join("test/stage/cluster.sh"))
                .arg("restart-apiserver")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Keep the serve's messages flowing while the faults happen.
        world.serve.collect_for(Duration::from_millis(10)).await;
    }
    eprintln!(
        "cut {cuts} connections in 20 rounds; {} accepted",
        proxy.accepted()
    );
    let run = world.serve.wait_result(&id).await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    let lines = run.transcript_lines();
    assert_eq!(lines.len(), LINES + 2, "init, {LINES} lines, result");
    assert!(lines[0].contains("\"subtype\":\"init\""));
    for (i, line) in lines[1..=LINES].iter().enumerate() {
        let want = format!("replay line {} of {LINES} é€", i + 1);
        assert!(line.contains(&want), "line {}: {line}", i + 1);
    }
    assert!(lines[LINES + 1].contains("\"type\":\"result\""));
    assert!(
        cuts >= 20,
        "the proxy broke live connections in every round ({cuts})"
    );
    world.finish().await;
}

/// A line of 1.5 MiB with multi-byte characters at its ends reaches the host intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_line_over_one_mib_arrives_intact() {
    const BYTES: usize = 1_572_864;
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(
                json!({"image": world.stage.replay_image, "env": {"REPLAY_LINES": "3", "REPLAY_LONG_BYTES": BYTES.to_string()}}),
    );
    let run = world.run(&agent, &config, "replay").await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    let lines = run.transcript_lines();
    let long = lines
        .iter()
        .find(|l| l.contains("msg_long"))
        .expect("the long line arrived");
    let parsed: Value = serde_json::from_str(long).expect("the long line is whole JSON");
    let text = parsed["message"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text.len(), BYTES + "é".len() + "🦀".len());
    assert!(text.starts_with("éxxx") && text.ends_with("xxx🦀"));
    assert_eq!(lines.len(), 3 + 3, "init, long line, 3 lines, result");
    world.finish().await;
}

/// The run's token and secret env values the agent prints are masked in the forwarded transcript and result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn known_secrets_are_masked_in_everything_forwarded() {
    const SERVICE_TOKEN: &str = "svc-token-5up3r-s3cr3t-value";
    let mut world = World::start().await;
    let (agent, mut config) = world.new_agent(json!({}));
    config["env"]["MY_SERVICE_TOKEN"] = json!(SERVICE_TOKEN);
    let run = world
        .run(
            &agent,
            &config,
            "Print them [[fake:bash echo \"token=$MY_SERVICE_TOKEN key=$PAPERCLIP_API_KEY\"]]",
        )
        .await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    let everything = format!("{}\n{}\n{:?}", run.log_text(), run.result, run.meta);
    assert!(everything.contains("token=***REDACTED***"), "{everything}");
    assert!(everything.contains("key=***REDACTED***"), "{everything}");
    assert!(
        !everything.contains(SERVICE_TOKEN),
        "the service token leaked"
    );
    assert!(!everything.contains(RUN_TOKEN), "the run token leaked");
    world.finish().await;
}
