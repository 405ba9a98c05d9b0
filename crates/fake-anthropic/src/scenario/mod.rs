//! Scenario markers and the planning of a reply from a Messages API request.
//!
//! A test steers the fake through markers in the prompt, written `[[fake:KIND ARGS]]`:
//!
//! | marker | reply |
//! |---|---|
//! | `[[fake:text Hello there]]` | a text reply `Hello there` |
//! | `[[fake:bash echo hi > hello.txt]]` | a `tool_use` of `Bash` with that command; once the tool result comes back, a text reply quoting it |
//! | `[[fake:tool NAME {json input}]]` | a `tool_use` of any tool (e.g. an MCP tool `mcp__server__name`), then a reply quoting the result |
//! | `[[fake:slow 40 100ms]]` | 40 text deltas `tok1`, ` tok2`, ..., each after a 100 ms pause (`ms` or `s`; default 20 deltas, 100 ms) |
//! | `[[fake:long 5000]]`, `[[fake:long 64kb]]` | 5000 lines `line I of 5000: the quick brown fox` (no final newline), or 64 KiB of text |
//! | `[[fake:hold Some text]]` | streams a first text block, then stops mid-stream until released (`POST /_fake/release`) |
//! | `[[fake:error 429]]` (also 401, 403, 400, 404, 413, 500, 529, ...) | that HTTP status with Anthropic's JSON error body |
//!
//! Error markers take options: `reset=4pm/America/Chicago` (the message is claude.ai's usage-limit notice with
//! that reset time), `retry-after=SECONDS` (default 1 for 429 and 529, none otherwise) and
//! `times=N` (fail only the first N matching requests, then behave as if the marker were absent).
//!
//! Markers are read from the *turn prompt*: the latest user message that carries no `tool_result`
//! (its text outside `<system-reminder>` sections first, then inside them, where Claude Code puts
//! e.g. CLAUDE.md); failing that from the system prompt (e.g. `--append-system-prompt`); failing
//! that from the default script (`POST /_fake/script`, `--script`).
//!
//! Several markers form a script: the k-th model call of the turn (k = number of assistant
//! messages after the prompt) plays the k-th non-error marker. When the script is used up and the
//! last message carries a tool result, the reply quotes it (reminders stripped):
//! `Tool result: <text>`. Without any marker the reply is [`DEFAULT_REPLY`].
//!
//! A tool the request does not offer in `tools` but that `ToolSearch` can load (Claude Code defers
//! MCP tools unless `ENABLE_TOOL_SEARCH=false`) is preceded by a `ToolSearch` call
//! `{"query": "select:<name>"}`; that round does not count as a script step.

mod markers;
mod reply;
mod request;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde_json::{Value, json};

pub use markers::{ErrorStep, LongUnit, Marker, Step, parse_duration, parse_markers, parse_step};
pub use reply::{Block, Reply, chunk_words, long_text};
pub use request::{
    TOOL_SEARCH_ID_PREFIX, Turn, content_text, deferred_tool_names, strip_system_reminders,
    system_text, tool_names, turn,
};

/// The text of the reply when no marker applies.
pub const DEFAULT_REPLY: &str = "Hello from the fake model.";

/// The text streamed after a hold is released.
pub const RELEASED_TEXT: &str = "Released.";

/// What the fake answers to one `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Reply(Reply),
    Error(ErrorStep),
}

/// What [`plan`] needs to know about earlier requests: how often an error marker already failed.
pub trait ErrorCounter {
    /// How many times the error marker `key` already failed a request.
    fn seen(&mut self, key: &str) -> u32;
    /// Counts one more failure of `key`.
    fn count(&mut self, key: &str);
}

impl ErrorCounter for std::collections::HashMap<String, u32> {
    fn seen(&mut self, key: &str) -> u32 {
        self.get(key).copied().unwrap_or(0)
    }
    fn count(&mut self, key: &str) {
        *self.entry(key.to_string()).or_default() += 1;
    }
}

