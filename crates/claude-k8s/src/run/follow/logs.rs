//! Following the claude container's log through the API server, as one ordered stream of lines.
//!
//! The log is read with timestamps so a stream that ends while the container still runs (a cut connection, an
//! API server restart, a proxy's idle timeout) is reopened from the last line delivered, with the overlap
//! dropped. After the container has terminated the stream ends by itself, and one last read from the same
//! position makes sure no tail line is lost; once the run's driver knows the container has ended ([`Tail::Now`])
//! that read is made at once instead of waiting for the stream.
//!
//! The exit probe ([`Tail::Probe`]): when claude's container shell printed its exit line, a new follow request is
//! opened from the cursor a moment later. The kubelet answers a follow request by reading the log to its end and
//! then asking the container runtime whether the container still runs: if not, it ends the stream at once (a
//! stream already open learns it only at the kubelet's next check, up to a second after the last write). So a
//! probe stream that ends cleanly says the container has stopped, as the kubelet saw it, well before its
//! terminated state reaches the API (the kubelet's relist, every second). It is one request, in place of the last
//! read.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{AsyncBufRead, AsyncBufReadExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::run::plan::{CLAUDE_CONTAINER, EXIT_LINE_PREFIX};
use crate::serve::outbox::Outbox;
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

/// The size of the pieces a container runtime cuts a long line into (Docker's json-file driver and containerd's
/// CRI logger both use 16 KiB).
const PARTIAL_LINE: usize = 16 * 1024;

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
    text: Vec<u8>,
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

    fn reset(&mut self) {
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
fn split_timestamp(line: &[u8]) -> Option<(Timestamp, String)> {
    let mut assembler = Assembler::new(usize::MAX - 1);
    let (taken, done) = assembler.feed(line);
    let done = done.or_else(|| (taken == line.len()).then(|| assembler.finish()));
    match done {
        Some(Assembled::Line(l)) => Some((l.ts, l.text)),
        _ => None,
    }
}

/// The exit code of the line claude's container shell prints after claude exited ([`EXIT_LINE_PREFIX`]), when
/// `line` is one. That line is the adapter's, never forwarded: [`Lines::recv`] skips it, [`Lines::recv_event`]
/// gives its code. The agent can print it too; the driver treats it as a hint only ([`super::machine`]).
pub fn exit_line_code(line: &str) -> Option<i32> {
    let code = line.strip_prefix(EXIT_LINE_PREFIX)?;
    (!code.is_empty() && code.len() <= 3 && code.bytes().all(|b| b.is_ascii_digit()))
        .then(|| code.parse().ok())
        .flatten()
}

/// What a follower delivers to the run's driver.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A line of claude's log.
    Line(String),
    /// The container shell's exit line ([`EXIT_LINE_PREFIX`]), with the exit code it names.
    Exit(i32),
    /// The probe stream ([`Tail::Probe`]) ended by itself, outside a line: the kubelet no longer saw the container
    /// running (or the API server's connection to it broke, which also ends a stream cleanly).
    ProbeEnded,
}

/// What is on its way in the channel.
enum Item {
    Line(String),
    ProbeEnded,
}

/// The lines of one log follower on their way to the run's driver, bounded in bytes (a line of the limit always
/// fits) and waiting for room in serve's output queue first, so neither a fast agent nor a host that reads slowly
/// makes the serve process hold more than its bounds.
pub fn channel(max_line: usize, outbox: Outbox) -> (LineSender, Lines) {
    // Two whole lines: one on its way while the driver forwards the other.
    let capacity = (2 * max_line + 64 * 1024).min(Semaphore::MAX_PERMITS) as u32;
    let room = Arc::new(Semaphore::new(capacity as usize));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        LineSender {
            tx,
            room: room.clone(),
            capacity,
            outbox,
        },
        Lines { rx, room },
    )
}

/// What one line weighs in the channel: its bytes and a little for the allocation around them.
fn weight(line: &str, capacity: u32) -> u32 {
    (line.len().saturating_add(64)).min(capacity as usize) as u32
}

pub struct LineSender {
    tx: mpsc::UnboundedSender<(Item, u32)>,
    room: Arc<Semaphore>,
    capacity: u32,
    outbox: Outbox,
}

