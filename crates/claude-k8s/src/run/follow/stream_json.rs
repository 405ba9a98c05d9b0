//! Claude Code `stream-json` output, folded line by line into what the outcome needs. Pure.
//!
//! Follows claude_local's `parseClaudeStreamJson`: the session id and model from `system/init`, assistant texts
//! for a summary when no `result` arrives, and the final `result` line with `modelUsage` totals.

use serde_json::{Map, Value};

/// Token totals as Paperclip's `UsageSummary` has them (its field names on the wire).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
}

/// Assistant text kept for a summary is bounded: a summary, not a second transcript.
const MAX_SUMMARY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub session_id: Option<String>,
    pub model: Option<String>,
    assistant_texts: Vec<String>,
    assistant_bytes: usize,
    /// The last `result` line.
    pub result: Option<Map<String, Value>>,
    /// `system/api_retry` lines seen (the CLI retrying the model API).
    pub api_retries: u32,
    pub lines: u64,
    pub non_json_lines: u64,
    /// The last few lines that were not stream-json (usually Claude's stderr), for error messages.
    pub last_plain_lines: Vec<String>,
    /// The last few lines of any kind (truncated), for a run that had to be stopped.
    pub last_lines: Vec<String>,
    /// A `result` line that ends the run was the last event: Claude should exit now. A zero-turn `result`
    /// (stale background-task notifications on `--resume`, before the real prompt) does not count, and a new
    /// turn after it (assistant, user, `system/init`) clears it.
    pub awaiting_exit: bool,
    /// Zero-turn `result` lines seen.
    pub zero_turn_results: u32,
}

/// How many lines [`Transcript::last_lines`] keeps, and how much of each.
const LAST_LINES: usize = 10;
const LAST_LINE_CHARS: usize = 2000;

impl Transcript {
    pub fn push_line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        self.lines += 1;
        self.last_lines
            .push(line.chars().take(LAST_LINE_CHARS).collect());
        if self.last_lines.len() > LAST_LINES {
            self.last_lines.remove(0);
        }
        let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
            self.non_json_lines += 1;
            self.last_plain_lines
                .push(line.chars().take(LAST_LINE_CHARS).collect());
            if self.last_plain_lines.len() > 20 {
                self.last_plain_lines.remove(0);
            }
            return;
        };
        let str_field = |k: &str| {
            event
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        match (
            str_field("type").as_deref(),
            str_field("subtype").as_deref(),
        ) {
            (Some("system"), Some("init")) => {
                self.session_id = str_field("session_id").or(self.session_id.take());
                self.model = str_field("model").or(self.model.take());
            }
            (Some("system"), Some("api_retry")) => self.api_retries += 1,
            (Some("assistant"), _) => {
                self.session_id = str_field("session_id").or(self.session_id.take());
                let blocks = event
                    .get("message")
                    .and_then(|m| m.get("content"))
                    .and_then(Value::as_array);
                for block in blocks.into_iter().flatten() {
                    if block.get("type").and_then(Value::as_str) == Some("text")
                        && let Some(text) = block
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        && self.assistant_bytes < MAX_SUMMARY_BYTES
                    {
                        self.assistant_bytes += text.len();
                        self.assistant_texts.push(text.to_owned());
                    }
                }
            }
            (Some("result"), _) => {
                self.session_id = str_field("session_id").or(self.session_id.take());
                let zero_turn = is_zero_turn_result(&event);
                if zero_turn {
                    self.zero_turn_results += 1;
                }
                // A zero-turn result does not replace a real one, nor end the run.
                if !zero_turn || self.result.is_none() {
                    self.result = Some(event);
                }
                self.awaiting_exit = !zero_turn;
                return;
            }
            _ => {}
        }
        // A new turn (the model or a tool speaking) means the result was not the end. Background-task
        // bookkeeping (`system/task_notification`, `task_updated`, ...) after the result does not.
        let new_turn = match str_field("type").as_deref() {
            Some("assistant" | "user" | "stream_event") => true,
            Some("system") => str_field("subtype").as_deref() == Some("init"),
            _ => false,
        };
        if new_turn {
            self.awaiting_exit = false;
        }
    }

    /// The HTTP status of the model API error that ended the run, if any.
    pub fn api_error_status(&self) -> Option<u64> {
        let r = self.result.as_ref()?;
        ["api_error_status", "error_status"]
            .iter()
            .find_map(|k| r.get(*k)?.as_u64())
    }

    /// The model refused (claude_local's `claude_refusal`).
    pub fn is_refusal(&self) -> bool {
        let Some(r) = &self.result else {
            return false;
        };
        ["subtype", "stop_reason", "stopReason"]
            .iter()
            .any(|k| r.get(*k).and_then(Value::as_str) == Some("refusal"))
    }

    pub fn assistant_summary(&self) -> String {
        self.assistant_texts.join("\n\n").trim().to_owned()
    }

    fn result_str(&self, key: &str) -> Option<&str> {
        self.result.as_ref()?.get(key)?.as_str()
    }

    pub fn is_error(&self) -> bool {
        self.result
            .as_ref()
            .and_then(|r| r.get("is_error"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn subtype(&self) -> Option<&str> {
        self.result_str("subtype")
    }

    /// claude_local: `modelUsage` totals (cache creation counts as input), else the top-level `usage`.
    pub fn usage(&self) -> Option<Usage> {
        let result = self.result.as_ref()?;
        let n = |v: Option<&Value>| v.and_then(Value::as_f64).unwrap_or(0.0).max(0.0) as u64;
        if let Some(models) = result
            .get("modelUsage")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            let mut total = Usage::default();
            // Saturating: the agent can print a `result` line of its own, with any numbers in it.
            for entry in models.values().filter_map(Value::as_object) {
                total.input_tokens = total
                    .input_tokens
                    .saturating_add(n(entry.get("inputTokens")))
                    .saturating_add(n(entry.get("cacheCreationInputTokens")));
                total.output_tokens = total
                    .output_tokens
                    .saturating_add(n(entry.get("outputTokens")));
                total.cached_input_tokens = total
                    .cached_input_tokens
                    .saturating_add(n(entry.get("cacheReadInputTokens")));
            }
            return Some(total);
        }
        let usage = result.get("usage")?;
        Some(Usage {
            input_tokens: n(usage.get("input_tokens")),
            output_tokens: n(usage.get("output_tokens")),
            cached_input_tokens: n(usage.get("cache_read_input_tokens")),
        })
    }

    pub fn cost_usd(&self) -> Option<f64> {
        self.result
            .as_ref()?
            .get("total_cost_usd")?
            .as_f64()
            .filter(|c| c.is_finite())
    }

    pub fn summary(&self) -> String {
        match self.result_str("result") {
            Some(text) => text.trim().to_owned(),
            None => self.assistant_summary(),
        }
    }

    /// The messages Claude reported: `result` text and `errors[]`.
    pub fn error_messages(&self) -> Vec<String> {
        let Some(result) = &self.result else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        if let Some(text) = result
            .get("result")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            out.push(text.to_owned());
        }
        for e in result
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let msg = match e {
                Value::String(s) => s.trim().to_owned(),
                Value::Object(o) => ["message", "error", "code"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.to_string()),
                _ => continue,
            };
            if !msg.is_empty() {
                out.push(msg);
            }
        }
        out
    }

    /// `--resume` of a session Claude does not have (claude_local's `isClaudeUnknownSessionError`).
    pub fn is_unknown_session_error(&self) -> bool {
        const NEEDLES: [&str; 6] = [
            "no conversation found with session id",
            "unknown session",
            "not a valid uuid",
            "--resume requires a valid session",
            "is not a uuid",
            "does not match any session title",
        ];
        self.error_messages().iter().any(|m| {
            let m = m.to_lowercase();
            NEEDLES.iter().any(|n| m.contains(n))
                || (m.contains("session ")
                    && m.split("session ")
                        .nth(1)
                        .is_some_and(|rest| rest.contains(" not found")))
        })
    }

    /// Max turns reached: Paperclip should start the next run on a fresh session.
    pub fn is_max_turns(&self) -> bool {
        let Some(result) = &self.result else {
            return false;
        };
        if self
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("error_max_turns"))
        {
            return true;
        }
        ["stop_reason", "stopReason", "error_code", "errorCode"]
            .iter()
            .any(|k| {
                result.get(*k).and_then(Value::as_str).is_some_and(|v| {
                    matches!(v.trim().to_lowercase().as_str(), "max_turns" | "turn_limit")
                })
            })
    }

    /// claude_local's `describeClaudeFailure`.
    pub fn describe_failure(&self) -> String {
        let mut parts = vec!["Claude run failed".to_owned()];
        if let Some(subtype) = self.subtype().filter(|s| !s.is_empty()) {
            parts.push(format!("subtype={subtype}"));
        }
        if let Some(detail) = self.error_messages().into_iter().next() {
            parts.push(detail);
        }
        parts.join(": ")
    }
}

