//! Jobs in another namespace than the Paperclip pod's, with and without the README's cross-namespace RBAC.

use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use super::fixtures::{JOBS_NS, cross_namespace_user};
use super::{SERVICE_URL, assert_every_permission_allowed, check, codes_at};
use crate::support::{NAMESPACE, Stage, World, the_pod};
use claude_k8s::checks::PERMISSIONS;

/// With the README's cross-namespace RBAC, the checks pass for the Jobs' namespace and a run's Job, pod and Secret
/// live there (and nowhere else); without it, the checks name every missing rule and a run fails creating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn jobs_run_in_another_namespace_with_the_documented_rbac() {
    let stage = Stage::load();
    let kubeconfig = cross_namespace_user(&stage).await;
    let mut world = World::on(stage, &[]).await;

    let r = world
        .serve
        .test_environment(
            &json!({"kubeconfig": kubeconfig, "namespace": JOBS_NS, "paperclipApiUrl": SERVICE_URL}),
        )
        .await;
    // The only warning: the inherited Secret and ConfigMap must exist in the Jobs' namespace (the adapter may not
    // read Secrets to check).
    assert_eq!(r["status"], "warn", "{r:#}");
    assert_eq!(
        codes_at(&r, "warn"),
        ["k8s_inherited_refs_other_namespace"],
        "{r:#}"
    );
    let c = check(&r, "k8s_inherited_refs_other_namespace");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("Secrets paperclip-secrets and ConfigMaps paperclip-config"),
        "{c:#}"
    );
    assert_every_permission_allowed(&r);
    assert_eq!(check(&r, "k8s_namespace_exists")["level"], "info");
    assert_eq!(check(&r, "k8s_pvc_rwx")["level"], "info");
    assert!(
        check(&r, "k8s_rbac_job_create")["message"]
            .as_str()
            .unwrap()
            .contains(&format!("namespace {JOBS_NS}"))
    );

    let agent = world.agent_in(JOBS_NS);
    let config = world.config(
        &agent,
        json!({"kubeconfig": kubeconfig, "namespace": JOBS_NS, "retainJobs": true}),
    );
    let run = world
        .run(
            &agent,
            &config,
            "Elsewhere [[fake:text from paperclip-jobs]]",
        )
        .await;
    assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    assert!(
        run.log_text()
            .contains(&format!("created in namespace {JOBS_NS}")),
        "{}",
        run.log_text()
    );
    let stage = &world.stage;
    assert_eq!(
        stage.agent_object_names::<Job>(JOBS_NS, &agent).await.len(),
        1
    );
    let pod = the_pod(&stage.agent_pods(JOBS_NS, &agent).await);
    assert_eq!(
        pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "paperclip-data"
    );
    stage.assert_nothing_created(NAMESPACE, &agent).await;
    stage.delete_retained(JOBS_NS, &agent).await;

    // The limited user has the adapter's Role only in `paperclip`.
    let limited = world.stage.limited_kubeconfig.clone();
    let r = world
        .serve
        .test_environment(
            &json!({"kubeconfig": limited, "namespace": JOBS_NS, "paperclipApiUrl": SERVICE_URL}),
        )
        .await;
    assert_eq!(r["status"], "fail", "{r:#}");
    let mut denied = codes_at(&r, "error");
    denied.retain(|c| c.starts_with("k8s_rbac_"));
    assert_eq!(denied.len(), PERMISSIONS.len(), "{r:#}");
    let c = check(&r, "k8s_namespace_unverified");
    assert_eq!(
        c["level"], "warn",
        "an explicit namespace that cannot be read: {c:#}"
    );
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("clusterrole-cross-namespace.yaml")
    );

    let requests_before = world.fake.message_requests().len();
    let agent = world.agent_in(JOBS_NS);
    let config = world.config(&agent, json!({"namespace": JOBS_NS}));
    let run = world
        .run(&agent, &config, "Not allowed [[fake:text no]]")
        .await;
    assert!(run.result["exitCode"].is_null(), "{:#}", run.result);
    assert!(run.message().contains(JOBS_NS), "{:#}", run.result);
    world.stage.assert_nothing_created(JOBS_NS, &agent).await;
    assert_eq!(world.fake.message_requests().len(), requests_before);
    world.finish().await;
}
