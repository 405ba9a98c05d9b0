//! Paperclip's runtime MCP servers for one run (`ctx.runtimeMcp.getServers()`, forwarded by the shim as
//! `runtimeMcpServers`): the `--mcp-config` file Claude reads, and the identity that gates resume. Pure.
//!
//! The file holds each server's bearer token, so it never enters the Job spec: the plan puts it into the run Secret,
//! whose volume (in memory, read-only, readable by the agent's group only) the claude container reads it from
//! (see `plan`). It is gone with the pod, and the Secret with the run.

use serde_json::{Map, Value, json};

/// The MCP config's key in the run Secret, and so its file name in the Secret's volume.
pub const MCP_CONFIG_FILE: &str = "mcp-config.json";

/// One server as Paperclip hands it to adapters (`AdapterRuntimeMcpServer`).
#[derive(Debug, Clone, PartialEq)]
pub struct McpServer {
    pub name: String,
    pub url: String,
    pub token: String,
    pub connection_id: Option<String>,
}

/// The servers of a run; entries without a name or URL cannot be configured and are skipped.
pub fn servers(raw: &[Value]) -> Vec<McpServer> {
    raw.iter()
        .filter_map(|v| {
            let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
            Some(McpServer {
                name: s("name").filter(|n| !n.is_empty())?,
                url: s("url").filter(|u| !u.is_empty())?,
                token: s("token").unwrap_or_default(),
                connection_id: s("connectionId"),
            })
        })
        .collect()
}

/// claude_local's `mcpServerIdentity`: the JSON of `[{name, url, connectionId}]` in that key order (tokens left
/// out: they change every run), so a session saved by either adapter compares equal when the servers are the
/// same. `[]` without servers.
pub fn identity(servers: &[McpServer]) -> String {
    let items: Vec<String> = servers
        .iter()
        .map(|s| {
            let mut item = format!("{{\"name\":{},\"url\":{}", quote(&s.name), quote(&s.url));
            if let Some(id) = &s.connection_id {
                item.push_str(&format!(",\"connectionId\":{}", quote(id)));
            }
            item.push('}');
            item
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn quote(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The `--mcp-config` file: `{"mcpServers": {name: {"type": "http", "url", "headers": {"Authorization"}}}}`, with
/// claude_local's rule for duplicate names (suffix with the connection id). `None` without servers.
///
/// Paperclip builds the URLs from its own listen address, usually loopback, which a pod cannot reach: when the
/// pod has a non-loopback `PAPERCLIP_API_URL`, a loopback URL's origin is replaced by that URL's origin.
pub fn config_json(servers: &[McpServer], pod_api_url: Option<&str>) -> Option<String> {
    if servers.is_empty() {
        return None;
    }
    let mut used: Vec<String> = Vec::new();
    let mut map = Map::new();
    for s in servers {
        let short: String = s
            .connection_id
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(8)
            .collect();
        let mut name = s.name.clone();
        if used.contains(&name) {
            name = format!("{}-{short}", s.name);
        }
        let mut suffix = 2;
        while used.contains(&name) {
            name = format!("{}-{short}-{suffix}", s.name);
            suffix += 1;
        }
        used.push(name.clone());
        map.insert(
            name,
            json!({
                "type": "http",
                "url": reachable_url(&s.url, pod_api_url),
                "headers": {"Authorization": format!("Bearer {}", s.token)},
            }),
        );
    }
    Some(json!({"mcpServers": map}).to_string())
}

/// `url` as a pod reaches it: a loopback origin is replaced by the pod's API URL origin (when that is not
/// loopback itself: host-network pods reach loopback as it is).
pub fn reachable_url(url: &str, pod_api_url: Option<&str>) -> String {
    let Some(pod) = pod_api_url.filter(|p| !crate::run::plan::invocation::is_loopback_url(p))
    else {
        return url.to_owned();
    };
    if !crate::run::plan::invocation::is_loopback_url(url) {
        return url.to_owned();
    }
    let (Some(pod_origin), Some((_, path))) = (origin(pod), split_origin(url)) else {
        return url.to_owned();
    };
    format!("{pod_origin}{path}")
}

fn origin(url: &str) -> Option<&str> {
    split_origin(url).map(|(o, _)| o)
}

/// `scheme://authority` and the rest (path, query), or `None` for something that is not an absolute URL.
fn split_origin(url: &str) -> Option<(&str, &str)> {
    let scheme_end = url.find("://")? + 3;
    let path_start = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    Some((&url[..path_start], &url[path_start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Vec<McpServer> {
        servers(&[
            json!({"name": "Paperclip projects", "url": "http://127.0.0.1:3100/api/mcp/project-tools", "token": "jwt-1", "connectionId": "0123456789ab"}),
            json!({"name": "Paperclip projects", "url": "http://127.0.0.1:3100/mcp/runtime-tools", "token": "jwt-2", "connectionId": "fedcba987654"}),
            json!({"name": "", "url": "http://x"}),
            json!({"name": "no url"}),
        ])
    }

    #[test]
    fn servers_without_name_or_url_are_skipped() {
        assert_eq!(two().len(), 2);
        assert_eq!(two()[1].connection_id.as_deref(), Some("fedcba987654"));
    }

    #[test]
    fn identity_is_claude_locals_json_without_tokens() {
        assert_eq!(identity(&[]), "[]");
        let id = identity(&two());
        assert_eq!(
            id,
            r#"[{"name":"Paperclip projects","url":"http://127.0.0.1:3100/api/mcp/project-tools","connectionId":"0123456789ab"},{"name":"Paperclip projects","url":"http://127.0.0.1:3100/mcp/runtime-tools","connectionId":"fedcba987654"}]"#
        );
        assert!(!id.contains("jwt"));
    }

    #[test]
    fn config_names_duplicates_by_connection_and_carries_bearer_tokens() {
        assert_eq!(config_json(&[], None), None);
        let v: Value = serde_json::from_str(&config_json(&two(), None).unwrap()).unwrap();
        let servers = v["mcpServers"].as_object().unwrap();
        assert_eq!(
            servers.keys().collect::<Vec<_>>(),
            ["Paperclip projects", "Paperclip projects-fedcba98"]
        );
        let first = &servers["Paperclip projects"];
        assert_eq!(first["type"], "http");
        assert_eq!(first["headers"]["Authorization"], "Bearer jwt-1");
        assert_eq!(
            first["url"], "http://127.0.0.1:3100/api/mcp/project-tools",
            "no pod URL: unchanged"
        );
    }

    #[test]
    fn loopback_urls_are_rewritten_to_the_pods_api_url() {
        let pod = Some("http://paperclip.paperclip.svc:3100/");
        assert_eq!(
            reachable_url("http://127.0.0.1:3100/api/mcp/project-tools?x=1", pod),
            "http://paperclip.paperclip.svc:3100/api/mcp/project-tools?x=1"
        );
        assert_eq!(
            reachable_url("http://localhost:3100", pod),
            "http://paperclip.paperclip.svc:3100"
        );
        // Not loopback, or a loopback pod URL (host network): unchanged.
        assert_eq!(
            reachable_url("https://mcp.example.com/x", pod),
            "https://mcp.example.com/x"
        );
        assert_eq!(
            reachable_url("http://127.0.0.1:3100/x", Some("http://127.0.0.1:3100")),
            "http://127.0.0.1:3100/x"
        );
        let v: Value = serde_json::from_str(&config_json(&two(), pod).unwrap()).unwrap();
        assert_eq!(
            v["mcpServers"]["Paperclip projects"]["url"],
            "http://paperclip.paperclip.svc:3100/api/mcp/project-tools"
        );
    }
}
