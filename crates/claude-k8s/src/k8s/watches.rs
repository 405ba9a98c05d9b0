//! One watch per kind and namespace, shared by every run of a serve process: the adapter's pods and Jobs
//! (`paperclip.io/adapter-type=claude_k8s`), each kept in a store and fanned out to the runs by the uid of the Job
//! they belong to. The number of open watches depends on the namespaces in use, not on the number of runs.
//!
//! A watch is started on first use of its namespace and lives as long as the process. kube's watcher reconnects
//! by itself (with a backoff); when it has to list again (its resourceVersion expired, or at start), the listed
//! objects are applied as they come, and only when the list is complete are the objects it no longer holds
//! reported as deleted. So a re-list never looks like "gone" for a run whose object is still there, and a deletion
//! missed while the watch was down is still reported.
//!
//! The store answers questions that used to be a list call (the agent's Jobs for the guard, whether a Job's pods
//! are gone) only while it is [synced](Shared::synced): its first list is complete and no error has been seen
//! since its last event. Otherwise the caller falls back to asking the API server (and fails closed).

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use crate::k8s::labels::{ADAPTER_TYPE, ADAPTER_TYPE_VALUE, CONTROLLER_UID};

/// How many deletions a store remembers for runs that subscribe just after them, and for how long.
const TOMBSTONES: usize = 4096;
const TOMBSTONE_AGE: Duration = Duration::from_secs(600);

/// The shared watches of one client, by namespace.
pub struct Watches {
    client: Client,
    namespaces: Mutex<HashMap<String, Arc<Namespace>>>,
}

/// The adapter's pods and Jobs in one namespace.
pub struct Namespace {
    pub pods: Shared<Pod>,
    pub jobs: Shared<Job>,
}

impl Watches {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            namespaces: Mutex::default(),
        }
    }

    /// The watches of `namespace`, started on first use (needs a tokio runtime).
    pub fn namespace(&self, namespace: &str) -> Arc<Namespace> {
        let mut namespaces = self.namespaces.lock().expect("watches lock");
        namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| {
                Arc::new(Namespace {
                    pods: Shared::start(Api::namespaced(self.client.clone(), namespace)),
                    jobs: Shared::start(Api::namespaced(self.client.clone(), namespace)),
                })
            })
            .clone()
    }

    /// How many watches are open (two per namespace in use).
    pub fn open(&self) -> usize {
        self.namespaces.lock().expect("watches lock").len() * 2
    }
}

/// An object kind the shared watch fans out: which Job an object belongs to (`route`, that Job's uid).
pub trait Routed: Resource + Clone + Send + Sync + std::fmt::Debug + 'static {
    fn route(&self) -> Option<String>;

    /// Drops what no run reads before the object is stored: a serve process holds one of each of its runs' pods
    /// and Jobs (and the deleted ones for a while), and their specs are most of their size. Metadata (without
    /// `managedFields`) and status stay whole.
    fn slim(&mut self);
}

impl Routed for Job {
    fn route(&self) -> Option<String> {
        self.metadata.uid.clone()
    }

    /// Runs read a Job's metadata and conditions, never its spec (the pod template, the size of a pod spec).
    fn slim(&mut self) {
        self.metadata.managed_fields = None;
        self.spec = None;
    }
}

impl Routed for Pod {
    /// The Job controller's owner reference, else its `controller-uid` label.
    fn route(&self) -> Option<String> {
        let owner = self.metadata.owner_references.iter().flatten().find(|o| {
            o.controller == Some(true) && o.kind == "Job" && o.api_version.starts_with("batch/")
        });
        owner.map(|o| o.uid.clone()).or_else(|| {
            self.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CONTROLLER_UID).cloned())
        })
    }

    /// Of the spec, runs read only the node the pod is bound to (crate::run::follow::pod_state).
    fn slim(&mut self) {
        self.metadata.managed_fields = None;
        self.spec = self
            .spec
            .take()
            .map(|spec| k8s_openapi::api::core::v1::PodSpec {
                node_name: spec.node_name,
                ..Default::default()
            });
    }
}

/// What a subscriber learns about one of its objects.
#[derive(Debug, Clone)]
pub enum Change<K> {
    /// Listed, added or modified.
    Applied(Arc<K>),
    /// Deleted from the API (or no longer listed).
    Deleted(Arc<K>),
}

