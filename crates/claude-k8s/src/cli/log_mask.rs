//! What `claude-k8s logs` masks: every secret value the run's pod was given, so that a transcript printed on an
//! operator's terminal carries none of them, just as the run's log in Paperclip carries none.
//!
//! The run pod's spec says where its secrets come from: the Secrets it names (env `secretKeyRef`, `envFrom`,
//! Secret and projected volumes; among them the run Secret, with the run token, the MCP config and the agent
//! config's secret env) and literal env whose names say secret. A Secret the credentials may read gives all its
//! values. One they may not read (the adapter's own account reads no Secret) is resolved the way `serve` resolves
//! the Paperclip pod's inherited secrets ([`secrets::of_run`]): by name in this process's own environment and at
//! the mount path in its own filesystem, which hold the same values when the command runs in the Paperclip pod.
//! What neither gives is named in a warning before the first line, never printed silently.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret, Volume};
use kube::Api;

use crate::k8s::{errors, labels};
use crate::run::plan::{CLAUDE_CONTAINER, PROMPT_KEYS};
use crate::run::prepare::pod_facts::PodFacts;
use crate::run::prepare::secrets;
use crate::serve::mask::Masker;
use crate::serve::protocol::ExecuteParams;

/// The values to mask, and what of the pod's secrets stays unmasked (by Secret name: what the pod takes from it).
#[derive(Debug, Default, PartialEq)]
pub struct LogSecrets {
    pub values: Vec<String>,
    pub unmasked: BTreeMap<String, Vec<String>>,
}

/// Every Secret the pod names, in any container, init container or volume.
pub fn referenced_secrets(pod: &Pod) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return names;
    };
    for c in containers(spec) {
        for e in c.env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                names.insert(r.name.clone());
            }
        }
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.secret_ref {
                names.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        names.extend(volume_secrets(v));
    }
    names
}

/// The secret values of the run pod: all of each readable Secret it names, and for the claude container's secrets
/// in Secrets not readable (`readable` lacks them), what this process's own environment (`own_env`) and files
/// hold under the same names and mount paths. Pure but for reading those files.
pub fn collect(
    pod: &Pod,
    readable: &BTreeMap<String, Secret>,
    own_env: &[(String, String)],
) -> LogSecrets {
    let mut out = LogSecrets::default();
    for secret in readable.values() {
        out.values.extend(secret_values(secret));
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let Some(claude) = spec.containers.iter().find(|c| c.name == CLAUDE_CONTAINER) else {
        return out;
    };
    let unreadable = |name: &str| !readable.contains_key(name);
    let mut unmasked = |secret: &str, what: String| {
        out.unmasked
            .entry(secret.to_owned())
            .or_default()
            .push(what)
    };
    // What the own environment and files must resolve: the claude container's literal env (secret-named ones are
    // masked), and its uses of the Secrets that could not be read.
    let mut facts = PodFacts::default();
    for e in claude.env.iter().flatten() {
        match e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            Some(r) if unreadable(&r.name) => {
                if !own_env.iter().any(|(k, v)| *k == e.name && !v.is_empty()) {
                    unmasked(&r.name, format!("env {} (key {})", e.name, r.key));
                }
                facts.env.push(e.clone());
            }
            Some(_) => {}
            None => facts.env.push(e.clone()),
        }
    }
    for from in claude.env_from.iter().flatten() {
        if let Some(r) = from.secret_ref.as_ref().filter(|r| unreadable(&r.name)) {
            let prefix = from.prefix.as_deref().unwrap_or_default();
            unmasked(
                &r.name,
                format!("env from it (prefix `{prefix}`) not in this process's environment"),
            );
            facts.env_from.push(from.clone());
        }
    }
    for mount in claude.volume_mounts.iter().flatten() {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            continue;
        };
        for name in volume_secrets(volume).filter(|n| unreadable(n)) {
            if !Path::new(&mount.mount_path).is_dir() {
                unmasked(&name, format!("its files at {}", mount.mount_path));
            }
            facts.secret_volumes.push((volume.clone(), mount.clone()));
        }
    }
    // An envFrom Secret's keys are unknown here: `of_run` masks every variable of this process that the spec does
    // not explain. Noted above as possibly unmasked, since the operator's shell need not hold them.
    out.values
        .extend(secrets::of_run(&ExecuteParams::default(), &facts, own_env));
    out
}

