//! The planner's tests: markers, turns, scripts, errors and replies.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("{n}")
    }
}

fn req(messages: Value) -> Value {
    json!({
        "model": "claude-sonnet-4-6",
        "messages": messages,
        "tools": [{"name": "Bash", "input_schema": {}}, {"name": "mcp__x__y", "input_schema": {}}],
    })
}

fn run(body: &Value) -> (Plan, Option<String>) {
    plan(body, None, &mut HashMap::new(), &mut ids())
}

fn reply_text(p: &Plan) -> String {
    match p {
        Plan::Reply(r) => r.blocks.iter().filter_map(Block::full_text).collect(),
        Plan::Error(e) => panic!("unexpected error {e:?}"),
    }
}

#[test]
fn parses_markers() {
    let m = parse_markers("a [[fake:text Hello there]] b [[fake:bash echo hi > hello.txt]]");
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].step, Step::Text("Hello there".into()));
    assert_eq!(m[0].raw, "[[fake:text Hello there]]");
    assert_eq!(
        m[1].step,
        Step::Tool {
            name: "Bash".into(),
            input: json!({"command": "echo hi > hello.txt", "description": "scripted command"})
        }
    );
    assert_eq!(
        parse_step("slow 40 100ms"),
        Step::Slow {
            count: 40,
            delay: Duration::from_millis(100)
        }
    );
    assert_eq!(
        parse_step("slow 3 1.5s"),
        Step::Slow {
            count: 3,
            delay: Duration::from_millis(1500)
        }
    );
    assert_eq!(
        parse_step("long 5000"),
        Step::Long {
            amount: 5000,
            unit: LongUnit::Lines
        }
    );
    assert_eq!(
        parse_step("long 64KB"),
        Step::Long {
            amount: 64,
            unit: LongUnit::KiB
        }
    );
    assert_eq!(
        parse_step("error 429"),
        Step::Error(ErrorStep {
            status: 429,
            retry_after: Some(1),
            times: None,
            reset: None
        })
    );
    assert_eq!(
        parse_step("error 401 times=2"),
        Step::Error(ErrorStep {
            status: 401,
            retry_after: None,
            times: Some(2),
            reset: None
        })
    );
    assert_eq!(
        parse_step("error 429 reset=4pm/America/Chicago"),
        Step::Error(ErrorStep {
            status: 429,
            retry_after: Some(1),
            times: None,
            reset: Some("4pm/America/Chicago".into())
        })
    );
    assert_eq!(
        parse_step("error 529 retry-after=0"),
        Step::Error(ErrorStep {
            status: 529,
            retry_after: Some(0),
            times: None,
            reset: None
        })
    );
    assert_eq!(
        parse_step(r#"tool mcp__paperclip__get_issue {"id": "I-1"}"#),
        Step::Tool {
            name: "mcp__paperclip__get_issue".into(),
            input: json!({"id": "I-1"})
        }
    );
    assert!(matches!(parse_step("error 200"), Step::Invalid(_)));
    assert!(matches!(parse_step("bogus"), Step::Invalid(_)));
    assert!(matches!(parse_step("tool X [1]"), Step::Invalid(_)));
    assert!(parse_markers("[[fake:text unterminated").is_empty());
}

#[test]
fn default_and_text() {
    let (p, m) = run(&req(json!([{"role": "user", "content": "hi"}])));
    assert_eq!(reply_text(&p), DEFAULT_REPLY);
    assert_eq!(m, None);
    let body = req(json!([{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
        {"type": "text", "text": "say [[fake:text Hello there]]"}
    ]}]));
    let (p, m) = run(&body);
    assert_eq!(reply_text(&p), "Hello there");
    assert_eq!(m.as_deref(), Some("[[fake:text Hello there]]"));
    // A default script applies only without markers.
    let (p, _) = plan(
        &req(json!([{"role": "user", "content": "hi"}])),
        Some("[[fake:text scripted]]"),
        &mut HashMap::new(),
        &mut ids(),
    );
    assert_eq!(reply_text(&p), "scripted");
    // Markers outside reminders win; reminders and then the system prompt are fallbacks.
    let body = req(json!([{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>[[fake:text from claude.md]]</system-reminder>"},
        {"type": "text", "text": "[[fake:text from prompt]]"}
    ]}]));
    assert_eq!(reply_text(&run(&body).0), "from prompt");
    let body = req(json!([{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>[[fake:text from claude.md]]</system-reminder>"},
        {"type": "text", "text": "go"}
    ]}]));
    assert_eq!(reply_text(&run(&body).0), "from claude.md");
    let mut body = req(json!([{"role": "user", "content": "go"}]));
    body["system"] =
        json!([{"type": "text", "text": "Agent instructions [[fake:text from system]]"}]);
    assert_eq!(reply_text(&run(&body).0), "from system");
}

