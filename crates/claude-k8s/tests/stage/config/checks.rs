//! Environment checks through `test_environment` and `claude-k8s doctor`: the deployed RBAC passes, a missing
//! `pods/log` rule and a ReadWriteOnce claim fail with what to change.

use serde_json::{Value, json};

use super::fixtures::{nolog_user, rwo_stand_in};
use super::{SERVICE_URL, assert_every_permission_allowed, check, codes_at, doctor};
use crate::support::{Stage, World};

/// testEnvironment passes with the admin and with the limited (least-privilege, deploy/role.yaml) kubeconfig; a
/// loopback API URL makes it `warn`; `claude-k8s doctor` runs the same checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn environment_checks_pass_with_the_admin_and_the_limited_kubeconfig() {
    let mut world = World::start().await;
    let stage = &world.stage;
    let (limited, admin) = (
        stage.limited_kubeconfig.clone(),
        stage.admin_kubeconfig.clone(),
    );
    let agent_image = stage.agent_image.clone();
    for (who, kubeconfig) in [("limited", &limited), ("admin", &admin)] {
        let r = world
            .serve
            .test_environment(&json!({"kubeconfig": kubeconfig, "paperclipApiUrl": SERVICE_URL}))
            .await;
        assert_eq!(r["adapterType"], "claude_k8s");
        assert_eq!(r["status"], "pass", "{who}: {r:#}");
        assert!(
            r["testedAt"].as_str().is_some_and(|t| t.len() >= 20),
            "{r:#}"
        );
        assert_every_permission_allowed(&r);
        for code in [
            "k8s_api_reachable",
            "k8s_self_pod",
            "k8s_pvc_rwx",
            "k8s_image",
            "claude_api_key_present",
            "paperclip_api_url",
        ] {
            assert_eq!(check(&r, code)["level"], "info", "{who}: {code}: {r:#}");
        }
        assert!(
            check(&r, "k8s_image")["message"]
                .as_str()
                .unwrap()
                .contains(&agent_image),
            "{r:#}"
        );
        // admin may read Namespaces; limited may not (it has no cross-namespace ClusterRole), which is only
        // informational for the pod's own namespace.
        let ns = if who == "admin" {
            "k8s_namespace_exists"
        } else {
            "k8s_namespace_unverified"
        };
        assert_eq!(check(&r, ns)["level"], "info", "{who}: {r:#}");
    }
    // A namespace that does not exist (admin may read Namespaces, so this is certain).
    let r = world
        .serve
        .test_environment(
            &json!({"kubeconfig": admin, "namespace": "no-such-namespace",
                                  "paperclipApiUrl": SERVICE_URL}),
        )
        .await;
    assert_eq!(r["status"], "fail", "{r:#}");
    let c = check(&r, "k8s_namespace_missing");
    assert_eq!(c["level"], "error");
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("adapterConfig.namespace"),
        "{c:#}"
    );
    // The stand-in's own PAPERCLIP_API_URL is loopback: a warning, with the field to set.
    let r = world
        .serve
        .test_environment(&json!({"kubeconfig": limited}))
        .await;
    assert_eq!(r["status"], "warn", "{r:#}");
    assert_eq!(
        codes_at(&r, "warn"),
        ["paperclip_api_url_loopback"],
        "{r:#}"
    );
    assert!(
        check(&r, "paperclip_api_url_loopback")["hint"]
            .as_str()
            .unwrap()
            .contains("paperclipApiUrl")
    );
    world.finish().await;

    let (status, out) = doctor(&["--kubeconfig", &limited, "--json"], "paperclip/paperclip");
    assert!(status.success(), "doctor exit {status}: {out}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "warn", "{r:#}");
    assert_every_permission_allowed(&r);
    assert_eq!(codes_at(&r, "error"), Vec::<String>::new(), "{r:#}");
}

/// A service account without `pods/log` fails the check, and only that check, with the exact Role rule to add;
/// `claude-k8s doctor` prints the rule and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_user_without_pods_log_is_told_the_exact_rule_to_add() {
    let stage = Stage::load();
    let kubeconfig = nolog_user(&stage).await;
    let mut world = World::on(stage, &[]).await;
    let r = world
        .serve
        .test_environment(&json!({"kubeconfig": kubeconfig, "paperclipApiUrl": SERVICE_URL}))
        .await;
    world.finish().await;
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(codes_at(&r, "error"), ["k8s_rbac_pods_log_get"], "{r:#}");
    let c = check(&r, "k8s_rbac_pods_log_get");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("denied: get pods/log in namespace paperclip"),
        "{c:#}"
    );
    assert_eq!(
        c["hint"],
        "add this rule to the adapter's Role (deploy/role.yaml): - apiGroups: [\"\"]  resources: [\"pods/log\"]  verbs: [\"get\"]"
    );

    let (status, out) = doctor(&["--kubeconfig", &kubeconfig], "paperclip/paperclip");
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL k8s_rbac_pods_log_get"), "{out}");
    assert!(
        out.contains("fix: add this rule to the adapter's Role (deploy/role.yaml): - apiGroups: [\"\"]  resources: [\"pods/log\"]  verbs: [\"get\"]"),
        "{out}"
    );
    assert_eq!(out.matches("FAIL ").count(), 1, "{out}");
    assert!(out.trim_end().ends_with("status: fail"), "{out}");
}

/// A Paperclip pod whose /paperclip is a ReadWriteOnce claim fails `k8s_pvc_not_rwx`, naming the claim, its
/// access modes and what to use instead; the doctor says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_readwriteonce_claim_fails_the_check_with_what_to_change() {
    let stage = Stage::load();
    let self_pod = rwo_stand_in(&stage).await;
    let limited = stage.limited_kubeconfig.clone();
    let mut world = World::on(stage, &[("CLAUDE_K8S_SELF_POD", self_pod)]).await;
    let r = world
        .serve
        .test_environment(&json!({"kubeconfig": limited, "paperclipApiUrl": SERVICE_URL}))
        .await;
    world.finish().await;
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(codes_at(&r, "error"), ["k8s_pvc_not_rwx"], "{r:#}");
    let c = check(&r, "k8s_pvc_not_rwx");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.contains("paperclip-rwo") && message.contains("ReadWriteOnce"),
        "{c:#}"
    );
    let hint = c["hint"].as_str().unwrap();
    assert!(
        hint.contains("accessModes: [ReadWriteMany]")
            && hint.contains("instead of paperclip-rwo")
            && hint.contains("deploy/pvc-example.yaml"),
        "{c:#}"
    );
    assert!(
        check(&r, "k8s_self_pod")["message"]
            .as_str()
            .unwrap()
            .contains("paperclip/paperclip-rwo")
    );

    let (status, out) = doctor(&["--kubeconfig", &limited], self_pod);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL k8s_pvc_not_rwx"), "{out}");
    assert!(
        out.contains("fix: access modes cannot be changed on a claim"),
        "{out}"
    );
}
