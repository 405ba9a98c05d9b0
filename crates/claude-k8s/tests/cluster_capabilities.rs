//! Issue 7 on the real stage: an agent in a Job gets what claude_local gives Claude. The instructions file and the
//! runtime skills (from outside the shared volume) reach the real `claude` through the prompt bundle on `/paperclip`;
//! Paperclip's MCP servers reach it through the per-run `--mcp-config` file (mode 0400, UID 1000, token nowhere in
//! the Job, the log or the env); a Bash tool call reads the run's own agent from the API with `PAPERCLIP_API_URL`
//! and `PAPERCLIP_API_KEY`; changed instructions start a fresh session with the reason in the log.
//!
//! A small axum server on 127.0.0.1 stands in for Paperclip's API (`GET /api/agents/me`) and an MCP server
//! (streamable HTTP, JSON answers); pods use the host network, as in the other cluster suites.

mod stage;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fake_anthropic::FakeAnthropic;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use stage::{RUN_TOKEN, Serve, Stage};

const MCP_TOKEN: &str = "mcp-token-e2e-fedcba9876543210";

/// What the stand-in Paperclip saw.
#[derive(Default)]
struct Seen {
    /// `Authorization` headers of MCP requests.
    mcp_auth: Vec<String>,
    /// JSON-RPC methods called on the MCP endpoint.
    mcp_methods: Vec<String>,
    /// `Authorization` headers of `GET /api/agents/me`.
    me_auth: Vec<String>,
}

type Shared = Arc<Mutex<Seen>>;

struct FakePaperclip {
    url: String,
    seen: Shared,
}

