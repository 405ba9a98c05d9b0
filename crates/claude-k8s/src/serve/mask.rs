//! Masking the secrets the adapter knows in everything it forwards. Pure.
//!
//! The agent can print its own environment (`env`, `echo $PAPERCLIP_API_KEY`, a failing tool that dumps its
//! config), so the run's token, API keys and the values of secret-named env entries are replaced in every line,
//! progress message, meta and result before they leave the serve process. Lines are masked whole: the log
//! follower only hands over complete lines, so a value split across network chunks is joined before it is
//! looked at. A secret is also matched in the spellings an agent's tools commonly print it in ([`spellings`]):
//! JSON-escaped (stream-json escapes quotes and backslashes; other encoders `/` or every symbol as `\u002b`),
//! base64 (standard and URL-safe, with and without padding, wrapped as `base64` and `openssl` wrap it, and at each
//! of the three byte offsets a secret can have inside a longer base64 text), URL-encoded and hex. Masking is a safety
//! net for output that carries a secret by accident, not a barrier: an agent that has a value can always print it
//! in a spelling no list foresees (docs/security.md says what it can and cannot catch).

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use serde_json::Value;

/// What a masked secret reads as.
pub const MASK: &str = "***REDACTED***";

/// Values shorter than this are not masked: they are too likely to be ordinary words or numbers ("true", a port),
/// and masking them would garble the transcript while protecting nothing.
pub const MIN_SECRET_LEN: usize = 8;

#[derive(Debug, Default, Clone)]
pub struct Masker {
    matcher: Option<Matcher>,
}

/// The patterns, found by their first [`MIN_SECRET_LEN`] bytes and then compared whole.
///
/// One automaton of the whole patterns would be simpler, but every run has a masker of its own and the patterns are
/// long: a run token of 250 characters has 35 spellings of 13 KiB together, and the automaton of them is 5.6 MiB as
/// the DFA the builder picks for up to 100 patterns, 150 KiB as its smallest NFA (heaptrack of the serve process
/// under 300 runs on the simulated node: the maskers were two thirds of its heap; bench/simulated-node.md). The
/// automaton of the patterns' prefixes is a few KiB, and the patterns themselves are all that is kept besides.
#[derive(Debug, Clone)]
struct Matcher {
    prefixes: AhoCorasick,
    /// By prefix (its pattern id in `prefixes`): the patterns that start with it, longest first.
    patterns: Vec<Vec<Box<str>>>,
}

