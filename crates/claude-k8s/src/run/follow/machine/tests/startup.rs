//! Start-up failures and their time limits.

use super::*;
use serde_json::json;

// --- Start-up failures --------------------------------------------------------------------------------------

#[test]
fn an_image_that_cannot_be_pulled_fails_after_the_start_grace_unless_it_recovers() {
    let mut r = Run::new(limits());
    r.pod(waiting(
        "claude",
        "local/missing:1",
        "ErrImagePull",
        "pull access denied for local/missing",
    ));
    r.at(10).pod(waiting(
        "claude",
        "local/missing:1",
        "ImagePullBackOff",
        "Back-off pulling image",
    ));
    // The grace counts from the first sighting of the same failure.
    assert_eq!(r.m.next_deadline(), Some(r.t0 + 30 * S));
    assert!(r.tick(29).iter().all(|a| !matches!(a, Action::Finish(_))));
    r.tick(30);
    let f = r.failure();
    assert_eq!(f.code, "k8s_image_pull_failed");
    assert!(f.message.contains("`local/missing:1`"), "{}", f.message);
    assert!(f.hint.as_deref().unwrap().contains("adapterConfig.image"));
    assert!(r.warnings()[0].contains("cannot be pulled"));
    // A pull that recovers in time is no failure.
    let mut r = Run::new(limits());
    r.pod(waiting("claude", "local/slow:1", "ErrImagePull", "timeout"));
    r.at(20).pod(running());
    assert!(r.tick(31).is_empty());
    assert!(r.ending().is_none());
}

#[test]
fn an_invalid_image_fails_at_once() {
    let mut r = Run::new(limits());
    r.pod(waiting(
        "claude",
        "Bad Name",
        "InvalidImageName",
        "couldn't parse image reference",
    ));
    assert_eq!(r.failure().code, "k8s_image_invalid");
}

#[test]
fn an_image_never_pulled_and_absent_fails_at_once() {
    let mut r = Run::new(limits());
    r.pod(waiting(
        "claude",
        "local/nope:1",
        "ErrImageNeverPull",
        "Container image is not present",
    ));
    assert_eq!(r.failure().code, "k8s_image_not_present");
}

#[test]
fn a_missing_secret_key_is_a_container_config_error_after_the_start_grace() {
    let mut r = Run::new(limits());
    r.pod(waiting(
        "claude",
        "local/claude-agent:2.1.328",
        "CreateContainerConfigError",
        "secret \"anthropic\" not found",
    ));
    r.tick(30);
    let f = r.failure();
    assert_eq!(f.code, "k8s_container_config_error");
    assert!(
        f.message.contains("secret \"anthropic\" not found"),
        "{}",
        f.message
    );
}

#[test]
fn a_container_that_cannot_be_created_quotes_the_pods_latest_event() {
    let mut r = Run::new(limits());
    r.pod(waiting(
        "claude",
        "local/claude-agent:2.1.328",
        "CreateContainerError",
        "context deadline exceeded",
    ));
    let out = r.tick(30);
    assert_eq!(
        out,
        [Action::FetchEvents {
            kind: "Pod",
            name: POD.into()
        }]
    );
    assert!(matches!(r.m.phase(), Phase::Resolving(_)));
    r.feed(Input::Events(Some(
        "Failed: Error: context deadline exceeded (3 times)".into(),
    )));
    let f = r.failure();
    assert_eq!(f.code, "k8s_container_create_error");
    assert!(
        f.message.ends_with(
            "; the Pod's latest event: Failed: Error: context deadline exceeded (3 times)"
        ),
        "{}",
        f.message
    );
}

#[test]
fn a_pod_stuck_in_container_creating_fails_after_the_pending_timeout_with_its_mount_event() {
    let limits = Limits {
        pod: pod_state::Limits {
            pending_timeout: 40 * S,
            ..pod_state::Limits::default()
        },
        ..limits()
    };
    let mut r = Run::new(limits);
    r.pod(waiting(
        "write-prompt",
        "local/busybox:1",
        "PodInitializing",
        "",
    ));
    r.at(5).pod(waiting(
        "write-prompt",
        "local/busybox:1",
        "ContainerCreating",
        "",
    ));
    // PodInitializing and ContainerCreating are the same failure in waiting: the clock started at 0.
    r.at(10).pod(waiting(
        "write-prompt",
        "local/busybox:1",
        "ContainerCreating",
        "",
    ));
    assert!(r.tick(39).is_empty());
    r.tick(40);
    r.feed(Input::Events(Some(
        "FailedMount: MountVolume.SetUp failed for volume \"creds\" : secret \"creds\" not found (4 times)".into(),
    )));
    let f = r.failure();
    assert_eq!(f.code, "k8s_pod_start_timeout");
    assert!(f.message.contains("FailedMount"), "{}", f.message);
    assert_eq!(r.result()["errorCode"], "k8s_pod_start_timeout");
}

