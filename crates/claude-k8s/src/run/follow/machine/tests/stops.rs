//! The adapter's own stops: timeoutSec and the hang after the result.

use super::*;
use serde_json::json;

// --- The adapter's own stops ----------------------------------------------------------------------------------

#[test]
fn a_timeout_stops_claude_and_keeps_its_last_lines() {
    let mut r = started(Limits {
        timeout: Some(5 * S),
        ..limits()
    });
    r.lines(&[INIT, "partial output"]);
    let out = r.tick(5);
    assert_eq!(out, [
        Action::Progress("timed out after 5s: stopping claude (it has 60s to exit), then collecting its last lines".into()),
        Action::StopJob,
    ]);
    assert_eq!(
        r.m.phase(),
        &Phase::Stopping {
            cause: StopCause::Timeout,
            give_up: r.t0 + 95 * S
        }
    );
    r.lines(&["last words"]);
    r.at(7).pod(terminated_with(143, "Error", true));
    r.feed(Input::LogEnded);
    assert_eq!(r.ending(), Some(&Ending::TimedOut));
    let result = r.result();
    assert_eq!(
        (result["errorCode"].as_str(), &result["timedOut"]),
        (Some("timeout"), &json!(true))
    );
    assert_eq!(result["resultJson"]["lastLines"][2], "last words");
    assert!(
        !r.asked(&Action::LookUpJob),
        "the adapter's own delete is no external one"
    );
}

#[test]
fn a_stop_claude_does_not_answer_gives_up_after_grace_and_slack() {
    let mut r = started(Limits {
        timeout: Some(5 * S),
        grace: 2 * S,
        ..limits()
    });
    r.tick(5);
    // Its Job being deleted is the adapter's own doing.
    assert!(r.feed(Input::JobGone).is_empty());
    assert!(r.tick(36).is_empty());
    r.tick(37);
    assert_eq!(
        r.warnings(),
        ["claude did not exit in time after the stop; its last lines may be missing"]
    );
    r.feed(Input::LogEnded);
    assert_eq!(r.ending(), Some(&Ending::TimedOut));
}

#[test]
fn a_hang_after_the_result_is_stopped_and_the_run_keeps_that_result() {
    let mut r = started(limits());
    r.at(3).lines(&[INIT, RESULT]);
    assert_eq!(r.m.next_deadline(), Some(r.t0 + 13 * S));
    // More output does not move the deadline.
    r.at(8).lines(&[r#"{"type":"system","subtype":"status"}"#]);
    assert_eq!(r.m.next_deadline(), Some(r.t0 + 13 * S));
    let out = r.tick(13);
    assert!(
        matches!(&out[..], [Action::Progress(p), Action::StopJob] if p.contains("has not exited 10s later")),
        "{out:?}"
    );
    r.at(14).pod(terminated_with(143, "Error", true));
    r.feed(Input::LogEnded);
    assert!(matches!(r.ending(), Some(Ending::StoppedAfterResult(Some(e))) if e.exit_code == 143));
    let result = r.result();
    assert_eq!(
        result["exitCode"], 0,
        "a success stopped after its result is a success: {result:#}"
    );
    assert_eq!(
        result["resultJson"]["unmanagedBackgroundTask"]["stoppedAfterResultSec"],
        10
    );
    // Never answering the stop: the result stands, with claude's default 143.
    let mut r = started(Limits {
        grace: S,
        ..limits()
    });
    r.lines(&[INIT, RESULT]);
    r.tick(12);
    r.tick(43);
    r.feed(Input::LogEnded);
    assert_eq!(r.ending(), Some(&Ending::StoppedAfterResult(None)));
    assert!(r.result().get("errorCode").is_none());
}