impl Matcher {
    fn new(mut patterns: Vec<String>) -> Option<Self> {
        // Longest first within a prefix: the longer of two secrets that start alike is masked whole.
        patterns.sort_by(|a, b| {
            a.as_bytes()[..MIN_SECRET_LEN]
                .cmp(&b.as_bytes()[..MIN_SECRET_LEN])
                .then(b.len().cmp(&a.len()))
                .then(a.cmp(b))
        });
        patterns.dedup();
        let mut prefixes: Vec<&[u8]> = Vec::new();
        let mut grouped: Vec<Vec<Box<str>>> = Vec::new();
        for pattern in &patterns {
            let prefix = &pattern.as_bytes()[..MIN_SECRET_LEN];
            if prefixes.last() != Some(&prefix) {
                prefixes.push(prefix);
                grouped.push(Vec::new());
            }
            if let Some(group) = grouped.last_mut() {
                group.push(pattern.as_str().into());
            }
        }
        // All prefixes have the same length, so overlapping matches arrive in the order of their starts.
        let prefixes = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&prefixes)
            .ok()?;
        Some(Self {
            prefixes,
            patterns: grouped,
        })
    }

    /// Leftmost-longest: at the first position where a pattern starts, the longest one there; then on after it.
    fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = String::new();
        let mut done = 0;
        for found in self.prefixes.find_overlapping_iter(text) {
            let start = found.start();
            if start < done {
                continue;
            }
            let rest = &text.as_bytes()[start..];
            let whole = self.patterns[found.pattern().as_usize()]
                .iter()
                .find(|p| rest.starts_with(p.as_bytes()));
            if let Some(pattern) = whole {
                // A pattern is UTF-8 text, so it starts and ends on character boundaries of `text`.
                out.push_str(&text[done..start]);
                out.push_str(MASK);
                done = start + pattern.len();
            }
        }
        if out.is_empty() {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[done..]);
        Cow::Owned(out)
    }

    fn memory_usage(&self) -> usize {
        let patterns: usize = self
            .patterns
            .iter()
            .map(|g| {
                g.iter()
                    .map(|p| p.len() + size_of::<Box<str>>())
                    .sum::<usize>()
            })
            .sum();
        self.prefixes.memory_usage() + patterns
    }
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
            patterns.extend(
                spellings(secret)
                    .into_iter()
                    .filter(|p| p.len() >= MIN_SECRET_LEN),
            );
        }
        if patterns.is_empty() {
            return Self::default();
        }
        Self {
            matcher: Matcher::new(patterns),
        }
    }

    /// About what the matcher holds on the heap, in bytes (its automaton and its patterns).
    pub fn memory_usage(&self) -> usize {
        self.matcher.as_ref().map_or(0, Matcher::memory_usage)
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(m) => m.mask(text),
            None => Cow::Borrowed(text),
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

/// Every spelling of `secret` the masker matches: the value and its encoded forms, each also as it reads inside a
/// JSON string (the transcript is stream-json).
pub fn spellings(secret: &str) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = secret.as_bytes();
    let mut base = vec![secret.to_owned()];
    // base64 of the value alone, padded or not, and as the `base64` (76 columns) and `openssl` (64) tools wrap it.
    let full = STANDARD.encode(bytes);
    for width in [76, 64] {
        if full.len() > width {
            let lines: Vec<&str> = full
                .as_bytes()
                .chunks(width)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            base.push(lines.join("\n"));
            base.push(lines.join("\r\n"));
        }
    }
    base.push(full);
    base.push(URL_SAFE.encode(bytes));
    // Inside a longer base64 text the value starts at byte offset 0, 1 or 2 of a 3-byte group, and each offset
    // encodes it differently: the characters that depend on the value's bytes alone, for each offset.
    for offset in 0..3 {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(bytes);
        let start = (8 * offset).div_ceil(6);
        let end = 8 * (offset + bytes.len()) / 6;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(&shifted);
            if let Some(core) = enc.get(start..end) {
                base.push(core.to_owned());
            }
        }
    }
    // URL-encoded: every symbol (upper and lower hex), and as encodeURIComponent and form encoding leave some.
    let every = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    base.push(every.to_ascii_lowercase_hex());
    base.push(every.clone());
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    let component = percent_encoding::utf8_percent_encode(secret, COMPONENT).to_string();
    base.push(component.replace("%20", "+"));
    base.push(component);
    // Every byte as hex, bare (`xxd -p`, `od -tx1` joined) or percent-encoded (a shell one-liner's URL encoding),
    // in lower and upper case.
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let every_byte: String = bytes.iter().map(|b| format!("%{b:02x}")).collect();
    base.extend([
        hex.to_ascii_uppercase(),
        hex,
        every_byte.to_ascii_uppercase(),
        every_byte,
    ]);
    let mut out = Vec::new();
    for form in base {
        // Inside a JSON string: the standard escapes, `/` escaped too, or every symbol as \u00XX.
        let quoted = serde_json::to_string(&form).unwrap_or_default();
        let escaped = quoted[1..quoted.len() - 1].to_owned();
        out.push(escaped.replace('/', "\\/"));
        out.push(escaped);
        for upper in [false, true] {
            out.push(
                form.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_string()
                        } else if upper {
                            format!("\\u{:04X}", c as u32)
                        } else {
                            format!("\\u{:04x}", c as u32)
                        }
                    })
                    .collect(),
            );
        }
        out.push(form);
    }
    out.sort();
    out.dedup();
    out
}

/// `%2F` → `%2f`: some encoders write lower-case hex digits.
trait LowerHex {
    fn to_ascii_lowercase_hex(&self) -> String;
}

