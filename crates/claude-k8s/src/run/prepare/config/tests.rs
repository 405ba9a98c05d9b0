use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<AgentConfig, ConfigError> {
    AgentConfig::parse(v.as_object().unwrap())
}

#[test]
fn defaults_match_the_readme() {
    let c = parse(json!({})).unwrap();
    assert_eq!(c.resources, Resources::default());
    assert_eq!(c.image_pull_policy, "IfNotPresent");
    assert_eq!(c.ttl_seconds_after_finished, 300);
    assert_eq!(c.grace_sec, 60);
    assert_eq!(c.timeout_sec, 0);
    assert_eq!(c.max_turns_per_run, 0);
    assert!(c.dangerously_skip_permissions);
    assert!(!c.retain_jobs);
    assert_eq!(c.init_image, DEFAULT_INIT_IMAGE);
}

#[test]
fn flat_and_nested_resource_keys_are_equivalent() {
    let flat =
        parse(json!({"resources.requests.cpu": "250m", "resources.limits.memory": "1Gi"})).unwrap();
    let nested =
        parse(json!({"resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}}))
            .unwrap();
    assert_eq!(flat.resources, nested.resources);
    assert_eq!(flat.resources.requests_cpu, "250m");
    assert_eq!(flat.resources.requests_memory, "2Gi");
}

#[test]
fn bad_values_name_the_field_and_the_accepted_form() {
    let e = parse(json!({"effort": "extreme"})).unwrap_err();
    assert_eq!(e.field, "effort");
    assert!(e.message.contains("low, medium, high"));
    let e = parse(json!({"resources.limits.memory": "8 gigs"})).unwrap_err();
    assert_eq!(e.field, "resources.limits.memory");
    assert!(e.message.contains("512Mi"));
    let e = parse(json!({"timeoutSec": -5})).unwrap_err();
    assert_eq!(e.field, "timeoutSec");
    let e = parse(json!({"tolerations": "[{not json"})).unwrap_err();
    assert_eq!(e.field, "tolerations");
    assert!(e.message.contains("not valid JSON"));
    let e = parse(json!({"imagePullPolicy": "Sometimes"})).unwrap_err();
    assert_eq!(e.field, "imagePullPolicy");
    let e = parse(json!({"podSpecPatch": "[1]"})).unwrap_err();
    assert_eq!(e.field, "podSpecPatch");
}

#[test]
fn numbers_have_upper_bounds() {
    for (field, max) in [
        ("timeoutSec", MAX_TIMEOUT_SEC),
        ("graceSec", MAX_GRACE_SEC),
        ("ttlSecondsAfterFinished", MAX_TTL_SEC),
        ("maxTurnsPerRun", MAX_TURNS),
    ] {
        assert!(parse(json!({ field: max })).is_ok(), "{field}");
        for too_big in [json!(max + 1), json!(1e300), json!("18446744073709551615")] {
            let e = parse(json!({ field: too_big })).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains(&max.to_string()), "{e}");
        }
    }
    assert_eq!(
        parse(json!({"timeoutSec": 1e300})).unwrap_err().to_string(),
        format!("invalid adapterConfig field `timeoutSec`: must be at most {MAX_TIMEOUT_SEC}")
    );
}

#[test]
fn maps_accept_json_and_key_value_lines() {
    let c = parse(
        json!({"nodeSelector": "pool=agents\n# comment\nzone = a", "labels": "{\"team\":\"x\"}"}),
    )
    .unwrap();
    assert_eq!(c.node_selector.get("pool").unwrap(), "agents");
    assert_eq!(c.node_selector.get("zone").unwrap(), "a");
    assert_eq!(c.labels.get("team").unwrap(), "x");
}

#[test]
fn extra_args_accept_array_json_and_words() {
    assert_eq!(
        parse(json!({"extraArgs": ["--foo", "bar"]}))
            .unwrap()
            .extra_args,
        ["--foo", "bar"]
    );
    assert_eq!(
        parse(json!({"extraArgs": "[\"--foo\"]"}))
            .unwrap()
            .extra_args,
        ["--foo"]
    );
    assert_eq!(
        parse(json!({"extraArgs": "--a b"})).unwrap().extra_args,
        ["--a", "b"]
    );
    assert_eq!(parse(json!({"args": ["--x"]})).unwrap().extra_args, ["--x"]);
}

#[test]
fn numbers_and_booleans_accept_strings_from_the_ui() {
    let c =
        parse(json!({"timeoutSec": "30", "retainJobs": "true", "maxTurnsPerRun": 7.0})).unwrap();
    assert_eq!(c.timeout_sec, 30);
    assert!(c.retain_jobs);
    assert_eq!(c.max_turns_per_run, 7);
}

#[test]
fn labels_and_node_selectors_must_be_valid_kubernetes_labels() {
    let c = parse(json!({"labels": {"example.com/team": "core", "tier": ""},
                         "nodeSelector": {"kubernetes.io/hostname": "node-1.example"}}))
    .unwrap();
    assert_eq!(c.labels.get("example.com/team").unwrap(), "core");
    for field in ["labels", "nodeSelector"] {
        for bad in [
            json!({"team": "not a valid value!"}),
            json!({"bad key!": "x"}),
            json!({"Upper.Case/x": "y"}),
            json!({"a/b/c": "y"}),
            json!({"x": "a".repeat(64)}),
            json!({"/x": "y"}),
            json!({"x": "-leading"}),
        ] {
            let e = parse(json!({ field: bad })).unwrap_err();
            assert_eq!(e.field, field, "{bad}");
            assert!(e.message.contains("Kubernetes label"), "{e}");
        }
    }
    let e = parse(json!({"labels": "team=not valid"})).unwrap_err();
    assert!(e.message.contains("`not valid` (for `team`)"), "{e}");
}

#[test]
fn quantities() {
    for ok in [
        "1", "1000m", "0.5", "2Gi", "512Mi", "1e3", "1.5", "+1", "100k",
    ] {
        assert!(is_quantity(ok), "{ok}");
    }
    for bad in ["", "Gi", "1.2.3", "8 gigs", "1GB", "m", ".", "1e", "abc"] {
        assert!(!is_quantity(bad), "{bad}");
    }
}
