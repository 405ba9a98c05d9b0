//! Lines out of the kubelet's timestamped log bytes: each line decoded whole (however the network cut it), cut at
//! the line limit behind a marker, and the reader's position ([`Cursor`]) to reopen a stream from without losing
//! or repeating a line.

use jiff::Timestamp;

use crate::serve::sink::PROGRESS_PREFIX;

/// Where the reader is: the timestamp of the last delivered line and how many lines carried exactly it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cursor {
    last: Option<Timestamp>,
    at_last: usize,
}

impl Cursor {
    /// Whether a line stamped `ts` is new, advancing the cursor if so. Lines are in time order within a stream,
    /// and a reopened stream starts at or before the cursor (the API takes whole seconds).
    pub(super) fn admit(&mut self, ts: Timestamp, seen_at_ts: &mut usize) -> bool {
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
    pub(super) fn since(&self) -> Option<Timestamp> {
        let round = jiff::TimestampRound::new()
            .smallest(jiff::Unit::Second)
            .mode(jiff::RoundMode::Trunc);
        self.last.map(|t| t.round(round).unwrap_or(t))
    }
}

/// The size of the pieces a container runtime cuts a long line into (Docker's json-file driver and containerd's
/// CRI logger both use 16 KiB).
pub(super) const PARTIAL_LINE: usize = 16 * 1024;

/// The kubelet's stamps are 20 to 30 characters; a line's first 40 bytes hold its stamp and the space after it,
/// or it has none.
const STAMP_MAX: usize = 40;

/// One physical line of the log as it arrives, assembled from the bytes of the stream as they come, in memory
/// bounded by the line limit whatever the line's length.
///
/// With `timestamps=true` the kubelet prints every 16 KiB piece of a long line with its own timestamp, so such a
/// line arrives as `<ts> piece<ts> piece…`. The assembler removes the stamps only at the 16 KiB boundaries, so a
/// timestamp the agent itself printed is never touched, and it keeps at most `max` bytes of the joined text: the
/// rest is counted, never stored. It works on bytes: a multi-byte character cut at a piece boundary is whole
/// again before the line is decoded.
#[derive(Debug)]
pub struct Assembler {
    max: usize,
    phase: Phase,
    /// The line's own timestamp (its first piece's).
    ts: Option<Timestamp>,
    /// The stamp being read: the line's own, or a piece's.
    stamp: Vec<u8>,
    /// The first `max + 1` bytes of the joined text (one more than kept, to cut at a character boundary).
    pub(super) text: Vec<u8>,
    /// The joined text's whole length.
    len: usize,
    /// The last byte of the line's content (a `\r` before the `\n` is not part of it).
    last: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The line's timestamp.
    Stamp,
    /// Inside a runtime piece, with this many bytes of it to go.
    Piece(usize),
    /// After a whole piece: the next piece's stamp, or the line's own text if there is none.
    PieceStamp,
    /// Text to the end of the line (no more runtime pieces).
    Rest,
    /// A line without a timestamp: skipped.
    Unstamped,
}

/// A line the assembler finished.
#[derive(Debug, PartialEq)]
pub enum Assembled {
    Line(LogLine),
    /// A line that did not start with a timestamp (not one of the kubelet's): skipped.
    Unstamped,
}

/// A line of the container's log.
#[derive(Debug, PartialEq)]
pub struct LogLine {
    pub ts: Timestamp,
    /// The text, decoded (bytes that are not UTF-8 become U+FFFD), cut with a marker when it was too long.
    pub text: String,
}

impl Assembler {
    /// An assembler that keeps at most `max` bytes of a line.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            phase: Phase::Stamp,
            ts: None,
            stamp: Vec::with_capacity(STAMP_MAX),
            text: Vec::new(),
            len: 0,
            last: None,
        }
    }

    /// Whether a line has begun and is not finished yet.
    pub fn in_line(&self) -> bool {
        self.phase != Phase::Stamp || !self.stamp.is_empty()
    }

    /// Takes the bytes of `buf` up to and including the end of the current line: how many it took, and the line
    /// if it ended.
    pub fn feed(&mut self, buf: &[u8]) -> (usize, Option<Assembled>) {
        let mut i = 0;
        while i < buf.len() {
            match self.phase {
                Phase::Stamp | Phase::PieceStamp => {
                    let b = buf[i];
                    if b == b'\n' {
                        return (i + 1, Some(self.finish()));
                    }
                    if self.stamp.len() == STAMP_MAX {
                        self.not_a_stamp();
                        continue;
                    }
                    i += 1;
                    if b == b' ' {
                        self.stamp_ended();
                    } else {
                        self.stamp.push(b);
                        self.last = Some(b);
                    }
                }
                Phase::Piece(left) => {
                    let piece = &buf[i..buf.len().min(i + left)];
                    let (taken, ended) = match piece.iter().position(|b| *b == b'\n') {
                        Some(n) => (&piece[..n], true),
                        None => (piece, false),
                    };
                    self.push_text(taken);
                    i += taken.len();
                    if ended {
                        return (i + 1, Some(self.finish()));
                    }
                    self.phase = match left - taken.len() {
                        0 => Phase::PieceStamp,
                        left => Phase::Piece(left),
                    };
                }
                Phase::Rest | Phase::Unstamped => {
                    let rest = &buf[i..];
                    let (taken, ended) = match rest.iter().position(|b| *b == b'\n') {
                        Some(n) => (&rest[..n], true),
                        None => (rest, false),
                    };
                    if self.phase == Phase::Rest {
                        self.push_text(taken);
                    }
                    i += taken.len();
                    if ended {
                        return (i + 1, Some(self.finish()));
                    }
                }
            }
        }
        (i, None)
    }

    fn push_text(&mut self, bytes: &[u8]) {
        let room = (self.max + 1).saturating_sub(self.text.len());
        self.text.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.len += bytes.len();
        if let Some(b) = bytes.last() {
            self.last = Some(*b);
        }
    }

    /// The stamp being read, if it is one: `<RFC 3339 timestamp>`, starting with a digit.
    fn parse_stamp(&self) -> Option<Timestamp> {
        let stamp = self.stamp.strip_suffix(b"\r").unwrap_or(&self.stamp);
        let stamp = std::str::from_utf8(stamp).ok()?;
        if !stamp.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        stamp.parse().ok()
    }

    /// A space ended the stamp being read.
    fn stamp_ended(&mut self) {
        self.last = None;
        match (self.phase, self.parse_stamp()) {
            (Phase::Stamp, Some(ts)) => {
                self.ts = Some(ts);
                self.phase = Phase::Piece(PARTIAL_LINE);
            }
            (Phase::Stamp, None) => self.phase = Phase::Unstamped,
            (_, Some(_)) => self.phase = Phase::Piece(PARTIAL_LINE),
            (_, None) => {
                self.stamp.push(b' ');
                self.not_a_stamp();
            }
        }
        self.stamp.clear();
    }

    /// What was read as a possible stamp is not one: at the line's start the line has none; after a piece it is
    /// the line's own text.
    fn not_a_stamp(&mut self) {
        if self.phase == Phase::Stamp {
            self.phase = Phase::Unstamped;
        } else {
            let bytes = std::mem::take(&mut self.stamp);
            self.push_text(&bytes);
            self.stamp = bytes;
            self.phase = Phase::Rest;
        }
        self.stamp.clear();
    }

    /// The line ended (at its `\n`, or at the end of a finished container's log).
    pub fn finish(&mut self) -> Assembled {
        let ts = match self.phase {
            // A line that is only a timestamp.
            Phase::Stamp => self.parse_stamp(),
            Phase::Unstamped => None,
            Phase::PieceStamp => {
                if self.parse_stamp().is_some() {
                    // A piece's stamp at the very end: a `\r` went with it.
                    self.last = None;
                } else {
                    let bytes = std::mem::take(&mut self.stamp);
                    self.push_text(&bytes);
                }
                self.ts
            }
            Phase::Piece(_) | Phase::Rest => self.ts,
        };
        let has_text = matches!(
            self.phase,
            Phase::Piece(_) | Phase::Rest | Phase::PieceStamp
        );
        if has_text && self.last == Some(b'\r') {
            self.len = self.len.saturating_sub(1);
            self.text.truncate(self.len.min(self.text.len()));
        }
        let assembled = match ts {
            Some(ts) => Assembled::Line(LogLine {
                ts,
                text: self.text(),
            }),
            None => Assembled::Unstamped,
        };
        self.reset();
        assembled
    }

    /// The joined text, cut to at most `max` bytes (at a character boundary) behind a marker if it was longer.
    fn text(&self) -> String {
        if self.len <= self.max {
            return String::from_utf8_lossy(&self.text).into_owned();
        }
        let mut end = self.max;
        // Back to the start of the character that `max` falls inside, if it does.
        while end > 0 && self.max - end < 3 && self.text[end] & 0xC0 == 0x80 {
            end -= 1;
        }
        if self.text[end] & 0xC0 == 0x80 {
            end = self.max;
        }
        format!(
            "{} {}",
            cut_marker(self.len, end),
            String::from_utf8_lossy(&self.text[..end])
        )
    }

    pub(super) fn reset(&mut self) {
        self.phase = Phase::Stamp;
        self.ts = None;
        self.stamp.clear();
        self.text.clear();
        // A run that printed one huge line does not keep its buffer for the rest of its life.
        if self.text.capacity() > 1024 * 1024 {
            self.text.shrink_to(64 * 1024);
        }
        self.len = 0;
        self.last = None;
    }
}

/// What stands in front of a line that was cut: what the transcript parser and Paperclip's UI show as an
/// adapter line (a `[claude-k8s]` system entry) followed by the line's first bytes.
pub fn cut_marker(len: usize, kept: usize) -> String {
    format!(
        "{PROGRESS_PREFIX} line cut: claude wrote a line of {len} bytes; its first {kept} follow \
         (CLAUDE_K8S_MAX_LINE_BYTES):"
    )
}

/// Splits a whole line as the kubelet sends it, `2026-11-25T07:00:00.123456789Z text\n`, into its timestamp and
/// text (no length limit). `None` for a line without a timestamp.
#[cfg(test)]
pub(super) fn split_timestamp(line: &[u8]) -> Option<(Timestamp, String)> {
    let mut assembler = Assembler::new(usize::MAX - 1);
    let (taken, done) = assembler.feed(line);
    let done = done.or_else(|| (taken == line.len()).then(|| assembler.finish()));
    match done {
        Some(Assembled::Line(l)) => Some((l.ts, l.text)),
        _ => None,
    }
}
