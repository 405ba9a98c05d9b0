//! The operator CLI on the real stage: `claude-k8s jobs`, `logs` (`--follow` through cut connections, resumed by
//! the run's own log follower) and `gc` (`--dry-run`, then for real). Runs are made by the real `claude-k8s
//! serve` as the least-privilege user; the CLI runs as the binary an operator would run.
//!
//! One at a time (`make test-cluster` runs `cli::` with `--test-threads 1`, apart from the other modules): `gc`
//! deletes every finished Job of the adapter in the namespace, another test's too.

use std::process::Output;
use std::time::Duration;

use fault_proxy::FaultProxy;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{NAMESPACE, World, agent_selector};

/// Runs the CLI to its end and returns what it printed.
async fn cli(args: &[&str]) -> Output {
    cli_with_env(args, &[]).await
}

/// Runs the CLI to its end with `env` added to its environment and returns what it printed.
pub(crate) async fn cli_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_claude-k8s"))
            .args(args)
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the CLI ends within 120 s")
    .expect("run claude-k8s");
    eprintln!(
        "$ claude-k8s {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The name of the one Job of `agent`.
async fn job_of(world: &World, agent: &str) -> String {
    let jobs = world.stage.agent_jobs(agent).await;
    assert_eq!(jobs.len(), 1, "one Job of agent {agent}");
    jobs[0].metadata.name.clone().unwrap()
}

/// The row `claude-k8s jobs` printed for `job`, as its columns.
fn row<'a>(listing: &'a str, job: &str) -> Vec<&'a str> {
    listing
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(job))
        .unwrap_or_else(|| panic!("no row for Job {job} in:\n{listing}"))
        .split_whitespace()
        .collect()
}

/// The replay stand-in's lines: init, `replay line i of n`, result. Panics on anything missing, repeated or out
/// of order.
fn assert_replayed(lines: &[String], n: usize) {
    let lines: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), n + 2, "init, {n} lines, result");
    assert!(lines[0].contains("\"subtype\":\"init\""), "{}", lines[0]);
    for (i, line) in lines[1..=n].iter().enumerate() {
        let want = format!("replay line {} of {n} é€", i + 1);
        assert!(line.contains(&want), "line {}: {line}", i + 1);
    }
    assert!(
        lines[n + 1].contains("\"type\":\"result\""),
        "{}",
        lines[n + 1]
    );
}

/// A new agent of `world` with a replay run's config: the light stand-in for claude, the Job kept after the run
/// (so its pod can be read), `env` for the stand-in.
fn replay_agent(world: &mut World, env: Value) -> (String, Value) {
    let image = world.stage.replay_image.clone();
    world.new_agent(json!({"image": image, "retainJobs": true, "env": env}))
}

