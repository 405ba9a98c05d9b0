//! The run's result for Paperclip, from how the claude container ended and what Claude printed. Pure.
//!
//! Success or failure is judged from the container's terminated state together with Claude's `result` line, as
//! claude_local judges its child process: never from a log stream ending alone. (A successful `result` does not
//! depend on the container's exit code or reason, so the follow machine may end such a run as soon as the kubelet
//! says the container stopped, before its terminated state arrives: `follow::machine`.)

pub mod error_code;
pub mod report;
pub mod result;
pub mod retry_hint;

pub use error_code::ErrorCode;
pub use report::{Failure, cancelled, failure, failure_with_hint, report, unknown_session};
pub use result::{ErrorMeta, ExecutionResult, PolicyDenial, SessionParams};

use serde_json::{Map, Value, json};

use crate::run::follow::stream_json::Transcript;

/// How the claude container ended, read from its `terminated` state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerEnd {
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, …
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The signal that ended it, when the runtime reports one.
    pub signal: Option<i32>,
}

/// What the outcome needs to know about the run besides the container and the transcript.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub cwd: String,
    pub configured_model: Option<String>,
    pub bedrock: bool,
    pub has_api_key: bool,
    /// The session the run resumed, used when Claude printed none.
    pub fallback_session_id: Option<String>,
    /// The session was unknown and this is the fresh retry: Paperclip should drop the old one.
    pub clear_session: bool,
    pub job_name: String,
    pub namespace: String,
    pub memory_limit: String,
    /// The prompt bundle key and MCP identity the session was run with, saved so the next run can gate its
    /// resume on them (claude_local's `promptBundleKey`, `mcpServerIdentity`).
    pub prompt_bundle_key: Option<String>,
    pub mcp_server_identity: Option<String>,
    /// The Paperclip workspace the run worked in, kept with the session as claude_local keeps it.
    pub workspace: Workspace,
    /// When the run ended, in the server's time zone (a usage limit's reset time is read against it).
    pub now: jiff::Zoned,
}

/// `context.paperclipWorkspace`'s identity: its id and repository (claude_local's `workspaceId`, `repoUrl`,
/// `repoRef` in `sessionParams`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workspace {
    pub id: Option<String>,
    pub repo_url: Option<String>,
    pub repo_ref: Option<String>,
}

impl Workspace {
    /// From the run's context; a field that is not a non-blank string is absent (trimmed, as claude_local's
    /// session codec stores it).
    pub fn from_context(context: &Map<String, Value>) -> Self {
        let workspace = context.get("paperclipWorkspace").and_then(Value::as_object);
        let field = |k: &str| {
            let text = workspace?.get(k)?.as_str()?.trim();
            (!text.is_empty()).then(|| text.to_owned())
        };
        Self {
            id: field("workspaceId"),
            repo_url: field("repoUrl"),
            repo_ref: field("repoRef"),
        }
    }
}

impl RunFacts {
    /// The sessionParams Paperclip keeps for the next run.
    fn session_params(&self, id: &str) -> SessionParams {
        SessionParams {
            session_id: id.to_owned(),
            cwd: self.cwd.clone(),
            prompt_bundle_key: self.prompt_bundle_key.clone(),
            mcp_server_identity: self.mcp_server_identity.clone(),
            workspace_id: self.workspace.id.clone(),
            repo_url: self.workspace.repo_url.clone(),
            repo_ref: self.workspace.repo_ref.clone(),
        }
    }

    /// The session fields of a result: the session Claude reported, or the one the run resumed.
    fn session(&self, t: &Transcript, r: &mut ExecutionResult) {
        if let Some(id) = t
            .session_id
            .clone()
            .or_else(|| self.fallback_session_id.clone())
        {
            r.session_params = Some(self.session_params(&id));
            r.session_display_id = Some(id.clone());
            r.session_id = Some(id);
        }
    }
}

