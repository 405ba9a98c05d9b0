//! Reading a Messages request: the texts of its messages and system prompt, where the current turn stands, the
//! tools it offers and the ones it defers.

use serde_json::Value;

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
