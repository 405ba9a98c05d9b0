//! What a pod's status says about a run: a progress line for the user, the claude container's end, or a
//! failure that will not fix itself. Pure: a Pod in, a [`PodView`] out.
//!
//! Failures are read from container states (init container first, then claude) and pod conditions, never from
//! `pod.status.reason` alone (empty for most failures). Each has a stable `code`, a message in words built from
//! what the kubelet and the scheduler said, and a hint with the fix.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::run::outcome::{ContainerEnd, ErrorCode};
use crate::run::plan::{CLAUDE_CONTAINER, PROMPT_CONTAINER};

/// A failure seen in the pod. `after` is how long it must persist before the run gives up (a pull may recover).
#[derive(Debug, Clone, PartialEq)]
pub struct PodFailure {
    pub code: ErrorCode,
    pub message: String,
    /// What to do about it, for the user.
    pub hint: String,
    pub after: Duration,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    /// A one-line description of where the pod is; the follower prints it when it changes.
    pub progress: Option<String>,
    pub claude_running: bool,
    pub claude_end: Option<ContainerEnd>,
    pub failure: Option<PodFailure>,
    /// The pod has a deletion timestamp: someone (the garbage collector after a Job delete, an operator, an
    /// eviction) is stopping it.
    pub deleting: bool,
}

/// How long an image pull or container config problem may last before the run fails.
pub const START_GRACE: Duration = Duration::from_secs(30);
/// How long a pod may stay unschedulable before the run fails.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the Job controller may take to create the Job's pod (a missing service account, a used-up quota or an
/// admission policy make it fail over and over, visible only in the Job's events).
pub const POD_CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long start-up problems may last (the serve process's settings: `CLAUDE_K8S_START_GRACE_SEC`,
/// `CLAUDE_K8S_PENDING_TIMEOUT_SEC`, `CLAUDE_K8S_POD_CREATE_TIMEOUT_SEC`), else the defaults above.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub start_grace: Duration,
    pub pending_timeout: Duration,
    pub pod_create_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            start_grace: START_GRACE,
            pending_timeout: PENDING_TIMEOUT,
            pod_create_timeout: POD_CREATE_TIMEOUT,
        }
    }
}