/// One kind's shared watch: its store and its subscribers.
pub struct Shared<K> {
    state: Arc<Mutex<Store<K>>>,
    synced: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Drop for Shared<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K> Shared<K>
where
    K: Routed + Resource<Scope = NamespaceResourceScope> + DeserializeOwned,
    K::DynamicType: Default,
{
    fn start(api: Api<K>) -> Self {
        let (synced_tx, synced) = watch::channel(false);
        let state = Arc::new(Mutex::new(Store::new(synced_tx)));
        let selector = format!("{ADAPTER_TYPE}={ADAPTER_TYPE_VALUE}");
        let weak = Arc::downgrade(&state);
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default().labels(&selector))
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let Some(state) = weak.upgrade() else { return };
                let mut store = state.lock().expect("store lock");
                match event {
                    Ok(event) => store.apply(event, Instant::now()),
                    Err(e) => {
                        tracing::debug!(error = %e, kind = %K::kind(&Default::default()), "shared watch error; it reconnects");
                        store.degraded();
                    }
                }
            }
        });
        Self {
            state,
            synced,
            task,
        }
    }
}

impl<K: Routed> Shared<K> {
    /// The changes of the objects of Job `uid`, starting with what the store holds now (or, if it holds none,
    /// the deletions it remembers).
    pub fn subscribe(&self, uid: &str) -> Subscription<K> {
        self.state
            .lock()
            .expect("store lock")
            .subscribe(uid, Arc::downgrade(&self.state))
    }

