//! Cleanup, in one vocabulary:
//! - [`remove_job`]: delete the Job object with Background propagation; the garbage collector deletes its pods,
//!   each with its termination grace (`graceSec`), so claude gets SIGTERM, then SIGKILL. Also how the adapter
//!   stops claude (timeout, hang after the result).
//! - [`after_exit`]: claude ended by itself. Before the result is reported the Job is removed (or, with
//!   `retainJobs`, marked as reported), so the agent's next run is not held up by it. The run Secret goes with the
//!   agent's Lease, its owner, when the claim is released: the garbage collector deletes it, no request of ours.
//! - [`after_stop`]: the run was stopped (cancel, timeout, failure): the Job is removed with `graceSec` whatever
//!   `retainJobs` says, and the result waits until its pods are gone.
//! - [`remove_exited_pods`]: the pod of a claude that exited by itself runs nothing and is force-deleted (grace
//!   0) 0.3 s after the result.
//! - [`await_pods_gone`]: waits until a stopped Job's pods are gone. They get their grace, but a kubelet or container
//!   runtime can get stuck stopping a container (seen on the 1.20 stage: a `StopContainer` call hanging for a minute
//!   when the stop came right after the container started), so the wait is bounded: after the grace plus a slack,
//!   the remaining pods are force-deleted and the stop is reported as forced.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use serde_json::json;

use crate::k8s::errors::{api_error, is_not_found};
use crate::k8s::labels;
use crate::run::launch::JobRef;
use crate::run::prepare::Prepared;

/// How long past their grace the pods may take before they are force-deleted.
const SLACK: Duration = Duration::from_secs(15);
/// How long force-deleted pods may take to leave the API.
const FORCED_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodsGone {
    /// Gone within their grace (plus slack).
    Graceful,
    /// Gone after a force delete.
    Forced,
    /// Still present even after a force delete (or the API could not be reached).
    Stuck,
}

/// Deletes the Job with Background propagation (its pods follow through the garbage collector); a Job that is
/// already gone is fine. `grace` overrides the Job object's own deletion grace.
pub async fn remove_job(run: &Prepared<'_>, job_name: &str, grace: Option<u32>) {
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        grace_period_seconds: grace,
        ..Default::default()
    };
    if let Err(e) = run.api::<Job>().delete(job_name, &dp).await
        && !is_not_found(&e)
    {
        run.sink
            .warn(&api_error(&format!("delete Job {job_name}"), &e));
    }
}

/// A claimed Job, by name, for removal without its run: a run that panicked leaves nothing else to go by.
pub struct Abandoned {
    jobs: Api<Job>,
    secrets: Api<Secret>,
    job: String,
}

impl Abandoned {
    pub fn of(run: &Prepared<'_>, job: &str) -> Self {
        Self {
            jobs: run.api(),
            secrets: run.api(),
            job: job.to_owned(),
        }
    }

    /// The Job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// Deletes the Job (Background propagation: its pods get their grace) and its run Secret; an object that is
    /// already gone is fine. The error says what could not be deleted.
    pub async fn remove(self) -> Result<(), String> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        let job = match self.jobs.delete(&self.job, &dp).await {
            Err(e) if !is_not_found(&e) => Err(api_error(&format!("delete Job {}", self.job), &e)),
            _ => Ok(()),
        };
        let secret = labels::run_secret_name(&self.job);
        match self.secrets.delete(&secret, &DeleteParams::default()).await {
            Err(e) if !is_not_found(&e) => Err(api_error(&format!("delete Secret {secret}"), &e)),
            _ => job,
        }
    }
}

/// Claude ended by itself: the Job is removed (or, with `retainJobs`, kept, marked as reported and made the owner
/// of its run Secret); the run Secret of a removed Job goes with the agent's Lease (deleted here by name only when
/// it has no such owner). Returns the Job whose
/// pods are still to be removed ([`remove_exited_pods`]), off the result's path.
pub async fn after_exit(run: &Prepared<'_>, job: &JobRef) -> Option<JobRef> {
    if !job.secret_owned {
        remove_run_secret(run, &job.name).await;
    }
    if !run.config.retain_jobs {
        remove_job(run, &job.name, None).await;
        return Some(job.clone());
    }
    run.sink.progress(&format!(
        "retainJobs is set: Job {} is kept (TTL {}s)",
        job.name, run.config.ttl_seconds_after_finished
    ));
    // The kept Job keeps its run Secret (`claude-k8s logs` reads it to mask the run's secrets): the Job owns it
    // from now on, before the Lease that owned it is released and the garbage collector would follow.
    if job.secret_owned {
        let owner = json!({"metadata": {"ownerReferences": [job.owner_reference()]}});
        let secret = labels::run_secret_name(&job.name);
        if let Err(e) = run
            .api::<Secret>()
            .patch(&secret, &PatchParams::default(), &Patch::Merge(&owner))
            .await
        {
            run.sink.warn(&api_error(
                &format!("give the kept Job {} its run Secret {secret}", job.name),
                &e,
            ));
        }
    }
    // Its result is reported now: a later run must not adopt it as one that finished unwatched.
    let patch = json!({"metadata": {"annotations": {labels::RESULT_REPORTED: run.params.run_id}}});
    if let Err(e) = run
        .api::<Job>()
        .patch(&job.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        run.sink.warn(&api_error(
            &format!("mark Job {} as reported", job.name),
            &e,
        ));
    }
    None
}

