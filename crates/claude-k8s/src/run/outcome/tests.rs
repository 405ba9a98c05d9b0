use super::*;

/// The outcome's builders, their results as the wire has them.
fn finished(end: &ContainerEnd, t: &Transcript, run: &RunFacts) -> Value {
    serde_json::to_value(super::finished(end, t, run)).unwrap()
}

fn timed_out(timeout_sec: u64, t: &Transcript, run: &RunFacts) -> Value {
    serde_json::to_value(super::timed_out(timeout_sec, t, run)).unwrap()
}

fn transcript(lines: &[&str]) -> Transcript {
    let mut t = Transcript::default();
    lines.iter().for_each(|l| t.push_line(l));
    t
}

fn facts() -> RunFacts {
    RunFacts {
        cwd: "/paperclip/w".into(),
        has_api_key: true,
        memory_limit: "8Gi".into(),
        now: jiff::Zoned::now(),
        ..Default::default()
    }
}

const INIT: &str =
    r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-sonnet-4-6"}"#;
const OK: &str = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s-1","total_cost_usd":0.5,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":2}}"#;

#[test]
fn success_maps_every_field_paperclip_records() {
    let r = finished(&ContainerEnd::default(), &transcript(&[INIT, OK]), &facts());
    assert_eq!(r["exitCode"], 0);
    assert_eq!(r["sessionId"], "s-1");
    assert_eq!(
        r["sessionParams"],
        json!({"sessionId": "s-1", "cwd": "/paperclip/w"})
    );
    assert_eq!(
        r["usage"],
        json!({"inputTokens": 10, "outputTokens": 5, "cachedInputTokens": 2})
    );
    assert_eq!(r["usageBasis"], "per_run");
    assert_eq!(r["costUsd"], 0.5);
    assert_eq!(r["summary"], "done");
    assert_eq!(r["model"], "claude-sonnet-4-6");
    assert_eq!(r["provider"], "anthropic");
    assert_eq!(r["biller"], "anthropic");
    assert_eq!(r["billingType"], "api");
    assert!(r.get("errorMessage").is_none());
    assert_eq!(r["clearSession"], false);
}

#[test]
fn session_params_carry_the_bundle_key_and_mcp_identity_for_resume_gating() {
    let run = RunFacts {
        prompt_bundle_key: Some("abc".into()),
        mcp_server_identity: Some("[]".into()),
        ..facts()
    };
    let r = finished(&ContainerEnd::default(), &transcript(&[INIT, OK]), &run);
    assert_eq!(
        r["sessionParams"],
        json!({"sessionId": "s-1", "cwd": "/paperclip/w", "promptBundleKey": "abc", "mcpServerIdentity": "[]"})
    );
}

#[test]
fn bedrock_bills_as_metered_api() {
    let run = RunFacts {
        bedrock: true,
        ..facts()
    };
    let r = finished(&ContainerEnd::default(), &transcript(&[INIT, OK]), &run);
    assert_eq!(r["biller"], "aws_bedrock");
    assert_eq!(r["billingType"], "metered_api");
}

#[test]
fn an_error_result_fails_with_claudes_words() {
    let err = r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 429 rate limited","api_error_status":429}"#;
    let r = finished(
        &ContainerEnd {
            exit_code: 1,
            ..Default::default()
        },
        &transcript(&[INIT, err]),
        &facts(),
    );
    assert_eq!(r["exitCode"], 1);
    assert!(
        r["errorMessage"]
            .as_str()
            .unwrap()
            .contains("429 rate limited")
    );
}

#[test]
fn oom_without_result_names_the_limit_and_the_last_lines() {
    let end = ContainerEnd {
        exit_code: 137,
        reason: Some("OOMKilled".into()),
        ..Default::default()
    };
    let r = finished(&end, &transcript(&[INIT, "allocating..."]), &facts());
    assert_eq!(r["errorCode"], "k8s_oom_killed");
    let msg = r["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("OOMKilled (limit 8Gi)") && msg.contains("allocating..."),
        "{msg}"
    );
    assert!(!msg.contains("None"));
}

#[test]
fn max_turns_clears_the_session() {
    let t = transcript(&[
        INIT,
        r#"{"type":"result","subtype":"error_max_turns","is_error":true,"session_id":"s-1"}"#,
    ]);
    let r = finished(
        &ContainerEnd {
            exit_code: 1,
            ..Default::default()
        },
        &t,
        &facts(),
    );
    assert_eq!(r["clearSession"], true);
    assert_eq!(r["errorCode"], "max_turns_exhausted");
}