/// The markers that script a turn, from the first of these that has any: the prompt outside its
/// `<system-reminder>` sections, the whole prompt (reminders carry e.g. CLAUDE.md), the system
/// prompt, `default_script`.
pub fn script_markers(turn: &Turn, body: &Value, default_script: Option<&str>) -> Vec<Marker> {
    let stripped = strip_system_reminders(&turn.prompt_text);
    [
        Some(stripped.as_str()),
        Some(turn.prompt_text.as_str()),
        Some(system_text(body).as_str()),
        default_script,
    ]
    .into_iter()
    .flatten()
    .map(parse_markers)
    .find(|m| !m.is_empty())
    .unwrap_or_default()
}

/// Plans the answer to a Messages request. `default_script` stands in for a prompt without markers;
/// `unique` gives a fresh token for `tool_use` ids (`toolu_fake_<token>`). Returns the plan and the
/// marker that chose it, if any.
///
/// A tool step whose tool is not in `tools` but can be loaded with `ToolSearch` (Claude Code
/// defers MCP tools unless `ENABLE_TOOL_SEARCH=false`) first plays a `ToolSearch` call with
/// `select:<name>`, then the tool call.
pub fn plan(
    body: &Value,
    default_script: Option<&str>,
    errors: &mut dyn ErrorCounter,
    unique: &mut dyn FnMut() -> String,
) -> (Plan, Option<String>) {
    let turn = turn(body);
    let markers = script_markers(&turn, body, default_script);

    // Error markers answer every request of the turn until their `times` are used up.
    let mut steps = Vec::new();
    for (i, m) in markers.iter().enumerate() {
        if let Step::Error(e) = &m.step {
            let key = format!("{i}\u{0}{}\u{0}{}", m.raw, turn.prompt_text);
            if e.times.is_none_or(|t| errors.seen(&key) < t) {
                errors.count(&key);
                return (Plan::Error(e.clone()), Some(m.raw.clone()));
            }
        } else {
            steps.push(m);
        }
    }

    let offered = tool_names(body);
    let reply = |blocks: Vec<Block>| Reply {
        blocks,
        stop_reason: "end_turn",
        delta_delay: Duration::ZERO,
        hold: false,
    };

    let Some(marker) = steps.get(turn.phase) else {
        let text = match &turn.last_tool_result {
            Some(result) if turn.phase > 0 => format!("Tool result: {}", clip(result, 4000)),
            _ => DEFAULT_REPLY.to_string(),
        };
        return (Plan::Reply(reply(vec![Block::text(text)])), None);
    };
    let raw = Some(marker.raw.clone());
    let plan = match &marker.step {
        Step::Text(t) => reply(vec![Block::text(t.clone())]),
        Step::Tool { name, input } => {
            let tool_use = |id: String, name: &str, input: Value| Reply {
                blocks: vec![Block::ToolUse {
                    id,
                    name: name.to_string(),
                    input,
                }],
                stop_reason: "tool_use",
                delta_delay: Duration::ZERO,
                hold: false,
            };
            if offered.iter().any(|n| n == name) {
                tool_use(format!("toolu_fake_{}", unique()), name, input.clone())
            } else if offered.iter().any(|n| n == "ToolSearch") && !turn.last_was_tool_search {
                tool_use(
                    format!("{TOOL_SEARCH_ID_PREFIX}{}", unique()),
                    "ToolSearch",
                    json!({"query": format!("select:{name}"), "max_results": 5}),
                )
            } else {
                // E.g. a side request (title, summary) that offers no tools.
                reply(vec![Block::text(format!(
                    "fake-anthropic: the tool {name} is not offered"
                ))])
            }
        }
        Step::Slow { count, delay } => Reply {
            blocks: vec![Block::Text {
                deltas: (1..=*count)
                    .map(|i| {
                        if i == 1 {
                            "tok1".to_string()
                        } else {
                            format!(" tok{i}")
                        }
                    })
                    .collect(),
            }],
            stop_reason: "end_turn",
            delta_delay: *delay,
            hold: false,
        },
        Step::Long { amount, unit } => reply(vec![Block::Text {
            deltas: long_text(*amount, *unit),
        }]),
        Step::Hold { text } => Reply {
            blocks: vec![Block::text(text.clone()), Block::text(RELEASED_TEXT)],
            stop_reason: "end_turn",
            delta_delay: Duration::ZERO,
            hold: true,
        },
        Step::Invalid(msg) => reply(vec![Block::text(format!("fake-anthropic: {msg}"))]),
        Step::Error(_) => unreachable!("errors are filtered above"),
    };
    (Plan::Reply(plan), raw)
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
