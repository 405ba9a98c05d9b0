//! Encoding a planned reply as the Messages API does: server-sent events or one JSON message.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::scenario::{Block, ErrorStep, Reply};
use crate::usage::{Usage, output_tokens};

/// One step of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Bytes to send: one complete SSE event.
    Event(Bytes),
    /// Pause before the next item.
    Sleep(Duration),
    /// The point after the first content block where a stream can be held. `scripted` is true
    /// for the `hold` marker (wait for the next release); otherwise the stream waits only while
    /// the server is held.
    HoldPoint { scripted: bool },
}

/// One SSE event: `event: NAME`, `data: JSON`, blank line.
pub fn encode(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Output tokens of a reply: a quarter of the text and tool input length.
pub fn reply_output_tokens(reply: &Reply) -> u64 {
    let len: usize = reply
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text { deltas } => deltas.iter().map(String::len).sum(),
            Block::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
        })
        .sum();
    output_tokens(len)
}

fn final_usage(usage: Usage, reply: &Reply) -> Usage {
    Usage {
        output_tokens: reply_output_tokens(reply),
        ..usage
    }
}

/// The items of a streamed reply. `usage` carries the input side; output tokens are computed.
pub fn stream_items(reply: &Reply, msg_id: &str, model: &str, usage: Usage) -> Vec<Item> {
    let mut items = Vec::new();
    let mut ev = |name: &str, data: Value| items.push(Item::Event(encode(name, &data)));
    let start_usage = Usage {
        output_tokens: 1,
        ..usage
    };
    ev(
        "message_start",
        json!({
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": start_usage.to_json(),
            }
        }),
    );
    for (index, block) in reply.blocks.iter().enumerate() {
        match block {
            Block::Text { deltas } => {
                items.push(Item::Event(encode(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                )));
                if index == 0 {
                    items.push(Item::Event(encode("ping", &json!({"type": "ping"}))));
                }
                for d in deltas {
                    if !reply.delta_delay.is_zero() {
                        items.push(Item::Sleep(reply.delta_delay));
                    }
                    items.push(Item::Event(encode(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": d}}),
                    )));
                }
            }
            Block::ToolUse { id, name, input } => {
                items.push(Item::Event(encode(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                )));
                if index == 0 {
                    items.push(Item::Event(encode("ping", &json!({"type": "ping"}))));
                }
                let input = input.to_string();
                // Two partial pieces, split on a character boundary, as the API streams them.
                let mut mid = input.len() / 2;
                while !input.is_char_boundary(mid) {
                    mid -= 1;
                }
                for part in [&input[..mid], &input[mid..]] {
                    items.push(Item::Event(encode(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}}),
                    )));
                }
            }
        }
        items.push(Item::Event(encode(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        )));
        if index == 0 {
            items.push(Item::HoldPoint {
                scripted: reply.hold,
            });
        }
    }
    let usage = final_usage(usage, reply);
    items.push(Item::Event(encode(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": null},
            "usage": {
                "input_tokens": usage.input_tokens,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
                "output_tokens": usage.output_tokens,
            }
        }),
    )));
    items.push(Item::Event(encode(
        "message_stop",
        &json!({"type": "message_stop"}),
    )));
    items
}

