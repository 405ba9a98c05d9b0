//! Cancel, in every phase.

use super::*;

// --- Cancel, in every phase -------------------------------------------------------------------------------------

#[test]
fn cancel_while_awaiting_the_pod_or_starting_finishes_at_once() {
    let mut r = Run::new(limits());
    r.feed(Input::Cancel);
    assert_eq!(r.ending(), Some(&Ending::Cancelled));
    assert_eq!(r.progress(), [format!("cancelling: deleting Job {JOB}")]);
    let mut r = Run::new(limits());
    r.pod(unschedulable());
    r.feed(Input::Cancel);
    assert_eq!(r.ending(), Some(&Ending::Cancelled));
    assert_eq!(r.result()["errorCode"], "cancelled");
}

#[test]
fn cancel_while_running_or_stopping_reads_the_tail_first() {
    let mut r = started(limits());
    r.feed(Input::Cancel);
    assert!(r.asked(&Action::EndLog));
    assert!(r.ending().is_none(), "the tail first");
    r.lines(&["tail"]);
    r.feed(Input::LogEnded);
    assert_eq!(r.ending(), Some(&Ending::Cancelled));
    let mut r = started(Limits {
        timeout: Some(S),
        ..limits()
    });
    r.tick(1);
    r.feed(Input::Cancel);
    r.feed(Input::LogEnded);
    assert_eq!(
        r.ending(),
        Some(&Ending::Cancelled),
        "a cancel beats the timeout's own stop"
    );
}

#[test]
fn cancel_after_someone_else_deleted_the_job_is_still_a_cancel() {
    let mut r = started(limits());
    r.feed(Input::JobGone);
    r.feed(Input::Cancel);
    r.feed(Input::LogEnded);
    assert_eq!(r.ending(), Some(&Ending::Cancelled));
}

#[test]
fn cancel_while_resolving_or_draining_changes_nothing() {
    let mut r = started(limits());
    r.feed(Input::PodGone);
    assert!(r.feed(Input::Cancel).is_empty());
    r.feed(Input::JobLookedUp { deleted: false });
    r.feed(Input::LogEnded);
    assert_eq!(r.failure().code, "k8s_pod_deleted");
    let mut r = started(limits());
    r.pod(terminated(0, "Completed"));
    assert!(r.feed(Input::Cancel).is_empty());
    r.feed(Input::LogEnded);
    assert!(matches!(r.ending(), Some(Ending::Exited(_))));
}

#[test]
fn nothing_happens_after_the_finish() {
    let mut r = Run::new(limits());
    r.feed(Input::Cancel);
    for input in [
        Input::Cancel,
        Input::Tick,
        Input::PodGone,
        Input::Line("x".into()),
        Input::LogEnded,
    ] {
        assert!(r.feed(input).is_empty());
    }
}
