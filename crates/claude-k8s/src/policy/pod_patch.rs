//! What an agent's `podSpecPatch` may do, judged by its content, not only its key names. Pure.
//!
//! The patch is a JSON merge patch applied last to the pod spec: an object merges into ours, anything else
//! (an array, a value, `null`) replaces or removes ours whole. So `containers`, `initContainers` and `volumes` in a
//! patch replace the lists the adapter built, and every container and volume in them is inspected here. Each top-level
//! key needs `allowedKeys`; the keys and values that widen what the pod may do need their own explicit setting, which
//! also allows the key.

use serde_json::{Map, Value};

use super::pattern::{Glob, any_matches};
use super::{Denial, Denials};

/// The host namespaces a pod can share.
pub const HOST_NAMESPACES: [&str; 3] = ["hostNetwork", "hostPID", "hostIPC"];

/// Volume sources that reach nothing outside the pod: always allowed in a patch's `volumes`.
const SAFE_VOLUME_TYPES: [&str; 4] = ["emptyDir", "configMap", "downwardAPI", "projected"];

/// `podSpecPatch` settings of the operator policy; the default allows nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatchRules {
    /// Top-level pod-spec keys a patch may use (globs).
    pub allowed_keys: Vec<Glob>,
    /// `hostNetwork`, `hostPID`, `hostIPC` that may be turned on.
    pub host_namespaces: Vec<String>,
    pub privileged: bool,
    pub host_path: bool,
    /// Capabilities a container may add; `["*"]` for any.
    pub added_capabilities: Vec<Glob>,
    pub privilege_escalation: bool,
    /// The pod's or a container's security context set, replaced or left out by the patch.
    pub security_context: bool,
    pub node_name: bool,
    /// `serviceAccountName`, `serviceAccount`, `automountServiceAccountToken`, projected service-account tokens.
    pub service_account: bool,
    /// `initContainers` replaced or removed (the adapter's `write-prompt` container delivers the prompt).
    pub init_containers: bool,
    /// Secret volumes, projected Secrets, `secretKeyRef` env and `envFrom` Secrets in the patch's containers.
    pub secret_references: bool,
    /// Volume types beyond the safe ones (e.g. `persistentVolumeClaim`, `nfs`, `csi`).
    pub volume_types: Vec<String>,
}

/// Checks a patch; `images` and `init_images` are the policy's allow-lists for the containers it brings.
pub fn check(
    patch: &Map<String, Value>,
    rules: &PatchRules,
    images: &[Glob],
    init_images: &[Glob],
    out: &mut Denials,
) {
    for (key, value) in patch {
        let field = format!("podSpecPatch.{key}");
        let listed = any_matches(&rules.allowed_keys, key);
        let truthy = !matches!(value, Value::Null | Value::Bool(false));
        // (the explicit setting for this key, whether the value needs it, the setting's spelling)
        let special: Option<(bool, bool, String)> = match key.as_str() {
            k if HOST_NAMESPACES.contains(&k) => Some((
                rules.host_namespaces.iter().any(|h| h == k),
                truthy,
                format!("\"allowHostNamespaces\": [\"{k}\"]"),
            )),
            "nodeName" => Some((
                rules.node_name,
                !value.is_null(),
                "\"allowNodeName\": true".into(),
            )),
            "serviceAccountName" | "serviceAccount" => Some((
                rules.service_account,
                !value.is_null(),
                "\"allowServiceAccount\": true".into(),
            )),
            // `false` keeps the token out, as the adapter does; anything else (null: the default, true) mounts it.
            "automountServiceAccountToken" => Some((
                rules.service_account,
                *value != Value::Bool(false),
                "\"allowServiceAccount\": true".into(),
            )),
            "securityContext" => Some((
                rules.security_context,
                true,
                "\"allowSecurityContext\": true".into(),
            )),
            "initContainers" => Some((
                rules.init_containers,
                true,
                "\"allowInitContainers\": true".into(),
            )),
            _ => None,
        };
        match special {
            Some((granted, needed, setting)) => {
                if needed && !granted {
                    out.push(Denial::patch(&field, &setting));
                } else if !needed && !granted && !listed {
                    out.push(Denial::patch(
                        &field,
                        &format!("\"allowedKeys\": [\"{key}\"]"),
                    ));
                }
            }
            None if !listed => out.push(Denial::patch(
                &field,
                &format!("\"allowedKeys\": [\"{key}\"]"),
            )),
            None => {}
        }
        match key.as_str() {
            "containers" | "ephemeralContainers" => {
                containers(&field, value, rules, images, "images", out)
            }
            "initContainers" => containers(&field, value, rules, init_images, "initImages", out),
            "volumes" => volumes(&field, value, rules, out),
            _ => {}
        }
    }
}

