//! Runs that fail before claude starts: the image, the scheduler, the container's config, the Job controller,
//! a volume, and RBAC.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::support::{NAMESPACE, Stage, World, short_id};

/// The podSpecPatch every stage run needs (host network, to reach the fake API), plus `extra`.
fn pod_patch(extra: Value) -> Value {
    let mut patch = json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"});
    for (k, v) in extra.as_object().unwrap() {
        patch[k] = v.clone();
    }
    patch
}

/// A tag that does not exist: ErrImagePull (the stage's dead proxy refuses at once), then ImagePullBackOff; the
/// run fails after the start grace, naming the image, with the kubelet's words and a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_missing_image_fails_after_the_start_grace_naming_the_image() {
    let mut world = World::start_with_env(&[("CLAUDE_K8S_START_GRACE_SEC", "6")]).await;
    let (agent, config) =
        world.new_agent(json!({"image": "local/missing:1", "imagePullPolicy": "IfNotPresent"}));
    let started = Instant::now();
    let run = world.run(&agent, &config, "[[fake:text never]]").await;
    let took = started.elapsed();
    assert_eq!(
        run.result["errorCode"],
        "k8s_image_pull_failed",
        "{}",
        run.dump()
    );
    let msg = run.message();
    assert!(msg.contains("`local/missing:1`"), "{msg}");
    assert!(
        msg.contains("ErrImagePull") || msg.contains("ImagePullBackOff"),
        "{msg}"
    );
    assert!(run.hint().contains("adapterConfig.image"), "{}", run.dump());
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(90),
        "failed after {took:?}"
    );
    assert!(
        run.progress_lines()
            .iter()
            .any(|l| l.contains("claude container ErrImagePull")
                || l.contains("claude container ImagePullBackOff")),
        "the pull problem was shown live: {}",
        run.dump()
    );
    assert!(world.fake.message_requests().is_empty());
    world.finish().await;
}

/// An image reference Kubernetes cannot parse fails at once, without waiting for any grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_invalid_image_name_fails_at_once() {
    // A long grace: the run must not wait for it.
    let mut world = World::start_with_env(&[("CLAUDE_K8S_START_GRACE_SEC", "600")]).await;
    let (agent, config) = world.new_agent(json!({"image": "local/Not-A-Valid-Name:1"}));
    let started = Instant::now();
    let run = world.run(&agent, &config, "[[fake:text never]]").await;
    assert_eq!(
        run.result["errorCode"],
        "k8s_image_invalid",
        "{}",
        run.dump()
    );
    assert!(
        run.message().contains("local/Not-A-Valid-Name:1"),
        "{}",
        run.dump()
    );
    assert!(run.message().contains("InvalidImageName"), "{}", run.dump());
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    world.finish().await;
}

/// A nodeSelector no node matches: the scheduler's message is shown live; the run fails only after the pending
/// timeout, with that message and a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_unschedulable_pod_shows_the_schedulers_message_and_fails_after_the_pending_timeout() {
    let mut world = World::start_with_env(&[("CLAUDE_K8S_PENDING_TIMEOUT_SEC", "8")]).await;
    let (agent, config) =
        world.new_agent(json!({"nodeSelector": {"claude-k8s.test/no-such-node": "true"}}));
    let started = Instant::now();
    let id = world.send(&agent, &config, "[[fake:text never]]").await;
    let shown = world
        .serve
        .wait_for_log(&id, Duration::from_secs(60), |l| {
            l.starts_with("[claude-k8s]") && l.contains("pending") && l.contains("node")
        })
        .await;
    assert!(shown, "the scheduler's message was shown as progress");
    let run = world.serve.wait_result(&id).await;
    let took = started.elapsed();
    assert_eq!(
        run.result["errorCode"],
        "k8s_pod_unschedulable",
        "{}",
        run.dump()
    );
    let msg = run.message();
    assert!(msg.contains("0/1 nodes are available"), "{msg}");
    assert!(run.hint().contains("nodeSelector"), "{}", run.dump());
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(90),
        "failed after {took:?}"
    );
    world.finish().await;
}

/// A container whose env references a Secret that does not exist: CreateContainerConfigError, the kubelet's
/// message (naming the Secret) and a hint. (podSpecPatch is a JSON merge patch: it sets the initContainers list,
/// here to one container that needs the missing Secret.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_missing_secret_is_a_container_config_error_with_the_kubelets_message() {
    let mut world = World::start_with_env(&[("CLAUDE_K8S_START_GRACE_SEC", "5")]).await;
    let agent = world.agent();
    let secret = format!("no-such-secret-{}", short_id());
    let patch = pod_patch(json!({"initContainers": [{
        "name": "write-prompt", "image": world.stage.busybox_image, "imagePullPolicy": "IfNotPresent",
        "command": ["true"],
        "env": [{"name": "NEEDS_SECRET", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]
    }]}));
    let config = world.config(&agent, json!({"podSpecPatch": patch}));
    let started = Instant::now();
    let run = world.run(&agent, &config, "[[fake:text never]]").await;
    assert_eq!(
        run.result["errorCode"],
        "k8s_container_config_error",
        "{}",
        run.dump()
    );
    let msg = run.message();
    assert!(msg.contains("CreateContainerConfigError"), "{msg}");
    assert!(
        msg.contains(&secret),
        "the kubelet's message names the Secret: {msg}"
    );
    assert!(run.hint().contains("Secret"), "{}", run.dump());
    assert!(started.elapsed() < Duration::from_secs(90));
    world.finish().await;
}

