//! Follow a run: a pod watch, a Job watch and the claude container's log stream feed one event loop, and the run
//! ends on the claude container's terminated state (or a cancel, a timeout, a failure that will not fix itself),
//! never on a log stream ending.
//!
//! Stopping is the adapter's own: at `timeoutSec`, and when claude printed its final `result` line but has not
//! exited `CLAUDE_K8S_RESULT_GRACE_SEC` (10) later, the Job is deleted so the pod gets SIGTERM, then SIGKILL after
//! `graceSec`; the loop keeps reading lines until the container has ended, so its last lines are in the result.
//! A Job or pod deleted by someone else is reported as such after a short bounded wait for claude's exit.
//! Start-up problems fail after `CLAUDE_K8S_START_GRACE_SEC` (30), an unschedulable pod after
//! `CLAUDE_K8S_PENDING_TIMEOUT_SEC` (600), a Job that gets no pod after `CLAUDE_K8S_POD_CREATE_TIMEOUT_SEC` (60).

pub mod logs;
pub mod pod_state;
pub mod stream_json;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::run::cleanup;
use crate::run::launch::JobRef;
use crate::run::outcome::{self, ContainerEnd, Failure};
use crate::run::prepare::Prepared;
use pod_state::PodFailure;
use stream_json::Transcript;

/// How long the log follower may take to deliver the tail after the container terminated.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the adapter waits for claude to exit after it stopped the Job (timeout, hang after the result),
/// beyond the grace, before it reports without the last lines (cleanup still waits for the pod to be gone).
const STOP_SLACK: Duration = Duration::from_secs(30);
/// How long claude may take to exit after its final `result` line before it is stopped (claude_local's
/// `terminalResultCleanupGraceMs` is 5 s; a pod also flushes its log). `CLAUDE_K8S_RESULT_GRACE_SEC` overrides.
const RESULT_GRACE: Duration = Duration::from_secs(10);

/// The time limits of a run, from the serve process's environment (see docs/protocol.md).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub pod: pod_state::Limits,
    pub result_grace: Duration,
}

impl Timing {
    pub fn from_env() -> Self {
        Self {
            pod: pod_state::Limits::from_env(),
            result_grace: pod_state::env_secs("CLAUDE_K8S_RESULT_GRACE_SEC")
                .unwrap_or(RESULT_GRACE),
        }
    }
}

/// How following ended.
pub enum Ending {
    /// The claude container terminated by itself.
    Exited(ContainerEnd),
    Cancelled,
    /// `timeoutSec` passed; the agent was stopped and its last lines collected.
    TimedOut,
    /// Claude printed its final `result` but did not exit; it was stopped.
    StoppedAfterResult(Option<ContainerEnd>),
    Failed(Failure),
}

/// Why the adapter is stopping claude itself (the Job is being deleted; the loop waits for the container).
#[derive(Clone, Copy, PartialEq)]
enum StopCause {
    Timeout,
    AfterResult,
}

impl StopCause {
    fn ending(self, end: Option<ContainerEnd>) -> Ending {
        match self {
            StopCause::Timeout => Ending::TimedOut,
            StopCause::AfterResult => Ending::StoppedAfterResult(end),
        }
    }
}