/// A `result` line with `num_turns: 0` that is not an error: on `--resume`, Claude reports stale background-task
/// notifications this way before it starts on the prompt (paperclipai/paperclip#13322).
fn is_zero_turn_result(event: &Map<String, Value>) -> bool {
    event.get("num_turns").and_then(Value::as_u64) == Some(0)
        && !event
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false)
}

/// A progress sentence for a line that deserves one: `system/api_retry` (the CLI waiting to retry the model
/// API), e.g. "model API rate-limited (429), retry 3 of 10 in 2.2 s".
pub fn progress_note(line: &str) -> Option<String> {
    if !line.contains("api_retry") {
        return None;
    }
    let event: Value = serde_json::from_str(line.trim()).ok()?;
    if event.get("type")?.as_str()? != "system" || event.get("subtype")?.as_str()? != "api_retry" {
        return None;
    }
    let status = event
        .get("error_status")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let what = match status {
        429 => "rate-limited".to_owned(),
        529 => "overloaded".to_owned(),
        401 | 403 => "refused the credentials".to_owned(),
        0 => "unreachable".to_owned(),
        s if s >= 500 => "failing".to_owned(),
        _ => "returned an error".to_owned(),
    };
    let status = if status > 0 {
        format!(" ({status})")
    } else {
        event
            .get("error")
            .and_then(Value::as_str)
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    };
    let n = |k: &str| event.get(k).and_then(Value::as_u64);
    let attempt = n("attempt")
        .map(|a| match n("max_retries") {
            Some(max) => format!(", retry {a} of {max}"),
            None => format!(", retry {a}"),
        })
        .unwrap_or_default();
    let delay = n("retry_delay_ms")
        .map(|ms| format!(" in {:.1} s", ms as f64 / 1000.0))
        .unwrap_or_default();
    Some(format!("model API {what}{status}{attempt}{delay}"))
}

#[cfg(test)]
mod tests;
