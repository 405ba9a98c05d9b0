use super::*;

#[test]
fn parses_execute_with_unknown_fields() {
    let line = r#"{"type":"execute","id":"r1","future":1,"params":{"runId":"run","agent":{"id":"a","companyId":"c","name":"n"},"prompt":{"fresh":"hi"},"extra":true}}"#;
    match serde_json::from_str::<Request>(line).unwrap() {
        Request::Execute { id, params } => {
            assert_eq!(id, "r1");
            assert_eq!(params.run_id, "run");
            assert_eq!(params.agent.company_id, "c");
            assert_eq!(params.prompt.fresh, "hi");
            assert!(params.prompt.resume.is_none());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn parses_cancel_and_shutdown() {
    assert!(matches!(
        serde_json::from_str::<Request>(r#"{"type":"cancel","id":"r1"}"#).unwrap(),
        Request::Cancel { id, reason: None } if id == "r1"
    ));
    assert!(matches!(
        serde_json::from_str::<Request>(r#"{"type":"shutdown"}"#).unwrap(),
        Request::Shutdown
    ));
}

fn salvaged(line: &[u8]) -> (Option<String>, bool) {
    let s = salvage(line);
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok();
    let known = s.known(is_json);
    (s.id, known)
}

#[test]
fn unknown_type_is_an_error_with_salvaged_id() {
    let line = r#"{"type":"frobnicate","id":"x9"}"#;
    assert!(serde_json::from_str::<Request>(line).is_err());
    assert_eq!(salvaged(line.as_bytes()), (Some("x9".into()), false));
    assert_eq!(
        salvaged(br#"{"type":"execute","id":"e1"}"#),
        (Some("e1".into()), true)
    );
    assert_eq!(salvaged(b"not json"), (None, true));
    assert_eq!(
        salvaged(br#"{"id":"n"}"#),
        (Some("n".into()), false),
        "no type: unknown"
    );
}

#[test]
fn the_id_is_found_whatever_is_wrong_after_it() {
    let id = |line: &[u8]| salvage(line).id;
    // Invalid UTF-8, a lone surrogate, malformed JSON, a line cut short, nested values before the id.
    assert_eq!(
        id(b"{\"type\":\"execute\",\"id\":\"u1\",\"params\":{\"x\":\"\xff\"}}").as_deref(),
        Some("u1")
    );
    assert_eq!(
        id(br#"{"type":"execute","id":"s1","params":{"p":"\ud83d"}}"#).as_deref(),
        Some("s1")
    );
    assert_eq!(
        id(br#"{"type":"execute","id":"m1","params":{"runId":}"#).as_deref(),
        Some("m1")
    );
    assert_eq!(
        id(br#"{"type":"execute","id":"c1","params":{"prompt":"aaaa"#).as_deref(),
        Some("c1")
    );
    assert_eq!(
        id(br#" { "params" : {"a":[1,{"id":"inner"},"}\""]}, "n":-1e999, "id" : "late" } "#)
            .as_deref(),
        Some("late")
    );
    assert_eq!(
        id(br#"{"id":"first","id":"second"}"#).as_deref(),
        Some("second"),
        "the last of duplicate keys, as in a map"
    );
    assert_eq!(id(br#"{"id":"first","id":7}"#), None);
    assert_eq!(
        id(br#"{"\u0069d":"escaped key"}"#).as_deref(),
        Some("escaped key")
    );
    // An id that is not a well-formed string is not made up.
    assert_eq!(id(br#"{"type":"execute","id":5}"#), None);
    assert_eq!(id(br#"{"type":"execute","id":"\udc00"}"#), None);
    assert_eq!(id(b"{\"id\":\"\xff\"}"), None);
    assert_eq!(id(br#"["id","x"]"#), None);
    assert_eq!(
        id(br#"{"params":{"id":"nested"}}"#),
        None,
        "only the top level"
    );
    assert_eq!(
        salvage(br#"{"type":"cancel""#).kind.as_deref(),
        Some("cancel")
    );
}

#[test]
fn a_refusal_names_the_line_but_never_a_cancels_execute() {
    let refusal = |line: &[u8]| match salvage(line).refusal("bad_request", "bad".into()) {
        Message::Error { id, code, message } => {
            assert_eq!(code, "bad_request");
            (id, message)
        }
        other => panic!("not an error: {other:?}"),
    };
    let error = |id: Option<&str>, message: &str| (id.map(str::to_owned), message.to_owned());
    assert_eq!(
        refusal(br#"{"type":"execute","id":"e1","params":"#),
        error(Some("e1"), "bad")
    );
    assert_eq!(
        refusal(br#"{"type":"cancel","id":"e1","reason":"#),
        error(None, "a malformed cancel of `e1` was ignored: bad")
    );
    assert_eq!(
        refusal(br#"{"\u0074ype":"cancel","id":"e1","id":"e2"}"#),
        error(None, "a malformed cancel of `e2` was ignored: bad"),
        "a cancel spelled with an escape is one too"
    );
    assert_eq!(
        refusal(br#"{"type":"cancel"}"#),
        error(None, "a malformed cancel was ignored: bad")
    );
}

#[test]
fn lone_surrogates_are_found_and_pairs_and_escaped_backslashes_are_not() {
    assert_eq!(
        lone_surrogate(br#""cut \ud83d""#).as_deref(),
        Some("\\ud83d")
    );
    assert_eq!(
        lone_surrogate(br#""\uDE00 low""#).as_deref(),
        Some("\\ude00")
    );
    assert_eq!(lone_surrogate(br#""\ud83d\ude00 pair \u00e9""#), None);
    assert_eq!(lone_surrogate(br#""\\ud83d is text""#), None);
    assert_eq!(
        lone_surrogate(br#""\ud83d\u0041""#).as_deref(),
        Some("\\ud83d")
    );
    assert_eq!(lone_surrogate(b"\\u12"), None);
}

#[test]
fn messages_serialize_as_documented() {
    let hello = serde_json::to_string(&Message::Hello {
        protocol: 1,
        version: "0.1.0",
        bedrock: false,
    })
    .unwrap();
    assert_eq!(
        hello,
        r#"{"type":"hello","protocol":1,"version":"0.1.0","bedrock":false}"#
    );
    let log = serde_json::to_string(&Message::Log {
        id: "r".into(),
        stream: LogStream::Stdout,
        chunk: "x\n".into(),
    })
    .unwrap();
    assert_eq!(
        log,
        r#"{"type":"log","id":"r","stream":"stdout","chunk":"x\n"}"#
    );
    let err = serde_json::to_string(&Message::Error {
        id: None,
        code: "bad_request".into(),
        message: "m".into(),
    })
    .unwrap();
    assert_eq!(
        err,
        r#"{"type":"error","id":null,"code":"bad_request","message":"m"}"#
    );
}
