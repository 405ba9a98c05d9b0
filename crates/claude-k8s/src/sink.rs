//! Where a run's output goes: tagged protocol messages on the single writer's channel.

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::serve::protocol::{LogStream, Message};

/// Prefix of the adapter's own progress lines in the transcript (the UI parser shows them as system entries).
pub const PROGRESS_PREFIX: &str = "[claude-k8s]";

#[derive(Clone)]
pub struct Sink {
    id: String,
    tx: UnboundedSender<Message>,
}

impl Sink {
    pub fn new(id: String, tx: UnboundedSender<Message>) -> Self {
        Self { id, tx }
    }

    fn send(&self, message: Message) {
        // The writer only goes away when the process shuts down; nothing is left to tell then.
        let _ = self.tx.send(message);
    }

    /// One line of Claude's stdout, forwarded as it came.
    pub fn stdout_line(&self, line: &str) {
        self.send(Message::Log {
            id: self.id.clone(),
            stream: LogStream::Stdout,
            chunk: format!("{line}\n"),
        });
    }

    /// A progress line of the adapter's own.
    pub fn progress(&self, text: &str) {
        tracing::info!(run = %self.id, "{text}");
        self.stdout_line(&format!("{PROGRESS_PREFIX} {text}"));
    }

    pub fn warn(&self, text: &str) {
        self.send(Message::Log {
            id: self.id.clone(),
            stream: LogStream::Stderr,
            chunk: format!("{PROGRESS_PREFIX} {text}\n"),
        });
    }

    pub fn meta(&self, meta: Value) {
        self.send(Message::Meta {
            id: self.id.clone(),
            meta,
        });
    }

    pub fn result(&self, result: Value) {
        self.send(Message::Result {
            id: self.id.clone(),
            result,
        });
    }
}