impl LowerHex for String {
    fn to_ascii_lowercase_hex(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut rest = self.as_str();
        while let Some(i) = rest.find('%') {
            out.push_str(&rest[..i]);
            let code = rest.get(i..i + 3).unwrap_or(&rest[i..]);
            out.push_str(&code.to_ascii_lowercase());
            rest = &rest[i + code.len()..];
        }
        out.push_str(rest);
        out
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

    /// A run's masker is small, whatever the builder would pick: a thousand runs hold one each. The secrets of a
    /// stage run (a run JWT, an API key, a few secret env values) in all their spellings, measured by the matcher
    /// itself (the automaton of the whole patterns: 9.9 MiB as a DFA, 247 KiB as the smallest NFA).
    #[test]
    fn a_runs_masker_holds_little_memory() {
        let jwt = format!(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{}.{}",
            "eyJzdWIiOiJhZ2VudC0xMjM0NTY3OCIsInJ1bl9pZCI6InJ1bi0wMTIzNDU2Nzg5YWJjZGVmIiwiY29tcGFueV9pZCI6ImNvLTEyMyIsImV4cCI6MTc5OTk5OTk5OX0",
            "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2ln"
        );
        let secrets = [
            jwt.as_str(),
            "sk-ant-api03-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789abcdefghijklmnop",
            "pcp_agent_key_0123456789abcdef0123456789abcdef",
            "s3cr3t-value/with+symbols=and spaces",
        ];
        let m = Masker::new(secrets);
        assert!(m.memory_usage() > 0);
        assert!(
            m.memory_usage() < 64 * 1024,
            "{} bytes for one run's masker",
            m.memory_usage()
        );
        for s in secrets {
            assert_eq!(m.mask(&format!("a {s} b")), format!("a {MASK} b"));
        }
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

    /// Every encoded spelling the doc promises, made by the encoders an agent's tools use.
    #[test]
    fn encoded_spellings_are_masked() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        // Long enough that `base64` wraps it, with symbols that every encoding treats differently.
        let secret = "sk-ant-api03-Zx9/+k_Q~a.b=c d&e?f#g%h\"i<j>k'l(m)n*o!p".repeat(2);
        let m = Masker::new([&secret]);
        let b64 = STANDARD.encode(&secret);
        let wrapped: Vec<String> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let every =
            percent_encoding::utf8_percent_encode(&secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let forms = vec![
            secret.clone(),
            b64.clone(),
            b64.trim_end_matches('=').to_owned(),
            URL_SAFE_NO_PAD.encode(&secret),
            wrapped.join("\n"),
            every.clone(),
            every.to_ascii_lowercase_hex(),
            secret.bytes().map(|b| format!("%{b:02x}")).collect(),
            secret.bytes().map(|b| format!("{b:02X}")).collect(),
            serde_json::to_string(&secret).unwrap(),
            secret
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_string()
                    } else {
                        format!("\\u{:04x}", c as u32)
                    }
                })
                .collect(),
            serde_json::to_string(&serde_json::to_string(&b64).unwrap()).unwrap(),
        ];
        for form in forms {
            let line = format!("{{\"text\": \"before {form} after\"}}");
            let masked = m.mask(&line);
            // Gone whole: at most the quotes around a doubly-quoted form are left of it.
            let left = masked
                .split(MASK)
                .map(|piece| common_run(piece, &form))
                .max()
                .unwrap_or(0);
            assert!(masked.contains(MASK) && left <= 3, "{form}: {masked}");
        }
        // A secret inside a longer base64 text, at each byte offset: all of it but the edge characters that also
        // depend on the bytes around it is masked.
        for prefix in ["", "x", "xy", "xyz", "Authorization: Bearer "] {
            let form = STANDARD.encode(format!("{prefix}{secret} and more"));
            let masked = m.mask(&form);
            let hidden = form.len() - (masked.len() - MASK.len());
            assert!(
                masked.contains(MASK) && hidden + 4 >= 4 * secret.len() / 3,
                "{prefix:?}: {masked}"
            );
        }
    }

    /// The longest run of `piece` that is also a substring of `form`.
    fn common_run(piece: &str, form: &str) -> usize {
        let p: Vec<char> = piece.chars().collect();
        let mut best = 0;
        for i in 0..p.len() {
            for j in (i + best + 1)..=p.len() {
                let s: String = p[i..j].iter().collect();
                if form.contains(&s) {
                    best = j - i;
                } else {
                    break;
                }
            }
        }
        best
    }

    #[test]
    fn short_spellings_are_never_patterns() {
        // An 8-character secret: its spellings are 8 or longer, nothing shorter is matched.
        let m = Masker::new(["abcd1234"]);
        assert_eq!(m.mask("abcd 1234 YWJj"), "abcd 1234 YWJj");
        assert_eq!(m.mask("abcd1234"), MASK);
    }

    #[test]
    fn json_values_are_masked_deeply_keys_included() {
        let m = Masker::new(["secret-value-1"]);
        let mut v = json!({"a": ["x secret-value-1 y", {"secret-value-1": 1}], "n": 5});
        m.mask_json(&mut v);
        assert_eq!(v, json!({"a": [format!("x {MASK} y"), {MASK: 1}], "n": 5}));
    }
}