/// Reads every Secret the pod names at once (with the credentials the command was given) and builds the masker; warns on
/// stderr, naming each Secret and what the pod takes from it, for the values it cannot know.
pub async fn for_pod(secrets_api: &Api<Secret>, pod: &Pod) -> Masker {
    let names = referenced_secrets(pod);
    let answers = futures::future::join_all(names.iter().map(|name| secrets_api.get(name))).await;
    let mut readable = BTreeMap::new();
    let mut why = BTreeMap::new();
    for (name, answer) in names.into_iter().zip(answers) {
        match answer {
            Ok(secret) => {
                readable.insert(name, secret);
            }
            Err(e) => {
                why.insert(name, errors::server_words(&e));
            }
        }
    }
    let found = collect(pod, &readable, &secrets::own_env());
    for (secret, uses) in &found.unmasked {
        let reason = why.get(secret).map_or("", String::as_str);
        eprintln!(
            "claude-k8s logs: warning: cannot read Secret {secret} ({reason}), so these may print unmasked: {}. \
             Credentials that may get Secrets in this namespace mask them (the adapter's own account may not); \
             run in the Paperclip pod, the command masks what that pod inherits.",
            uses.join("; ")
        );
    }
    Masker::new(found.values)
}

fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

/// The Secrets a volume shows: a Secret volume's, and those among a projected volume's sources.
fn volume_secrets(volume: &Volume) -> impl Iterator<Item = String> + '_ {
    let direct = volume.secret.as_ref().and_then(|s| s.secret_name.clone());
    let projected = volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| Some(s.secret.as_ref()?.name.clone()));
    direct.into_iter().chain(projected)
}

