//! Figures 1, 2 and 5: completion latency, log latency and start overhead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use claude_k8s::run::plan::PROMPT_CONTAINER;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};

use crate::report::stats;
use crate::start::{StartSteps, breakdown, follow_docker_events};
use crate::support::{NAMESPACE, RunRecord, Stage, World};

pub fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// When the bench's own pod watch first saw each pod Running and each claude container terminated.
#[derive(Default)]
struct PodTimes {
    /// The pod's name, and when the watch first saw it and first saw it bound to a node.
    pod: HashMap<String, String>,
    seen: HashMap<String, SystemTime>,
    scheduled: HashMap<String, SystemTime>,
    running: HashMap<String, SystemTime>,
    terminated: HashMap<String, SystemTime>,
    finished_at: HashMap<String, SystemTime>,
}

fn job_of(pod: &Pod) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("job-name").cloned())
        .unwrap_or_default()
}

async fn watch_pods(stage: &Stage) -> Arc<Mutex<PodTimes>> {
    let times = Arc::new(Mutex::new(PodTimes::default()));
    let pods: Api<Pod> = Api::namespaced(stage.admin_client().await, NAMESPACE);
    let cfg = watcher::Config::default().labels("app.kubernetes.io/managed-by=claude-k8s");
    let sink = times.clone();
    tokio::spawn(async move {
        let mut events = watcher::watcher(pods, cfg).boxed();
        while let Some(ev) = events.next().await {
            let now = SystemTime::now();
            let (Ok(Event::Apply(pod)) | Ok(Event::InitApply(pod))) = ev else {
                continue;
            };
            let job = job_of(&pod);
            let claude = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == "claude").cloned());
            let mut t = sink.lock().unwrap();
            t.pod
                .entry(job.clone())
                .or_insert_with(|| pod.metadata.name.clone().unwrap_or_default());
            t.seen.entry(job.clone()).or_insert(now);
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
            {
                t.scheduled.entry(job.clone()).or_insert(now);
            }
            if let Some(state) = claude.and_then(|c| c.state) {
                if state.running.is_some() {
                    t.running.entry(job.clone()).or_insert(now);
                }
                if let Some(term) = state.terminated {
                    t.terminated.entry(job.clone()).or_insert(now);
                    if let Some(f) = term.finished_at {
                        let at = UNIX_EPOCH + Duration::from_secs(f.0.as_second() as u64);
                        t.finished_at.entry(job).or_insert(at);
                    }
                }
            }
        }
    });
    times
}

/// The Job name a run reported in its progress lines, and when that line arrived.
fn job_created(r: &RunRecord) -> Option<(String, SystemTime)> {
    r.logs.iter().zip(&r.log_at).find_map(|((_, chunk), at)| {
        let rest = chunk.split("[claude-k8s] Job ").nth(1)?;
        let name = rest.split(' ').next()?;
        rest.contains("created in namespace")
            .then(|| (name.to_owned(), *at))
    })
}

/// When claude's `result` line arrived on the serve's stdout.
fn result_line_at(r: &RunRecord) -> Option<SystemTime> {
    r.logs
        .iter()
        .zip(&r.log_at)
        .find_map(|((stream, chunk), at)| {
            (stream == "stdout"
                && chunk
                    .lines()
                    .any(|l| l.starts_with('{') && l.contains("\"type\":\"result\"")))
            .then_some(*at)
        })
}

