//! A scripted fake of the Anthropic Messages API, for running the real Claude Code CLI in tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let fake = fake_anthropic::FakeAnthropic::start("127.0.0.1:0").await?;
//! // run `claude` with ANTHROPIC_BASE_URL=fake.url() and a prompt like "[[fake:bash echo hi]]"
//! let calls = fake.message_requests();
//! assert!(calls[0].system_text().contains("Claude"));
//! fake.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! It also answers Bedrock's runtime API (`POST /model/{id}/invoke[-with-response-stream]`, see [`bedrock`]) for
//! `claude` run with `CLAUDE_CODE_USE_BEDROCK=1`, `ANTHROPIC_BEDROCK_BASE_URL=fake.url()` and
//! `CLAUDE_CODE_SKIP_BEDROCK_AUTH=1`; those calls are in [`FakeAnthropic::requests`], not `message_requests`.
//!
//! The scenario markers are described in [`scenario`]. The same server runs as the binary
//! `fake-anthropic` (see `src/main.rs`), controlled over HTTP under `/_fake/`:
//!
//! | endpoint | effect |
//! |---|---|
//! | `GET /_fake/health` | `{"ok":true,"requests":N,"held_streams":N,"held":bool}` |
//! | `GET /_fake/requests` | every recorded request (`?path=/v1/messages` filters by path) |
//! | `GET /_fake/unknown` | the recorded requests that hit no known route (answered 404) |
//! | `POST /_fake/reset` | forget requests, the prompt cache, error counts, the default script; release holds |
//! | `POST /_fake/hold` | from now on every stream stops after its first content block |
//! | `POST /_fake/release` | lift the hold and release every held stream (also `[[fake:hold]]` streams) |
//! | `POST /_fake/script` | body (text) = markers used when a prompt has none; empty body clears |
//!
//! The streaming handlers need a runtime that keeps running while a test waits on a child
//! process: use `#[tokio::test(flavor = "multi_thread")]` or `tokio::process`.

pub mod bedrock;
pub mod scenario;
pub mod sse;
pub mod usage;

mod messages;
mod record;
mod routes;
mod state;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use record::RecordedRequest;

use crate::messages::{bedrock_invoke, bedrock_invoke_stream, messages};
use crate::record::record;
use crate::routes::{
    admin_health, admin_hold, admin_release, admin_requests, admin_reset, admin_script,
    admin_unknown, count_tokens, hello, model, models, unknown,
};
use crate::state::{Shared, lock};

/// The models `GET /v1/models` lists.
pub const MODELS: &[(&str, &str)] = &[
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-opus-4-6", "Claude Opus 4.6"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
];

/// A running fake server. Dropping it stops the server.
pub struct FakeAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeAnthropic {
    /// Binds `listen` (e.g. `127.0.0.1:0` for any free port) and serves in the background.
    pub async fn start(listen: &str) -> io::Result<FakeAnthropic> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::error!("fake-anthropic server failed: {e}");
            }
        });
        tracing::info!("fake-anthropic listening on http://{addr}");
        Ok(FakeAnthropic {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (for `ANTHROPIC_BASE_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every recorded request, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The recorded `POST /v1/messages` calls.
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/messages")
            .collect()
    }

    /// The recorded requests that matched no route (answered 404).
    pub fn unknown_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.unknown).collect()
    }

    /// Forgets requests, the prompt cache, error counts and the default script; releases holds.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// From now on every stream stops after its first content block, until [`Self::release`].
    pub fn hold(&self) {
        self.shared.hold();
    }

    /// Lifts [`Self::hold`] and releases every held stream, including `[[fake:hold]]` ones.
    pub fn release(&self) {
        self.shared.release();
    }

    /// How many streams are waiting at their hold point now.
    pub fn held_streams(&self) -> usize {
        self.shared.held_streams.load(Ordering::SeqCst)
    }

    /// Waits until at least one stream is held; false on timeout.
    pub async fn wait_for_held(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.held_streams() == 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Waits until at least `n` requests were recorded; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while lock(&self.shared.requests).len() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Markers to use when a prompt carries none (`None` clears).
    pub fn set_default_script(&self, script: Option<&str>) {
        *lock(&self.shared.default_script) = script.map(str::to_string);
    }

    /// Stops the server: releases held streams and waits up to 5 s for open connections.
    pub async fn shutdown(mut self) {
        self.shared.release();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The axum router of the fake, sharing state with nothing else. Useful with
/// `tower::ServiceExt::oneshot` when no socket is wanted.
pub fn test_router() -> Router {
    router(Arc::new(Shared::new()))
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/model/{id}/invoke", post(bedrock_invoke))
        .route(
            "/model/{id}/invoke-with-response-stream",
            post(bedrock_invoke_stream),
        )
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        // Claude Code probes the base URL with `HEAD /api/hello` unless
        // CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1.
        .route("/api/hello", get(hello).head(hello))
        .route("/_fake/health", get(admin_health))
        .route("/_fake/requests", get(admin_requests))
        .route("/_fake/unknown", get(admin_unknown))
        .route("/_fake/reset", post(admin_reset))
        .route("/_fake/hold", post(admin_hold))
        .route("/_fake/release", post(admin_release))
        .route("/_fake/script", post(admin_script))
        .fallback(unknown)
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}