fn containers(
    field: &str,
    list: &Value,
    rules: &PatchRules,
    images: &[Glob],
    images_setting: &str,
    out: &mut Denials,
) {
    // Not a list: the plan refuses it as no pod spec at all.
    let Some(items) = list.as_array() else { return };
    for (i, c) in items.iter().enumerate() {
        let Some(c) = c.as_object() else { continue };
        let at = format!("{field}[{i}]");
        if let Some(image) = c.get("image").and_then(Value::as_str)
            && !any_matches(images, image)
        {
            out.push(Denial::top(
                &format!("{at}.image"),
                &format!("\"{images_setting}\": [{}]", json_str(image)),
            ));
        }
        security_context(&at, c.get("securityContext"), rules, out);
        if !rules.secret_references {
            for (list, pointer, what) in [
                ("env", "/valueFrom/secretKeyRef", "valueFrom.secretKeyRef"),
                ("envFrom", "/secretRef", "secretRef"),
            ] {
                let found = c
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .position(|e| e.pointer(pointer).is_some());
                if let Some(j) = found {
                    out.push(Denial::patch(
                        &format!("{at}.{list}[{j}].{what}"),
                        "\"allowSecretReferences\": true",
                    ));
                }
            }
        }
    }
}

/// A container's security context in a patch: what explicitly loosens the adapter's (privileged, privilege
/// escalation, added capabilities, root, unconfined profiles) needs the setting for that one thing. What the patch
/// leaves out is no loosening: the plan re-applies the adapter's security context after the patch
/// (`plan::reapply_security`).
fn security_context(at: &str, sc: Option<&Value>, rules: &PatchRules, out: &mut Denials) {
    let field = format!("{at}.securityContext");
    let Some(sc) = sc.and_then(Value::as_object) else {
        return;
    };
    if sc.get("privileged") == Some(&Value::Bool(true)) && !rules.privileged {
        out.push(Denial::patch(
            &format!("{field}.privileged"),
            "\"allowPrivileged\": true",
        ));
    }
    if sc.get("allowPrivilegeEscalation") == Some(&Value::Bool(true)) && !rules.privilege_escalation
    {
        out.push(Denial::patch(
            &format!("{field}.allowPrivilegeEscalation"),
            "\"allowPrivilegeEscalation\": true",
        ));
    }
    let caps = sc.get("capabilities").and_then(Value::as_object);
    for cap in caps
        .and_then(|c| c.get("add"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !any_matches(&rules.added_capabilities, cap) {
            out.push(Denial::patch(
                &format!("{field}.capabilities.add"),
                &format!("\"allowAddedCapabilities\": [{}]", json_str(cap)),
            ));
        }
    }
    if rules.security_context {
        return;
    }
    let unconfined = |k: &str| {
        sc.get(k)
            .and_then(|p| p.get("type"))
            .is_some_and(|t| t == "Unconfined")
    };
    let loosened = [
        (sc.get("runAsNonRoot") == Some(&Value::Bool(false))).then_some("runAsNonRoot"),
        (sc.get("runAsUser").and_then(Value::as_i64) == Some(0)).then_some("runAsUser"),
        (sc.get("runAsGroup").and_then(Value::as_i64) == Some(0)).then_some("runAsGroup"),
        sc.get("procMount")
            .is_some_and(|v| v != "Default")
            .then_some("procMount"),
        sc.get("seLinuxOptions")
            .is_some()
            .then_some("seLinuxOptions"),
        sc.get("windowsOptions")
            .is_some()
            .then_some("windowsOptions"),
        unconfined("seccompProfile").then_some("seccompProfile"),
        unconfined("appArmorProfile").then_some("appArmorProfile"),
    ];
    for what in loosened.into_iter().flatten() {
        out.push(Denial::patch(
            &format!("{field}.{what}"),
            "\"allowSecurityContext\": true",
        ));
    }
}

fn volumes(field: &str, list: &Value, rules: &PatchRules, out: &mut Denials) {
    let Some(items) = list.as_array() else { return };
    for (i, v) in items.iter().enumerate() {
        let Some(v) = v.as_object() else { continue };
        for (kind, source) in v.iter().filter(|(k, _)| k.as_str() != "name") {
            let at = format!("{field}[{i}].{kind}");
            match kind.as_str() {
                "hostPath" if !rules.host_path => {
                    out.push(Denial::patch(&at, "\"allowHostPath\": true"))
                }
                "hostPath" => {}
                "secret" if !rules.secret_references => {
                    out.push(Denial::patch(&at, "\"allowSecretReferences\": true"))
                }
                "secret" => {}
                "projected" => {
                    for s in source
                        .get("sources")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if s.get("secret").is_some() && !rules.secret_references {
                            out.push(Denial::patch(
                                &format!("{at}.sources.secret"),
                                "\"allowSecretReferences\": true",
                            ));
                        }
                        if s.get("serviceAccountToken").is_some() && !rules.service_account {
                            out.push(Denial::patch(
                                &format!("{at}.sources.serviceAccountToken"),
                                "\"allowServiceAccount\": true",
                            ));
                        }
                    }
                }
                k if SAFE_VOLUME_TYPES.contains(&k) => {}
                k if rules.volume_types.iter().any(|t| t == k) => {}
                k => out.push(Denial::patch(
                    &at,
                    &format!("\"allowVolumeTypes\": [{}]", json_str(k)),
                )),
            }
        }
    }
}

/// A JSON string literal of a value from the config, cut short: a setting to copy, never a whole blob.
fn json_str(s: &str) -> String {
    let cut: String = s.chars().take(120).collect();
    serde_json::to_string(&cut).unwrap_or_default()
}

#[cfg(test)]
mod tests {
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
        let sc =
            |sc: Value| json!({"containers": [safe_container(json!({"securityContext": sc}))]});
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
}