/// The AdapterExecutionResult for a container that terminated.
pub fn finished(end: &ContainerEnd, t: &Transcript, run: &RunFacts) -> ExecutionResult {
    let billing_type = if run.bedrock {
        "metered_api"
    } else if run.has_api_key {
        "api"
    } else {
        "subscription"
    };
    let mut r = ExecutionResult {
        exit_code: Some(end.exit_code),
        provider: Some("anthropic"),
        biller: Some(if run.bedrock {
            "aws_bedrock"
        } else {
            "anthropic"
        }),
        billing_type: Some(billing_type),
        model: Some(t.model.clone().or_else(|| run.configured_model.clone())),
        ..ExecutionResult::default()
    };

    let Some(result) = &t.result else {
        let mut message = container_failure(end, t, run).unwrap_or_else(|| {
            "Claude exited without a result line (Failed to parse claude JSON output)".to_owned()
        });
        let code = if requires_login(t) {
            ErrorCode::ClaudeAuthRequired
        } else {
            no_result_code(end)
        };
        if let Some(hint) = no_result_hint(code, run) {
            message = format!("{message}. Hint: {hint}");
            r.error_meta = Some(ErrorMeta {
                hint,
                policy_denied: Vec::new(),
            });
        }
        r.error_message = Some(message);
        r.error_code = Some(code);
        r.clear_session = Some(run.clear_session);
        r.summary = Some(t.assistant_summary());
        r.result_json = Some(object(
            json!({"stdoutTail": t.last_plain_lines, "container": {"exitCode": end.exit_code, "reason": end.reason, "message": end.message}}),
        ));
        return r;
    };

    let succeeded = t.subtype() == Some("success") && !t.is_error();
    let failed = !succeeded && (end.exit_code != 0 || t.is_error());
    if let Some(usage) = t.usage() {
        r.usage = Some(usage);
        r.usage_basis = Some("per_run");
    }
    r.cost_usd = t.cost_usd();
    run.session(t, &mut r);
    r.summary = Some(t.summary());
    r.clear_session = Some(run.clear_session || t.is_max_turns());
    r.result_json = Some(result.clone());
    if failed {
        let mut message = t.describe_failure();
        if let Some(container) =
            container_failure(end, t, run).filter(|_| end.exit_code != 0 && end.exit_code != 1)
        {
            message = format!("{message} ({container})");
        }
        let (code, family) = classify_claude_failure(t, &message);
        r.error_code = Some(code);
        if let Some(family) = family {
            r.error_family = Some(family);
            if let Some(rj) = &mut r.result_json {
                rj.insert("errorFamily".into(), json!(family));
            }
        }
        if matches!(
            code,
            ErrorCode::ProviderQuota | ErrorCode::ClaudeTransientUpstream
        ) {
            insert_retry_not_before(
                &mut r,
                code,
                &format!("{message}\n{}", t.error_messages().join("\n")),
                &run.now,
            );
        }
        r.error_message = Some(message);
    } else if t.is_refusal() {
        r.error_code = Some(ErrorCode::ClaudeRefusal);
        r.error_family = Some("model_refusal");
        r.error_message = Some(t.describe_failure());
    } else if end.exit_code != 0 {
        // Claude reported success but the container did not exit 0 (for example stopped after its result line).
        r.exit_code = Some(0);
    }
    r
}

/// A JSON object built with `json!`.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// claude_local's `retryNotBefore` (top level and in resultJson) when Claude named the time its limit resets.
fn insert_retry_not_before(
    r: &mut ExecutionResult,
    code: ErrorCode,
    text: &str,
    now: &jiff::Zoned,
) {
    let Some(at) = crate::run::outcome::retry_hint::retry_not_before(text, now) else {
        return;
    };
    let at = at.to_string();
    if let Some(rj) = &mut r.result_json {
        rj.insert("retryNotBefore".into(), json!(at));
        rj.insert("transientRetryNotBefore".into(), json!(at));
        if code == ErrorCode::ProviderQuota {
            rj.insert("providerQuotaRetryNotBefore".into(), json!(at));
        }
    }
    r.retry_not_before = Some(at);
}

/// The result of a run the adapter stopped at `timeoutSec` (claude_local's words), with Claude's last lines.
pub fn timed_out(timeout_sec: u64, t: &Transcript, run: &RunFacts) -> ExecutionResult {
    let mut r = ExecutionResult {
        timed_out: true,
        error_code: Some(ErrorCode::Timeout),
        error_message: Some(format!("Timed out after {timeout_sec}s")),
        clear_session: Some(run.clear_session),
        summary: Some(t.assistant_summary()),
        result_json: Some(object(
            json!({"lastLines": t.last_lines, "stdoutTail": t.last_plain_lines}),
        )),
        ..ExecutionResult::default()
    };
    run.session(t, &mut r);
    r
}

/// `message`, then Claude's last few lines when there are any.
pub fn with_last_lines(message: &str, t: &Transcript) -> String {
    let tail: Vec<&str> = t
        .last_lines
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|l| l.as_str())
        .collect();
    if tail.is_empty() {
        message.to_owned()
    } else {
        format!("{message}; last lines: {}", tail.join(" | "))
    }
}

/// How the claude container ended, in words: "claude container terminated (exit code 143, SIGTERM)".
pub fn describe_end(end: &ContainerEnd) -> String {
    match (end.reason.as_deref(), end.exit_code) {
        (Some("OOMKilled"), code) => format!("claude container OOMKilled, exit code {code}"),
        (_, 137) => "claude container killed, exit code 137 (SIGKILL)".to_owned(),
        (_, 143) => "claude container terminated, exit code 143 (SIGTERM)".to_owned(),
        (_, code) => format!("claude container exited with code {code}"),
    }
}

fn no_result_code(end: &ContainerEnd) -> ErrorCode {
    match (end.reason.as_deref(), end.exit_code) {
        (Some("OOMKilled"), _) => ErrorCode::OomKilled,
        (_, 0) => ErrorCode::ClaudeOutputUnparsed,
        (_, 137) => ErrorCode::ContainerKilled,
        (_, 143) => ErrorCode::ContainerTerminated,
        _ => ErrorCode::ClaudeExitNonzero,
    }
}