async fn start_fake_paperclip(agent: String) -> FakePaperclip {
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
struct Sources {
    dir: std::path::PathBuf,
    instructions: String,
    skill: String,
}

fn sources(tag: &str) -> Sources {
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
fn own_shared_dirs() {
    let dir = std::path::Path::new("/paperclip/claude-k8s/sessions");
    std::fs::create_dir_all(dir).unwrap();
    for d in [dir.parent().unwrap(), dir] {
        std::os::unix::fs::chown(d, Some(1000), Some(1000)).unwrap();
    }
}

fn capability_params(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn instructions_skills_and_paperclip_tools_reach_claude_in_the_job() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let agent = stage::uuid();
    let paperclip = start_fake_paperclip(agent.clone()).await;
    let src = sources(&stage::short_id());
    own_shared_dirs();
    let mut serve = Serve::start(&stage);
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"instructionsFilePath": src.instructions, "paperclipApiUrl": paperclip.url}),
    );
    let bash = "wget -qO- --header \"Authorization: Bearer $PAPERCLIP_API_KEY\" \"$PAPERCLIP_API_URL/api/agents/me\"; \
                echo; stat -c 'mcp-file %a %u' /var/run/claude-k8s/mcp/mcp-config.json; \
                env | grep -v '^PAPERCLIP_API_KEY=' | sort";
    let prompt = format!(
        "Check who you are. [[fake:bash {bash}]] [[fake:tool mcp__paperclip__whoami {{}}]] [[fake:text Capabilities checked]]"
    );
    let params = capability_params(&stage, &agent, &config, &prompt, &src, &paperclip);
    let id = serve.send_execute(&params).await;
    assert!(
        serve
            .wait_for_log(&id, Duration::from_secs(120), |c| c
                .contains("created in namespace"))
            .await,
        "the Job was created"
    );
    // The Job object as the API server holds it, while it runs.
    let jobs: Api<Job> = Api::namespaced(stage.admin_client().await, "paperclip");
    let job = jobs
        .list(&ListParams::default().labels(&format!("paperclip.io/agent-id={agent}")))
        .await
        .unwrap()
        .items
        .remove(0);
    let job_text = serde_json::to_string(&job).unwrap();
    let rec = serve.wait_result(&id).await;
    let r = &rec.result;
    let log = rec.log_text();
    assert_eq!(r["exitCode"], 0, "{r:#}\n{log}");

    // The token never shows in the Job, the log (the meta included) or the pod's env.
    for token in [RUN_TOKEN, MCP_TOKEN] {
        assert!(!job_text.contains(token), "{token} in the Job: {job_text}");
        assert!(!log.contains(token), "{token} in the run log");
        assert!(
            !rec.meta.as_ref().unwrap().to_string().contains(token),
            "{token} in the meta"
        );
    }
    let args = rec.meta.as_ref().unwrap()["commandArgs"].clone();
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let after = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]);
    let bundle = after("--add-dir").expect("--add-dir");
    assert!(
        bundle.starts_with(&format!(
            "/paperclip/test-instances/{agent}/companies/company-e2e/"
        )),
        "{args:?}"
    );
    assert_eq!(
        after("--append-system-prompt-file"),
        Some(format!("{bundle}/agent-instructions.md").as_str())
    );
    assert_eq!(
        after("--mcp-config"),
        Some("/var/run/claude-k8s/mcp/mcp-config.json")
    );
    assert!(args.contains(&"--strict-mcp-config"));

    // The bundle on the shared volume: the skill copied (its source is outside the volume), not linked.
    let skill_md = std::path::Path::new(bundle).join(".claude/skills/paperclip/SKILL.md");
    assert!(
        std::fs::read_to_string(&skill_md)
            .unwrap()
            .contains("SKILL-MARKER-7")
    );
    assert!(
        !std::fs::symlink_metadata(skill_md.parent().unwrap())
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // What the real claude sent the model.
    let requests = fake.message_requests();
    let first = &requests[0];
    let system = first.system_text();
    assert!(
        system.contains("INSTRUCTIONS-MARKER-7"),
        "instructions in the system prompt:\n{system}"
    );
    assert!(
        system.contains(&format!(
            "The above agent instructions were loaded from {}",
            src.instructions
        )),
        "the path directive"
    );
    assert!(system.contains("## Company skill library"), "the manifest");
    let whole = first.body.to_string();
    assert!(
        whole.contains("SKILL-MARKER-7"),
        "the paperclip skill is listed to the model"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.mentions_tool("mcp__paperclip__whoami")),
        "Paperclip's MCP tool is offered"
    );

    // The tools worked: the API call with the run's URL and key, the MCP call with the server's token.
    {
        let seen = paperclip.seen.lock().unwrap();
        assert_eq!(
            seen.me_auth,
            [format!("Bearer {RUN_TOKEN}")],
            "one authorized GET /api/agents/me"
        );
        assert!(
            seen.mcp_methods.iter().any(|m| m == "tools/call"),
            "{:?}",
            seen.mcp_methods
        );
        assert!(
            seen.mcp_auth
                .iter()
                .all(|a| a == &format!("Bearer {MCP_TOKEN}"))
        );
    }
    let results: String = requests
        .iter()
        .map(|r| r.body["messages"].to_string())
        .collect();
    assert!(
        results.contains(&agent),
        "the Bash tool result holds the agent from the API"
    );
    assert!(
        results.contains("mcp-file 400 1000"),
        "the MCP config is 0400 for UID 1000: {results}"
    );
    assert!(results.contains("MCP-WHOAMI-OK"));
    assert!(
        !results.contains(MCP_TOKEN),
        "no MCP token in the pod's env"
    );
    assert!(
        results.contains("PAPERCLIP_API_URL="),
        "the env dump is there"
    );

    assert_eq!(
        r["sessionParams"]["promptBundleKey"],
        bundle.rsplit('/').next().unwrap()
    );
    assert!(
        r["sessionParams"]["mcpServerIdentity"]
            .as_str()
            .unwrap()
            .contains("conn-e2e-1")
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
    let _ = std::fs::remove_dir_all(&src.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn unchanged_bundle_resumes_and_changed_instructions_start_fresh_with_the_reason() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let agent = stage::uuid();
    let paperclip = start_fake_paperclip(agent.clone()).await;
    let src = sources(&stage::short_id());
    own_shared_dirs();
    let mut serve = Serve::start(&stage);
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"instructionsFilePath": src.instructions}),
    );
    let run = |n: u32, saved: Option<Value>| {
        let mut p = capability_params(
            &stage,
            &agent,
            &config,
            &format!("Heartbeat {n} [[fake:text Answer {n}]]"),
            &src,
            &paperclip,
        );
        p["runId"] = json!(format!("run-{agent}-{n}"));
        if let Some(saved) = saved {
            p["runtime"] = json!({"sessionId": saved["sessionId"], "sessionParams": saved});
        }
        p
    };

    let first = serve.execute(&run(1, None)).await;
    assert_eq!(
        first.result["exitCode"],
        0,
        "{:#}\n{}",
        first.result,
        first.log_text()
    );
    let saved = first.result["sessionParams"].clone();
    assert!(saved["promptBundleKey"].is_string(), "{saved}");

    let second = serve.execute(&run(2, Some(saved.clone()))).await;
    assert_eq!(second.result["exitCode"], 0, "{}", second.log_text());
    let args = second.meta.as_ref().unwrap()["commandArgs"].to_string();
    assert!(
        args.contains("--resume"),
        "unchanged bundle and servers: resumed: {args}"
    );
    assert!(!args.contains("--append-system-prompt-file"), "{args}");
    assert_eq!(second.result["sessionId"], saved["sessionId"]);

    std::fs::write(
        &src.instructions,
        "# Agent\n\nINSTRUCTIONS-MARKER-7b: the new rules.\n",
    )
    .unwrap();
    let before = fake.message_requests().len();
    let third = serve
        .execute(&run(3, Some(second.result["sessionParams"].clone())))
        .await;
    let log = third.log_text();
    assert_eq!(third.result["exitCode"], 0, "{log}");
    assert!(
        log.contains(&format!(
            "was saved for prompt bundle {}",
            saved["promptBundleKey"].as_str().unwrap()
        )),
        "the reason is in the log:\n{log}"
    );
    let args = third.meta.as_ref().unwrap()["commandArgs"].to_string();
    assert!(!args.contains("--resume"), "{args}");
    assert!(args.contains("--append-system-prompt-file"), "{args}");
    assert_ne!(
        third.result["sessionId"], saved["sessionId"],
        "a fresh session"
    );
    assert_ne!(
        third.result["sessionParams"]["promptBundleKey"],
        saved["promptBundleKey"]
    );
    assert!(
        fake.message_requests()[before]
            .system_text()
            .contains("INSTRUCTIONS-MARKER-7b"),
        "the new instructions reached the model"
    );

    // An agent-level heartbeat: Paperclip hands back only the bare session id. The adapter's session record on
    // the shared volume still knows the bundle the session ran with, so changed instructions start fresh too.
    std::fs::write(
        &src.instructions,
        "# Agent\n\nINSTRUCTIONS-MARKER-7c: newer rules.\n",
    )
    .unwrap();
    let third_key = third.result["sessionParams"]["promptBundleKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bare = run(4, None);
    bare["runtime"] = json!({"sessionId": third.result["sessionId"], "sessionParams": null});
    let fourth = serve.execute(&bare).await;
    let log = fourth.log_text();
    assert_eq!(fourth.result["exitCode"], 0, "{log}");
    assert!(
        log.contains(&format!("was saved for prompt bundle {third_key}")),
        "{log}"
    );
    assert_ne!(
        fourth.result["sessionId"], third.result["sessionId"],
        "a fresh session"
    );
    // And with the bundle unchanged, the bare id resumes.
    let mut bare = run(5, None);
    bare["runtime"] = json!({"sessionId": fourth.result["sessionId"], "sessionParams": null});
    let fifth = serve.execute(&bare).await;
    assert_eq!(
        fifth.result["sessionId"],
        fourth.result["sessionId"],
        "{}",
        fifth.log_text()
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
    let _ = std::fs::remove_dir_all(&src.dir);
}