impl LineSender {
    /// Sends a line once there is room for it; `Err` when the driver is gone.
    async fn send(&self, line: String) -> Result<(), ()> {
        self.outbox.room().await;
        let weight = weight(&line, self.capacity);
        self.room
            .acquire_many(weight)
            .await
            .map_err(|_| ())?
            .forget();
        self.tx.send((Item::Line(line), weight)).map_err(|_| ())
    }

    /// Says the probe stream ended cleanly, after every line before it.
    fn probe_ended(&self) -> Result<(), ()> {
        self.tx.send((Item::ProbeEnded, 0)).map_err(|_| ())
    }
}

/// The receiving end of [`channel`].
pub struct Lines {
    rx: mpsc::UnboundedReceiver<(Item, u32)>,
    room: Arc<Semaphore>,
}

impl Lines {
    /// The next line of claude's log (the shell's exit line skipped); `None` once the follower has delivered
    /// everything.
    pub async fn recv(&mut self) -> Option<String> {
        loop {
            if let LogEvent::Line(line) = self.recv_event().await? {
                return Some(line);
            }
        }
    }

    /// The next line or event; `None` once the follower has delivered everything.
    pub async fn recv_event(&mut self) -> Option<LogEvent> {
        let (item, weight) = self.rx.recv().await?;
        self.room.add_permits(weight as usize);
        Some(match item {
            Item::Line(line) => match exit_line_code(&line) {
                Some(code) => LogEvent::Exit(code),
                None => LogEvent::Line(line),
            },
            Item::ProbeEnded => LogEvent::ProbeEnded,
        })
    }
}

/// How reading one line ended.
enum Read {
    Line(Assembled),
    /// The stream ended; `inside_line` when it broke off in the middle of a line.
    End {
        inside_line: bool,
    },
    Broken(std::io::Error),
    /// Nothing came for the silence limit.
    Silent,
}

async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    assembler: &mut Assembler,
    silence: Duration,
) -> Read {
    loop {
        let buf = match tokio::time::timeout(silence, reader.fill_buf()).await {
            Err(_) => return Read::Silent,
            Ok(Err(e)) => return Read::Broken(e),
            Ok(Ok(buf)) => buf,
        };
        if buf.is_empty() {
            return Read::End {
                inside_line: assembler.in_line(),
            };
        }
        let (taken, done) = assembler.feed(buf);
        reader.consume_unpin(taken);
        if let Some(line) = done {
            return Read::Line(line);
        }
    }
}

/// How long to wait before reopening a stream that ended while the container runs: 200 ms, doubling to 5 s,
/// from the start again after every stream that opened.
fn reopen_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// What the run's driver tells its follower about claude's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Claude runs: follow its log.
    Follow,
    /// Claude's shell printed its exit line: the current stream is left, and after [`PROBE_DELAY`] a new follow
    /// stream is read from the cursor; its clean end is reported ([`LogEvent::ProbeEnded`]). Once per follower;
    /// afterwards it is the same as `Follow`.
    Probe,
    /// The run is ending: read until the stream ends by itself, then once more from the cursor, and end.
    Drain,
    /// The container has ended (its terminated state): the current stream is left, what is left of the log is read
    /// from the cursor at once, and the follower ends.
    Now,
}

/// How long after the shell's exit line the probe is opened: the container runtime marks the container stopped
/// only once the shell has exited and its log is flushed (measured on the stage: see BENCHMARKS.md). A probe
/// opened too early is not wrong, only slow: the kubelet then ends it at its next check, a second later.
pub const PROBE_DELAY: Duration = Duration::from_millis(50);

/// How long a follower whose probe ended cleanly waits for the container's end before it opens the log again
/// (the container has stopped, as the kubelet saw it: its terminated state follows within about a second).
const AFTER_PROBE: Duration = Duration::from_secs(2);

/// Delivers the container's lines to `out` until the container has terminated (`terminated` turns true) and its
/// log has been read to the end; a stream silent for `silence` is reopened, and a line longer than `max_line`
/// bytes is cut ([`cut_marker`]). Returns the number of lines delivered.
pub async fn follow(
    pods: Api<Pod>,
    pod: String,
    out: LineSender,
    mut terminated: watch::Receiver<bool>,
    silence: Duration,
    max_line: usize,
) -> u64 {
    let (tail, rx) = watch::channel(if *terminated.borrow() {
        Tail::Drain
    } else {
        Tail::Follow
    });
    let relay = async move {
        if terminated.wait_for(|t| *t).await.is_ok() {
            let _ = tail.send(Tail::Drain);
        }
        // Keeps `tail` open: a closed sender would read as the driver gone.
        std::future::pending::<()>().await
    };
    tokio::select! {
        delivered = follow_run(pods, pod, out, rx, silence, max_line) => delivered,
        _ = relay => unreachable!("the relay never ends"),
    }
}