    /// Whether the store can answer for the cluster now.
    pub fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits at most `limit` for the store to be synced, if it is still making its first list (a store that
    /// cannot list, e.g. forbidden, is not waited for).
    pub async fn synced_within(&self, limit: Duration) -> bool {
        if !self.state.lock().expect("store lock").starting() {
            return self.synced();
        }
        let mut synced = self.synced.clone();
        tokio::time::timeout(limit, synced.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the store, synced, holds no object of Job `uid` (`None`: not synced).
    pub fn none_of(&self, uid: &str) -> Option<bool> {
        let store = self.state.lock().expect("store lock");
        store
            .synced()
            .then(|| store.groups.get(uid).is_none_or(|g| g.is_empty()))
    }

    /// The stored objects `keep` selects, if the store is synced.
    pub fn select(&self, keep: impl Fn(&K) -> bool) -> Option<Vec<K>> {
        let store = self.state.lock().expect("store lock");
        store.synced().then(|| {
            store
                .groups
                .values()
                .flat_map(|g| g.values())
                .filter(|o| keep(o))
                .map(|o| (**o).clone())
                .collect()
        })
    }
}

/// The changes of one Job's objects. Dropping it unsubscribes.
pub struct Subscription<K: Routed> {
    changes: mpsc::UnboundedReceiver<Change<K>>,
    store: Weak<Mutex<Store<K>>>,
    route: String,
    id: u64,
}

impl<K: Routed> Stream for Subscription<K> {
    type Item = Change<K>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change<K>>> {
        self.changes.poll_recv(cx)
    }
}

impl<K: Routed> Drop for Subscription<K> {
    fn drop(&mut self) {
        if let Some(store) = self.store.upgrade()
            && let Ok(mut store) = store.lock()
        {
            store.unsubscribe(&self.route, self.id);
        }
    }
}

/// A subscription's id and the sending end of its channel.
type Subscriber<K> = (u64, mpsc::UnboundedSender<Change<K>>);

/// The objects of one kind by the Job they belong to, who listens, and what was deleted lately. Pure but for the
/// channels it sends on.
struct Store<K> {
    /// route (the Job's uid) → object uid → object.
    groups: HashMap<String, HashMap<String, Arc<K>>>,
    subscribers: HashMap<String, Vec<Subscriber<K>>>,
    next_id: u64,
    /// Recent deletions (route, object, when), for a run that subscribes just after one.
    tombstones: VecDeque<(String, Arc<K>, Instant)>,
    /// The uids listed since the current list began (`None`: not listing).
    listing: Option<HashSet<String>>,
    /// A complete list was applied.
    listed: bool,
    /// An error was seen and no event since.
    degraded: bool,
    /// An error was ever seen.
    failed_once: bool,
    synced_tx: watch::Sender<bool>,
}

impl<K: Routed> Store<K> {
    fn new(synced_tx: watch::Sender<bool>) -> Self {
        Self {
            groups: HashMap::new(),
            subscribers: HashMap::new(),
            next_id: 0,
            tombstones: VecDeque::new(),
            listing: None,
            listed: false,
            degraded: false,
            failed_once: false,
            synced_tx,
        }
    }

    fn synced(&self) -> bool {
        self.listed && !self.degraded && self.listing.is_none()
    }

    fn publish_synced(&self) {
        let synced = self.synced();
        self.synced_tx.send_if_modified(|s| {
            let changed = *s != synced;
            *s = synced;
            changed
        });
    }

    /// Still making its first list, without an error so far.
    fn starting(&self) -> bool {
        !self.listed && !self.failed_once
    }

    fn degraded(&mut self) {
        self.degraded = true;
        self.failed_once = true;
        self.publish_synced();
    }

    fn apply(&mut self, event: Event<K>, now: Instant) {
        match event {
            Event::Init => {
                self.listing = Some(HashSet::new());
            }
            Event::InitApply(object) => {
                if let (Some(listing), Some(uid)) = (&mut self.listing, object.meta().uid.clone()) {
                    listing.insert(uid);
                }
                self.upsert(object);
            }
            Event::InitDone => {
                // Whatever the complete list no longer holds was deleted while the watch was away.
                let listed = self.listing.take().unwrap_or_default();
                let gone: Vec<(String, String)> = self
                    .groups
                    .iter()
                    .flat_map(|(route, group)| {
                        group
                            .keys()
                            .filter(|uid| !listed.contains(*uid))
                            .map(|uid| (route.clone(), uid.clone()))
                    })
                    .collect();
                for (route, uid) in gone {
                    self.remove(&route, &uid, now);
                }
                self.listed = true;
            }
            Event::Apply(object) => self.upsert(object),
            Event::Delete(object) => {
                if let (Some(route), Some(uid)) = (object.route(), object.meta().uid.clone()) {
                    self.remove(&route, &uid, now);
                }
            }
        }
        self.degraded = false;
        self.expire(now);
        self.publish_synced();
    }

    fn upsert(&mut self, mut object: K) {
        let (Some(route), Some(uid)) = (object.route(), object.meta().uid.clone()) else {
            return;
        };
        object.slim();
        let object = Arc::new(object);
        self.groups
            .entry(route.clone())
            .or_default()
            .insert(uid, object.clone());
        self.send(&route, Change::Applied(object));
    }

    fn remove(&mut self, route: &str, uid: &str, now: Instant) {
        let Some(group) = self.groups.get_mut(route) else {
            return;
        };
        let Some(object) = group.remove(uid) else {
            return;
        };
        if group.is_empty() {
            self.groups.remove(route);
        }
        self.tombstones
            .push_back((route.to_owned(), object.clone(), now));
        self.send(route, Change::Deleted(object));
    }

    fn expire(&mut self, now: Instant) {
        while self.tombstones.len() > TOMBSTONES
            || self
                .tombstones
                .front()
                .is_some_and(|(_, _, at)| now.duration_since(*at) > TOMBSTONE_AGE)
        {
            self.tombstones.pop_front();
        }
    }

    fn send(&mut self, route: &str, change: Change<K>) {
        if let Some(subscribers) = self.subscribers.get_mut(route) {
            subscribers.retain(|(_, tx)| tx.send(change.clone()).is_ok());
        }
    }

    fn subscribe(&mut self, route: &str, store: Weak<Mutex<Store<K>>>) -> Subscription<K> {
        let (tx, changes) = mpsc::unbounded_channel();
        match self.groups.get(route) {
            Some(group) => {
                for object in group.values() {
                    let _ = tx.send(Change::Applied(object.clone()));
                }
            }
            None => {
                for (_, object, _) in self.tombstones.iter().filter(|(r, _, _)| r == route) {
                    let _ = tx.send(Change::Deleted(object.clone()));
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.subscribers
            .entry(route.to_owned())
            .or_default()
            .push((id, tx));
        Subscription {
            changes,
            store,
            route: route.to_owned(),
            id,
        }
    }

    fn unsubscribe(&mut self, route: &str, id: u64) {
        if let Some(subscribers) = self.subscribers.get_mut(route) {
            subscribers.retain(|(i, _)| *i != id);
            if subscribers.is_empty() {
                self.subscribers.remove(route);
            }
        }
    }
}

#[cfg(test)]
mod tests;
