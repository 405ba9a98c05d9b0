use super::*;
use serde_json::json;

fn denials(patch: Value, rules: &PatchRules) -> Vec<String> {
    let mut out = Denials::default();
    check(
        patch.as_object().unwrap(),
        rules,
        &[Glob::new("local/*")],
        &[Glob::new("busybox:*")],
        &mut out,
    );
    out.0.iter().map(|d| d.field.clone()).collect()
}

fn keys(k: &[&str]) -> PatchRules {
    PatchRules {
        allowed_keys: k.iter().map(|k| Glob::new(k)).collect(),
        ..Default::default()
    }
}

#[test]
fn every_top_level_key_needs_the_policy() {
    let none = PatchRules::default();
    assert_eq!(
        denials(json!({"runtimeClassName": "gvisor", "affinity": {}}), &none),
        ["podSpecPatch.affinity", "podSpecPatch.runtimeClassName"]
    );
    assert!(
        denials(
            json!({"runtimeClassName": "gvisor"}),
            &keys(&["runtimeClassName"])
        )
        .is_empty()
    );
    assert!(denials(json!({"a": 1, "b": 2}), &keys(&["*"])).is_empty());
}

#[test]
fn host_namespaces_need_their_own_setting_even_when_the_key_is_listed() {
    let listed = keys(&["hostNetwork", "hostPID", "hostIPC"]);
    assert_eq!(
        denials(
            json!({"hostNetwork": true, "hostPID": true, "hostIPC": true}),
            &listed
        ),
        [
            "podSpecPatch.hostIPC",
            "podSpecPatch.hostNetwork",
            "podSpecPatch.hostPID"
        ]
    );
    let net = PatchRules {
        host_namespaces: vec!["hostNetwork".into()],
        ..Default::default()
    };
    assert!(denials(json!({"hostNetwork": true}), &net).is_empty());
    assert_eq!(
        denials(json!({"hostPID": true}), &net),
        ["podSpecPatch.hostPID"]
    );
    // Turning one off is harmless, but still a key the policy must list.
    assert!(denials(json!({"hostPID": false}), &listed).is_empty());
    assert_eq!(
        denials(json!({"hostPID": false}), &PatchRules::default()),
        ["podSpecPatch.hostPID"]
    );
    // A value that is not `false` counts as on (a string "true" would not even parse as a pod spec).
    assert_eq!(
        denials(json!({"hostPID": "yes"}), &listed),
        ["podSpecPatch.hostPID"]
    );
}

#[test]
fn identity_and_placement_need_their_own_settings() {
    let listed = keys(&["*"]);
    assert_eq!(
        denials(
            json!({"nodeName": "n1", "serviceAccountName": "paperclip", "serviceAccount": "x",
                   "automountServiceAccountToken": true, "securityContext": {"runAsUser": 1000},
                   "initContainers": []}),
            &listed
        ),
        [
            "podSpecPatch.automountServiceAccountToken",
            "podSpecPatch.initContainers",
            "podSpecPatch.nodeName",
            "podSpecPatch.securityContext",
            "podSpecPatch.serviceAccount",
            "podSpecPatch.serviceAccountName"
        ]
    );
    // null removes the adapter's `false`, so the token would be mounted.
    assert_eq!(
        denials(json!({"automountServiceAccountToken": null}), &listed),
        ["podSpecPatch.automountServiceAccountToken"]
    );
    assert!(denials(json!({"automountServiceAccountToken": false}), &listed).is_empty());
    let granted = PatchRules {
        node_name: true,
        service_account: true,
        security_context: true,
        init_containers: true,
        ..Default::default()
    };
    assert!(
        denials(
            json!({"nodeName": "n1", "serviceAccountName": "paperclip", "securityContext": null}),
            &granted
        )
        .is_empty()
    );
}

