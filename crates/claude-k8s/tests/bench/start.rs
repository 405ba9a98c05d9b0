//! Where a run's start goes: `execute()` sent -> Job created -> pod seen -> pod scheduled -> the pod's sandbox,
//! its init container and claude's container started (and the init container's exit) -> claude's first request
//! to the fake Messages API. Every time is this machine's clock: the serve's progress line as it arrives, the
//! bench's own pod watch, dockerd's own event stream (`docker events`, nanoseconds, so the kubelet's whole-second
//! status times play no part) and the fake API's record.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::report::stats;
use crate::support::stage_env;

/// What dockerd said it did to a pod's containers: (container, action) -> when, first time only.
#[derive(Default)]
pub struct ContainerEvents {
    by_pod: HashMap<String, HashMap<(String, String), SystemTime>>,
}

impl ContainerEvents {
    /// When dockerd first reported `action` (`start`, `die`) of `container` (`POD` is the sandbox) of `pod`.
    pub fn at(&self, pod: &str, container: &str, action: &str) -> Option<SystemTime> {
        self.by_pod
            .get(pod)?
            .get(&(container.to_owned(), action.to_owned()))
            .copied()
    }
}

/// Follows the stage's dockerd events from now on. The kubelet names each container
/// `k8s_<container>_<pod>_<namespace>_<pod uid>_<attempt>` (dockershim), which is how an event finds its pod.
pub async fn follow_docker_events() -> Arc<Mutex<ContainerEvents>> {
    let events = Arc::new(Mutex::new(ContainerEvents::default()));
    let socket = stage_env("STAGE_DOCKER_HOST");
    let mut child = tokio::process::Command::new("docker")
        .args(["-H", &socket, "events", "--format", "{{json .}}"])
        .args(["--filter", "type=container"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("docker events (the stage's dockerd) starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let sink = events.clone();
    tokio::spawn(async move {
        let _child = child;
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let (Some(action), Some(name), Some(nanos)) = (
                ev["Action"].as_str(),
                ev["Actor"]["Attributes"]["name"].as_str(),
                ev["timeNano"].as_u64(),
            ) else {
                continue;
            };
            let mut parts = name.split('_');
            let (Some("k8s"), Some(container), Some(pod)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let at = UNIX_EPOCH + Duration::from_nanos(nanos);
            sink.lock()
                .unwrap()
                .by_pod
                .entry(pod.to_owned())
                .or_default()
                .entry((container.to_owned(), action.to_owned()))
                .or_insert(at);
        }
    });
    // `docker events` reports only what happens after it connected.
    tokio::time::sleep(Duration::from_millis(300)).await;
    events
}

/// One run's start, each step's end as this machine's time (None: not seen).
pub struct StartSteps {
    pub sent: SystemTime,
    pub job_created: Option<SystemTime>,
    pub pod_seen: Option<SystemTime>,
    pub scheduled: Option<SystemTime>,
    pub sandbox_started: Option<SystemTime>,
    pub init_started: Option<SystemTime>,
    pub init_exited: Option<SystemTime>,
    pub claude_started: Option<SystemTime>,
    pub first_request: Option<SystemTime>,
}

/// The steps in order: each one's name in results.json and what it is in BENCHMARKS.md. Each figure is the time
/// from the step before it.
const STEPS: [(&str, &str); 8] = [
    (
        "job_created",
        "`execute()` sent → the serve's `Job … created` line (Lease, run Secret, Job)",
    ),
    (
        "pod_seen",
        "→ the bench's pod watch sees the pod (the Job controller created it)",
    ),
    (
        "pod_scheduled",
        "→ the watch sees it bound to the node (the scheduler)",
    ),
    (
        "sandbox_started",
        "→ dockerd starts the pod's sandbox (the kubelet admitted the pod and mounted its volumes)",
    ),
    (
        "init_started",
        "→ dockerd starts the `write-prompt` init container (only for a prompt over about 1 MiB)",
    ),
    ("init_exited", "→ it exits"),
    ("claude_started", "→ dockerd starts the claude container"),
    (
        "first_api_request",
        "→ the fake Messages API receives claude's first request (Claude Code's own start)",
    ),
];

impl StartSteps {
    fn ends(&self) -> [Option<SystemTime>; 8] {
        [
            self.job_created,
            self.pod_seen,
            self.scheduled,
            self.sandbox_started,
            self.init_started,
            self.init_exited,
            self.claude_started,
            self.first_request,
        ]
    }
}

/// The seconds of each step (from the step before it that was seen; a pod without an init container has no init
/// steps) and of the whole start, p50/p95/max over the runs.
pub fn breakdown(runs: &[StartSteps]) -> Value {
    let mut steps: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut total = vec![];
    for run in runs {
        let mut before = run.sent;
        for ((name, _), end) in STEPS.iter().zip(run.ends()) {
            let Some(end) = end else { continue };
            steps
                .entry(name)
                .or_default()
                .push(crate::latency::secs_between(before, end));
            before = end;
        }
        if let Some(first) = run.first_request {
            total.push(crate::latency::secs_between(run.sent, first));
        }
    }
    let mut out = serde_json::Map::new();
    for (name, _) in STEPS {
        out.insert(
            name.to_owned(),
            stats(steps.remove(name).unwrap_or_default()),
        );
    }
    let order: Vec<&str> = STEPS.iter().map(|(name, _)| *name).collect();
    json!({"execute_to_first_api_request_s": stats(total), "steps_s": out, "order": order})
}

/// The start breakdown as a Markdown section.
pub fn render_breakdown(b: &Value) -> String {
    let cell = |s: &Value, key: &str| {
        s[key]
            .as_f64()
            .map(|v| format!("{v} s"))
            .unwrap_or("–".into())
    };
    let mut md = String::from(
        "\n## Where the start goes: `execute()` → claude's first API request\n\n\
         | step | p50 | p95 | max | runs |\n|---|---|---|---|---|\n",
    );
    for (name, meaning) in STEPS {
        let s = &b["steps_s"][name];
        md.push_str(&format!(
            "| {meaning} | {} | {} | {} | {} |\n",
            cell(s, "p50"),
            cell(s, "p95"),
            cell(s, "max"),
            s["n"].as_u64().unwrap_or(0)
        ));
    }
    let t = &b["execute_to_first_api_request_s"];
    md.push_str(&format!(
        "| **the whole start** | **{}** | {} | {} | {} |\n\nTarget: ≤ 2.0 s p50. Each step is timed from the \
         end of the step before it that was seen. What the adapter controls is the first row and the pod's shape \
         (one container: the prompt is read from the run Secret's volume, so no init container start and no wait \
         for the kubelet to notice its exit, which cost about 1.5 s) and what the node's kubelet is asked for \
         (the pod of a claude that exited is force-deleted, so its kubelet makes no requests of its own to stop \
         it); the rest is the Job controller, the scheduler, the kubelet and dockerd of this stage, and Claude \
         Code's own start. The runs follow each other at once, and this 1.20 kubelet allows itself 5 API requests \
         a second (1.27 and later: 50) for a dozen or so per pod, so part of the sandbox step is its client-side \
         throttle (see the hand-written section below).\n",
        cell(t, "p50"),
        cell(t, "p95"),
        cell(t, "max"),
        t["n"].as_u64().unwrap_or(0)
    ));
    md
}
