//! The run's result for Paperclip, from how the claude container ended and what Claude printed. Pure.
//!
//! Success or failure is judged from the container's terminated state together with Claude's `result` line, as
//! claude_local judges its child process: never from a log stream ending.

pub mod retry_hint;

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
}

impl RunFacts {
    /// The sessionParams Paperclip keeps for the next run.
    fn session_params(&self, id: &str) -> Value {
        let mut p = json!({"sessionId": id, "cwd": self.cwd});
        if let Some(key) = &self.prompt_bundle_key {
            p["promptBundleKey"] = json!(key);
        }
        if let Some(identity) = &self.mcp_server_identity {
            p["mcpServerIdentity"] = json!(identity);
        }
        p
    }
}

/// The AdapterExecutionResult for a container that terminated.
pub fn finished(end: &ContainerEnd, t: &Transcript, run: &RunFacts) -> Value {
    let billing_type = if run.bedrock {
        "metered_api"
    } else if run.has_api_key {
        "api"
    } else {
        "subscription"
    };
    let mut r = Map::new();
    r.insert("exitCode".into(), json!(end.exit_code));
    r.insert("signal".into(), Value::Null);
    r.insert("timedOut".into(), json!(false));
    r.insert("provider".into(), json!("anthropic"));
    r.insert(
        "biller".into(),
        json!(if run.bedrock {
            "aws_bedrock"
        } else {
            "anthropic"
        }),
    );
    r.insert("billingType".into(), json!(billing_type));
    let model = t.model.clone().or_else(|| run.configured_model.clone());
    r.insert("model".into(), json!(model));

    let Some(result) = &t.result else {
        let mut message = container_failure(end, t, run).unwrap_or_else(|| {
            "Claude exited without a result line (Failed to parse claude JSON output)".to_owned()
        });
        let code = if requires_login(t) {
            "claude_auth_required"
        } else {
            no_result_code(end)
        };
        if let Some(hint) = no_result_hint(code, run) {
            r.insert("errorMeta".into(), json!({"hint": hint}));
            message = format!("{message}. Hint: {hint}");
        }
        r.insert("errorMessage".into(), json!(message));
        r.insert("errorCode".into(), json!(code));
        r.insert("clearSession".into(), json!(run.clear_session));
        r.insert("summary".into(), json!(t.assistant_summary()));
        r.insert(
            "resultJson".into(),
            json!({"stdoutTail": t.last_plain_lines, "container": {"exitCode": end.exit_code, "reason": end.reason, "message": end.message}}),
        );
        return Value::Object(r);
    };

    let succeeded = t.subtype() == Some("success") && !t.is_error();
    let failed = !succeeded && (end.exit_code != 0 || t.is_error());
    if let Some(u) = t.usage() {
        r.insert(
            "usage".into(),
            json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "cachedInputTokens": u.cached_input_tokens}),
        );
        r.insert("usageBasis".into(), json!("per_run"));
    }
    if let Some(cost) = t.cost_usd() {
        r.insert("costUsd".into(), json!(cost));
    }
    let session = t
        .session_id
        .clone()
        .or_else(|| run.fallback_session_id.clone());
    if let Some(id) = &session {
        r.insert("sessionId".into(), json!(id));
        r.insert("sessionDisplayId".into(), json!(id));
        r.insert("sessionParams".into(), run.session_params(id));
    }
    r.insert("summary".into(), json!(t.summary()));
    r.insert(
        "clearSession".into(),
        json!(run.clear_session || t.is_max_turns()),
    );
    r.insert("resultJson".into(), Value::Object(result.clone()));
    if failed {
        let mut message = t.describe_failure();
        if let Some(container) =
            container_failure(end, t, run).filter(|_| end.exit_code != 0 && end.exit_code != 1)
        {
            message = format!("{message} ({container})");
        }
        r.insert("errorMessage".into(), json!(message));
        let (code, family) = classify_claude_failure(t, &message);
        r.insert("errorCode".into(), json!(code));
        if let Some(family) = family {
            r.insert("errorFamily".into(), json!(family));
            if let Some(Value::Object(rj)) = r.get_mut("resultJson") {
                rj.insert("errorFamily".into(), json!(family));
            }
        }
        if matches!(code, "provider_quota" | "claude_transient_upstream") {
            insert_retry_not_before(
                &mut r,
                code,
                &format!("{message}\n{}", t.error_messages().join("\n")),
            );
        }
    } else if t.is_refusal() {
        r.insert("errorCode".into(), json!("claude_refusal"));
        r.insert("errorFamily".into(), json!("model_refusal"));
        r.insert("errorMessage".into(), json!(t.describe_failure()));
    } else if end.exit_code != 0 {
        // Claude reported success but the container did not exit 0 (for example stopped after its result line).
        r.insert("exitCode".into(), json!(0));
    }
    Value::Object(r)
}

