//! The `[[fake:KIND ARGS]]` markers: finding them in a text and parsing each into a [`Step`].

use std::time::Duration;

use serde_json::{Value, json};

use super::DEFAULT_REPLY;

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
