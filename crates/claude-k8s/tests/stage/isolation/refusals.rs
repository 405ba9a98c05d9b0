//! Hostile configs under the secure default policy.

use serde_json::json;

use super::everything;
use crate::support::World;

/// Each hostile config of issue 14 with the default policy: `policy_denied`, the field named with the setting that
/// allows it, nothing planned or created (no Job, pod, Lease, run Secret) and no model request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn hostile_configs_are_refused_and_nothing_is_created() {
    // Neither policy variable: the built-in default.
    let mut w = World::start_with_env(&[("CLAUDE_K8S_POLICY_FILE", "")]).await;
    let agent = w.agent();
    // A master key where a Paperclip instance keeps it, on the shared volume: named as a kubeconfig, it is never
    // read, so its text cannot be in the message.
    const KEY_TEXT: &str = "bWFzdGVyLWtleS1iYWl0LTk5MjE=";
    let instance = format!("/paperclip/test-instances/{agent}");
    let master_key = format!("{instance}/secrets/master.key");
    std::fs::create_dir_all(format!("{instance}/secrets")).unwrap();
    std::fs::write(&master_key, KEY_TEXT).unwrap();
    let base = json!({"env": {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}});
    let hostile = [
        (
            "podSpecPatch",
            json!({"hostPID": true}),
            "podSpecPatch.hostPID",
        ),
        (
            "podSpecPatch",
            json!({"hostNetwork": true}),
            "podSpecPatch.hostNetwork",
        ),
        (
            "podSpecPatch",
            json!({"serviceAccountName": "paperclip"}),
            "podSpecPatch.serviceAccountName",
        ),
        (
            "podSpecPatch",
            json!({"initContainers": []}),
            "podSpecPatch.initContainers",
        ),
        (
            "podSpecPatch",
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
            "hostPath",
        ),
        (
            "podSpecPatch",
            json!({"containers": [{"name": "claude", "securityContext": {"privileged": true}}]}),
            "privileged",
        ),
        (
            "serviceAccountName",
            json!("paperclip"),
            "serviceAccountName",
        ),
        ("namespace", json!("kube-system"), "namespace"),
        ("image", json!(w.stage.agent_image), "image"),
        ("kubeconfig", json!(w.stage.admin_kubeconfig), "kubeconfig"),
        // No setting allows this one: the message says why instead.
        ("kubeconfig", json!(master_key), "kubeconfig"),
        (
            "paperclipApiUrl",
            json!("https://collector.invalid"),
            "paperclipApiUrl",
        ),
        (
            "env",
            json!({"ANTHROPIC_BASE_URL": w.fake.url()}),
            "env.ANTHROPIC_BASE_URL",
        ),
    ];
    for (field, value, expect) in hostile {
        let mut config = base.clone();
        config[field] = value;
        let run = w.run(&agent, &config, "Never runs [[fake:text no]]").await;
        assert_eq!(
            run.result["errorCode"],
            "policy_denied",
            "{field}: {}",
            everything(&run)
        );
        let message = run.result["errorMessage"].as_str().unwrap();
        assert!(
            message.contains(expect)
                && (message.contains("to allow it set") || message.contains("is never read")),
            "{message}"
        );
        assert!(
            !message.contains("BEGIN"),
            "no file content is quoted: {message}"
        );
        assert!(run.meta.is_none(), "nothing was planned: {:?}", run.meta);
        w.stage.assert_nothing_created("paperclip", &agent).await;
    }
    assert!(w.fake.message_requests().is_empty());
    std::fs::remove_dir_all(&instance).unwrap();
    w.finish().await;
}