/// claude_local's `retryNotBefore` (top level and in resultJson) when Claude named the time its limit resets.
fn insert_retry_not_before(r: &mut serde_json::Map<String, Value>, code: &str, text: &str) {
    let Some(at) = crate::run::outcome::retry_hint::retry_not_before(text, &jiff::Zoned::now())
    else {
        return;
    };
    let at = json!(at.to_string());
    r.insert("retryNotBefore".into(), at.clone());
    if let Some(Value::Object(rj)) = r.get_mut("resultJson") {
        rj.insert("retryNotBefore".into(), at.clone());
        rj.insert("transientRetryNotBefore".into(), at.clone());
        if code == "provider_quota" {
            rj.insert("providerQuotaRetryNotBefore".into(), at);
        }
    }
}

/// The result of a run the adapter stopped at `timeoutSec` (claude_local's words), with Claude's last lines.
pub fn timed_out(timeout_sec: u64, t: &Transcript, run: &RunFacts) -> Value {
    let mut r = Map::new();
    r.insert("exitCode".into(), Value::Null);
    r.insert("signal".into(), Value::Null);
    r.insert("timedOut".into(), json!(true));
    r.insert("errorCode".into(), json!("timeout"));
    r.insert(
        "errorMessage".into(),
        json!(format!("Timed out after {timeout_sec}s")),
    );
    r.insert("clearSession".into(), json!(run.clear_session));
    if let Some(id) = t
        .session_id
        .clone()
        .or_else(|| run.fallback_session_id.clone())
    {
        r.insert("sessionId".into(), json!(id));
        r.insert("sessionDisplayId".into(), json!(id));
        r.insert("sessionParams".into(), run.session_params(&id));
    }
    r.insert("summary".into(), json!(t.assistant_summary()));
    r.insert(
        "resultJson".into(),
        json!({"lastLines": t.last_lines, "stdoutTail": t.last_plain_lines}),
    );
    Value::Object(r)
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

fn no_result_code(end: &ContainerEnd) -> &'static str {
    match (end.reason.as_deref(), end.exit_code) {
        (Some("OOMKilled"), _) => "k8s_oom_killed",
        (_, 0) => "claude_output_unparsed",
        (_, 137) => "k8s_container_killed",
        (_, 143) => "k8s_container_terminated",
        _ => "claude_exit_nonzero",
    }
}

fn no_result_hint(code: &str, run: &RunFacts) -> Option<String> {
    Some(match code {
        "k8s_oom_killed" => format!(
            "claude used more memory than its limit: raise adapterConfig resources.limits.memory (now {})",
            run.memory_limit
        ),
        "k8s_container_killed" => "the container was killed (SIGKILL) from outside: by the kubelet after a \
                                   stop, the node's OOM killer, or an operator"
            .to_owned(),
        "k8s_container_terminated" => "the container was stopped (SIGTERM) from outside, e.g. its pod was \
                                       deleted or the node drained"
            .to_owned(),
        "claude_auth_required" => "Claude is not logged in in the pod: set ANTHROPIC_API_KEY (or \
                                   CLAUDE_CODE_OAUTH_TOKEN) in the Paperclip Deployment's env or in \
                                   adapterConfig.env"
            .to_owned(),
        _ => return None,
    })
}

