//! The state the handlers share: recorded requests, the prompt cache, error counts, the default script and the
//! hold, and the wait at a stream's hold point.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::record::RecordedRequest;
use crate::usage::PromptCache;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HoldState {
    pub(crate) held: bool,
    pub(crate) releases: u64,
}

pub(crate) struct Shared {
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) cache: Mutex<PromptCache>,
    pub(crate) error_counts: Mutex<HashMap<String, u32>>,
    pub(crate) default_script: Mutex<Option<String>>,
    pub(crate) hold: watch::Sender<HoldState>,
    pub(crate) held_streams: AtomicUsize,
    ids: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new() -> Self {
        Shared {
            requests: Mutex::new(Vec::new()),
            cache: Mutex::new(PromptCache::default()),
            error_counts: Mutex::new(HashMap::new()),
            default_script: Mutex::new(None),
            hold: watch::channel(HoldState::default()).0,
            held_streams: AtomicUsize::new(0),
            ids: AtomicU64::new(0),
        }
    }

    pub(crate) fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let t = now_ms();
        format!("{prefix}{t:012x}{n:06}")
    }

    pub(crate) fn hold(&self) {
        self.hold.send_modify(|s| s.held = true);
    }

    pub(crate) fn release(&self) {
        self.hold.send_modify(|s| {
            s.held = false;
            s.releases += 1;
        });
    }

    pub(crate) fn reset(&self) {
        lock(&self.requests).clear();
        lock(&self.cache).clear();
        lock(&self.error_counts).clear();
        *lock(&self.default_script) = None;
        self.release();
    }

    pub(crate) fn update(&self, seq: u64, f: impl FnOnce(&mut RecordedRequest)) {
        let mut reqs = lock(&self.requests);
        if let Some(r) = reqs.iter_mut().find(|r| r.seq == seq) {
            f(r);
        }
    }

    pub(crate) fn health(&self) -> Value {
        json!({
            "ok": true,
            "requests": lock(&self.requests).len(),
            "held_streams": self.held_streams.load(Ordering::SeqCst),
            "held": self.hold.borrow().held,
        })
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Waits while the server is held, or (for a scripted hold) until a release after `since`.
pub(crate) async fn wait_at_hold_point(shared: &Shared, scripted: bool, since: u64) {
    let done = |s: &HoldState| {
        if scripted {
            s.releases > since
        } else {
            !s.held
        }
    };
    if done(&shared.hold.borrow()) {
        return;
    }
    struct Counted<'a>(&'a AtomicUsize);
    impl Drop for Counted<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    shared.held_streams.fetch_add(1, Ordering::SeqCst);
    let _counted = Counted(&shared.held_streams);
    tracing::info!("stream held");
    let mut rx = shared.hold.subscribe();
    let _ = rx.wait_for(|s| done(s)).await;
    tracing::info!("stream released");
}