pub async fn follow(
    run: &Prepared<'_>,
    timing: &Timing,
    job: &JobRef,
    transcript: &mut Transcript,
    cancel: &CancellationToken,
) -> Ending {
    let job_name = job.name.as_str();
    let pods: Api<Pod> = run.api();
    let jobs: Api<Job> = run.api();
    let selector = job.pods.clone();
    let mut pod_events =
        watcher::watcher(pods.clone(), watcher::Config::default().labels(&selector))
            .default_backoff()
            .boxed();
    let mut job_events = watch_job(jobs, job_name).boxed();
    let (line_tx, mut line_rx) = mpsc::channel::<String>(4096);
    let (terminated_tx, terminated_rx) = watch::channel(false);
    let mut line_tx = Some(line_tx);
    let mut log_task: Option<tokio::task::JoinHandle<u64>> = None;
    let deadline = (run.config.timeout_sec > 0)
        .then(|| Instant::now() + Duration::from_secs(run.config.timeout_sec));
    let mut pending_failure: Option<(PodFailure, Instant)> = None;
    let mut last_progress: Option<String> = None;
    // Set once the Job is being deleted (by the adapter for a timeout or after the result, or by someone
    // else): the loop then waits for the claude container to end, so its last lines arrive, until the time.
    let mut stopping: Option<(StopCause, Instant)> = None;
    // When claude should have exited after its final result line.
    let mut result_at: Option<Instant> = None;
    // Someone else is deleting the pod: when to stop waiting for claude to end.
    let mut pod_deleting: Option<Instant> = None;
    // Until the first pod shows up: when to give up on the Job controller creating one.
    let mut no_pod_until = Some(Instant::now() + timing.pod.pod_create_timeout);
    let mut pod_name: Option<String> = None;

    let stop = loop {
        let active = stopping.is_none();
        let failure_at = pending_failure
            .as_ref()
            .filter(|_| active)
            .map(|(f, since)| *since + f.after);
        let give_up_at = stopping.map(|(_, at)| at);
        tokio::select! {
            _ = cancel.cancelled() => break Ending::Cancelled,
            _ = sleep_until(deadline.filter(|_| active)) => {
                run.sink.progress(&format!(
                    "timed out after {}s: stopping claude (it has {}s to exit), then collecting its last lines",
                    run.config.timeout_sec, run.config.grace_sec
                ));
                stopping = Some((StopCause::Timeout, stop_claude(run, job_name).await));
            }
            _ = sleep_until(result_at.filter(|_| active)) => {
                run.sink.progress(&format!(
                    "claude printed its result but has not exited {}s later (a background process keeps it \
                     running?): stopping it; the run keeps that result",
                    timing.result_grace.as_secs()
                ));
                stopping = Some((StopCause::AfterResult, stop_claude(run, job_name).await));
            }
            _ = sleep_until(give_up_at) => {
                let (why, _) = stopping.expect("a give-up time implies stopping");
                run.sink.warn("claude did not exit in time after the stop; its last lines may be missing");
                break why.ending(None);
            }
            _ = sleep_until(no_pod_until.filter(|_| active)) => {
                break Ending::Failed(with_events(run, "Job", job_name, Failure::new(
                    "k8s_pod_not_created",
                    format!(
                        "the Job controller created no pod for Job {job_name} in {}s",
                        timing.pod.pod_create_timeout.as_secs()
                    ),
                    Some(&format!(
                        "`kubectl describe job {job_name}` shows why (FailedCreate events): often a missing \
                         adapterConfig.serviceAccountName, a used-up ResourceQuota or an admission policy \
                         refusing the pod"
                    )),
                )).await);
            }
            _ = sleep_until(pod_deleting.filter(|_| active)) => {
                break Ending::Failed(deleted_externally(run, job_name, None).await);
            }
            _ = sleep_until(failure_at) => {
                let (f, _) = pending_failure.take().expect("a deadline implies a failure");
                let failed = Failure::new(f.code, f.message, Some(&f.hint));
                break Ending::Failed(match (&pod_name, EVENT_CAUSED.contains(&f.code)) {
                    (Some(pod), true) => with_events(run, "Pod", pod, failed).await,
                    _ => failed,
                });
            }
            Some(line) = line_rx.recv() => {
                transcript.push_line(&line);
                run.sink.stdout_line(&line);
                if let Some(note) = stream_json::progress_note(&line) {
                    run.sink.progress(&note);
                }
                result_at = match (transcript.awaiting_exit, result_at) {
                    (true, None) => Some(Instant::now() + timing.result_grace),
                    (true, at) => at,
                    (false, _) => None,
                };
            }
            event = pod_events.next() => match event {
                Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                    no_pod_until = None;
                    pod_name.clone_from(&pod.metadata.name);
                    let view = pod_state::view(&pod, &timing.pod);
                    if view.progress.is_some() && view.progress != last_progress {
                        run.sink.progress(view.progress.as_deref().unwrap_or_default());
                        last_progress = view.progress.clone();
                    }
                    if (view.claude_running || view.claude_end.is_some()) && log_task.is_none() {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        let tx = line_tx.take().expect("the sender is taken once");
                        log_task = Some(tokio::spawn(crate::run::follow::logs::follow(pods.clone(), name, tx, terminated_rx.clone())));
                    }
                    if let Some(end) = view.claude_end {
                        let _ = terminated_tx.send(true);
                        break match stopping {
                            Some((why, _)) => why.ending(Some(end)),
                            None if view.deleting => {
                                Ending::Failed(deleted_externally(run, job_name, Some(&end)).await)
                            }
                            None => Ending::Exited(end),
                        };
                    }
                    if view.deleting && active && pod_deleting.is_none() {
                        pod_deleting = Some(
                            Instant::now()
                                + Duration::from_secs(run.config.grace_sec).min(Duration::from_secs(10))
                                + Duration::from_secs(10),
                        );
                        run.sink.progress(&format!(
                            "pod {} is being deleted",
                            pod.metadata.name.as_deref().unwrap_or("?")
                        ));
                    }
                    pending_failure = match (view.failure, pending_failure.take()) {
                        (Some(f), Some((old, since))) if old.code == f.code => Some((f, since)),
                        (Some(f), _) => Some((f, Instant::now())),
                        (None, _) => None,
                    };
                }
                Some(Ok(Event::Delete(_))) => {
                    break match stopping {
                        Some((why, _)) => why.ending(None),
                        None => Ending::Failed(deleted_externally(run, job_name, None).await),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "pod watch error; the watcher retries"),
                None => break Ending::Failed(Failure::new("k8s_watch_ended", "the pod watch ended unexpectedly".into(), None)),
            },
            event = job_events.next() => match event {
                Some(Ok(job)) if stopping.is_none()
                    && job.as_ref().is_none_or(|j| j.metadata.deletion_timestamp.is_some()) =>
                {
                    // Someone else deleted the Job: its pod is being stopped. Wait (bounded) for claude to
                    // end so its last lines and exit code are part of the report.
                    run.sink.progress(&format!("Job {job_name} was deleted by someone else; waiting for claude to stop"));
                    // Bounded short: the cause is known now; the exit code is only a detail (a slow kubelet
                    // may take long to kill the pod, and cleanup still waits for it to be gone).
                    let give_up = Instant::now()
                        + Duration::from_secs(run.config.grace_sec).min(Duration::from_secs(10))
                        + Duration::from_secs(10);
                    let end_wait = tokio::time::sleep_until(give_up);
                    tokio::pin!(end_wait);
                    // Keep draining lines and pod events until the pod's end, in a small inner loop. A cancel
                    // meanwhile is still a cancel: Paperclip waits for its acknowledgement.
                    let mut cancelled = false;
                    let end = loop {
                        tokio::select! {
                            _ = &mut end_wait => break None,
                            _ = cancel.cancelled() => {
                                cancelled = true;
                                break None;
                            }
                            Some(line) = line_rx.recv() => {
                                transcript.push_line(&line);
                                run.sink.stdout_line(&line);
                            }
                            event = pod_events.next() => match event {
                                Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                                    if let Some(end) = pod_state::view(&pod, &timing.pod).claude_end {
                                        break Some(end);
                                    }
                                }
                                Some(Ok(Event::Delete(_))) | None => break None,
                                _ => {}
                            },
                        }
                    };
                    let _ = terminated_tx.send(true);
                    if cancelled {
                        break Ending::Cancelled;
                    }
                    break Ending::Failed(job_deleted_failure(job_name, end.as_ref()));
                }
                Some(Ok(Some(job))) => {
                    if let Some(reason) = failed_reason(&job) {
                        break Ending::Failed(Failure::new("k8s_job_failed", format!("Job {job_name} failed: {reason}"), None));
                    }
                }
                Some(Ok(None)) => {}
                Some(Err(e)) => tracing::debug!(error = %e, "job watch error; the watcher retries"),
                None => {}
            },
        }
    };

    // Deliver the log's tail: the follower ends by itself once the container has terminated.
    let _ = terminated_tx.send(true);
    drop(line_tx);
    if let Some(task) = log_task {
        let drain = async {
            while let Some(line) = line_rx.recv().await {
                transcript.push_line(&line);
                run.sink.stdout_line(&line);
            }
        };
        if tokio::time::timeout(LOG_DRAIN_TIMEOUT, drain)
            .await
            .is_err()
        {
            run.sink
                .warn("the log tail did not arrive in time; the transcript may be incomplete");
            task.abort();
        }
    }
    stop
}

