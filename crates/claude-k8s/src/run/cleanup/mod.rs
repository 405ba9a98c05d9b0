//! Making sure a stopped run's pods are really gone before the run is reported stopped.
//!
//! Deleting the Job (Background propagation) has the garbage collector delete its pods, each with its termination
//! grace (`graceSec`). A kubelet or container runtime can get stuck stopping a container (seen on the 1.20 stage:
//! a `StopContainer` call hanging for a minute when the stop came right after the container started). So the
//! wait is bounded: after the grace plus a slack, the remaining pods are force-deleted (grace 0) and the stop is
//! reported as forced.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

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

/// Waits until the pods `selector` picks (one Job's: [`labels::pods_of`]) are gone, force-deleting them when
/// they outlive `grace` plus a slack.
pub async fn ensure_pods_gone(pods: &Api<Pod>, selector: &str, grace: Duration) -> PodsGone {
    if wait_pods_gone(pods, selector, grace + SLACK).await {
        return PodsGone::Graceful;
    }
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    if let Ok(list) = pods.list(&ListParams::default().labels(selector)).await {
        for pod in list.items {
            let name = pod.metadata.name.unwrap_or_default();
            tracing::warn!(pod = %name, "pod outlived its grace period: force-deleting it");
            if let Err(e) = pods.delete(&name, &force).await {
                tracing::warn!(pod = %name, error = %e, "force delete failed");
            }
        }
    }
    if wait_pods_gone(pods, selector, FORCED_WAIT).await {
        PodsGone::Forced
    } else {
        PodsGone::Stuck
    }
}

/// Waits, by watch, until no pod `selector` picks is left; false on timeout.
pub async fn wait_pods_gone(pods: &Api<Pod>, selector: &str, timeout: Duration) -> bool {
    let remaining = async {
        let mut stream =
            watcher::watcher(pods.clone(), watcher::Config::default().labels(selector))
                .default_backoff()
                .boxed();
        let mut present = BTreeSet::new();
        let mut listed = false;
        while let Ok(Some(event)) = stream.try_next().await {
            match event {
                Event::Init => present.clear(),
                Event::InitApply(p) | Event::Apply(p) => {
                    present.insert(p.metadata.name.unwrap_or_default());
                }
                Event::Delete(p) => {
                    present.remove(&p.metadata.name.unwrap_or_default());
                }
                Event::InitDone => listed = true,
            }
            if listed && present.is_empty() {
                return;
            }
        }
    };
    tokio::time::timeout(timeout, remaining).await.is_ok()
}
