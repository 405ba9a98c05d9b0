//! Operator commands: `jobs` lists the adapter's Jobs, `logs` prints a run's transcript, `gc` removes what runs
//! left behind. They select by the labels in [`crate::k8s::labels`], never by name patterns.

use std::process::ExitCode;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::k8s::clients::{Clients, KubeCtx};
use crate::k8s::labels;
use crate::run::claim::guard;
use crate::run::follow::pod_state;
use crate::run::plan::CLAUDE_CONTAINER;
use crate::settings::Settings;

async fn connect(kubeconfig: Option<&str>) -> Result<KubeCtx, ExitCode> {
    Clients::default().get(kubeconfig).await.map_err(|e| {
        eprintln!("claude-k8s: {e}");
        ExitCode::FAILURE
    })
}

fn managed() -> ListParams {
    ListParams::default().labels_from(&labels::managed())
}

fn state(job: &Job) -> &'static str {
    if job.metadata.deletion_timestamp.is_some() {
        "Deleting"
    } else if guard::has_condition(job, "Complete") {
        "Complete"
    } else if guard::has_condition(job, "Failed") {
        "Failed"
    } else if job.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0 {
        "Running"
    } else {
        "Pending"
    }
}

fn label<'a>(job: &'a Job, key: &str) -> &'a str {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
        .unwrap_or("-")
}

