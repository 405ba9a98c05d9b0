//! The serve process's settings, read once when the process starts (clap, from the environment the Paperclip
//! server gives it; docs/protocol.md lists them) and passed down. No other module reads the environment.

use std::time::Duration;

use clap::Args;

use crate::run::follow::pod_state;

/// Timing knobs and where the adapter's own pod is. A knob that is empty or not a whole number of seconds
/// keeps its default, as it always has: a typo must not stop the server from starting.
#[derive(Debug, Clone, Default, Args)]
pub struct Settings {
    /// How long an image pull or container config error may last before the run fails (default 30).
    #[arg(long, env = "CLAUDE_K8S_START_GRACE_SEC", hide = true, global = true)]
    pub start_grace_sec: Option<String>,
    /// How long a pod may stay unschedulable or stuck starting before the run fails (default 600).
    #[arg(
        long,
        env = "CLAUDE_K8S_PENDING_TIMEOUT_SEC",
        hide = true,
        global = true
    )]
    pub pending_timeout_sec: Option<String>,
    /// How long claude may keep running after its final `result` line before it is stopped (default 10).
    #[arg(long, env = "CLAUDE_K8S_RESULT_GRACE_SEC", hide = true, global = true)]
    pub result_grace_sec: Option<String>,
    /// How long a Job may stay without a pod before the run fails (default 60).
    #[arg(
        long,
        env = "CLAUDE_K8S_POD_CREATE_TIMEOUT_SEC",
        hide = true,
        global = true
    )]
    pub pod_create_timeout_sec: Option<String>,
    /// How long a followed log stream may stay silent before it is reopened (default 180).
    #[arg(long, env = "CLAUDE_K8S_LOG_SILENCE_SEC", hide = true, global = true)]
    pub log_silence_sec: Option<String>,
    /// `namespace/name` of the pod to introspect instead of the process's own (outside a pod).
    #[arg(long, env = "CLAUDE_K8S_SELF_POD", hide = true, global = true)]
    pub self_pod: Option<String>,
    /// The pod's name inside a cluster (the kubelet sets it).
    #[arg(long, env = "HOSTNAME", hide = true, global = true)]
    pub hostname: Option<String>,
    /// The operator policy as inline JSON (see [`crate::policy`]).
    #[arg(long, env = crate::policy::POLICY_ENV, hide = true, global = true)]
    pub policy_json: Option<String>,
    /// A file holding the operator policy (YAML or JSON), e.g. a mounted ConfigMap.
    #[arg(long, env = crate::policy::POLICY_FILE_ENV, hide = true, global = true)]
    pub policy_file: Option<String>,
}

/// How long claude may take to exit after its final `result` line (claude_local's `terminalResultCleanupGraceMs`
/// is 5 s; a pod also flushes its log).
pub const RESULT_GRACE: Duration = Duration::from_secs(10);
/// How long a followed stream may stay silent before it is reopened anyway: a connection a proxy or load
/// balancer dropped without closing it would otherwise hang the transcript until the run ends.
pub const LOG_SILENCE: Duration = Duration::from_secs(180);

impl Settings {
    /// The start-up limits of a pod.
    pub fn pod_limits(&self) -> pod_state::Limits {
        let d = pod_state::Limits::default();
        pod_state::Limits {
            start_grace: secs(&self.start_grace_sec).unwrap_or(d.start_grace),
            pending_timeout: secs(&self.pending_timeout_sec).unwrap_or(d.pending_timeout),
            pod_create_timeout: secs(&self.pod_create_timeout_sec).unwrap_or(d.pod_create_timeout),
        }
    }

    pub fn result_grace(&self) -> Duration {
        secs(&self.result_grace_sec).unwrap_or(RESULT_GRACE)
    }

    pub fn log_silence(&self) -> Duration {
        secs(&self.log_silence_sec).unwrap_or(LOG_SILENCE)
    }

    /// The operator policy: the built-in default when neither variable is set (or set empty). Unlike the knobs,
    /// a bad policy is an error: a typo must not silently allow nothing or everything.
    pub fn policy(&self) -> Result<crate::policy::Policy, crate::policy::PolicyError> {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        crate::policy::from_vars(set(&self.policy_json), set(&self.policy_file))
    }
}

/// A whole number of seconds; unset, empty or malformed means none.
fn secs(value: &Option<String>) -> Option<Duration> {
    value
        .as_deref()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn knobs_default_and_bad_values_keep_the_default() {
        let s = Settings::default();
        assert_eq!(s.pod_limits(), pod_state::Limits::default());
        assert_eq!(
            (s.result_grace(), s.log_silence()),
            (RESULT_GRACE, LOG_SILENCE)
        );
        let s = Cli::parse_from([
            "x",
            "--start-grace-sec",
            "7",
            "--pending-timeout-sec",
            " 9 ",
            "--result-grace-sec",
            "soon",
            "--log-silence-sec",
            "",
        ])
        .settings;
        let limits = s.pod_limits();
        assert_eq!(limits.start_grace, Duration::from_secs(7));
        assert_eq!(limits.pending_timeout, Duration::from_secs(9));
        assert_eq!(s.result_grace(), RESULT_GRACE);
        assert_eq!(s.log_silence(), LOG_SILENCE);
    }
}
