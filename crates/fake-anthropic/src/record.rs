//! What the fake records of every request (all but its own `/_fake/` admin calls), and the middleware that records
//! it before any handler runs.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::messages::error_response;
use crate::scenario;
use crate::state::{Shared, lock, now_ms};

/// Largest request body accepted (Claude Code sends long conversations).
const MAX_BODY: usize = 256 * 1024 * 1024;

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
    /// When the reply's last byte was handed to the connection (the end of its body; for a stream, after
    /// `message_stop`); `None` while it is being sent, or when the client went away before its end. Benches
    /// measure from it what a client does with a whole reply.
    #[serde(default)]
    pub replied_at_unix_ms: Option<u64>,
    /// The id of the message a `/v1/messages` reply carried (`msg_fake_…`), which the client's transcript
    /// repeats, so that a transcript line can be matched to its reply.
    #[serde(default)]
    pub message_id: Option<String>,
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

/// The sequence number of the recorded request and its parsed body, for the handlers.
#[derive(Clone)]
pub(crate) struct Recorded {
    pub(crate) seq: u64,
    pub(crate) body: Arc<Value>,
}

pub(crate) async fn record(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
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
            replied_at_unix_ms: None,
            message_id: None,
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
    let (parts, body) = resp.into_parts();
    let timed = TimedBody {
        inner: body,
        on_end: Some(Box::new(move || {
            shared.update(seq, |r| r.replied_at_unix_ms = Some(now_ms()))
        })),
    };
    Response::from_parts(parts, Body::new(timed))
}

/// A reply body that calls `on_end` once its last frame has been taken by the connection. It keeps the inner
/// body's size hint, so a JSON reply keeps its `content-length` (a stream wrapper would make it chunked).
struct TimedBody {
    inner: Body,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl TimedBody {
    fn ended(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling a body of known length once it reports its end, so the end is either that or
        // the `None` of a stream.
        match &polled {
            Poll::Ready(None) => self.ended(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.ended(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    /// An empty body is never polled: it was complete when it was handed over. A body dropped before its end
    /// (the client went away) stays without a reply time.
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.ended();
        }
    }
}

pub(crate) fn recorded(req: &Request) -> Recorded {
    req.extensions()
        .get::<Recorded>()
        .cloned()
        .unwrap_or(Recorded {
            seq: 0,
            body: Arc::new(Value::Null),
        })
}