/// `jobs` shows a live run as Running with its agent and run id, and as Complete after it; `logs --follow`,
/// started while the run goes, prints its whole transcript once, in order, through a proxy that cuts every
/// connection (the log stream and the pod watch) eight times, and ends by itself when claude ends; `logs`
/// without --follow prints the same from the finished pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn jobs_and_logs_follow_a_live_run_through_cut_connections() {
    const LINES: usize = 3000;
    let mut world = World::start().await;
    let proxy = FaultProxy::start(world.stage.apiserver_addr())
        .await
        .unwrap();
    // About 12 s of output: 60 batches of 50 lines, 200 ms apart.
    let (agent, config) = replay_agent(
        &mut world,
        json!({"REPLAY_LINES": LINES.to_string(), "REPLAY_BATCH": "50", "REPLAY_PAUSE_MS": "200"}),
    );
    let params = world.stage.params(&agent, &config, "replay", None);
    let run_id = params["runId"].as_str().unwrap().to_owned();
    let id = world.serve.send_execute(&params).await;
    assert!(
        world
            .serve
            .wait_for_log(&id, Duration::from_secs(120), |l| l
                .contains("replay line 1 of"))
            .await,
        "the run starts"
    );
    let job = job_of(&world, &agent).await;
    let limited = world.stage.limited_kubeconfig.clone();

    let listing = cli(&["jobs", "--kubeconfig", &limited, "-n", NAMESPACE]).await;
    assert!(listing.status.success());
    let listing = stdout(&listing);
    let columns = row(&listing, &job);
    assert_eq!(columns[0], NAMESPACE);
    assert_eq!(columns[2], "Running", "{columns:?}");
    assert_eq!(columns[3], agent);
    assert_eq!(columns[4], run_id);

    // The operator follows the run, by run id, through the faulty proxy.
    let via_proxy = world.stage.kubeconfig_via(proxy.addr());
    let mut follower = tokio::process::Command::new(env!("CARGO_BIN_EXE_claude-k8s"))
        .args(["logs", &run_id, "--follow", "--kubeconfig", &via_proxy])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = follower.stdout.take().unwrap();
    let printed = tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });
    let mut cuts = 0;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        cuts += proxy.cut_all();
        world.serve.collect_for(Duration::from_millis(10)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(120), follower.wait())
        .await
        .expect("logs --follow ends by itself once claude has ended")
        .unwrap();
    assert!(status.success());
    let followed = printed.await.unwrap();
    assert_replayed(&followed, LINES);
    assert!(
        cuts >= 8,
        "the proxy broke live connections in every round ({cuts})"
    );

    let run = world.serve.wait_result(&id).await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());

    let listing = cli(&["jobs", "--kubeconfig", &limited, "-n", NAMESPACE]).await;
    assert_eq!(row(&stdout(&listing), &job)[2], "Complete");

    // By Job name, without --follow, from the finished pod (retainJobs kept it).
    let once = cli(&["logs", &job, "--kubeconfig", &limited]).await;
    assert!(once.status.success());
    let once: Vec<String> = stdout(&once).lines().map(str::to_owned).collect();
    assert_replayed(&once, LINES);

    let unknown = cli(&["logs", "no-such-run", "--kubeconfig", &limited]).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains(&format!(
            "no pod for Job or run `no-such-run` in namespace {NAMESPACE}"
        )),
        "names what it looked for"
    );

    world.stage.delete_retained(NAMESPACE, &agent).await;
    world.finish().await;
}

