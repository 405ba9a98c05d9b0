//! Reading the operator policy: from `CLAUDE_K8S_POLICY` (inline JSON) or the file `CLAUDE_K8S_POLICY_FILE`
//! names (YAML or JSON), each setting checked; an error names the setting and never quotes the policy's text.

use serde_json::{Map, Value};

use super::*;

/// A policy that cannot be used; the message names the setting and never quotes the policy's text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid operator policy in {origin}: {message}")]
pub struct PolicyError {
    pub origin: Source,
    pub message: String,
}

/// The policy given the values of [`POLICY_ENV`] and [`POLICY_FILE_ENV`] (read by [`crate::settings::Settings`]);
/// the default when neither is set.
pub fn from_vars(inline: Option<String>, file: Option<String>) -> Result<Policy, PolicyError> {
    match (inline, file) {
        (None, None) => Ok(Policy::default()),
        (Some(_), Some(path)) => Err(PolicyError {
            origin: Source::File(path),
            message: format!("both {POLICY_ENV} and {POLICY_FILE_ENV} are set; set one of them"),
        }),
        (Some(text), None) => {
            let source = Source::Inline;
            let value = serde_json::from_str::<Value>(&text).map_err(|e| PolicyError {
                origin: source.clone(),
                message: format!("not valid JSON (line {}, column {})", e.line(), e.column()),
            })?;
            parse(&value, source)
        }
        (None, Some(path)) => {
            let source = Source::File(path.clone());
            let fail = |message: String| PolicyError {
                origin: source.clone(),
                message,
            };
            let text = read_policy_file(&path).map_err(fail)?;
            let value = serde_saphyr::from_str::<Value>(&text).map_err(|e| {
                fail(match e.location() {
                    Some(l) => format!(
                        "not valid YAML or JSON (line {}, column {})",
                        l.line(),
                        l.column()
                    ),
                    None => "not valid YAML or JSON".into(),
                })
            })?;
            parse(&value, source)
        }
    }
}

fn read_policy_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {}", e.kind()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {}", e.kind()))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {}", e.kind()))?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(format!("it is larger than {MAX_POLICY_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".into())
}

