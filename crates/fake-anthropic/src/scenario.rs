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

use std::time::Duration;

use serde_json::{Value, json};

/// The text of the reply when no marker applies.
pub const DEFAULT_REPLY: &str = "Hello from the fake model.";

/// The text streamed after a hold is released.
pub const RELEASED_TEXT: &str = "Released.";

/// One scripted step, parsed from a `[[fake:...]]` marker.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Text(String),
    Tool {
        name: String,
        input: Value,
    },
    Slow {
        count: usize,
        delay: Duration,
    },
    Long {
        amount: usize,
        unit: LongUnit,
    },
    Hold {
        text: String,
    },
    Error(ErrorStep),
    /// A marker that did not parse: answered with a text that says so.
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongUnit {
    Lines,
    KiB,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorStep {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub times: Option<u32>,
    /// `reset=4pm/America/Chicago`: the error message is claude.ai's usage-limit notice with that reset time,
    /// "You've hit your session limit · resets 4pm (America/Chicago)".
    pub reset: Option<String>,
}

/// A marker as found in the text: the raw marker and the parsed step.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub raw: String,
    pub step: Step,
}

/// Finds every `[[fake:...]]` marker in `text`, in order.
pub fn parse_markers(text: &str) -> Vec<Marker> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("[[fake:") {
        let after = &rest[start + "[[fake:".len()..];
        let Some(end) = after.find("]]") else { break };
        let body = &after[..end];
        out.push(Marker {
            raw: format!("[[fake:{body}]]"),
            step: parse_step(body),
        });
        rest = &after[end + 2..];
    }
    out
}

/// Parses the inside of a marker, e.g. `bash echo hi` or `slow 40 100ms`.
pub fn parse_step(body: &str) -> Step {
    let body = body.trim();
    let (kind, args) = match body.find(char::is_whitespace) {
        Some(i) => (&body[..i], body[i..].trim()),
        None => (body, ""),
    };
    match kind.to_ascii_lowercase().as_str() {
        "text" => Step::Text(if args.is_empty() {
            DEFAULT_REPLY.to_string()
        } else {
            args.to_string()
        }),
        "bash" => {
            if args.is_empty() {
                return Step::Invalid(format!("bash needs a command: [[fake:{body}]]"));
            }
            Step::Tool {
                name: "Bash".to_string(),
                input: json!({ "command": args, "description": "scripted command" }),
            }
        }
        "tool" => {
            let (name, input) = match args.find(char::is_whitespace) {
                Some(i) => (&args[..i], args[i..].trim()),
                None => (args, ""),
            };
            if name.is_empty() {
                return Step::Invalid(format!("tool needs a name: [[fake:{body}]]"));
            }
            let input = if input.is_empty() {
                json!({})
            } else {
                match serde_json::from_str::<Value>(input) {
                    Ok(v) if v.is_object() => v,
                    _ => {
                        return Step::Invalid(format!(
                            "tool input must be a JSON object: [[fake:{body}]]"
                        ));
                    }
                }
            };
            Step::Tool {
                name: name.to_string(),
                input,
            }
        }
        "slow" => {
            let mut count = 20;
            let mut delay = Duration::from_millis(100);
            let mut words = args.split_whitespace();
            if let Some(n) = words.next() {
                match n.parse() {
                    Ok(n) => count = n,
                    Err(_) => return Step::Invalid(format!("slow: bad count in [[fake:{body}]]")),
                }
            }
            if let Some(d) = words.next() {
                match parse_duration(d) {
                    Some(d) => delay = d,
                    None => return Step::Invalid(format!("slow: bad delay in [[fake:{body}]]")),
                }
            }
            Step::Slow { count, delay }
        }
        "long" => {
            let arg = args.to_ascii_lowercase();
            let arg = arg.trim();
            let (num, unit) = if let Some(n) = arg.strip_suffix("kb").or(arg.strip_suffix("k")) {
                (n.trim(), LongUnit::KiB)
            } else if let Some(n) = arg.strip_suffix("lines").or(arg.strip_suffix("l")) {
                (n.trim(), LongUnit::Lines)
            } else {
                (arg, LongUnit::Lines)
            };
            let amount = if num.is_empty() {
                1000
            } else {
                match num.parse() {
                    Ok(n) => n,
                    Err(_) => return Step::Invalid(format!("long: bad size in [[fake:{body}]]")),
                }
            };
            Step::Long { amount, unit }
        }
        "hold" => Step::Hold {
            text: if args.is_empty() {
                "Holding until released.".to_string()
            } else {
                args.to_string()
            },
        },
        "error" => {
            let mut words = args.split_whitespace();
            let Some(status) = words.next().and_then(|s| s.parse::<u16>().ok()) else {
                return Step::Invalid(format!("error needs an HTTP status: [[fake:{body}]]"));
            };
            if !(400..=599).contains(&status) {
                return Step::Invalid(format!("error status must be 4xx/5xx: [[fake:{body}]]"));
            }
            let mut step = ErrorStep {
                status,
                retry_after: matches!(status, 429 | 529).then_some(1),
                times: None,
                reset: None,
            };
            for w in words {
                if let Some(v) = w.strip_prefix("retry-after=") {
                    step.retry_after = v.parse().ok();
                } else if let Some(v) = w.strip_prefix("times=") {
                    step.times = v.parse().ok();
                } else if let Some(v) = w.strip_prefix("reset=") {
                    step.reset = Some(v.to_owned());
                } else {
                    return Step::Invalid(format!(
                        "error: unknown option {w:?} in [[fake:{body}]]"
                    ));
                }
            }
            Step::Error(step)
        }
        _ => Step::Invalid(format!("unknown fake marker [[fake:{body}]]")),
    }
}

