//! What a run reports for each way it can end, and the results of runs that never reached Claude. Pure.

use serde_json::json;

use super::{
    ContainerEnd, ErrorCode, ErrorMeta, ExecutionResult, PolicyDenial, RunFacts, finished, object,
    timed_out, with_last_lines,
};
use crate::run::follow::Ending;
use crate::run::follow::stream_json::Transcript;

/// A run that failed around the agent: a code, words, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
    /// Set when the operator policy refused the run.
    pub policy_denied: Vec<PolicyDenial>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: String, hint: Option<&str>) -> Self {
        Self {
            code,
            message,
            hint: hint.map(str::to_owned),
            policy_denied: Vec::new(),
        }
    }
}

impl From<Failure> for ExecutionResult {
    /// The failed result: with a hint, the message ends with it and `errorMeta.hint` carries it alone.
    fn from(f: Failure) -> Self {
        match f.hint {
            Some(hint) => ExecutionResult {
                error_meta: Some(ErrorMeta {
                    hint: hint.clone(),
                    policy_denied: f.policy_denied,
                }),
                ..ExecutionResult::failed(f.code, format!("{}. Hint: {hint}", f.message))
            },
            None => ExecutionResult::failed(f.code, f.message),
        }
    }
}

/// A run that failed before it reached Claude.
pub fn failure(code: ErrorCode, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
        hint: None,
        policy_denied: Vec::new(),
    }
}

/// [`failure`] with what to do about it.
pub fn failure_with_hint(code: ErrorCode, message: &str, hint: &str) -> Failure {
    Failure::new(code, message.to_owned(), Some(hint))
}

/// A cancel, acknowledged at `now`; `forced` when the pod had to be force-deleted.
pub fn cancelled(forced: bool, now: jiff::Timestamp) -> ExecutionResult {
    ExecutionResult {
        result_json: Some(object(json!({
            "executionCancellation": {"state": "acknowledged", "acknowledgedAt": now.to_string(), "forced": forced}
        }))),
        ..failure(ErrorCode::Cancelled, "Cancelled: the Job was deleted").into()
    }
}

/// How the claude container ended, when it did (a run claude was stopped in after its result counts as 143).
pub fn container_exit(ending: &Ending) -> Option<i32> {
    match ending {
        Ending::Exited(end) => Some(end.exit_code),
        Ending::StoppedAfterResult(end) => Some(end.as_ref().map_or(143, |e| e.exit_code)),
        _ => None,
    }
}

/// Whether the attempt failed only because Claude did not know the resumed session: then the run is retried
/// with a fresh one.
pub fn unknown_session(resumed: bool, ending: &Ending, t: &Transcript) -> bool {
    resumed && container_exit(ending).is_some_and(|code| code != 0) && t.is_unknown_session_error()
}

/// The result of an attempt that ended as `ending`. `forced`: the stopped pod had to be force-deleted;
/// `result_grace`: how long claude had to exit after its result; `timeout_sec`: the run's limit; `now`: when.
pub fn report(
    ending: &Ending,
    t: &Transcript,
    run: &RunFacts,
    forced: bool,
    result_grace_sec: u64,
    timeout_sec: u64,
    now: jiff::Timestamp,
) -> ExecutionResult {
    match ending {
        Ending::Exited(end) => finished(end, t, run),
        Ending::StoppedAfterResult(end) => {
            let end = end.clone().unwrap_or(ContainerEnd {
                exit_code: 143,
                reason: Some("Stopped".into()),
                ..Default::default()
            });
            let mut r = finished(&end, t, run);
            if let Some(rj) = &mut r.result_json {
                rj.insert(
                    "unmanagedBackgroundTask".into(),
                    json!({"stoppedAfterResultSec": result_grace_sec, "by": "claude-k8s"}),
                );
            }
            r
        }
        Ending::Cancelled => cancelled(forced, now),
        Ending::TimedOut => timed_out(timeout_sec, t, run),
        Ending::Failed(f) => {
            let failed = Failure {
                message: with_last_lines(&f.message, t),
                ..f.clone()
            };
            ExecutionResult {
                clear_session: Some(run.clear_session),
                ..failed.into()
            }
        }
    }
}
