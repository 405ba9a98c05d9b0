//! Figure 3: API requests per run, counted by the API server's audit log for an identity of the bench's own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::report::round3;
use crate::support::{Stage, World, repo_root, short_id, stage_env};

/// A service account of the bench's own, bound to the adapter's Role, so the audit log holds only its requests.
async fn bench_identity(stage: &Stage) -> (String, String) {
    let client = stage.admin_client().await;
    let name = format!("bench-{}", short_id());
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "paperclip")
        .create(&pp, &sa)
        .await
        .unwrap();
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "paperclip-adapter"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": "paperclip"}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), "paperclip")
        .create(&pp, &rb)
        .await
        .unwrap();
    // 1.20 makes a token Secret for every service account.
    let secrets: Api<Secret> = Api::namespaced(client, "paperclip");
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let list = secrets.list(&Default::default()).await.unwrap();
        let found = list.items.into_iter().find(|s| {
            s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                && s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kubernetes.io/service-account.name"))
                    == Some(&name)
        });
        if let Some(token) = found.and_then(|s| s.data?.get("token").cloned()) {
            break String::from_utf8(token.0).unwrap();
        }
        assert!(Instant::now() < deadline, "no token for {name}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let limited = std::fs::read_to_string(&stage.limited_kubeconfig).unwrap();
    let mut kc: Value = serde_json::to_value(parse_kubeconfig(&limited)).unwrap();
    kc["users"][0]["user"] = json!({"token": token});
    let path = repo_root().join(format!("target/bench/{name}.kubeconfig"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string(&kc).unwrap()).unwrap();
    (
        format!("system:serviceaccount:paperclip:{name}"),
        path.to_string_lossy().into_owned(),
    )
}

/// The stage's kubeconfigs are YAML; kube's own parser reads them into its typed form, which serializes to JSON
/// (also valid YAML), so no YAML writer is needed.
fn parse_kubeconfig(yaml: &str) -> kube::config::Kubeconfig {
    kube::config::Kubeconfig::from_yaml(yaml).unwrap()
}

/// Requests of `user` in the audit log between two instants (distinct audit ids).
fn audited_requests(
    user: &str,
    from: SystemTime,
    to: SystemTime,
) -> (usize, BTreeMap<String, usize>) {
    let log = std::fs::read_to_string(stage_env("AUDIT_LOG")).unwrap_or_default();
    let mut ids = std::collections::BTreeSet::new();
    let mut by_verb: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if ev["user"]["username"] != user {
            continue;
        }
        let Some(at) = ev["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        let at = UNIX_EPOCH + Duration::from_micros(at.as_microsecond() as u64);
        if at < from || at > to {
            continue;
        }
        if ids.insert(ev["auditID"].as_str().unwrap_or_default().to_owned()) {
            let res = ev["objectRef"]["resource"].as_str().unwrap_or("?");
            let sub = ev["objectRef"]["subresource"]
                .as_str()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            *by_verb
                .entry(format!("{} {res}{sub}", ev["verb"].as_str().unwrap_or("?")))
                .or_default() += 1;
        }
    }
    (ids.len(), by_verb)
}

/// Figure 3: API requests per run, counted by the API server, for runs of about 10 s, 60 s and 300 s.
pub async fn api_requests(lengths: &[u64]) -> Value {
    let stage = Stage::load();
    let (user, kubeconfig) = bench_identity(&stage).await;
    let mut world = World::on(stage, &[]).await;
    let agent = world.agent();
    let mut out = serde_json::Map::new();
    // Warm-up (self-introspection happens once per process, not per run).
    let warm_config = world.config(
        &agent,
        json!({"kubeconfig": kubeconfig, "image": world.stage.replay_image}),
    );
    let warm = world.run(&agent, &warm_config, "replay").await;
    assert_eq!(warm.result["exitCode"], 0, "{:#}", warm.result);
    for (i, secs) in lengths.iter().enumerate() {
        // 20 lines per batch, one batch per second.
        let config = world.config(
            &agent,
            json!({"kubeconfig": kubeconfig, "image": world.stage.replay_image,
                   "env": {"REPLAY_LINES": (secs * 20).to_string(), "REPLAY_BATCH": "20", "REPLAY_PAUSE_MS": "1000"}}),
        );
        let mut p = world.stage.params(&agent, &config, "replay", None);
        p["runId"] = json!(format!("req-{i}-{agent}"));
        let from = SystemTime::now();
        let started = Instant::now();
        let id = world.serve.send_execute(&p).await;
        let run = world
            .serve
            .wait_result_within(&id, Duration::from_secs(secs + 300))
            .await;
        assert_eq!(run.result["exitCode"], 0, "{:#}", run.result);
        let took = started.elapsed().as_secs_f64();
        world.assert_nothing_left(&agent).await;
        // The audit log is written asynchronously; give it a moment.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, by_verb) = audited_requests(&user, from, SystemTime::now());
        // Lists and watches are the serve process's shared ones (one per kind and namespace for all its runs, kube's
        // watcher reopening them now and then); no run lists or watches on its own.
        let (shared, own): (BTreeMap<_, _>, BTreeMap<_, _>) = by_verb
            .into_iter()
            .partition(|(k, _)| k.starts_with("watch ") || k.starts_with("list "));
        out.insert(
            format!("{secs}s"),
            json!({"run_seconds": round3(took), "requests": own.values().sum::<usize>(), "by_verb": own,
                   "shared_watch_requests_in_window": shared}),
        );
    }
    world.finish().await;
    Value::Object(out)
}