/// Where the exit probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeStage {
    NotAsked,
    /// The next stream opened is the probe.
    Due,
    /// The probe stream is open.
    Open,
    Done,
}

/// [`follow`], steered by the run's driver through `tail` ([`Tail`]). Ends when the driver is gone.
pub async fn follow_run(
    pods: Api<Pod>,
    pod: String,
    out: LineSender,
    mut tail: watch::Receiver<Tail>,
    silence: Duration,
    max_line: usize,
) -> u64 {
    let mut cursor = Cursor::default();
    let mut delivered = 0u64;
    let mut backoff = reopen_backoff();
    let mut assembler = Assembler::new(max_line);
    let mut probe = ProbeStage::NotAsked;
    loop {
        if probe == ProbeStage::NotAsked && *tail.borrow() == Tail::Probe {
            // Asked for while no stream was open.
            probe = ProbeStage::Due;
        }
        if probe == ProbeStage::Due {
            // The runtime marks the container stopped a moment after the shell's exit line.
            let _ = tokio::time::timeout(
                PROBE_DELAY,
                tail.wait_for(|t| matches!(t, Tail::Drain | Tail::Now)),
            )
            .await;
        }
        let final_read = matches!(*tail.borrow(), Tail::Drain | Tail::Now);
        if probe == ProbeStage::Due {
            probe = if final_read {
                ProbeStage::Done
            } else {
                ProbeStage::Open
            };
        }
        let params = LogParams {
            container: Some(CLAUDE_CONTAINER.into()),
            follow: !final_read,
            timestamps: true,
            since_time: cursor.since(),
            ..Default::default()
        };
        let mut ended_cleanly = false;
        match pods.log_stream(&pod, &params).await {
            Ok(mut reader) => {
                let mut seen_at_ts = 0usize;
                loop {
                    let may_probe = probe == ProbeStage::NotAsked;
                    let read = tokio::select! {
                        read = read_line(&mut reader, &mut assembler, silence) => read,
                        asked = interrupt(&mut tail, may_probe), if !final_read => match asked {
                            Some(Tail::Probe) => {
                                probe = ProbeStage::Due;
                                break;
                            }
                            Some(_) => break,
                            // The driver is gone.
                            None => return delivered,
                        },
                    };
                    let line = match read {
                        Read::Line(line) => line,
                        Read::End { inside_line } if inside_line && final_read => {
                            // In the final read after termination, a last line without newline is complete.
                            assembler.finish()
                        }
                        Read::End { inside_line } => {
                            if inside_line {
                                // The stream broke inside a line: it is read again, whole, from the cursor.
                                tracing::debug!("log stream ended inside a line");
                            }
                            ended_cleanly = !inside_line;
                            break;
                        }
                        Read::Broken(e) => {
                            tracing::debug!(error = %e, "log stream broke");
                            break;
                        }
                        Read::Silent => {
                            tracing::debug!(
                                secs = silence.as_secs(),
                                "log stream silent: reopening it"
                            );
                            break;
                        }
                    };
                    let Assembled::Line(LogLine { ts, text }) = line else {
                        tracing::debug!("log line without a timestamp");
                        continue;
                    };
                    if cursor.admit(ts, &mut seen_at_ts) {
                        delivered += 1;
                        if out.send(text).await.is_err() {
                            return delivered;
                        }
                    }
                }
                backoff = reopen_backoff();
            }
            Err(e) => tracing::debug!(error = %e, pod = %pod, "cannot open the log stream"),
        }
        // A line the stream broke off inside is read again whole from the cursor.
        assembler.reset();
        if final_read {
            return delivered;
        }
        let mut delay = None;
        if probe == ProbeStage::Open {
            probe = ProbeStage::Done;
            if ended_cleanly {
                if out.probe_ended().is_err() {
                    return delivered;
                }
                delay = Some(AFTER_PROBE);
            }
        }
        if probe == ProbeStage::Due {
            continue;
        }
        // The stream ended: either the container terminated (read once more, without follow, to get the tail)
        // or the connection was cut (reopen after a short backoff, unless termination arrives first).
        if matches!(*tail.borrow(), Tail::Follow | Tail::Probe) {
            let delay = delay.unwrap_or_else(|| backoff.next().unwrap_or(Duration::from_secs(5)));
            let may_probe = probe == ProbeStage::NotAsked;
            let asked =
                |t: &Tail| matches!(t, Tail::Drain | Tail::Now) || (may_probe && *t == Tail::Probe);
            let ended = tokio::time::timeout(delay, tail.wait_for(asked)).await;
            if let Ok(Err(_)) = ended {
                // The driver is gone.
                return delivered;
            }
        }
    }
}