/// `gc --dry-run` names the finished Jobs (Complete and Failed), an orphaned run Secret and a stale agent Lease,
/// and deletes nothing; `gc` then deletes exactly those. A running Job, its run Secret and its Lease are never
/// touched. With the adapter's own least-privilege account `gc` refuses clearly: it may not list Secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn gc_dry_run_lists_and_gc_removes_only_what_runs_left_behind() {
    let mut world = World::start().await;
    let client = world.stage.admin_client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);

    // Two finished runs, kept: one Complete, one Failed.
    let (done, config) = replay_agent(&mut world, json!({"REPLAY_LINES": "3"}));
    let ok = world.run(&done, &config, "replay").await;
    assert_eq!(ok.result["exitCode"], 0, "{}", ok.dump());
    let (failed, config) =
        replay_agent(&mut world, json!({"REPLAY_LINES": "3", "REPLAY_EXIT": "3"}));
    let bad = world.run(&failed, &config, "replay").await;
    // The replay's result line says success (and the run reports that); the container's exit code tells.
    assert!(
        bad.log_text()
            .contains("claude container exited with code 3"),
        "{}",
        bad.dump()
    );
    let done_job = job_of(&world, &done).await;
    let failed_job = job_of(&world, &failed).await;

    // A live run (a slow replay), with its run Secret and Lease.
    let (live, config) = replay_agent(
        &mut world,
        json!({"REPLAY_LINES": "600", "REPLAY_BATCH": "1", "REPLAY_PAUSE_MS": "1000"}),
    );
    let live_id = world.send(&live, &config, "replay").await;
    assert!(
        world
            .serve
            .wait_for_log(&live_id, Duration::from_secs(120), |l| l
                .contains("replay line 1 of"))
            .await
    );
    let live_job = job_of(&world, &live).await;
    let by_live = ListParams::default().labels(&agent_selector(&live));
    let live_secret = secrets.list(&by_live).await.unwrap().items;
    assert_eq!(live_secret.len(), 1, "the live run has its run Secret");
    let live_secret = live_secret[0].metadata.name.clone().unwrap();
    let live_lease = leases.list(&by_live).await.unwrap().items;
    assert_eq!(live_lease.len(), 1, "the live run holds its agent's Lease");
    let live_lease = live_lease[0].metadata.name.clone().unwrap();

    // What a serve process that died at the wrong moment leaves: a run Secret whose Job was never created, and an
    // agent Lease taken ten minutes ago for a Job that never appeared.
    let gone = world.agent();
    let managed = json!({
        "app.kubernetes.io/managed-by": "claude-k8s",
        "paperclip.io/adapter-type": "claude_k8s",
        "paperclip.io/agent-id": gone,
    });
    let orphan = format!("claude-{}-gone-run", &gone[..8]);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": orphan, "labels": managed},
                "stringData": {"prompt": "left behind"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let stale = format!("claude-agent-{}-stale", &gone[..8]);
    let long_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(600)).to_string();
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": stale, "labels": managed},
                "spec": {"holderIdentity": format!("claude-{}-never", &gone[..8]),
                         "acquireTime": long_ago, "renewTime": long_ago}
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let admin = [
        "--kubeconfig",
        world.stage.admin_kubeconfig.as_str(),
        "-n",
        NAMESPACE,
    ];
    let dry = cli(&[&["gc", "--dry-run"][..], &admin[..]].concat()).await;
    assert!(dry.status.success());
    let dry = stdout(&dry);
    // What gc reports, one line per object, with `verb` ("would delete" or "deleted").
    let report = |verb: &str| {
        [
            format!("{verb} Job {done_job} (Complete)"),
            format!("{verb} Job {failed_job} (Failed)"),
            format!("{verb} orphaned run Secret {orphan}"),
            format!("{verb} stale agent Lease {stale}"),
        ]
    };
    for want in report("would delete") {
        assert!(dry.lines().any(|l| l == want), "`{want}` in:\n{dry}");
    }
    for untouched in [&live_job, &live_secret, &live_lease] {
        assert!(!dry.contains(untouched.as_str()), "{untouched} is live");
    }
    // Nothing was deleted.
    jobs.get(&done_job).await.unwrap();
    jobs.get(&failed_job).await.unwrap();
    secrets.get(&orphan).await.unwrap();
    leases.get(&stale).await.unwrap();

    let limited = cli(&[
        "gc",
        "--kubeconfig",
        &world.stage.limited_kubeconfig,
        "-n",
        NAMESPACE,
    ])
    .await;
    assert!(!limited.status.success());
    let why = String::from_utf8_lossy(&limited.stderr);
    assert!(
        why.contains("cannot list") && why.contains("secrets"),
        "names the missing permission: {why}"
    );
    jobs.get(&done_job).await.unwrap();

    let real = cli(&[&["gc"][..], &admin[..]].concat()).await;
    assert!(real.status.success());
    let real = stdout(&real);
    for want in report("deleted") {
        assert!(real.lines().any(|l| l == want), "`{want}` in:\n{real}");
    }
    assert!(secrets.get_opt(&orphan).await.unwrap().is_none());
    assert!(leases.get_opt(&stale).await.unwrap().is_none());
    // The finished Jobs go with their pods (background propagation).
    world.assert_nothing_left(&done).await;
    world.assert_nothing_left(&failed).await;
    // The live run is untouched and still going.
    let live_now = jobs.get(&live_job).await.unwrap();
    assert!(live_now.metadata.deletion_timestamp.is_none());
    secrets.get(&live_secret).await.unwrap();
    leases.get(&live_lease).await.unwrap();
    assert!(world.serve.has_pending(&live_id), "the live run goes on");

    world.serve.cancel(&live_id).await;
    let cancelled = world.serve.wait_result(&live_id).await;
    assert_eq!(
        cancelled.result["errorCode"],
        "cancelled",
        "{}",
        cancelled.dump()
    );
    world.finish().await;
}
