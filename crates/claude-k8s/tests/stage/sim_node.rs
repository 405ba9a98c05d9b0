//! The simulated node (crates/sim-node, `test/stage/cluster.sh sim-node`) under the real `claude-k8s serve`:
//! runs whose pods tolerate its taint are scheduled there by the real scheduler, played from the recorded
//! transcripts of test/fixtures/claude-2.1.328, and read back through the real API server's `pods/log`.
//!
//! Needs the stage (`make cluster-up`); each test brings the simulated node up itself (unless it already runs)
//! and takes it down again after the last one. `#[ignore]`d otherwise, like the other stage suites.

use std::sync::Mutex;
use std::time::Duration;

use crate::support::{self as stage, Serve, Stage};
use fake_anthropic::FakeAnthropic;
use serde_json::{Value, json};

const NEEDS_STAGE: &str = "needs the real stage: make cluster-up";
const SIM_NODE: &str = "sim-0";
/// The simulated node's label and taint key (crates/sim-node/src/node.rs).
const SIMULATED: &str = "node.claude-k8s.io/simulated";

fn cluster_sh(args: &[&str]) -> std::process::Output {
    std::process::Command::new(stage::repo_root().join("test/stage/cluster.sh"))
        .args(args)
        .output()
        .expect("run test/stage/cluster.sh")
}

/// How many tests of this binary use the simulated node now, and whether one of them started it.
static USERS: Mutex<(usize, bool)> = Mutex::new((0, false));

/// The simulated node, up while a test holds this: started by the first user if it was not running, stopped
/// (with whatever it still holds) when the last user is done, so the stage is left as it was found.
struct SimNode;

