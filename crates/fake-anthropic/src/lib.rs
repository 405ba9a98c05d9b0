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

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::scenario::Plan;
use crate::sse::Item;
use crate::usage::PromptCache;

/// Largest request body accepted (Claude Code sends long conversations).
const MAX_BODY: usize = 256 * 1024 * 1024;

/// How often a held stream sends a `ping` event.
const PING_EVERY: Duration = Duration::from_secs(5);

/// The models `GET /v1/models` lists.
pub const MODELS: &[(&str, &str)] = &[
    ("claude-sonnet-4-6", "Claude Sonnet 4.6"),
    ("claude-opus-4-6", "Claude Opus 4.6"),
    ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
];

/// One request the fake received (admin requests under `/_fake/` are not recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 1-based order of arrival.
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// The query string without `?`, if any (Claude Code sends `beta=true`).
    pub query: Option<String>,
    /// All headers, names lower-case, secrets included (`x-api-key`, `authorization`);
    /// repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON; a non-JSON body as a JSON string; no body as `null`.
    pub body: Value,
    /// The status answered; 0 while the response has not been decided.
    pub status: u16,
    /// The marker that chose the reply of a `/v1/messages` call, if any.
    pub marker: Option<String>,
    /// True when no route matched (answered 404).
    pub unknown: bool,
    pub received_at_unix_ms: u64,
}

impl RecordedRequest {
    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The key the client sent: `x-api-key`, else the bearer token of `authorization`.
    pub fn api_key(&self) -> Option<&str> {
        self.header("x-api-key").or_else(|| {
            self.header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
        })
    }

    /// The requested model.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Whether the request asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The system prompt, text blocks joined by newlines.
    pub fn system_text(&self) -> String {
        scenario::system_text(&self.body)
    }

    /// Names of the tools offered to the model (built-in and MCP, e.g. `mcp__server__tool`).
    pub fn tool_names(&self) -> Vec<String> {
        scenario::tool_names(&self.body)
    }

    /// Tools Claude Code announced as deferred (loadable with `ToolSearch`); MCP tools are
    /// deferred by default.
    pub fn deferred_tool_names(&self) -> Vec<String> {
        scenario::deferred_tool_names(&self.body)
    }

    /// Whether the model was told about a tool: offered in `tools` or announced as deferred.
    pub fn mentions_tool(&self, name: &str) -> bool {
        self.tool_names().iter().any(|n| n == name)
            || self.deferred_tool_names().iter().any(|n| n == name)
    }

