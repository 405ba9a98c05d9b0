//! The pods bound to the simulated node: one watch for all of them, and for each a player that takes it through
//! a kubelet's steps (init containers done, containers running, terminated; a graceful deletion finished with
//! a deletion of grace 0), reporting each step through `pods/status`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};

use crate::logs::Container;
use crate::script::{Defaults, End, Script, Transcripts, until};
use crate::status::{self, PodInfo};

/// What the API server wants of a pod's containers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Request {
    Live,
    /// The pod is being deleted: SIGTERM now, SIGKILL at its deletion timestamp.
    Delete {
        sigterm: Timestamp,
        kill: Timestamp,
    },
    /// The pod object is gone.
    Gone,
}

/// One pod the node plays.
pub struct Entry {
    pub info: PodInfo,
    pub script: Arc<Script>,
    /// The played container's state; the log endpoint follows it.
    pub state: watch::Sender<Container>,
    request: watch::Sender<Request>,
}

/// Every pod on the node, by namespace and name.
#[derive(Default)]
pub struct Registry {
    pods: Mutex<HashMap<(String, String), Arc<Entry>>>,
}

impl Registry {
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Entry>> {
        let pods = self.pods.lock().expect("registry lock");
        pods.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    pub fn len(&self) -> usize {
        self.pods.lock().expect("registry lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, key: &(String, String), uid: Option<&str>) {
        let mut pods = self.pods.lock().expect("registry lock");
        if let Some(e) = pods.get(key)
            && uid.is_none_or(|u| u == e.info.uid)
        {
            e.request.send_replace(Request::Gone);
            pods.remove(key);
        }
    }
}

/// How the node plays pods.
pub struct Player {
    pub client: Client,
    pub node: String,
    pub transcripts: Transcripts,
    pub defaults: Defaults,
    /// How long the init containers take.
    pub init: Duration,
    /// At most this many status writes and deletions in flight (the API server's inflight limits are shared
    /// with everyone else on the stage).
    pub writes: Arc<Semaphore>,
    pub registry: Arc<Registry>,
}

impl Player {
    /// Watches the pods bound to the node and plays each. Runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
        // Pods seen in the current (re)list: those missing from it were deleted while the watch was down.
        let mut relist: Option<HashSet<(String, String)>> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => relist = Some(HashSet::new()),
                Ok(Event::InitApply(pod)) => {
                    if let (Some(seen), Some(key)) = (relist.as_mut(), key_of(&pod)) {
                        seen.insert(key);
                    }
                    self.apply(&pod);
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        let gone: Vec<_> = {
                            let pods = self.registry.pods.lock().expect("registry lock");
                            pods.keys()
                                .filter(|k| !seen.contains(*k))
                                .cloned()
                                .collect()
                        };
                        for key in gone {
                            self.registry.remove(&key, None);
                        }
                    }
                }
                Ok(Event::Apply(pod)) => self.apply(&pod),
                Ok(Event::Delete(pod)) => {
                    if let Some(key) = key_of(&pod) {
                        self.registry.remove(&key, pod.metadata.uid.as_deref());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "pod watch error (the watcher retries)"),
            }
        }
    }

    fn apply(self: &Arc<Self>, pod: &Pod) {
        let (Some(key), Some(uid)) = (key_of(pod), pod.metadata.uid.as_deref()) else {
            return;
        };
        let deletion = pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|t| Request::Delete {
                sigterm: Timestamp::now(),
                kill: t.0,
            });
        let existing = self.registry.get(&key.0, &key.1);
        if let Some(e) = &existing
            && e.info.uid == uid
        {
            if let Some(d) = deletion {
                e.request.send_if_modified(|r| {
                    let first = *r == Request::Live;
                    if first {
                        *r = d;
                    }
                    first
                });
            }
            return;
        }
        if existing.is_some() {
            // Same name, new pod: the old one is gone.
            self.registry.remove(&key, None);
        }
        let Some(info) = PodInfo::from_pod(pod) else {
            return;
        };
        let script = Arc::new(Script::from_env(
            &info.env,
            &self.transcripts,
            &self.defaults,
        ));
        let observed = status::observed(pod, &info).or_else(|| {
            // Finished before this node saw it (not by this node): nothing to play, only its deletion to finish.
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            matches!(phase, Some("Succeeded" | "Failed")).then(|| {
                let now = Timestamp::now();
                let end = End {
                    at: now,
                    exit_code: i32::from(phase == Some("Failed")),
                };
                (now, Container::Terminated { started: now, end })
            })
        });
        let (state, _) = watch::channel(observed.map_or(Container::Waiting, |(_, c)| c));
        let (request, _) = watch::channel(deletion.unwrap_or(Request::Live));
        let entry = Arc::new(Entry {
            info,
            script,
            state,
            request,
        });
        tracing::debug!(pod = %key.1, namespace = %key.0, transcript = %entry.script.transcript.name, "playing");
        self.registry
            .pods
            .lock()
            .expect("registry lock")
            .insert(key.clone(), entry.clone());
        let player = self.clone();
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(player.client.clone(), &key.0);
            player.play(&api, &entry, observed.map(|(t, _)| t)).await;
        });
    }

    /// One pod's life, from where `init_started` (a previous run of this node) left it.
    async fn play(&self, api: &Api<Pod>, e: &Entry, init_started: Option<Timestamp>) {
        let mut request = e.request.subscribe();
        let info = &e.info;
        let init_started = match init_started {
            Some(t) => t,
            None => {
                let t0 = Timestamp::now();
                if !self.write(api, info, status::pending(info, t0)).await {
                    return;
                }
                let init = tokio::time::sleep(self.init);
                tokio::pin!(init);
                loop {
                    if *request.borrow_and_update() != Request::Live {
                        return self.finish(api, e, &mut request).await;
                    }
                    tokio::select! {
                        _ = &mut init => break,
                        _ = request.changed() => {}
                    }
                }
                t0
            }
        };
        let current = *e.state.borrow();
        let started = match current {
            Container::Waiting => None,
            Container::Running { started } => Some(started),
            Container::Terminated { .. } => return self.finish(api, e, &mut request).await,
        };
        let started = match started {
            Some(s) => s,
            None => {
                let s = Timestamp::now();
                e.state.send_replace(Container::Running { started: s });
                if !self
                    .write(api, info, status::running(info, init_started, s))
                    .await
                {
                    return;
                }
                s
            }
        };
        let mut end = e.script.natural_end(started);
        loop {
            match *request.borrow_and_update() {
                Request::Live => {}
                Request::Delete { sigterm, kill } => {
                    end = e.script.stopped_end(started, sigterm, kill);
                }
                Request::Gone => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(until(end.at)) => break,
                changed = request.changed() => if changed.is_err() { return },
            }
        }
        e.state.send_replace(Container::Terminated { started, end });
        if !self
            .write(
                api,
                info,
                status::terminated(info, init_started, started, end),
            )
            .await
        {
            return;
        }
        self.finish(api, e, &mut request).await;
    }

    /// After the containers have ended: waits for the pod's deletion and completes it (grace 0), as the
    /// kubelet does once nothing of the pod runs any more.
    async fn finish(&self, api: &Api<Pod>, e: &Entry, request: &mut watch::Receiver<Request>) {
        loop {
            match *request.borrow_and_update() {
                Request::Live => {}
                Request::Delete { .. } => break,
                Request::Gone => return,
            }
            if request.changed().await.is_err() {
                return;
            }
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(e.info.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        for attempt in 0..5u32 {
            let _permit = self.writes.acquire().await;
            match api.delete(&e.info.name, &dp).await {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return,
                Err(err) => {
                    tracing::warn!(pod = %e.info.name, error = %err, attempt, "cannot delete the pod");
                    drop(_permit);
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
                }
            }
        }
    }

    /// Writes one status step; false when the pod is gone (or the write kept failing).
    async fn write(&self, api: &Api<Pod>, info: &PodInfo, patch: Value) -> bool {
        let patch = Patch::Strategic(patch);
        for attempt in 0..5u32 {
            let permit = self.writes.acquire().await;
            match api
                .patch_status(&info.name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => return true,
                Err(kube::Error::Api(s)) if s.code == 404 => return false,
                Err(err) => {
                    tracing::warn!(pod = %info.name, error = %err, attempt, "cannot write the pod status");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
                }
            }
        }
        false
    }
}

fn key_of(pod: &Pod) -> Option<(String, String)> {
    Some((pod.metadata.namespace.clone()?, pod.metadata.name.clone()?))
}
