//! Runs that end by themselves, and claude's exit as the outcome reports it.

use super::*;

// --- A normal run ----------------------------------------------------------------------------------------

#[test]
fn a_run_that_ends_by_itself_forwards_every_line_and_finishes_after_the_log_tail() {
    let mut r = Run::new(limits());
    assert!(matches!(r.m.phase(), Phase::AwaitingPod { .. }));
    r.pod(scheduled());
    assert_eq!(r.m.phase(), &Phase::Starting);
    let out = r.at(2).pod(running());
    assert_eq!(
        out,
        [
            Action::Progress(format!("pod {POD}: claude running on node stage-node")),
            Action::FollowLog(POD.into()),
        ]
    );
    assert_eq!(r.m.phase(), &Phase::Running);
    r.lines(&[INIT, ASSISTANT]);
    // The same status again says nothing new.
    assert!(r.pod(running()).is_empty());
    let out = r.at(20).pod(terminated(0, "Completed"));
    assert!(out.contains(&Action::EndLog), "{out:?}");
    assert!(r.ending().is_none(), "the tail is still to come");
    assert!(matches!(r.m.phase(), Phase::Draining { .. }));
    // The tail after termination still reaches Paperclip and the transcript.
    r.lines(&[RESULT]);
    let out = r.feed(Input::LogEnded);
    assert_eq!(
        out.last(),
        Some(&Action::Finish(Ending::Exited(ContainerEnd {
            exit_code: 0,
            reason: Some("Completed".into()),
            ..Default::default()
        })))
    );
    assert_eq!(
        r.actions
            .iter()
            .filter(|a| matches!(a, Action::Forward(_)))
            .count(),
        3
    );
    assert_eq!(r.m.phase(), &Phase::Done);
    let result = r.result();
    assert_eq!(result["exitCode"], 0);
    assert_eq!(result["summary"], "done");
    assert!(result.get("errorCode").is_none(), "{result:#}");
    assert!(r.m.next_deadline().is_none());
}

#[test]
fn a_log_stream_that_ends_before_termination_does_not_end_the_run() {
    let mut r = started(limits());
    r.lines(&[INIT]);
    // The follower gave up (it reconnects on its own; this is the case where it could not): only the
    // container's state ends the run.
    assert!(r.feed(Input::LogEnded).is_empty());
    assert!(r.ending().is_none());
    assert_eq!(r.m.phase(), &Phase::Running);
    // The container's end is then final at once: no tail is waited for.
    r.at(30).pod(terminated(1, "Error"));
    assert!(matches!(r.ending(), Some(Ending::Exited(e)) if e.exit_code == 1));
}

#[test]
fn a_log_tail_that_never_comes_is_given_up_after_the_drain_timeout() {
    let mut r = started(limits());
    r.at(20).pod(terminated(0, "Completed"));
    assert_eq!(r.m.next_deadline(), Some(r.now + LOG_DRAIN_TIMEOUT));
    assert!(r.tick(39).is_empty());
    let out = r.tick(40);
    assert_eq!(
        out[..2],
        [
            Action::Warn(
                "the log tail did not arrive in time; the transcript may be incomplete".into()
            ),
            Action::AbortLog,
        ]
    );
    assert!(matches!(r.ending(), Some(Ending::Exited(_))));
}

#[test]
fn a_job_that_already_finished_is_read_from_its_pod() {
    // Adoption of a Job that ended while nobody watched: the first event is the terminated pod.
    let mut r = Run::new(limits());
    let out = r.pod(terminated(0, "Completed"));
    assert!(out.contains(&Action::FollowLog(POD.into())), "{out:?}");
    r.lines(&[INIT, RESULT]);
    r.feed(Input::LogEnded);
    assert!(matches!(r.ending(), Some(Ending::Exited(e)) if e.exit_code == 0));
    assert_eq!(r.m.transcript().last_lines.len(), 2);
}

// --- Claude's exit, as the outcome reports it -------------------------------------------------------------

#[test]
fn an_oom_kill_is_k8s_oom_killed() {
    let mut r = started(limits());
    r.lines(&[INIT, "allocating..."]);
    r.at(9).pod(terminated(137, "OOMKilled"));
    r.feed(Input::LogEnded);
    let result = r.result();
    assert_eq!(result["errorCode"], "k8s_oom_killed");
    assert!(r.progress().iter().any(|p| p.contains("137 (OOMKilled)")));
}

#[test]
fn a_sigkill_is_k8s_container_killed_and_a_sigterm_k8s_container_terminated() {
    for (code, expected) in [
        (137, "k8s_container_killed"),
        (143, "k8s_container_terminated"),
    ] {
        let mut r = started(limits());
        r.lines(&[INIT]);
        r.at(9).pod(terminated(code, "Error"));
        r.feed(Input::LogEnded);
        assert_eq!(r.result()["errorCode"], expected);
    }
}

#[test]
fn claudes_own_failure_is_classified_from_its_lines() {
    let mut r = started(limits());
    r.lines(&[
        INIT,
        r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"api_error_status":429,"result":"API Error: 429 rate_limit_error"}"#,
    ]);
    r.at(9).pod(terminated(1, "Error"));
    r.feed(Input::LogEnded);
    assert_eq!(r.result()["errorCode"], "claude_transient_upstream");
}
