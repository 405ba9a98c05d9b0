//! Issue 5 on the real stage: runs that fail before, around or inside the agent end with a distinct
//! `errorCode`, a message in words with a hint, within a bounded time, and leave no Job or pod behind.
//!
//! Needs `make cluster-up`; run with
//! `cargo test -p claude-k8s --test cluster_failures -- --ignored --test-threads 2`.
//! Time limits are shortened for the serve process through its environment (`CLAUDE_K8S_START_GRACE_SEC`,
//! `CLAUDE_K8S_PENDING_TIMEOUT_SEC`, `CLAUDE_K8S_RESULT_GRACE_SEC`), so the suite stays quick.

mod stage;

use std::time::{Duration, Instant};

use fake_anthropic::FakeAnthropic;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde_json::{Value, json};
use stage::{RunRecord, Serve, Stage};

fn message(r: &RunRecord) -> String {
    r.result["errorMessage"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn hint(r: &RunRecord) -> String {
    r.result["errorMeta"]["hint"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Prints what the host saw when an assertion is about to fail.
fn dump(r: &RunRecord) -> String {
    format!("{:#}\n--- log ---\n{}", r.result, r.log_text())
}

fn progress_lines(r: &RunRecord) -> Vec<String> {
    r.log_text()
        .lines()
        .filter(|l| l.starts_with("[claude-k8s]"))
        .map(str::to_owned)
        .collect()
}

/// The podSpecPatch every stage run needs (host network, to reach the fake API), plus `extra`.
fn pod_patch(extra: Value) -> Value {
    let mut patch = json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"});
    for (k, v) in extra.as_object().unwrap() {
        patch[k] = v.clone();
    }
    patch
}

/// Waits (by polling the API, bounded) until the agent's pod runs claude; returns the pod's name.
async fn running_pod(stage: &Stage, agent: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(stage.admin_client().await, "paperclip");
    let lp = ListParams::default().labels(&format!("paperclip.io/agent-id={agent}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = pods.list(&lp).await.unwrap();
        if let Some(p) = list
            .items
            .iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        {
            return p.metadata.name.clone().unwrap();
        }
        assert!(Instant::now() < deadline, "no running pod for {agent}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn job_name(stage: &Stage, agent: &str) -> String {
    let jobs: Api<Job> = Api::namespaced(stage.admin_client().await, "paperclip");
    let list = jobs
        .list(&ListParams::default().labels(&format!("paperclip.io/agent-id={agent}")))
        .await
        .unwrap();
    list.items[0].metadata.name.clone().unwrap()
}

/// A tag that does not exist: ErrImagePull (the stage's dead proxy refuses at once), then ImagePullBackOff; the
/// run fails after the start grace, naming the image, with the kubelet's words and a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_missing_image_fails_after_the_start_grace_naming_the_image() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start_with_env(&stage, &[("CLAUDE_K8S_START_GRACE_SEC", "6")]);
    let agent = stage::uuid();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"image": "local/missing:1", "imagePullPolicy": "IfNotPresent"}),
    );
    let started = Instant::now();
    let run = serve
        .execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
    let took = started.elapsed();
    assert_eq!(
        run.result["errorCode"],
        "k8s_image_pull_failed",
        "{}",
        dump(&run)
    );
    let msg = message(&run);
    assert!(msg.contains("`local/missing:1`"), "{msg}");
    assert!(
        msg.contains("ErrImagePull") || msg.contains("ImagePullBackOff"),
        "{msg}"
    );
    assert!(hint(&run).contains("adapterConfig.image"), "{}", dump(&run));
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(90),
        "failed after {took:?}"
    );
    assert!(
        progress_lines(&run)
            .iter()
            .any(|l| l.contains("claude container ErrImagePull")
                || l.contains("claude container ImagePullBackOff")),
        "the pull problem was shown live: {}",
        dump(&run)
    );
    assert!(fake.message_requests().is_empty());
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// An image reference Kubernetes cannot parse fails at once, without waiting for any grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_invalid_image_name_fails_at_once() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    // A long grace: the run must not wait for it.
    let mut serve = Serve::start_with_env(&stage, &[("CLAUDE_K8S_START_GRACE_SEC", "600")]);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"image": "local/Not-A-Valid-Name:1"}));
    let started = Instant::now();
    let run = serve
        .execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
    assert_eq!(
        run.result["errorCode"],
        "k8s_image_invalid",
        "{}",
        dump(&run)
    );
    assert!(
        message(&run).contains("local/Not-A-Valid-Name:1"),
        "{}",
        dump(&run)
    );
    assert!(message(&run).contains("InvalidImageName"), "{}", dump(&run));
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// A nodeSelector no node matches: the scheduler's message is shown live; the run fails only after the pending
/// timeout, with that message and a hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn an_unschedulable_pod_shows_the_schedulers_message_and_fails_after_the_pending_timeout() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start_with_env(&stage, &[("CLAUDE_K8S_PENDING_TIMEOUT_SEC", "8")]);
    let agent = stage::uuid();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"nodeSelector": {"claude-k8s.test/no-such-node": "true"}}),
    );
    let started = Instant::now();
    let id = serve
        .send_execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
    let shown = serve
        .wait_for_log(&id, Duration::from_secs(60), |l| {
            l.starts_with("[claude-k8s]") && l.contains("pending") && l.contains("node")
        })
        .await;
    assert!(shown, "the scheduler's message was shown as progress");
    let run = serve.wait_result(&id).await;
    let took = started.elapsed();
    assert_eq!(
        run.result["errorCode"],
        "k8s_pod_unschedulable",
        "{}",
        dump(&run)
    );
    let msg = message(&run);
    assert!(msg.contains("0/1 nodes are available"), "{msg}");
    assert!(hint(&run).contains("nodeSelector"), "{}", dump(&run));
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(90),
        "failed after {took:?}"
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// A container whose env references a Secret that does not exist: CreateContainerConfigError, the kubelet's
/// message (naming the Secret) and a hint. (podSpecPatch is a JSON merge patch: the initContainers list is
/// replaced whole, here by one that needs the missing Secret.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_missing_secret_is_a_container_config_error_with_the_kubelets_message() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start_with_env(&stage, &[("CLAUDE_K8S_START_GRACE_SEC", "5")]);
    let agent = stage::uuid();
    let secret = format!("no-such-secret-{}", stage::short_id());
    let patch = pod_patch(json!({"initContainers": [{
        "name": "write-prompt", "image": stage.busybox_image, "imagePullPolicy": "IfNotPresent",
        "command": ["true"],
        "env": [{"name": "NEEDS_SECRET", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]
    }]}));
    let config = stage.agent_config(&fake, &agent, json!({"podSpecPatch": patch}));
    let started = Instant::now();
    let run = serve
        .execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
    assert_eq!(
        run.result["errorCode"],
        "k8s_container_config_error",
        "{}",
        dump(&run)
    );
    let msg = message(&run);
    assert!(msg.contains("CreateContainerConfigError"), "{msg}");
    assert!(
        msg.contains(&secret),
        "the kubelet's message names the Secret: {msg}"
    );
    assert!(hint(&run).contains("Secret"), "{}", dump(&run));
    assert!(started.elapsed() < Duration::from_secs(90));
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// A memory limit claude itself exceeds: "claude container OOMKilled (limit …)", never "because of None".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_memory_limit_claude_exceeds_is_reported_as_oom_killed_with_the_limit() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"resources.requests.memory": "24Mi", "resources.limits.memory": "24Mi"}),
    );
    let run = serve
        .execute(&stage.params(&agent, &config, "[[fake:text hi]]", None))
        .await;
    assert_eq!(run.result["errorCode"], "k8s_oom_killed", "{}", dump(&run));
    assert_eq!(run.result["exitCode"], 137, "{}", dump(&run));
    let msg = message(&run);
    assert!(
        msg.contains("claude container OOMKilled (limit 24Mi)"),
        "{msg}"
    );
    assert!(!msg.contains("None"), "{msg}");
    assert!(hint(&run).contains("limits.memory"), "{}", dump(&run));
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// Someone deletes the Job while claude runs: the run ends promptly with that cause, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_job_deleted_mid_run_ends_the_run_promptly_with_that_cause() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"graceSec": 5}));
    let id = serve
        .send_execute(&stage.params(&agent, &config, "Hold [[fake:hold Working]]", None))
        .await;
    assert!(fake.wait_for_held(Duration::from_secs(120)).await);
    let name = job_name(&stage, &agent).await;
    let jobs: Api<Job> = Api::namespaced(stage.admin_client().await, "paperclip");
    let deleted = Instant::now();
    jobs.delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    let noticed = serve
        .wait_for_log(&id, Duration::from_secs(30), |l| {
            l.starts_with("[claude-k8s]") && l.contains("was deleted by someone else")
        })
        .await;
    assert!(noticed, "the deletion was noticed at once");
    let run = serve.wait_result(&id).await;
    let took = deleted.elapsed();
    assert_eq!(
        run.result["errorCode"],
        "k8s_job_deleted_externally",
        "{}",
        dump(&run)
    );
    let msg = message(&run);
    assert!(
        msg.contains(&name) && msg.contains("deleted by someone else"),
        "{msg}"
    );
    assert!(hint(&run).contains("kubectl delete job"), "{}", dump(&run));
    // Bounded: the cause is reported at once; cleanup then waits for the pod to be gone, which takes the kubelet
    // a while on a loaded machine.
    assert!(
        took < Duration::from_secs(120),
        "ended {took:?} after the delete"
    );
    stage.assert_nothing_left(&agent).await;
    fake.release();
    serve.shutdown().await;
}

