//! What a run must mask: every secret value its output could carry ([`crate::serve::mask`] does the masking).
//!
//! Collected in two steps. [`before_config`], from the request and the serve process's own environment alone, is
//! in place before the config is even parsed, so no error of the run can carry one of these values. [`of_run`]
//! adds what only the Paperclip pod's spec tells: which inherited env comes from Secrets (`secretKeyRef`,
//! `envFrom` Secrets) and the files of inherited Secret volumes. The values themselves are read from the serve
//! process's own environment and filesystem: it runs in that very pod, so it holds the same values the Job
//! inherits.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::run::prepare::pod_facts::{PodFacts, SERVER_SECRET_ENV};
use crate::serve::protocol::ExecuteParams;

/// Name words that say a value is secret: `ANTHROPIC_API_KEY`, `GH_TOKEN`, `DB_PASS`, `SENTRY_DSN`, `MASTERKEY`.
const SECRET_WORDS: [&str; 9] = [
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
];
const SECRET_WHOLE_WORDS: [&str; 8] = [
    "AUTH",
    "AUTHORIZATION",
    "JWT",
    "COOKIE",
    "PAT",
    "DSN",
    "PASS",
    "PRIVATE",
];
/// A last word that says the value only describes a secret (its file, its mode, its size): not one itself.
/// `PAPERCLIP_GITHUB_AUTH_MODE`, `AWS_WEB_IDENTITY_TOKEN_FILE`, `CLAUDE_CODE_MAX_OUTPUT_TOKENS`.
const DESCRIBING_WORDS: [&str; 20] = [
    "FILE", "PATH", "DIR", "MODE", "TYPE", "NAME", "URL", "HOST", "PORT", "ENABLED", "DISABLED",
    "TTL", "COUNT", "LIMIT", "SIZE", "TIMEOUT", "VERSION", "REGION", "TOKENS", "HEADER",
];

/// Whether an env name says its value is secret (word by word, so `TOKENS` of a model limit is not).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if SERVER_SECRET_ENV.contains(&upper.as_str()) {
        return true;
    }
    let words: Vec<&str> = upper
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    if words.last().is_some_and(|w| DESCRIBING_WORDS.contains(w)) {
        return false;
    }
    words
        .iter()
        .any(|w| SECRET_WHOLE_WORDS.contains(w) || SECRET_WORDS.iter().any(|s| w.ends_with(s)))
}

/// Variables every process has that say nothing secret, left out when guessing which of the serve process's
/// variables an `envFrom` Secret without a prefix brought.
const PROCESS_ENV: [&str; 16] = [
    "PATH",
    "HOME",
    "HOSTNAME",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "TERM",
    "LANG",
    "LANGUAGE",
    "TZ",
    "USER",
    "SHELL",
    "LOGNAME",
    "_",
    "NODE_VERSION",
    "YARN_VERSION",
];

/// The values known before the config is parsed: the run token, the MCP servers' tokens, agent-config env values
/// that Paperclip binds as secrets or whose names say secret, and the serve process's own env values whose names
/// say secret.
pub fn before_config(params: &ExecuteParams, own_env: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = params.auth_token.iter().cloned().collect();
    out.extend(
        crate::run::prepare::mcp::servers(&params.runtime_mcp_servers)
            .into_iter()
            .map(|s| s.token)
            .filter(|t| !t.is_empty()),
    );
    if let Some(env) = params.config.get("env").and_then(Value::as_object) {
        for (name, binding) in env {
            let (value, bound_secret) = match binding {
                Value::String(s) => (Some(s.as_str()), false),
                // A Paperclip binding: anything but `plain` is a secret whatever its name.
                Value::Object(o) => (
                    o.get("value").and_then(Value::as_str),
                    o.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t != "plain"),
                ),
                _ => (None, false),
            };
            if let Some(v) = value
                && (bound_secret || is_secret_name(name))
            {
                out.push(v.to_owned());
            }
        }
    }
    out.extend(
        own_env
            .iter()
            .filter(|(k, _)| is_secret_name(k))
            .map(|(_, v)| v.clone()),
    );
    out
}

/// Everything the run must mask: [`before_config`], plus the inherited env that comes from Secrets (resolved in
/// the serve process's own environment), plain inherited values whose names say secret, and the files of the
/// inherited Secret volumes (read where the serve process mounts them).
pub fn of_run(
    params: &ExecuteParams,
    facts: &PodFacts,
    own_env: &[(String, String)],
) -> Vec<String> {
    let mut out = before_config(params, own_env);
    let own = |name: &str| {
        own_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    for e in &facts.env {
        let from_secret = e
            .value_from
            .as_ref()
            .is_some_and(|v| v.secret_key_ref.is_some());
        if from_secret {
            out.extend(own(&e.name));
        } else if is_secret_name(&e.name) {
            out.extend(e.value.clone());
        }
    }
    let explained: BTreeSet<&str> = facts.env.iter().map(|e| e.name.as_str()).collect();
    for from in facts.env_from.iter().filter(|f| f.secret_ref.is_some()) {
        match from.prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(prefix) => out.extend(
                own_env
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone()),
            ),
            // Which keys the Secret holds is unknown (the adapter may not read Secrets): every variable of the
            // process that its pod spec does not explain may be one of them.
            None => out.extend(
                own_env
                    .iter()
                    .filter(|(k, _)| !explained.contains(k.as_str()) && !is_process_env(k))
                    .map(|(_, v)| v.clone()),
            ),
        }
    }
    for (_, mount) in &facts.secret_volumes {
        out.extend(secret_volume_values(Path::new(&mount.mount_path)));
    }
    out
}

