use super::*;

fn fixture(name: &str) -> Transcript {
    let path = format!(
        "{}/../../test/fixtures/claude-2.1.328/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut t = Transcript::default();
    text.lines().for_each(|l| t.push_line(l));
    t
}

#[test]
fn text_reply_yields_session_usage_cost_and_summary() {
    let t = fixture("text-reply.jsonl");
    assert!(t.session_id.as_deref().is_some_and(|s| s.len() == 36));
    assert!(t.model.is_some());
    assert!(!t.is_error());
    assert_eq!(t.subtype(), Some("success"));
    let usage = t.usage().unwrap();
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );
    assert!(t.cost_usd().unwrap() > 0.0);
    assert!(!t.summary().is_empty());
    assert_eq!(t.non_json_lines, 0);
}

#[test]
fn resumed_reply_keeps_the_session() {
    let fresh = fixture("text-reply.jsonl");
    let resumed = fixture("resumed-text-reply.jsonl");
    assert_eq!(fresh.session_id, resumed.session_id);
}

#[test]
fn unknown_session_is_recognised() {
    let t = fixture("resume-unknown-session.jsonl");
    assert!(t.is_error());
    assert!(t.is_unknown_session_error());
    assert!(
        t.describe_failure().contains("No conversation found"),
        "{}",
        t.describe_failure()
    );
    assert!(!fixture("text-reply.jsonl").is_unknown_session_error());
}

#[test]
fn api_errors_are_errors_even_with_subtype_success() {
    let t = fixture("error-429-max-retries-1.jsonl");
    assert!(t.is_error());
    assert_eq!(t.api_retries, 1);
    let t = fixture("error-401-max-retries-1.jsonl");
    assert!(t.is_error());
}

#[test]
fn model_usage_counts_cache_creation_as_input() {
    let mut t = Transcript::default();
    t.push_line(r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0.0123,"modelUsage":{"m":{"inputTokens":100,"cacheCreationInputTokens":20,"cacheReadInputTokens":300,"outputTokens":50}},"usage":{"input_tokens":1}}"#);
    assert_eq!(
        t.usage(),
        Some(Usage {
            input_tokens: 120,
            output_tokens: 50,
            cached_input_tokens: 300
        })
    );
    assert_eq!(t.cost_usd(), Some(0.0123));
}

#[test]
fn plain_lines_are_kept_for_errors_and_max_turns_is_seen() {
    let mut t = Transcript::default();
    t.push_line("Error: something broke");
    t.push_line(r#"{"type":"result","subtype":"error_max_turns","is_error":true}"#);
    assert_eq!(t.last_plain_lines, ["Error: something broke"]);
    assert!(t.is_max_turns());
    assert_eq!(t.summary(), "");
}

#[test]
fn api_retry_lines_become_progress() {
    let text = std::fs::read_to_string(format!(
        "{}/../../test/fixtures/claude-2.1.328/api-retry-lines-429.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let notes: Vec<String> = text.lines().filter_map(progress_note).collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert_eq!(
        notes[2],
        "model API rate-limited (429), retry 3 of 10 in 2.2 s"
    );
    assert_eq!(
        progress_note(r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":1,"retry_delay_ms":606,"error_status":529}"#).unwrap(),
        "model API overloaded (529), retry 1 of 1 in 0.6 s"
    );
    assert!(progress_note(r#"{"type":"assistant","text":"api_retry"}"#).is_none());
    assert!(progress_note("api_retry but not json").is_none());
}

#[test]
fn a_final_result_awaits_exit_and_zero_turn_results_do_not() {
    let mut t = fixture("text-reply.jsonl");
    assert!(
        t.awaiting_exit,
        "the last line of a normal run is its result"
    );
    assert_eq!(t.zero_turn_results, 0);
    // On --resume: a zero-turn result before the real work is neither the end nor the result.
    let mut r = Transcript::default();
    r.push_line(r#"{"type":"system","subtype":"init","session_id":"s"}"#);
    r.push_line(r#"{"type":"result","subtype":"success","is_error":false,"num_turns":0,"result":"","session_id":"s"}"#);
    assert!(!r.awaiting_exit);
    assert_eq!(r.zero_turn_results, 1);
    r.push_line(r#"{"type":"assistant","message":{"content":[{"type":"text","text":"working"}]}}"#);
    assert!(!r.awaiting_exit);
    r.push_line(
        r#"{"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"real"}"#,
    );
    assert!(r.awaiting_exit);
    r.push_line(
        r#"{"type":"result","subtype":"success","is_error":false,"num_turns":0,"result":""}"#,
    );
    assert_eq!(
        r.summary(),
        "real",
        "a later zero-turn result does not replace the real one"
    );
    // Background-task bookkeeping after the result does not revive the run; more work does.
    t.push_line(r#"{"type":"system","subtype":"task_notification","status":"completed"}"#);
    assert!(t.awaiting_exit);
    t.push_line(r#"{"type":"assistant","message":{"content":[]}}"#);
    assert!(!t.awaiting_exit);
    // A plain (stderr) line after the result does not revive or clear it.
    let mut p = Transcript::default();
    p.push_line(
        r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"x"}"#,
    );
    p.push_line("some stderr");
    assert!(p.awaiting_exit);
    assert_eq!(p.last_lines.len(), 2);
}

#[test]
fn error_status_and_refusal() {
    let t = fixture("error-429-max-retries-1.jsonl");
    assert_eq!(t.api_error_status(), Some(429));
    assert!(!t.is_refusal());
    let mut r = Transcript::default();
    r.push_line(r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"stop_reason":"refusal","result":"no"}"#);
    assert!(r.is_refusal());
}