/// Every value of a Secret, as [`secrets::secret_text_values`] reads one. Left out: keys that are not text, and
/// a run Secret's prompt (no secret, and masking its text and lines would blank the words of the transcript).
fn secret_values(secret: &Secret) -> Vec<String> {
    let run_secret = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::MANAGED_BY))
        .is_some_and(|v| v == labels::MANAGED_BY_VALUE);
    let data = secret
        .data
        .iter()
        .flatten()
        .filter(|(k, _)| !(run_secret && PROMPT_KEYS.contains(&k.as_str())))
        .filter_map(|(_, v)| String::from_utf8(v.0.clone()).ok());
    let string_data = secret.string_data.iter().flatten().map(|(_, v)| v.clone());
    data.chain(string_data)
        .flat_map(|text| secrets::secret_text_values(&text))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A run pod as the plan writes it: the inherited key from a Secret, a config secret and the run token from
    /// the run Secret, a literal secret-named env, an inherited Secret volume, envFrom of a Secret.
    fn run_pod(secret_mount: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "claude-a-r-pod"},
            "spec": {
                "initContainers": [{"name": "setup", "env": [
                    {"name": "INIT_ONLY", "valueFrom": {"secretKeyRef": {"name": "init-secret", "key": "k"}}}
                ]}],
                "containers": [{"name": "claude", "env": [
                    {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "paperclip-secrets", "key": "anthropic-api-key"}}},
                    {"name": "UPSTREAM_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "claude-a-r-run", "key": "env-UPSTREAM_API_TOKEN"}}},
                    {"name": "PAPERCLIP_API_KEY", "valueFrom": {"secretKeyRef": {"name": "claude-a-r-run", "key": "api-key"}}},
                    {"name": "LITERAL_PASSWORD", "value": "literal-password-value"},
                    {"name": "LOG_LEVEL_NAME", "value": "verbose-logging"}
                ],
                "envFrom": [{"prefix": "VAULT_", "secretRef": {"name": "vault"}}],
                "volumeMounts": [{"name": "keys", "mountPath": secret_mount}]}],
                "volumes": [
                    {"name": "keys", "secret": {"secretName": "key-files"}},
                    {"name": "both", "projected": {"sources": [{"secret": {"name": "projected-one"}}]}}
                ]
            }
        }))
        .unwrap()
    }

    fn secret(name: &str, data: &[(&str, &[u8])]) -> (String, Secret) {
        let data: BTreeMap<String, k8s_openapi::ByteString> = data
            .iter()
            .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
            .collect();
        let s = Secret {
            data: Some(data),
            ..Default::default()
        };
        (name.to_owned(), s)
    }

    #[test]
    fn a_run_secrets_prompt_is_not_masked_but_the_same_key_elsewhere_is() {
        let prompt: &[u8] = b"Task: fix the login bug\nRepo: acme/web";
        let (_, mut run) = secret(
            "claude-a-r-run",
            &[("prompt.txt", prompt), ("api-key", b"run-token-0123456789")],
        );
        run.metadata.labels = Some(BTreeMap::from([(
            labels::MANAGED_BY.to_owned(),
            labels::MANAGED_BY_VALUE.to_owned(),
        )]));
        let values = secret_values(&run);
        assert!(values.contains(&"run-token-0123456789".to_owned()));
        assert!(
            !values
                .iter()
                .any(|v| v.contains("login") || v.contains("acme")),
            "{values:?}"
        );
        // A Secret the adapter did not make keeps every value, whatever the key is called.
        let (_, other) = secret("user-secret", &[("prompt.txt", prompt)]);
        assert!(secret_values(&other).contains(&"acme/web".to_owned()));
    }

    #[test]
    fn every_secret_the_pod_names_is_looked_up() {
        let got = referenced_secrets(&run_pod("/etc/keys"));
        let want: BTreeSet<String> = [
            "claude-a-r-run",
            "init-secret",
            "key-files",
            "paperclip-secrets",
            "projected-one",
            "vault",
        ]
        .map(String::from)
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn readable_secrets_give_all_their_text_values_and_nothing_is_left_unmasked() {
        let pod = run_pod("/nonexistent/keys");
        let readable: BTreeMap<String, Secret> = [
            secret(
                "paperclip-secrets",
                &[("anthropic-api-key", b"sk-ant-inherited-value")],
            ),
            secret(
                "claude-a-r-run",
                &[
                    ("env-UPSTREAM_API_TOKEN", b"config-secret-value"),
                    ("api-key", b"run-token-0123456789"),
                    ("prompt", &[0x1f, 0x8b, 0x08, 0xff, 0xfe]),
                ],
            ),
            secret("vault", &[("DB", b"vault-db-connection")]),
            secret(
                "key-files",
                &[("credentials", b"[x]\nsecret = file-line-secret\n")],
            ),
            secret("init-secret", &[("k", b"init-secret-value")]),
            secret("projected-one", &[("k", b"projected-secret-value")]),
        ]
        .into();
        let got = collect(&pod, &readable, &[]);
        for want in [
            "sk-ant-inherited-value",
            "config-secret-value",
            "run-token-0123456789",
            "vault-db-connection",
            "file-line-secret",
            "init-secret-value",
            "projected-secret-value",
            "literal-password-value",
        ] {
            assert!(got.values.iter().any(|v| v == want), "{want}: {got:?}");
        }
        assert!(
            !got.values.iter().any(|v| v == "verbose-logging"),
            "{got:?}"
        );
        assert!(got.unmasked.is_empty(), "{got:?}");
    }

    #[test]
    fn unreadable_secrets_fall_back_to_the_own_environment_and_files_and_the_rest_is_named() {
        let dir = std::env::temp_dir().join(format!("claude-k8s-log-mask-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "mounted-token-value\n").unwrap();
        let pod = run_pod(dir.to_str().unwrap());
        // As in the Paperclip pod with the adapter's account: no Secret readable, the inherited env and the
        // Secret volume at the same place in this process.
        let own = [
            (
                "ANTHROPIC_API_KEY".to_owned(),
                "sk-ant-inherited-value".to_owned(),
            ),
            ("VAULT_DB".to_owned(), "vault-db-connection".to_owned()),
        ];
        let got = collect(&pod, &BTreeMap::new(), &own);
        for want in [
            "sk-ant-inherited-value",
            "vault-db-connection",
            "mounted-token-value",
            "literal-password-value",
        ] {
            assert!(got.values.iter().any(|v| v == want), "{want}: {got:?}");
        }
        let run_secret = &got.unmasked["claude-a-r-run"];
        assert_eq!(
            run_secret,
            &[
                "env UPSTREAM_API_TOKEN (key env-UPSTREAM_API_TOKEN)",
                "env PAPERCLIP_API_KEY (key api-key)"
            ]
        );
        assert!(got.unmasked.contains_key("vault"), "{got:?}");
        assert!(
            !got.unmasked.contains_key("paperclip-secrets"),
            "resolved by name: {got:?}"
        );
        assert!(
            !got.unmasked.contains_key("key-files"),
            "read where it is mounted: {got:?}"
        );
        // Not the claude container's: claude never had them.
        assert!(!got.unmasked.contains_key("init-secret"), "{got:?}");
        std::fs::remove_dir_all(dir).unwrap();

        // Off the pod (an operator's machine): the Secret volume is not here either.
        let got = collect(&run_pod("/nonexistent/keys"), &BTreeMap::new(), &[]);
        assert_eq!(
            got.unmasked["key-files"],
            ["its files at /nonexistent/keys"]
        );
        assert_eq!(
            got.unmasked["paperclip-secrets"],
            ["env ANTHROPIC_API_KEY (key anthropic-api-key)"]
        );
    }

    #[test]
    fn a_pod_without_a_claude_container_still_masks_what_its_secrets_hold() {
        let mut pod = run_pod("/x");
        pod.spec.as_mut().unwrap().containers[0].name = "other".into();
        let readable: BTreeMap<String, Secret> =
            [secret("vault", &[("DB", b"vault-db-connection")])].into();
        let got = collect(&pod, &readable, &[]);
        assert!(got.values.iter().any(|v| v == "vault-db-connection"));
        assert!(got.unmasked.is_empty());
    }
}