    /// The `messages` array (empty if absent).
    pub fn messages(&self) -> Vec<Value> {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The text of the turn prompt: the latest user message without a tool result.
    pub fn prompt_text(&self) -> String {
        scenario::turn(&self.body).prompt_text
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HoldState {
    held: bool,
    releases: u64,
}

struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    cache: Mutex<PromptCache>,
    error_counts: Mutex<HashMap<String, u32>>,
    default_script: Mutex<Option<String>>,
    hold: watch::Sender<HoldState>,
    held_streams: AtomicUsize,
    ids: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new() -> Self {
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

    fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let t = now_ms();
        format!("{prefix}{t:012x}{n:06}")
    }

    fn hold(&self) {
        self.hold.send_modify(|s| s.held = true);
    }

    fn release(&self) {
        self.hold.send_modify(|s| {
            s.held = false;
            s.releases += 1;
        });
    }

    fn reset(&self) {
        lock(&self.requests).clear();
        lock(&self.cache).clear();
        lock(&self.error_counts).clear();
        *lock(&self.default_script) = None;
        self.release();
    }

    fn update(&self, seq: u64, f: impl FnOnce(&mut RecordedRequest)) {
        let mut reqs = lock(&self.requests);
        if let Some(r) = reqs.iter_mut().find(|r| r.seq == seq) {
            f(r);
        }
    }

    fn health(&self) -> Value {
        json!({
            "ok": true,
            "requests": lock(&self.requests).len(),
            "held_streams": self.held_streams.load(Ordering::SeqCst),
            "held": self.hold.borrow().held,
        })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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

/// The sequence number of the recorded request and its parsed body, for the handlers.
#[derive(Clone)]
struct Recorded {
    seq: u64,
    body: Arc<Value>,
}

async fn record(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_fake/") {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, &format!("body: {e}"));
        }
    };
    let body_json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let mut headers = BTreeMap::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|old: &mut String| {
                old.push_str(", ");
                old.push_str(&v);
            })
            .or_insert(v);
    }
    let seq = {
        let mut reqs = lock(&shared.requests);
        let seq = reqs.last().map_or(1, |r| r.seq + 1);
        reqs.push(RecordedRequest {
            seq,
            method: parts.method.to_string(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_string),
            headers,
            body: body_json.clone(),
            status: 0,
            marker: None,
            unknown: false,
            received_at_unix_ms: now_ms(),
        });
        seq
    };
    tracing::debug!(seq, method = %parts.method, %path, "request");
    parts.extensions.insert(Recorded {
        seq,
        body: Arc::new(body_json),
    });
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = resp.status().as_u16();
    shared.update(seq, |r| r.status = status);
    resp
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let kind = sse::error_type(status.as_u16());
    json_response(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn recorded(req: &Request) -> Recorded {
    req.extensions()
        .get::<Recorded>()
        .cloned()
        .unwrap_or(Recorded {
            seq: 0,
            body: Arc::new(Value::Null),
        })
}

async fn messages(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let rec = recorded(&req);
    let body = rec.body.as_ref();
    if !body.is_object() || body.get("messages").is_none() {
        return error_response(StatusCode::BAD_REQUEST, "messages: field required");
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-sonnet-4-6")
        .to_string();
    let stream = body.get("stream").and_then(Value::as_bool) == Some(true);
    let default_script = lock(&shared.default_script).clone();
    let (plan, marker) = {
        let mut counts = lock(&shared.error_counts);
        let mut unique = || shared.next_id("");
        scenario::plan(body, default_script.as_deref(), &mut *counts, &mut unique)
    };
    shared.update(rec.seq, |r| r.marker = marker.clone());
    tracing::info!(seq = rec.seq, stream, marker = ?marker, "messages");

    let reply = match plan {
        Plan::Error(step) => {
            let request_id = shared.next_id("req_fake_");
            let status =
                StatusCode::from_u16(step.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = json_response(status, &sse::error_json(&step, &request_id));
            let headers = resp.headers_mut();
            headers.insert("request-id", hv(&request_id));
            for (name, value) in sse::error_headers(&step) {
                headers.insert(name, hv(&value));
            }
            return resp;
        }
        Plan::Reply(reply) => reply,
    };
    let usage = lock(&shared.cache).usage(body);
    let msg_id = shared.next_id("msg_fake_");
    let request_id = shared.next_id("req_fake_");
    let releases_at_start = shared.hold.borrow().releases;

    if !stream {
        if !reply.delta_delay.is_zero() {
            let n: usize = reply
                .blocks
                .iter()
                .map(|b| match b {
                    scenario::Block::Text { deltas } => deltas.len(),
                    scenario::Block::ToolUse { .. } => 0,
                })
                .sum();
            tokio::time::sleep(reply.delta_delay * n as u32).await;
        }
        wait_at_hold_point(&shared, reply.hold, releases_at_start).await;
        let mut resp = json_response(
            StatusCode::OK,
            &sse::message_json(&reply, &msg_id, &model, usage),
        );
        resp.headers_mut().insert("request-id", hv(&request_id));
        return resp;
    }

    let items = sse::stream_items(&reply, &msg_id, &model, usage);
    let body_stream = async_stream::stream! {
        for item in items {
            match item {
                Item::Event(bytes) => yield Ok::<_, std::convert::Infallible>(bytes),
                Item::Sleep(d) => tokio::time::sleep(d).await,
                Item::HoldPoint { scripted } => {
                    // Keep the connection alive while held, as the API does with `ping`.
                    let wait = wait_at_hold_point(&shared, scripted, releases_at_start);
                    tokio::pin!(wait);
                    loop {
                        let ping = tokio::select! {
                            _ = &mut wait => false,
                            _ = tokio::time::sleep(PING_EVERY) => true,
                        };
                        if !ping {
                            break;
                        }
                        yield Ok(sse::encode("ping", &json!({"type": "ping"})));
                    }
                }
            }
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("request-id", hv(&request_id))
        .body(Body::from_stream(body_stream))
        .unwrap_or_else(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

async fn bedrock_invoke(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(model): axum::extract::Path<String>,
    req: Request,
) -> Response {
    bedrock_messages(shared, model, req, false).await
}

async fn bedrock_invoke_stream(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(model): axum::extract::Path<String>,
    req: Request,
) -> Response {
    bedrock_messages(shared, model, req, true).await
}

/// A Bedrock invoke is a Messages call with the model in the path; the stream is re-framed as AWS event-stream.
async fn bedrock_messages(
    shared: Arc<Shared>,
    model: String,
    mut req: Request,
    stream: bool,
) -> Response {
    let mut rec = recorded(&req);
    let mut body = (*rec.body).clone();
    if let Some(o) = body.as_object_mut() {
        o.insert("model".into(), json!(model));
        o.insert("stream".into(), json!(stream));
    }
    rec.body = Arc::new(body);
    req.extensions_mut().insert(rec);
    let resp = messages(State(shared), req).await;
    if !stream || resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    let mut data = body.into_data_stream();
    let framed = async_stream::stream! {
        use futures::StreamExt;
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = data.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            let (events, used) = bedrock::sse_data(&buffer);
            buffer.drain(..used);
            for event in events {
                yield Ok::<_, std::convert::Infallible>(bedrock::chunk(&event));
            }
        }
    };
    Response::from_parts(parts, Body::from_stream(framed))
}

/// Waits while the server is held, or (for a scripted hold) until a release after `since`.
async fn wait_at_hold_point(shared: &Shared, scripted: bool, since: u64) {
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

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

async fn hello() -> Response {
    json_response(StatusCode::OK, &json!({"message": "hello"}))
}

async fn count_tokens(req: Request) -> Response {
    let rec = recorded(&req);
    json_response(
        StatusCode::OK,
        &json!({"input_tokens": usage::prompt_tokens(&rec.body)}),
    )
}

fn model_json(id: &str, name: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-09-29T00:00:00Z"})
}

async fn models() -> Response {
    let data: Vec<Value> = MODELS.iter().map(|(id, n)| model_json(id, n)).collect();
    json_response(
        StatusCode::OK,
        &json!({
            "data": data,
            "has_more": false,
            "first_id": MODELS.first().map(|m| m.0),
            "last_id": MODELS.last().map(|m| m.0),
        }),
    )
}

async fn model(axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match MODELS.iter().find(|(m, _)| *m == id) {
        Some((m, n)) => json_response(StatusCode::OK, &model_json(m, n)),
        None => error_response(StatusCode::NOT_FOUND, &format!("model: {id}")),
    }
}

async fn unknown(State(shared): State<Arc<Shared>>, method: Method, req: Request) -> Response {
    let rec = recorded(&req);
    shared.update(rec.seq, |r| r.unknown = true);
    tracing::warn!(%method, path = %req.uri().path(), "unknown path, answering 404");
    error_response(
        StatusCode::NOT_FOUND,
        &format!("fake-anthropic: no route for {method} {}", req.uri().path()),
    )
}

async fn admin_health(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &shared.health())
}

#[derive(Deserialize)]
struct RequestsQuery {
    path: Option<String>,
}

async fn admin_requests(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<RequestsQuery>,
) -> Response {
    let reqs: Vec<RecordedRequest> = lock(&shared.requests)
        .iter()
        .filter(|r| q.path.as_ref().is_none_or(|p| &r.path == p))
        .cloned()
        .collect();
    json_response(StatusCode::OK, &json!(reqs))
}

async fn admin_unknown(State(shared): State<Arc<Shared>>) -> Response {
    let reqs: Vec<RecordedRequest> = lock(&shared.requests)
        .iter()
        .filter(|r| r.unknown)
        .cloned()
        .collect();
    json_response(StatusCode::OK, &json!(reqs))
}

async fn admin_reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.reset();
    json_response(StatusCode::OK, &shared.health())
}

async fn admin_hold(State(shared): State<Arc<Shared>>) -> Response {
    shared.hold();
    json_response(StatusCode::OK, &shared.health())
}

async fn admin_release(State(shared): State<Arc<Shared>>) -> Response {
    shared.release();
    json_response(StatusCode::OK, &shared.health())
}

async fn admin_script(State(shared): State<Arc<Shared>>, body: String) -> Response {
    let script = body.trim();
    *lock(&shared.default_script) = (!script.is_empty()).then(|| script.to_string());
    json_response(
        StatusCode::OK,
        &json!({"ok": true, "script": *lock(&shared.default_script)}),
    )
}
