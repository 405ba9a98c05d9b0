//! The follow machine on Pod and Job objects shaped as a Kubernetes 1.20 API server serves them and on claude's
//! line sequences: one test per failure class it produces, cancel in each phase, the hang-after-result guard,
//! external deletes, the log ending before and after termination, and every time limit.

use super::*;
use crate::run::outcome::{RunFacts, report};
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

const JOB: &str = "claude-agent1-run1-0a1b2c3d";
const POD: &str = "claude-agent1-run1-0a1b2c3d-x7k2p";
const S: Duration = Duration::from_secs(1);

fn limits() -> Limits {
    Limits {
        pod: pod_state::Limits::default(),
        result_grace: 10 * S,
        grace: 60 * S,
        timeout: None,
    }
}

/// A run being followed, its clock, and every action it asked for.
struct Run {
    m: Follow,
    t0: Instant,
    now: Instant,
    actions: Vec<Action>,
}

impl Run {
    fn new(limits: Limits) -> Self {
        let t0 = Instant::now();
        Self {
            m: Follow::new(JOB, limits, t0),
            t0,
            now: t0,
            actions: Vec::new(),
        }
    }

    fn at(&mut self, secs: u64) -> &mut Self {
        self.now = self.t0 + Duration::from_secs(secs);
        self
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        let out = self.m.step(input, self.now);
        self.actions.extend(out.clone());
        out
    }

    fn tick(&mut self, secs: u64) -> Vec<Action> {
        self.at(secs);
        self.feed(Input::Tick)
    }

    fn pod(&mut self, pod: Pod) -> Vec<Action> {
        self.feed(Input::Pod(Box::new(pod)))
    }

    fn lines(&mut self, lines: &[&str]) {
        for l in lines {
            self.feed(Input::Line((*l).to_owned()));
        }
    }

    fn ending(&self) -> Option<&Ending> {
        self.actions.iter().find_map(|a| match a {
            Action::Finish(e) => Some(e),
            _ => None,
        })
    }

    fn failure(&self) -> &Failure {
        match self.ending() {
            Some(Ending::Failed(f)) => f,
            other => panic!("not a failure: {other:?}; actions: {:#?}", self.actions),
        }
    }

    fn progress(&self) -> Vec<&str> {
        self.texts(true)
    }

    fn warnings(&self) -> Vec<&str> {
        self.texts(false)
    }

    /// The progress lines (or the warnings) the run printed.
    fn texts(&self, progress: bool) -> Vec<&str> {
        self.actions
            .iter()
            .filter_map(|a| match (a, progress) {
                (Action::Progress(t), true) | (Action::Warn(t), false) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn asked(&self, action: &Action) -> bool {
        self.actions.contains(action)
    }

    /// The result Paperclip would get.
    fn result(&self) -> Value {
        let facts = RunFacts {
            cwd: "/paperclip/w".into(),
            has_api_key: true,
            memory_limit: "8Gi".into(),
            job_name: JOB.into(),
            ..Default::default()
        };
        let ending = self.ending().expect("finished");
        serde_json::to_value(report(
            ending,
            self.m.transcript(),
            &facts,
            false,
            10,
            5,
            jiff::Timestamp::now(),
        ))
        .unwrap()
    }
}

// --- Objects as the API server serves them -----------------------------------------------------------------

fn pod_with(status: Value, deleting: bool) -> Pod {
    let mut metadata = json!({
        "name": POD, "namespace": "paperclip", "uid": "5f0c1a2e-7d7e-4c1b-9a0e-1f2e3d4c5b6a",
        "labels": {"controller-uid": "9d3c2b1a-0000-4000-8000-000000000001", "job-name": JOB},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": JOB,
            "uid": "9d3c2b1a-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true}]
    });
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-25T08:00:30Z");
        metadata["deletionGracePeriodSeconds"] = json!(60);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {"nodeName": "stage-node", "restartPolicy": "Never",
            "initContainers": [{"name": "write-prompt", "image": "local/busybox:1"}],
            "containers": [{"name": "claude", "image": "local/claude-agent:2.1.328"}]},
        "status": status
    }))
    .unwrap()
}

