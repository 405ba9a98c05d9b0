//! The AdapterExecutionResult, typed: every run's result is one of these, and it is turned into JSON once, at the
//! protocol edge ([`crate::serve::sink::Sink::result`]). Field names are the wire's (claude_local's); a field that
//! is `None` is not written, except `exitCode` and `signal`, which every result carries (as `null` when unknown).

use serde::Serialize;
use serde_json::{Map, Value};

use super::ErrorCode;
use crate::run::follow::stream_json::Usage;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionResult {
    pub exit_code: Option<i32>,
    /// Always `null`: a pod's container reports an exit code, not the signal (which the code encodes).
    pub signal: Option<String>,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_meta: Option<ErrorMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_family: Option<&'static str>,
    /// When a usage or rate limit resets, as Claude named it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biller: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_type: Option<&'static str>,
    /// The model, written (`null` when unknown) in the result of every run that reached Claude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_basis: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_display_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_params: Option<SessionParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_session: Option<bool>,
    /// Claude's `result` event as it came, or what the adapter knows instead (a tail, a cancellation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_json: Option<Map<String, Value>>,
}

/// `errorMeta`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMeta {
    pub hint: String,
    /// A run the operator policy refused: each refused field, the setting that would allow it, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_denied: Vec<PolicyDenial>,
}

/// One field of a config the operator policy refused (`errorMeta.policyDenied[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyDenial {
    pub field: String,
    pub setting: Option<String>,
    pub why: Option<String>,
}

/// The `sessionParams` Paperclip keeps for the next run (claude_local's fields), read back by
/// [`crate::run::plan::invocation::resumable_session`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionParams {
    pub session_id: String,
    pub cwd: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_bundle_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_server_identity: Option<String>,
    /// The Paperclip workspace the session worked in (`context.paperclipWorkspace`), as claude_local keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo_ref: Option<String>,
}

impl ExecutionResult {
    /// A failed result that never reached Claude.
    pub fn failed(code: ErrorCode, message: String) -> Self {
        Self {
            error_code: Some(code),
            error_message: Some(message),
            ..Self::default()
        }
    }

    /// What [`crate::run::prepare::session_record::save`] reads: the result's `sessionParams`, as JSON.
    pub fn session_record(&self) -> Value {
        serde_json::json!({ "sessionParams": self.session_params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_are_not_written_but_exit_code_and_signal_always_are() {
        let r = ExecutionResult::failed(ErrorCode::InvalidConfig, "bad".into());
        assert_eq!(
            serde_json::to_string(&serde_json::to_value(&r).unwrap()).unwrap(),
            r#"{"errorCode":"invalid_config","errorMessage":"bad","exitCode":null,"signal":null,"timedOut":false}"#
        );
        let r = ExecutionResult {
            model: Some(None),
            ..ExecutionResult::default()
        };
        assert_eq!(serde_json::to_value(&r).unwrap()["model"], Value::Null);
        assert!(
            serde_json::to_value(&r)
                .unwrap()
                .as_object()
                .unwrap()
                .contains_key("model"),
            "a model that is not known is written as null"
        );
    }
}