/// Stops claude: deletes the Job (Background propagation), so the garbage collector deletes the pod with
/// its termination grace (`graceSec`): claude gets SIGTERM, then SIGKILL. Returns when to give up waiting.
async fn stop_claude(run: &Prepared<'_>, job_name: &str) -> Instant {
    cleanup::remove_job(run, job_name, None).await;
    Instant::now() + Duration::from_secs(run.config.grace_sec) + STOP_SLACK
}

/// Adds the object's latest Warning event to a failure's message: the cause Kubernetes recorded only there.
async fn with_events(run: &Prepared<'_>, kind: &str, name: &str, mut failed: Failure) -> Failure {
    if let Some(event) =
        crate::k8s::events::latest_warning(&run.kube.client, &run.namespace, kind, name).await
    {
        failed.message = format!("{}; the {kind}'s latest event: {event}", failed.message);
    }
    failed
}

/// The pod went away (or claude was stopped) while nobody in this run asked for it: find out whether the Job
/// was deleted (then the pod with it) or only the pod.
async fn deleted_externally(
    run: &Prepared<'_>,
    job_name: &str,
    end: Option<&ContainerEnd>,
) -> Failure {
    let jobs: Api<Job> = run.api();
    match jobs.get_opt(job_name).await {
        Ok(None) => job_deleted_failure(job_name, end),
        Ok(Some(j)) if j.metadata.deletion_timestamp.is_some() => {
            job_deleted_failure(job_name, end)
        }
        _ => Failure::new(
            "k8s_pod_deleted",
            format!(
                "the pod of Job {job_name} was deleted by someone else before claude finished{}",
                end.map(|e| format!(" ({})", outcome::describe_end(e)))
                    .unwrap_or_default()
            ),
            Some(
                "an operator (kubectl delete pod), a node drain or a controller removed the pod; run the \
                 heartbeat again",
            ),
        ),
    }
}