fn pod(status: Value) -> Pod {
    pod_with(status, false)
}

fn container(name: &str, image: &str, state: Value) -> Value {
    json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
           "state": state})
}

fn init_done() -> Value {
    container(
        "write-prompt",
        "local/busybox:1",
        json!({"terminated": {"exitCode": 0, "reason": "Completed",
            "startedAt": "2026-11-25T08:00:01Z", "finishedAt": "2026-11-25T08:00:01Z"}}),
    )
}

fn scheduled() -> Pod {
    pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
               "hostIP": "127.0.0.1", "startTime": "2026-11-25T08:00:00Z"}),
    )
}

fn unschedulable() -> Pod {
    pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) didn't match node selector."}]}),
    )
}

fn waiting(which: &str, image: &str, reason: &str, message: &str) -> Pod {
    let state = json!({"waiting": {"reason": reason, "message": message}});
    let (init, claude) = if which == "claude" {
        (init_done(), container("claude", image, state))
    } else {
        (
            container("write-prompt", image, state),
            container(
                "claude",
                "local/claude-agent:2.1.328",
                json!({"waiting": {"reason": "PodInitializing"}}),
            ),
        )
    };
    pod(
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
               "initContainerStatuses": [init], "containerStatuses": [claude]}),
    )
}

fn running_with(deleting: bool) -> Pod {
    let claude = container(
        "claude",
        "local/claude-agent:2.1.328",
        json!({"running": {"startedAt": "2026-11-25T08:00:02Z"}}),
    );
    pod_with(
        json!({"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}],
               "initContainerStatuses": [init_done()], "containerStatuses": [claude]}),
        deleting,
    )
}

fn running() -> Pod {
    running_with(false)
}

fn terminated_with(exit_code: i32, reason: &str, deleting: bool) -> Pod {
    let claude = container(
        "claude",
        "local/claude-agent:2.1.328",
        json!({"terminated": {"exitCode": exit_code, "reason": reason,
            "startedAt": "2026-11-25T08:00:02Z", "finishedAt": "2026-11-25T08:00:20Z"}}),
    );
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    pod_with(
        json!({"phase": phase, "initContainerStatuses": [init_done()], "containerStatuses": [claude]}),
        deleting,
    )
}

fn terminated(exit_code: i32, reason: &str) -> Pod {
    terminated_with(exit_code, reason, false)
}

fn job(status: Value, deleting: bool) -> Box<Job> {
    let mut metadata = json!({"name": JOB, "namespace": "paperclip",
        "uid": "9d3c2b1a-0000-4000-8000-000000000001"});
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-25T08:00:30Z");
    }
    Box::new(
        serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
            "spec": {"backoffLimit": 0, "template": {"spec": {"containers": []}}}, "status": status}))
        .unwrap(),
    )
}

fn active_job() -> Box<Job> {
    job(
        json!({"active": 1, "startTime": "2026-11-25T08:00:00Z"}),
        false,
    )
}

const INIT: &str = r#"{"type":"system","subtype":"init","session_id":"5b1b7e0e-8f2a-4c4e-9a57-0c0d1e2f3a4b","model":"claude-sonnet-4-6"}"#;
const ASSISTANT: &str =
    r#"{"type":"assistant","message":{"content":[{"type":"text","text":"working on it"}]}}"#;
const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"5b1b7e0e-8f2a-4c4e-9a57-0c0d1e2f3a4b","total_cost_usd":0.01,"usage":{"input_tokens":10,"output_tokens":5}}"#;

/// Up to claude running, its log followed.
fn started(limits: Limits) -> Run {
    let mut r = Run::new(limits);
    r.pod(scheduled());
    r.at(2).pod(running());
    r.feed(Input::Job(active_job()));
    r
}

mod cancel;
mod deletes;
mod exit;
mod normal;
mod startup;
mod stops;