/// The policy from its JSON (or YAML) value. Unknown settings are errors: a misspelt deny entry must not pass.
pub fn parse(value: &Value, source: Source) -> Result<Policy, PolicyError> {
    let fail = |message: String| PolicyError {
        origin: source.clone(),
        message,
    };
    let root = match value {
        Value::Object(o) => o,
        // An empty file.
        Value::Null => &Map::new(),
        _ => return Err(fail("the policy must be an object of settings".into())),
    };
    let mut policy = Policy {
        source: source.clone(),
        ..Policy::default()
    };
    for (key, v) in root {
        match key.as_str() {
            "podSpecPatch" => policy.pod_spec_patch = patch_rules(v).map_err(fail)?,
            "serviceAccountNames" => policy.service_account_names = globs(key, v).map_err(fail)?,
            "namespaces" => policy.namespaces = globs(key, v).map_err(fail)?,
            "images" => policy.images = globs(key, v).map_err(fail)?,
            "initImages" => policy.init_images = globs(key, v).map_err(fail)?,
            "kubeconfigs" => {
                policy.kubeconfigs = globs(key, v).map_err(fail)?;
                if let Some(bad) = policy
                    .kubeconfigs
                    .iter()
                    .position(|g| !g.as_str().starts_with('/'))
                {
                    return Err(fail(format!(
                        "`kubeconfigs` entry {bad} must be an absolute path or path glob"
                    )));
                }
            }
            "instructionsRoots" => policy.instructions_roots = globs(key, v).map_err(fail)?,
            "workspaceRoots" => policy.workspace_roots = globs(key, v).map_err(fail)?,
            "wholeVolume" => {
                policy.whole_volume = v
                    .as_bool()
                    .ok_or_else(|| fail("`wholeVolume` must be true or false".into()))?
            }
            "paperclipApiUrls" => {
                let texts = strings(key, v).map_err(fail)?;
                policy.paperclip_api_urls = texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        UrlPattern::parse(t).ok_or_else(|| {
                            fail(format!(
                                "`paperclipApiUrls` entry {i} is not an http(s) URL (scheme://host[:port|:*][/path])"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "env" => {
                let o = v.as_object().ok_or_else(|| {
                    fail("`env` must be an object with `deny` and `allow` lists".into())
                })?;
                for (k, list) in o {
                    match k.as_str() {
                        "deny" => policy
                            .env_deny
                            .extend(globs("env.deny", list).map_err(fail)?),
                        "allow" => policy.env_allow = globs("env.allow", list).map_err(fail)?,
                        other => {
                            return Err(fail(unknown(
                                &format!("env.{}", setting_name(other)),
                                "deny, allow",
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(fail(unknown(
                    &setting_name(other),
                    "podSpecPatch, serviceAccountNames, namespaces, images, initImages, kubeconfigs, \
                     paperclipApiUrls, instructionsRoots, workspaceRoots, wholeVolume, env",
                )));
            }
        }
    }
    Ok(policy)
}

fn patch_rules(v: &Value) -> Result<PatchRules, String> {
    let o = v
        .as_object()
        .ok_or_else(|| "`podSpecPatch` must be an object of settings".to_owned())?;
    let mut r = PatchRules::default();
    for (key, v) in o {
        let name = format!("podSpecPatch.{key}");
        let flag = || {
            v.as_bool()
                .ok_or_else(|| format!("`{name}` must be true or false"))
        };
        match key.as_str() {
            "allowedKeys" => r.allowed_keys = globs(&name, v)?,
            "allowHostNamespaces" => {
                r.host_namespaces = match v {
                    Value::Bool(true) => pod_patch::HOST_NAMESPACES.map(String::from).to_vec(),
                    Value::Bool(false) => Vec::new(),
                    _ => {
                        let list = strings(&name, v).map_err(|_| {
                            format!("`{name}` must be true, false or a list of hostNetwork, hostPID, hostIPC")
                        })?;
                        if list
                            .iter()
                            .any(|h| !pod_patch::HOST_NAMESPACES.contains(&h.as_str()))
                        {
                            return Err(format!(
                                "`{name}` must be true, false or a list of hostNetwork, hostPID, hostIPC"
                            ));
                        }
                        list
                    }
                }
            }
            "allowAddedCapabilities" => {
                r.added_capabilities = match v {
                    Value::Bool(true) => vec![Glob::new("*")],
                    Value::Bool(false) => Vec::new(),
                    _ => globs(&name, v).map_err(|_| {
                        format!("`{name}` must be true, false or a list of capability names")
                    })?,
                }
            }
            "allowVolumeTypes" => r.volume_types = strings(&name, v)?,
            "allowPrivileged" => r.privileged = flag()?,
            "allowHostPath" => r.host_path = flag()?,
            "allowPrivilegeEscalation" => r.privilege_escalation = flag()?,
            "allowSecurityContext" => r.security_context = flag()?,
            "allowNodeName" => r.node_name = flag()?,
            "allowServiceAccount" => r.service_account = flag()?,
            "allowInitContainers" => r.init_containers = flag()?,
            "allowSecretReferences" => r.secret_references = flag()?,
            other => {
                return Err(unknown(
                    &format!("podSpecPatch.{}", setting_name(other)),
                    "allowedKeys, allowHostNamespaces, allowPrivileged, allowHostPath, allowAddedCapabilities, \
                     allowPrivilegeEscalation, allowSecurityContext, allowNodeName, allowServiceAccount, \
                     allowInitContainers, allowSecretReferences, allowVolumeTypes",
                ));
            }
        }
    }
    Ok(r)
}

fn strings(name: &str, v: &Value) -> Result<Vec<String>, String> {
    let err = || format!("`{name}` must be a list of strings");
    v.as_array()
        .ok_or_else(err)?
        .iter()
        .map(|s| s.as_str().map(str::to_owned).ok_or_else(err))
        .collect()
}

fn globs(name: &str, v: &Value) -> Result<Vec<Glob>, String> {
    Ok(strings(name, v)?.iter().map(|s| Glob::new(s)).collect())
}

fn unknown(name: &str, known: &str) -> String {
    format!("`{name}` is not a policy setting (known: {known})")
}

/// A key of the policy, safe to print: the operator's own setting name, or a placeholder for anything else.
fn setting_name(key: &str) -> String {
    // Setting names are camelCase words; anything else could be a value pasted in the wrong place.
    if !key.is_empty() && key.len() <= 40 && key.chars().all(|c| c.is_ascii_alphabetic()) {
        key.to_owned()
    } else {
        "(a key that is not a setting name)".to_owned()
    }
}
