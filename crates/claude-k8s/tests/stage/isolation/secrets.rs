//! What an agent prints of its secrets leaks nowhere.

use base64::Engine;
use serde_json::json;

use super::{STAGE_API_KEY, everything, world_with_the_pods_key};
use crate::support::RUN_TOKEN;

/// The agent prints the inherited `ANTHROPIC_API_KEY` (from `secretKeyRef`), its base64 and URL-encoded forms and a
/// config secret through the real claude's Bash tool: none of them appears in the run log, the result or the meta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_agent_printing_its_secrets_leaks_none_of_them() {
    const CONFIG_SECRET: &str = "cfg-secret-Zx9/+k=value-7741";
    let mut w = world_with_the_pods_key(&[]).await;
    let (agent, mut config) = w.new_agent(json!({}));
    config["env"]["UPSTREAM_API_TOKEN"] = json!(CONFIG_SECRET);
    let bash = "printf 'raw=%s\\n' \"$ANTHROPIC_API_KEY\"; \
                printf %s \"$ANTHROPIC_API_KEY\" | base64; \
                printf 'x%s' \"$ANTHROPIC_API_KEY\" | base64; \
                printf %s \"$UPSTREAM_API_TOKEN\" | base64; \
                printf 'cfg=%s\\n' \"$UPSTREAM_API_TOKEN\"; \
                printf %s \"$UPSTREAM_API_TOKEN\" | od -An -tx1 | tr -d ' \\n' | sed 's/\\(..\\)/%\\1/g'; echo; \
                echo \"token=$PAPERCLIP_API_KEY\"";
    let run = w
        .run(
            &agent,
            &config,
            &format!("Print them [[fake:bash {bash}]] [[fake:text done]]"),
        )
        .await;
    assert_eq!(run.result["exitCode"], 0, "{}", everything(&run));
    let all = everything(&run);
    assert!(all.contains("raw=***REDACTED***"), "the command ran: {all}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let url_encoded: String = CONFIG_SECRET.bytes().map(|b| format!("%{b:02x}")).collect();
    for (what, leak) in [
        ("the inherited key", STAGE_API_KEY.to_owned()),
        (
            "its base64",
            b64.encode(STAGE_API_KEY).trim_end_matches('=').to_owned(),
        ),
        (
            "its base64 at offset 1",
            b64.encode(format!("x{STAGE_API_KEY}"))[4..24].to_owned(),
        ),
        ("the config secret", CONFIG_SECRET.to_owned()),
        (
            "its base64",
            b64.encode(CONFIG_SECRET).trim_end_matches('=').to_owned(),
        ),
        ("its URL encoding", url_encoded),
        ("the run token", RUN_TOKEN.to_owned()),
    ] {
        assert!(!all.contains(&leak), "{what} leaked ({leak}): {all}");
    }
    w.finish().await;
}
