//! What a pod's status says about a run: a progress line for the user, the claude container's end, or a
//! failure that will not fix itself. Pure: a Pod in, a [`PodView`] out.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::outcome::ContainerEnd;
use crate::plan::{CLAUDE_CONTAINER, PROMPT_CONTAINER};

/// A failure seen in the pod. `after` is how long it must persist before the run gives up (a pull may recover).
#[derive(Debug, Clone, PartialEq)]
pub struct PodFailure {
    pub code: &'static str,
    pub message: String,
    pub after: Duration,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    /// A one-line description of where the pod is; the follower prints it when it changes.
    pub progress: Option<String>,
    pub claude_running: bool,
    pub claude_end: Option<ContainerEnd>,
    pub failure: Option<PodFailure>,
}

/// How long an image pull or container config problem may last before the run fails.
pub const START_GRACE: Duration = Duration::from_secs(30);
/// How long a pod may stay unschedulable before the run fails.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(600);

pub fn view(pod: &Pod) -> PodView {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.clone().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let claude = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CLAUDE_CONTAINER);
    let init = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == PROMPT_CONTAINER);
    let image = |c: Option<&ContainerStatus>| c.map(|c| c.image.clone()).unwrap_or_default();
    let mut v = PodView::default();

    if let Some(term) = claude.and_then(|c| c.state.as_ref()?.terminated.as_ref()) {
        v.claude_end = Some(ContainerEnd {
            exit_code: term.exit_code,
            reason: term.reason.clone(),
            message: term.message.clone(),
        });
        v.progress = Some(format!(
            "pod {name}: claude container exited with code {}",
            term.exit_code
        ));
        return v;
    }
    if claude
        .and_then(|c| c.state.as_ref()?.running.as_ref())
        .is_some()
    {
        v.claude_running = true;
        v.progress = Some(format!(
            "pod {name}: claude running on node {}",
            node.unwrap_or("?")
        ));
        return v;
    }

    // Not started yet: say why, and decide whether it is a failure.
    if let Some(term) = init
        .and_then(|c| c.state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code != 0)
    {
        v.failure = Some(PodFailure {
            code: "k8s_init_failed",
            message: format!(
                "the write-prompt init container failed (exit {}{}): check adapterConfig.initImage",
                term.exit_code,
                term.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            after: Duration::ZERO,
        });
        return v;
    }
    for (container, which) in [(init, "write-prompt"), (claude, "claude")] {
        let Some(waiting) = container.and_then(|c| c.state.as_ref()?.waiting.as_ref()) else {
            continue;
        };
        let reason = waiting.reason.as_deref().unwrap_or("Waiting");
        let message = waiting.message.clone().unwrap_or_default();
        v.progress = Some(format!(
            "pod {name}: {which} container {reason}{}",
            suffix(&message)
        ));
        let img = image(container);
        v.failure = match reason {
            "InvalidImageName" | "ErrImageNeverPull" => Some(PodFailure {
                code: "k8s_image_pull_failed",
                message: format!(
                    "image `{img}` for the {which} container cannot be used: {reason}{}",
                    suffix(&message)
                ),
                after: Duration::ZERO,
            }),
            "ErrImagePull" | "ImagePullBackOff" => Some(PodFailure {
                code: "k8s_image_pull_failed",
                message: format!(
                    "image `{img}` for the {which} container cannot be pulled ({reason}{}); check the image name, \
                     adapterConfig.imagePullPolicy and the imagePullSecrets",
                    suffix(&message)
                ),
                after: START_GRACE,
            }),
            "CreateContainerConfigError" | "CreateContainerError" => Some(PodFailure {
                code: "k8s_container_config_error",
                message: format!(
                    "the {which} container cannot be created: {reason}{}",
                    suffix(&message)
                ),
                after: START_GRACE,
            }),
            _ => None,
        };
        return v;
    }

    if status.phase.as_deref() == Some("Failed") {
        v.failure = Some(PodFailure {
            code: "k8s_pod_disrupted",
            message: format!(
                "pod {name} failed before claude ran: {}{}",
                status.reason.as_deref().unwrap_or("Failed"),
                suffix(status.message.as_deref().unwrap_or(""))
            ),
            after: Duration::ZERO,
        });
        return v;
    }
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    v.progress = Some(match (unscheduled, node) {
        (Some(c), _) => {
            let message = c.message.clone().unwrap_or_default();
            v.failure = Some(PodFailure {
                code: "k8s_pod_unschedulable",
                message: format!("pod {name} could not be scheduled: {message}"),
                after: PENDING_TIMEOUT,
            });
            format!(
                "pod {name} pending: {}{}",
                c.reason.as_deref().unwrap_or("Unschedulable"),
                suffix(&message)
            )
        }
        (None, Some(node)) => format!("pod {name} scheduled on node {node}"),
        (None, None) => format!("pod {name} pending"),
    });
    v
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeName": "n1"}, "status": status})).unwrap()
    }

    #[test]
    fn terminated_claude_gives_the_end() {
        let v = view(&pod(
            json!({"containerStatuses": [{"name": "claude", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        ));
        assert_eq!(
            v.claude_end,
            Some(ContainerEnd {
                exit_code: 137,
                reason: Some("OOMKilled".into()),
                message: None
            })
        );
    }

    #[test]
    fn image_problems_fail_with_the_image_name() {
        let v = view(&pod(
            json!({"containerStatuses": [{"name": "claude", "image": "local/missing:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}),
        ));
        let f = v.failure.unwrap();
        assert_eq!(f.code, "k8s_image_pull_failed");
        assert!(f.message.contains("local/missing:1"));
        assert_eq!(f.after, START_GRACE);
        let v = view(&pod(
            json!({"containerStatuses": [{"name": "claude", "image": "Bad Name", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "InvalidImageName"}}}]}),
        ));
        assert_eq!(v.failure.unwrap().after, Duration::ZERO);
    }

    #[test]
    fn unschedulable_is_progress_first_and_a_failure_only_later() {
        let v = view(&serde_json::from_value::<Pod>(json!({"metadata": {"name": "p"}, "spec": {"containers": []},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity."}]}})).unwrap());
        assert!(v.progress.unwrap().contains("didn't match"));
        assert_eq!(v.failure.unwrap().after, PENDING_TIMEOUT);
    }

    #[test]
    fn running_and_evicted() {
        let v = view(&pod(
            json!({"containerStatuses": [{"name": "claude", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]}),
        ));
        assert!(v.claude_running && v.failure.is_none());
        let v = view(&pod(
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
        ));
        assert_eq!(v.failure.unwrap().code, "k8s_pod_disrupted");
    }
}
