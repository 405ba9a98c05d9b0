//! How Claude is invoked for one run: resume decision, arguments, working directory and env. Pure.
//!
//! Mirrors claude_local's CLI lane (`buildClaudeArgs`, `buildClaudeRuntimeConfig`) so an agent behaves the same
//! in a Job as on the server; the differences are the ones a pod forces, each commented.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::pod_facts::PodFacts;
use crate::run::prepare::secrets::is_secret_name;
use crate::run::prepare::toolkit::Toolkit;
use crate::run::prepare::view::View;
use crate::serve::protocol::ExecuteParams;

#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The session `--resume` continues, if any.
    pub resume_session_id: Option<String>,
    pub prompt: String,
    pub prompt_metrics: serde_json::Map<String, Value>,
    /// Arguments after `claude`.
    pub args: Vec<String>,
    /// The container's working directory: the Paperclip workspace, the same absolute path on the shared volume.
    pub cwd: String,
    /// Env for the claude container, in override order (later entries win). Never holds the run token.
    pub env: Vec<(String, String)>,
    /// The names in [`Self::env`] whose values are secret (from `adapterConfig.env`, by name or because Paperclip
    /// bound them as secrets): they travel in the run Secret (`secretKeyRef`), never as literal values in the Job
    /// spec or the invocation meta.
    pub secret_env: BTreeSet<String>,
    /// Whether the inherited or configured env selects Bedrock.
    pub bedrock: bool,
    /// Facts worth telling the user before the run starts (`[claude-k8s]` lines).
    pub notes: Vec<String>,
}

/// Env names claude_local never takes from `adapterConfig.env`.
const FORBIDDEN_CONFIG_ENV: [&str; 1] = ["PAPERCLIP_API_KEY"];

impl Invocation {
    /// Plans the invocation; `resume_session_id` is the gated session (see [`resumable_session`]), or `None` for
    /// a fresh session (also used for the retry after an unknown session).
    pub fn build(
        params: &ExecuteParams,
        config: &AgentConfig,
        facts: &PodFacts,
        resume_session_id: Option<String>,
    ) -> Self {
        Self::build_with(
            params,
            config,
            facts,
            resume_session_id,
            &Toolkit::without_bundle(params),
            &View::whole_volume(),
        )
    }

    /// [`Self::build`] with the run's prompt bundle and MCP servers (claude_local's `--append-system-prompt-file`
    /// from the bundle, `--mcp-config … --strict-mcp-config`, `--add-dir`).
    pub fn build_with(
        params: &ExecuteParams,
        config: &AgentConfig,
        facts: &PodFacts,
        resume_session_id: Option<String>,
        caps: &Toolkit,
        view: &View,
    ) -> Self {
        let mut notes = Vec::new();
        let (prompt, prompt_metrics) = match (&resume_session_id, &params.prompt.resume) {
            (Some(_), Some(resume)) => (resume.clone(), params.prompt.resume_metrics.clone()),
            _ => (
                params.prompt.fresh.clone(),
                params.prompt.fresh_metrics.clone(),
            ),
        };
        let env_lookup = |name: &str| -> Option<String> {
            config
                .env
                .get(name)
                .cloned()
                .or_else(|| facts.literal_env(name).map(str::to_owned))
                .filter(|v| !v.trim().is_empty())
                // Set in the Deployment through a Secret or ConfigMap: the value is not known here, but an
                // operator names these variables only to turn Bedrock on.
                .or_else(|| {
                    facts
                        .env
                        .iter()
                        .any(|e| e.name == name && e.value_from.is_some())
                        .then(|| "1".to_owned())
                })
        };
        let bedrock = is_bedrock(&env_lookup);

        let mut args: Vec<String> = ["--print", "--output-format", "stream-json", "--verbose"]
            .map(String::from)
            .to_vec();
        if let Some(id) = &resume_session_id {
            args.extend(["--resume".into(), id.clone()]);
        }
        if config.dangerously_skip_permissions {
            // The pod runs as UID 1000, where Claude Code accepts this flag (it refuses it as root).
            args.push("--dangerously-skip-permissions".into());
        }
        if let Some(model) = &config.model {
            if !bedrock || is_bedrock_model_id(model) {
                args.extend(["--model".into(), model.clone()]);
            } else {
                notes.push(format!(
                    "model `{model}` is not a Bedrock model id or ARN; Bedrock's default model is used"
                ));
            }
        }
        if let Some(effort) = &config.effort {
            args.extend(["--effort".into(), effort.clone()]);
        }
        if config.max_turns_per_run > 0 {
            args.extend(["--max-turns".into(), config.max_turns_per_run.to_string()]);
        }
        // Instructions go into a fresh session only: a resumed one has them in its history already.
        let instructions = match &caps.bundle {
            Some(bundle) => bundle.instructions_file.as_ref(),
            None => config.instructions_file_path.as_ref(),
        };
        if let (Some(path), None) = (instructions, &resume_session_id) {
            args.extend(["--append-system-prompt-file".into(), path.clone()]);
        }
        if !caps.mcp.is_empty() {
            // Only Paperclip's servers: none from the shared HOME's settings (claude_local does the same).
            args.extend([
                "--mcp-config".into(),
                super::mcp_config_path(),
                "--strict-mcp-config".into(),
            ]);
        }
        if let Some(bundle) = &caps.bundle {
            args.extend(["--add-dir".into(), bundle.root.clone()]);
        }
        args.extend(config.extra_args.iter().cloned());

        let cwd = working_directory(params, config, view.fallback_cwd());
        let (env, api_url_note) = run_env(params, config, facts, &view.home);
        let secret_env = secret_env(params, config, &env);
        notes.extend(api_url_note);
        Self {
            resume_session_id,
            prompt,
            prompt_metrics,
            args,
            cwd,
            env,
            secret_env,
            bedrock,
            notes,
        }
    }

