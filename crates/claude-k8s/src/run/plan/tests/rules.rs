//! The inheritance and hardening rules, one test a rule.

use super::*;
use serde_json::json;

#[test]
fn rule_no_injected_sidecar_or_its_init_container() {
    for (pod, init) in [
        (pod_of(json!({})), vec![]),
        (packed_pod_of(json!({})), vec!["write-prompt"]),
    ] {
        let names = |key: &str| -> Vec<String> {
            pod[key]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| c["name"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(names("containers"), ["claude"]);
        assert_eq!(names("initContainers"), init);
        assert!(!serde_json::to_string(&pod).unwrap().contains("istio"));
    }
}

#[test]
fn mcp_config_travels_in_the_secret_and_claude_reads_it_from_the_secrets_volume() {
    let mcp = r#"{"mcpServers":{"p":{"type":"http","url":"http://x","headers":{"Authorization":"Bearer mcp-tok-1"}}}}"#;
    let m = manifests_with_mcp(json!({}), "hi", Some(mcp)).unwrap();
    assert!(!serde_json::to_string(&m.job).unwrap().contains("mcp-tok-1"));
    assert_eq!(
        m.secret.data.as_ref().unwrap()["mcp-config.json"].0,
        mcp.as_bytes()
    );
    let pod = as_json(&m.job)["spec"]["template"]["spec"].clone();
    assert_eq!(mcp_config_path(), "/var/run/claude-k8s/run/mcp-config.json");
    // The Secret's volume: in memory (the kubelet keeps Secret volumes on tmpfs), read-only, the agent's group only.
    let claude_mount = named(&pod["containers"][0]["volumeMounts"], "run-secret").clone();
    assert_eq!(
        claude_mount,
        json!({"name": "run-secret", "mountPath": "/var/run/claude-k8s/run", "readOnly": true})
    );
    let vol = named(&pod["volumes"], "run-secret").clone();
    assert_eq!(vol["secret"]["defaultMode"], 0o440);
    assert_eq!(pod["securityContext"]["fsGroup"], 1000);
    // Without MCP servers: no key.
    let m = manifests(json!({}), "hi").unwrap();
    assert!(
        !m.secret
            .data
            .as_ref()
            .unwrap()
            .contains_key("mcp-config.json")
    );
}

#[test]
fn rule_no_service_account_token_unless_a_service_account_is_named() {
    let pod = pod_of(json!({}));
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(
        pod.get("serviceAccountName").is_none(),
        "not the server's account"
    );
    let text = serde_json::to_string(&pod).unwrap();
    assert!(!text.contains("token"), "no token volume or mount: {text}");
    assert!(!text.contains("/var/run/secrets/kubernetes.io"));
    let named = pod_of(json!({"serviceAccountName": "agent-sa"}));
    assert_eq!(named["serviceAccountName"], "agent-sa");
    assert_eq!(named["automountServiceAccountToken"], true);
}

#[test]
fn rule_no_probes_ports_or_lifecycle_hooks() {
    let pod = packed_pod_of(json!({}));
    for c in both_containers(&pod) {
        for key in [
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "ports",
            "lifecycle",
        ] {
            assert!(c.get(key).is_none(), "{key} on {}", c["name"]);
        }
    }
}

#[test]
fn rule_no_node_name_and_no_selector_labels() {
    let j = as_json(&manifests(json!({}), "hi").unwrap().job);
    assert!(j["spec"]["template"]["spec"].get("nodeName").is_none());
    for labels in [
        &j["metadata"]["labels"],
        &j["spec"]["template"]["metadata"]["labels"],
    ] {
        let labels = labels.as_object().unwrap();
        for server_label in ["app", "pod-template-hash"] {
            assert!(!labels.contains_key(server_label), "{server_label}");
        }
    }
    assert!(
        j["spec"].get("selector").is_none(),
        "the Job controller makes its own selector"
    );
}

#[test]
fn rule_whitelisted_facts_are_inherited() {
    let pod = pod_of(json!({}));
    assert_eq!(pod["containers"][0]["image"], "ghcr.io/acme/paperclip:1.2");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["dnsPolicy"], "None");
    assert_eq!(pod["dnsConfig"]["nameservers"], json!(["10.0.0.10"]));
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "paperclip-data"
    );
    let inherited = named(&pod["volumes"], "keys");
    assert_eq!(inherited["secret"]["secretName"], "paperclip-secrets");
    let keys_mount = named(&pod["containers"][0]["volumeMounts"], "keys");
    assert_eq!(keys_mount["mountPath"], "/etc/keys");
    assert_eq!(
        keys_mount["readOnly"], true,
        "inherited secrets are read-only"
    );
    assert_eq!(
        pod["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "paperclip-config"
    );
}

#[test]
fn rule_the_servers_own_secrets_never_reach_the_job() {
    let m = manifests(json!({}), "hi").unwrap();
    let text = serde_json::to_string(&m.job).unwrap();
    assert!(
        !text.contains("paperclip-server"),
        "no secretKeyRef to the server's secrets"
    );
    assert!(!text.contains("postgres://"));
    let env = as_json(&m.job)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    for name in SERVER_SECRET_ENV {
        assert!(
            env.as_array().unwrap().iter().all(|e| e["name"] != name),
            "{name}"
        );
    }
    // A Secret in envFrom might carry them: masked with an empty value.
    let mut facts = PodFacts::from_pod(&paperclip_pod());
    facts
        .env_from
        .push(serde_json::from_value(json!({"secretRef": {"name": "paperclip-env"}})).unwrap());
    let config = AgentConfig::parse(&serde_json::Map::new()).unwrap();
    let inv = Invocation::build(&ExecuteParams::default(), &config, &facts, None);
    let env = container_env(&facts, &inv, false, "s");
    for name in SERVER_SECRET_ENV {
        let entries: Vec<&EnvVar> = env.iter().filter(|e| e.name == name).collect();
        assert_eq!(entries.len(), 1, "{name}");
        assert_eq!(entries[0].value.as_deref(), Some(""), "{name}");
    }
    // An operator can still give one to the agent on purpose, through the run Secret.
    let m = manifests(
        json!({"env": {"DATABASE_URL": "postgres://agent-db/x"}}),
        "hi",
    )
    .unwrap();
    let env = as_json(&m.job)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
    let db: Vec<&Value> = env
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "DATABASE_URL")
        .collect();
    let key = env_secret_key("DATABASE_URL");
    assert_eq!(db.len(), 1);
    assert_eq!(db[0]["valueFrom"]["secretKeyRef"]["key"], json!(key));
    assert_eq!(
        m.secret.data.as_ref().unwrap()[&key].0,
        b"postgres://agent-db/x"
    );
}

