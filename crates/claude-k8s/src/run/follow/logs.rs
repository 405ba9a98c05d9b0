//! Following the claude container's log through the API server, as one ordered stream of lines.
//!
//! The log is read with timestamps so a stream that ends while the container still runs (a cut connection, an
//! API server restart, a proxy's idle timeout) is reopened from the last line delivered, with the overlap
//! dropped. After the container has terminated the stream ends by itself, and one last read from the same
//! position makes sure no tail line is lost.

use std::time::Duration;

use futures::AsyncBufReadExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use tokio::sync::{mpsc, watch};

use crate::run::plan::CLAUDE_CONTAINER;

/// Where the reader is: the timestamp of the last delivered line and how many lines carried exactly it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cursor {
    last: Option<Timestamp>,
    at_last: usize,
}

impl Cursor {
    /// Whether a line stamped `ts` is new, advancing the cursor if so. Lines are in time order within a stream,
    /// and a reopened stream starts at or before the cursor (the API takes whole seconds).
    fn admit(&mut self, ts: Timestamp, seen_at_ts: &mut usize) -> bool {
        match self.last {
            Some(last) if ts < last => false,
            Some(last) if ts == last => {
                *seen_at_ts += 1;
                if *seen_at_ts <= self.at_last {
                    return false;
                }
                self.at_last += 1;
                true
            }
            _ => {
                self.last = Some(ts);
                self.at_last = 1;
                *seen_at_ts = 1;
                true
            }
        }
    }

    /// Where to reopen: the cursor's whole second, rounded down. (kube rounds `sinceTime` to the nearest second,
    /// which could skip lines later in the same second, so it is truncated here first.)
    fn since(&self) -> Option<Timestamp> {
        let round = jiff::TimestampRound::new()
            .smallest(jiff::Unit::Second)
            .mode(jiff::RoundMode::Trunc);
        self.last.map(|t| t.round(round).unwrap_or(t))
    }
}

/// Splits `2026-11-25T07:00:00.123456789Z text` into its timestamp and text. The text is decoded only here, from
/// a whole line, so a multi-byte character split across network chunks arrives intact; bytes that are not UTF-8
/// at all become U+FFFD instead of breaking the stream.
fn split_timestamp(line: &[u8]) -> Option<(Timestamp, String)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (ts, len) = timestamp_prefix(line)?;
    let text = join_partials(line.get(len..).unwrap_or_default());
    Some((ts, String::from_utf8_lossy(&text).into_owned()))
}

/// `<RFC 3339 timestamp> ` at the start of `bytes`: the timestamp and the prefix's length (space included, or
/// the whole input when it is only a timestamp).
fn timestamp_prefix(bytes: &[u8]) -> Option<(Timestamp, usize)> {
    // The kubelet's stamps are 20 to 30 characters; never search a long line for its first space.
    let head = &bytes[..bytes.len().min(40)];
    let space = head.iter().position(|b| *b == b' ');
    let end = match space {
        Some(i) => i,
        None if bytes.len() <= 40 => bytes.len(),
        None => return None,
    };
    let stamp = std::str::from_utf8(&bytes[..end]).ok()?;
    if !stamp.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let ts = stamp.parse().ok()?;
    Some((ts, (end + 1).min(bytes.len())))
}

/// The size of the pieces a container runtime cuts a long line into (Docker's json-file driver and containerd's
/// CRI logger both use 16 KiB).
const PARTIAL_LINE: usize = 16 * 1024;