/// A service account that does not exist: the Job controller cannot create the pod (FailedCreate, visible only in
/// the Job's events). The run does not hang: it fails after the pod-creation timeout, naming the Job and the
/// likely causes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_job_that_gets_no_pod_fails_after_the_pod_creation_timeout() {
    let mut world = World::start_with_env(&[("CLAUDE_K8S_POD_CREATE_TIMEOUT_SEC", "8")]).await;
    let (agent, config) =
        world.new_agent(json!({"serviceAccountName": format!("no-such-sa-{}", short_id())}));
    let started = Instant::now();
    let run = world.run(&agent, &config, "[[fake:text never]]").await;
    let took = started.elapsed();
    assert_eq!(
        run.result["errorCode"],
        "k8s_pod_not_created",
        "{}",
        run.dump()
    );
    assert!(run.message().contains("created no pod"), "{}", run.dump());
    assert!(
        run.message().contains("latest event: FailedCreate")
            && run.message().contains("no-such-sa-"),
        "the Job's event names the cause: {}",
        run.dump()
    );
    assert!(run.hint().contains("serviceAccountName"), "{}", run.dump());
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(90),
        "took {took:?}"
    );
    world.finish().await;
}

/// The Paperclip pod mounts a Secret that does not exist in the Jobs' namespace: the Job pod inherits the volume
/// and stays in ContainerCreating (FailedMount). The run does not hang: it fails after the pending timeout with
/// the mount event's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_pod_stuck_on_a_missing_secret_volume_fails_with_the_mount_event() {
    let stage = Stage::load();
    let client = stage.admin_client().await;
    let missing = format!("no-such-secret-{}", short_id());
    let stand_in = format!("paperclip-mounts-{}", short_id());
    // Only the object matters (self-introspection reads it); it never starts either.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": stand_in, "namespace": "paperclip"},
        "spec": {"automountServiceAccountToken": false, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "paperclip", "image": stage.agent_image, "imagePullPolicy": "IfNotPresent",
                                 "command": ["/bin/sleep-forever"],
                                 "volumeMounts": [{"name": "data", "mountPath": "/paperclip"},
                                                  {"name": "creds", "mountPath": "/etc/creds"}]}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "paperclip-data"}},
                             {"name": "creds", "secret": {"secretName": missing}}]}
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let self_pod = format!("paperclip/{stand_in}");
    let mut world = World::on(
        stage,
        &[
            ("CLAUDE_K8S_SELF_POD", &self_pod),
            ("CLAUDE_K8S_PENDING_TIMEOUT_SEC", "15"),
        ],
    )
    .await;
    let (agent, config) = world.new_agent(json!({}));
    let started = Instant::now();
    let run = world.run(&agent, &config, "[[fake:text never]]").await;
    let took = started.elapsed();
    let _ = pods
        .delete(
            &stand_in,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        run.result["errorCode"],
        "k8s_pod_start_timeout",
        "{}",
        run.dump()
    );
    let msg = run.message();
    assert!(
        msg.contains("FailedMount") && msg.contains(&missing),
        "the mount event's words: {msg}"
    );
    assert!(took < Duration::from_secs(120), "took {took:?}");
    world.finish().await;
}

/// A namespace where the adapter's identity may list Jobs and, later, use Leases (the guard passes) but not create
/// Secrets: first the guard refuses (fails closed, naming the Lease rules), then the run fails at once with
/// `k8s_forbidden`, the API server's own words, and the exact rule to add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_403_at_create_names_the_missing_rule() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let stage = Stage::load();
    let client = stage.admin_client().await;
    let ns = format!("cf-forbidden-{}", short_id());
    let pp = PostParams::default();
    Api::<Namespace>::all(client.clone())
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "jobs-read-only"},
        "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "limited-jobs-read-only"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jobs-read-only"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "limited"}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&pp, &binding)
        .await
        .unwrap();

    let mut world = World::on(stage, &[]).await;
    // Nothing can be left: the namespace is deleted below. The stage's namespace is checked all the same.
    let (agent, config) = world.new_agent(json!({"namespace": ns}));

    // Without the Lease rules the one-Job-per-agent guard cannot arbitrate: it refuses (fails closed).
    let run = world.run(&agent, &config, "[[fake:text never]]").await;
    assert_eq!(
        run.result["errorCode"],
        "k8s_concurrency_guard_unreachable",
        "{}",
        run.dump()
    );
    assert!(run.message().contains("forbidden"), "{}", run.message());
    assert!(
        run.hint().contains("leases.coordination.k8s.io"),
        "{}",
        run.hint()
    );

    let roles = Api::<Role>::namespaced(client.clone(), &ns);
    let mut role = roles.get("jobs-read-only").await.unwrap();
    role.rules.as_mut().unwrap().push(
        serde_json::from_value(
            json!({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                      "verbs": ["get", "create", "update", "delete"]}),
        )
        .unwrap(),
    );
    roles.replace("jobs-read-only", &pp, &role).await.unwrap();
    let started = Instant::now();
    let run = world.run(&agent, &config, "[[fake:text never]]").await;
    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(run.result["errorCode"], "k8s_forbidden", "{}", run.dump());
    let msg = run.message();
    assert!(
        msg.contains("User \"limited\" cannot create resource \"secrets\""),
        "the server's words: {msg}"
    );
    assert!(
        run.hint()
            .contains("{apiGroups: [\"\"], resources: [\"secrets\"], verbs: [\"create\"]}"),
        "{}",
        run.dump()
    );
    assert!(
        !run.log_text().contains("retry"),
        "a permission error is not retried: {}",
        run.dump()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    world.finish().await;
}
