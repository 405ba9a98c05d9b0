//! Every `errorCode` a run can end with, and the hint that goes with it where the hint says the same whatever
//! the run (the others are built where the facts are: the image field, the memory limit, the missing rule).
//! The README's troubleshooting table is checked against this list (see the tests).

use std::fmt;

macro_rules! error_codes {
    ($($variant:ident = $code:literal,)*) => {
        /// A run's `errorCode`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidConfig = "invalid_config",
    PolicyDenied = "policy_denied",
    ClientUnavailable = "k8s_client_unavailable",
    SelfPodUnreadable = "k8s_self_pod_unreadable",
    PromptBundleFailed = "prompt_bundle_failed",
    PlanFailed = "k8s_plan_failed",
    VolumePathUnsafe = "volume_path_unsafe",
    GuardUnreachable = "k8s_concurrency_guard_unreachable",
    ConcurrentRunBlocked = "k8s_concurrent_run_blocked",
    SecretCreateFailed = "k8s_secret_create_failed",
    JobCreateFailed = "k8s_job_create_failed",
    Forbidden = "k8s_forbidden",
    QuotaExceeded = "k8s_quota_exceeded",
    ImageInvalid = "k8s_image_invalid",
    ImageNotPresent = "k8s_image_not_present",
    ImagePullFailed = "k8s_image_pull_failed",
    ContainerConfigError = "k8s_container_config_error",
    ContainerCreateError = "k8s_container_create_error",
    InitFailed = "k8s_init_failed",
    PodFailed = "k8s_pod_failed",
    PodUnschedulable = "k8s_pod_unschedulable",
    PodNotCreated = "k8s_pod_not_created",
    PodStartTimeout = "k8s_pod_start_timeout",
    OomKilled = "k8s_oom_killed",
    ContainerKilled = "k8s_container_killed",
    ContainerTerminated = "k8s_container_terminated",
    PodEvicted = "k8s_pod_evicted",
    PodDisrupted = "k8s_pod_disrupted",
    JobDeletedExternally = "k8s_job_deleted_externally",
    PodDeleted = "k8s_pod_deleted",
    JobFailed = "k8s_job_failed",
    WatchEnded = "k8s_watch_ended",
    Timeout = "timeout",
    Cancelled = "cancelled",
    ClaudeAuthRequired = "claude_auth_required",
    ModelNotFound = "model_not_found",
    ClaudeTransientUpstream = "claude_transient_upstream",
    ProviderQuota = "provider_quota",
    MaxTurnsExhausted = "max_turns_exhausted",
    ClaudeRefusal = "claude_refusal",
    ClaudeFailed = "claude_failed",
    ClaudeExitNonzero = "claude_exit_nonzero",
    ClaudeOutputUnparsed = "claude_output_unparsed",
    InternalError = "claude_k8s_internal_error",
}

/// Codes the README's troubleshooting table leaves out on purpose: they mean a bug or a broken API server, not
/// something a user sets right.
pub const INTERNAL: &[ErrorCode] = &[ErrorCode::WatchEnded, ErrorCode::InternalError];

impl ErrorCode {
    /// The hint of a code whose fix does not depend on the run.
    pub const fn hint(self) -> Option<&'static str> {
        use ErrorCode::*;
        Some(match self {
            GuardUnreachable => {
                "the one-Job-per-agent guard needs get/create/update/delete on leases.coordination.k8s.io in \
                 the Jobs' namespace (deploy/role.yaml); `claude-k8s doctor` checks it"
            }
            ConcurrentRunBlocked => {
                "wait for that run to finish, or cancel it in Paperclip; `claude-k8s jobs` lists the agent's Jobs"
            }
            ImageNotPresent => {
                "load the image onto the nodes, or set adapterConfig.imagePullPolicy to IfNotPresent"
            }
            ContainerConfigError => {
                "a Secret or ConfigMap (or a key in it) that the pod's env or envFrom references is missing in the \
                 Job's namespace: create it, or fix the reference (adapterConfig.env, podSpecPatch, the Paperclip \
                 pod's env)"
            }
            ContainerCreateError => {
                "see the kubelet's message; a podSpecPatch or an inherited volume may be wrong"
            }
            InitFailed => {
                "adapterConfig.initImage must have `sh` and `gunzip` (busybox:1.36 works)"
            }
            PodFailed => "see `kubectl describe pod` for the pod's events",
            PodUnschedulable => {
                "no node fits the pod: check adapterConfig.nodeSelector, tolerations and \
                 resources.requests against the nodes (or wait for the autoscaler)"
            }
            PodStartTimeout => {
                "the pod's events name the cause (`kubectl describe pod`): often a volume that cannot be mounted, \
                 e.g. a Secret, ConfigMap or claim the Paperclip pod mounts that is missing in the Jobs' namespace"
            }
            ContainerKilled => {
                "the container was killed (SIGKILL) from outside: by the kubelet after a \
                 stop, the node's OOM killer, or an operator"
            }
            ContainerTerminated => {
                "the container was stopped (SIGTERM) from outside, e.g. its pod was \
                 deleted or the node drained"
            }
            PodEvicted | PodDisrupted => {
                "run the heartbeat again; for long runs protect the pods with a PodDisruptionBudget or the \
                 cluster-autoscaler.kubernetes.io/safe-to-evict=\"false\" annotation, and give them enough \
                 memory and ephemeral storage"
            }
            JobDeletedExternally => {
                "something else deleted the Job: an operator (kubectl delete job), `claude-k8s gc`, or a cleanup \
                 policy in the namespace; run the heartbeat again"
            }
            PodDeleted => {
                "an operator (kubectl delete pod), a node drain or a controller removed the pod; run the heartbeat \
                 again"
            }
            ClaudeAuthRequired => {
                "Claude is not logged in in the pod: set ANTHROPIC_API_KEY (or \
                 CLAUDE_CODE_OAUTH_TOKEN) in the Paperclip Deployment's env or in \
                 adapterConfig.env"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The codes in the README's troubleshooting table: the first cell of each row, every `code` in it.
    fn readme_codes() -> BTreeSet<String> {
        let readme = include_str!("../../../../../README.md");
        let table = readme
            .split("## Troubleshooting: error codes")
            .nth(1)
            .expect("the README has its troubleshooting section");
        table
            .lines()
            .skip_while(|l| !l.starts_with("| errorCode"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .flat_map(|row| {
                let first = row.split('|').nth(1).unwrap_or_default();
                first
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_readmes_troubleshooting_table_names_every_code_and_only_real_ones() {
        let documented = readme_codes();
        assert!(documented.len() > 20, "{documented:?}");
        let known: BTreeSet<String> = ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        for code in &documented {
            assert!(
                known.contains(code),
                "the README names `{code}`, which no run produces"
            );
        }
        for code in ErrorCode::ALL {
            let listed = documented.contains(code.as_str());
            let internal = INTERNAL.contains(code);
            assert!(
                listed != internal,
                "`{code}` must be in the README's troubleshooting table or in INTERNAL (and not both)"
            );
        }
    }

    #[test]
    fn codes_are_distinct_snake_case() {
        let all: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(all.len(), ErrorCode::ALL.len());
        for c in all {
            assert!(
                c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{c}"
            );
        }
        assert_eq!(serde_json::to_value(ErrorCode::Timeout).unwrap(), "timeout");
    }
}
