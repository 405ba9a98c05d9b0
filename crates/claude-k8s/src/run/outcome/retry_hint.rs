//! When to retry after a usage limit, from Claude's own words. Pure (the clock is passed in).
//!
//! Claude reports a subscription limit as "You've hit your session limit · resets 4pm (America/Chicago)".
//! claude_local turns the reset time into `retryNotBefore` (the next such wall-clock time, in the named zone or
//! else the server's own), so Paperclip holds the agent's next run until then instead of failing it again at once.

use std::sync::LazyLock;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use regex::Regex;

/// Claude's usage-limit notices ("You've hit your session limit", "weekly limit reached", …).
const NOTICE: &str = r"(?:you(?:'|’)ve\s+hit\s+your\s+(?:\w+\s+)?limit|session\s+limit\s+(?:reached|exceeded)|out\s+of\s+extra\s+usage|extra\s+usage|usage\s+(?:limit|cap)\s+reached|5[-\s]?hour\s+limit\s+reached|weekly\s+limit\s+reached)";

static LIMIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("(?i){NOTICE}")).expect("a valid pattern"));

/// A usage-limit notice followed, within a sentence or two, by "resets [at] <clock> [(<zone>)]".
static RESET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?is){NOTICE}.{{0,120}}?\bresets?\s+(?:at\s+)?(\d{{1,2}})(?::(\d{{2}}))?\s*([ap])\.?\s*m\.?(?:\s*\(([^)]+)\))?"
    ))
    .expect("a valid pattern")
});

/// Whether `text` holds one of Claude's usage-limit notices (a provider quota, not a transient error).
pub fn is_usage_limit_notice(text: &str) -> bool {
    LIMIT.is_match(text)
}

/// The first reset time named in `text` after a usage-limit notice, as the next such instant after `now`.
pub fn retry_not_before(text: &str, now: &Zoned) -> Option<Timestamp> {
    let caps = RESET.captures(text)?;
    let hour12: i8 = caps.get(1)?.as_str().parse().ok()?;
    let minute: i8 = caps.get(2).map_or(Ok(0), |m| m.as_str().parse()).ok()?;
    if !(1..=12).contains(&hour12) || !(0..=59).contains(&minute) {
        return None;
    }
    let pm = caps.get(3)?.as_str().eq_ignore_ascii_case("p");
    let hour = hour12 % 12 + if pm { 12 } else { 0 };
    // A zone Claude named that this machine does not know: fall back to local time, as claude_local does.
    let zone = caps
        .get(4)
        .and_then(|z| TimeZone::get(z.as_str().trim()).ok())
        .unwrap_or_else(|| now.time_zone().clone());
    let here = now.with_time_zone(zone);
    let at = here
        .with()
        .time(Time::new(hour, minute, 0, 0).ok()?)
        .build()
        .ok()?;
    let at = if at.timestamp() <= now.timestamp() {
        at.checked_add(1.day()).ok()?
    } else {
        at
    };
    Some(at.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        s.parse().unwrap()
    }

    #[test]
    fn the_named_zone_is_used_and_a_past_time_means_tomorrow() {
        let now = at("2026-11-25T10:00:00+00:00[UTC]");
        let text = "API Error: 429 You've hit your session limit · resets 4pm (America/Chicago)";
        // 4 pm in Chicago (UTC-6 in November) is 22:00 UTC, later today.
        assert_eq!(
            retry_not_before(text, &now),
            Some("2026-11-25T22:00:00Z".parse().unwrap())
        );
        let late = at("2026-11-25T23:00:00+00:00[UTC]");
        assert_eq!(
            retry_not_before(text, &late),
            Some("2026-11-26T22:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn without_a_zone_the_servers_own_is_used() {
        let now = at("2026-11-25T10:00:00+01:00[Europe/Berlin]");
        let text = "Claude usage limit reached. Your limit resets at 3:30 p.m.";
        assert_eq!(
            retry_not_before(text, &now),
            Some("2026-11-25T14:30:00Z".parse().unwrap())
        );
    }

    #[test]
    fn only_after_a_usage_limit_notice() {
        let now = at("2026-11-25T10:00:00+00:00[UTC]");
        assert_eq!(retry_not_before("the counter resets at 4pm", &now), None);
        assert_eq!(retry_not_before("rate_limit_error: fake", &now), None);
        assert_eq!(
            retry_not_before("You've hit your limit · resets 13pm", &now),
            None,
            "not a clock time"
        );
    }
}
