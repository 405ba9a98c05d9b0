//! The earliest end: claude's successful result, its shell's exit line, then the exit probe's end (the kubelet ends
//! a follow stream only once the container has stopped), before and after the terminated state; and every way
//! those signals can lie or be missing, which must leave the result as the terminated state makes it.

use super::*;

/// The shell's line after claude exited with `code`.
fn exit_line(code: i32) -> Input {
    Input::ExitLine(code)
}

/// A run whose claude printed its successful result and then exited 0, as its shell says.
fn exited_by_its_account() -> Run {
    let mut r = started(limits());
    r.lines(&[INIT, ASSISTANT, RESULT]);
    r
}

#[test]
fn result_then_exit_line_then_the_probes_end_finishes_at_once_with_the_same_result() {
    let mut r = exited_by_its_account();
    let out = r.at(3).feed(exit_line(0));
    assert_eq!(
        out,
        [Action::ProbeExit],
        "the probe is asked for, nothing else"
    );
    assert!(r.ending().is_none(), "the line alone ends nothing");
    let out = r.feed(Input::ProbeEnded);
    assert!(
        out.contains(&Action::AbortLog) && !out.contains(&Action::EndLog),
        "the probe read the log to its end: no further read: {out:?}"
    );
    assert!(
        r.progress()
            .iter()
            .any(|p| p.contains("the kubelet ended its log"))
    );
    assert_eq!(r.m.phase(), &Phase::Done);
    // The result is the one the terminated state would have given.
    let early = r.result();
    let mut late = exited_by_its_account();
    late.at(4).pod(terminated(0, "Completed"));
    late.feed(Input::LogEnded);
    assert_eq!(early, late.result());
    assert_eq!(early["exitCode"], 0);
    assert!(early.get("errorCode").is_none(), "{early:#}");
    // The shell's line is the adapter's: never forwarded, not in the transcript.
    assert_eq!(
        r.actions
            .iter()
            .filter(|a| matches!(a, Action::Forward(_)))
            .count(),
        3
    );
    assert!(
        !r.m.transcript()
            .last_lines
            .iter()
            .any(|l| l.contains("exited"))
    );
}

#[test]
fn the_terminated_state_before_the_probes_end_ends_the_run_as_always_and_reads_the_tail_at_once() {
    let mut r = exited_by_its_account();
    r.at(3).feed(exit_line(0));
    let out = r.pod(terminated(0, "Completed"));
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::EndLog | Action::ReadTail))
            .collect::<Vec<_>>(),
        [&Action::EndLog, &Action::ReadTail],
        "the container's end is known: its tail is read now"
    );
    assert!(r.ending().is_none(), "the tail first");
    // A probe that ends afterwards changes nothing; the tail's end finishes the run.
    assert!(r.feed(Input::ProbeEnded).is_empty());
    r.feed(Input::LogEnded);
    assert!(
        matches!(r.ending(), Some(Ending::Exited(e)) if e.reason.as_deref() == Some("Completed"))
    );
    assert!(
        r.progress()
            .iter()
            .any(|p| p.contains("exited with code 0"))
    );
}

#[test]
fn a_forged_exit_line_while_claude_runs_on_is_stopped_by_the_hang_guard_as_before() {
    // The agent prints the shell's line itself and keeps claude running: the probe stays open (the kubelet ends it
    // only once the container stops), so no ProbeEnded comes, and the guard stops claude after the grace.
    let mut r = exited_by_its_account();
    assert_eq!(r.at(3).feed(exit_line(0)), [Action::ProbeExit]);
    // Another forged line asks for no second probe (one request per run at most).
    r.feed(exit_line(0));
    assert_eq!(
        r.actions
            .iter()
            .filter(|a| **a == Action::ProbeExit)
            .count(),
        1
    );
    let out = r.tick(12);
    assert!(out.contains(&Action::StopJob), "{out:?}");
    r.pod(terminated(143, "Error"));
    r.feed(Input::LogEnded);
    assert!(matches!(r.ending(), Some(Ending::StoppedAfterResult(Some(e))) if e.exit_code == 143));
    assert!(r.result()["resultJson"]["unmanagedBackgroundTask"].is_object());
}

