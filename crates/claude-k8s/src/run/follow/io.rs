//! What goes into the follow machine and what comes out of it, and the failures of deletes by someone else.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::pod_state;
use crate::run::outcome::{ContainerEnd, ErrorCode, Failure, describe_end};

/// The limits of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub pod: pod_state::Limits,
    /// How long claude may run on after its final `result` line before it is stopped.
    pub result_grace: Duration,
    /// `graceSec`: how long claude has to exit once its pod is stopped.
    pub grace: Duration,
    /// `timeoutSec`, if set.
    pub timeout: Option<Duration>,
}

/// The longest any limit may be: deadlines computed from it cannot overflow (an `Instant` holds centuries), and
/// no run is meant to wait longer.
pub const MAX_LIMIT: Duration = Duration::from_secs(366 * 24 * 3600);

impl Limits {
    /// Each limit at most [`MAX_LIMIT`], whatever the numbers it was made from.
    pub fn bounded(self) -> Self {
        let cap = |d: Duration| d.min(MAX_LIMIT);
        Self {
            pod: pod_state::Limits {
                start_grace: cap(self.pod.start_grace),
                pending_timeout: cap(self.pod.pending_timeout),
                pod_create_timeout: cap(self.pod.pod_create_timeout),
            },
            result_grace: cap(self.result_grace),
            grace: cap(self.grace),
            timeout: self.timeout.map(cap),
        }
    }
}

/// How following ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The claude container terminated by itself.
    Exited(ContainerEnd),
    Cancelled,
    /// `timeoutSec` passed; the agent was stopped and its last lines collected.
    TimedOut,
    /// Claude printed its final `result` but did not exit; it was stopped (its end, if it came in time).
    StoppedAfterResult(Option<ContainerEnd>),
    Failed(Failure),
}

/// What happened, as the driver saw it.
#[derive(Debug, Clone)]
pub enum Input {
    /// The run's pod, listed or changed.
    Pod(Box<Pod>),
    /// The run's pod was deleted from the API.
    PodGone,
    /// The pod watch ended (it should not).
    PodWatchEnded,
    /// The run's Job, listed or changed.
    Job(Box<Job>),
    /// The run's Job is gone from the API.
    JobGone,
    /// A line of claude's stdout.
    Line(String),
    /// The container shell's line after claude exited, with the exit code it names
    /// ([`super::logs::EXIT_LINE_PREFIX`]). The agent can print the same line: a hint, never proof.
    ExitLine(i32),
    /// The exit probe's stream ended by itself ([`super::logs::Tail::Probe`]): the kubelet no longer saw the
    /// container running.
    ProbeEnded,
    /// The log follower delivered everything it will.
    LogEnded,
    /// Time passed: a deadline may be due.
    Tick,
    Cancel,
    /// The answer to [`Action::FetchEvents`]: the object's latest Warning event, if any.
    Events(Option<String>),
    /// The answer to [`Action::LookUpJob`]: whether the Job is gone or being deleted (false if it could not be
    /// read).
    JobLookedUp {
        deleted: bool,
    },
}

/// What the driver does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A line of claude's stdout, to Paperclip.
    Forward(String),
    /// A progress line of the adapter's own.
    Progress(String),
    Warn(String),
    /// Start following the claude container's log in this pod.
    FollowLog(String),
    /// The run is ending: the log follower reads on until its stream ends, reads the tail and ends.
    EndLog,
    /// Follows [`Action::EndLog`] when the claude container's end is known (its terminated state): its log is
    /// complete, so the follower reads the tail at once instead of waiting for its stream to end.
    ReadTail,
    /// Claude's shell printed its exit line after a successful result: the follower opens the exit probe
    /// ([`super::logs::Tail::Probe`]), answered with [`Input::ProbeEnded`] if the kubelet ends it.
    ProbeExit,
    /// The log's tail did not come in time: abandon the follower.
    AbortLog,
    /// Stop claude: delete the Job (its pod gets `graceSec`).
    StopJob,
    /// Read the latest Warning event of the object; answered with [`Input::Events`].
    FetchEvents {
        kind: &'static str,
        name: String,
    },
    /// Read the Job; answered with [`Input::JobLookedUp`].
    LookUpJob,
    /// Following is over.
    Finish(Ending),
}

/// Why the adapter is stopping claude itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopCause {
    Timeout,
    AfterResult,
}

impl StopCause {
    pub(super) fn ending(self, end: Option<ContainerEnd>) -> Ending {
        match self {
            StopCause::Timeout => Ending::TimedOut,
            StopCause::AfterResult => Ending::StoppedAfterResult(end),
        }
    }
}

/// The reason of the Job's Failed condition, unless it only echoes the claude container's failure.
pub(super) fn failed_reason(job: &Job) -> Option<String> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    // BackoffLimitExceeded follows the claude container's own failure, which the pod watch reports better.
    (c.reason.as_deref() != Some("BackoffLimitExceeded")).then(|| {
        format!(
            "{}: {}",
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default()
        )
    })
}

pub(super) fn job_deleted_failure(job_name: &str, end: Option<&ContainerEnd>) -> Failure {
    Failure::new(
        ErrorCode::JobDeletedExternally,
        format!(
            "Job {job_name} was deleted by someone else before claude finished{}",
            ended(end)
        ),
        ErrorCode::JobDeletedExternally.hint(),
    )
}

pub(super) fn pod_deleted_failure(job_name: &str, end: Option<&ContainerEnd>) -> Failure {
    Failure::new(
        ErrorCode::PodDeleted,
        format!(
            "the pod of Job {job_name} was deleted by someone else before claude finished{}",
            ended(end)
        ),
        ErrorCode::PodDeleted.hint(),
    )
}

/// " (claude container terminated, exit code 143 (SIGTERM))", when the end is known.
fn ended(end: Option<&ContainerEnd>) -> String {
    end.map(|e| format!(" ({})", describe_end(e)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::follow::machine::{Follow, Input};

    #[test]
    fn limits_of_any_size_make_deadlines_that_do_not_overflow() {
        let huge = Duration::from_secs(u64::MAX);
        let limits = Limits {
            pod: pod_state::Limits {
                start_grace: huge,
                pending_timeout: huge,
                pod_create_timeout: huge,
            },
            result_grace: huge,
            grace: huge,
            timeout: Some(huge),
        };
        assert_eq!(limits.bounded().grace, MAX_LIMIT);
        let now = std::time::Instant::now();
        let mut follow = Follow::new("job", limits, now);
        assert!(follow.next_deadline().is_some_and(|at| at > now));
        for input in [Input::Tick, Input::Cancel, Input::Tick] {
            let _ = follow.step(input, now);
        }
    }
}