/// `100ms`, `2s`, `1.5s` or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(ms) = s.strip_suffix("ms") {
        ms.trim().parse::<u64>().ok().map(Duration::from_millis)
    } else if let Some(sec) = s.strip_suffix('s') {
        sec.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(Duration::from_secs_f64)
    } else {
        s.parse::<u64>().ok().map(Duration::from_millis)
    }
}

/// The text of a message's content: a plain string, or its `text` blocks joined by newlines.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Removes the `<system-reminder>...</system-reminder>` sections Claude Code appends to tool
/// results and prompts, and trims the rest.
pub fn strip_system_reminders(s: &str) -> String {
    const OPEN: &str = "<system-reminder>";
    const CLOSE: &str = "</system-reminder>";
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        match rest[start..].find(CLOSE) {
            Some(end) => rest = &rest[start + end + CLOSE.len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out.trim().to_string()
}

fn has_tool_result(message: &Value) -> bool {
    message
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
}

fn role(message: &Value) -> &str {
    message.get("role").and_then(Value::as_str).unwrap_or("")
}

/// Where the current turn stands in a request's `messages`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Turn {
    /// Index of the turn prompt (latest user message without a tool result), if any.
    pub prompt_index: Option<usize>,
    /// Text of the turn prompt.
    pub prompt_text: String,
    /// Assistant messages after the prompt: how many model calls of this turn came before.
    pub phase: usize,
    /// Text of the tool results in the last message, when it carries any.
    pub last_tool_result: Option<String>,
    /// The last message answers a `ToolSearch` the fake itself made to load a deferred tool.
    pub last_was_tool_search: bool,
}

/// Prefix of the ids of the `ToolSearch` calls the fake makes to load deferred (e.g. MCP) tools;
/// such rounds do not count as steps of the script.
pub const TOOL_SEARCH_ID_PREFIX: &str = "toolu_fake_search_";

fn is_fake_tool_search(message: &Value) -> bool {
    role(message) == "assistant"
        && message
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                !blocks.is_empty()
                    && blocks.iter().all(|b| {
                        b.get("type").and_then(Value::as_str) == Some("tool_use")
                            && b.get("id")
                                .and_then(Value::as_str)
                                .is_some_and(|id| id.starts_with(TOOL_SEARCH_ID_PREFIX))
                    })
            })
}

