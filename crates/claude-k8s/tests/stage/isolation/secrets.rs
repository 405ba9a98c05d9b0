//! What an agent prints of its secrets leaks nowhere.

use base64::Engine;
use serde_json::json;

use super::{STAGE_API_KEY, everything, world_with_the_pods_key};
use crate::cli::cli_with_env;
use crate::support::{NAMESPACE, RUN_TOKEN};

/// The agent prints the inherited `ANTHROPIC_API_KEY` (from `secretKeyRef`), its base64 and URL-encoded forms and a
/// config secret through the real claude's Bash tool: none of them appears in the run log, the result, the meta or
/// what `claude-k8s logs` prints of the kept pod, with the operator's credentials (it reads the pod's Secrets). With
/// the adapter's own account (it may read no Secret) and the Paperclip pod's environment, as when run in that pod,
/// `logs` masks the inherited key and names the run Secret whose values it could not learn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_agent_printing_its_secrets_leaks_none_of_them() {
    const CONFIG_SECRET: &str = "cfg-secret-Zx9/+k=value-7741";
    let mut w = world_with_the_pods_key(&[]).await;
    // Kept after the run, so that `claude-k8s logs` can read its pod.
    let (agent, mut config) = w.new_agent(json!({"retainJobs": true}));
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
    let leaks = [
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
    ];
    assert_none_leaked("the run", &all, &leaks);

    // The operator reads the kept pod's transcript with credentials that may get Secrets.
    let job = w.stage.job_name(&agent).await;
    let (text, warnings) = logs(&job, &w.stage.admin_kubeconfig, &[]).await;
    assert!(
        text.contains("raw=***REDACTED***"),
        "the transcript: {text}"
    );
    assert!(
        text.contains("cfg=***REDACTED***"),
        "the transcript: {text}"
    );
    assert_none_leaked("claude-k8s logs", &text, &leaks);
    assert!(
        !warnings.contains("unmasked"),
        "every Secret was readable: {warnings}"
    );

    // The adapter's own account, with the Paperclip pod's inherited key in the environment.
    let (text, warnings) = logs(
        &job,
        &w.stage.limited_kubeconfig,
        &[("ANTHROPIC_API_KEY", STAGE_API_KEY)],
    )
    .await;
    assert!(
        text.contains("raw=***REDACTED***"),
        "the inherited key, resolved by name: {text}"
    );
    assert_none_leaked(
        "claude-k8s logs (the adapter's account)",
        &text,
        &leaks[..3],
    );
    assert!(
        warnings.contains("cannot read Secret")
            && warnings.contains("env UPSTREAM_API_TOKEN")
            && warnings.contains("env PAPERCLIP_API_KEY"),
        "names the run Secret's values it could not mask: {warnings}"
    );
    assert!(
        !warnings.contains("ANTHROPIC_API_KEY"),
        "resolved in its own environment: {warnings}"
    );

    w.stage.delete_retained(NAMESPACE, &agent).await;
    w.finish().await;
}

/// What `claude-k8s logs JOB` printed with `kubeconfig` and `env`: its stdout and stderr.
async fn logs(job: &str, kubeconfig: &str, env: &[(&str, &str)]) -> (String, String) {
    let printed = cli_with_env(
        &["logs", job, "--kubeconfig", kubeconfig, "-n", NAMESPACE],
        env,
    )
    .await;
    assert!(printed.status.success());
    (
        String::from_utf8_lossy(&printed.stdout).into_owned(),
        String::from_utf8_lossy(&printed.stderr).into_owned(),
    )
}

fn assert_none_leaked(place: &str, text: &str, leaks: &[(&str, String)]) {
    for (what, leak) in leaks {
        assert!(
            !text.contains(leak),
            "{what} leaked into {place} ({leak}): {text}"
        );
    }
}
