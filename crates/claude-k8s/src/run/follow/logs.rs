//! Following the claude container's log through the API server, as one ordered stream of lines.
//!
//! The log is read with timestamps so a stream that ends while the container still runs (a cut connection, an
//! API server restart, a proxy's idle timeout) is reopened from the last line delivered, with the overlap
//! dropped. After the container has terminated the stream ends by itself, and one last read from the same
//! position makes sure no tail line is lost; once the run's driver knows the container has ended ([`Tail::Now`])
//! that read is made at once instead of waiting for the stream.
//!
//! The exit probe ([`Tail::Probe`]): when claude's container shell printed its exit line, a new follow request is
//! opened from the cursor at once. The kubelet answers a follow request by reading the log to its end and
//! then asking the container runtime whether the container still runs: if not, it ends the stream at once (a
//! stream already open learns it only at the kubelet's next check, up to a second after the last write). So a
//! probe stream that ends cleanly says the container has stopped, as the kubelet saw it, well before its
//! terminated state reaches the API (the kubelet's relist, every second). It is one request, in place of the last
//! read.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{AsyncBufRead, AsyncBufReadExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::run::plan::{CLAUDE_CONTAINER, EXIT_LINE_PREFIX};
use crate::serve::outbox::Outbox;
mod assemble;

#[cfg(test)]
use assemble::split_timestamp;
pub use assemble::{Assembled, Assembler, Cursor, LogLine, cut_marker};

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
    /// Claude's shell printed its exit line: the current stream is left, and a new follow stream is read from the
    /// cursor at once; its clean end is reported ([`LogEvent::ProbeEnded`]). Once per follower; afterwards it is
    /// the same as `Follow`. Opened at once, although the container runtime may mark the container stopped only
    /// tens of milliseconds after the line: measured on the stage, probes opened at once ended 23-109 ms later and
    /// those opened 50 ms after the line 15-41 ms later, none after the kubelet's one-second check, so waiting
    /// only made the run's end 30-40 ms later (see BENCHMARKS.md).
    Probe,
    /// The run is ending: read until the stream ends by itself, then once more from the cursor, and end.
    Drain,
    /// The container has ended (its terminated state): the current stream is left, what is left of the log is read
    /// from the cursor at once, and the follower ends.
    Now,
}

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
mod tests;
