//! Following one run, as a state machine. Pure: [`Follow::step`] takes an [`Input`] (a pod or Job as a watch saw
//! it, a line of claude's stdout, the end of the log, a tick, a cancel, the answer to a lookup) and the time, and
//! returns the [`Action`]s the driver performs (forward a line, print progress, start or end the log follower,
//! stop claude, look something up, finish). The driver is in [`super`]; it owns no decision.
//!
//! The run ends on the claude container's terminated state, never on a log stream ending by itself, with one
//! exception that cannot make the result wrong ([`Follow::exited_by_log`]): claude printed a successful final
//! `result`, its container shell then printed its exit line with code 0 (a hint the agent could forge), and the
//! exit probe the machine then asked for, a log stream opened after that line, was ended by the kubelet, which
//! does so only once the container no longer runs. A successful result does not depend on the container's exit
//! code or reason (the outcome reports exit code 0 for it whatever they are), so the run ends there, about a
//! second before the terminated state reaches the API. Stopping is the
//! adapter's own: at `timeoutSec`, and when claude printed its final `result` line but has not exited
//! `result_grace` later, the Job is deleted (claude gets SIGTERM, then SIGKILL after `graceSec`) and the machine
//! keeps reading lines until the container has ended, so its last lines are in the result. A Job or pod deleted by
//! someone else is reported as such after a short bounded wait for claude's exit. Start-up problems fail after
//! their limits ([`pod_state::Limits`]). Once the ending is known, the log's tail is delivered (bounded) before
//! the machine finishes.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

pub use super::io::{Action, Ending, Input, Limits, StopCause};
use super::io::{failed_reason, job_deleted_failure, pod_deleted_failure};
use super::pod_state::{self, PodFailure};
use super::stream_json::{self, Transcript};
use crate::run::outcome::{ContainerEnd, ErrorCode, Failure, with_last_lines};

/// How long the log follower may take to deliver the tail after the container terminated.
pub const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the adapter waits for claude to exit after it stopped the Job (timeout, hang after the result),
/// beyond the grace, before it reports without the last lines (cleanup still waits for the pod to be gone).
pub const STOP_SLACK: Duration = Duration::from_secs(30);

/// Pod failures whose cause is told best by the pod's events (a failed mount, a container that cannot be made).
const EVENT_CAUSED: [ErrorCode; 3] = [
    ErrorCode::PodStartTimeout,
    ErrorCode::ContainerCreateError,
    ErrorCode::PodFailed,
];

/// A detail the ending waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The latest event of the object `kind`, added to the failure's message.
    Events {
        kind: &'static str,
        failure: Failure,
    },
    /// Whether the Job was deleted too (then the pod with it) or only the pod.
    Deletion { end: Option<ContainerEnd> },
}

/// Where the run is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// No pod yet: the Job controller has until `until` to create one.
    AwaitingPod {
        until: Instant,
    },
    /// The pod exists; claude is not running yet.
    Starting,
    /// Claude runs; its log is followed.
    Running,
    /// The adapter stopped claude (deleted the Job); it waits for the container to end until `give_up`.
    Stopping {
        cause: StopCause,
        give_up: Instant,
    },
    /// Someone else deleted the Job; it waits (bounded) for claude to end, for its last lines and exit code.
    JobDeleted {
        give_up: Instant,
    },
    /// The ending waits for a lookup's answer.
    Resolving(Lookup),
    /// The ending is known; the log's tail is delivered until `until`.
    Draining {
        ending: Ending,
        until: Instant,
    },
    Done,
}

/// One run being followed.
#[derive(Debug)]
pub struct Follow {
    job: String,
    limits: Limits,
    phase: Phase,
    transcript: Transcript,
    timeout_at: Option<Instant>,
    /// When claude should have exited after its final result line.
    result_at: Option<Instant>,
    /// A failure seen in the pod, since when.
    pending: Option<(PodFailure, Instant)>,
    /// Someone else is deleting the pod: when to stop waiting for claude to end.
    pod_deleting_until: Option<Instant>,
    last_progress: Option<String>,
    pod_name: Option<String>,
    log_started: bool,
    /// The log follower delivered everything (normally only after the container ended).
    log_ended: bool,
    /// The last line of the log was the container shell's exit line, with this code (any later line clears it).
    exit_line: Option<i32>,
    /// The exit probe was asked for (once per run).
    probe_asked: bool,
    /// The claude container's terminated state was seen.
    container_ended: bool,
}

