use super::*;
use serde_json::json;

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeName": "n1"}, "status": status})).unwrap()
}

fn waiting(container: &str, image: &str, reason: &str, message: &str) -> Pod {
    let key = if container == "claude" {
        "containerStatuses"
    } else {
        "initContainerStatuses"
    };
    pod(
        json!({key: [{"name": container, "image": image, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}}}]}),
    )
}

fn lim() -> Limits {
    Limits::default()
}

#[test]
fn terminated_claude_gives_the_end() {
    let v = view(
        &pod(
            json!({"containerStatuses": [{"name": "claude", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        ),
        &lim(),
    );
    assert_eq!(
        v.claude_end,
        Some(ContainerEnd {
            exit_code: 137,
            reason: Some("OOMKilled".into()),
            message: None,
            signal: None,
        })
    );
    assert!(v.progress.unwrap().contains("137 (OOMKilled)"));
}

#[test]
fn a_pod_stuck_starting_fails_after_the_pending_timeout_never_hangs() {
    for (container, reason) in [
        ("claude", "ContainerCreating"),
        ("write-prompt", "ContainerCreating"),
        ("claude", "PodInitializing"),
    ] {
        let v = view(&waiting(container, "i", reason, ""), &lim());
        let f = v.failure.expect("a stuck start is a failure in waiting");
        assert_eq!(f.code, "k8s_pod_start_timeout");
        assert_eq!(
            f.after, PENDING_TIMEOUT,
            "{reason} may be slow, but not forever"
        );
        assert!(f.hint.contains("events"), "{}", f.hint);
    }
}

#[test]
fn image_problems_have_their_own_codes_name_the_image_and_give_a_hint() {
    let v = view(
        &waiting(
            "claude",
            "local/missing:1",
            "ImagePullBackOff",
            "Back-off pulling image",
        ),
        &lim(),
    );
    let f = v.failure.unwrap();
    assert_eq!(f.code, "k8s_image_pull_failed");
    assert!(f.message.contains("`local/missing:1`"), "{}", f.message);
    assert!(
        f.message.contains("Back-off pulling image"),
        "{}",
        f.message
    );
    assert!(f.hint.contains("adapterConfig.image"), "{}", f.hint);
    assert_eq!(f.after, START_GRACE);
    let f = view(
        &waiting("claude", "Bad Name", "InvalidImageName", ""),
        &lim(),
    )
    .failure
    .unwrap();
    assert_eq!(
        (f.code.as_str(), f.after),
        ("k8s_image_invalid", Duration::ZERO)
    );
    let f = view(
        &waiting("claude", "x:1", "ErrImageNeverPull", "never pull"),
        &lim(),
    )
    .failure
    .unwrap();
    assert_eq!(
        (f.code.as_str(), f.after),
        ("k8s_image_not_present", Duration::ZERO)
    );
    let f = view(
        &waiting("write-prompt", "busybox:nope", "ErrImagePull", "not found"),
        &lim(),
    )
    .failure
    .unwrap();
    assert!(f.message.contains("write-prompt") && f.hint.contains("initImage"));
}

#[test]
fn a_missing_secret_is_a_config_error_with_the_kubelets_words() {
    let limits = Limits {
        start_grace: Duration::from_secs(7),
        ..lim()
    };
    let f = view(
        &waiting(
            "write-prompt",
            "busybox",
            "CreateContainerConfigError",
            "secret \"nope\" not found",
        ),
        &limits,
    )
    .failure
    .unwrap();
    assert_eq!(f.code, "k8s_container_config_error");
    assert!(
        f.message.contains("secret \"nope\" not found"),
        "{}",
        f.message
    );
    assert!(f.hint.contains("Secret or ConfigMap"));
    assert_eq!(f.after, Duration::from_secs(7));
}

#[test]
fn unschedulable_is_progress_first_and_a_failure_only_later() {
    let limits = Limits {
        pending_timeout: Duration::from_secs(9),
        ..lim()
    };
    let v = view(&serde_json::from_value::<Pod>(json!({"metadata": {"name": "p"}, "spec": {"containers": []},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity."}]}})).unwrap(), &limits);
    assert!(v.progress.unwrap().contains("didn't match"));
    let f = v.failure.unwrap();
    assert_eq!(f.after, Duration::from_secs(9));
    assert!(f.message.contains("for 9s: 0/1 nodes"), "{}", f.message);
    assert!(f.hint.contains("nodeSelector"));
}

#[test]
fn running_evicted_and_disrupted() {
    let v = view(
        &pod(
            json!({"containerStatuses": [{"name": "claude", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {}}}]}),
        ),
        &lim(),
    );
    assert!(v.claude_running && v.failure.is_none() && !v.deleting);
    // Evicted while claude ran: a disruption, not claude's exit code.
    let v = view(
        &pod(
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
            "containerStatuses": [{"name": "claude", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}),
        ),
        &lim(),
    );
    assert!(v.claude_end.is_none());
    let f = v.failure.unwrap();
    assert_eq!(f.code, "k8s_pod_evicted");
    assert!(
        f.message.contains("low on resource: memory"),
        "{}",
        f.message
    );
    let v = view(
        &pod(
            json!({"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}]}),
        ),
        &lim(),
    );
    let f = v.failure.unwrap();
    assert_eq!(f.code, "k8s_pod_disrupted");
    assert!(f.message.contains("EvictionByEvictionAPI"));
}

#[test]
fn a_deleted_pod_is_noticed() {
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p", "deletionTimestamp": "2026-11-25T08:00:00Z"},
        "spec": {"containers": []}, "status": {}}),
    )
    .unwrap();
    assert!(view(&p, &lim()).deleting);
}
