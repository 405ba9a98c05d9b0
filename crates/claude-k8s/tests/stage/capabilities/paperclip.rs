//! What the capability tests stand up around a run: a small axum server on 127.0.0.1 in place of Paperclip's API
//! (`GET /api/agents/me`) and an MCP server (streamable HTTP, JSON answers), the instructions and a skill outside
//! the shared volume, and the execute params that carry them.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::support::{RUN_TOKEN, Stage};

pub const MCP_TOKEN: &str = "mcp-token-e2e-fedcba9876543210";

/// What the stand-in Paperclip saw.
#[derive(Default)]
pub struct Seen {
    /// `Authorization` headers of MCP requests.
    pub mcp_auth: Vec<String>,
    /// JSON-RPC methods called on the MCP endpoint.
    pub mcp_methods: Vec<String>,
    /// `Authorization` headers of `GET /api/agents/me`.
    pub me_auth: Vec<String>,
}

pub type Shared = Arc<Mutex<Seen>>;

pub struct FakePaperclip {
    pub url: String,
    pub seen: Shared,
}

pub async fn start_fake_paperclip(agent: String) -> FakePaperclip {
    let seen: Shared = Arc::default();
    let me_agent = agent.clone();
    let app = axum::Router::new()
        .route(
            "/api/agents/me",
            get(move |State(seen): State<Shared>, headers: HeaderMap| {
                let agent = me_agent.clone();
                async move {
                    let auth = header(&headers, "authorization");
                    seen.lock().unwrap().me_auth.push(auth.clone());
                    if auth == format!("Bearer {RUN_TOKEN}") {
                        Json(json!({"id": agent, "name": "E2E agent", "adapterType": "claude_k8s"}))
                            .into_response()
                    } else {
                        (StatusCode::UNAUTHORIZED, "bad token").into_response()
                    }
                }
            }),
        )
        .route(
            "/api/mcp/tools",
            post(mcp).get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakePaperclip { url, seen }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// A minimal MCP server (streamable HTTP with plain JSON answers): one tool, `whoami`.
async fn mcp(State(seen): State<Shared>, headers: HeaderMap, Json(req): Json<Value>) -> Response {
    let method = req["method"].as_str().unwrap_or("").to_owned();
    {
        let mut s = seen.lock().unwrap();
        s.mcp_auth.push(header(&headers, "authorization"));
        s.mcp_methods.push(method.clone());
    }
    if header(&headers, "authorization") != format!("Bearer {MCP_TOKEN}") {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    let Some(id) = req.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response(); // a notification
    };
    let result = match method.as_str() {
        "initialize" => json!({
            "protocolVersion": req["params"]["protocolVersion"].as_str().unwrap_or("2025-03-26"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake-paperclip", "version": "1.0.0"}
        }),
        "tools/list" => json!({"tools": [{
            "name": "whoami",
            "description": "Tells which Paperclip agent is calling",
            "inputSchema": {"type": "object", "properties": {}}
        }]}),
        "tools/call" => json!({"content": [{"type": "text", "text": "MCP-WHOAMI-OK"}]}),
        "ping" => json!({}),
        _ => {
            return Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "not found"}}))
                .into_response();
        }
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// An instructions file and a `paperclip` skill in a scratch directory outside the shared volume (like the
/// server's node_modules).
pub struct Sources {
    pub dir: std::path::PathBuf,
    pub instructions: String,
    pub skill: String,
}

pub fn sources(tag: &str) -> Sources {
    let dir = std::env::temp_dir().join(format!("claude-k8s-caps-{tag}"));
    let skill = dir.join("skills/paperclip");
    std::fs::create_dir_all(skill.join("references")).unwrap();
    std::fs::write(
        skill.join("SKILL.md"),
        "---\nname: paperclip\ndescription: SKILL-MARKER-7 Read and update Paperclip issues through its API.\n---\n\n\
         # Paperclip\n\nUse $PAPERCLIP_API_URL with the bearer $PAPERCLIP_API_KEY.\n",
    )
    .unwrap();
    std::fs::write(skill.join("references/api.md"), "GET /api/agents/me\n").unwrap();
    let instructions = dir.join("agent/AGENTS.md");
    std::fs::create_dir_all(instructions.parent().unwrap()).unwrap();
    std::fs::write(
        &instructions,
        "# Agent\n\nINSTRUCTIONS-MARKER-7: answer precisely.\n",
    )
    .unwrap();
    Sources {
        dir,
        instructions: instructions.display().to_string(),
        skill: skill.display().to_string(),
    }
}

/// The adapter's own directory on the shared volume, owned by the agent's UID like everything Paperclip writes
/// there: this suite runs `serve` as root, and a root-owned session store would lock out a Paperclip server
/// (UID 1000) that uses the same volume later.
pub fn own_shared_dirs() {
    let dir = std::path::Path::new("/paperclip/claude-k8s/sessions");
    std::fs::create_dir_all(dir).unwrap();
    for d in [dir.parent().unwrap(), dir] {
        std::os::unix::fs::chown(d, Some(1000), Some(1000)).unwrap();
    }
}

pub fn capability_params(
    stage: &Stage,
    agent: &str,
    config: &Value,
    prompt: &str,
    src: &Sources,
    paperclip: &FakePaperclip,
) -> Value {
    let mut p = stage.params(agent, config, prompt, None);
    p["runtimeMcpServers"] = json!([{
        "name": "paperclip", "url": format!("{}/api/mcp/tools", paperclip.url),
        "token": MCP_TOKEN, "connectionId": "conn-e2e-1"
    }]);
    p["promptBundle"] = json!({
        "skills": [{"key": "paperclipai/paperclip/paperclip", "runtimeName": "paperclip", "source": src.skill}],
        "skillLibraryManifest": "## Company skill library\n\n- paperclipai/paperclip/paperclip — enabled",
        "instanceRoot": format!("/paperclip/test-instances/{agent}")
    });
    p
}
