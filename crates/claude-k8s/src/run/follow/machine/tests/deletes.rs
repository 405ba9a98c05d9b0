//! Disruptions and deletes by someone else.

use super::*;
use serde_json::json;

// --- Disruptions and deletes by someone else ----------------------------------------------------------------

#[test]
fn an_eviction_is_k8s_pod_evicted_not_claudes_exit_code() {
    let mut r = started(limits());
    let claude = container(
        "claude",
        "local/claude-agent:2.1.328",
        json!({"terminated": {"exitCode": 137, "reason": "Error"}}),
    );
    r.at(9)
        .pod(pod(json!({"phase": "Failed", "reason": "Evicted",
        "message": "The node was low on resource: memory.", "containerStatuses": [claude]})));
    r.feed(Input::LogEnded);
    let f = r.failure().clone();
    assert_eq!(f.code, "k8s_pod_evicted");
    assert!(f.message.contains("low on resource: memory"));
    assert_eq!(r.result()["errorCode"], "k8s_pod_evicted");
}

#[test]
fn a_disruption_target_is_k8s_pod_disrupted() {
    let mut r = started(limits());
    let claude = container(
        "claude",
        "local/claude-agent:2.1.328",
        json!({"running": {}}),
    );
    r.pod(pod(json!({"phase": "Running", "containerStatuses": [claude],
        "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": "preempted by a higher-priority pod"}]})));
    r.feed(Input::LogEnded);
    assert_eq!(r.failure().code, "k8s_pod_disrupted");
}

#[test]
fn a_job_deleted_by_someone_else_waits_briefly_for_claudes_end_and_says_so() {
    let mut r = started(limits());
    r.lines(&[INIT]);
    let out = r.at(10).feed(Input::Job(job(json!({"active": 1}), true)));
    assert_eq!(
        out,
        [Action::Progress(format!(
            "Job {JOB} was deleted by someone else; waiting for claude to stop"
        ))]
    );
    assert_eq!(
        r.m.phase(),
        &Phase::JobDeleted {
            give_up: r.t0 + 30 * S
        }
    );
    // Lines still arrive; the pod's terminated state is the end.
    r.lines(&["bye"]);
    r.at(12).pod(terminated_with(143, "Error", true));
    r.feed(Input::LogEnded);
    let f = r.failure();
    assert_eq!(f.code, "k8s_job_deleted_externally");
    assert!(
        f.message
            .contains("(claude container terminated, exit code 143 (SIGTERM))"),
        "{}",
        f.message
    );
    assert!(
        r.warnings().last().unwrap().contains("last lines:"),
        "{:?}",
        r.warnings()
    );
    assert_eq!(r.result()["errorCode"], "k8s_job_deleted_externally");
}

#[test]
fn a_job_gone_from_the_api_without_its_pod_ending_gives_up_after_the_short_wait() {
    let mut r = started(Limits {
        grace: 5 * S,
        ..limits()
    });
    r.at(10).feed(Input::JobGone);
    assert_eq!(
        r.m.next_deadline(),
        Some(r.t0 + 25 * S),
        "min(grace, 10 s) + 10 s"
    );
    r.tick(25);
    r.feed(Input::LogEnded);
    let f = r.failure();
    assert_eq!(f.code, "k8s_job_deleted_externally");
    assert!(
        f.message.ends_with("before claude finished"),
        "{}",
        f.message
    );
    // A pod gone meanwhile ends it at once.
    let mut r = started(limits());
    r.feed(Input::JobGone);
    r.feed(Input::PodGone);
    r.feed(Input::LogEnded);
    assert_eq!(r.failure().code, "k8s_job_deleted_externally");
}

#[test]
fn a_pod_deleted_by_someone_else_is_k8s_pod_deleted_when_its_job_lives_on() {
    let mut r = started(limits());
    let out = r.at(10).pod(running_with(true));
    assert!(
        out.contains(&Action::Progress(format!("pod {POD} is being deleted"))),
        "{out:?}"
    );
    r.at(14).pod(terminated_with(143, "Error", true));
    assert!(r.asked(&Action::LookUpJob));
    r.feed(Input::JobLookedUp { deleted: false });
    r.feed(Input::LogEnded);
    let f = r.failure();
    assert_eq!(f.code, "k8s_pod_deleted");
    assert!(
        f.message
            .contains("(claude container terminated, exit code 143 (SIGTERM))"),
        "{}",
        f.message
    );
    // The same end, but the Job went with it: the Job's delete is the cause.
    let mut r = started(limits());
    r.pod(terminated_with(143, "Error", true));
    r.feed(Input::JobLookedUp { deleted: true });
    r.feed(Input::LogEnded);
    assert_eq!(r.failure().code, "k8s_job_deleted_externally");
}

#[test]
fn a_pod_that_vanishes_or_never_ends_its_delete_is_looked_into() {
    let mut r = started(limits());
    r.feed(Input::PodGone);
    assert!(r.asked(&Action::LookUpJob));
    r.feed(Input::JobLookedUp { deleted: false });
    r.feed(Input::LogEnded);
    assert_eq!(r.failure().code, "k8s_pod_deleted");
    // Being deleted, but claude never ends: after the short wait.
    let mut r = started(limits());
    r.at(10).pod(running_with(true));
    assert_eq!(r.m.next_deadline(), Some(r.t0 + 30 * S));
    r.tick(30);
    assert!(r.asked(&Action::LookUpJob));
}
