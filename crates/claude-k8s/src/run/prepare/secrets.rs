//! Which values of a run are secret: masked in everything forwarded ([`crate::serve::mask`]) and in the meta.

use serde_json::Value;

use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::mcp;
use crate::run::prepare::pod_facts::PodFacts;
use crate::serve::protocol::ExecuteParams;

/// Whether an env name says its value is secret (API keys, tokens, passwords, credentials).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|w| upper.contains(w))
}

/// The values the adapter knows to be secret: the run's token, the MCP servers' tokens, and env values whose name
/// says secret (API keys, tokens, passwords) from the agent config and from the Paperclip pod's own plain env.
pub fn known(params: &ExecuteParams, config: &AgentConfig, facts: &PodFacts) -> Vec<String> {
    let mut secrets: Vec<String> = params.auth_token.iter().cloned().collect();
    secrets.extend(
        mcp::servers(&params.runtime_mcp_servers)
            .into_iter()
            .map(|s| s.token)
            .filter(|t| !t.is_empty()),
    );
    let raw_env = params.config.get("env").and_then(Value::as_object);
    for (name, value) in &config.env {
        // A binding Paperclip marks as a secret (anything but `plain`) is one whatever its name.
        let bound_secret = raw_env
            .and_then(|e| e.get(name))
            .and_then(|b| b.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "plain");
        if bound_secret || is_secret_name(name) {
            secrets.push(value.clone());
        }
    }
    secrets.extend(
        facts
            .env
            .iter()
            .filter(|e| is_secret_name(&e.name))
            .filter_map(|e| e.value.clone()),
    );
    secrets
}
