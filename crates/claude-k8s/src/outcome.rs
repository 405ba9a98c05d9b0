//! The run's result for Paperclip, from how the claude container ended and what Claude printed. Pure.
//!
//! Success or failure is judged from the container's terminated state together with Claude's `result` line, as
//! claude_local judges its child process: never from a log stream ending.

use serde_json::{Map, Value, json};

use crate::stream_json::Transcript;

/// How the claude container ended, read from its `terminated` state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerEnd {
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, …
    pub reason: Option<String>,
    pub message: Option<String>,
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
        let message = container_failure(end, t, run).unwrap_or_else(|| {
            "Claude exited without a result line (Failed to parse claude JSON output)".to_owned()
        });
        r.insert("errorMessage".into(), json!(message));
        r.insert("errorCode".into(), json!(no_result_code(end)));
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
        r.insert(
            "sessionParams".into(),
            json!({"sessionId": id, "cwd": run.cwd}),
        );
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
        let code = if t.is_max_turns() {
            "max_turns_exhausted"
        } else {
            "claude_failed"
        };
        r.insert("errorCode".into(), json!(code));
    } else if end.exit_code != 0 {
        // Claude reported success but the container did not exit 0 (for example stopped after its result line).
        r.insert("exitCode".into(), json!(0));
    }
    Value::Object(r)
}

fn no_result_code(end: &ContainerEnd) -> &'static str {
    match end.reason.as_deref() {
        Some("OOMKilled") => "k8s_oom_killed",
        _ if end.exit_code == 0 => "claude_output_unparsed",
        _ => "claude_exit_nonzero",
    }
}

/// A sentence about the container's end when it is worth telling: a kill, an OOM, a non-zero exit.
fn container_failure(end: &ContainerEnd, t: &Transcript, run: &RunFacts) -> Option<String> {
    let what = match (end.reason.as_deref(), end.exit_code) {
        (Some("OOMKilled"), _) => {
            format!("claude container OOMKilled (limit {})", run.memory_limit)
        }
        (_, 0) => return None,
        (_, 137) => "claude container killed (exit 137, SIGKILL)".to_owned(),
        (_, 143) => "claude container terminated (exit 143, SIGTERM)".to_owned(),
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
            message: None,
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
}
