//! Where a run's output goes: tagged protocol messages on the single writer's queue, with the run's known
//! secrets masked ([`crate::serve::mask`]) in every line, meta and result, and exactly one result per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::Value;

use crate::run::cleanup::Abandoned;
use crate::serve::mask::Masker;
use crate::serve::outbox::Outbox;
use crate::serve::protocol::{LogStream, Message};

/// Prefix of the adapter's own progress lines in the transcript (the UI parser shows them as system entries).
pub const PROGRESS_PREFIX: &str = "[claude-k8s]";

#[derive(Clone)]
pub struct Sink {
    id: String,
    outbox: Outbox,
    /// The run's secrets, set before its config is parsed and completed once the Paperclip pod is read, before
    /// anything of the agent is forwarded.
    masker: Arc<RwLock<Masker>>,
    /// Whether the request has its result: it gets exactly one.
    answered: Arc<AtomicBool>,
    /// What the run has claimed in the cluster, for its supervisor to remove if the run panics before its result.
    claimed: Arc<Mutex<Option<Abandoned>>>,
}

impl Sink {
    pub fn new(id: String, outbox: Outbox) -> Self {
        Self {
            id,
            outbox,
            masker: Arc::default(),
            answered: Arc::default(),
            claimed: Arc::default(),
        }
    }

    /// The request's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The writer's queue (the log follower waits for room in it).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The run has claimed this Job (created or adopted): if it panics before its result, its supervisor removes
    /// it ([`Sink::take_claimed`]).
    pub fn claimed(&self, job: Abandoned) {
        *self.claimed.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
    }

    /// What the run claimed, for the supervisor of a run that panicked.
    pub fn take_claimed(&self) -> Option<Abandoned> {
        self.claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Whether the request has had its result.
    pub fn answered(&self) -> bool {
        self.answered.load(Ordering::SeqCst)
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
        if self.answered() {
            // Nothing follows a request's result (docs/protocol.md).
            tracing::debug!(id = %self.id, "a message after the result was dropped");
            return;
        }
        self.outbox.send(&message);
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

    /// The request's one result, encoded here at the protocol edge; a second one is dropped.
    pub fn result(&self, result: impl Serialize) {
        let result = match serde_json::to_value(result) {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(id = %self.id, error = %e, "cannot encode a result");
                return self.error(
                    "internal_error",
                    &format!("the result could not be encoded: {e}"),
                );
            }
        };
        let message = Message::Result {
            id: self.id.clone(),
            result: self.masked_json(result),
        };
        if self.answered.swap(true, Ordering::SeqCst) {
            tracing::error!(id = %self.id, "a second result was dropped");
            return;
        }
        self.outbox.send(&message);
    }

    /// The request's one answer as a protocol `error`; dropped if it already has its result.
    pub fn error(&self, code: &str, message: &str) {
        if self.answered.swap(true, Ordering::SeqCst) {
            tracing::error!(id = %self.id, code, "an error after the result was dropped");
            return;
        }
        self.outbox.send(&Message::Error {
            id: Some(self.id.clone()),
            code: code.into(),
            message: self.masked(message).into_owned(),
        });
    }
}
