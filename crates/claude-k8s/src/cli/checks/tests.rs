use super::*;
use serde_json::{Value, json};

fn facts_with_env(env: Value) -> PodFacts {
    PodFacts {
        namespace: "paperclip".into(),
        env: serde_json::from_value(env).unwrap(),
        ..Default::default()
    }
}

fn credentials(config: Value, facts: &PodFacts) -> Check {
    let config = AgentConfig::parse(config.as_object().unwrap()).unwrap();
    let mut out = Checks(Vec::new());
    check_credentials(&config, facts, &mut out);
    assert_eq!(out.0.len(), 1);
    out.0.remove(0)
}

#[test]
fn credentials_check_anthropic_and_bedrock() {
    let key = facts_with_env(json!([{"name": "ANTHROPIC_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]));
    let c = credentials(json!({}), &key);
    assert_eq!(
        (c.code.as_str(), c.level),
        ("claude_api_key_present", Level::Info)
    );
    let c = credentials(json!({}), &PodFacts::default());
    assert_eq!(
        (c.code.as_str(), c.level),
        ("claude_api_key_missing", Level::Error)
    );
    assert!(c.hint.unwrap().contains("ANTHROPIC_API_KEY"));
    let c = credentials(
        json!({"env": {"ANTHROPIC_API_KEY": "sk"}}),
        &PodFacts::default(),
    );
    assert_eq!(c.level, Level::Info);
    let bedrock = facts_with_env(json!([{"name": "CLAUDE_CODE_USE_BEDROCK", "value": "1"},
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "id"}}}]));
    let c = credentials(json!({}), &bedrock);
    assert_eq!(
        (c.code.as_str(), c.level),
        ("claude_bedrock_auth", Level::Info)
    );
    let c = credentials(json!({"env": {"CLAUDE_CODE_USE_BEDROCK": "1"}}), &key);
    assert_eq!(
        (c.code.as_str(), c.level),
        ("claude_bedrock_credentials_missing", Level::Warn),
        "an Anthropic key does not authenticate Bedrock"
    );
    assert!(c.hint.unwrap().contains("AWS_ACCESS_KEY_ID"));
}

#[test]
fn another_namespace_names_the_inherited_objects_to_copy() {
    let facts = facts_with_env(json!([{"name": "ANTHROPIC_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "paperclip-secrets", "key": "k"}}}]));
    let mut out = Checks(Vec::new());
    check_inherited_references("paperclip", &facts, &mut out);
    assert!(out.0.is_empty(), "same namespace: nothing to copy");
    check_inherited_references("agents", &facts, &mut out);
    assert_eq!(out.0.len(), 1);
    let c = &out.0[0];
    assert_eq!(c.level, Level::Warn);
    assert!(
        c.message.contains("Secrets paperclip-secrets"),
        "{}",
        c.message
    );
    assert!(
        c.hint
            .as_ref()
            .unwrap()
            .contains("copy them into namespace agents")
    );
}

#[test]
fn an_evaluation_error_or_a_missing_status_counts_as_denied() {
    let status = |v: Value| serde_json::from_value(v).unwrap();
    assert!(review_allows(Some(&status(json!({"allowed": true})))));
    assert!(review_allows(Some(&status(
        json!({"allowed": true, "evaluationError": ""})
    ))));
    assert!(!review_allows(Some(&status(json!({"allowed": false})))));
    assert!(!review_allows(Some(&status(
        json!({"allowed": true, "evaluationError": "role.rbac.authorization.k8s.io \"x\" not found"})
    ))));
    assert!(!review_allows(None));
}

fn check(level: Level) -> Check {
    Check {
        code: "c".into(),
        level,
        message: String::new(),
        hint: None,
    }
}

#[test]
fn status_is_fail_on_any_error_else_warn_on_any_warning_else_pass() {
    use Level::*;
    assert_eq!(overall_status(&[]), "pass");
    assert_eq!(overall_status(&[check(Info), check(Info)]), "pass");
    assert_eq!(overall_status(&[check(Info), check(Warn)]), "warn");
    assert_eq!(
        overall_status(&[check(Warn), check(Error), check(Info)]),
        "fail"
    );
    // The serialized levels are Paperclip's: info, warn, error.
    assert_eq!(
        serde_json::to_value(check(Error)).unwrap()["level"],
        "error"
    );
    assert_eq!(serde_json::to_value(check(Warn)).unwrap()["level"], "warn");
    assert_eq!(serde_json::to_value(check(Info)).unwrap()["level"], "info");
}
