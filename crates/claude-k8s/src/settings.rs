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
    /// Lines of claude's output longer than this many bytes are cut in the log follower (default 4 MiB).
    #[arg(long, env = "CLAUDE_K8S_MAX_LINE_BYTES", hide = true, global = true)]
    pub max_line_bytes: Option<String>,
    /// How many executes and environment tests one serve process runs at once (default 256).
    #[arg(long, env = "CLAUDE_K8S_MAX_RUNS", hide = true, global = true)]
    pub max_runs: Option<String>,
    /// How many bytes of output may wait for the host to read them before the log followers wait (default 64 MiB).
    #[arg(
        long,
        env = "CLAUDE_K8S_OUTPUT_QUEUE_BYTES",
        hide = true,
        global = true
    )]
    pub output_queue_bytes: Option<String>,
    /// Claude Code's Bedrock switch in serve's own environment (reported in `hello`).
    #[arg(long, env = "CLAUDE_CODE_USE_BEDROCK", hide = true, global = true)]
    pub claude_code_use_bedrock: Option<String>,
    /// Claude Code's Bedrock endpoint in serve's own environment (reported in `hello`).
    #[arg(long, env = "ANTHROPIC_BEDROCK_BASE_URL", hide = true, global = true)]
    pub anthropic_bedrock_base_url: Option<String>,
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
/// The longest line of claude's output forwarded whole; a longer one is cut with a marker
/// ([`crate::run::follow::logs`]), so one agent's 70 MiB line never travels through serve and the shim.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
/// The most `CLAUDE_K8S_MAX_LINE_BYTES` may be: a line of control characters, JSON-escaped six times its size,
/// still fits the protocol's 64 MiB line.
pub const MAX_LINE_BYTES_CEILING: usize = 10 * 1024 * 1024;
/// The least it may be: enough for any ordinary stream-json event.
pub const MAX_LINE_BYTES_FLOOR: usize = 64 * 1024;
/// How many requests (executes and environment tests) one serve process runs at once: far above one Paperclip
/// server's agents (100 concurrent runs take about 40 MiB), low enough that a flood of requests cannot exhaust it.
pub const MAX_RUNS: usize = 256;
/// How many bytes of messages may wait for the host to read them before the log followers wait (backpressure:
/// the lines stay in the pods' logs meanwhile).
pub const OUTPUT_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// The longest time knob: a setting above it is taken as this (time arithmetic on it cannot overflow).
pub const MAX_KNOB: Duration = Duration::from_secs(30 * 24 * 3600);

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

    /// The longest line of claude's output forwarded whole, within [`MAX_LINE_BYTES_FLOOR`] and
    /// [`MAX_LINE_BYTES_CEILING`].
    pub fn max_line_bytes(&self) -> usize {
        whole(&self.max_line_bytes)
            .unwrap_or(MAX_LINE_BYTES)
            .clamp(MAX_LINE_BYTES_FLOOR, MAX_LINE_BYTES_CEILING)
    }

    /// How many requests run at once (at least 1).
    pub fn max_runs(&self) -> usize {
        whole(&self.max_runs).unwrap_or(MAX_RUNS).max(1)
    }

    /// How many bytes of output may wait for the host (at least one line's worth).
    pub fn output_queue_bytes(&self) -> usize {
        whole(&self.output_queue_bytes)
            .unwrap_or(OUTPUT_QUEUE_BYTES)
            .max(self.max_line_bytes())
    }

    /// Whether serve's own environment selects Bedrock, by the rule the invocation applies to a run's env.
    pub fn bedrock(&self) -> bool {
        crate::run::plan::invocation::is_bedrock(&|name| {
            match name {
                "CLAUDE_CODE_USE_BEDROCK" => self.claude_code_use_bedrock.clone(),
                "ANTHROPIC_BEDROCK_BASE_URL" => self.anthropic_bedrock_base_url.clone(),
                _ => None,
            }
            .filter(|v| !v.trim().is_empty())
        })
    }

    /// The operator policy: the built-in default when neither variable is set (or set empty). Unlike the knobs,
    /// a bad policy is an error: a typo must not silently allow nothing or everything.
    pub fn policy(&self) -> Result<crate::policy::Policy, crate::policy::PolicyError> {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        crate::policy::from_vars(set(&self.policy_json), set(&self.policy_file))
    }
}

/// A whole number of seconds, at most [`MAX_KNOB`]; unset, empty or malformed means none.
fn secs(value: &Option<String>) -> Option<Duration> {
    whole(value).map(|s| Duration::from_secs(s as u64).min(MAX_KNOB))
}

/// A whole number (a larger one than `usize` holds is taken as the largest); unset, empty or malformed means none.
fn whole(value: &Option<String>) -> Option<usize> {
    let text = value.as_deref()?.trim();
    match text.parse::<usize>() {
        Ok(n) => Some(n),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Some(usize::MAX),
        Err(_) => None,
    }
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

    #[test]
    fn huge_knobs_are_capped_and_limits_stay_in_their_range() {
        let s = Cli::parse_from([
            "x",
            "--start-grace-sec",
            "18446744073709551616",
            "--log-silence-sec",
            "99999999999999999999999999",
            "--max-line-bytes",
            "1",
            "--max-runs",
            "0",
            "--output-queue-bytes",
            "5",
        ])
        .settings;
        assert_eq!(s.pod_limits().start_grace, MAX_KNOB);
        assert_eq!(s.log_silence(), MAX_KNOB);
        assert_eq!(s.max_line_bytes(), MAX_LINE_BYTES_FLOOR);
        assert_eq!(s.max_runs(), 1);
        assert_eq!(s.output_queue_bytes(), MAX_LINE_BYTES_FLOOR);
        let s = Cli::parse_from(["x", "--max-line-bytes", "999999999999"]).settings;
        assert_eq!(s.max_line_bytes(), MAX_LINE_BYTES_CEILING);
        let d = Settings::default();
        assert_eq!(
            (d.max_line_bytes(), d.max_runs(), d.output_queue_bytes()),
            (MAX_LINE_BYTES, MAX_RUNS, OUTPUT_QUEUE_BYTES)
        );
    }

    #[test]
    fn bedrock_by_the_invocation_rule() {
        let on = |use_bedrock: Option<&str>, url: Option<&str>| {
            Settings {
                claude_code_use_bedrock: use_bedrock.map(str::to_owned),
                anthropic_bedrock_base_url: url.map(str::to_owned),
                ..Settings::default()
            }
            .bedrock()
        };
        assert!(!on(None, None));
        assert!(on(Some("1"), None) && on(Some(" TRUE "), None) && on(Some("yes"), None));
        assert!(on(Some("on"), None));
        assert!(!on(Some("0"), None) && !on(Some("false"), None) && !on(Some(""), Some("  ")));
        assert!(on(
            None,
            Some("https://bedrock-runtime.us-east-1.amazonaws.com")
        ));
    }
}