fn safe_container(extra: Value) -> Value {
    let mut c = json!({"name": "claude", "image": "local/agent:1",
        "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                            "capabilities": {"drop": ["ALL"]}}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn containers_in_a_patch_are_inspected() {
    let listed = keys(&["containers"]);
    assert!(denials(json!({"containers": [safe_container(json!({}))]}), &listed).is_empty());
    let sc = |sc: Value| json!({"containers": [safe_container(json!({"securityContext": sc}))]});
    assert_eq!(
        denials(
            sc(json!({"privileged": true, "allowPrivilegeEscalation": true,
                      "capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]}})),
            &listed
        ),
        [
            "podSpecPatch.containers[0].securityContext.privileged",
            "podSpecPatch.containers[0].securityContext.allowPrivilegeEscalation",
            "podSpecPatch.containers[0].securityContext.capabilities.add"
        ]
    );
    // Left out, or only partly given: no loosening, the plan re-applies the adapter's security context.
    assert!(
        denials(
            json!({"containers": [{"name": "claude", "image": "local/a:1"},
                                  {"name": "x", "image": "local/a:1",
                                   "securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}]}),
            &listed
        )
        .is_empty()
    );
    assert_eq!(
        denials(
            sc(
                json!({"allowPrivilegeEscalation": false, "runAsUser": 0, "runAsNonRoot": false,
                      "capabilities": {"drop": ["NET_RAW"]}, "seccompProfile": {"type": "Unconfined"}})
            ),
            &listed
        ),
        [
            "podSpecPatch.containers[0].securityContext.runAsNonRoot",
            "podSpecPatch.containers[0].securityContext.runAsUser",
            "podSpecPatch.containers[0].securityContext.seccompProfile"
        ]
    );
    // Images follow the policy's image lists; Secrets referenced from env need their setting.
    assert_eq!(
        denials(
            json!({"containers": [safe_container(json!({"image": "evil.example/x:1",
                "env": [{"name": "A", "value": "x"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                "envFrom": [{"secretRef": {"name": "paperclip-secrets"}}]}))]}),
            &listed
        ),
        [
            "podSpecPatch.containers[0].image",
            "podSpecPatch.containers[0].env[1].valueFrom.secretKeyRef",
            "podSpecPatch.containers[0].envFrom[0].secretRef"
        ]
    );
    let caps = PatchRules {
        allowed_keys: vec![Glob::new("containers")],
        added_capabilities: vec![Glob::new("NET_BIND_SERVICE")],
        ..Default::default()
    };
    assert!(
        denials(
            sc(json!({"allowPrivilegeEscalation": false,
                      "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}})),
            &caps
        )
        .is_empty()
    );
}

#[test]
fn init_containers_use_the_init_image_list() {
    let granted = PatchRules {
        init_containers: true,
        ..Default::default()
    };
    let init = |image: &str| json!({"initContainers": [safe_container(json!({"name": "write-prompt", "image": image}))]});
    assert!(denials(init("busybox:1.36"), &granted).is_empty());
    assert_eq!(
        denials(init("local/agent:1"), &granted),
        ["podSpecPatch.initContainers[0].image"]
    );
}

#[test]
fn volumes_in_a_patch_are_inspected() {
    let listed = keys(&["volumes"]);
    assert!(
        denials(
            json!({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "configMap": {"name": "c"}},
                               {"name": "c", "projected": {"sources": [{"configMap": {"name": "c"}}]}}]}),
            &listed
        )
        .is_empty()
    );
    assert_eq!(
        denials(
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}},
                               {"name": "s", "secret": {"secretName": "paperclip-secrets"}},
                               {"name": "p", "projected": {"sources": [{"secret": {"name": "x"}},
                                                                       {"serviceAccountToken": {"path": "t"}}]}},
                               {"name": "db", "persistentVolumeClaim": {"claimName": "paperclip-db"}}]}),
            &listed
        ),
        [
            "podSpecPatch.volumes[0].hostPath",
            "podSpecPatch.volumes[1].secret",
            "podSpecPatch.volumes[2].projected.sources.secret",
            "podSpecPatch.volumes[2].projected.sources.serviceAccountToken",
            "podSpecPatch.volumes[3].persistentVolumeClaim"
        ]
    );
    let pvc = PatchRules {
        allowed_keys: vec![Glob::new("volumes")],
        volume_types: vec!["persistentVolumeClaim".into()],
        host_path: true,
        ..Default::default()
    };
    assert!(
        denials(
            json!({"volumes": [{"name": "db", "persistentVolumeClaim": {"claimName": "x"}},
                               {"name": "h", "hostPath": {"path": "/x"}}]}),
            &pvc
        )
        .is_empty()
    );
}
