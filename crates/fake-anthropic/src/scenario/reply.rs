//! A planned reply's content: its blocks, and text cut into deltas the way a model streams it.

use std::time::Duration;

use serde_json::Value;

use super::LongUnit;

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