impl Follow {
    /// Starts following Job `job` at `now`.
    pub fn new(job: &str, limits: Limits, now: Instant) -> Self {
        let limits = limits.bounded();
        Self {
            job: job.to_owned(),
            limits,
            phase: Phase::AwaitingPod {
                until: now + limits.pod.pod_create_timeout,
            },
            transcript: Transcript::default(),
            timeout_at: limits.timeout.map(|t| now + t),
            result_at: None,
            pending: None,
            pod_deleting_until: None,
            last_progress: None,
            pod_name: None,
            log_started: false,
            log_ended: false,
            exit_line: None,
            probe_asked: false,
            container_ended: false,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    pub fn into_transcript(self) -> Transcript {
        self.transcript
    }

    /// Whether claude may still be stopped by a deadline of its own (not stopping, not ending).
    fn active(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitingPod { .. } | Phase::Starting | Phase::Running
        )
    }

    /// When the machine wants a [`Input::Tick`] next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::AwaitingPod { until } => {
                [Some(*until), self.timeout_at].into_iter().flatten().min()
            }
            Phase::Starting | Phase::Running => [
                self.timeout_at,
                self.result_at,
                self.pod_deleting_until,
                self.pending.as_ref().map(|(f, since)| *since + f.after),
            ]
            .into_iter()
            .flatten()
            .min(),
            Phase::Stopping { give_up, .. } | Phase::JobDeleted { give_up } => Some(*give_up),
            Phase::Draining { until, .. } => Some(*until),
            Phase::Resolving(_) | Phase::Done => None,
        }
    }

    /// Feeds one input at `now`; returns what to do, in order. Deadlines due at `now` fire in the same step.
    pub fn step(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::LogEnded => self.log_ended = true,
            // The shell's line is the adapter's: never forwarded nor part of the transcript.
            Input::ExitLine(code) => self.exit_line = Some(code),
            _ => {}
        }
        match &self.phase {
            Phase::Done => {}
            Phase::Draining { .. } => self.draining(input, &mut out),
            Phase::Resolving(_) => self.resolving(input, now, &mut out),
            Phase::JobDeleted { .. } => self.job_deleted(input, now, &mut out),
            _ => self.watching(input, now, &mut out),
        }
        if !matches!(self.phase, Phase::Done) && self.next_deadline().is_some_and(|at| at <= now) {
            self.expire(now, &mut out);
        }
        out
    }

    /// Awaiting the pod, starting, running, stopping: everything counts.
    fn watching(&mut self, input: Input, now: Instant, out: &mut Vec<Action>) {
        match input {
            Input::Cancel => self.end(Ending::Cancelled, now, out),
            Input::Line(line) => {
                if let Some(note) = stream_json::progress_note(&line) {
                    self.forward(line, out);
                    out.push(Action::Progress(note));
                } else {
                    self.forward(line, out);
                }
                self.result_at = match (self.transcript.awaiting_exit, self.result_at) {
                    (true, None) => Some(now + self.limits.result_grace),
                    (true, at) => at,
                    (false, _) => None,
                };
            }
            Input::ExitLine(0) if self.exit_hint_counts() && !self.probe_asked => {
                self.probe_asked = true;
                out.push(Action::ProbeExit);
            }
            Input::ProbeEnded if self.exit_hint_counts() && self.exit_line == Some(0) => {
                self.exited_by_log(now, out)
            }
            Input::Pod(pod) => self.pod(&pod, now, out),
            Input::PodGone => match self.stopping() {
                Some(cause) => self.end(cause.ending(None), now, out),
                None => self.resolve(Lookup::Deletion { end: None }, out),
            },
            Input::PodWatchEnded => self.end(
                Ending::Failed(Failure::new(
                    ErrorCode::WatchEnded,
                    "the pod watch ended unexpectedly".into(),
                    None,
                )),
                now,
                out,
            ),
            Input::Job(job)
                if self.stopping().is_none() && job.metadata.deletion_timestamp.is_some() =>
            {
                self.job_deleted_externally(now, out)
            }
            Input::JobGone if self.stopping().is_none() => self.job_deleted_externally(now, out),
            Input::Job(job) => {
                if let Some(reason) = failed_reason(&job) {
                    let message = format!("Job {} failed: {reason}", self.job);
                    self.end(
                        Ending::Failed(Failure::new(ErrorCode::JobFailed, message, None)),
                        now,
                        out,
                    );
                }
            }
            // Only the container's state ends the run (a log that ended is not waited for then).
            Input::JobGone
            | Input::LogEnded
            | Input::ExitLine(_)
            | Input::ProbeEnded
            | Input::Tick
            | Input::Events(_)
            | Input::JobLookedUp { .. } => {}
        }
    }

    fn pod(&mut self, pod: &Pod, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::AwaitingPod { .. }) {
            self.phase = Phase::Starting;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.pod_name = Some(name.clone());
        let view = pod_state::view(pod, &self.limits.pod);
        if view.progress.is_some() && view.progress != self.last_progress {
            out.push(Action::Progress(view.progress.clone().unwrap_or_default()));
            self.last_progress = view.progress.clone();
        }
        if (view.claude_running || view.claude_end.is_some()) && !self.log_started {
            self.log_started = true;
            out.push(Action::FollowLog(name.clone()));
        }
        if view.claude_running && self.phase == Phase::Starting {
            self.phase = Phase::Running;
        }
        if let Some(end) = view.claude_end {
            self.container_ended = true;
            return match self.stopping() {
                Some(cause) => self.end(cause.ending(Some(end)), now, out),
                None if view.deleting => {
                    // The container has ended: its tail can be read while the lookup runs.
                    out.push(Action::EndLog);
                    out.push(Action::ReadTail);
                    self.resolve(Lookup::Deletion { end: Some(end) }, out)
                }
                None => self.end(Ending::Exited(end), now, out),
            };
        }
        if view.deleting && self.active() && self.pod_deleting_until.is_none() {
            self.pod_deleting_until = Some(now + self.short_wait());
            out.push(Action::Progress(format!("pod {name} is being deleted")));
        }
        self.pending = match (view.failure, self.pending.take()) {
            (Some(f), Some((old, since))) if old.code == f.code => Some((f, since)),
            (Some(f), _) => Some((f, now)),
            (None, _) => None,
        };
    }

    /// Someone else deleted the Job: its pod is being stopped.
    fn job_deleted_externally(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::Progress(format!(
            "Job {} was deleted by someone else; waiting for claude to stop",
            self.job
        )));
        // Bounded short: the cause is known now; the exit code is only a detail (a slow kubelet may take long to
        // kill the pod, and cleanup still waits for it to be gone).
        self.phase = Phase::JobDeleted {
            give_up: now + self.short_wait(),
        };
    }

    /// Waiting for claude to end after the Job was deleted: lines and the pod's end count; a cancel is still a
    /// cancel (Paperclip waits for its acknowledgement).
    fn job_deleted(&mut self, input: Input, now: Instant, out: &mut Vec<Action>) {
        match input {
            Input::Cancel => self.end(Ending::Cancelled, now, out),
            Input::Line(line) => self.forward(line, out),
            Input::Pod(pod) => {
                if let Some(end) = pod_state::view(&pod, &self.limits.pod).claude_end {
                    self.container_ended = true;
                    let failure = job_deleted_failure(&self.job, Some(&end));
                    self.end(Ending::Failed(failure), now, out);
                }
            }
            Input::PodGone | Input::PodWatchEnded => {
                let failure = job_deleted_failure(&self.job, None);
                self.end(Ending::Failed(failure), now, out);
            }
            _ => {}
        }
    }

    fn resolving(&mut self, input: Input, now: Instant, out: &mut Vec<Action>) {
        let Phase::Resolving(lookup) = &self.phase else {
            return;
        };
        let failure = match (lookup, input) {
            (_, Input::Line(line)) => return self.forward(line, out),
            (Lookup::Events { kind, failure }, Input::Events(event)) => {
                let mut failure = failure.clone();
                if let Some(event) = event {
                    failure.message =
                        format!("{}; the {kind}'s latest event: {event}", failure.message);
                }
                failure
            }
            (Lookup::Deletion { end }, Input::JobLookedUp { deleted: true }) => {
                job_deleted_failure(&self.job, end.as_ref())
            }
            (Lookup::Deletion { end }, Input::JobLookedUp { deleted: false }) => {
                pod_deleted_failure(&self.job, end.as_ref())
            }
            _ => return,
        };
        self.end(Ending::Failed(failure), now, out);
    }

    fn draining(&mut self, input: Input, out: &mut Vec<Action>) {
        match input {
            Input::Line(line) => self.forward(line, out),
            Input::LogEnded => self.finish(out),
            _ => {}
        }
    }

    /// The deadline due at `now`, if any, fires.
    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        match self.phase.clone() {
            Phase::Stopping { cause, give_up } if give_up <= now => {
                out.push(Action::Warn(
                    "claude did not exit in time after the stop; its last lines may be missing"
                        .into(),
                ));
                self.end(cause.ending(None), now, out);
            }
            Phase::JobDeleted { give_up } if give_up <= now => {
                let failure = job_deleted_failure(&self.job, None);
                self.end(Ending::Failed(failure), now, out);
            }
            Phase::Draining { until, .. } if until <= now => {
                out.push(Action::Warn(
                    "the log tail did not arrive in time; the transcript may be incomplete".into(),
                ));
                out.push(Action::AbortLog);
                self.finish(out);
            }
            _ if !self.active() => {}
            _ if due(self.timeout_at) => {
                out.push(Action::Progress(format!(
                    "timed out after {}s: stopping claude (it has {}s to exit), then collecting its last lines",
                    self.limits.timeout.unwrap_or_default().as_secs(),
                    self.limits.grace.as_secs()
                )));
                self.stop(StopCause::Timeout, now, out);
            }
            _ if due(self.result_at) => {
                out.push(Action::Progress(format!(
                    "claude printed its result but has not exited {}s later (a background process keeps it \
                     running?): stopping it; the run keeps that result",
                    self.limits.result_grace.as_secs()
                )));
                self.stop(StopCause::AfterResult, now, out);
            }
            Phase::AwaitingPod { until } if until <= now => {
                let job = &self.job;
                let failure = Failure::new(
                    ErrorCode::PodNotCreated,
                    format!(
                        "the Job controller created no pod for Job {job} in {}s",
                        self.limits.pod.pod_create_timeout.as_secs()
                    ),
                    Some(&format!(
                        "`kubectl describe job {job}` shows why (FailedCreate events): often a missing \
                         adapterConfig.serviceAccountName, a used-up ResourceQuota or an admission policy \
                         refusing the pod"
                    )),
                );
                self.look_up_events("Job", job.clone(), failure, out);
            }
            _ if due(self.pod_deleting_until) => self.resolve(Lookup::Deletion { end: None }, out),
            _ if due(self.pending.as_ref().map(|(f, since)| *since + f.after)) => {
                let (f, _) = self.pending.take().expect("a due failure is pending");
                let failure = Failure::new(f.code, f.message, Some(&f.hint));
                match self.pod_name.clone() {
                    Some(pod) if EVENT_CAUSED.contains(&f.code) => {
                        self.look_up_events("Pod", pod, failure, out)
                    }
                    _ => self.end(Ending::Failed(failure), now, out),
                }
            }
            _ => {}
        }
    }

    fn stop(&mut self, cause: StopCause, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::StopJob);
        self.phase = Phase::Stopping {
            cause,
            give_up: now + self.limits.grace + STOP_SLACK,
        };
    }

    fn look_up_events(
        &mut self,
        kind: &'static str,
        name: String,
        failure: Failure,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::FetchEvents { kind, name });
        self.phase = Phase::Resolving(Lookup::Events { kind, failure });
    }

    fn resolve(&mut self, lookup: Lookup, out: &mut Vec<Action>) {
        if matches!(lookup, Lookup::Deletion { .. }) {
            out.push(Action::LookUpJob);
        }
        self.phase = Phase::Resolving(lookup);
    }

    fn forward(&mut self, line: String, out: &mut Vec<Action>) {
        self.exit_line = None;
        self.transcript.push_line(&line);
        out.push(Action::Forward(line));
    }

    fn stopping(&self) -> Option<StopCause> {
        match self.phase {
            Phase::Stopping { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// How long to wait for claude's end once someone else is deleting its pod: `graceSec`, at most 10 s, plus 10 s.
    fn short_wait(&self) -> Duration {
        self.limits.grace.min(Duration::from_secs(10)) + Duration::from_secs(10)
    }
}

mod ending;
#[cfg(test)]
mod tests;