/// Figures 1 and 5: completion latency and start overhead, with the real claude.
pub async fn completion_and_start(runs: usize) -> (Value, Value) {
    let mut world = World::start().await;
    let times = watch_pods(&world.stage).await;
    let containers = follow_docker_events().await;
    let (agent, config) = world.new_agent(json!({}));
    // Warm-up: self-introspection and the client's connection are made once per serve process.
    let mut p = world
        .stage
        .params(&agent, &config, "Warm up [[fake:text ok]]", None);
    p["runId"] = json!(format!("warm-{agent}"));
    let warm_sent = SystemTime::now();
    let warm = world.serve.execute(&p).await;
    assert_eq!(warm.result["exitCode"], 0, "{:#}", warm.result);
    let cold_create = job_created(&warm).map(|(_, at)| secs_between(warm_sent, at) * 1000.0);

    let (mut after_watch, mut after_finished, mut to_job, mut to_running) =
        (vec![], vec![], vec![], vec![]);
    let (mut after_result_line, mut after_final_request) = (vec![], vec![]);
    let mut starts = vec![];
    // `BENCH_PROMPT` scripts another run (e.g. a tool call first: a claude that exits within a second of its start is
    // never seen running by the 1.20 kubelet, and its run ends on its terminated state).
    let prompt = std::env::var("BENCH_PROMPT").unwrap_or_else(|_| "Say [[fake:text done]]".into());
    for i in 0..runs {
        let mut p = world.stage.params(&agent, &config, &prompt, None);
        p["runId"] = json!(format!("run-{i}-{agent}"));
        let earlier = world.fake.message_requests().len();
        let earlier_any = world.fake.requests().len();
        let sent = SystemTime::now();
        let run = world.serve.execute(&p).await;
        assert_eq!(run.result["exitCode"], 0, "{:#}", run.result);
        let (job, created) = job_created(&run).expect("the run reports its Job");
        let done = run.result_at.unwrap();
        if let Some(at) = result_line_at(&run) {
            after_result_line.push(secs_between(at, done));
        }
        // The fake's scripted reply is sent at once: its final request's arrival is when the final reply began.
        if let Some(last) = world
            .fake
            .message_requests()
            .get(earlier..)
            .and_then(|r| r.last())
        {
            let at = UNIX_EPOCH + Duration::from_millis(last.received_at_unix_ms);
            after_final_request.push(secs_between(at, done));
        }
        to_job.push(secs_between(sent, created) * 1000.0);
        let t = times.lock().unwrap();
        let pod = t.pod.get(&job).cloned().unwrap_or_default();
        let c = containers.lock().unwrap();
        starts.push(StartSteps {
            sent,
            job_created: Some(created),
            pod_seen: t.seen.get(&job).copied(),
            scheduled: t.scheduled.get(&job).copied(),
            sandbox_started: c.at(&pod, "POD", "start"),
            init_started: c.at(&pod, PROMPT_CONTAINER, "start"),
            init_exited: c.at(&pod, PROMPT_CONTAINER, "die"),
            claude_started: c.at(&pod, "claude", "start"),
            first_request: world
                .fake
                .requests()
                .get(earlier_any..)
                .and_then(|r| r.first())
                .map(|r| UNIX_EPOCH + Duration::from_millis(r.received_at_unix_ms)),
        });
        drop(c);
        if let Some(running) = t.running.get(&job) {
            to_running.push(secs_between(sent, *running));
        }
        if let Some(term) = t.terminated.get(&job) {
            after_watch.push(secs_between(*term, done));
        }
        if let Some(fin) = t.finished_at.get(&job) {
            after_finished.push(secs_between(*fin, done));
        }
    }
    world.finish().await;
    (
        json!({"after_watch_sees_termination_s": stats(after_watch), "after_finished_at_s": stats(after_finished),
               "after_result_line_s": stats(after_result_line),
               "after_final_request_s": stats(after_final_request)}),
        json!({"execute_to_job_created_ms": stats(to_job), "first_run_execute_to_job_created_ms": cold_create,
               "execute_to_pod_running_s": stats(to_running), "breakdown": breakdown(&starts)}),
    )
}

/// Figure 2: log latency, from the line's own write time (µs, bash's EPOCHREALTIME in the stand-in) to its
/// arrival on the serve's stdout.
pub async fn log_latency(lines: usize) -> Value {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(
                json!({"image": world.stage.replay_image,
               "env": {"REPLAY_STAMP": "1", "REPLAY_LINES": lines.to_string(), "REPLAY_BATCH": "5", "REPLAY_PAUSE_MS": "50"}}),
    );
    let run = world.run(&agent, &config, "replay").await;
    assert_eq!(run.result["exitCode"], 0, "{:#}", run.result);
    let mut latencies = vec![];
    for ((_, chunk), at) in run.logs.iter().zip(&run.log_at) {
        for line in chunk.lines() {
            let Some(stamp) = line.split(" t=").nth(1).and_then(|s| s.split('"').next()) else {
                continue;
            };
            let written = UNIX_EPOCH + Duration::from_micros(stamp.parse().unwrap());
            latencies.push(secs_between(written, *at) * 1000.0);
        }
    }
    world.finish().await;
    assert_eq!(latencies.len(), lines, "every stamped line arrived");
    json!({"line_ms": stats(latencies)})
}