fn job_deleted_failure(job_name: &str, end: Option<&ContainerEnd>) -> Failure {
    Failure::new(
        "k8s_job_deleted_externally",
        format!(
            "Job {job_name} was deleted by someone else before claude finished{}",
            end.map(|e| format!(" ({})", outcome::describe_end(e)))
                .unwrap_or_default()
        ),
        Some(
            "something else deleted the Job: an operator (kubectl delete job), `claude-k8s gc`, or a cleanup \
             policy in the namespace; run the heartbeat again",
        ),
    )
}

fn failed_reason(job: &Job) -> Option<String> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "Failure" && c.status == "True")?;
    // BackoffLimitExceeded follows the claude container's own failure, which the pod watch reports better.
    (c.reason.as_deref() != Some("BackoffLimitExceeded")).then(|| {
        format!(
            "{}: {}",
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default()
        )
    })
}

/// The Job's state as a stream: `Some(job)` on every change, `None` once it is gone. Like kube's `watch_object`,
/// plus the watcher's backoff: without it, a watch that cannot reconnect (the API server is restarting) retries
/// in a tight loop, hammering the server as it comes back.
fn watch_job(
    jobs: Api<Job>,
    name: &str,
) -> impl futures::Stream<Item = Result<Option<Job>, watcher::Error>> + Send + use<> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher::watcher(jobs, config)
        .default_backoff()
        // Whether the Job was in the latest initial list: if not, it is gone (a Delete event can be missed).
        .scan(false, |seen, event| {
            match &event {
                Ok(Event::Init) => *seen = false,
                Ok(Event::InitApply(_)) => *seen = true,
                _ => {}
            }
            futures::future::ready(Some((*seen, event)))
        })
        .filter_map(|(seen, event)| async move {
            match event {
                Ok(Event::Apply(job) | Event::InitApply(job)) => Some(Ok(Some(job))),
                Ok(Event::Delete(_)) => Some(Ok(None)),
                Ok(Event::InitDone) if !seen => Some(Ok(None)),
                Ok(Event::Init | Event::InitDone) => None,
                Err(e) => Some(Err(e)),
            }
        })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Pod failures whose cause is told best by the pod's events (a failed mount, a container that cannot be made).
const EVENT_CAUSED: [&str; 3] = [
    "k8s_pod_start_timeout",
    "k8s_container_create_error",
    "k8s_pod_failed",
];
