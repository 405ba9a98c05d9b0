//! The store behind a shared watch, fed the events kube's watcher produces: fan-out by Job uid, a re-list that
//! keeps what is still there and reports only what is gone, deletions remembered for late subscribers, and when
//! the store may answer for the cluster.

use super::*;
use serde_json::json;

fn pod(name: &str, job_uid: &str, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "paperclip",
            "labels": {"controller-uid": job_uid, ADAPTER_TYPE: ADAPTER_TYPE_VALUE},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                "uid": job_uid, "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]},
        "status": {"phase": phase}
    }))
    .unwrap()
}

fn job(name: &str, uid: &str) -> Job {
    serde_json::from_value(
        json!({"metadata": {"name": name, "uid": uid, "namespace": "paperclip"}}),
    )
    .unwrap()
}

fn store<K: Routed>() -> (Store<K>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    (Store::new(tx), rx)
}

/// What a subscription received so far, as (applied?, name, phase-or-empty).
fn drain(sub: &mut Subscription<Pod>) -> Vec<(bool, String, String)> {
    let mut out = Vec::new();
    while let Ok(change) = sub.changes.try_recv() {
        let (applied, p) = match change {
            Change::Applied(p) => (true, p),
            Change::Deleted(p) => (false, p),
        };
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        out.push((applied, p.metadata.name.clone().unwrap_or_default(), phase));
    }
    out
}

fn listed(s: &mut Store<Pod>, pods: Vec<Pod>, now: Instant) {
    s.apply(Event::Init, now);
    for p in pods {
        s.apply(Event::InitApply(p), now);
    }
    s.apply(Event::InitDone, now);
}

#[test]
fn changes_go_to_the_runs_of_their_job_only() {
    let (mut s, _) = store::<Pod>();
    let now = Instant::now();
    listed(&mut s, vec![], now);
    let mut a = s.subscribe("job-a", Weak::new());
    let mut b = s.subscribe("job-b", Weak::new());
    s.apply(Event::Apply(pod("pa", "job-a", "Pending")), now);
    s.apply(Event::Apply(pod("pa", "job-a", "Running")), now);
    s.apply(Event::Apply(pod("pb", "job-b", "Running")), now);
    s.apply(Event::Delete(pod("pa", "job-a", "Running")), now);
    assert_eq!(
        drain(&mut a),
        [
            (true, "pa".into(), "Pending".into()),
            (true, "pa".into(), "Running".into()),
            (false, "pa".into(), "Running".into())
        ]
    );
    assert_eq!(drain(&mut b), [(true, "pb".into(), "Running".into())]);
}

#[test]
fn a_subscriber_starts_from_what_the_store_holds() {
    let (mut s, _) = store::<Pod>();
    let now = Instant::now();
    listed(&mut s, vec![pod("pa", "job-a", "Running")], now);
    let mut a = s.subscribe("job-a", Weak::new());
    assert_eq!(drain(&mut a), [(true, "pa".into(), "Running".into())]);
    let stored = &s.groups["job-a"]["uid-pa"];
    assert!(
        stored.metadata.managed_fields.is_none(),
        "managedFields are not kept"
    );
}

/// What runs read stays (metadata, status, the pod's node); the specs, most of an object's size, do not.
#[test]
fn stored_objects_keep_what_runs_read_and_drop_their_specs() {
    let mut p = pod("pa", "job-a", "Running");
    p.spec = Some(serde_json::from_value(json!({
        "nodeName": "sim-0",
        "containers": [{"name": "claude", "image": "claude:1", "env": [{"name": "A", "value": "b"}]}]
    })).unwrap());
    let (mut pods, _) = store::<Pod>();
    listed(&mut pods, vec![p.clone()], Instant::now());
    let stored = &pods.groups["job-a"]["uid-pa"];
    let spec = stored.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("sim-0"));
    assert!(spec.containers.is_empty());
    assert_eq!(stored.status, p.status);
    assert_eq!(stored.metadata.labels, p.metadata.labels);
    assert_eq!(
        stored.metadata.owner_references,
        p.metadata.owner_references
    );
    assert!(stored.metadata.managed_fields.is_none());

    let mut j = job("ja", "job-a");
    j.spec = Some(
        serde_json::from_value(json!({
            "template": {"spec": {"containers": [{"name": "claude", "image": "claude:1"}]}}
        }))
        .unwrap(),
    );
    j.status = Some(
        serde_json::from_value(json!({
            "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
        }))
        .unwrap(),
    );
    let (mut jobs, _) = store::<Job>();
    jobs.apply(Event::Apply(j.clone()), Instant::now());
    let stored = &jobs.groups["job-a"]["job-a"];
    assert!(stored.spec.is_none());
    assert_eq!(stored.status, j.status);
    assert_eq!(stored.metadata.name, j.metadata.name);
}