#[test]
fn an_unschedulable_pod_shows_the_schedulers_words_then_fails_after_the_pending_timeout() {
    let limits = Limits {
        pod: pod_state::Limits {
            pending_timeout: 60 * S,
            ..pod_state::Limits::default()
        },
        ..limits()
    };
    let mut r = Run::new(limits);
    r.pod(unschedulable());
    assert!(
        r.progress()[0].contains("didn't match node selector"),
        "{:?}",
        r.progress()
    );
    assert!(r.tick(59).is_empty());
    r.tick(60);
    let f = r.failure();
    assert_eq!(f.code, "k8s_pod_unschedulable");
    assert!(f.message.contains("for 60s: 0/1 nodes"), "{}", f.message);
    assert!(
        !r.asked(&Action::FetchEvents {
            kind: "Pod",
            name: POD.into()
        }),
        "its words are in the status"
    );
}

#[test]
fn a_job_that_gets_no_pod_fails_after_the_pod_creation_timeout_with_its_failed_create_event() {
    let mut r = Run::new(limits());
    r.feed(Input::Job(active_job()));
    assert_eq!(r.m.next_deadline(), Some(r.t0 + 60 * S));
    assert!(r.tick(59).is_empty());
    assert_eq!(
        r.tick(60),
        [Action::FetchEvents {
            kind: "Job",
            name: JOB.into()
        }]
    );
    r.feed(Input::Events(Some(
        "FailedCreate: Error creating: pods \"x\" is forbidden: error looking up service account paperclip/nope (4 times)".into(),
    )));
    let f = r.failure();
    assert_eq!(f.code, "k8s_pod_not_created");
    assert!(
        f.message
            .contains("in 60s; the Job's latest event: FailedCreate"),
        "{}",
        f.message
    );
    assert!(
        f.hint
            .as_deref()
            .unwrap()
            .contains(&format!("kubectl describe job {JOB}"))
    );
    // Without an event the failure stands as it is.
    let mut r = Run::new(limits());
    r.tick(60);
    r.feed(Input::Events(None));
    assert!(
        r.failure().message.ends_with("in 60s"),
        "{}",
        r.failure().message
    );
}

#[test]
fn a_failed_init_container_fails_at_once() {
    let mut r = Run::new(limits());
    let init = container(
        "write-prompt",
        "local/busybox:1",
        json!({"terminated": {"exitCode": 127, "reason": "Error", "message": "sh: gunzip: not found"}}),
    );
    r.pod(pod(
        json!({"phase": "Failed", "initContainerStatuses": [init]}),
    ));
    let f = r.failure();
    assert_eq!(f.code, "k8s_init_failed");
    assert!(f.message.contains("gunzip: not found"));
}

#[test]
fn a_job_failed_by_its_controller_fails_with_the_controllers_reason() {
    let mut r = started(limits());
    r.feed(Input::Job(job(json!({"conditions": [{"type": "Failed", "status": "True",
        "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]}), false)));
    r.feed(Input::LogEnded);
    let f = r.failure();
    assert_eq!(f.code, "k8s_job_failed");
    assert_eq!(
        f.message,
        format!(
            "Job {JOB} failed: DeadlineExceeded: Job was active longer than specified deadline"
        )
    );
    // BackoffLimitExceeded only echoes claude's own failure, which the pod tells better.
    let mut r = started(limits());
    r.feed(Input::Job(job(json!({"conditions": [{"type": "Failed", "status": "True",
        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}), false)));
    assert!(r.ending().is_none());
}

#[test]
fn a_pod_watch_that_ends_fails_the_run() {
    let mut r = started(limits());
    r.feed(Input::PodWatchEnded);
    r.feed(Input::LogEnded);
    assert_eq!(r.failure().code, "k8s_watch_ended");
}
