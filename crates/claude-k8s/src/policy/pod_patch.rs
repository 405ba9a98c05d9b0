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
mod tests;