fn is_process_env(name: &str) -> bool {
    PROCESS_ENV.contains(&name)
        || name.starts_with("KUBERNETES_")
        || name.starts_with("CLAUDE_K8S_")
        || name.starts_with("npm_")
        // Kubernetes' service links: FOO_SERVICE_HOST, FOO_PORT_80_TCP_ADDR and the like.
        || name.contains("_SERVICE_")
        || name.ends_with("_PORT")
        || name.contains("_PORT_")
}

/// The largest Secret file whose content is masked (a key or a token, not a bundle of certificates).
const MAX_SECRET_FILE: u64 = 64 * 1024;
/// Files looked at per Secret volume.
const MAX_SECRET_FILES: usize = 64;

/// The values a Secret volume holds: each file's trimmed content, and for multi-line files (an AWS credentials
/// file, a `.env`) each line's value too. Read without following links out of the mount.
fn secret_volume_values(mount: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(mount) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten().take(MAX_SECRET_FILES) {
        let name = entry.file_name();
        // Kubernetes' own bookkeeping (`..data`, `..2024_01_01…`): the keys are the links beside them.
        if name.to_string_lossy().starts_with("..") {
            continue;
        }
        let Ok((bytes, _)) = crate::confined::read_within(&entry.path(), mount, MAX_SECRET_FILE)
        else {
            continue;
        };
        if let Ok(text) = String::from_utf8(bytes) {
            out.extend(secret_text_values(&text));
        }
    }
    out
}

/// The values one secret text (a Secret's key, a file of a Secret volume) holds: the trimmed text, for a multi-line
/// text (an AWS credentials file, a `.env`) each line's value, and for a JSON document (a cloud credentials file,
/// an MCP config) each string under a key whose name says secret, without an `Authorization` scheme word.
pub fn secret_text_values(text: &str) -> Vec<String> {
    let mut out = vec![text.trim().to_owned()];
    if text.trim().contains('\n') {
        for line in text.lines() {
            let value = line.split_once(['=', ':']).map_or(line, |(_, v)| v);
            out.push(value.trim().trim_matches(['"', '\'']).to_owned());
        }
    }
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        secret_json_strings(&json, false, &mut out);
    }
    out
}

fn secret_json_strings(value: &Value, under_secret_key: bool, out: &mut Vec<String>) {
    match value {
        Value::String(s) if under_secret_key => {
            let bare = ["Bearer ", "Basic ", "Token "]
                .iter()
                .find_map(|scheme| s.strip_prefix(scheme));
            out.push(bare.unwrap_or(s).trim().to_owned());
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| secret_json_strings(v, under_secret_key, out)),
        Value::Object(fields) => fields
            .iter()
            .for_each(|(k, v)| secret_json_strings(v, under_secret_key || is_secret_name(k), out)),
        _ => {}
    }
}