#[test]
fn bash_round_trip() {
    let first = req(json!([{"role": "user", "content": "[[fake:bash echo hi > hello.txt]]"}]));
    let (p, _) = run(&first);
    let Plan::Reply(r) = p else { panic!() };
    assert_eq!(r.stop_reason, "tool_use");
    assert_eq!(
        r.blocks,
        vec![Block::ToolUse {
            id: "toolu_fake_1".into(),
            name: "Bash".into(),
            input: json!({"command": "echo hi > hello.txt", "description": "scripted command"})
        }]
    );
    let second = req(json!([
        {"role": "user", "content": "[[fake:bash echo hi > hello.txt]]"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi\n\n<system-reminder>\nx\n</system-reminder>"},
            {"type": "text", "text": "<system-reminder>x</system-reminder>"}
        ]}
    ]));
    let (p, _) = run(&second);
    assert_eq!(reply_text(&p), "Tool result: hi");
    // A new prompt after the round trip starts a new turn without markers.
    let third = req(json!([
        {"role": "user", "content": "[[fake:bash echo hi > hello.txt]]"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "hi"}]}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Tool result: hi"}]},
        {"role": "user", "content": "and now?"}
    ]));
    assert_eq!(reply_text(&run(&third).0), DEFAULT_REPLY);
    // A side request without tools gets text, not a tool_use.
    let side = json!({"messages": [{"role": "user", "content": "[[fake:bash ls]]"}]});
    assert_eq!(
        reply_text(&run(&side).0),
        "fake-anthropic: the tool Bash is not offered"
    );
}

#[test]
fn script_of_several_steps() {
    let body = |n_assistant: usize| {
        let mut msgs = vec![
            json!({"role": "user", "content": "[[fake:bash a]] [[fake:tool mcp__x__y {\"k\":1}]] [[fake:text done]]"}),
        ];
        for i in 0..n_assistant {
            msgs.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": format!("t{i}"), "name": "Bash", "input": {}}]}));
            msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": format!("t{i}"), "content": "r"}]}));
        }
        req(Value::Array(msgs))
    };
    let name = |p: Plan| match p {
        Plan::Reply(r) => match &r.blocks[0] {
            Block::ToolUse { name, .. } => name.clone(),
            b => b.full_text().unwrap(),
        },
        Plan::Error(_) => panic!(),
    };
    assert_eq!(name(run(&body(0)).0), "Bash");
    assert_eq!(name(run(&body(1)).0), "mcp__x__y");
    assert_eq!(name(run(&body(2)).0), "done");
    assert_eq!(name(run(&body(3)).0), "Tool result: r");
}

#[test]
fn errors_and_times() {
    let body =
        req(json!([{"role": "user", "content": "[[fake:error 529 times=2]] [[fake:text ok]]"}]));
    let mut counts = HashMap::new();
    for _ in 0..2 {
        let (p, _) = plan(&body, None, &mut counts, &mut ids());
        assert!(matches!(p, Plan::Error(ErrorStep { status: 529, .. })));
    }
    let (p, _) = plan(&body, None, &mut counts, &mut ids());
    assert_eq!(reply_text(&p), "ok");
    let forever = req(json!([{"role": "user", "content": "[[fake:error 401]]"}]));
    for _ in 0..5 {
        assert!(matches!(run(&forever).0, Plan::Error(_)));
    }
}

