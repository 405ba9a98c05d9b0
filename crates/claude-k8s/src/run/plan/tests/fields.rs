//! Each config field's effect on the Job.

use super::*;
use serde_json::json;

#[test]
fn field_image_overrides_the_inherited_one() {
    let pod = pod_of(json!({"image": "registry.example/agent:2"}));
    assert_eq!(pod["containers"][0]["image"], "registry.example/agent:2");
}

#[test]
fn field_image_pull_policy_applies_to_both_containers() {
    for (config, expected) in [
        (json!({}), "IfNotPresent"),
        (json!({"imagePullPolicy": "Always"}), "Always"),
    ] {
        let pod = packed_pod_of(config);
        for c in both_containers(&pod) {
            assert_eq!(c["imagePullPolicy"], expected, "{}", c["name"]);
        }
    }
}

#[test]
fn field_init_image() {
    assert_eq!(
        packed_pod_of(json!({}))["initContainers"][0]["image"],
        "busybox:1.36"
    );
    assert_eq!(
        packed_pod_of(json!({"initImage": "mirror.example/busybox:1"}))["initContainers"][0]["image"],
        "mirror.example/busybox:1"
    );
}

#[test]
fn field_resources_defaults_and_overrides_flat_or_nested() {
    let r = &pod_of(json!({}))["containers"][0]["resources"];
    assert_eq!(
        r,
        &json!({"requests": {"cpu": "1000m", "memory": "2Gi"}, "limits": {"cpu": "4000m", "memory": "8Gi"}})
    );
    let flat = pod_of(json!({"resources.requests.cpu": "250m", "resources.limits.memory": "1Gi"}));
    let nested =
        pod_of(json!({"resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}}));
    assert_eq!(
        flat["containers"][0]["resources"],
        nested["containers"][0]["resources"]
    );
    assert_eq!(
        flat["containers"][0]["resources"],
        json!({"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"cpu": "4000m", "memory": "1Gi"}})
    );
}

#[test]
fn field_ttl_timeout_and_grace() {
    let j = as_json(&manifests(json!({}), "hi").unwrap().job);
    assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 300);
    assert!(
        j["spec"].get("activeDeadlineSeconds").is_none(),
        "timeoutSec 0: no deadline"
    );
    assert_eq!(
        j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        60
    );
    let j = as_json(
        &manifests(
            json!({"ttlSecondsAfterFinished": 30, "timeoutSec": 600, "graceSec": 10}),
            "hi",
        )
        .unwrap()
        .job,
    );
    assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 30);
    assert_eq!(j["spec"]["activeDeadlineSeconds"], 600 + 10 + 300);
    assert_eq!(
        j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        10
    );
}

#[test]
fn field_labels_cannot_override_the_adapters_own() {
    let j = as_json(
        &manifests(
            json!({"labels": {"team": "core", "paperclip.io/agent-id": "spoof"}}),
            "hi",
        )
        .unwrap()
        .job,
    );
    for labels in [
        &j["metadata"]["labels"],
        &j["spec"]["template"]["metadata"]["labels"],
    ] {
        assert_eq!(labels["team"], "core");
        assert_eq!(
            labels["paperclip.io/agent-id"],
            "0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa"
        );
    }
}

#[test]
fn field_pod_spec_patch_merges_last_and_null_removes() {
    let pod = pod_of(json!({"podSpecPatch": {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
            [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["agents"]}]}]}}},
        "dnsConfig": null,
        "priorityClassName": "agents"
    }}));
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "pool"
    );
    assert!(
        pod.get("dnsConfig").is_none(),
        "null removes an inherited field"
    );
    assert_eq!(pod["priorityClassName"], "agents");
    // Fields the patch does not name keep the plan's values.
    assert_eq!(pod["containers"][0]["name"], "claude");
    let err = manifests(json!({"podSpecPatch": {"containers": "nope"}}), "hi").unwrap_err();
    assert!(matches!(err, PlanError::BadPodSpecPatch(_)), "{err}");
}

#[test]
fn bedrock_aws_env_and_credentials_reach_the_job() {
    let params: ExecuteParams = serde_json::from_value(json!({
        "runId": "r1", "agent": {"id": "a1", "companyId": "c0", "name": "Ada"}, "prompt": {"fresh": "hi"}
    }))
    .unwrap();
    let mut pod = paperclip_pod();
    pod.spec.as_mut().unwrap().containers[1]
        .env
        .as_mut()
        .unwrap()
        .extend(
            serde_json::from_value::<Vec<k8s_openapi::api::core::v1::EnvVar>>(json!([
                {"name": "CLAUDE_CODE_USE_BEDROCK", "value": "1"},
                {"name": "AWS_REGION", "value": "us-east-1"},
                {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "id"}}},
                {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "secret"}}}
            ]))
            .unwrap(),
        );
    let facts = PodFacts::from_pod(&pod);
    let config = AgentConfig::parse(
        json!({"model": "claude-sonnet-4-6", "env": {"AWS_PROFILE": "agents"}})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    let inv = Invocation::build(&params, &config, &facts, None);
    assert!(inv.bedrock);
    let id = RunIdentity::default();
    let m = plan(
        &RunPlanInput {
            identity: &id,
            agent_name: "Ada",
            namespace: "paperclip",
            invocation: &inv,
            auth_token: None,
            mcp_config: None,
            view: &View::whole_volume(),
            patch_rules: &PatchRules::default(),
        },
        &config,
        &facts,
    )
    .unwrap();
    let c = &as_json(&m.job)["spec"]["template"]["spec"]["containers"][0];
    let var = |n: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} not in the Job env"))
    };
    assert_eq!(var("CLAUDE_CODE_USE_BEDROCK")["value"], "1");
    assert_eq!(var("AWS_REGION")["value"], "us-east-1");
    assert_eq!(
        var("AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"]["name"],
        "aws"
    );
    assert_eq!(
        var("AWS_SECRET_ACCESS_KEY")["valueFrom"]["secretKeyRef"]["key"],
        "secret"
    );
    assert_eq!(var("AWS_PROFILE")["value"], "agents");
    assert!(!c["args"].as_array().unwrap().contains(&json!("--model")));
}

#[test]
fn missing_claim_or_image_are_clear_errors() {
    let config = AgentConfig::parse(&serde_json::Map::new()).unwrap();
    let id = RunIdentity::default();
    let params = ExecuteParams::default();
    let inv = Invocation::build(&params, &config, &PodFacts::default(), None);
    let input = RunPlanInput {
        identity: &id,
        agent_name: "",
        namespace: "ns",
        invocation: &inv,
        auth_token: None,
        mcp_config: None,
        view: &View::whole_volume(),
        patch_rules: &PatchRules::default(),
    };
    assert!(matches!(
        plan(&input, &config, &PodFacts::default()),
        Err(PlanError::NoImage)
    ));
    let facts = PodFacts {
        image: Some("img".into()),
        pod_name: "p".into(),
        namespace: "ns".into(),
        ..Default::default()
    };
    let err = plan(&input, &config, &facts).unwrap_err();
    assert!(err.to_string().contains("/paperclip"), "{err}");
}