fn no_result_hint(code: ErrorCode, run: &RunFacts) -> Option<String> {
    match code {
        ErrorCode::OomKilled => Some(format!(
            "claude used more memory than its limit: raise adapterConfig resources.limits.memory (now {})",
            run.memory_limit
        )),
        ErrorCode::ContainerKilled
        | ErrorCode::ContainerTerminated
        | ErrorCode::ClaudeAuthRequired => code.hint().map(str::to_owned),
        _ => None,
    }
}

/// claude_local's classification of a failed run with a result line: `(errorCode, errorFamily)`.
pub fn classify_claude_failure(t: &Transcript, message: &str) -> (ErrorCode, Option<&'static str>) {
    let status = t.api_error_status();
    let hay = format!("{message}\n{}", t.error_messages().join("\n")).to_lowercase();
    if requires_login(t) || matches!(status, Some(401)) || contains_any(&hay, AUTH_TOKEN_FAILURE) {
        return (ErrorCode::ClaudeAuthRequired, None);
    }
    if contains_any(&hay, MODEL_NOT_FOUND) || (status == Some(404) && hay.contains("model")) {
        return (ErrorCode::ModelNotFound, None);
    }
    if t.is_max_turns() {
        return (ErrorCode::MaxTurnsExhausted, None);
    }
    if t.is_unknown_session_error() {
        return (ErrorCode::ClaudeFailed, None);
    }
    if contains_any(&hay, PROVIDER_QUOTA)
        || crate::run::outcome::retry_hint::is_usage_limit_notice(&hay)
    {
        return (ErrorCode::ProviderQuota, Some("provider_quota"));
    }
    if matches!(status, Some(429 | 503 | 529))
        || contains_any(&hay, TRANSIENT_UPSTREAM)
        || has_word(&hay, &["429", "503", "529"])
    {
        return (
            ErrorCode::ClaudeTransientUpstream,
            Some("transient_upstream"),
        );
    }
    if t.is_refusal() {
        return (ErrorCode::ClaudeRefusal, Some("model_refusal"));
    }
    (ErrorCode::ClaudeFailed, None)
}

/// claude_local's login-prompt markers, over everything Claude printed that was not stream-json plus its
/// result and error texts.
fn requires_login(t: &Transcript) -> bool {
    let mut lines: Vec<String> = t.last_plain_lines.clone();
    lines.extend(t.error_messages());
    lines.iter().any(|l| {
        let l = l.to_lowercase();
        contains_any(&l, LOGIN_PROMPT)
            || (l.contains("invalid api key")
                && (l.contains("/login") || l.contains("claude login")))
    })
}

const LOGIN_PROMPT: &[&str] = &[
    "not logged in",
    "please log in",
    "please run claude login",
    "please run `claude login`",
    "please run /login",
    "login required",
    "requires login",
    "unauthorized",
    "authentication required",
];
const AUTH_TOKEN_FAILURE: &[&str] = &[
    "authentication_failed",
    "authentication_error",
    "authentication failed",
    "authentication error",
    "failed to authenticate",
    "invalid bearer token",
];
const MODEL_NOT_FOUND: &[&str] = &[
    "model not found",
    "model_not_found",
    "model does not exist",
    "unknown model",
    "model unknown",
    "model invalid",
    "issue with the selected model",
];
const PROVIDER_QUOTA: &[&str] = &[
    "you've hit your limit",
    "you\u{2019}ve hit your limit",
    "session limit reached",
    "session limit exceeded",
    "out of extra usage",
    "extra usage",
    "usage limit reached",
    "usage cap reached",
    "5-hour limit reached",
    "5 hour limit reached",
    "weekly limit reached",
    "servicequotaexceededexception",
];
const TRANSIENT_UPSTREAM: &[&str] = &[
    "rate limit",
    "rate-limit",
    "ratelimit",
    "rate_limit",
    "too many requests",
    "overloaded",
    "service unavailable",
    "high demand",
    "try again later",
    "temporarily unavailable",
    "throttled",
    "throttling",
];

fn contains_any(hay: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| hay.contains(n))
}

/// Whether one of `words` occurs in `hay` as a whole word (`\b429\b`).
fn has_word(hay: &str, words: &[&str]) -> bool {
    hay.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| words.contains(&w))
}

/// A sentence about the container's end when it is worth telling: a kill, an OOM, a non-zero exit.
fn container_failure(end: &ContainerEnd, t: &Transcript, run: &RunFacts) -> Option<String> {
    let what = match (end.reason.as_deref(), end.exit_code) {
        (Some("OOMKilled"), _) => {
            format!("claude container OOMKilled (limit {})", run.memory_limit)
        }
        (_, 0) => return None,
        (_, 137) => "claude container killed (exit code 137, SIGKILL)".to_owned(),
        (_, 143) => "claude container terminated (exit code 143, SIGTERM)".to_owned(),
        (_, code) => format!("Claude exited with code {code}"),
    };
    let tail: Vec<&str> = t
        .last_plain_lines
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(String::as_str)
        .collect();
    Some(if tail.is_empty() {
        what
    } else {
        format!("{what}: {}", tail.join(" | "))
    })
}

#[cfg(test)]
mod tests;