/// claude_local's classification of a failed run with a result line: `(errorCode, errorFamily)`.
pub fn classify_claude_failure(
    t: &Transcript,
    message: &str,
) -> (&'static str, Option<&'static str>) {
    let status = t.api_error_status();
    let hay = format!("{message}\n{}", t.error_messages().join("\n")).to_lowercase();
    if requires_login(t) || matches!(status, Some(401)) || contains_any(&hay, AUTH_TOKEN_FAILURE) {
        return ("claude_auth_required", None);
    }
    if contains_any(&hay, MODEL_NOT_FOUND) || (status == Some(404) && hay.contains("model")) {
        return ("model_not_found", None);
    }
    if t.is_max_turns() {
        return ("max_turns_exhausted", None);
    }
    if t.is_unknown_session_error() {
        return ("claude_failed", None);
    }
    if contains_any(&hay, PROVIDER_QUOTA)
        || crate::run::outcome::retry_hint::is_usage_limit_notice(&hay)
    {
        return ("provider_quota", Some("provider_quota"));
    }
    if matches!(status, Some(429 | 503 | 529))
        || contains_any(&hay, TRANSIENT_UPSTREAM)
        || has_word(&hay, &["429", "503", "529"])
    {
        return ("claude_transient_upstream", Some("transient_upstream"));
    }
    if t.is_refusal() {
        return ("claude_refusal", Some("model_refusal"));
    }
    ("claude_failed", None)
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
mod tests {
    use super::*;

    fn transcript(lines: &[&str]) -> Transcript {
        let mut t = Transcript::default();
        lines.iter().for_each(|l| t.push_line(l));
        t
    }

    fn facts() -> RunFacts {
        RunFacts {
            cwd: "/paperclip/w".into(),
            has_api_key: true,
            memory_limit: "8Gi".into(),
            ..Default::default()
        }
    }

    const INIT: &str =
        r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-sonnet-4-6"}"#;
    const OK: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s-1","total_cost_usd":0.5,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":2}}"#;

    #[test]
    fn success_maps_every_field_paperclip_records() {
        let r = finished(&ContainerEnd::default(), &transcript(&[INIT, OK]), &facts());
        assert_eq!(r["exitCode"], 0);
        assert_eq!(r["sessionId"], "s-1");
        assert_eq!(
            r["sessionParams"],
            json!({"sessionId": "s-1", "cwd": "/paperclip/w"})
        );
        assert_eq!(
            r["usage"],
            json!({"inputTokens": 10, "outputTokens": 5, "cachedInputTokens": 2})
        );
        assert_eq!(r["usageBasis"], "per_run");
        assert_eq!(r["costUsd"], 0.5);
        assert_eq!(r["summary"], "done");
        assert_eq!(r["model"], "claude-sonnet-4-6");
        assert_eq!(r["provider"], "anthropic");
        assert_eq!(r["biller"], "anthropic");
        assert_eq!(r["billingType"], "api");
        assert!(r.get("errorMessage").is_none());
        assert_eq!(r["clearSession"], false);
    }

    #[test]
    fn session_params_carry_the_bundle_key_and_mcp_identity_for_resume_gating() {
        let run = RunFacts {
            prompt_bundle_key: Some("abc".into()),
            mcp_server_identity: Some("[]".into()),
            ..facts()
        };
        let r = finished(&ContainerEnd::default(), &transcript(&[INIT, OK]), &run);
        assert_eq!(
            r["sessionParams"],
            json!({"sessionId": "s-1", "cwd": "/paperclip/w", "promptBundleKey": "abc", "mcpServerIdentity": "[]"})
        );
    }

    #[test]
    fn bedrock_bills_as_metered_api() {
        let run = RunFacts {
            bedrock: true,
            ..facts()
        };
        let r = finished(&ContainerEnd::default(), &transcript(&[INIT, OK]), &run);
        assert_eq!(r["biller"], "aws_bedrock");
        assert_eq!(r["billingType"], "metered_api");
    }

    #[test]
    fn an_error_result_fails_with_claudes_words() {
        let err = r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 429 rate limited","api_error_status":429}"#;
        let r = finished(
            &ContainerEnd {
                exit_code: 1,
                ..Default::default()
            },
            &transcript(&[INIT, err]),
            &facts(),
        );
        assert_eq!(r["exitCode"], 1);
        assert!(
            r["errorMessage"]
                .as_str()
                .unwrap()
                .contains("429 rate limited")
        );
    }

    #[test]
    fn oom_without_result_names_the_limit_and_the_last_lines() {
        let end = ContainerEnd {
            exit_code: 137,
            reason: Some("OOMKilled".into()),
            ..Default::default()
        };
        let r = finished(&end, &transcript(&[INIT, "allocating..."]), &facts());
        assert_eq!(r["errorCode"], "k8s_oom_killed");
        let msg = r["errorMessage"].as_str().unwrap();
        assert!(
            msg.contains("OOMKilled (limit 8Gi)") && msg.contains("allocating..."),
            "{msg}"
        );
        assert!(!msg.contains("None"));
    }

    #[test]
    fn max_turns_clears_the_session() {
        let t = transcript(&[
            INIT,
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"session_id":"s-1"}"#,
        ]);
        let r = finished(
            &ContainerEnd {
                exit_code: 1,
                ..Default::default()
            },
            &t,
            &facts(),
        );
        assert_eq!(r["clearSession"], true);
        assert_eq!(r["errorCode"], "max_turns_exhausted");
    }

    #[test]
    fn exit_zero_without_result_is_a_parse_failure() {
        let r = finished(&ContainerEnd::default(), &transcript(&["hello"]), &facts());
        assert_eq!(r["errorCode"], "claude_output_unparsed");
        assert!(
            r["errorMessage"]
                .as_str()
                .unwrap()
                .contains("Failed to parse")
        );
    }

    fn fixture(name: &str) -> Transcript {
        let path = format!(
            "{}/../../test/fixtures/claude-2.1.328/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        transcript(
            &std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
        )
    }

    fn exit(code: i32) -> ContainerEnd {
        ContainerEnd {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn claudes_own_failures_use_claude_locals_codes() {
        let r = finished(
            &exit(1),
            &fixture("error-401-max-retries-1.jsonl"),
            &facts(),
        );
        assert_eq!(r["errorCode"], "claude_auth_required", "{r:#}");
        assert!(r.get("errorFamily").is_none());
        let r = finished(
            &exit(1),
            &fixture("error-429-max-retries-1.jsonl"),
            &facts(),
        );
        assert_eq!(r["errorCode"], "claude_transient_upstream");
        assert_eq!(r["errorFamily"], "transient_upstream");
        assert_eq!(r["resultJson"]["errorFamily"], "transient_upstream");
        assert!(r.get("retryNotBefore").is_none(), "no reset time was named");
        let quota = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"You've hit your session limit · resets 4pm (America/Chicago)"}"#;
        let r = finished(&exit(1), &transcript(&[INIT, quota]), &facts());
        assert_eq!(r["errorCode"], "provider_quota");
        let at: jiff::Timestamp = r["retryNotBefore"].as_str().unwrap().parse().unwrap();
        assert!(at > jiff::Timestamp::now(), "the next 4 pm in Chicago");
        assert_eq!(
            r["resultJson"]["providerQuotaRetryNotBefore"],
            r["retryNotBefore"]
        );
        let overloaded = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"API Error: 529 Overloaded","api_error_status":529}"#;
        let r = finished(&exit(1), &transcript(&[INIT, overloaded]), &facts());
        assert_eq!(r["errorCode"], "claude_transient_upstream");
        let model = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"API Error: 404 model: claude-nope not_found_error model not found"}"#;
        let r = finished(&exit(1), &transcript(&[INIT, model]), &facts());
        assert_eq!(r["errorCode"], "model_not_found");
        // Claude Code 2.1.328's own words for a 404 and a 403 from the model API.
        let model = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"api_error_status":404,"result":"There's an issue with the selected model (claude-opus-5-5). It may not exist or you may not have access to it. Run --model to pick a different model."}"#;
        let r = finished(&exit(1), &transcript(&[INIT, model]), &facts());
        assert_eq!(r["errorCode"], "model_not_found");
        let forbidden = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"api_error_status":403,"result":"Failed to authenticate. API Error: 403 fake permission_error"}"#;
        let r = finished(&exit(1), &transcript(&[INIT, forbidden]), &facts());
        assert_eq!(r["errorCode"], "claude_auth_required");
        let overloaded = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"api_error_status":529,"result":"API Error: 529 fake overloaded_error. This is a server-side issue, usually temporary"}"#;
        let r = finished(&exit(1), &transcript(&[INIT, overloaded]), &facts());
        assert_eq!(r["errorCode"], "claude_transient_upstream");
        let other = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":1,"result":"boom"}"#;
        let r = finished(&exit(1), &transcript(&[INIT, other]), &facts());
        assert_eq!(r["errorCode"], "claude_failed");
        let refusal = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"stop_reason":"refusal","result":"I can't"}"#;
        let r = finished(&exit(0), &transcript(&[INIT, refusal]), &facts());
        assert_eq!(r["errorCode"], "claude_refusal");
        assert_eq!(r["errorFamily"], "model_refusal");
    }

    #[test]
    fn not_logged_in_without_a_result_is_auth_required() {
        let r = finished(
            &exit(1),
            &transcript(&["Invalid API key · Please run /login"]),
            &facts(),
        );
        assert_eq!(r["errorCode"], "claude_auth_required");
        assert!(
            r["errorMeta"]["hint"]
                .as_str()
                .unwrap()
                .contains("ANTHROPIC_API_KEY")
        );
    }

    #[test]
    fn kills_without_a_result_have_their_own_codes_and_hints() {
        for (code, expected, words) in [
            (137, "k8s_container_killed", "exit code 137, SIGKILL"),
            (143, "k8s_container_terminated", "exit code 143, SIGTERM"),
            (2, "claude_exit_nonzero", "Claude exited with code 2"),
        ] {
            let r = finished(&exit(code), &transcript(&["last words"]), &facts());
            assert_eq!(r["errorCode"], expected);
            let msg = r["errorMessage"].as_str().unwrap();
            assert!(msg.contains(words) && msg.contains("last words"), "{msg}");
            assert!(!msg.contains("None"), "{msg}");
        }
        let end = ContainerEnd {
            exit_code: 137,
            reason: Some("OOMKilled".into()),
            ..Default::default()
        };
        let r = finished(&end, &transcript(&[]), &facts());
        assert!(
            r["errorMeta"]["hint"]
                .as_str()
                .unwrap()
                .contains("limits.memory (now 8Gi)")
        );
    }

    #[test]
    fn a_timeout_keeps_the_session_and_the_last_lines() {
        let t = transcript(&[INIT, "partial output"]);
        let r = timed_out(5, &t, &facts());
        assert_eq!(r["timedOut"], true);
        assert_eq!(r["errorCode"], "timeout");
        assert_eq!(r["errorMessage"], "Timed out after 5s");
        assert_eq!(r["sessionId"], "s-1");
        assert_eq!(r["resultJson"]["lastLines"][1], "partial output");
        assert_eq!(
            with_last_lines("stopped", &t),
            format!("stopped; last lines: {INIT} | partial output")
        );
        assert_eq!(
            with_last_lines("stopped", &Transcript::default()),
            "stopped"
        );
    }

    #[test]
    fn a_success_stopped_after_its_result_is_a_success() {
        let end = ContainerEnd {
            exit_code: 143,
            ..Default::default()
        };
        let r = finished(&end, &transcript(&[INIT, OK]), &facts());
        assert_eq!(r["exitCode"], 0);
        assert!(r.get("errorCode").is_none());
    }
}
