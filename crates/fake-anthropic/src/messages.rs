//! `POST /v1/messages`, the fake's one real answer (planned by [`crate::scenario`], streamed by [`crate::sse`]),
//! and Bedrock's invoke endpoints, which are the same call re-framed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::bedrock;
use crate::record::recorded;
use crate::scenario::{self, Plan};
use crate::sse::{self, Item};
use crate::state::{Shared, lock, wait_at_hold_point};

/// How often a held stream sends a `ping` event.
const PING_EVERY: Duration = Duration::from_secs(5);

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let kind = sse::error_type(status.as_u16());
    json_response(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

pub(crate) async fn messages(State(shared): State<Arc<Shared>>, req: Request) -> Response {
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
    shared.update(rec.seq, |r| r.message_id = Some(msg_id.clone()));
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

pub(crate) async fn bedrock_invoke(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(model): axum::extract::Path<String>,
    req: Request,
) -> Response {
    bedrock_messages(shared, model, req, false).await
}

pub(crate) async fn bedrock_invoke_stream(
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

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