/// The serve process's own environment (UTF-8 variables only).
pub fn own_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, SecretEnvSource, Volume, VolumeMount};
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secret_names_are_judged_word_by_word() {
        for secret in [
            "ANTHROPIC_API_KEY",
            "MY_SERVICE_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "PAPERCLIP_AGENT_JWT_SECRET",
            "DATABASE_URL",
            "GITHUBTOKEN",
            "db_password",
            "SENTRY_DSN",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "BASIC_AUTH",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        for plain in [
            "PAPERCLIP_GITHUB_AUTH_MODE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "CLAUDE_CODE_MAX_OUTPUT_TOKENS",
            "PAPERCLIP_API_URL",
            "KEYBOARD",
            "PWD",
            "AWS_REGION",
            "PAPERCLIP_RUN_ID",
        ] {
            assert!(!is_secret_name(plain), "{plain}");
        }
    }

    #[test]
    fn a_secret_text_gives_its_whole_value_its_lines_and_its_json_secrets() {
        let got = secret_text_values("  sk-ant-whole-value\n");
        assert_eq!(got, ["sk-ant-whole-value"]);
        let got = secret_text_values("[default]\naws_secret_access_key = aws-line-secret\n");
        assert!(got.iter().any(|v| v == "aws-line-secret"), "{got:?}");
        let mcp = r#"{"mcpServers": {"paperclip": {"type": "http", "url": "http://127.0.0.1:3100/mcp",
            "headers": {"Authorization": "Bearer mcp-run-token-value"}}}}"#;
        let got = secret_text_values(mcp);
        assert!(got.iter().any(|v| v == "mcp-run-token-value"), "{got:?}");
        assert!(
            !got.iter()
                .any(|v| v.contains("127.0.0.1:3100/mcp") && !v.contains('{')),
            "the URL is no secret: {got:?}"
        );
        let gcp = r#"{"type": "service_account", "private_key": "-----BEGIN KEY-----abc", "client_email": "x@y"}"#;
        let got = secret_text_values(gcp);
        assert!(got.iter().any(|v| v == "-----BEGIN KEY-----abc"), "{got:?}");
        assert!(!got.iter().any(|v| v == "service_account"), "{got:?}");
    }

    #[test]
    fn the_request_and_the_own_environment_before_the_config() {
        let params: ExecuteParams = serde_json::from_value(json!({
            "runId": "r", "agent": {"id": "a"},
            "authToken": "run-token-0123456789",
            "runtimeMcpServers": [{"name": "paperclip", "url": "http://x", "token": "mcp-token-0123456789"}],
            "config": {"env": {
                "MY_TOKEN": "config-token-value",
                "PLAIN": "plain-but-long-value",
                "BOUND": {"type": "secret_ref", "value": "bound-secret-value"},
                "BOUND_PLAIN": {"type": "plain", "value": "bound-plain-value"}
            }}
        }))
        .unwrap();
        let got = before_config(
            &params,
            &env(&[
                ("OPENAI_API_KEY", "own-key-value"),
                ("PAPERCLIP_GITHUB_AUTH_MODE", "github_app_installation"),
            ]),
        );
        for want in [
            "run-token-0123456789",
            "mcp-token-0123456789",
            "config-token-value",
            "bound-secret-value",
            "own-key-value",
        ] {
            assert!(got.iter().any(|v| v == want), "{want}: {got:?}");
        }
        for not in [
            "plain-but-long-value",
            "bound-plain-value",
            "github_app_installation",
        ] {
            assert!(!got.iter().any(|v| v == not), "{not}: {got:?}");
        }
    }

    #[test]
    fn inherited_secrets_are_resolved_in_the_own_environment_and_secret_volumes() {
        let dir =
            std::env::temp_dir().join(format!("claude-k8s-secret-vol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..2026_01_01")).unwrap();
        std::fs::write(dir.join("..2026_01_01/api-key"), "volume-api-key-value\n").unwrap();
        std::os::unix::fs::symlink("..2026_01_01/api-key", dir.join("api-key")).unwrap();
        std::fs::write(
            dir.join("credentials"),
            "[default]\naws_access_key_id = AKIAVOLUMEEXAMPLE\naws_secret_access_key = volume-aws-secret-value\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("escape")).unwrap();
        let facts = PodFacts {
            env: vec![
                EnvVar {
                    name: "ANTHROPIC_API_KEY".into(),
                    value_from: Some(
                        serde_json::from_value(json!({"secretKeyRef": {"name": "s", "key": "k"}}))
                            .unwrap(),
                    ),
                    ..Default::default()
                },
                EnvVar {
                    name: "UPSTREAM_PASSWORD".into(),
                    value: Some("literal-password-value".into()),
                    ..Default::default()
                },
                EnvVar {
                    name: "LOG_LEVEL_NAME".into(),
                    value: Some("verbose-logging".into()),
                    ..Default::default()
                },
            ],
            env_from: vec![EnvFromSource {
                prefix: Some("VAULT_".into()),
                secret_ref: Some(SecretEnvSource {
                    name: "v".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            secret_volumes: vec![(
                Volume {
                    name: "keys".into(),
                    ..Default::default()
                },
                VolumeMount {
                    name: "keys".into(),
                    mount_path: dir.display().to_string(),
                    ..Default::default()
                },
            )],
            ..Default::default()
        };
        let params = ExecuteParams::default();
        let own = env(&[
            ("ANTHROPIC_API_KEY", "sk-ant-inherited-value"),
            ("VAULT_DB", "vault-db-connection"),
            ("UNRELATED_SETTING", "unrelated-setting-value"),
        ]);
        let got = of_run(&params, &facts, &own);
        for want in [
            "sk-ant-inherited-value",
            "literal-password-value",
            "vault-db-connection",
            "volume-api-key-value",
            "volume-aws-secret-value",
        ] {
            assert!(got.iter().any(|v| v == want), "{want}: {got:?}");
        }
        let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        for not in [
            "verbose-logging",
            "unrelated-setting-value",
            hostname.trim(),
        ] {
            assert!(
                not.is_empty() || !got.iter().any(|v| v == not),
                "{not}: {got:?}"
            );
        }
        // An envFrom Secret without a prefix: every unexplained variable is masked, process variables are not.
        let no_prefix = PodFacts {
            env_from: vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "s".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let own = env(&[
            ("FROM_THE_SECRET", "from-the-secret-value"),
            ("HOSTNAME", "paperclip-7d9f-abcde"),
            ("PAPERCLIP_SERVICE_PORT_HTTP", "3100"),
        ]);
        let got = of_run(&params, &no_prefix, &own);
        assert!(got.iter().any(|v| v == "from-the-secret-value"), "{got:?}");
        assert!(!got.iter().any(|v| v == "paperclip-7d9f-abcde"), "{got:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
