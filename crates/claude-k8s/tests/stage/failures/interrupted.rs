//! Runs whose container or objects end under them: someone deletes the Job or the pod, Paperclip cancels while
//! pending or after the Job vanished, the memory limit kills claude, a signal ends it.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;

use crate::support::{NAMESPACE, Stage, World};

/// Waits (by polling the API, bounded) until the agent's pod runs claude; returns the pod's name.
async fn running_pod(stage: &Stage, agent: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pods = stage.agent_pods(NAMESPACE, agent).await;
        if let Some(p) = pods
            .iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        {
            return p.metadata.name.clone().unwrap();
        }
        assert!(Instant::now() < deadline, "no running pod for {agent}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Deletes the agent's Job as someone else would; its name.
async fn delete_the_job(stage: &Stage, agent: &str) -> String {
    let name = stage.job_name(agent).await;
    Api::<Job>::namespaced(stage.admin_client().await, NAMESPACE)
        .delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    name
}

/// Someone deletes the Job while claude runs: the run ends promptly with that cause, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_job_deleted_mid_run_ends_the_run_promptly_with_that_cause() {
    let mut world = World::start().await;
    let (agent, id) = world
        .start_held_run(json!({"graceSec": 5}), "Hold [[fake:hold Working]]")
        .await;
    let deleted = Instant::now();
    let name = delete_the_job(&world.stage, &agent).await;
    let noticed = world
        .serve
        .wait_for_log(&id, Duration::from_secs(30), |l| {
            l.starts_with("[claude-k8s]") && l.contains("was deleted by someone else")
        })
        .await;
    assert!(noticed, "the deletion was noticed at once");
    let run = world.serve.wait_result(&id).await;
    let took = deleted.elapsed();
    assert_eq!(
        run.result["errorCode"],
        "k8s_job_deleted_externally",
        "{}",
        run.dump()
    );
    let msg = run.message();
    assert!(
        msg.contains(&name) && msg.contains("deleted by someone else"),
        "{msg}"
    );
    assert!(run.hint().contains("kubectl delete job"), "{}", run.dump());
    // Bounded: the cause is reported at once; cleanup then waits for the pod to be gone, which takes the kubelet
    // a while on a loaded machine.
    assert!(
        took < Duration::from_secs(120),
        "ended {took:?} after the delete"
    );
    world.finish().await;
}

/// Someone deletes the pod (not the Job) while claude runs: the run ends with that cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_pod_deleted_mid_run_ends_the_run_with_that_cause() {
    let mut world = World::start().await;
    let (agent, id) = world
        .start_held_run(json!({"graceSec": 5}), "Hold [[fake:hold Working]]")
        .await;
    let pod = running_pod(&world.stage, &agent).await;
    let pods: Api<Pod> = Api::namespaced(world.stage.admin_client().await, NAMESPACE);
    let deleted = Instant::now();
    pods.delete(&pod, &DeleteParams::default()).await.unwrap();
    let run = world.serve.wait_result(&id).await;
    let took = deleted.elapsed();
    assert_eq!(run.result["errorCode"], "k8s_pod_deleted", "{}", run.dump());
    assert!(
        run.message().contains("deleted by someone else"),
        "{}",
        run.dump()
    );
    assert!(
        took < Duration::from_secs(120),
        "ended {took:?} after the delete"
    );
    world.finish().await;
}

/// Someone deletes the Job, and Paperclip cancels the run right after: the cancel is still acknowledged (twice
/// is fine), and nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_cancel_after_the_job_vanished_is_acknowledged() {
    let mut world = World::start().await;
    let (agent, id) = world
        .start_held_run(json!({"graceSec": 2}), "Hold [[fake:hold Working]]")
        .await;
    delete_the_job(&world.stage, &agent).await;
    world.serve.cancel(&id).await;
    world.serve.cancel(&id).await;
    let run = world.serve.wait_result(&id).await;
    world.fake.release();
    assert_eq!(run.result["errorCode"], "cancelled", "{}", run.dump());
    assert_eq!(
        run.result["resultJson"]["executionCancellation"]["state"],
        "acknowledged",
        "{}",
        run.dump()
    );
    world.finish().await;
}

/// Cancel while the pod is still Pending (its image cannot be pulled): the Job is deleted, the cancel is
/// acknowledged, nothing is left; a second cancel of the finished run is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn cancel_while_pending_is_acknowledged_and_leaves_nothing() {
    // A start grace longer than the test: only the cancel can end this run.
    let mut world = World::start_with_env(&[("CLAUDE_K8S_START_GRACE_SEC", "600")]).await;
    let (agent, config) = world.new_agent(json!({"image": "local/missing:1", "graceSec": 2}));
    let id = world.send(&agent, &config, "[[fake:text never]]").await;
    let pending = world
        .serve
        .wait_for_log(&id, Duration::from_secs(90), |l| {
            l.contains("claude container ErrImagePull")
                || l.contains("claude container ImagePullBackOff")
        })
        .await;
    assert!(pending, "the pod is stuck pulling");
    world.serve.cancel(&id).await;
    let run = world.serve.wait_result(&id).await;
    let ack = &run.result["resultJson"]["executionCancellation"];
    assert_eq!(ack["state"], "acknowledged", "{}", run.dump());
    assert_eq!(run.result["errorCode"], "cancelled");
    world.serve.cancel(&id).await;
    world.finish().await;
}

/// A memory limit claude itself exceeds: "claude container OOMKilled (limit …)", never "because of None".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_memory_limit_claude_exceeds_is_reported_as_oom_killed_with_the_limit() {
    let mut world = World::start().await;
    let (agent, config) = world
        .new_agent(json!({"resources.requests.memory": "24Mi", "resources.limits.memory": "24Mi"}));
    let run = world.run(&agent, &config, "[[fake:text hi]]").await;
    assert_eq!(run.result["errorCode"], "k8s_oom_killed", "{}", run.dump());
    assert_eq!(run.result["exitCode"], 137, "{}", run.dump());
    let msg = run.message();
    assert!(
        msg.contains("claude container OOMKilled (limit 24Mi)"),
        "{msg}"
    );
    assert!(!msg.contains("None"), "{msg}");
    assert!(run.hint().contains("limits.memory"), "{}", run.dump());
    world.finish().await;
}

/// claude ends by a signal before any result (here its own tool sends SIGTERM to PID 1, claude): the code and the
/// message say so in words, with the exit code, never "failed because of None".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real stage: make cluster-up"]
async fn a_claude_terminated_by_a_signal_says_so() {
    let mut world = World::start().await;
    let (agent, config) = world.new_agent(json!({}));
    let run = world
        .run(&agent, &config, "Stop [[fake:bash kill -TERM 1; sleep 30]]")
        .await;
    assert_eq!(run.result["exitCode"], 143, "{}", run.dump());
    assert_eq!(
        run.result["errorCode"],
        "k8s_container_terminated",
        "{}",
        run.dump()
    );
    let msg = run.message();
    assert!(
        msg.contains("exit code 143, SIGTERM") && !msg.contains("None"),
        "{msg}"
    );
    assert!(run.hint().contains("SIGTERM"), "{}", run.dump());
    world.finish().await;
}
