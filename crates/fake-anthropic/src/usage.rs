//! Token counts that look like the real API's: about four characters a token, and a simulated
//! prompt cache keyed on the `cache_control` breakpoints the client sets.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The usage of one reply, as the API reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    /// The usage object of `message_start` (output tokens are not known yet) and of a JSON reply.
    pub fn to_json(self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_input_tokens,
                "ephemeral_1h_input_tokens": 0
            },
            "output_tokens": self.output_tokens,
            "service_tier": "standard"
        })
    }
}

/// Tokens of a piece of text: a quarter of its length, rounded up.
pub fn tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// Output tokens of a reply text, at least one.
pub fn output_tokens(text_len: usize) -> u64 {
    tokens(text_len).max(1)
}

/// The prompt as the cache sees it: tools, then system blocks, then message content blocks, each
/// serialized without its `cache_control`, and whether it carries a breakpoint.
fn segments(body: &Value) -> Vec<(String, bool)> {
    fn seg(v: &Value) -> (String, bool) {
        match v {
            Value::Object(map) => {
                let bp = map.contains_key("cache_control");
                let stripped: Map<String, Value> = map
                    .iter()
                    .filter(|(k, _)| k.as_str() != "cache_control")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (Value::Object(stripped).to_string(), bp)
            }
            other => (other.to_string(), false),
        }
    }
    let mut out = Vec::new();
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        out.extend(tools.iter().map(seg));
    }
    match body.get("system") {
        Some(Value::Array(blocks)) => out.extend(blocks.iter().map(seg)),
        Some(Value::String(s)) => out.push((s.clone(), false)),
        _ => {}
    }
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for m in messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            match m.get("content") {
                Some(Value::Array(blocks)) => {
                    out.extend(blocks.iter().map(|b| {
                        let (s, bp) = seg(b);
                        (format!("{role}:{s}"), bp)
                    }));
                }
                Some(Value::String(s)) => out.push((format!("{role}:{s}"), false)),
                _ => {}
            }
        }
    }
    out
}

/// Tokens of the whole prompt, without touching any cache (for `count_tokens`).
pub fn prompt_tokens(body: &Value) -> u64 {
    tokens(segments(body).iter().map(|(s, _)| s.len()).sum()).max(1)
}

/// A simulated prompt cache: remembers the prefixes that ended at a breakpoint.
#[derive(Debug, Default)]
pub struct PromptCache {
    prefixes: HashSet<u64>,
}

impl PromptCache {
    pub fn clear(&mut self) {
        self.prefixes.clear();
    }

    /// Input-side usage of a request: the longest prefix seen at an earlier breakpoint is read
    /// from the cache, the rest up to the last breakpoint is written to it, the remainder is
    /// plain input. Remembers this request's breakpoints.
    pub fn usage(&mut self, body: &Value) -> Usage {
        let segs = segments(body);
        let model = body.get("model").and_then(Value::as_str).unwrap_or("");
        let mut hasher = DefaultHasher::new();
        model.hash(&mut hasher);
        let mut chars = 0usize;
        let mut read_chars = 0usize;
        let mut last_bp_chars = 0usize;
        let mut new_prefixes = Vec::new();
        for (s, bp) in &segs {
            s.hash(&mut hasher);
            chars += s.len();
            let h = hasher.finish();
            if self.prefixes.contains(&h) {
                read_chars = chars;
            }
            if *bp {
                last_bp_chars = chars;
                new_prefixes.push(h);
            }
        }
        self.prefixes.extend(new_prefixes);
        let total = tokens(chars);
        let read = tokens(read_chars);
        let creation = tokens(last_bp_chars).saturating_sub(read);
        Usage {
            input_tokens: total.saturating_sub(read + creation).max(1),
            cache_creation_input_tokens: creation,
            cache_read_input_tokens: read,
            output_tokens: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_breakpoint_prefixes() {
        let sys = "S".repeat(4000);
        let first = json!({
            "model": "m",
            "system": [{"type": "text", "text": sys, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]}]
        });
        let mut cache = PromptCache::default();
        let u1 = cache.usage(&first);
        assert_eq!(u1.cache_read_input_tokens, 0);
        assert!(u1.cache_creation_input_tokens > 1000, "{u1:?}");
        assert_eq!(u1.input_tokens, 1);

        // The next call moves the breakpoint to the newest message: the old prefix is read.
        let second = json!({
            "model": "m",
            "system": [{"type": "text", "text": sys, "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hello"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "hi there"}]},
                {"role": "user", "content": [{"type": "text", "text": "more", "cache_control": {"type": "ephemeral"}}]}
            ]
        });
        let u2 = cache.usage(&second);
        assert_eq!(u2.cache_read_input_tokens, u1.cache_creation_input_tokens);
        assert!(
            u2.cache_creation_input_tokens > 0 && u2.cache_creation_input_tokens < 60,
            "{u2:?}"
        );

        // Same request again: everything up to the last breakpoint is read.
        let u3 = cache.usage(&second);
        assert_eq!(u3.cache_creation_input_tokens, 0);
        assert!(u3.cache_read_input_tokens > u2.cache_read_input_tokens);

        cache.clear();
        assert_eq!(cache.usage(&second).cache_read_input_tokens, 0);
    }

    #[test]
    fn no_breakpoints_means_plain_input() {
        let body =
            json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(400)}]});
        let u = PromptCache::default().usage(&body);
        assert_eq!(u.cache_creation_input_tokens + u.cache_read_input_tokens, 0);
        assert_eq!(u.input_tokens, prompt_tokens(&body));
        assert!(u.input_tokens >= 100);
    }
}