#[test]
fn exit_zero_without_result_is_a_parse_failure() {
    let r = finished(&ContainerEnd::default(), &transcript(&["hello"]), &facts());
    assert_eq!(r["errorCode"], "claude_output_unparsed");
    assert!(
        r["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Failed to parse")
    );
}

fn fixture(name: &str) -> Transcript {
    let path = format!(
        "{}/../../test/fixtures/claude-2.1.328/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    transcript(
        &std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
    )
}

fn exit(code: i32) -> ContainerEnd {
    ContainerEnd {
        exit_code: code,
        ..Default::default()
    }
}

#[test]
fn claudes_own_failures_use_claude_locals_codes() {
    let r = finished(
        &exit(1),
        &fixture("error-401-max-retries-1.jsonl"),
        &facts(),
    );
    assert_eq!(r["errorCode"], "claude_auth_required", "{r:#}");
    assert!(r.get("errorFamily").is_none());
    let r = finished(
        &exit(1),
        &fixture("error-429-max-retries-1.jsonl"),
        &facts(),
    );
    assert_eq!(r["errorCode"], "claude_transient_upstream");
    assert_eq!(r["errorFamily"], "transient_upstream");
    assert_eq!(r["resultJson"]["errorFamily"], "transient_upstream");
    assert!(r.get("retryNotBefore").is_none(), "no reset time was named");
    let quota = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"You've hit your session limit · resets 4pm (America/Chicago)"}"#;
    let r = finished(&exit(1), &transcript(&[INIT, quota]), &facts());
    assert_eq!(r["errorCode"], "provider_quota");
    let at: jiff::Timestamp = r["retryNotBefore"].as_str().unwrap().parse().unwrap();
    assert!(at > jiff::Timestamp::now(), "the next 4 pm in Chicago");
    assert_eq!(
        r["resultJson"]["providerQuotaRetryNotBefore"],
        r["retryNotBefore"]
    );
    let overloaded = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"API Error: 529 Overloaded","api_error_status":529}"#;
    let r = finished(&exit(1), &transcript(&[INIT, overloaded]), &facts());
    assert_eq!(r["errorCode"], "claude_transient_upstream");
    let model = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"API Error: 404 model: claude-nope not_found_error model not found"}"#;
    let r = finished(&exit(1), &transcript(&[INIT, model]), &facts());
    assert_eq!(r["errorCode"], "model_not_found");
    // Claude Code 2.1.328's own words for a 404 and a 403 from the model API.
    let model = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"api_error_status":404,"result":"There's an issue with the selected model (claude-opus-5-5). It may not exist or you may not have access to it. Run --model to pick a different model."}"#;
    let r = finished(&exit(1), &transcript(&[INIT, model]), &facts());
    assert_eq!(r["errorCode"], "model_not_found");
    let forbidden = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"api_error_status":403,"result":"Failed to authenticate. API Error: 403 fake permission_error"}"#;
    let r = finished(&exit(1), &transcript(&[INIT, forbidden]), &facts());
    assert_eq!(r["errorCode"], "claude_auth_required");
    let overloaded = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"api_error_status":529,"result":"API Error: 529 fake overloaded_error. This is a server-side issue, usually temporary"}"#;
    let r = finished(&exit(1), &transcript(&[INIT, overloaded]), &facts());
    assert_eq!(r["errorCode"], "claude_transient_upstream");
    let other = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":1,"result":"boom"}"#;
    let r = finished(&exit(1), &transcript(&[INIT, other]), &facts());
    assert_eq!(r["errorCode"], "claude_failed");
    let refusal = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"stop_reason":"refusal","result":"I can't"}"#;
    let r = finished(&exit(0), &transcript(&[INIT, refusal]), &facts());
    assert_eq!(r["errorCode"], "claude_refusal");
    assert_eq!(r["errorFamily"], "model_refusal");
}