    /// The last value of `name` in the literal env (later entries win).
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The session a run may resume: `sessionParams.sessionId`, else the bare `runtime.sessionId` that Paperclip keeps
/// for agent-level heartbeats, when it is a UUID and was saved for the same working directory, prompt bundle and
/// MCP servers (claude_local's rules: a saved bundle key must equal the current one; a saved MCP identity must
/// equal the current one, and without a saved identity there must be no MCP servers).
///
/// A bare id carries nothing to compare; it is resumed anyway (unlike claude_local, which then refuses whenever
/// Paperclip offers MCP servers, i.e. never resumes agent-level heartbeats): an agent-level run always works in
/// the agent's home, and a session Claude cannot find is retried fresh in the same run (`clearSession`).
pub fn resumable_session(
    params: &ExecuteParams,
    config: &AgentConfig,
    caps: &Toolkit,
    view: &View,
) -> Result<Option<String>, String> {
    // claude_local's session codec: the first of a field's spellings that is a non-blank string, trimmed; saved
    // params without a session id are not a Claude session's (the codec drops them).
    let field = |saved: &serde_json::Map<String, Value>, spellings: &[&str]| {
        spellings
            .iter()
            .find_map(|k| non_blank(saved.get(*k)?.as_str()?))
    };
    let saved = params
        .runtime
        .session_params
        .as_ref()
        .filter(|p| field(p, &["sessionId", "session_id"]).is_some());
    let saved_text = |spellings: &[&str]| field(saved?, spellings);
    let id = saved_text(&["sessionId", "session_id"])
        .or_else(|| non_blank(params.runtime.session_id.as_deref()?))
        .unwrap_or_default();
    if id.is_empty() {
        return Ok(None);
    }
    if !is_uuid(&id) {
        return Err(format!(
            "saved session `{id}` is not a Claude session id; starting a fresh session"
        ));
    }
    let saved_cwd = saved_text(&["cwd", "workdir", "folder"]);
    let cwd = working_directory(params, config, view.fallback_cwd());
    if let Some(saved_cwd) = saved_cwd
        && saved_cwd.trim_end_matches('/') != cwd.trim_end_matches('/')
    {
        return Err(format!(
            "session `{id}` was saved for {saved_cwd}, this run works in {cwd}; starting a fresh session"
        ));
    }
    if saved.is_none() {
        return Ok(Some(id));
    }
    let saved_key = saved_text(&["promptBundleKey", "prompt_bundle_key"]).unwrap_or_default();
    if let Some(bundle) = &caps.bundle
        && !saved_key.is_empty()
        && saved_key != bundle.key
    {
        return Err(format!(
            "session `{id}` was saved for prompt bundle {saved_key} and will not be resumed with {} (the \
             instructions or skills changed); starting a fresh session",
            bundle.key
        ));
    }
    let saved_mcp = saved_text(&["mcpServerIdentity"]).unwrap_or_default();
    let mcp_matches = if saved_mcp.is_empty() {
        caps.mcp.is_empty()
    } else {
        saved_mcp == caps.mcp_identity
    };
    if !mcp_matches {
        return Err(format!(
            "session `{id}` was saved with a different runtime MCP server set and will not be resumed; starting \
             a fresh session"
        ));
    }
    Ok(Some(id))
}

/// `text` trimmed, unless that leaves nothing.
fn non_blank(text: &str) -> Option<String> {
    Some(text.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// claude_local's rule: the workspace Paperclip prepared, except that an explicit `cwd` beats the agent home;
/// `fallback` when there is neither ([`View::fallback_cwd`]).
pub fn working_directory(params: &ExecuteParams, config: &AgentConfig, fallback: &str) -> String {
    let workspace = params
        .context
        .get("paperclipWorkspace")
        .and_then(Value::as_object);
    let field = |k: &str| {
        workspace
            .and_then(|w| w.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
    };
    let configured = config.cwd.clone().unwrap_or_default();
    let use_configured = field("source") == "agent_home" && !configured.is_empty();
    let workspace_cwd = if use_configured { "" } else { field("cwd") };
    [workspace_cwd, configured.as_str(), fallback]
        .into_iter()
        .find(|c| !c.is_empty())
        .unwrap_or(fallback)
        .to_owned()
}

/// The env layered as claude_local layers it: inherited (the pod facts, applied by the plan first) <
/// Paperclip's run variables < `adapterConfig.env`; runtime `PAPERCLIP_*` keys win over config, and
/// `PAPERCLIP_API_KEY` never comes from config. `HOME` is the agent's own Claude home (its `~/.claude` session
/// store), or the volume root in the seed's layout.
fn run_env(
    params: &ExecuteParams,
    config: &AgentConfig,
    facts: &PodFacts,
    home: &str,
) -> (Vec<(String, String)>, Option<String>) {
    let mut env: BTreeMap<String, String> = params
        .paperclip_env
        .iter()
        .filter(|(k, _)| !FORBIDDEN_CONFIG_ENV.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (api_url, note) = pod_api_url(params, config, facts);
    match api_url {
        Some(url) => {
            env.insert("PAPERCLIP_API_URL".into(), url);
        }
        None => {
            env.remove("PAPERCLIP_API_URL");
        }
    }
    let runtime_keys: Vec<String> = env.keys().cloned().collect();
    let mut ordered: Vec<(String, String)> = env.into_iter().collect();
    for (k, v) in &config.env {
        let runtime_wins =
            k.starts_with("PAPERCLIP_") && runtime_keys.contains(k) && k != "PAPERCLIP_API_URL";
        if FORBIDDEN_CONFIG_ENV.contains(&k.as_str()) || runtime_wins {
            continue;
        }
        ordered.push((k.clone(), v.clone()));
    }
    ordered.push(("HOME".into(), home.into()));
    (ordered, note)
}

/// Which names of the run's env carry a secret from the agent config: named like one, or bound by Paperclip as a
/// secret (a binding whose type is not `plain`, when the config still shows it).
fn secret_env(
    params: &ExecuteParams,
    config: &AgentConfig,
    env: &[(String, String)],
) -> BTreeSet<String> {
    let bindings = params.config.get("env").and_then(Value::as_object);
    let bound_secret = |name: &str| {
        bindings
            .and_then(|b| b.get(name))
            .and_then(|b| b.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "plain")
    };
    env.iter()
        .map(|(k, _)| k)
        .filter(|k| config.env.contains_key(*k) && (is_secret_name(k) || bound_secret(k)))
        .cloned()
        .collect()
}

/// `PAPERCLIP_API_URL` for the pod: the configured value, else what the Paperclip pod itself has, else the server
/// process's value unless it is loopback. Never a silent 127.0.0.1: the server's own default is unreachable from
/// a normal pod. (An explicitly configured loopback URL is honoured: it works for host-network pods.)
fn pod_api_url(
    params: &ExecuteParams,
    config: &AgentConfig,
    facts: &PodFacts,
) -> (Option<String>, Option<String>) {
    let configured = config
        .paperclip_api_url
        .clone()
        .or_else(|| config.env.get("PAPERCLIP_API_URL").cloned())
        .or_else(|| facts.literal_env("PAPERCLIP_API_URL").map(str::to_owned))
        .or_else(|| {
            facts
                .literal_env("PAPERCLIP_RUNTIME_API_URL")
                .map(str::to_owned)
        })
        .filter(|u| !u.trim().is_empty());
    if configured.is_some() {
        return (configured, None);
    }
    if facts.env.iter().any(|e| e.name == "PAPERCLIP_API_URL") {
        // Inherited through a secretKeyRef/configMapKeyRef: the plan copies it as is.
        return (None, None);
    }
    let server = params
        .server_env
        .get("PAPERCLIP_API_URL")
        .or_else(|| params.paperclip_env.get("PAPERCLIP_API_URL"))
        .filter(|u| !is_loopback_url(u))
        .cloned();
    let note = server.is_none().then(|| {
        "PAPERCLIP_API_URL is not set for the pod: set adapterConfig.paperclipApiUrl (or PAPERCLIP_API_URL in the \
         Paperclip Deployment) to the in-cluster Service URL, e.g. http://paperclip.paperclip.svc:3100; the agent \
         cannot call the Paperclip API without it"
            .to_owned()
    });
    (server, note)
}

/// Whether the URL's host is `localhost` or a loopback address (`127.0.0.0/8`, `[::1]`).
pub fn is_loopback_url(url: &str) -> bool {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        // An IPv6 literal: `[::1]:3100`.
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Claude Code's own rule: `CLAUDE_CODE_USE_BEDROCK` truthy (`1`, `true`, `yes`, `on`, any case), or a Bedrock
/// base URL.
pub fn is_bedrock(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    lookup("CLAUDE_CODE_USE_BEDROCK").is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    }) || lookup("ANTHROPIC_BEDROCK_BASE_URL").is_some()
}

/// claude_local's `isBedrockModelId`: `<region>.anthropic.<model>` or a Bedrock ARN.
pub fn is_bedrock_model_id(model: &str) -> bool {
    model.starts_with("arn:aws:bedrock:")
        || model.split_once('.').is_some_and(|(prefix, rest)| {
            !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && rest.starts_with("anthropic.")
        })
}

pub(crate) fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests;
