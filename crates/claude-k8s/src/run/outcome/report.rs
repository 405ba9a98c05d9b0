//! What a run reports for each way it can end, and the results of runs that never reached Claude. Pure.

use serde_json::{Value, json};

use super::{ContainerEnd, ErrorCode, RunFacts, finished, timed_out, with_last_lines};
use crate::run::follow::Ending;
use crate::run::follow::stream_json::Transcript;

/// A run that failed around the agent: a code, words, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: String, hint: Option<&str>) -> Self {
        Self {
            code,
            message,
            hint: hint.map(str::to_owned),
        }
    }
}

/// A failed result that never reached Claude.
pub fn failure(code: ErrorCode, message: impl Into<String>) -> Value {
    json!({"exitCode": null, "signal": null, "timedOut": false, "errorCode": code, "errorMessage": message.into()})
}

/// A failed result with a hint: the message ends with it, and `errorMeta.hint` carries it alone.
pub fn failure_with_hint(code: ErrorCode, message: &str, hint: &str) -> Value {
    let mut r = failure(code, format!("{message}. Hint: {hint}"));
    r["errorMeta"] = json!({"hint": hint});
    r
}

/// A cancel, acknowledged at `now`; `forced` when the pod had to be force-deleted.
pub fn cancelled(forced: bool, now: jiff::Timestamp) -> Value {
    json!({
        "exitCode": null, "signal": null, "timedOut": false,
        "errorCode": ErrorCode::Cancelled, "errorMessage": "Cancelled: the Job was deleted",
        "resultJson": {"executionCancellation": {"state": "acknowledged", "acknowledgedAt": now.to_string(), "forced": forced}}
    })
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
) -> Value {
    match ending {
        Ending::Exited(end) => finished(end, t, run),
        Ending::StoppedAfterResult(end) => {
            let end = end.clone().unwrap_or(ContainerEnd {
                exit_code: 143,
                reason: Some("Stopped".into()),
                ..Default::default()
            });
            let mut r = finished(&end, t, run);
            if let Some(Value::Object(rj)) = r.get_mut("resultJson") {
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
            let message = with_last_lines(&f.message, t);
            let mut r = match &f.hint {
                Some(hint) => failure_with_hint(f.code, &message, hint),
                None => failure(f.code, message),
            };
            r["clearSession"] = json!(run.clear_session);
            r
        }
    }
}
