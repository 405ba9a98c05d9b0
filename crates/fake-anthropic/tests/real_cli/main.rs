//! The real Claude Code CLI against the fake.
//!
//! The CLI is `$CLAUDE_BIN`, else the stage copy that `test/stage/claude-cli.sh install` puts at
//! `${CLAUDE_K8S_STAGE_CACHE:-/var/cache/claude-k8s-stage}/claude-code/bin/claude`. Without
//! either, each test prints why and passes, unless `CLAUDE_K8S_REQUIRE_STAGE=1`: then it fails.
//!
//! Claude Code refuses `--dangerously-skip-permissions` as root, so as root the CLI runs as
//! uid/gid `$CLAUDE_TEST_UID` (default 1000) with a temporary HOME and working directory owned
//! by that uid.

mod cli;

use std::time::{Duration, Instant};

use fake_anthropic::FakeAnthropic;

use cli::{MODEL, Running, Sandbox, assert_no_unknown_paths, claude_bin, command, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_reply() {
    let Some(bin) = claude_bin() else { return };
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let sb = Sandbox::new("text");
    let r = run(
        &bin,
        &fake,
        &sb,
        "Say hello. [[fake:text Hello there]]",
        &[],
        &[],
    )
    .await;
    r.assert_success("Hello there");
    assert_eq!(r.assistant_texts(), vec!["Hello there"]);

    let calls = fake.message_requests();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let c = &calls[0];
    assert_eq!(c.api_key(), Some("sk-ant-test"));
    assert_eq!(c.model(), Some(MODEL));
    assert!(c.is_stream());
    assert_eq!(c.header("x-claude-code-session-id"), Some(&*r.session_id()));
    assert!(c.system_text().contains("Claude"), "{}", c.system_text());
    assert!(c.tool_names().iter().any(|t| t == "Bash"));
    assert!(
        c.prompt_text()
            .contains("Say hello. [[fake:text Hello there]]")
    );
    assert_eq!(c.marker.as_deref(), Some("[[fake:text Hello there]]"));
    assert_no_unknown_paths(&fake);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_prompt_reaches_the_model() {
    let Some(bin) = claude_bin() else { return };
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let sb = Sandbox::new("sys");
    let r = run(
        &bin,
        &fake,
        &sb,
        "hi",
        &[],
        &["--append-system-prompt", "Agent instructions: ZEBRA-1234"],
    )
    .await;
    r.assert_success(fake_anthropic::scenario::DEFAULT_REPLY);
    let c = &fake.message_requests()[0];
    assert!(c.system_text().contains("Agent instructions: ZEBRA-1234"));
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_tool_round_trip() {
    let Some(bin) = claude_bin() else { return };
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let sb = Sandbox::new("bash");
    let r = run(
        &bin,
        &fake,
        &sb,
        "Make a file. [[fake:bash echo hi > hello.txt && echo wrote it]]",
        &[],
        &[],
    )
    .await;
    r.assert_success("Tool result: wrote it");
    assert_eq!(
        std::fs::read_to_string(sb.work.join("hello.txt")).unwrap(),
        "hi\n"
    );
    let tool_use = r
        .of_type("assistant")
        .flat_map(|l| l["message"]["content"].as_array().cloned().unwrap())
        .find(|b| b["type"] == "tool_use")
        .expect("a tool_use line");
    assert_eq!(tool_use["name"], "Bash");
    assert_eq!(
        tool_use["input"]["command"],
        "echo hi > hello.txt && echo wrote it"
    );
    let tool_result = r
        .of_type("user")
        .flat_map(|l| l["message"]["content"].as_array().cloned().unwrap())
        .find(|b| b["type"] == "tool_result")
        .expect("a tool_result line");
    assert_eq!(tool_result["tool_use_id"], tool_use["id"]);
    assert_eq!(r.result()["num_turns"], 2);

    let calls = fake.message_requests();
    assert_eq!(calls.len(), 2);
    let last = calls[1].messages();
    assert_eq!(last.last().unwrap()["role"], "user");
    assert_eq!(
        last.last().unwrap()["content"][0]["tool_use_id"],
        tool_use["id"]
    );
    // The second call reads the cache the first one wrote.
    let mu = &r.result()["modelUsage"][MODEL];
    assert!(
        mu["cacheReadInputTokens"].as_u64().unwrap() > 1000,
        "{mu:#}"
    );
    assert_no_unknown_paths(&fake);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_sends_the_earlier_conversation() {
    let Some(bin) = claude_bin() else { return };
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let sb = Sandbox::new("resume");
    let first = run(
        &bin,
        &fake,
        &sb,
        "First prompt [[fake:text first answer]]",
        &[],
        &[],
    )
    .await;
    first.assert_success("first answer");
    let sid = first.session_id();
    let second = run(
        &bin,
        &fake,
        &sb,
        "Second prompt [[fake:text second answer]]",
        &[],
        &["--resume", &sid],
    )
    .await;
    second.assert_success("second answer");
    assert_eq!(second.session_id(), sid);
    // The resumed session's cost includes the first run.
    assert!(
        second.result()["total_cost_usd"].as_f64().unwrap()
            > first.result()["total_cost_usd"].as_f64().unwrap()
    );

    let calls = fake.message_requests();
    assert_eq!(calls.len(), 2);
    let msgs = calls[1].messages();
    let all = serde_json::to_string(&msgs).unwrap();
    assert!(all.contains("First prompt"), "{all}");
    assert!(all.contains("first answer"), "{all}");
    assert!(calls[1].prompt_text().contains("Second prompt"));
    assert!(!calls[1].prompt_text().contains("First prompt"));

    let unknown = run(
        &bin,
        &fake,
        &sb,
        "x",
        &[],
        &["--resume", "00000000-0000-0000-0000-000000000000"],
    )
    .await;
    assert_eq!(unknown.code, Some(1));
    assert_eq!(unknown.result()["is_error"], true);
    assert_eq!(unknown.result()["subtype"], "error_during_execution");
    assert_eq!(fake.message_requests().len(), 2);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_end_in_an_error_result() {
    let Some(bin) = claude_bin() else { return };
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    for (status, retry_error) in [
        (429, "rate_limit"),
        (529, "overloaded"),
        (401, "authentication_failed"),
        (500, "server_error"),
    ] {
        fake.reset();
        let sb = Sandbox::new("err");
        let r = run(
            &bin,
            &fake,
            &sb,
            &format!("[[fake:error {status} retry-after=0]]"),
            &[("CLAUDE_CODE_MAX_RETRIES", "1")],
            &[],
        )
        .await;
        assert_eq!(r.code, Some(1), "{status}: {r:#?}");
        let res = r.result();
        assert_eq!(res["is_error"], true, "{res:#}");
        assert_eq!(res["api_error_status"], status, "{res:#}");
        let retry = r
            .of_type("system")
            .find(|l| l["subtype"] == "api_retry")
            .unwrap_or_else(|| panic!("{status}: no api_retry line: {r:#?}"));
        assert_eq!(retry["error_status"], status);
        assert_eq!(retry["error"], retry_error);
        // One try and one retry.
        let calls = fake.message_requests();
        assert_eq!(calls.len(), 2, "{status}");
        assert!(calls.iter().all(|c| c.status == status));
    }
    // `times=1`: the retry succeeds.
    fake.reset();
    let sb = Sandbox::new("err-once");
    let r = run(
        &bin,
        &fake,
        &sb,
        "[[fake:error 529 times=1 retry-after=0]] [[fake:text recovered]]",
        &[("CLAUDE_CODE_MAX_RETRIES", "2")],
        &[],
    )
    .await;
    r.assert_success("recovered");
    assert_eq!(
        r.of_type("system")
            .filter(|l| l["subtype"] == "api_retry")
            .count(),
        1
    );
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_long_output() {
    let Some(bin) = claude_bin() else { return };
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let sb = Sandbox::new("slow");
    let r = run(&bin, &fake, &sb, "[[fake:slow 15 100ms]]", &[], &[]).await;
    let expected = (1..=15)
        .map(|i| format!("tok{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(r.assistant_texts(), vec![expected.clone()]);
    r.assert_success(&expected);
    assert!(r.elapsed >= Duration::from_millis(1500), "{:?}", r.elapsed);

    let r = run(&bin, &fake, &sb, "[[fake:long 3000]]", &[], &[]).await;
    let text = r.result()["result"].as_str().unwrap().to_string();
    assert_eq!(text.lines().count(), 3000);
    assert!(text.starts_with("line 1 of 3000: "));
    assert!(text.ends_with("line 3000 of 3000: the quick brown fox"));
    r.assert_success(&text);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_stream_delivers_earlier_lines_first() {
    let Some(bin) = claude_bin() else { return };
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let sb = Sandbox::new("hold");
    let running = Running::spawn(
        command(&bin, &fake, &sb, &[], &[]),
        "[[fake:hold Working on it]]",
    )
    .await;
    assert!(
        fake.wait_for_held(Duration::from_secs(60)).await,
        "no stream got held"
    );
    // The first text block is already on stdout while the model call is still open.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = running.lines();
        let seen = lines.iter().any(|l| {
            l["type"] == "assistant" && l["message"]["content"][0]["text"] == "Working on it"
        });
        if seen {
            assert!(!lines.iter().any(|l| l["type"] == "result"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no assistant line while held: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.held_streams(), 1);
    fake.release();
    let r = running.finish().await;
    r.assert_success(fake_anthropic::scenario::RELEASED_TEXT);
    assert_eq!(
        r.assistant_texts(),
        vec!["Working on it", fake_anthropic::scenario::RELEASED_TEXT]
    );

    // The server-wide hold stops any stream after its first block.
    fake.hold();
    let running = Running::spawn(
        command(&bin, &fake, &sb, &[], &[]),
        "[[fake:text plain reply]]",
    )
    .await;
    assert!(fake.wait_for_held(Duration::from_secs(60)).await);
    fake.release();
    running.finish().await.assert_success("plain reply");
    fake.shutdown().await;
}

/// A stdio MCP server (in Python) whose tool the fake calls: checks MCP tools reach the model,
/// deferred behind `ToolSearch` by default and offered directly with `ENABLE_TOOL_SEARCH=false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tool_call() {
    let Some(bin) = claude_bin() else { return };
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: python3 (for the demo MCP server) is missing");
        return;
    }
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let sb = Sandbox::new("mcp");
    let server = sb.root.join("mcp_server.py");
    std::fs::write(&server, MCP_SERVER).unwrap();
    let config = sb.root.join("mcp.json");
    std::fs::write(
        &config,
        serde_json::json!({"mcpServers": {"demo": {"command": "python3", "args": [server]}}})
            .to_string(),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let prompt = r#"Look it up [[fake:tool mcp__demo__get_issue {"id":"I-1"}]]"#;
    let expected = r#"Tool result: issue {"id": "I-1"}"#;

    let r = run(&bin, &fake, &sb, prompt, &[], &["--mcp-config", config]).await;
    r.assert_success(expected);
    let calls = fake.message_requests();
    assert!(
        calls[0]
            .deferred_tool_names()
            .iter()
            .any(|t| t == "mcp__demo__get_issue")
    );
    assert!(calls[0].mentions_tool("mcp__demo__get_issue"));
    assert_eq!(calls.len(), 3, "ToolSearch, the tool, the reply");

    fake.reset();
    let r = run(
        &bin,
        &fake,
        &sb,
        prompt,
        &[("ENABLE_TOOL_SEARCH", "false")],
        &["--mcp-config", config],
    )
    .await;
    r.assert_success(expected);
    let calls = fake.message_requests();
    assert!(
        calls[0]
            .tool_names()
            .iter()
            .any(|t| t == "mcp__demo__get_issue")
    );
    assert_eq!(calls.len(), 2);
    fake.shutdown().await;
}

const MCP_SERVER: &str = r#"
import json, sys
def send(o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
for line in sys.stdin:
    if not line.strip():
        continue
    m = json.loads(line)
    mid, meth = m.get("id"), m.get("method")
    if meth == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": m["params"].get("protocolVersion", "2024-11-05"),
            "capabilities": {"tools": {}}, "serverInfo": {"name": "demo", "version": "1"}}})
    elif meth == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": [{
            "name": "get_issue", "description": "Get an issue by id",
            "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}]}})
    elif meth == "tools/call":
        send({"jsonrpc": "2.0", "id": mid, "result": {"content": [
            {"type": "text", "text": "issue " + json.dumps(m["params"].get("arguments"))}]}})
    elif mid is not None:
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
"#;
