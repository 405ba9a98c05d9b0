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
        /// Whether serve's own environment selects Bedrock (Claude Code's rule: `CLAUDE_CODE_USE_BEDROCK` truthy
        /// or `ANTHROPIC_BEDROCK_BASE_URL` set), so the shim need not decide it again.
        bedrock: bool,
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

/// What can be read of a request line that is not a valid [`Request`], so that its error names it.
#[derive(Debug, Default, PartialEq)]
pub struct Salvaged {
    /// Its top-level `id`, when that is a well-formed string.
    pub id: Option<String>,
    /// Its top-level `type`, when that is a well-formed string.
    pub kind: Option<String>,
}

impl Salvaged {
    /// Whether the line's `type` is one this version knows (or it has none it could be told by): a malformed
    /// request, `bad_request`; otherwise an `unknown_request`.
    pub fn known(&self, is_json: bool) -> bool {
        match &self.kind {
            Some(kind) => REQUEST_TYPES.contains(&kind.as_str()),
            None => !is_json,
        }
    }

    /// The `error` that answers the line, with `code` and `message`: named by its id, but a cancel's with none (a
    /// cancel has no answer of its own: an error with its id would fail the execute it names).
    pub fn refusal(self, code: &str, message: String) -> Message {
        if self.kind.as_deref() == Some("cancel") {
            let of = self.id.map(|id| format!(" of `{id}`")).unwrap_or_default();
            return Message::Error {
                id: None,
                code: code.into(),
                message: format!("a malformed cancel{of} was ignored: {message}"),
            };
        }
        Message::Error {
            id: self.id,
            code: code.into(),
            message,
        }
    }
}

/// Reads the top-level `id` and `type` of a request line lexically, from its bytes: whatever else is wrong with it
/// (invalid UTF-8, a lone surrogate escape, malformed JSON after them, a line cut at the head of an over-long one),
/// the id is found when it comes before the damage, and the shim writes `type` and `id` first.
pub fn salvage(line: &[u8]) -> Salvaged {
    let mut found = Salvaged::default();
    let mut scan = Scan { bytes: line, at: 0 };
    let _ = scan.object(&mut found);
    found
}

/// A lenient scanner over the top level of a JSON object; `None` where it cannot go on.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string with its quotes, as it stands (escapes are skipped, not checked).
    fn string(&mut self) -> Option<&[u8]> {
        let start = self.at;
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self.bytes.get(start..self.at);
                }
                _ => self.at += 1,
            }
        }
    }

    fn value(&mut self) -> Option<()> {
        self.space();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek()?,
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    fn object(&mut self, found: &mut Salvaged) -> Option<()> {
        self.expect(b'{')?;
        loop {
            self.space();
            if self.peek()? == b'}' {
                return Some(());
            }
            let raw = self.string()?;
            // A key with escapes is decoded (`"\u0069d"` is `id` too); one that does not decode is no key of ours.
            let key = match raw.contains(&b'\\') {
                false => std::str::from_utf8(&raw[1..raw.len() - 1])
                    .ok()
                    .map(str::to_owned),
                true => serde_json::from_slice::<String>(raw).ok(),
            };
            self.expect(b':')?;
            self.space();
            let slot = match key.as_deref() {
                Some("id") => Some(&mut found.id),
                Some("type") => Some(&mut found.kind),
                _ => None,
            };
            match slot {
                // The last of duplicate keys counts, as when serde_json reads the line into a map.
                Some(slot) if self.peek()? == b'"' => {
                    *slot = serde_json::from_slice::<String>(self.string()?).ok();
                }
                Some(slot) => {
                    *slot = None;
                    self.value()?;
                }
                None => self.value()?,
            }
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                _ => return Some(()),
            }
        }
    }
}

/// The first `\uXXXX` escape of a UTF-16 surrogate without its other half in `line`, as written: serde_json
/// refuses such a line (JSON.stringify writes one for a string cut inside an emoji).
pub fn lone_surrogate(line: &[u8]) -> Option<String> {
    let unit = |at: usize| -> Option<u16> {
        let hex = line.get(at..at + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    let mut at = 0;
    while at < line.len() {
        if line[at] != b'\\' {
            at += 1;
            continue;
        }
        match unit(at) {
            Some(high @ 0xD800..=0xDBFF) => match unit(at + 6) {
                Some(0xDC00..=0xDFFF) => at += 12,
                _ => return Some(format!("\\u{high:04x}")),
            },
            Some(low @ 0xDC00..=0xDFFF) => return Some(format!("\\u{low:04x}")),
            Some(_) => at += 6,
            // Any other escape is two bytes (`\\` among them, so `\\ud83d` is text, not an escape).
            None => at += 2,
        }
    }
    None
}

#[cfg(test)]
mod tests;