/// Names listed in Claude Code's "deferred tools" reminder: tools (MCP tools among them) whose
/// schemas the model must load with `ToolSearch` before calling them.
pub fn deferred_tool_names(body: &Value) -> Vec<String> {
    const HEAD: &str = "The following deferred tools are now available via ToolSearch";
    let mut out = Vec::new();
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return out;
    };
    for m in messages.iter().filter(|m| role(m) == "user") {
        let text = content_text(m.get("content").unwrap_or(&Value::Null));
        let mut rest = text.as_str();
        while let Some(start) = rest.find(HEAD) {
            let after = &rest[start..];
            let end = after.find("</system-reminder>").unwrap_or(after.len());
            let section = &after[..end];
            // The first line is the explanation; each further line names one tool.
            for line in section.lines().skip(1) {
                let name = line.trim();
                if !name.is_empty() && !name.contains(' ') && !out.iter().any(|n| n == name) {
                    out.push(name.to_string());
                }
            }
            rest = &after[end..];
        }
    }
    out
}

/// Analyses the `messages` of a request body.
pub fn turn(body: &Value) -> Turn {
    let empty = Vec::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let prompt_index = messages
        .iter()
        .rposition(|m| role(m) == "user" && !has_tool_result(m));
    let prompt_text = prompt_index
        .map(|i| content_text(messages[i].get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let phase = prompt_index
        .map(|i| {
            messages[i + 1..]
                .iter()
                .filter(|m| role(m) == "assistant" && !is_fake_tool_search(m))
                .count()
        })
        .unwrap_or(0);
    let last_was_tool_search = messages.len() >= 2
        && messages
            .last()
            .is_some_and(|m| role(m) == "user" && has_tool_result(m))
        && is_fake_tool_search(&messages[messages.len() - 2]);
    let last_tool_result = messages
        .last()
        .filter(|m| role(m) == "user" && has_tool_result(m))
        .map(|m| {
            let blocks = m.get("content").and_then(Value::as_array).unwrap_or(&empty);
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|b| {
                    strip_system_reminders(&content_text(b.get("content").unwrap_or(&Value::Null)))
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    Turn {
        prompt_index,
        prompt_text,
        phase,
        last_tool_result,
        last_was_tool_search,
    }
}

/// Names of the tools a request offers the model.
pub fn tool_names(body: &Value) -> Vec<String> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The system prompt of a request: a string, or its text blocks joined by newlines.
pub fn system_text(body: &Value) -> String {
    body.get("system").map(content_text).unwrap_or_default()
}

/// A content block of a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text, streamed as these deltas (concatenated they are the text).
    Text { deltas: Vec<String> },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

impl Block {
    pub fn text(s: impl Into<String>) -> Block {
        Block::Text {
            deltas: chunk_words(&s.into()),
        }
    }

    /// The full text of a text block.
    pub fn full_text(&self) -> Option<String> {
        match self {
            Block::Text { deltas } => Some(deltas.concat()),
            Block::ToolUse { .. } => None,
        }
    }
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub blocks: Vec<Block>,
    pub stop_reason: &'static str,
    /// Pause before each text delta.
    pub delta_delay: Duration,
    /// Stop after the first block until released (the `hold` marker).
    pub hold: bool,
}

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

/// Splits text into word-sized deltas (a word with its trailing whitespace), as a model would.
pub fn chunk_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            out.push(std::mem::take(&mut cur));
            in_space = false;
        }
        cur.push(c);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// The text of a `long` reply, in deltas of about 4 KiB.
pub fn long_text(amount: usize, unit: LongUnit) -> Vec<String> {
    let mut text = String::new();
    match unit {
        LongUnit::Lines => {
            for i in 1..=amount {
                if i > 1 {
                    text.push('\n');
                }
                text.push_str(&format!("line {i} of {amount}: the quick brown fox"));
            }
        }
        LongUnit::KiB => {
            let target = amount * 1024;
            let mut i = 1;
            while text.len() < target {
                text.push_str(&format!("chunk {i:06} lorem ipsum dolor sit amet\n"));
                i += 1;
            }
            text.truncate(target);
        }
    }
    let mut deltas = Vec::new();
    let mut cur = String::new();
    for line in text.split_inclusive('\n') {
        cur.push_str(line);
        if cur.len() >= 4096 {
            deltas.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() || deltas.is_empty() {
        deltas.push(cur);
    }
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("{n}")
        }
    }

    fn req(messages: Value) -> Value {
        json!({
            "model": "claude-sonnet-4-6",
            "messages": messages,
            "tools": [{"name": "Bash", "input_schema": {}}, {"name": "mcp__x__y", "input_schema": {}}],
        })
    }

    fn run(body: &Value) -> (Plan, Option<String>) {
        plan(body, None, &mut HashMap::new(), &mut ids())
    }

    fn reply_text(p: &Plan) -> String {
        match p {
            Plan::Reply(r) => r.blocks.iter().filter_map(Block::full_text).collect(),
            Plan::Error(e) => panic!("unexpected error {e:?}"),
        }
    }

    #[test]
    fn parses_markers() {
        let m = parse_markers("a [[fake:text Hello there]] b [[fake:bash echo hi > hello.txt]]");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].step, Step::Text("Hello there".into()));
        assert_eq!(m[0].raw, "[[fake:text Hello there]]");
        assert_eq!(
            m[1].step,
            Step::Tool {
                name: "Bash".into(),
                input: json!({"command": "echo hi > hello.txt", "description": "scripted command"})
            }
        );
        assert_eq!(
            parse_step("slow 40 100ms"),
            Step::Slow {
                count: 40,
                delay: Duration::from_millis(100)
            }
        );
        assert_eq!(
            parse_step("slow 3 1.5s"),
            Step::Slow {
                count: 3,
                delay: Duration::from_millis(1500)
            }
        );
        assert_eq!(
            parse_step("long 5000"),
            Step::Long {
                amount: 5000,
                unit: LongUnit::Lines
            }
        );
        assert_eq!(
            parse_step("long 64KB"),
            Step::Long {
                amount: 64,
                unit: LongUnit::KiB
            }
        );
        assert_eq!(
            parse_step("error 429"),
            Step::Error(ErrorStep {
                status: 429,
                retry_after: Some(1),
                times: None,
                reset: None
            })
        );
        assert_eq!(
            parse_step("error 401 times=2"),
            Step::Error(ErrorStep {
                status: 401,
                retry_after: None,
                times: Some(2),
                reset: None
            })
        );
        assert_eq!(
            parse_step("error 429 reset=4pm/America/Chicago"),
            Step::Error(ErrorStep {
                status: 429,
                retry_after: Some(1),
                times: None,
                reset: Some("4pm/America/Chicago".into())
            })
        );
        assert_eq!(
            parse_step("error 529 retry-after=0"),
            Step::Error(ErrorStep {
                status: 529,
                retry_after: Some(0),
                times: None,
                reset: None
            })
        );
        assert_eq!(
            parse_step(r#"tool mcp__paperclip__get_issue {"id": "I-1"}"#),
            Step::Tool {
                name: "mcp__paperclip__get_issue".into(),
                input: json!({"id": "I-1"})
            }
        );
        assert!(matches!(parse_step("error 200"), Step::Invalid(_)));
        assert!(matches!(parse_step("bogus"), Step::Invalid(_)));
        assert!(matches!(parse_step("tool X [1]"), Step::Invalid(_)));
        assert!(parse_markers("[[fake:text unterminated").is_empty());
    }

    #[test]
    fn default_and_text() {
        let (p, m) = run(&req(json!([{"role": "user", "content": "hi"}])));
        assert_eq!(reply_text(&p), DEFAULT_REPLY);
        assert_eq!(m, None);
        let body = req(json!([{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
            {"type": "text", "text": "say [[fake:text Hello there]]"}
        ]}]));
        let (p, m) = run(&body);
        assert_eq!(reply_text(&p), "Hello there");
        assert_eq!(m.as_deref(), Some("[[fake:text Hello there]]"));
        // A default script applies only without markers.
        let (p, _) = plan(
            &req(json!([{"role": "user", "content": "hi"}])),
            Some("[[fake:text scripted]]"),
            &mut HashMap::new(),
            &mut ids(),
        );
        assert_eq!(reply_text(&p), "scripted");
        // Markers outside reminders win; reminders and then the system prompt are fallbacks.
        let body = req(json!([{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>[[fake:text from claude.md]]</system-reminder>"},
            {"type": "text", "text": "[[fake:text from prompt]]"}
        ]}]));
        assert_eq!(reply_text(&run(&body).0), "from prompt");
        let body = req(json!([{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>[[fake:text from claude.md]]</system-reminder>"},
            {"type": "text", "text": "go"}
        ]}]));
        assert_eq!(reply_text(&run(&body).0), "from claude.md");
        let mut body = req(json!([{"role": "user", "content": "go"}]));
        body["system"] =
            json!([{"type": "text", "text": "Agent instructions [[fake:text from system]]"}]);
        assert_eq!(reply_text(&run(&body).0), "from system");
    }

    #[test]
    fn bash_round_trip() {
        let first = req(json!([{"role": "user", "content": "[[fake:bash echo hi > hello.txt]]"}]));
        let (p, _) = run(&first);
        let Plan::Reply(r) = p else { panic!() };
        assert_eq!(r.stop_reason, "tool_use");
        assert_eq!(
            r.blocks,
            vec![Block::ToolUse {
                id: "toolu_fake_1".into(),
                name: "Bash".into(),
                input: json!({"command": "echo hi > hello.txt", "description": "scripted command"})
            }]
        );
        let second = req(json!([
            {"role": "user", "content": "[[fake:bash echo hi > hello.txt]]"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi\n\n<system-reminder>\nx\n</system-reminder>"},
                {"type": "text", "text": "<system-reminder>x</system-reminder>"}
            ]}
        ]));
        let (p, _) = run(&second);
        assert_eq!(reply_text(&p), "Tool result: hi");
        // A new prompt after the round trip starts a new turn without markers.
        let third = req(json!([
            {"role": "user", "content": "[[fake:bash echo hi > hello.txt]]"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "hi"}]}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Tool result: hi"}]},
            {"role": "user", "content": "and now?"}
        ]));
        assert_eq!(reply_text(&run(&third).0), DEFAULT_REPLY);
        // A side request without tools gets text, not a tool_use.
        let side = json!({"messages": [{"role": "user", "content": "[[fake:bash ls]]"}]});
        assert_eq!(
            reply_text(&run(&side).0),
            "fake-anthropic: the tool Bash is not offered"
        );
    }

    #[test]
    fn script_of_several_steps() {
        let body = |n_assistant: usize| {
            let mut msgs = vec![
                json!({"role": "user", "content": "[[fake:bash a]] [[fake:tool mcp__x__y {\"k\":1}]] [[fake:text done]]"}),
            ];
            for i in 0..n_assistant {
                msgs.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": format!("t{i}"), "name": "Bash", "input": {}}]}));
                msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("t{i}"), "content": "r"}]}));
            }
            req(Value::Array(msgs))
        };
        let name = |p: Plan| match p {
            Plan::Reply(r) => match &r.blocks[0] {
                Block::ToolUse { name, .. } => name.clone(),
                b => b.full_text().unwrap(),
            },
            Plan::Error(_) => panic!(),
        };
        assert_eq!(name(run(&body(0)).0), "Bash");
        assert_eq!(name(run(&body(1)).0), "mcp__x__y");
        assert_eq!(name(run(&body(2)).0), "done");
        assert_eq!(name(run(&body(3)).0), "Tool result: r");
    }

    #[test]
    fn errors_and_times() {
        let body = req(
            json!([{"role": "user", "content": "[[fake:error 529 times=2]] [[fake:text ok]]"}]),
        );
        let mut counts = HashMap::new();
        for _ in 0..2 {
            let (p, _) = plan(&body, None, &mut counts, &mut ids());
            assert!(matches!(p, Plan::Error(ErrorStep { status: 529, .. })));
        }
        let (p, _) = plan(&body, None, &mut counts, &mut ids());
        assert_eq!(reply_text(&p), "ok");
        let forever = req(json!([{"role": "user", "content": "[[fake:error 401]]"}]));
        for _ in 0..5 {
            assert!(matches!(run(&forever).0, Plan::Error(_)));
        }
    }

    #[test]
    fn slow_long_hold() {
        let (p, _) = run(&req(
            json!([{"role": "user", "content": "[[fake:slow 40 100ms]]"}]),
        ));
        let Plan::Reply(r) = p else { panic!() };
        assert_eq!(r.delta_delay, Duration::from_millis(100));
        let Block::Text { deltas } = &r.blocks[0] else {
            panic!()
        };
        assert_eq!(deltas.len(), 40);

        let lines = long_text(5000, LongUnit::Lines).concat();
        assert_eq!(lines.lines().count(), 5000);
        assert!(lines.ends_with("\nline 5000 of 5000: the quick brown fox"));
        assert_eq!(long_text(64, LongUnit::KiB).concat().len(), 64 * 1024);

        let (p, _) = run(&req(
            json!([{"role": "user", "content": "[[fake:hold wait]]"}]),
        ));
        let Plan::Reply(r) = p else { panic!() };
        assert!(r.hold);
        assert_eq!(r.blocks.len(), 2);
        assert_eq!(r.blocks[0].full_text().unwrap(), "wait");
    }

    #[test]
    fn strips_reminders() {
        assert_eq!(
            strip_system_reminders("a\n<system-reminder>x</system-reminder>\nb<system-reminder>y"),
            "a\n\nb"
        );
        assert_eq!(strip_system_reminders("plain "), "plain");
    }

    #[test]
    fn deferred_tools_load_through_tool_search() {
        let reminder = "<system-reminder>\nThe following deferred tools are now available via ToolSearch. Their schemas are NOT loaded:\nCronCreate\nmcp__demo__get_issue\n</system-reminder>";
        let prompt = json!({"role": "user", "content": [
            {"type": "text", "text": reminder},
            {"type": "text", "text": "[[fake:tool mcp__demo__get_issue {\"id\":\"I-1\"}]]"}
        ]});
        let tools = json!([{"name": "Bash"}, {"name": "ToolSearch"}]);
        let first = json!({"tools": tools, "messages": [prompt]});
        assert_eq!(
            deferred_tool_names(&first),
            vec!["CronCreate", "mcp__demo__get_issue"]
        );
        let Plan::Reply(r) = run(&first).0 else {
            panic!()
        };
        let Block::ToolUse { id, name, input } = &r.blocks[0] else {
            panic!()
        };
        assert_eq!(name, "ToolSearch");
        assert!(id.starts_with(TOOL_SEARCH_ID_PREFIX));
        assert_eq!(input["query"], "select:mcp__demo__get_issue");

        // After the search the tool is offered; the search round does not count as a step.
        let search_call = json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "ToolSearch", "input": input}]});
        let search_result = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "loaded"}]});
        let second = json!({
            "tools": [{"name": "Bash"}, {"name": "ToolSearch"}, {"name": "mcp__demo__get_issue"}],
            "messages": [prompt, search_call, search_result]
        });
        let Plan::Reply(r) = run(&second).0 else {
            panic!()
        };
        assert!(
            matches!(&r.blocks[0], Block::ToolUse { name, input, .. } if name == "mcp__demo__get_issue" && input["id"] == "I-1")
        );
        // Had the search not loaded it, the fake gives up instead of searching again.
        let stuck = json!({"tools": tools, "messages": [prompt, search_call, search_result]});
        assert_eq!(
            reply_text(&run(&stuck).0),
            "fake-anthropic: the tool mcp__demo__get_issue is not offered"
        );
    }

    #[test]
    fn chunks_words() {
        assert_eq!(
            chunk_words("Hello there  you"),
            vec!["Hello ", "there  ", "you"]
        );
        assert_eq!(chunk_words(""), vec![""]);
        assert_eq!(chunk_words("x").concat(), "x");
    }

    #[test]
    fn system_and_tools() {
        let body = json!({
            "system": [{"type": "text", "text": "You are Claude Code"}, {"type": "text", "text": "Instructions: be nice", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "Bash"}, {"name": "mcp__paperclip__x"}],
            "messages": []
        });
        assert_eq!(
            system_text(&body),
            "You are Claude Code\nInstructions: be nice"
        );
        assert_eq!(tool_names(&body), vec!["Bash", "mcp__paperclip__x"]);
        assert_eq!(system_text(&json!({"system": "plain"})), "plain");
    }
}