/// Someone deletes the pod (not the Job) while claude runs: the run ends with that cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_pod_deleted_mid_run_ends_the_run_with_that_cause() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"graceSec": 5}));
    let id = serve
        .send_execute(&stage.params(&agent, &config, "Hold [[fake:hold Working]]", None))
        .await;
    assert!(fake.wait_for_held(Duration::from_secs(120)).await);
    let pod = running_pod(&stage, &agent).await;
    let pods: Api<Pod> = Api::namespaced(stage.admin_client().await, "paperclip");
    let deleted = Instant::now();
    pods.delete(&pod, &DeleteParams::default()).await.unwrap();
    let run = serve.wait_result(&id).await;
    let took = deleted.elapsed();
    assert_eq!(run.result["errorCode"], "k8s_pod_deleted", "{}", dump(&run));
    assert!(
        message(&run).contains("deleted by someone else"),
        "{}",
        dump(&run)
    );
    assert!(
        took < Duration::from_secs(120),
        "ended {took:?} after the delete"
    );
    stage.assert_nothing_left(&agent).await;
    fake.release();
    serve.shutdown().await;
}

/// `timeoutSec` is enforced by the adapter: claude is stopped with its grace, the lines it wrote are collected,
/// and the result says `timedOut` with claude_local's code and words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_timeout_stops_claude_and_keeps_its_last_lines() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"timeoutSec": 5, "graceSec": 3}));
    let started = Instant::now();
    let run = serve
        .execute(&stage.params(&agent, &config, "Slowly [[fake:slow 200 100ms]]", None))
        .await;
    let took = started.elapsed();
    let r = &run.result;
    assert_eq!(r["timedOut"], true, "{}", dump(&run));
    assert_eq!(r["errorCode"], "timeout");
    assert_eq!(r["errorMessage"], "Timed out after 5s");
    let last = r["resultJson"]["lastLines"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        last.iter().any(|l| l
            .as_str()
            .unwrap_or_default()
            .contains("\"subtype\":\"init\"")),
        "the last lines are in the result: {}",
        dump(&run)
    );
    assert!(r["sessionId"].is_string(), "{}", dump(&run));
    // Bounded: 5 s, then the stop (grace 3 s) and the pod's removal, however slow the kubelet is.
    assert!(took < Duration::from_secs(150), "took {took:?}");
    assert!(
        progress_lines(&run)
            .iter()
            .any(|l| l.contains("timed out after 5s")),
        "{}",
        dump(&run)
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// Claude prints its final result but a background shell keeps it from exiting: the adapter stops it after a
/// short grace and the run succeeds with that result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_hang_after_the_result_is_stopped_and_the_run_succeeds() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start_with_env(&stage, &[("CLAUDE_K8S_RESULT_GRACE_SEC", "3")]);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"graceSec": 5}));
    let prompt = r#"Background [[fake:tool Bash {"command":"sleep 600","run_in_background":true}]] [[fake:text all done]]"#;
    let started = Instant::now();
    let run = serve
        .execute(&stage.params(&agent, &config, prompt, None))
        .await;
    let took = started.elapsed();
    let r = &run.result;
    assert_eq!(r["exitCode"], 0, "{}", dump(&run));
    assert!(
        r.get("errorCode").is_none_or(Value::is_null),
        "{}",
        dump(&run)
    );
    assert_eq!(r["summary"], "all done");
    assert!(r["sessionId"].is_string());
    assert!(
        r["resultJson"]["unmanagedBackgroundTask"].is_object(),
        "{}",
        dump(&run)
    );
    assert!(
        progress_lines(&run)
            .iter()
            .any(|l| l.contains("has not exited")),
        "{}",
        dump(&run)
    );
    assert!(took < Duration::from_secs(180), "took {took:?}");
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// A 401 from the model API: claude_local's `claude_auth_required`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_401_is_claude_auth_required() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({}));
    let run = serve
        .execute(&stage.params(&agent, &config, "Auth [[fake:error 401]]", None))
        .await;
    assert_eq!(
        run.result["errorCode"],
        "claude_auth_required",
        "{}",
        dump(&run)
    );
    assert!(
        message(&run).starts_with("Claude run failed"),
        "{}",
        dump(&run)
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// A 429 the CLI retries past: the retry is shown as progress and the run succeeds; a 429 that persists is a
/// transient upstream failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_429_is_retried_visibly_then_succeeds_and_a_lasting_one_is_transient() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({}));
    let run = serve
        .execute(&stage.params(
            &agent,
            &config,
            "Busy [[fake:error 429 times=1]] [[fake:text after the retry]]",
            None,
        ))
        .await;
    assert_eq!(run.result["exitCode"], 0, "{}", dump(&run));
    assert_eq!(run.result["summary"], "after the retry");
    assert!(
        progress_lines(&run)
            .iter()
            .any(|l| l.contains("model API rate-limited (429), retry 1 of 1 in")),
        "{}",
        dump(&run)
    );
    stage.assert_nothing_left(&agent).await;

    let run = serve
        .execute(&stage.params(&agent, &config, "Busy [[fake:error 429]]", None))
        .await;
    assert_eq!(
        run.result["errorCode"],
        "claude_transient_upstream",
        "{}",
        dump(&run)
    );
    assert_eq!(run.result["errorFamily"], "transient_upstream");
    stage.assert_nothing_left(&agent).await;

    // A usage limit that names its reset time: a provider quota, with the time to retry (claude_local's
    // `retryNotBefore`), so Paperclip holds the agent until then.
    let run = serve
        .execute(&stage.params(
            &agent,
            &config,
            "Busy [[fake:error 429 reset=4pm/America/Chicago]]",
            None,
        ))
        .await;
    assert_eq!(run.result["errorCode"], "provider_quota", "{}", dump(&run));
    let at: jiff::Timestamp = run.result["retryNotBefore"]
        .as_str()
        .unwrap_or_else(|| panic!("retryNotBefore: {}", dump(&run)))
        .parse()
        .unwrap();
    let chicago = at.to_zoned(jiff::tz::TimeZone::get("America/Chicago").unwrap());
    assert_eq!((chicago.hour(), chicago.minute()), (16, 0), "{chicago}");
    assert!(at > jiff::Timestamp::now());
    assert_eq!(
        run.result["resultJson"]["providerQuotaRetryNotBefore"],
        run.result["retryNotBefore"]
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// A namespace where the adapter's identity may list Jobs and, later, use Leases (the guard passes) but not create
/// Secrets: first the guard refuses (fails closed, naming the Lease rules), then the run fails at once with
/// `k8s_forbidden`, the API server's own words, and the exact rule to add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_403_at_create_names_the_missing_rule() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::PostParams;

    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let client = stage.admin_client().await;
    let ns = format!("cf-forbidden-{}", stage::short_id());
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

    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"namespace": ns}));

    // Without the Lease rules the one-Job-per-agent guard cannot arbitrate: it refuses (fails closed).
    let run = serve
        .execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
    assert_eq!(
        run.result["errorCode"],
        "k8s_concurrency_guard_unreachable",
        "{}",
        dump(&run)
    );
    assert!(message(&run).contains("forbidden"), "{}", message(&run));
    assert!(
        hint(&run).contains("leases.coordination.k8s.io"),
        "{}",
        hint(&run)
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
    let run = serve
        .execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(run.result["errorCode"], "k8s_forbidden", "{}", dump(&run));
    let msg = message(&run);
    assert!(
        msg.contains("User \"limited\" cannot create resource \"secrets\""),
        "the server's words: {msg}"
    );
    assert!(
        hint(&run).contains("{apiGroups: [\"\"], resources: [\"secrets\"], verbs: [\"create\"]}"),
        "{}",
        dump(&run)
    );
    assert!(
        !run.log_text().contains("retry"),
        "a permission error is not retried: {}",
        dump(&run)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    serve.shutdown().await;
}

/// Cancel while the pod is still Pending (its image cannot be pulled): the Job is deleted, the cancel is
/// acknowledged, nothing is left; a second cancel of the finished run is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn cancel_while_pending_is_acknowledged_and_leaves_nothing() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    // A start grace longer than the test: only the cancel can end this run.
    let mut serve = Serve::start_with_env(&stage, &[("CLAUDE_K8S_START_GRACE_SEC", "600")]);
    let agent = stage::uuid();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"image": "local/missing:1", "graceSec": 2}),
    );
    let id = serve
        .send_execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
    let pending = serve
        .wait_for_log(&id, Duration::from_secs(90), |l| {
            l.contains("claude container ErrImagePull")
                || l.contains("claude container ImagePullBackOff")
        })
        .await;
    assert!(pending, "the pod is stuck pulling");
    serve.cancel(&id).await;
    let run = serve.wait_result(&id).await;
    let ack = &run.result["resultJson"]["executionCancellation"];
    assert_eq!(ack["state"], "acknowledged", "{}", dump(&run));
    assert_eq!(run.result["errorCode"], "cancelled");
    serve.cancel(&id).await;
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// The model API answers 404 for the model: claude_local's `model_not_found`, with Claude's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_404_for_the_model_is_model_not_found() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({}));
    let run = serve
        .execute(&stage.params(&agent, &config, "Model [[fake:error 404]]", None))
        .await;
    assert_eq!(run.result["errorCode"], "model_not_found", "{}", dump(&run));
    assert!(message(&run).contains("selected model"), "{}", dump(&run));
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// claude ends by a signal before any result (here its own tool sends SIGTERM to PID 1, claude): the code and the
/// message say so in words, with the exit code, never "failed because of None".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_claude_terminated_by_a_signal_says_so() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({}));
    let run = serve
        .execute(&stage.params(
            &agent,
            &config,
            "Stop [[fake:bash kill -TERM 1; sleep 30]]",
            None,
        ))
        .await;
    assert_eq!(run.result["exitCode"], 143, "{}", dump(&run));
    assert_eq!(
        run.result["errorCode"],
        "k8s_container_terminated",
        "{}",
        dump(&run)
    );
    let msg = message(&run);
    assert!(
        msg.contains("exit code 143, SIGTERM") && !msg.contains("None"),
        "{msg}"
    );
    assert!(hint(&run).contains("SIGTERM"), "{}", dump(&run));
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// A service account that does not exist: the Job controller cannot create the pod (FailedCreate, visible only in
/// the Job's events). The run does not hang: it fails after the pod-creation timeout, naming the Job and the
/// likely causes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_job_that_gets_no_pod_fails_after_the_pod_creation_timeout() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start_with_env(&stage, &[("CLAUDE_K8S_POD_CREATE_TIMEOUT_SEC", "8")]);
    let agent = stage::uuid();
    let config = stage.agent_config(
        &fake,
        &agent,
        json!({"serviceAccountName": format!("no-such-sa-{}", stage::short_id())}),
    );
    let started = Instant::now();
    let run = serve
        .execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
    let took = started.elapsed();
    assert_eq!(
        run.result["errorCode"],
        "k8s_pod_not_created",
        "{}",
        dump(&run)
    );
    assert!(message(&run).contains("created no pod"), "{}", dump(&run));
    assert!(
        message(&run).contains("latest event: FailedCreate")
            && message(&run).contains("no-such-sa-"),
        "the Job's event names the cause: {}",
        dump(&run)
    );
    assert!(hint(&run).contains("serviceAccountName"), "{}", dump(&run));
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(90),
        "took {took:?}"
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// The Paperclip pod mounts a Secret that does not exist in the Jobs' namespace: the Job pod inherits the volume
/// and stays in ContainerCreating (FailedMount). The run does not hang: it fails after the pending timeout with
/// the mount event's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_pod_stuck_on_a_missing_secret_volume_fails_with_the_mount_event() {
    use kube::api::PostParams;

    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let client = stage.admin_client().await;
    let missing = format!("no-such-secret-{}", stage::short_id());
    let stand_in = format!("paperclip-mounts-{}", stage::short_id());
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
    let pods: Api<Pod> = Api::namespaced(client, "paperclip");
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let mut serve = Serve::start_with_env(
        &stage,
        &[
            ("CLAUDE_K8S_SELF_POD", &format!("paperclip/{stand_in}")),
            ("CLAUDE_K8S_PENDING_TIMEOUT_SEC", "15"),
        ],
    );
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({}));
    let started = Instant::now();
    let run = serve
        .execute(&stage.params(&agent, &config, "[[fake:text never]]", None))
        .await;
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
        dump(&run)
    );
    let msg = message(&run);
    assert!(
        msg.contains("FailedMount") && msg.contains(&missing),
        "the mount event's words: {msg}"
    );
    assert!(took < Duration::from_secs(120), "took {took:?}");
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}