/// Waits until the driver asks for something that leaves the current stream: the container's end, or (when
/// `may_probe`) the exit probe. `None` when the driver is gone.
async fn interrupt(tail: &mut watch::Receiver<Tail>, may_probe: bool) -> Option<Tail> {
    tail.wait_for(|t| *t == Tail::Now || (may_probe && *t == Tail::Probe))
        .await
        .ok()
        .map(|t| *t)
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

    /// `text` as the kubelet sends it: cut into 16 KiB pieces, each after its own timestamp, then a newline.
    fn on_the_wire(text: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        for (i, piece) in text.chunks(PARTIAL_LINE).enumerate() {
            wire.extend(format!("2026-11-25T07:00:01.{:09}Z ", i + 1).as_bytes());
            wire.extend(piece);
        }
        if text.is_empty() {
            wire.extend(b"2026-11-25T07:00:01.000000001Z ");
        }
        wire.push(b'\n');
        wire
    }

    /// Feeds `wire` in chunks of `chunk` bytes: the lines that came out.
    fn assemble(max: usize, wire: &[u8], chunk: usize) -> Vec<Assembled> {
        let mut assembler = Assembler::new(max);
        let mut out = Vec::new();
        for mut piece in wire.chunks(chunk) {
            while !piece.is_empty() {
                let (taken, done) = assembler.feed(piece);
                assert!(taken > 0 && taken <= piece.len());
                assert!(
                    assembler.text.len() <= max + 1,
                    "never more than the limit held"
                );
                piece = &piece[taken..];
                out.extend(done);
            }
        }
        out
    }

    fn text_of(line: &Assembled) -> &str {
        match line {
            Assembled::Line(l) => &l.text,
            Assembled::Unstamped => panic!("no timestamp"),
        }
    }

    #[test]
    fn a_line_is_assembled_the_same_whatever_chunks_the_stream_brings() {
        let mut original = "é".as_bytes().to_vec();
        original.extend(std::iter::repeat_n(b'x', PARTIAL_LINE * 3 - 1));
        original.extend("🦀 2026-11-25T07:00:09Z own stamp\r".as_bytes());
        let mut wire = on_the_wire(&original);
        wire.extend(b"2026-11-25T07:00:02Z next\r\nno stamp here\n2026-11-25T07:00:03Z\n");
        let whole = assemble(usize::MAX - 1, &wire, wire.len());
        let expected = String::from_utf8(original[..original.len() - 1].to_vec()).unwrap();
        assert_eq!(whole.len(), 4);
        assert_eq!(
            text_of(&whole[0]),
            expected,
            "the \r before the newline is not text"
        );
        assert_eq!(text_of(&whole[1]), "next");
        assert_eq!(whole[2], Assembled::Unstamped);
        assert_eq!(text_of(&whole[3]), "");
        for chunk in [1, 2, 7, 39, 40, 41, 1000, PARTIAL_LINE, PARTIAL_LINE + 31] {
            assert_eq!(
                assemble(usize::MAX - 1, &wire, chunk),
                whole,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_line_over_the_limit_is_cut_at_a_character_boundary_behind_the_marker() {
        const MAX: usize = 100_000;
        // 70 MiB would take a while in a unit test; 3 MiB of two-byte characters is the same case.
        let original = "é".repeat(3 * 512 * 1024);
        let mut wire = on_the_wire(original.as_bytes());
        wire.extend(b"2026-11-25T07:00:02Z the next line\n");
        let lines = assemble(MAX, &wire, 4096);
        assert_eq!(lines.len(), 2);
        let cut = text_of(&lines[0]);
        let marker = cut_marker(original.len(), MAX);
        assert!(cut.starts_with(&format!("{marker} é")), "{}", &cut[..200]);
        let kept = &cut[marker.len() + 1..];
        assert_eq!(
            kept.len(),
            MAX,
            "cut exactly at the limit (a boundary: MAX is even)"
        );
        assert!(kept.chars().all(|c| c == 'é'), "no partial character");
        assert_eq!(
            text_of(&lines[1]),
            "the next line",
            "the line after is whole"
        );
        // A limit inside a character: cut before it.
        let lines = assemble(MAX + 1, &wire, 4096);
        let cut = text_of(&lines[0]);
        let marker = cut_marker(original.len(), MAX);
        assert!(cut.starts_with(&marker), "{}", &cut[..200]);
        assert_eq!(cut.len() - marker.len() - 1, MAX);
        // At the limit exactly: whole, no marker.
        let exact = "a".repeat(MAX);
        let lines = assemble(MAX, &on_the_wire(exact.as_bytes()), 999);
        assert_eq!(text_of(&lines[0]), exact);
        assert!(cut_marker(73_400_320, 4_194_304).starts_with(
            "[claude-k8s] line cut: claude wrote a line of 73400320 bytes; its first 4194304 follow"
        ));
    }

    #[test]
    fn a_final_line_without_newline_is_finished_at_the_end_of_the_log() {
        let mut assembler = Assembler::new(1024);
        let (taken, done) = assembler.feed(b"2026-11-25T07:00:01Z tail");
        assert_eq!((taken, done), (25, None));
        assert!(assembler.in_line());
        assert_eq!(text_of(&assembler.finish()), "tail");
        assert!(!assembler.in_line());
    }

    #[tokio::test]
    async fn the_line_channel_holds_about_two_lines_and_frees_room_as_lines_are_taken() {
        let (outbox, _written) = crate::serve::outbox::outbox(1 << 30);
        let (tx, mut rx) = channel(MAX_LINE, outbox);
        const MAX_LINE: usize = 64 * 1024;
        let line = "x".repeat(MAX_LINE);
        tx.send(line.clone()).await.unwrap();
        tx.send(line.clone()).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(100), tx.send(line.clone())).await;
        assert!(third.is_err(), "a third whole line waits for room");
        assert_eq!(rx.recv().await.unwrap(), line);
        tokio::time::timeout(Duration::from_secs(5), tx.send(line.clone()))
            .await
            .expect("room again")
            .unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.unwrap(), line);
        assert_eq!(rx.recv().await.unwrap(), line);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn the_shells_exit_line_is_an_event_for_the_run_and_skipped_for_a_reader_of_lines() {
        assert_eq!(exit_line_code("[claude-k8s] claude exited: 0"), Some(0));
        assert_eq!(exit_line_code("[claude-k8s] claude exited: 137"), Some(137));
        for not in [
            "[claude-k8s] claude exited: ",
            "[claude-k8s] claude exited: 0 ",
            "[claude-k8s] claude exited: -1",
            "[claude-k8s] claude exited: 1234",
            " [claude-k8s] claude exited: 0",
            "{\"type\":\"result\"} [claude-k8s] claude exited: 0",
        ] {
            assert_eq!(exit_line_code(not), None, "{not}");
        }
        let (outbox, _written) = crate::serve::outbox::outbox(1 << 20);
        let (tx, mut events) = channel(1024, outbox.clone());
        for line in ["a", "[claude-k8s] claude exited: 3"] {
            tx.send(line.into()).await.unwrap();
        }
        tx.probe_ended().unwrap();
        drop(tx);
        assert_eq!(events.recv_event().await, Some(LogEvent::Line("a".into())));
        assert_eq!(events.recv_event().await, Some(LogEvent::Exit(3)));
        assert_eq!(events.recv_event().await, Some(LogEvent::ProbeEnded));
        assert_eq!(events.recv_event().await, None);
        let (tx, mut lines) = channel(1024, outbox);
        for line in ["a", "[claude-k8s] claude exited: 0", "b"] {
            tx.send(line.into()).await.unwrap();
        }
        tx.probe_ended().unwrap();
        drop(tx);
        assert_eq!(lines.recv().await.as_deref(), Some("a"));
        assert_eq!(lines.recv().await.as_deref(), Some("b"));
        assert_eq!(lines.recv().await, None);
    }

    #[test]
    fn the_reopen_backoff_doubles_from_200_ms_to_5_s() {
        let delays: Vec<u64> = reopen_backoff()
            .take(7)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