/// The run was stopped (cancel, timeout, failure): removes the Job with the configured grace and its Secret, and
/// waits until its pods are gone, force-deleting a pod that outlives its grace. Always, whatever `retainJobs`
/// says: a stopped run must not keep running.
pub async fn after_stop(run: &Prepared<'_>, job: &JobRef) -> PodsGone {
    let grace = run.config.grace_sec.min(u32::MAX as u64) as u32;
    remove_job(run, &job.name, Some(grace)).await;
    remove_run_secret(run, &job.name).await;
    let gone = await_pods_gone(run, job).await;
    match gone {
        PodsGone::Graceful => {}
        PodsGone::Forced => run.sink.warn(&format!(
            "the pod of Job {} outlived its grace period and was force-deleted",
            job.name
        )),
        PodsGone::Stuck => run.sink.warn(&format!(
            "pods of Job {} are still present after a force delete",
            job.name
        )),
    }
    gone
}

/// Claude exited by itself: its pod runs nothing any more, so there is no graceful stop to wait for, and a graceful
/// delete costs the node's kubelet requests of its own (reading the pod again, patching its status, deleting it; a
/// 1.20 kubelet allows itself 5 a second by default, which the next run's pod start then waits for). The pod is
/// force-deleted once [`EXITED_WAIT`] has passed, unless it went by itself.
pub async fn remove_exited_pods(run: &Prepared<'_>, job: &JobRef) -> PodsGone {
    wait_or_force(run, job, EXITED_WAIT, true).await
}

/// Waits until the stopped Job's pods are gone, force-deleting them when they outlive `graceSec` plus a slack.
async fn await_pods_gone(run: &Prepared<'_>, job: &JobRef) -> PodsGone {
    let grace = Duration::from_secs(run.config.grace_sec);
    wait_or_force(run, job, grace.saturating_add(SLACK), false).await
}

/// Deletes the run Secret by name now, without waiting for the garbage collector to follow its owner: a stopped
/// run, an adopted Job's, and before the retry of an unknown session (whose Secret has the same name).
pub async fn remove_run_secret(run: &Prepared<'_>, job_name: &str) {
    let _ = run
        .api::<Secret>()
        .delete(&labels::run_secret_name(job_name), &DeleteParams::default())
        .await;
}

/// Waits `wait` for the Job's pods to go, then force-deletes (grace 0) those left and waits until they have left the
/// API. `exited`: claude had exited (the force delete is expected, not worth a warning).
async fn wait_or_force(run: &Prepared<'_>, job: &JobRef, wait: Duration, exited: bool) -> PodsGone {
    if pods_gone_within(run, job, wait).await {
        return PodsGone::Graceful;
    }
    let pods = run.api::<Pod>();
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    // The shared store names them without a request; the API when it is not synced.
    let stored = run
        .watches
        .pods
        .select(|p| crate::k8s::watches::Routed::route(p).as_deref() == Some(job.uid.as_str()));
    let names = match stored {
        Some(pods) => pods.into_iter().filter_map(|p| p.metadata.name).collect(),
        None => match pods.list(&ListParams::default().labels(&job.pods)).await {
            Ok(list) => list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect(),
            Err(_) => Vec::new(),
        },
    };
    for name in names {
        if exited {
            tracing::debug!(pod = %name, "claude has exited: force-deleting its pod");
        } else {
            tracing::warn!(pod = %name, "pod outlived its grace period: force-deleting it");
        }
        if let Err(e) = pods.delete(&name, &force).await
            && !is_not_found(&e)
        {
            tracing::warn!(pod = %name, error = %e, "force delete failed");
        }
    }
    if pods_gone_within(run, job, FORCED_WAIT).await {
        PodsGone::Forced
    } else {
        PodsGone::Stuck
    }
}

/// How long the pod of a claude that exited may take to go by itself before it is force-deleted. Not at once: the
/// agent's next run may start the moment the result is out, and on the stage its Lease, run Secret and Job creates
/// took 53 ms p50 instead of 18 ms when the force delete (and what it sets off in the API server and the kubelet)
/// came at the same moment; 300 ms later they are done, and the next pods' starts were as quick as with a force
/// delete at once (BENCHMARKS.md, by hand).
const EXITED_WAIT: Duration = Duration::from_millis(300);

/// How often a wait for pods to be gone looks at the shared store again without a change of the Job's pods (it
/// may have been catching up with the API server).
const RECHECK: Duration = Duration::from_secs(1);

/// Waits until the shared pod watch, synced, holds no pod of the Job; false on timeout.
async fn pods_gone_within(run: &Prepared<'_>, job: &JobRef, timeout: Duration) -> bool {
    let store = &run.watches.pods;
    // Subscribed before the first look, so no deletion falls between the look and the wait.
    let mut changes = store.subscribe(&job.uid);
    let gone = async {
        while store.none_of(&job.uid) != Some(true) {
            if let Ok(None) = tokio::time::timeout(RECHECK, changes.next()).await {
                // The store is gone (the process is ending): no change will come.
                tokio::time::sleep(RECHECK).await;
            }
        }
    };
    tokio::time::timeout(timeout, gone).await.is_ok()
}
