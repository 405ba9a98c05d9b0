//! Config fields on the cluster: bad values fail before anything is created, the fields whose effect only the
//! cluster shows reach the Job and the pod, and an unmatched nodeSelector leaves the pod unschedulable.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

use crate::support::{NAMESPACE, World, agent_selector, the_pod};

/// Every bad value fails the run with `invalid_config` naming the field, before any Secret, Job or pod exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_wrong_value_fails_the_run_before_anything_is_created() {
    let mut world = World::start().await;
    let agent = world.agent();
    for (field, value) in [
        ("effort", json!("extreme")),
        ("resources.requests.cpu", json!("lots")),
        ("resources.limits.memory", json!("8 gigs")),
        ("timeoutSec", json!(-1)),
        ("graceSec", json!("soon")),
        ("maxTurnsPerRun", json!(-3)),
        ("ttlSecondsAfterFinished", json!(1.5)),
        ("tolerations", json!("[{\"key\": ")),
        ("nodeSelector", json!("no equals sign")),
        ("labels", json!(["a"])),
        ("labels", json!({"team": "not a valid label value!"})),
        ("nodeSelector", json!({"bad key!": "x"})),
        ("podSpecPatch", json!("[1]")),
        ("imagePullPolicy", json!("Sometimes")),
        ("dangerouslySkipPermissions", json!("maybe")),
        ("extraArgs", json!({"a": 1})),
        ("env", json!([1])),
    ] {
        let config = world.config(&agent, json!({ field: value }));
        let run = world
            .run(&agent, &config, "Never runs [[fake:text no]]")
            .await;
        assert_eq!(
            run.result["errorCode"], "invalid_config",
            "{field}: {:#}",
            run.result
        );
        let message = run.result["errorMessage"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{field}`")),
            "{field}: {message}"
        );
        assert!(run.result["exitCode"].is_null());
    }
    world.stage.assert_nothing_created(NAMESPACE, &agent).await;
    assert!(world.fake.message_requests().is_empty());
    world.finish().await;
}

/// Values only the plan or the API server can judge (a pod-spec patch that is not a pod spec, or one the API
/// server refuses) also fail with a clear message and leave nothing behind, not even the run Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_value_kubernetes_refuses_leaves_nothing_behind() {
    let mut world = World::start().await;
    let agent = world.agent();
    for (field, value, expect) in [
        // Not a pod spec at all: refused by the plan.
        (
            "podSpecPatch",
            json!({"containers": "nope"}),
            "podSpecPatch",
        ),
        // A pod spec the API server refuses (422) when the Job is created, after the run Secret was.
        (
            "podSpecPatch",
            json!({"dnsPolicy": "Sometimes"}),
            "dnsPolicy",
        ),
        (
            "podSpecPatch",
            json!({"runtimeClassName": "Not_A_DNS_Name"}),
            "runtimeClassName",
        ),
        // A kubeconfig that is not there: no client, nothing sent.
        (
            "kubeconfig",
            json!("/nonexistent/kubeconfig"),
            "adapterConfig.kubeconfig",
        ),
    ] {
        let config = world.config(&agent, json!({ field: value }));
        let run = world
            .run(&agent, &config, "Never runs [[fake:text no]]")
            .await;
        assert!(
            run.result["exitCode"].is_null(),
            "{field}: {:#}",
            run.result
        );
        assert!(run.message().contains(expect), "{field}: {:#}", run.result);
        world.stage.assert_nothing_created(NAMESPACE, &agent).await;
    }
    assert!(world.fake.message_requests().is_empty());
    world.finish().await;
}

/// The fields whose effect only the cluster shows, read back from the retained Job and its pod: labels on both,
/// ttlSecondsAfterFinished, activeDeadlineSeconds from timeoutSec, graceSec as the pod's grace period, resources,
/// imagePullPolicy, nodeSelector and tolerations as scheduled, env, and serviceAccountName with its token mounted
/// by the API server (and no token without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn config_fields_reach_the_job_and_the_pod_as_scheduled() {
    let mut world = World::start().await;
    let (with_sa, without_sa) = (world.agent(), world.agent());
    let config = world.config(
        &with_sa,
        json!({
            "retainJobs": true,
            "labels": "team=core\ncost-center=42",
            "ttlSecondsAfterFinished": "600",
            "timeoutSec": 120,
            "graceSec": 7,
            "imagePullPolicy": "Never",
            "resources.requests.cpu": "150m",
            "resources.requests.memory": "100Mi",
            "resources.limits.cpu": "900m",
            "resources.limits.memory": "1536Mi",
            "nodeSelector": {"kubernetes.io/hostname": "localhost"},
            "tolerations": "[{\"key\": \"paperclip.io/agents\", \"operator\": \"Exists\", \"effect\": \"NoSchedule\"}]",
            "serviceAccountName": "default",
            "env": {"ANTHROPIC_BASE_URL": world.fake.url(), "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                    "CLAUDE_CODE_MAX_RETRIES": "1", "AGENT_FLAVOUR": "configured"}
        }),
    );
    let plain = world.config(&without_sa, json!({"retainJobs": true}));
    // Over 1 MiB, so that the prompt travels packed and the pod has the init container too (imagePullPolicy).
    let filler: String = (0..1024 * 1024 / 21 + 1)
        .map(|i| format!("context line {i:07}\n"))
        .collect();
    let a = world
        .send(
            &with_sa,
            &config,
            &format!("{filler}Fields [[fake:text fields]]"),
        )
        .await;
    let b = world
        .send(&without_sa, &plain, "Plain [[fake:text plain]]")
        .await;
    for id in [a, b] {
        let run = world.serve.wait_result(&id).await;
        assert_eq!(run.result["exitCode"], 0, "{}", run.dump());
    }

    let stage = &world.stage;
    let job = stage
        .agent_objects_selected::<Job>(
            NAMESPACE,
            &format!("{},team=core", agent_selector(&with_sa)),
        )
        .await;
    assert_eq!(job.len(), 1, "selected by the configured label");
    let job = serde_json::to_value(&job[0]).unwrap();
    assert_eq!(job["metadata"]["labels"]["cost-center"], "42");
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 120 + 7 + 300);

    let pod = the_pod(&stage.agent_pods(NAMESPACE, &with_sa).await);
    assert_eq!(pod["metadata"]["labels"]["team"], "core");
    let spec = &pod["spec"];
    assert_eq!(
        spec["nodeName"], "localhost",
        "scheduled with the nodeSelector"
    );
    assert_eq!(spec["nodeSelector"]["kubernetes.io/hostname"], "localhost");
    assert!(
        spec["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "paperclip.io/agents" && t["effect"] == "NoSchedule")
    );
    assert_eq!(spec["terminationGracePeriodSeconds"], 7);
    assert_eq!(spec["serviceAccountName"], "default");
    let claude = &spec["containers"][0];
    assert_eq!(claude["imagePullPolicy"], "Never");
    assert_eq!(spec["initContainers"][0]["imagePullPolicy"], "Never");
    assert_eq!(claude["resources"]["requests"]["cpu"], "150m");
    assert_eq!(claude["resources"]["requests"]["memory"], "100Mi");
    assert_eq!(claude["resources"]["limits"]["cpu"], "900m");
    assert_eq!(claude["resources"]["limits"]["memory"], "1536Mi");
    assert!(
        claude["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "AGENT_FLAVOUR" && e["value"] == "configured")
    );
    let token_mount = |pod: &Value| {
        pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
    };
    assert!(
        token_mount(&pod),
        "serviceAccountName: the token is mounted: {pod:#}"
    );

    let plain_pod = the_pod(&stage.agent_pods(NAMESPACE, &without_sa).await);
    assert!(
        !token_mount(&plain_pod),
        "no serviceAccountName: no token: {plain_pod:#}"
    );
    assert_eq!(plain_pod["spec"]["automountServiceAccountToken"], false);
    assert!(
        plain_pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("projected").is_none() && !v["name"].as_str().unwrap().contains("token"))
    );
    stage.delete_retained(NAMESPACE, &with_sa).await;
    stage.delete_retained(NAMESPACE, &without_sa).await;
    world.finish().await;
}

/// A nodeSelector no node matches keeps the pod unschedulable: the run says so while it waits, and timeoutSec
/// ends it with nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_unmatched_node_selector_leaves_the_pod_unschedulable() {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(
        json!({"nodeSelector": {"paperclip.io/pool": "nowhere"}, "timeoutSec": 20, "graceSec": 5}),
    );
    let id = world
        .send(&agent, &config, "Never scheduled [[fake:text no]]")
        .await;
    assert!(
        world
            .serve
            .wait_for_log(&id, Duration::from_secs(60), |l| l
                .contains("Unschedulable")
                && l.contains("node(s) didn't match"))
            .await,
        "no unschedulable progress line"
    );
    let run = world.serve.wait_result(&id).await;
    assert_eq!(run.result["timedOut"], true, "{}", run.dump());
    assert!(world.fake.message_requests().is_empty());
    world.finish().await;
}