#[test]
fn slow_long_hold() {
    let (p, _) = run(&req(
        json!([{"role": "user", "content": "[[fake:slow 40 100ms]]"}]),
    ));
    let Plan::Reply(r) = p else { panic!() };
    assert_eq!(r.delta_delay, Duration::from_millis(100));
    let Block::Text { deltas } = &r.blocks[0] else {
        panic!()
    };
    assert_eq!(deltas.len(), 40);

    let lines = long_text(5000, LongUnit::Lines).concat();
    assert_eq!(lines.lines().count(), 5000);
    assert!(lines.ends_with("\nline 5000 of 5000: the quick brown fox"));
    assert_eq!(long_text(64, LongUnit::KiB).concat().len(), 64 * 1024);

    let (p, _) = run(&req(
        json!([{"role": "user", "content": "[[fake:hold wait]]"}]),
    ));
    let Plan::Reply(r) = p else { panic!() };
    assert!(r.hold);
    assert_eq!(r.blocks.len(), 2);
    assert_eq!(r.blocks[0].full_text().unwrap(), "wait");
}

#[test]
fn strips_reminders() {
    assert_eq!(
        strip_system_reminders("a\n<system-reminder>x</system-reminder>\nb<system-reminder>y"),
        "a\n\nb"
    );
    assert_eq!(strip_system_reminders("plain "), "plain");
}

#[test]
fn deferred_tools_load_through_tool_search() {
    let reminder = "<system-reminder>\nThe following deferred tools are now available via ToolSearch. Their schemas are NOT loaded:\nCronCreate\nmcp__demo__get_issue\n</system-reminder>";
    let prompt = json!({"role": "user", "content": [
        {"type": "text", "text": reminder},
        {"type": "text", "text": "[[fake:tool mcp__demo__get_issue {\"id\":\"I-1\"}]]"}
    ]});
    let tools = json!([{"name": "Bash"}, {"name": "ToolSearch"}]);
    let first = json!({"tools": tools, "messages": [prompt]});
    assert_eq!(
        deferred_tool_names(&first),
        vec!["CronCreate", "mcp__demo__get_issue"]
    );
    let Plan::Reply(r) = run(&first).0 else {
        panic!()
    };
    let Block::ToolUse { id, name, input } = &r.blocks[0] else {
        panic!()
    };
    assert_eq!(name, "ToolSearch");
    assert!(id.starts_with(TOOL_SEARCH_ID_PREFIX));
    assert_eq!(input["query"], "select:mcp__demo__get_issue");

    // After the search the tool is offered; the search round does not count as a step.
    let search_call = json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "ToolSearch", "input": input}]});
    let search_result = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "loaded"}]});
    let second = json!({
        "tools": [{"name": "Bash"}, {"name": "ToolSearch"}, {"name": "mcp__demo__get_issue"}],
        "messages": [prompt, search_call, search_result]
    });
    let Plan::Reply(r) = run(&second).0 else {
        panic!()
    };
    assert!(
        matches!(&r.blocks[0], Block::ToolUse { name, input, .. } if name == "mcp__demo__get_issue" && input["id"] == "I-1")
    );
    // Had the search not loaded it, the fake gives up instead of searching again.
    let stuck = json!({"tools": tools, "messages": [prompt, search_call, search_result]});
    assert_eq!(
        reply_text(&run(&stuck).0),
        "fake-anthropic: the tool mcp__demo__get_issue is not offered"
    );
}

#[test]
fn chunks_words() {
    assert_eq!(
        chunk_words("Hello there  you"),
        vec!["Hello ", "there  ", "you"]
    );
    assert_eq!(chunk_words(""), vec![""]);
    assert_eq!(chunk_words("x").concat(), "x");
}

#[test]
fn system_and_tools() {
    let body = json!({
        "system": [{"type": "text", "text": "You are Claude Code"}, {"type": "text", "text": "Instructions: be nice", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Bash"}, {"name": "mcp__paperclip__x"}],
        "messages": []
    });
    assert_eq!(
        system_text(&body),
        "You are Claude Code\nInstructions: be nice"
    );
    assert_eq!(tool_names(&body), vec!["Bash", "mcp__paperclip__x"]);
    assert_eq!(system_text(&json!({"system": "plain"})), "plain");
}
