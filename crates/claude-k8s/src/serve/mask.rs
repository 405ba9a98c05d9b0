//! Masking the secrets the adapter knows in everything it forwards. Pure.
//!
//! The agent can print its own environment (`env`, `echo $PAPERCLIP_API_KEY`, a failing tool that dumps its
//! config), so the run's token, API keys and the values of secret-named env entries are replaced in every line,
//! progress message, meta and result before they leave the serve process. Lines are masked whole: the log
//! follower only hands over complete lines, so a value split across network chunks is joined before it is
//! looked at. Stream-json escapes some characters, so a secret is also matched in its JSON-escaped spelling.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

/// What a masked secret reads as.
pub const MASK: &str = "***REDACTED***";

/// Values shorter than this are not masked: they are too likely to be ordinary words or numbers ("true", a port),
/// and masking them would garble the transcript while protecting nothing.
pub const MIN_SECRET_LEN: usize = 8;

#[derive(Debug, Default, Clone)]
pub struct Masker {
    matcher: Option<AhoCorasick>,
}

impl Masker {
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref().trim();
            if secret.len() < MIN_SECRET_LEN {
                continue;
            }
            patterns.push(secret.to_owned());
            // `"…"`: the spelling inside a JSON string, quotes dropped.
            let quoted = serde_json::to_string(secret).unwrap_or_default();
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped != secret {
                patterns.push(escaped.to_owned());
            }
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Self::default();
        }
        // Leftmost-longest: when one secret contains another, the whole of the longer one is masked.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Self { matcher }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => {
                let replacements = vec![MASK; m.patterns_len()];
                Cow::Owned(m.replace_all(text, &replacements))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Masks every string (and object key) in a JSON value, in place.
    pub fn mask_json(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(masked) = self.mask(s) {
                    *s = masked;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.mask_json(&mut v);
                    map.insert(self.mask(&k).into_owned(), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_every_occurrence_and_leaves_the_rest() {
        let m = Masker::new(["pcp_run_token_0123456789", "sk-ant-api03-abcdefgh"]);
        assert_eq!(
            m.mask("key=sk-ant-api03-abcdefgh and pcp_run_token_0123456789, again sk-ant-api03-abcdefgh"),
            format!("key={MASK} and {MASK}, again {MASK}")
        );
        assert!(matches!(m.mask("nothing secret here"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_secrets() {
        let m = Masker::new(["true", "3100", ""]);
        assert!(m.is_empty());
        assert_eq!(m.mask("true 3100"), "true 3100");
    }

    #[test]
    fn the_longer_of_overlapping_secrets_wins() {
        let m = Masker::new(["abcdefgh", "abcdefghijkl"]);
        assert_eq!(m.mask("xabcdefghijklx"), format!("x{MASK}x"));
    }

    #[test]
    fn json_escaped_spellings_are_masked_too() {
        let secret = "pa\"ss\\word/42";
        let m = Masker::new([secret]);
        let line =
            serde_json::to_string(&json!({"type": "user", "text": format!("echo {secret}")}))
                .unwrap();
        assert!(!m.mask(&line).contains("ss\\\\word"), "{}", m.mask(&line));
        assert!(m.mask(&line).contains(MASK));
    }

    #[test]
    fn json_values_are_masked_deeply_keys_included() {
        let m = Masker::new(["secret-value-1"]);
        let mut v = json!({"a": ["x secret-value-1 y", {"secret-value-1": 1}], "n": 5});
        m.mask_json(&mut v);
        assert_eq!(v, json!({"a": [format!("x {MASK} y"), {MASK: 1}], "n": 5}));
    }
}