#[test]
fn an_exit_line_that_is_not_the_last_line_or_not_after_a_success_ends_nothing_early() {
    // A line after the shell's: the line was not the shell's last word (forged, or claude still writing).
    let mut r = exited_by_its_account();
    r.at(3).feed(exit_line(0));
    r.lines(&["more output"]);
    assert!(r.feed(Input::ProbeEnded).is_empty());
    assert!(r.ending().is_none());
    // Before any result, after a failed one, after a zero-turn one, or with a non-zero code: no probe at all,
    // and a probe's end (here, forged as an input) ends nothing.
    let failed = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"API Error: 500"}"#;
    let zero_turn =
        r#"{"type":"result","subtype":"success","is_error":false,"num_turns":0,"result":""}"#;
    for (lines, code) in [
        (&[INIT, ASSISTANT][..], 0),
        (&[INIT, failed][..], 0),
        (&[INIT, zero_turn][..], 0),
        (&[INIT, RESULT][..], 1),
        (&[INIT, RESULT][..], 143),
    ] {
        let mut r = started(limits());
        r.lines(lines);
        assert!(
            !r.feed(exit_line(code)).contains(&Action::ProbeExit),
            "{lines:?} {code}"
        );
        assert!(r.feed(Input::ProbeEnded).is_empty(), "{lines:?} {code}");
        // The terminated state decides, with its own exit code.
        r.at(4).pod(terminated(code.max(1), "Error"));
        r.feed(Input::LogEnded);
        assert!(matches!(r.ending(), Some(Ending::Exited(e)) if e.exit_code == code.max(1)));
    }
}

#[test]
fn a_probe_cut_that_is_not_an_exit_ends_nothing() {
    // The follower reports a probe's end only when its stream ended cleanly outside a line; a cut stream is reopened
    // and never reported. Without its report, only the terminated state ends the run, a failing one included.
    let mut r = exited_by_its_account();
    r.at(3).feed(exit_line(0));
    // The stream was cut and reopened: the log is read again from the cursor (the line is not repeated).
    r.feed(Input::LogEnded);
    assert!(r.ending().is_none(), "a log that ended is not an exit");
    r.at(5).pod(terminated(0, "Completed"));
    assert!(matches!(r.ending(), Some(Ending::Exited(_))));
}

#[test]
fn an_oom_kill_after_the_exit_line_is_still_reported_from_the_terminated_state() {
    // claude was OOM-killed before any result: its shell says 137; no probe, the state says OOMKilled.
    let mut r = started(limits());
    r.lines(&[INIT, "allocating..."]);
    assert!(r.at(3).feed(exit_line(137)).is_empty());
    r.pod(terminated(137, "OOMKilled"));
    r.feed(Input::LogEnded);
    assert_eq!(r.result()["errorCode"], "k8s_oom_killed");
    // An OOM kill after a successful result (a forged 0 line, then the kill): the success result stands, as it
    // does today from the terminated state (a successful result reports exit code 0 whatever the container's).
    let mut r = exited_by_its_account();
    r.at(3).feed(exit_line(0));
    r.pod(terminated(137, "OOMKilled"));
    r.feed(Input::LogEnded);
    assert_eq!(r.result()["exitCode"], 0);
}

#[test]
fn a_pod_someone_else_is_deleting_or_a_stop_underway_takes_no_early_end() {
    // Someone deletes the pod after the result: the deletion decides, as before.
    let mut r = exited_by_its_account();
    r.at(3).pod(running_with(true));
    assert!(!r.feed(exit_line(0)).contains(&Action::ProbeExit));
    assert!(r.feed(Input::ProbeEnded).is_empty());
    // The adapter is stopping claude (timeout): its line and a probe's end change nothing.
    let mut r = started(Limits {
        timeout: Some(5 * S),
        ..limits()
    });
    r.lines(&[INIT, RESULT]);
    r.tick(5);
    assert!(matches!(r.m.phase(), Phase::Stopping { .. }));
    assert!(r.feed(exit_line(0)).is_empty());
    assert!(r.feed(Input::ProbeEnded).is_empty());
    assert!(r.ending().is_none());
}