/// The reply as one JSON message (a request without `"stream": true`).
pub fn message_json(reply: &Reply, msg_id: &str, model: &str, usage: Usage) -> Value {
    let content: Vec<Value> = reply
        .blocks
        .iter()
        .map(|b| match b {
            Block::Text { deltas } => json!({"type": "text", "text": deltas.concat()}),
            Block::ToolUse { id, name, input } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        })
        .collect();
    json!({
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": null,
        "usage": final_usage(usage, reply).to_json(),
    })
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The JSON body of an error response, e.g.
/// `{"type":"error","error":{"type":"rate_limit_error","message":"..."},"request_id":"..."}`.
pub fn error_json(step: &ErrorStep, request_id: &str) -> Value {
    let kind = error_type(step.status);
    let message = match &step.reset {
        // `4pm/America/Chicago` → "… resets 4pm (America/Chicago)"; a bare `4pm` has no zone.
        Some(reset) => match reset.split_once('/') {
            Some((clock, zone)) => {
                format!("You've hit your session limit · resets {clock} ({zone})")
            }
            None => format!("You've hit your session limit · resets {reset}"),
        },
        None => format!("fake {kind}"),
    };
    json!({
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": request_id,
    })
}

/// The headers of an error response besides the content type.
pub fn error_headers(step: &ErrorStep) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    if let Some(s) = step.retry_after {
        h.push(("retry-after", s.to_string()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Block;

    fn events(items: &[Item]) -> Vec<(String, Value)> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Event(b) => Some(b),
                _ => None,
            })
            .map(|b| {
                let s = std::str::from_utf8(b).unwrap();
                assert!(s.ends_with("\n\n"), "{s:?}");
                let mut lines = s.trim_end().lines();
                let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                assert!(lines.next().is_none());
                let v: Value = serde_json::from_str(data).unwrap();
                assert_eq!(v["type"], name);
                (name.to_string(), v)
            })
            .collect()
    }

    fn usage() -> Usage {
        Usage {
            input_tokens: 10,
            cache_creation_input_tokens: 20,
            cache_read_input_tokens: 30,
            output_tokens: 0,
        }
    }

    #[test]
    fn text_stream() {
        let reply = Reply {
            blocks: vec![Block::text("Hello there")],
            stop_reason: "end_turn",
            delta_delay: Duration::ZERO,
            hold: false,
        };
        let items = stream_items(&reply, "msg_1", "claude-sonnet-4-6", usage());
        let ev = events(&items);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[0].1["message"]["usage"]["cache_read_input_tokens"], 30);
        assert_eq!(ev[0].1["message"]["model"], "claude-sonnet-4-6");
        let text: String = ev
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, v)| v["delta"]["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(text, "Hello there");
        assert_eq!(ev[6].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(ev[6].1["usage"]["output_tokens"], 3);
        assert_eq!(ev[6].1["usage"]["input_tokens"], 10);
        assert!(items.contains(&Item::HoldPoint { scripted: false }));
        assert!(!items.iter().any(|i| matches!(i, Item::Sleep(_))));
    }

    #[test]
    fn tool_use_stream_and_json() {
        let input = json!({"command": "echo hi > hello.txt", "description": "d"});
        let reply = Reply {
            blocks: vec![Block::ToolUse {
                id: "toolu_1".into(),
                name: "Bash".into(),
                input: input.clone(),
            }],
            stop_reason: "tool_use",
            delta_delay: Duration::ZERO,
            hold: false,
        };
        let ev = events(&stream_items(&reply, "msg_1", "m", usage()));
        assert_eq!(ev[1].1["content_block"]["type"], "tool_use");
        assert_eq!(ev[1].1["content_block"]["name"], "Bash");
        assert_eq!(ev[1].1["content_block"]["id"], "toolu_1");
        let partial: String = ev
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, v)| {
                assert_eq!(v["delta"]["type"], "input_json_delta");
                v["delta"]["partial_json"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&partial).unwrap(), input);
        let md = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(md.1["delta"]["stop_reason"], "tool_use");

        let msg = message_json(&reply, "msg_1", "m", usage());
        assert_eq!(msg["content"][0]["input"], input);
        assert_eq!(msg["stop_reason"], "tool_use");
        assert!(msg["usage"]["output_tokens"].as_u64().unwrap() > 1);
    }

    #[test]
    fn slow_and_hold_items() {
        let reply = Reply {
            blocks: vec![
                Block::Text {
                    deltas: vec!["a".into(), "b".into()],
                },
                Block::text("c"),
            ],
            stop_reason: "end_turn",
            delta_delay: Duration::from_millis(5),
            hold: true,
        };
        let items = stream_items(&reply, "m", "m", usage());
        assert_eq!(
            items
                .iter()
                .filter(|i| **i == Item::Sleep(Duration::from_millis(5)))
                .count(),
            3
        );
        let hold = items
            .iter()
            .position(|i| *i == Item::HoldPoint { scripted: true })
            .unwrap();
        // The first block is complete before the hold, the second comes after it.
        let before = events(&items[..hold]);
        assert_eq!(before.last().unwrap().0, "content_block_stop");
        let after = events(&items[hold..]);
        assert_eq!(after[0].0, "content_block_start");
        assert_eq!(after[0].1["index"], 1);
    }

    #[test]
    fn error_bodies() {
        let v = error_json(
            &ErrorStep {
                status: 429,
                retry_after: None,
                times: None,
                reset: None,
            },
            "req_1",
        );
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(error_type(529), "overloaded_error");
        assert_eq!(error_type(401), "authentication_error");
        assert_eq!(error_type(500), "api_error");
        let h = error_headers(&ErrorStep {
            status: 429,
            retry_after: Some(1),
            times: None,
            reset: None,
        });
        assert_eq!(h, vec![("retry-after", "1".to_string())]);
    }
}