#[test]
fn a_relist_reports_only_what_is_gone_and_keeps_what_is_still_there() {
    let (mut s, synced) = store::<Pod>();
    let now = Instant::now();
    listed(
        &mut s,
        vec![pod("pa", "job-a", "Running"), pod("pb", "job-b", "Running")],
        now,
    );
    let mut a = s.subscribe("job-a", Weak::new());
    let mut b = s.subscribe("job-b", Weak::new());
    drain(&mut a);
    drain(&mut b);
    // The watch broke (an API server restart) and its resourceVersion expired: kube lists again. pb was deleted
    // meanwhile; pa is still there, and moved on.
    s.degraded();
    assert!(!*synced.borrow());
    s.apply(Event::Init, now);
    assert!(!*synced.borrow(), "not while listing");
    s.apply(Event::InitApply(pod("pa", "job-a", "Succeeded")), now);
    assert!(
        drain(&mut b).is_empty(),
        "nothing is gone before the list is complete"
    );
    s.apply(Event::InitDone, now);
    assert!(*synced.borrow());
    assert_eq!(drain(&mut a), [(true, "pa".into(), "Succeeded".into())]);
    assert_eq!(drain(&mut b), [(false, "pb".into(), "Running".into())]);
}

#[test]
fn a_late_subscriber_learns_of_a_deletion_it_missed() {
    let (mut s, _) = store::<Pod>();
    let now = Instant::now();
    listed(&mut s, vec![pod("pa", "job-a", "Running")], now);
    s.apply(Event::Delete(pod("pa", "job-a", "Running")), now);
    let mut a = s.subscribe("job-a", Weak::new());
    assert_eq!(drain(&mut a), [(false, "pa".into(), "Running".into())]);
    // Forgotten after a while.
    s.apply(
        Event::Apply(pod("px", "job-x", "Running")),
        now + TOMBSTONE_AGE + Duration::from_secs(1),
    );
    let mut a = s.subscribe("job-a", Weak::new());
    assert!(drain(&mut a).is_empty());
}

#[test]
fn unsubscribing_stops_the_fan_out() {
    let (mut s, _) = store::<Pod>();
    let now = Instant::now();
    listed(&mut s, vec![], now);
    let a = s.subscribe("job-a", Weak::new());
    let id = a.id;
    drop(a);
    // Dropped without a store to tell (Weak::new()): the closed channel is pruned on the next send.
    s.apply(Event::Apply(pod("pa", "job-a", "Running")), now);
    assert!(s.subscribers.get("job-a").is_none_or(|v| v.is_empty()));
    let _b = s.subscribe("job-a", Weak::new());
    s.unsubscribe("job-a", id + 1);
    assert!(!s.subscribers.contains_key("job-a"));
}

#[test]
fn the_store_answers_only_when_synced() {
    let (mut s, synced) = store::<Job>();
    let now = Instant::now();
    assert!(!s.synced(), "not before its first list");
    s.apply(Event::Init, now);
    s.apply(Event::InitApply(job("j1", "u1")), now);
    assert!(!s.synced());
    s.apply(Event::InitDone, now);
    assert!(s.synced() && *synced.borrow());
    s.degraded();
    assert!(!s.synced(), "an error: the store may be behind");
    s.apply(Event::Apply(job("j2", "u2")), now);
    assert!(s.synced(), "an event after the error: the watch is back");
    assert_eq!(s.groups.len(), 2);
    s.apply(Event::Delete(job("j1", "u1")), now);
    assert_eq!(s.groups.len(), 1);
}

#[test]
fn pods_are_routed_by_their_controller_then_by_label() {
    let p = pod("pa", "job-a", "Running");
    assert_eq!(p.route().as_deref(), Some("job-a"));
    let mut p = p;
    p.metadata.owner_references = None;
    assert_eq!(p.route().as_deref(), Some("job-a"));
    p.metadata.labels = None;
    assert_eq!(p.route(), None);
}