impl SimNode {
    fn up() -> Self {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        if users.0 == 0 && !cluster_sh(&["sim-node", "status"]).status.success() {
            let out = cluster_sh(&["sim-node", "up"]);
            assert!(
                out.status.success(),
                "test/stage/cluster.sh sim-node up failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            users.1 = true;
        }
        users.0 += 1;
        SimNode
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 -= 1;
        if users.0 == 0 && users.1 {
            users.1 = false;
            let out = cluster_sh(&["sim-node", "down"]);
            if !out.status.success() {
                eprintln!(
                    "sim-node down failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// An agent config whose pods go to the simulated node, with `sim` as the played container's environment.
fn on_sim_node(stage: &Stage, fake: &FakeAnthropic, agent: &str, sim: Value) -> Value {
    stage.agent_config(
        fake,
        agent,
        json!({
            "tolerations": [{"key": SIMULATED, "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"kubernetes.io/hostname": SIM_NODE},
            "resources.requests.cpu": "1m",
            "resources.requests.memory": "4Mi",
            "resources.limits.memory": "64Mi",
            "env": sim,
        }),
    )
}

/// The recorded transcript's lines, as JSON.
fn fixture(name: &str) -> Vec<Value> {
    let path = stage::repo_root().join(format!("test/fixtures/claude-2.1.328/{name}.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Usage and cost as the recorded `result` line states them: input (with cache creation), output, cache reads
/// summed over `modelUsage`, and `total_cost_usd`.
fn recorded_usage(lines: &[Value]) -> (u64, u64, u64, f64) {
    let result = lines.iter().rfind(|l| l["type"] == "result").unwrap();
    let (mut input, mut output, mut cached) = (0, 0, 0);
    for m in result["modelUsage"].as_object().unwrap().values() {
        let n = |k: &str| m[k].as_u64().unwrap_or(0);
        input += n("inputTokens") + n("cacheCreationInputTokens");
        output += n("outputTokens");
        cached += n("cacheReadInputTokens");
    }
    (
        input,
        output,
        cached,
        result["total_cost_usd"].as_f64().unwrap(),
    )
}

/// Twenty runs at once on the simulated node: each succeeds with its whole transcript, in order, and the usage
/// and cost of its recorded result line; nothing of them is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn twenty_concurrent_runs_on_the_simulated_node_succeed_with_their_whole_transcripts() {
    let stage = Stage::load();
    let _node = SimNode::up();
    // Only for the config's ANTHROPIC_BASE_URL: no claude runs, so nothing may call it.
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let transcripts = ["bash-tool-use", "text-reply"];
    let mut runs = vec![];
    for i in 0..20 {
        let agent = stage::uuid();
        let transcript = transcripts[i % transcripts.len()];
        let config = on_sim_node(
            &stage,
            &fake,
            &agent,
            json!({"SIM_TRANSCRIPT": transcript, "SIM_START_MS": "300", "SIM_LINE_MS": "400"}),
        );
        let id = serve
            .send_execute(&stage.params(&agent, &config, "simulated", None))
            .await;
        runs.push((id, agent, transcript));
    }
    for (id, agent, transcript) in &runs {
        let run = serve.wait_result_within(id, Duration::from_secs(180)).await;
        let r = &run.result;
        let log = run.log_text();
        assert_eq!(r["exitCode"], 0, "{r:#}\n{log}");
        assert!(r.get("errorMessage").is_none_or(Value::is_null), "{r:#}");
        let recorded = fixture(transcript);
        assert_eq!(
            run.stdout_json(),
            recorded,
            "the whole transcript {transcript}, in order, once\n{log}"
        );
        let (input, output, cached, cost) = recorded_usage(&recorded);
        assert_eq!(r["usage"]["inputTokens"], input, "{r:#}");
        assert_eq!(r["usage"]["outputTokens"], output, "{r:#}");
        assert_eq!(r["usage"]["cachedInputTokens"], cached, "{r:#}");
        assert_eq!(r["costUsd"].as_f64(), Some(cost), "{r:#}");
        assert_eq!(
            r["sessionId"], recorded[0]["session_id"],
            "the recorded session"
        );
        assert!(
            log.contains(&format!("claude running on node {SIM_NODE}")),
            "the pod ran on the simulated node\n{log}"
        );
        stage.assert_nothing_left_in(stage::NAMESPACE, agent).await;
    }
    assert!(
        fake.message_requests().is_empty(),
        "no real claude ran: the pods were simulated"
    );
    serve.shutdown().await;
}

/// A cancel while the simulated claude runs: the Job's deletion reaches the pod as a kubelet would handle it
/// (exit 143, then the pod removed), the cancel is acknowledged with the lines written so far, nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_cancelled_run_on_the_simulated_node_is_stopped_and_leaves_nothing() {
    let stage = Stage::load();
    let _node = SimNode::up();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let mut config = on_sim_node(
        &stage,
        &fake,
        &agent,
        json!({"SIM_TRANSCRIPT": "bash-tool-use", "SIM_START_MS": "0", "SIM_LINE_MS": "600000"}),
    );
    config["graceSec"] = json!(5);
    let id = serve
        .send_execute(&stage.params(&agent, &config, "simulated", None))
        .await;
    assert!(
        serve
            .wait_for_log(&id, Duration::from_secs(60), |c| c
                .contains("\"subtype\":\"init\""))
            .await,
        "the first recorded line arrived"
    );
    serve.cancel(&id).await;
    let run = serve.wait_result_within(&id, Duration::from_secs(60)).await;
    let ack = &run.result["resultJson"]["executionCancellation"];
    assert_eq!(ack["state"], "acknowledged", "{:#}", run.result);
    assert_eq!(
        run.stdout_json(),
        fixture("bash-tool-use")[..1],
        "only the line written before the stop"
    );
    stage.assert_nothing_left_in(stage::NAMESPACE, &agent).await;
    serve.shutdown().await;
}

#[test]
fn the_stage_marker_is_used() {
    assert!(NEEDS_STAGE.contains("make cluster-up"));
}

/// One figure of /proc/<pid>/status, in kB (`VmHWM:`, `VmRSS:`).
fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// Open descriptors of a process, and how many of them are sockets.
fn fds(pid: u32) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let links: Vec<_> = dir
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    let sockets = links
        .iter()
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count();
    (links.len(), sockets)
}

/// The API server's gauges of long-running requests (watches, followed logs) by verb, resource and subresource.
async fn longrunning(stage: &Stage) -> std::collections::BTreeMap<String, f64> {
    let client = stage.admin_client().await;
    let req = axum::http::Request::get("/metrics")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_longrunning_gauge{")
                || l.starts_with("apiserver_registered_watchers{")
        })
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Not a test: the baseline of the scale work (issue 15). `SIM_NODE_RUNS` (default 1,000) runs at once under one
/// serve process on the simulated node, each about 100 s long; prints the serve process's peak RSS, CPU, open
/// descriptors and sockets, the API server's long-running requests at the peak, and the simulated node's RSS
/// and CPU. Asserts only that every run completed with its whole transcript. More than 256 runs need
/// `CLAUDE_K8S_MAX_RUNS` (inherited by the serve process); `CLAUDE_K8S_*_SEC` knobs pass through too. Run by hand,
/// under the stage lock:
/// `cargo test --release -p claude-k8s --test stage -- --ignored --nocapture sim_node::scale_baseline` (make test-cluster
/// skips it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand (see its comment); needs the real stage: make cluster-up"]
async fn scale_baseline_on_the_simulated_node() {
    let n: usize = std::env::var("SIM_NODE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let line_ms: u64 = std::env::var("SIM_NODE_LINE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25_000);
    // Executes per second (0: all at once). Paperclip starts heartbeats one by one; a burst of 1,000 at the same
    // instant is the worst case, which the API server meets with 429s.
    let per_sec: u64 = std::env::var("SIM_NODE_RAMP_PER_SEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stage = Stage::load();
    let _node = SimNode::up();
    let sim_pid: u32 =
        std::fs::read_to_string(format!("{}/sim-node.pid", stage::stage_env("STAGE_STATE")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let before = longrunning(&stage).await;
    let (sim_cpu0, sim_rss0) = (cpu_seconds(sim_pid), proc_kib(sim_pid, "VmRSS:"));
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CLAUDE_K8S_") && k.ends_with("_SEC"))
        .collect();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut serve = Serve::start_with_env(&stage, &env_refs);
    let pid = serve.pid();
    let started = std::time::Instant::now();
    let mut ids = vec![];
    for i in 0..n {
        if per_sec > 0 && i > 0 && (i as u64).is_multiple_of(per_sec) {
            // Keep taking the serve's messages meanwhile (its stdout must not fill up).
            let _ = serve.collect_for(Duration::from_secs(1)).await;
        }
        let agent = stage::uuid();
        let config = on_sim_node(
            &stage,
            &fake,
            &agent,
            json!({"SIM_TRANSCRIPT": "bash-tool-use", "SIM_START_MS": "1000",
                   "SIM_LINE_MS": line_ms.to_string()}),
        );
        let id = serve
            .send_execute(&stage.params(&agent, &config, "simulated", None))
            .await;
        ids.push((id, agent));
    }
    let sent = started.elapsed().as_secs_f64();
    let mut done = vec![];
    let (mut peak_fds, mut peak_sockets, mut peak_sim_rss) = (0, 0, 0);
    let mut peak_lr = std::collections::BTreeMap::<String, f64>::new();
    let mut peak_streams = 0.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(1500);
    while done.len() < n && std::time::Instant::now() < deadline {
        done = serve.collect_for(Duration::from_secs(2)).await;
        let (f, s) = fds(pid);
        peak_fds = peak_fds.max(f);
        peak_sockets = peak_sockets.max(s);
        peak_sim_rss = peak_sim_rss.max(proc_kib(sim_pid, "VmRSS:"));
        let lr = longrunning(&stage).await;
        let streams: f64 = lr
            .iter()
            .filter(|(k, _)| k.contains("resource=\"pods\"") && k.contains("subresource=\"log\""))
            .map(|(_, v)| v)
            .sum();
        if streams >= peak_streams {
            peak_streams = streams;
            peak_lr = lr;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let rss = proc_kib(pid, "VmHWM:");
    let cpu = cpu_seconds(pid);
    let recorded = fixture("bash-tool-use");
    let mut complete = 0;
    let mut failures = std::collections::BTreeMap::<String, usize>::new();
    for (id, _) in &ids {
        if !done.contains(id) {
            *failures.entry("no result".into()).or_default() += 1;
            continue;
        }
        let r = serve.take(id);
        if r.result["exitCode"] == 0 && r.stdout_json() == recorded {
            complete += 1;
        } else {
            // A request refused by serve (past CLAUDE_K8S_MAX_RUNS) has a protocol error, not a result.
            let why = r.result["errorCode"]
                .as_str()
                .or(r.result["protocolError"]["code"].as_str())
                .or(r.result["errorMessage"].as_str())
                .unwrap_or("incomplete transcript")
                .to_owned();
            *failures.entry(why).or_default() += 1;
        }
    }
    serve.shutdown().await;
    eprintln!(
        "== {n} runs on the simulated node, lines every {line_ms} ms, {per_sec} executes/s (0: at once) =="
    );
    eprintln!(
        "executes sent in {sent:.1} s; all results after {wall:.1} s; complete {complete}/{n}; failures {failures:?}"
    );
    eprintln!(
        "serve: peak RSS {:.1} MiB, CPU {cpu:.1} s ({:.1} ms per run), peak fds {peak_fds}, peak sockets {peak_sockets}",
        rss as f64 / 1024.0,
        cpu * 1000.0 / n as f64
    );
    eprintln!(
        "sim-node: RSS {:.1} MiB before, peak {:.1} MiB; CPU {:.1} s over the whole measurement",
        sim_rss0 as f64 / 1024.0,
        peak_sim_rss as f64 / 1024.0,
        cpu_seconds(sim_pid) - sim_cpu0
    );
    eprintln!(
        "API server long-running requests at the peak ({peak_streams} followed logs), minus before:"
    );
    for (k, v) in &peak_lr {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d.abs() >= 1.0 {
            eprintln!("  {k} {d:+}");
        }
    }
    for (_, agent) in &ids {
        stage.assert_nothing_left_in(stage::NAMESPACE, agent).await;
    }
    assert_eq!(complete, n, "every run complete: {failures:?}");
}
