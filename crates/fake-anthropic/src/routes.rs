//! The small routes: Claude Code's probes (`/api/hello`, token counting, the model list), the 404 for unknown
//! paths, and the `/_fake/` admin endpoints.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::MODELS;
use crate::messages::{error_response, json_response};
use crate::record::{RecordedRequest, recorded};
use crate::state::{Shared, lock};
use crate::usage;

pub(crate) async fn hello() -> Response {
    json_response(StatusCode::OK, &json!({"message": "hello"}))
}

pub(crate) async fn count_tokens(req: Request) -> Response {
    let rec = recorded(&req);
    json_response(
        StatusCode::OK,
        &json!({"input_tokens": usage::prompt_tokens(&rec.body)}),
    )
}

fn model_json(id: &str, name: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-09-29T00:00:00Z"})
}

pub(crate) async fn models() -> Response {
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

pub(crate) async fn model(axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match MODELS.iter().find(|(m, _)| *m == id) {
        Some((m, n)) => json_response(StatusCode::OK, &model_json(m, n)),
        None => error_response(StatusCode::NOT_FOUND, &format!("model: {id}")),
    }
}

pub(crate) async fn unknown(
    State(shared): State<Arc<Shared>>,
    method: Method,
    req: Request,
) -> Response {
    let rec = recorded(&req);
    shared.update(rec.seq, |r| r.unknown = true);
    tracing::warn!(%method, path = %req.uri().path(), "unknown path, answering 404");
    error_response(
        StatusCode::NOT_FOUND,
        &format!("fake-anthropic: no route for {method} {}", req.uri().path()),
    )
}

pub(crate) async fn admin_health(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &shared.health())
}

#[derive(Deserialize)]
pub(crate) struct RequestsQuery {
    path: Option<String>,
}

pub(crate) async fn admin_requests(
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

pub(crate) async fn admin_unknown(State(shared): State<Arc<Shared>>) -> Response {
    let reqs: Vec<RecordedRequest> = lock(&shared.requests)
        .iter()
        .filter(|r| r.unknown)
        .cloned()
        .collect();
    json_response(StatusCode::OK, &json!(reqs))
}

pub(crate) async fn admin_reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.reset();
    json_response(StatusCode::OK, &shared.health())
}

pub(crate) async fn admin_hold(State(shared): State<Arc<Shared>>) -> Response {
    shared.hold();
    json_response(StatusCode::OK, &shared.health())
}

pub(crate) async fn admin_release(State(shared): State<Arc<Shared>>) -> Response {
    shared.release();
    json_response(StatusCode::OK, &shared.health())
}

pub(crate) async fn admin_script(State(shared): State<Arc<Shared>>, body: String) -> Response {
    let script = body.trim();
    *lock(&shared.default_script) = (!script.is_empty()).then(|| script.to_string());
    json_response(
        StatusCode::OK,
        &json!({"ok": true, "script": *lock(&shared.default_script)}),
    )
}
