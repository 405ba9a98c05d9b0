//! How Claude is invoked for one run: resume decision, arguments, working directory and env. Pure.
//!
//! Mirrors claude_local's CLI lane (`buildClaudeArgs`, `buildClaudeRuntimeConfig`) so an agent behaves the same
//! in a Job as on the server; the differences are the ones a pod forces, each commented.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::run::prepare::capabilities::Capabilities;
use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::mcp;
use crate::run::prepare::pod_facts::{DATA_MOUNT_PATH, PodFacts};
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
    /// Literal env for the claude container, in override order (later entries win). Never holds the run token.
    pub env: Vec<(String, String)>,
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
            &Capabilities::without_bundle(params),
        )
    }

    /// [`Self::build`] with the run's prompt bundle and MCP servers (claude_local's `--append-system-prompt-file`
    /// from the bundle, `--mcp-config … --strict-mcp-config`, `--add-dir`).
    pub fn build_with(
        params: &ExecuteParams,
        config: &AgentConfig,
        facts: &PodFacts,
        resume_session_id: Option<String>,
        caps: &Capabilities,
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
                mcp::config_path(),
                "--strict-mcp-config".into(),
            ]);
        }
        if let Some(bundle) = &caps.bundle {
            args.extend(["--add-dir".into(), bundle.root.clone()]);
        }
        args.extend(config.extra_args.iter().cloned());

        let cwd = working_directory(params, config);
        let (env, api_url_note) = run_env(params, config, facts);
        notes.extend(api_url_note);
        Self {
            resume_session_id,
            prompt,
            prompt_metrics,
            args,
            cwd,
            env,
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
    caps: &Capabilities,
) -> Result<Option<String>, String> {
    let saved = params.runtime.session_params.as_ref();
    let id = saved
        .and_then(|p| p.get("sessionId").or_else(|| p.get("session_id")))
        .and_then(Value::as_str)
        .or(params.runtime.session_id.as_deref())
        .unwrap_or_default()
        .trim()
        .to_owned();
    if id.is_empty() {
        return Ok(None);
    }
    if !is_uuid(&id) {
        return Err(format!(
            "saved session `{id}` is not a Claude session id; starting a fresh session"
        ));
    }
    let saved_cwd = saved
        .and_then(|p| {
            p.get("cwd")
                .or_else(|| p.get("workdir"))
                .or_else(|| p.get("folder"))
        })
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    let cwd = working_directory(params, config);
    if let Some(saved_cwd) = saved_cwd
        && saved_cwd.trim_end_matches('/') != cwd.trim_end_matches('/')
    {
        return Err(format!(
            "session `{id}` was saved for {saved_cwd}, this run works in {cwd}; starting a fresh session"
        ));
    }
    let Some(saved) = saved else {
        return Ok(Some(id));
    };
    let saved_str = |k: &str| saved.get(k).and_then(Value::as_str).unwrap_or("").trim();
    let saved_key = saved_str("promptBundleKey");
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
    let saved_mcp = saved_str("mcpServerIdentity");
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

/// claude_local's rule: the workspace Paperclip prepared, except that an explicit `cwd` beats the agent home.
pub fn working_directory(params: &ExecuteParams, config: &AgentConfig) -> String {
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
    [workspace_cwd, configured.as_str(), DATA_MOUNT_PATH]
        .into_iter()
        .find(|c| !c.is_empty())
        .unwrap_or(DATA_MOUNT_PATH)
        .to_owned()
}

/// The env layered as claude_local layers it: inherited (the pod facts, applied by the plan first) <
/// Paperclip's run variables < `adapterConfig.env`; runtime `PAPERCLIP_*` keys win over config, and
/// `PAPERCLIP_API_KEY` never comes from config. `HOME` is the shared volume, so `~/.claude` (the session store) is
/// shared with the server and every other run.
fn run_env(
    params: &ExecuteParams,
    config: &AgentConfig,
    facts: &PodFacts,
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
    ordered.push(("HOME".into(), DATA_MOUNT_PATH.into()));
    (ordered, note)
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

pub fn is_loopback_url(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host == "localhost" || host.starts_with("127.") || host == "[" || url.contains("://[::1]")
}

/// Claude Code's own rule: `CLAUDE_CODE_USE_BEDROCK` truthy (`1`, `true`, `yes`, `on`, any case), or a Bedrock
/// base URL.
fn is_bedrock(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
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

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::prepare::pod_facts::tests::paperclip_pod;
    use serde_json::json;

    const SESSION: &str = "5b1b7e0e-8f2a-4c4e-9a57-0c0d1e2f3a4b";

    fn params(v: Value) -> ExecuteParams {
        serde_json::from_value(v).unwrap()
    }

    fn config(v: Value) -> AgentConfig {
        AgentConfig::parse(v.as_object().unwrap()).unwrap()
    }

    fn base() -> Value {
        json!({"runId": "run-1", "agent": {"id": "agent-1", "companyId": "co-1", "name": "A"},
               "prompt": {"fresh": "FRESH", "resume": "RESUME"},
               "context": {"paperclipWorkspace": {"cwd": "/paperclip/instances/default/workspaces/agent-1", "source": "agent_home"}},
               "paperclipEnv": {"PAPERCLIP_RUN_ID": "run-1", "PAPERCLIP_API_URL": "http://127.0.0.1:3100", "PAPERCLIP_API_KEY": "leak"}})
    }

    #[test]
    fn fresh_run_args_match_claude_local() {
        let p = params(base());
        let c = config(
            json!({"model": "claude-sonnet-4-6", "effort": "high", "maxTurnsPerRun": 7,
                              "extraArgs": ["--foo", "bar"], "instructionsFilePath": "/paperclip/AGENTS.md"}),
        );
        let inv = Invocation::build(&p, &c, &PodFacts::from_pod(&paperclip_pod()), None);
        assert_eq!(
            inv.args.join(" "),
            "--print --output-format stream-json --verbose --dangerously-skip-permissions --model claude-sonnet-4-6 \
             --effort high --max-turns 7 --append-system-prompt-file /paperclip/AGENTS.md --foo bar"
        );
        assert_eq!(inv.prompt, "FRESH");
        assert_eq!(inv.cwd, "/paperclip/instances/default/workspaces/agent-1");
    }

    #[test]
    fn resumed_run_uses_the_resume_prompt_and_no_instructions_file() {
        let p = params(base());
        let c = config(
            json!({"instructionsFilePath": "/paperclip/AGENTS.md", "dangerouslySkipPermissions": false}),
        );
        let inv = Invocation::build(&p, &c, &PodFacts::default(), Some(SESSION.into()));
        assert_eq!(
            inv.args.join(" "),
            format!("--print --output-format stream-json --verbose --resume {SESSION}")
        );
        assert_eq!(inv.prompt, "RESUME");
    }

    #[test]
    fn resume_gating_for_task_and_agent_level_runs() {
        let c = config(json!({}));
        // Agent-level heartbeat: a bare session id.
        let mut v = base();
        v["runtime"] = json!({"sessionId": SESSION});
        assert_eq!(
            resumable_session(&params(v), &c, &Capabilities::default())
                .unwrap()
                .as_deref(),
            Some(SESSION)
        );
        // Task run: full sessionParams with the same cwd.
        let mut v = base();
        v["runtime"] = json!({"sessionParams": {"sessionId": SESSION, "cwd": "/paperclip/instances/default/workspaces/agent-1/"}});
        assert_eq!(
            resumable_session(&params(v), &c, &Capabilities::default())
                .unwrap()
                .as_deref(),
            Some(SESSION)
        );
        // Saved for another directory.
        let mut v = base();
        v["runtime"] = json!({"sessionParams": {"sessionId": SESSION, "cwd": "/elsewhere"}});
        assert!(
            resumable_session(&params(v), &c, &Capabilities::default())
                .unwrap_err()
                .contains("/elsewhere")
        );
        // Not a UUID.
        let mut v = base();
        v["runtime"] = json!({"sessionId": "nope"});
        assert!(resumable_session(&params(v), &c, &Capabilities::default()).is_err());
        assert_eq!(
            resumable_session(&params(base()), &c, &Capabilities::default()).unwrap(),
            None
        );
    }

    fn caps(key: &str, mcp: Value) -> Capabilities {
        let servers = crate::run::prepare::mcp::servers(mcp.as_array().unwrap());
        Capabilities {
            bundle: Some(crate::run::prepare::prompt_bundle::PromptBundle {
                key: key.into(),
                root: format!("/paperclip/cache/{key}"),
                instructions_file: Some(format!("/paperclip/cache/{key}/agent-instructions.md")),
            }),
            mcp_identity: crate::run::prepare::mcp::identity(&servers),
            mcp: servers,
            notes: vec![],
        }
    }

    fn one_server() -> Value {
        json!([{"name": "Paperclip projects", "url": "http://127.0.0.1:3100/api/mcp/project-tools", "token": "t", "connectionId": "c1"}])
    }

    #[test]
    fn bundle_and_mcp_args_follow_claude_locals_order() {
        let p = params(base());
        let c =
            config(json!({"instructionsFilePath": "/paperclip/AGENTS.md", "extraArgs": ["--foo"]}));
        let inv = Invocation::build_with(
            &p,
            &c,
            &PodFacts::default(),
            None,
            &caps("k1", one_server()),
        );
        assert_eq!(
            inv.args.join(" "),
            "--print --output-format stream-json --verbose --dangerously-skip-permissions \
             --append-system-prompt-file /paperclip/cache/k1/agent-instructions.md \
             --mcp-config /var/run/claude-k8s/mcp/mcp-config.json --strict-mcp-config \
             --add-dir /paperclip/cache/k1 --foo"
        );
        // Resumed: no instructions file; the tools and the bundle directory stay.
        let inv = Invocation::build_with(
            &p,
            &c,
            &PodFacts::default(),
            Some(SESSION.into()),
            &caps("k1", json!([])),
        );
        assert_eq!(
            inv.args.join(" "),
            format!(
                "--print --output-format stream-json --verbose --resume {SESSION} --dangerously-skip-permissions \
                 --add-dir /paperclip/cache/k1 --foo"
            )
        );
    }

    #[test]
    fn resume_is_gated_on_the_bundle_key_and_the_mcp_servers() {
        let c = config(json!({}));
        let cwd = "/paperclip/instances/default/workspaces/agent-1";
        let saved = |extra: Value| {
            let mut v = base();
            let mut sp = json!({"sessionId": SESSION, "cwd": cwd});
            for (k, val) in extra.as_object().unwrap() {
                sp[k] = val.clone();
            }
            v["runtime"] = json!({"sessionParams": sp});
            params(v)
        };
        let ident = crate::run::prepare::mcp::identity(&crate::run::prepare::mcp::servers(
            one_server().as_array().unwrap(),
        ));
        let same = saved(json!({"promptBundleKey": "k1", "mcpServerIdentity": ident}));
        assert_eq!(
            resumable_session(&same, &c, &caps("k1", one_server()))
                .unwrap()
                .as_deref(),
            Some(SESSION)
        );
        let why = resumable_session(&same, &c, &caps("k2", one_server())).unwrap_err();
        assert!(
            why.contains("prompt bundle k1") && why.contains("k2"),
            "{why}"
        );
        let why = resumable_session(&same, &c, &caps("k1", json!([]))).unwrap_err();
        assert!(why.contains("MCP server set"), "{why}");
        // Saved without an identity: resumable only while there are no servers (claude_local's rule).
        let old = saved(json!({"promptBundleKey": "k1"}));
        assert!(resumable_session(&old, &c, &caps("k1", json!([]))).is_ok_and(|s| s.is_some()));
        assert!(resumable_session(&old, &c, &caps("k1", one_server())).is_err());
        // Saved without a key (an older run): any bundle.
        let keyless = saved(json!({"mcpServerIdentity": "[]"}));
        assert!(resumable_session(&keyless, &c, &caps("k9", json!([]))).is_ok_and(|s| s.is_some()));
        // A bare id (agent-level heartbeat) has nothing to compare and resumes.
        let mut v = base();
        v["runtime"] = json!({"sessionId": SESSION});
        assert_eq!(
            resumable_session(&params(v), &c, &caps("k1", one_server()))
                .unwrap()
                .as_deref(),
            Some(SESSION)
        );
    }

    #[test]
    fn env_layers_runtime_then_config_and_never_takes_the_token_from_config() {
        let p = params(base());
        let c = config(
            json!({"env": {"FOO": "bar", "PAPERCLIP_RUN_ID": "spoof", "PAPERCLIP_API_KEY": "x"}}),
        );
        let inv = Invocation::build(&p, &c, &PodFacts::from_pod(&paperclip_pod()), None);
        let get = |k: &str| {
            inv.env
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("FOO"), Some("bar"));
        assert_eq!(get("PAPERCLIP_RUN_ID"), Some("run-1"));
        assert_eq!(get("PAPERCLIP_API_KEY"), None);
        assert_eq!(get("HOME"), Some("/paperclip"));
        // The server's loopback URL is replaced by the Paperclip pod's own value.
        assert_eq!(
            get("PAPERCLIP_API_URL"),
            Some("http://paperclip.paperclip.svc:3100")
        );
    }

    #[test]
    fn api_url_is_never_a_silent_loopback() {
        let p = params(base());
        let inv = Invocation::build(&p, &config(json!({})), &PodFacts::default(), None);
        assert!(inv.env.iter().all(|(k, _)| k != "PAPERCLIP_API_URL"));
        assert!(inv.notes.iter().any(|n| n.contains("paperclipApiUrl")));
        // Explicitly configured loopback is honoured (host-network pods).
        let inv = Invocation::build(
            &p,
            &config(json!({"paperclipApiUrl": "http://127.0.0.1:3100"})),
            &PodFacts::default(),
            None,
        );
        assert!(
            inv.env
                .contains(&("PAPERCLIP_API_URL".into(), "http://127.0.0.1:3100".into()))
        );
    }

    #[test]
    fn bedrock_gates_the_model_flag() {
        let p = params(base());
        let c =
            config(json!({"model": "claude-sonnet-4-6", "env": {"CLAUDE_CODE_USE_BEDROCK": "1"}}));
        let inv = Invocation::build(&p, &c, &PodFacts::default(), None);
        assert!(inv.bedrock);
        assert!(!inv.args.contains(&"--model".to_owned()));
        let c = config(
            json!({"model": "us.anthropic.claude-sonnet-4-5-20250929-v2:0", "env": {"CLAUDE_CODE_USE_BEDROCK": "true"}}),
        );
        assert!(
            Invocation::build(&p, &c, &PodFacts::default(), None)
                .args
                .contains(&"--model".to_owned())
        );
        assert!(is_bedrock_model_id(
            "arn:aws:bedrock:us-east-1:1:inference-profile/x"
        ));
        assert!(!is_bedrock_model_id("claude-opus-5"));
    }

    #[test]
    fn bedrock_is_detected_from_the_inherited_env_too() {
        let p = params(base());
        let c = config(json!({"model": "claude-sonnet-4-6"}));
        let with_env = |env: Value| {
            let mut pod = paperclip_pod();
            let container = &mut pod.spec.as_mut().unwrap().containers[1];
            container
                .env
                .as_mut()
                .unwrap()
                .push(serde_json::from_value(env).unwrap());
            PodFacts::from_pod(&pod)
        };
        for env in [
            json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "1"}),
            json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "TRUE"}),
            json!({"name": "CLAUDE_CODE_USE_BEDROCK", "valueFrom": {"configMapKeyRef": {"name": "aws", "key": "bedrock"}}}),
            json!({"name": "ANTHROPIC_BEDROCK_BASE_URL", "value": "https://bedrock-runtime.us-east-1.amazonaws.com"}),
        ] {
            let inv = Invocation::build(&p, &c, &with_env(env.clone()), None);
            assert!(inv.bedrock, "{env}");
            assert!(!inv.args.contains(&"--model".to_owned()), "{env}");
        }
        for env in [
            json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "0"}),
            json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "false"}),
        ] {
            let inv = Invocation::build(&p, &c, &with_env(env.clone()), None);
            assert!(!inv.bedrock, "{env}");
            assert!(inv.args.contains(&"--model".to_owned()), "{env}");
        }
        // Config env wins over the inherited value.
        let c =
            config(json!({"model": "claude-sonnet-4-6", "env": {"CLAUDE_CODE_USE_BEDROCK": "0"}}));
        let facts = with_env(json!({"name": "CLAUDE_CODE_USE_BEDROCK", "value": "1"}));
        assert!(!Invocation::build(&p, &c, &facts, None).bedrock);
    }

    #[test]
    fn explicit_cwd_beats_agent_home_but_not_a_project_workspace() {
        let c = config(json!({"cwd": "/paperclip/custom"}));
        assert_eq!(working_directory(&params(base()), &c), "/paperclip/custom");
        let mut v = base();
        v["context"]["paperclipWorkspace"]["source"] = json!("project_primary");
        assert_eq!(
            working_directory(&params(v), &c),
            "/paperclip/instances/default/workspaces/agent-1"
        );
        assert_eq!(
            working_directory(
                &params(json!({"runId": "r", "agent": {"id": "a"}})),
                &config(json!({}))
            ),
            "/paperclip"
        );
    }
}