/// Someone deletes the Job, and Paperclip cancels the run right after: the cancel is still acknowledged (twice
/// is fine), and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_cancel_after_the_job_vanished_is_acknowledged() {
    let stage = Stage::load();
    let fake = FakeAnthropic::start("127.0.0.1:0").await.unwrap();
    let mut serve = Serve::start(&stage);
    let agent = stage::uuid();
    let config = stage.agent_config(&fake, &agent, json!({"graceSec": 2}));
    let id = serve
        .send_execute(&stage.params(&agent, &config, "Hold [[fake:hold Working]]", None))
        .await;
    assert!(fake.wait_for_held(Duration::from_secs(120)).await);
    let name = job_name(&stage, &agent).await;
    let jobs: Api<Job> = Api::namespaced(stage.admin_client().await, "paperclip");
    jobs.delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    serve.cancel(&id).await;
    serve.cancel(&id).await;
    let run = serve.wait_result(&id).await;
    fake.release();
    assert_eq!(run.result["errorCode"], "cancelled", "{}", dump(&run));
    assert_eq!(
        run.result["resultJson"]["executionCancellation"]["state"],
        "acknowledged",
        "{}",
        dump(&run)
    );
    stage.assert_nothing_left(&agent).await;
    serve.shutdown().await;
}