pub fn view(pod: &Pod, limits: &Limits) -> PodView {
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
    let mut v = PodView {
        deleting: pod.metadata.deletion_timestamp.is_some(),
        claude_running: claude
            .and_then(|c| c.state.as_ref()?.running.as_ref())
            .is_some(),
        ..Default::default()
    };

    // A disruption first: it explains a claude container that was killed with it.
    if let Some(f) = disruption(name, &status) {
        v.progress = Some(f.message.clone());
        v.failure = Some(f);
        return v;
    }
    if let Some(term) = claude.and_then(|c| c.state.as_ref()?.terminated.as_ref()) {
        v.claude_end = Some(ContainerEnd {
            exit_code: term.exit_code,
            reason: term.reason.clone(),
            message: term.message.clone(),
            signal: term.signal,
        });
        v.progress = Some(format!(
            "pod {name}: claude container exited with code {}{}",
            term.exit_code,
            term.reason
                .as_deref()
                .filter(|r| *r != "Completed" && *r != "Error")
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
        return v;
    }
    if v.claude_running {
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
            code: ErrorCode::InitFailed,
            message: format!(
                "the write-prompt init container failed ({}exit code {}){}",
                term.reason
                    .as_deref()
                    .map(|r| format!("{r}, "))
                    .unwrap_or_default(),
                term.exit_code,
                suffix(term.message.as_deref().unwrap_or(""))
            ),
            hint: static_hint(ErrorCode::InitFailed),
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
        v.failure = waiting_failure(which, &image(container), reason, &message, limits);
        return v;
    }

    if status.phase.as_deref() == Some("Failed") {
        v.failure = Some(PodFailure {
            code: ErrorCode::PodFailed,
            message: format!(
                "pod {name} failed before claude ran: {}{}",
                status.reason.as_deref().unwrap_or("Failed"),
                suffix(status.message.as_deref().unwrap_or(""))
            ),
            hint: static_hint(ErrorCode::PodFailed),
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
                code: ErrorCode::PodUnschedulable,
                message: format!(
                    "pod {name} could not be scheduled for {}s: {}",
                    limits.pending_timeout.as_secs(),
                    if message.is_empty() {
                        "Unschedulable"
                    } else {
                        &message
                    }
                ),
                hint: static_hint(ErrorCode::PodUnschedulable),
                after: limits.pending_timeout,
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

/// The failure a waiting reason means, if it is one.
fn waiting_failure(
    which: &str,
    img: &str,
    reason: &str,
    message: &str,
    limits: &Limits,
) -> Option<PodFailure> {
    let (code, text, hint, after) = match reason {
        "InvalidImageName" => (
            ErrorCode::ImageInvalid,
            format!("image `{img}` of the {which} container is not a valid image reference"),
            format!("fix the image name ({})", image_field(which)),
            Duration::ZERO,
        ),
        "ErrImageNeverPull" => (
            ErrorCode::ImageNotPresent,
            format!(
                "image `{img}` of the {which} container is not on the node and imagePullPolicy is Never"
            ),
            static_hint(ErrorCode::ImageNotPresent),
            Duration::ZERO,
        ),
        "ErrImagePull" | "ImagePullBackOff" => (
            ErrorCode::ImagePullFailed,
            format!("image `{img}` of the {which} container cannot be pulled"),
            format!(
                "check the image name and tag ({}), that the registry is reachable from the nodes, and the \
                 imagePullSecrets of the Paperclip pod",
                image_field(which)
            ),
            limits.start_grace,
        ),
        "CreateContainerConfigError" => (
            ErrorCode::ContainerConfigError,
            format!("the {which} container cannot be configured"),
            static_hint(ErrorCode::ContainerConfigError),
            limits.start_grace,
        ),
        // Normal while a pod starts; a pod that stays here is stuck, mostly on a volume (FailedMount: a missing
        // Secret, ConfigMap or claim), which only the pod's events tell: the run adds the latest one.
        "ContainerCreating" | "PodInitializing" => (
            ErrorCode::PodStartTimeout,
            format!(
                "the pod did not start within {}s: the {which} container is still waiting",
                limits.pending_timeout.as_secs()
            ),
            static_hint(ErrorCode::PodStartTimeout),
            limits.pending_timeout,
        ),
        "CreateContainerError" | "RunContainerError" => (
            ErrorCode::ContainerCreateError,
            format!("the {which} container cannot be created"),
            static_hint(ErrorCode::ContainerCreateError),
            limits.start_grace,
        ),
        _ => return None,
    };
    Some(PodFailure {
        code,
        message: format!("{text}: {reason}{}", suffix(message)),
        hint,
        after,
    })
}

fn image_field(which: &str) -> &'static str {
    if which == "claude" {
        "adapterConfig.image"
    } else {
        "adapterConfig.initImage"
    }
}

/// An eviction, a preemption, a node lost: the pod was taken away, which is not the agent's failure.
fn disruption(name: &str, status: &k8s_openapi::api::core::v1::PodStatus) -> Option<PodFailure> {
    let target = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    let reason = status.reason.as_deref().unwrap_or_default();
    let (cause, detail) = match (target, reason) {
        (_, "Evicted") => ("evicted", status.message.clone()),
        (Some(c), _) => (
            "disrupted",
            Some(format!(
                "{}{}",
                c.reason.as_deref().unwrap_or("DisruptionTarget"),
                suffix(c.message.as_deref().unwrap_or(""))
            )),
        ),
        (None, "NodeLost" | "NodeShutdown" | "Terminated" | "UnexpectedAdmissionError") => (
            "lost with its node",
            Some(format!(
                "{reason}{}",
                suffix(status.message.as_deref().unwrap_or(""))
            )),
        ),
        _ => return None,
    };
    Some(PodFailure {
        code: if cause == "evicted" {
            ErrorCode::PodEvicted
        } else {
            ErrorCode::PodDisrupted
        },
        message: format!(
            "pod {name} was {cause} (a disruption, not a failure of the agent){}",
            suffix(detail.as_deref().unwrap_or(""))
        ),
        hint: static_hint(ErrorCode::PodEvicted),
        after: Duration::ZERO,
    })
}

/// The hint [`ErrorCode::hint`] has for `code`.
fn static_hint(code: ErrorCode) -> String {
    code.hint().unwrap_or_default().to_owned()
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

#[cfg(test)]
mod tests;
