//! The queue of the single stdout writer: every message is encoded once, here, into its line, and the bytes that
//! wait for the host to read them are counted, so the log followers can wait for room ([`Outbox::room`]) instead
//! of piling a slow host's backlog up in memory.
//!
//! Only the followers wait: the lines an agent prints can stay in its pod's log meanwhile. Everything else
//! (results, errors, progress lines, meta) always goes in, so no caller waits for an answer that could not be
//! queued; the queue holds at most its bound plus one line per follower.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use crate::serve::protocol::Message;

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queue: Arc<Queue>,
}

struct Queue {
    /// Bytes queued and not yet written.
    bytes: AtomicUsize,
    bound: usize,
    drained: Notify,
    /// Set while a follower waits for room (for one warning per stall, not one per line).
    stalled: AtomicBool,
}

/// The receiving end, for [`write`].
pub struct Lines {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queue: Arc<Queue>,
}

/// An outbox that holds about `bound` bytes for the host before the log followers wait.
pub fn outbox(bound: usize) -> (Outbox, Lines) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = Arc::new(Queue {
        bytes: AtomicUsize::new(0),
        bound,
        drained: Notify::new(),
        stalled: AtomicBool::new(false),
    });
    (
        Outbox {
            tx,
            queue: queue.clone(),
        },
        Lines { rx, queue },
    )
}

impl Outbox {
    /// Queues `message` as one line. A message that cannot be encoded (it cannot happen with these types) is
    /// logged and dropped; once the writer is gone (the host stopped reading), nothing can be delivered.
    pub fn send(&self, message: &Message) {
        let mut line = match serde_json::to_vec(message) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a message");
                return;
            }
        };
        line.push(b'\n');
        let len = line.len();
        self.queue.bytes.fetch_add(len, Ordering::SeqCst);
        if self.tx.send(line).is_err() {
            self.queue.bytes.fetch_sub(len, Ordering::SeqCst);
        }
    }

    /// Waits until the queue is below its bound.
    pub async fn room(&self) {
        loop {
            // Registered before the check, so a drain between the check and the wait is not missed.
            let drained = self.queue.drained.notified();
            if self.queue.bytes.load(Ordering::SeqCst) < self.queue.bound {
                return;
            }
            if !self.queue.stalled.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    bound = self.queue.bound,
                    "the host is not reading serve's output: {} bytes wait (CLAUDE_K8S_OUTPUT_QUEUE_BYTES); the \
                     agents' lines wait in their pods' logs",
                    self.queue.bytes.load(Ordering::SeqCst)
                );
            }
            drained.await;
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queue.bytes.load(Ordering::SeqCst)
    }
}

/// Writes every queued line to `out` in order until every [`Outbox`] is dropped and the queue is empty, or `out`
/// fails (the host is gone).
pub async fn write(mut lines: Lines, mut out: impl AsyncWrite + Unpin) {
    while let Some(line) = lines.rx.recv().await {
        let written = out.write_all(&line).await.is_ok() && out.flush().await.is_ok();
        let before = lines.queue.bytes.fetch_sub(line.len(), Ordering::SeqCst);
        if before - line.len() < lines.queue.bound {
            lines.queue.stalled.store(false, Ordering::SeqCst);
            lines.queue.drained.notify_waiters();
        }
        if !written {
            // Nothing can be delivered any more; waiting followers are let go (their lines are dropped with the
            // process, which the shim restarts).
            lines.queue.bytes.store(0, Ordering::SeqCst);
            lines.queue.drained.notify_waiters();
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::protocol::LogStream;

    fn log(chunk: &str) -> Message {
        Message::Log {
            id: "r".into(),
            stream: LogStream::Stdout,
            chunk: chunk.into(),
        }
    }

    #[tokio::test]
    async fn lines_go_out_in_order_encoded_once() {
        let (outbox, lines) = outbox(1024);
        outbox.send(&log("a\n"));
        outbox.send(&log("b\n"));
        drop(outbox);
        let mut out = Vec::new();
        write(lines, &mut out).await;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"log\",\"id\":\"r\",\"stream\":\"stdout\",\"chunk\":\"a\\n\"}\n\
             {\"type\":\"log\",\"id\":\"r\",\"stream\":\"stdout\",\"chunk\":\"b\\n\"}\n"
        );
    }

    #[tokio::test]
    async fn a_full_queue_makes_room_wait_until_the_host_reads() {
        let (outbox, lines) = outbox(100);
        outbox.room().await; // empty: room at once
        outbox.send(&log(&"x".repeat(200)));
        assert!(outbox.queued() > 100);
        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.room().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "no room while the host reads nothing"
        );
        // The host reads: the writer drains the queue and the follower goes on.
        let (reader, writer) = tokio::io::duplex(1 << 20);
        let writer_task = tokio::spawn(write(lines, writer));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room once the line was written")
            .unwrap();
        assert_eq!(outbox.queued(), 0);
        drop(outbox);
        writer_task.await.unwrap();
        drop(reader);
    }

    #[tokio::test]
    async fn a_host_that_is_gone_lets_waiting_followers_go() {
        let (outbox, lines) = outbox(10);
        outbox.send(&log(&"x".repeat(200)));
        let (reader, writer) = tokio::io::duplex(8);
        drop(reader);
        let writer_task = tokio::spawn(write(lines, writer));
        tokio::time::timeout(std::time::Duration::from_secs(5), outbox.room())
            .await
            .expect("not stuck on a host that is gone");
        drop(outbox);
        writer_task.await.unwrap();
    }
}
