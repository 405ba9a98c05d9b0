//! Wire types of the stdio protocol between the JS shim and `claude-k8s serve`.
//!
//! Pure: no I/O. `docs/protocol.md` is the normative description; this module mirrors it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped only for incompatible changes; additive changes keep the number.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest request line the child accepts (a 1 MiB prompt is ordinary).
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// One line from the host.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Execute {
        id: String,
        params: Box<ExecuteParams>,
    },
    Cancel {
        id: String,
        #[serde(default)]
        reason: Option<String>,
    },
    TestEnvironment {
        id: String,
        params: TestEnvironmentParams,
    },
    Shutdown,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteParams {
    pub run_id: String,
    pub agent: Agent,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
    #[serde(default)]
    pub context: serde_json::Map<String, Value>,
    #[serde(default)]
    pub auth_token: Option<String>,
    #[serde(default)]
    pub prompt: Prompt,
    /// The run's `PAPERCLIP_*` variables as claude_local builds them (without `PAPERCLIP_API_KEY`).
    #[serde(default)]
    pub paperclip_env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub runtime_mcp_servers: Vec<Value>,
    #[serde(default)]
    pub server_env: std::collections::BTreeMap<String, String>,
    /// What the shim resolved for the prompt bundle with Paperclip's own helpers (skills to mount, the library
    /// manifest); absent from older shims, which then get no skills.
    #[serde(default)]
    pub prompt_bundle: PromptBundleParams,
}

/// ExecuteParams.promptBundle (docs/protocol.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptBundleParams {
    /// The desired runtime skills whose files are available, as claude_local selects them.
    #[serde(default)]
    pub skills: Vec<RuntimeSkill>,
    /// The company skill-library manifest (markdown) appended to the instructions, if any.
    #[serde(default)]
    pub skill_library_manifest: Option<String>,
    /// Paperclip's instance root as the server resolves it (e.g. `/paperclip/instances/default`).
    #[serde(default)]
    pub instance_root: Option<String>,
    /// Lines for the run log (e.g. a desired skill whose files are unavailable).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One runtime skill (`config.paperclipRuntimeSkills` entry) to materialize as `.claude/skills/<runtimeName>`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSkill {
    pub key: String,
    pub runtime_name: String,
    pub source: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub id: String,
    #[serde(default)]
    pub company_id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub session_params: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub session_display_id: Option<String>,
    #[serde(default)]
    pub task_key: Option<String>,
}

/// The prompt as the shim rendered it, once for a fresh session and once for a resumed one.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prompt {
    #[serde(default)]
    pub fresh: String,
    #[serde(default)]
    pub resume: Option<String>,
    #[serde(default)]
    pub fresh_metrics: serde_json::Map<String, Value>,
    #[serde(default)]
    pub resume_metrics: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestEnvironmentParams {
    #[serde(default)]
    pub company_id: String,
    #[serde(default)]
    pub adapter_type: String,
    #[serde(default)]
    pub config: serde_json::Map<String, Value>,
}

/// One line to the host.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Hello {
        protocol: u32,
        version: &'static str,
    },
    Log {
        id: String,
        stream: LogStream,
        chunk: String,
    },
    Meta {
        id: String,
        meta: Value,
    },
    Event {
        id: String,
        event: Value,
    },
    Result {
        id: String,
        result: Value,
    },
    Error {
        id: Option<String>,
        code: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// The request types this version knows.
pub const REQUEST_TYPES: [&str; 4] = ["execute", "cancel", "test_environment", "shutdown"];

/// For a line that did not parse as a [`Request`]: its id, if readable (so the error can name it), and whether
/// its `type` is one this version knows (a malformed request) or not (an unknown request).
pub fn salvage(line: &str) -> (Option<String>, bool) {
    let value = serde_json::from_str::<Value>(line).ok();
    let field = |k: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let known = field("type").is_some_and(|t| REQUEST_TYPES.contains(&t.as_str()));
    (field("id"), known || value.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_execute_with_unknown_fields() {
        let line = r#"{"type":"execute","id":"r1","future":1,"params":{"runId":"run","agent":{"id":"a","companyId":"c","name":"n"},"prompt":{"fresh":"hi"},"extra":true}}"#;
        match serde_json::from_str::<Request>(line).unwrap() {
            Request::Execute { id, params } => {
                assert_eq!(id, "r1");
                assert_eq!(params.run_id, "run");
                assert_eq!(params.agent.company_id, "c");
                assert_eq!(params.prompt.fresh, "hi");
                assert!(params.prompt.resume.is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_cancel_and_shutdown() {
        assert!(matches!(
            serde_json::from_str::<Request>(r#"{"type":"cancel","id":"r1"}"#).unwrap(),
            Request::Cancel { id, reason: None } if id == "r1"
        ));
        assert!(matches!(
            serde_json::from_str::<Request>(r#"{"type":"shutdown"}"#).unwrap(),
            Request::Shutdown
        ));
    }

    #[test]
    fn unknown_type_is_an_error_with_salvaged_id() {
        let line = r#"{"type":"frobnicate","id":"x9"}"#;
        assert!(serde_json::from_str::<Request>(line).is_err());
        assert_eq!(salvage(line), (Some("x9".into()), false));
        assert_eq!(
            salvage(r#"{"type":"execute","id":"e1"}"#),
            (Some("e1".into()), true)
        );
        assert_eq!(salvage("not json"), (None, true));
    }

    #[test]
    fn messages_serialize_as_documented() {
        let hello = serde_json::to_string(&Message::Hello {
            protocol: 1,
            version: "0.1.0",
        })
        .unwrap();
        assert_eq!(hello, r#"{"type":"hello","protocol":1,"version":"0.1.0"}"#);
        let log = serde_json::to_string(&Message::Log {
            id: "r".into(),
            stream: LogStream::Stdout,
            chunk: "x\n".into(),
        })
        .unwrap();
        assert_eq!(
            log,
            r#"{"type":"log","id":"r","stream":"stdout","chunk":"x\n"}"#
        );
        let err = serde_json::to_string(&Message::Error {
            id: None,
            code: "bad_request".into(),
            message: "m".into(),
        })
        .unwrap();
        assert_eq!(
            err,
            r#"{"type":"error","id":null,"code":"bad_request","message":"m"}"#
        );
    }
}