/// Undoes the runtime's cutting of a long line: with `timestamps=true` the kubelet prints every 16 KiB piece with
/// its own timestamp, so a line longer than that arrives as `<ts> piece<ts> piece…`. The stamps are removed only
/// at the 16 KiB boundaries, so a timestamp the agent itself printed is never touched. Works on bytes: a
/// multi-byte character cut at a boundary is whole again before the line is decoded.
fn join_partials(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if text.len() <= PARTIAL_LINE {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut joined = Vec::with_capacity(text.len());
    let mut rest = text;
    while rest.len() > PARTIAL_LINE {
        joined.extend_from_slice(&rest[..PARTIAL_LINE]);
        let after = &rest[PARTIAL_LINE..];
        match timestamp_prefix(after) {
            Some((_, len)) => rest = &after[len..],
            None => {
                rest = after;
                break;
            }
        }
    }
    joined.extend_from_slice(rest);
    std::borrow::Cow::Owned(joined)
}

/// Delivers the container's lines to `out` until the container has terminated (`terminated` turns true) and its
/// log has been read to the end; a stream silent for `silence` is reopened. Returns the number of lines delivered.
pub async fn follow(
    pods: Api<Pod>,
    pod: String,
    out: mpsc::Sender<String>,
    mut terminated: watch::Receiver<bool>,
    silence: Duration,
) -> u64 {
    let mut cursor = Cursor::default();
    let mut delivered = 0u64;
    let mut backoff = Duration::from_millis(200);
    loop {
        let finished_before_open = *terminated.borrow();
        let params = LogParams {
            container: Some(CLAUDE_CONTAINER.into()),
            follow: !finished_before_open,
            timestamps: true,
            since_time: cursor.since(),
            ..Default::default()
        };
        match pods.log_stream(&pod, &params).await {
            Ok(mut reader) => {
                let mut seen_at_ts = 0usize;
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    let read =
                        tokio::time::timeout(silence, reader.read_until(b'\n', &mut raw)).await;
                    match read {
                        Ok(Ok(0)) => break,
                        Ok(Ok(_)) => {
                            if !raw.ends_with(b"\n") && !finished_before_open {
                                // The stream broke inside a line: it is read again, whole, from the cursor (in
                                // the final read after termination, a last line without newline is complete).
                                tracing::debug!(
                                    bytes = raw.len(),
                                    "log stream ended inside a line"
                                );
                                break;
                            }
                            let Some((ts, text)) = split_timestamp(&raw) else {
                                // Its length only: the agent's output may hold secrets, and tracing is not masked.
                                tracing::debug!(bytes = raw.len(), "log line without a timestamp");
                                continue;
                            };
                            if cursor.admit(ts, &mut seen_at_ts) {
                                delivered += 1;
                                if out.send(text).await.is_err() {
                                    return delivered;
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "log stream broke");
                            break;
                        }
                        Err(_) => {
                            tracing::debug!(
                                secs = silence.as_secs(),
                                "log stream silent: reopening it"
                            );
                            break;
                        }
                    }
                }
                backoff = Duration::from_millis(200);
            }
            Err(e) => tracing::debug!(error = %e, pod = %pod, "cannot open the log stream"),
        }
        if finished_before_open {
            return delivered;
        }
        // The stream ended: either the container terminated (read once more, without follow, to get the tail)
        // or the connection was cut (reopen after a short backoff, unless termination arrives first).
        if !*terminated.borrow() {
            let _ = tokio::time::timeout(backoff, terminated.wait_for(|t| *t)).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn splits_kubelet_timestamps() {
        let (t, text) = split_timestamp(b"2026-11-25T07:00:00.123456789Z {\"a\": 1} x\n").unwrap();
        assert_eq!(t, ts("2026-11-25T07:00:00.123456789Z"));
        assert_eq!(text, "{\"a\": 1} x");
        assert_eq!(split_timestamp(b"2026-11-25T07:00:01Z\n").unwrap().1, "");
        assert!(split_timestamp(b"garbage line").is_none());
        // Multi-byte characters survive; invalid bytes become U+FFFD instead of an error.
        let (_, text) =
            split_timestamp("2026-11-25T07:00:01Z h\u{e9}llo \u{1f980}\r\n".as_bytes()).unwrap();
        assert_eq!(text, "h\u{e9}llo \u{1f980}");
        let (_, text) = split_timestamp(b"2026-11-25T07:00:01Z a\xffb\n").unwrap();
        assert_eq!(text, "a\u{fffd}b");
    }

    #[test]
    fn long_lines_cut_by_the_runtime_are_joined_at_16_kib_boundaries_only() {
        // "é" then x's then "🦀": the runtime's cuts fall at 16 KiB, one of them inside a multi-byte character.
        let mut original = "é".as_bytes().to_vec();
        original.extend(std::iter::repeat_n(b'x', PARTIAL_LINE * 2 - 3));
        original.extend("🦀 2026-11-25T07:00:09Z not a cut".as_bytes());
        let mut wire = b"2026-11-25T07:00:01.000000001Z ".to_vec();
        for (i, piece) in original.chunks(PARTIAL_LINE).enumerate() {
            if i > 0 {
                wire.extend(format!("2026-11-25T07:00:01.00000000{}Z ", i + 1).as_bytes());
            }
            wire.extend(piece);
        }
        wire.push(b'\n');
        let (ts, text) = split_timestamp(&wire).unwrap();
        assert_eq!(
            ts,
            "2026-11-25T07:00:01.000000001Z"
                .parse::<Timestamp>()
                .unwrap()
        );
        assert_eq!(
            text.as_bytes(),
            original.as_slice(),
            "joined exactly, the agent's own timestamp kept"
        );
        // A line of exactly one piece, or shorter, is left alone.
        let short = format!("2026-11-25T07:00:01Z {}\n", "y".repeat(PARTIAL_LINE));
        assert_eq!(
            split_timestamp(short.as_bytes()).unwrap().1.len(),
            PARTIAL_LINE
        );
    }

    #[test]
    fn a_reopened_stream_drops_the_overlap_exactly() {
        let mut c = Cursor::default();
        let mut n = 0;
        // First stream: three lines, two sharing a timestamp.
        assert!(c.admit(ts("2026-01-01T00:00:01.1Z"), &mut n));
        assert!(c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
        assert!(c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
        // Reopened from the whole second: everything up to the cursor is replayed, then one new line at the same
        // instant and a later one.
        let mut n = 0;
        assert!(!c.admit(ts("2026-01-01T00:00:01.1Z"), &mut n));
        assert!(!c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
        assert!(!c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
        assert!(c.admit(ts("2026-01-01T00:00:01.5Z"), &mut n));
        assert!(c.admit(ts("2026-01-01T00:00:02Z"), &mut n));
        assert!(!c.admit(ts("2026-01-01T00:00:01.9Z"), &mut n));
        assert_eq!(c.since(), Some(ts("2026-01-01T00:00:02Z")));
        let mut c = Cursor::default();
        c.admit(ts("2026-01-01T00:00:01.7Z"), &mut n);
        assert_eq!(
            c.since(),
            Some(ts("2026-01-01T00:00:01Z")),
            "rounded down, never up"
        );
    }
}