#[test]
fn rule_runs_as_non_root_1000_1000() {
    let pod = packed_pod_of(json!({}));
    let sc = &pod["securityContext"];
    assert_eq!(
        (sc["runAsUser"].as_i64(), sc["runAsGroup"].as_i64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(sc["runAsNonRoot"], true);
    for c in both_containers(&pod) {
        assert_eq!(c["securityContext"]["runAsNonRoot"], true, "{}", c["name"]);
    }
}

#[test]
fn rule_no_privilege_escalation() {
    let pod = packed_pod_of(json!({}));
    for c in both_containers(&pod) {
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"], false,
            "{}",
            c["name"]
        );
        assert!(c["securityContext"].get("privileged").is_none());
    }
}

#[test]
fn rule_all_capabilities_dropped() {
    let pod = packed_pod_of(json!({}));
    for c in both_containers(&pod) {
        assert_eq!(
            c["securityContext"]["capabilities"],
            json!({"drop": ["ALL"]}),
            "{}",
            c["name"]
        );
    }
}

#[test]
fn rule_seccomp_runtime_default() {
    let pod = pod_of(json!({}));
    assert_eq!(
        pod["securityContext"]["seccompProfile"],
        json!({"type": "RuntimeDefault"})
    );
}

#[test]
fn rule_fs_group_1000_changed_only_on_root_mismatch() {
    let pod = pod_of(json!({}));
    assert_eq!(pod["securityContext"]["fsGroup"], 1000);
    assert_eq!(
        pod["securityContext"]["fsGroupChangePolicy"],
        "OnRootMismatch"
    );
}

// One test per Kubernetes field of the config, on the planned Job.
