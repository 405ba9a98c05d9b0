//! The fake's HTTP surface, without the Claude Code CLI: the router in process, the library
//! handle on a socket, and the binary.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fake_anthropic::{FakeAnthropic, RecordedRequest, test_router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tower::ServiceExt;

fn messages_body(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-6",
        "max_tokens": 1024,
        "stream": stream,
        "system": [{"type": "text", "text": "You are a test.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    })
}

fn post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-api-key", "sk-ant-test")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn body_string(resp: axum::response::Response) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// (event name, data) of an SSE body.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn streams_text_and_records_the_request() {
    let app = test_router();
    let resp = app
        .clone()
        .oneshot(post(
            "/v1/messages?beta=true",
            &messages_body("hi [[fake:text Hello there]]", true),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let events = sse_events(&body_string(resp).await);
    assert_eq!(events.first().unwrap().0, "message_start");
    assert_eq!(events.last().unwrap().0, "message_stop");
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "Hello there");
    let start_usage = &events[0].1["message"]["usage"];
    assert!(start_usage["cache_creation_input_tokens"].as_u64().unwrap() > 0);

    let resp = app
        .oneshot(Request::get("/_fake/requests").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let reqs: Vec<RecordedRequest> = serde_json::from_str(&body_string(resp).await).unwrap();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.query.as_deref(), Some("beta=true"));
    assert_eq!(r.status, 200);
    assert_eq!(r.api_key(), Some("sk-ant-test"));
    assert_eq!(r.marker.as_deref(), Some("[[fake:text Hello there]]"));
    assert_eq!(r.system_text(), "You are a test.");
    assert_eq!(r.tool_names(), vec!["Bash"]);
    assert!(r.is_stream());
}

#[tokio::test]
async fn json_reply_tool_use_and_cache_read() {
    let app = test_router();
    let body = messages_body("[[fake:bash echo hi]]", false);
    let first: Value = serde_json::from_str(
        &body_string(
            app.clone()
                .oneshot(post("/v1/messages", &body))
                .await
                .unwrap(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(first["type"], "message");
    assert_eq!(first["stop_reason"], "tool_use");
    assert_eq!(first["content"][0]["name"], "Bash");
    assert_eq!(first["content"][0]["input"]["command"], "echo hi");
    // The same prompt again reads what the first call wrote to the simulated cache.
    let second: Value = serde_json::from_str(
        &body_string(app.oneshot(post("/v1/messages", &body)).await.unwrap()).await,
    )
    .unwrap();
    assert_eq!(
        second["usage"]["cache_read_input_tokens"],
        first["usage"]["cache_creation_input_tokens"]
    );
    assert_eq!(second["usage"]["cache_creation_input_tokens"], 0);
}

#[tokio::test]
async fn errors_have_anthropic_shape() {
    let app = test_router();
    for (status, kind) in [
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (401, "authentication_error"),
        (500, "api_error"),
    ] {
        let resp = app
            .clone()
            .oneshot(post(
                "/v1/messages",
                &messages_body(&format!("[[fake:error {status}]]"), true),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        assert!(resp.headers().contains_key("request-id"));
        assert_eq!(
            resp.headers().contains_key("retry-after"),
            matches!(status, 429 | 529)
        );
        let v: Value = serde_json::from_str(&body_string(resp).await).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind);
    }
}

#[tokio::test]
async fn other_endpoints_and_unknown_paths() {
    let app = test_router();
    let resp = app
        .clone()
        .oneshot(post(
            "/v1/messages/count_tokens",
            &messages_body("count me", false),
        ))
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body_string(resp).await).unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 10);

    let resp = app
        .clone()
        .oneshot(Request::get("/v1/models").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body_string(resp).await).unwrap();
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "claude-sonnet-4-6")
    );
    let resp = app
        .clone()
        .oneshot(
            Request::get("/v1/models/claude-sonnet-4-6")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = app
        .clone()
        .oneshot(
            Request::post("/v1/something/new")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_str(&body_string(resp).await).unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");

    let resp = app
        .clone()
        .oneshot(Request::get("/_fake/unknown").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let unknown: Vec<RecordedRequest> = serde_json::from_str(&body_string(resp).await).unwrap();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].path, "/v1/something/new");
    assert_eq!(unknown[0].body, json!("x"));
    assert_eq!(unknown[0].status, 404);

    let resp = app
        .clone()
        .oneshot(Request::post("/_fake/reset").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body_string(resp).await).unwrap();
    assert_eq!(v["requests"], 0);
}

#[tokio::test]
async fn default_script_over_admin_endpoint() {
    let app = test_router();
    app.clone()
        .oneshot(
            Request::post("/_fake/script")
                .body(Body::from("[[fake:text from the script]]"))
                .unwrap(),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_str(
        &body_string(
            app.clone()
                .oneshot(post("/v1/messages", &messages_body("no marker", false)))
                .await
                .unwrap(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(v["content"][0]["text"], "from the script");
}

#[tokio::test]
async fn hold_and_release_a_stream() {
    let app = test_router();
    let resp = app
        .clone()
        .oneshot(post(
            "/v1/messages",
            &messages_body("[[fake:hold Working on it]]", true),
        ))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut seen = String::new();
    // Everything up to the end of the first block arrives; then the stream stops.
    while !seen.contains("content_block_stop") {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("first block in time")
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    assert!(seen.contains("Working "));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), body.frame())
            .await
            .is_err(),
        "the stream should be held"
    );
    let health: Value = serde_json::from_str(
        &body_string(
            app.clone()
                .oneshot(Request::get("/_fake/health").body(Body::empty()).unwrap())
                .await
                .unwrap(),
        )
        .await,
    )
    .unwrap();
    assert_eq!(health["held_streams"], 1);
    app.clone()
        .oneshot(Request::post("/_fake/release").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let rest = String::from_utf8(rest.to_vec()).unwrap();
    assert!(rest.contains("Released."));
    assert!(rest.contains("message_stop"));
}

/// A minimal HTTP/1.1 exchange over a socket (test side only): returns status and body.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nx-api-key: sk-ant-socket\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_handle_on_a_socket() {
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    assert!(fake.url().starts_with("http://127.0.0.1:"));
    let addr = fake.addr();

    fake.hold();
    let body = messages_body("[[fake:text held by the server]]", true).to_string();
    let call = tokio::spawn(async move { http(addr, "POST", "/v1/messages", &body).await });
    assert!(fake.wait_for_held(Duration::from_secs(5)).await);
    assert_eq!(fake.held_streams(), 1);
    assert!(!call.is_finished());
    fake.release();
    let (status, text) = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("message_stop"));

    let (status, _) = http(addr, "GET", "/nope", "").await;
    assert_eq!(status, 404);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(fake.message_requests()[0].api_key(), Some("sk-ant-socket"));
    assert_eq!(fake.unknown_requests()[0].path, "/nope");
    fake.reset();
    assert!(fake.requests().is_empty());
    fake.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// The whole response of one HTTP/1.1 exchange (status line, headers, body), test side only.
async fn http_raw(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_when_each_reply_was_complete_and_its_message_id() {
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let addr = fake.addr();

    // A stream of 4 deltas 100 ms apart is complete about 400 ms after it was received.
    let slow = messages_body("[[fake:slow 4 100ms]]", true).to_string();
    let out = http_raw(addr, "/v1/messages", &slow).await;
    let seen_end = now_ms();
    let rec = fake.message_requests().pop().unwrap();
    let replied = rec
        .replied_at_unix_ms
        .expect("a complete stream has a reply time");
    assert!(
        replied >= rec.received_at_unix_ms + 390,
        "replied {replied}, received {}",
        rec.received_at_unix_ms
    );
    assert!(
        replied <= seen_end,
        "replied {replied} after the client saw the end at {seen_end}"
    );
    let id = rec.message_id.clone().expect("a reply's message id");
    assert!(id.starts_with("msg_fake_"), "{id}");
    assert!(
        out.contains(&format!("\"id\":\"{id}\"")),
        "the stream carries {id}"
    );

    // A JSON reply keeps its content-length and has a reply time too.
    let out = http_raw(
        addr,
        "/v1/messages",
        &messages_body("[[fake:text hi]]", false).to_string(),
    )
    .await;
    assert!(
        out.to_ascii_lowercase().contains("content-length:"),
        "{out}"
    );
    let rec = fake.message_requests().pop().unwrap();
    assert!(
        rec.replied_at_unix_ms
            .is_some_and(|t| t >= rec.received_at_unix_ms)
    );
    assert!(out.contains(rec.message_id.as_deref().unwrap()));

    // A held stream has sent its headers and first block, and is not complete until released.
    let held = messages_body("[[fake:hold Working on it]]", true).to_string();
    let call = tokio::spawn(async move { http_raw(addr, "/v1/messages", &held).await });
    assert!(fake.wait_for_held(Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        fake.message_requests().pop().unwrap().replied_at_unix_ms,
        None
    );
    let released = now_ms();
    fake.release();
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap();
    let replied = fake.message_requests().pop().unwrap().replied_at_unix_ms;
    assert!(
        replied.is_some_and(|t| t >= released),
        "{replied:?} vs release at {released}"
    );

    // Requests without a message reply still get a reply time, and no message id.
    let (status, _) = http(addr, "GET", "/v1/models", "").await;
    assert_eq!(status, 200);
    let models = fake.requests().pop().unwrap();
    assert!(models.replied_at_unix_ms.is_some());
    assert_eq!(models.message_id, None);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_url_and_writes_port_file() {
    let dir = std::env::temp_dir().join(format!("fake-anthropic-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port_file = dir.join("port");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-anthropic"))
        .args(["--listen", "127.0.0.1:0", "--port-file"])
        .arg(&port_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .expect("URL first")
        .parse()
        .unwrap();
    for _ in 0..100 {
        if port_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&port_file).unwrap().trim(),
        port.to_string()
    );
    let addr = ([127, 0, 0, 1], port).into();
    let (status, body) = http(addr, "GET", "/_fake/health", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\":true"));
    let (status, body) = http(
        addr,
        "POST",
        "/v1/messages",
        &messages_body("hi", false).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("Hello from the fake model."));
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