#[test]
fn not_logged_in_without_a_result_is_auth_required() {
    let r = finished(
        &exit(1),
        &transcript(&["Invalid API key · Please run /login"]),
        &facts(),
    );
    assert_eq!(r["errorCode"], "claude_auth_required");
    assert!(
        r["errorMeta"]["hint"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY")
    );
}

#[test]
fn kills_without_a_result_have_their_own_codes_and_hints() {
    for (code, expected, words) in [
        (137, "k8s_container_killed", "exit code 137, SIGKILL"),
        (143, "k8s_container_terminated", "exit code 143, SIGTERM"),
        (2, "claude_exit_nonzero", "Claude exited with code 2"),
    ] {
        let r = finished(&exit(code), &transcript(&["last words"]), &facts());
        assert_eq!(r["errorCode"], expected);
        let msg = r["errorMessage"].as_str().unwrap();
        assert!(msg.contains(words) && msg.contains("last words"), "{msg}");
        assert!(!msg.contains("None"), "{msg}");
    }
    let end = ContainerEnd {
        exit_code: 137,
        reason: Some("OOMKilled".into()),
        ..Default::default()
    };
    let r = finished(&end, &transcript(&[]), &facts());
    assert!(
        r["errorMeta"]["hint"]
            .as_str()
            .unwrap()
            .contains("limits.memory (now 8Gi)")
    );
}

#[test]
fn a_timeout_keeps_the_session_and_the_last_lines() {
    let t = transcript(&[INIT, "partial output"]);
    let r = timed_out(5, &t, &facts());
    assert_eq!(r["timedOut"], true);
    assert_eq!(r["errorCode"], "timeout");
    assert_eq!(r["errorMessage"], "Timed out after 5s");
    assert_eq!(r["sessionId"], "s-1");
    assert_eq!(r["resultJson"]["lastLines"][1], "partial output");
    assert_eq!(
        with_last_lines("stopped", &t),
        format!("stopped; last lines: {INIT} | partial output")
    );
    assert_eq!(
        with_last_lines("stopped", &Transcript::default()),
        "stopped"
    );
}

#[test]
fn a_success_stopped_after_its_result_is_a_success() {
    let end = ContainerEnd {
        exit_code: 143,
        ..Default::default()
    };
    let r = finished(&end, &transcript(&[INIT, OK]), &facts());
    assert_eq!(r["exitCode"], 0);
    assert!(r.get("errorCode").is_none());
}

/// The result of the heartbeat recorded on the stage (test/protocol/execute-success.jsonl), rebuilt from the
/// transcript the same recording holds, is the recorded result byte for byte on the wire.
#[test]
fn the_recorded_heartbeats_result_is_rebuilt_byte_for_byte() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../test/protocol/execute-success.jsonl");
    let entries: Vec<Value> = std::fs::read_to_string(corpus)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut t = Transcript::default();
    for m in entries.iter().map(|e| &e["recv"]) {
        if m["type"] == "log" && m["stream"] == "stdout" {
            let chunk = m["chunk"].as_str().unwrap();
            if !chunk.starts_with("[claude-k8s]") {
                t.push_line(chunk.trim_end_matches('\n'));
            }
        }
    }
    let recorded = entries
        .iter()
        .map(|e| &e["recv"])
        .find(|m| m["type"] == "result")
        .unwrap();
    let saved = &recorded["result"]["sessionParams"];
    let run = RunFacts {
        cwd: saved["cwd"].as_str().unwrap().into(),
        has_api_key: true,
        prompt_bundle_key: saved["promptBundleKey"].as_str().map(str::to_owned),
        mcp_server_identity: saved["mcpServerIdentity"].as_str().map(str::to_owned),
        ..facts()
    };
    let wire = |v: &Value| serde_json::to_string(v).unwrap();
    assert_eq!(
        wire(&finished(&ContainerEnd::default(), &t, &run)),
        wire(&recorded["result"])
    );
}

#[test]
fn session_params_carry_the_workspace_as_claude_local_keeps_it() {
    let context = json!({"paperclipWorkspace": {"cwd": "/w", "workspaceId": " ws-1 ", "repoUrl": "https://git.example/r.git",
                                                "repoRef": "", "source": "project_primary"}});
    let run = RunFacts {
        workspace: Workspace::from_context(context.as_object().unwrap()),
        ..facts()
    };
    let r = finished(&ContainerEnd::default(), &transcript(&[INIT, OK]), &run);
    assert_eq!(
        r["sessionParams"],
        json!({"sessionId": "s-1", "cwd": "/paperclip/w", "workspaceId": "ws-1", "repoUrl": "https://git.example/r.git"})
    );
    assert_eq!(Workspace::from_context(&Map::new()), Workspace::default());
}

#[test]
fn usage_numbers_of_any_size_saturate() {
    // The agent can print a `result` line of its own.
    let huge = r#"{"type":"result","subtype":"success","is_error":false,"result":"x","modelUsage":{"a":{"inputTokens":1e300,"cacheCreationInputTokens":1e300,"outputTokens":-5},"b":{"inputTokens":18446744073709551615,"outputTokens":1e30}},"total_cost_usd":1e308}"#;
    let r = finished(&ContainerEnd::default(), &transcript(&[huge]), &facts());
    assert_eq!(r["usage"]["inputTokens"], u64::MAX);
    assert_eq!(
        r["usage"]["outputTokens"],
        u64::MAX,
        "-5 counts as 0, 1e30 as the most"
    );
    assert_eq!(r["costUsd"], 1e308);
}
