//! Where a run's output goes: tagged protocol messages on the single writer's channel, with the run's known
//! secrets masked ([`crate::serve::mask`]) in every line, meta and result.

use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::serve::mask::Masker;
use crate::serve::protocol::{LogStream, Message};

/// Prefix of the adapter's own progress lines in the transcript (the UI parser shows them as system entries).
pub const PROGRESS_PREFIX: &str = "[claude-k8s]";

#[derive(Clone)]
pub struct Sink {
    id: String,
    tx: UnboundedSender<Message>,
    /// The run's secrets, set before its config is parsed and completed once the Paperclip pod is read, before
    /// anything of the agent is forwarded.
    masker: Arc<RwLock<Masker>>,
}

impl Sink {
    pub fn new(id: String, tx: UnboundedSender<Message>) -> Self {
        Self {
            id,
            tx,
            masker: Arc::default(),
        }
    }

    /// From now on these values never leave the process in clear. Each call gives the whole set (it replaces the
    /// previous one, which it includes).
    pub fn mask_secrets(&self, masker: Masker) {
        *self.masker.write().unwrap_or_else(|e| e.into_inner()) = masker;
    }

    fn masked<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        self.masker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .mask(text)
    }

    fn masked_json(&self, mut value: Value) -> Value {
        self.masker
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .mask_json(&mut value);
        value
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
            chunk: format!("{}\n", self.masked(line)),
        });
    }

    /// A progress line of the adapter's own.
    pub fn progress(&self, text: &str) {
        let text = self.masked(text);
        tracing::info!(run = %self.id, "{text}");
        self.stdout_line(&format!("{PROGRESS_PREFIX} {text}"));
    }

    pub fn warn(&self, text: &str) {
        self.send(Message::Log {
            id: self.id.clone(),
            stream: LogStream::Stderr,
            chunk: format!("{PROGRESS_PREFIX} {}\n", self.masked(text)),
        });
    }

    pub fn meta(&self, meta: Value) {
        self.send(Message::Meta {
            id: self.id.clone(),
            meta: self.masked_json(meta),
        });
    }

    pub fn result(&self, result: Value) {
        self.send(Message::Result {
            id: self.id.clone(),
            result: self.masked_json(result),
        });
    }
}