pub async fn jobs(kubeconfig: Option<String>, namespace: Option<String>) -> ExitCode {
    let kube = match connect(kubeconfig.as_deref()).await {
        Ok(k) => k,
        Err(code) => return code,
    };
    let api: Api<Job> = match &namespace {
        Some(ns) => Api::namespaced(kube.client.clone(), ns),
        None => Api::all(kube.client.clone()),
    };
    match api.list(&managed()).await {
        Ok(list) => {
            println!(
                "{:<14} {:<48} {:<9} {:<38} {:<38}",
                "NAMESPACE", "JOB", "STATE", "AGENT", "RUN"
            );
            for j in &list.items {
                println!(
                    "{:<14} {:<48} {:<9} {:<38} {:<38}",
                    j.metadata.namespace.as_deref().unwrap_or("-"),
                    j.metadata.name.as_deref().unwrap_or("-"),
                    state(j),
                    label(j, labels::AGENT_ID),
                    label(j, labels::RUN_ID)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("claude-k8s jobs: cannot list Jobs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the claude container's log of the run whose Job is `job` (or whose run id is `job`), following it
/// while it runs when `follow` is set, with the secrets its pod was given masked ([`super::log_mask`]). Both go through the run's own log follower
/// ([`crate::run::follow::logs::follow`]): lines decoded whole, long lines the runtime cut joined again, and a
/// stream that breaks while claude runs (a cut connection, an API server restart, a silence longer than the
/// settings' log silence) reopened from the last line printed, so none is lost or repeated.
pub async fn logs(
    settings: &Settings,
    kubeconfig: Option<String>,
    namespace: String,
    job: String,
    follow: bool,
) -> ExitCode {
    let kube = match connect(kubeconfig.as_deref()).await {
        Ok(k) => k,
        Err(code) => return code,
    };
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &namespace);
    let by_job = ListParams::default().labels(&format!("{}={job}", labels::JOB_NAME));
    let by_run =
        ListParams::default().labels(&format!("{}={}", labels::RUN_ID, labels::label_value(&job)));
    let mut found = pods
        .list(&by_job)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    if found.is_empty() {
        found = pods
            .list(&by_run)
            .await
            .map(|l| l.items)
            .unwrap_or_default();
    }
    let Some((pod, pod_object)) = found
        .into_iter()
        .next()
        .and_then(|p| Some((p.metadata.name.clone()?, p)))
    else {
        eprintln!("claude-k8s logs: no pod for Job or run `{job}` in namespace {namespace}");
        return ExitCode::FAILURE;
    };
    // The secrets the pod was given are masked in every line, as in the run's log in Paperclip.
    let masker = super::log_mask::for_pod(
        &Api::namespaced(kube.client.clone(), &namespace),
        &pod_object,
    )
    .await;
    // Without --follow the follower reads what is there once; with it, until claude's container has ended.
    let (ended_tx, ended_rx) = watch::channel(!follow);
    let watch_pod =
        follow.then(|| tokio::spawn(signal_claude_end(pods.clone(), pod.clone(), ended_tx)));
    // The run's own follower, bounded the same way (lines over the limit cut behind a marker). Nothing is ever
    // queued in its outbox: the lines go straight to stdout, which holds the follower back as it is read.
    let max_line = settings.max_line_bytes();
    let (outbox, _never_written) = crate::serve::outbox::outbox(usize::MAX);
    let (tx, mut lines) = crate::run::follow::logs::channel(max_line, outbox);
    let follower = tokio::spawn(crate::run::follow::logs::follow(
        pods.clone(),
        pod.clone(),
        tx,
        ended_rx,
        settings.log_silence(),
        max_line,
    ));
    let mut printed = 0u64;
    while let Some(line) = lines.recv().await {
        println!("{}", masker.mask(&line));
        printed += 1;
    }
    if let Some(task) = watch_pod {
        task.abort();
    }
    let _ = follower.await;
    if printed == 0 && !follow {
        // The follower retries quietly; say why nothing came (no pods/log permission, container not started).
        let probe = LogParams {
            container: Some(CLAUDE_CONTAINER.into()),
            limit_bytes: Some(1),
            ..Default::default()
        };
        if let Err(e) = pods.logs(&pod, &probe).await {
            eprintln!("claude-k8s logs: cannot read the log of pod {pod}: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!(
            "claude-k8s logs: pod {pod} has written no log line yet (--follow waits for them)"
        );
    }
    ExitCode::SUCCESS
}

/// Turns `ended` true once the pod's claude container has terminated, the pod has finished or it is gone.
async fn signal_claude_end(pods: Api<Pod>, pod: String, ended: watch::Sender<bool>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={pod}"));
    let mut events = watcher::watcher(pods, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let over = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => claude_over(&p),
            Ok(watcher::Event::Delete(_)) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(error = %e, "pod watch error (retried)");
                false
            }
        };
        if over {
            let _ = ended.send(true);
            return;
        }
    }
}

/// Whether claude will write no more: its container terminated, or the pod finished.
fn claude_over(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
        || pod_state::view(pod, &pod_state::Limits::default())
            .claude_end
            .is_some()
}

/// Deletes finished Jobs of the adapter (their pods with them) and run Secrets whose Job is gone.
pub async fn gc(kubeconfig: Option<String>, namespace: String, dry_run: bool) -> ExitCode {
    let kube = match connect(kubeconfig.as_deref()).await {
        Ok(k) => k,
        Err(code) => return code,
    };
    let jobs: Api<Job> = Api::namespaced(kube.client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(kube.client.clone(), &namespace);
    let (job_list, secret_list) =
        match (jobs.list(&managed()).await, secrets.list(&managed()).await) {
            (Ok(j), Ok(s)) => (j.items, s.items),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("claude-k8s gc: cannot list: {e}");
                return ExitCode::FAILURE;
            }
        };
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut failed = false;
    for j in job_list
        .iter()
        .filter(|j| matches!(state(j), "Complete" | "Failed"))
    {
        let name = j.metadata.name.clone().unwrap_or_default();
        if !dry_run && let Err(e) = jobs.delete(&name, &DeleteParams::background()).await {
            eprintln!("cannot delete Job {name}: {e}");
            failed = true;
            continue;
        }
        println!("{verb} Job {name} ({})", state(j));
    }
    let live: Vec<String> = job_list
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    for s in &secret_list {
        let name = s.metadata.name.clone().unwrap_or_default();
        let owner_alive = live.iter().any(|j| labels::run_secret_name(j) == name);
        if owner_alive {
            continue;
        }
        if !dry_run && let Err(e) = secrets.delete(&name, &DeleteParams::default()).await {
            eprintln!("cannot delete Secret {name}: {e}");
            failed = true;
            continue;
        }
        println!("{verb} orphaned run Secret {name}");
    }
    // Agent Leases whose holder Job ended or never came (a serve process died holding one): harmless, since
    // the next run takes a stale Lease over, but clutter.
    let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &namespace);
    match leases.list(&managed()).await {
        Ok(list) => {
            let now = jiff::Timestamp::now();
            for lease in &list.items {
                let name = lease.metadata.name.clone().unwrap_or_default();
                let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
                let holder_job = job_list
                    .iter()
                    .find(|j| j.metadata.name.is_some() && j.metadata.name == holder);
                if guard::lease_state(lease, holder_job, "", now) != guard::LeaseState::Stale {
                    continue;
                }
                if !dry_run && let Err(e) = leases.delete(&name, &DeleteParams::default()).await {
                    eprintln!("cannot delete Lease {name}: {e}");
                    failed = true;
                    continue;
                }
                println!("{verb} stale agent Lease {name}");
            }
        }
        Err(e) => {
            eprintln!("claude-k8s gc: cannot list Leases: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pod(phase: &str, claude_state: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "claude-pod"},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "claude", "ready": false, "restartCount": 0, "image": "agent", "imageID": "",
                "state": claude_state
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn claude_is_over_once_its_container_terminated_or_the_pod_finished() {
        assert!(!claude_over(&pod(
            "Pending",
            json!({"waiting": {"reason": "ContainerCreating"}})
        )));
        assert!(!claude_over(&pod("Running", json!({"running": {}}))));
        assert!(claude_over(&pod(
            "Running",
            json!({"terminated": {"exitCode": 0}})
        )));
        assert!(claude_over(&pod("Failed", json!({"waiting": {}}))));
        assert!(claude_over(&pod("Succeeded", json!({}))));
    }
}
