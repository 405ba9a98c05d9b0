//! The simulated Node object: registered with a taint so that only pods that tolerate it land here, its status
//! (capacity, Ready, the kubelet endpoint the API server dials for logs), and the node Lease the
//! node-lifecycle controller reads to keep it Ready (a node whose Lease lapses is marked NotReady and, later,
//! its pods are evicted).

use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::status::HOST_IP;

/// The label and taint key that mark a simulated node.
pub const SIMULATED: &str = "node.claude-k8s.io/simulated";

/// How the node presents itself.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub port: u16,
    pub pods: u32,
    pub cpu: String,
    pub memory: String,
    /// The API server's version, reported as the kubelet's.
    pub version: String,
}

/// How often the Lease is renewed (the kubelet's default) and how long it is valid.
const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;
/// How often the Ready condition's heartbeat is refreshed (the Lease alone keeps the node Ready).
const STATUS_EVERY: Duration = Duration::from_secs(60);

impl NodeSpec {
    /// The Node object as registered: labels, and the taint that keeps every other pod away.
    pub fn object(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64",
                    SIMULATED: "true",
                },
            },
            "spec": {"taints": [{"key": SIMULATED, "value": "true", "effect": "NoSchedule"}]},
        })
    }

    /// The `nodes/status` patch: capacity, conditions with a fresh heartbeat, the kubelet endpoint.
    pub fn status(&self, now: Timestamp, since: Timestamp) -> Value {
        let t = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let cond = |type_: &str, status: &str, reason: &str, message: &str| {
            json!({"type": type_, "status": status, "reason": reason, "message": message,
                   "lastHeartbeatTime": t(now), "lastTransitionTime": t(since)})
        };
        let resources = json!({"cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string(),
                               "ephemeral-storage": "1Ti"});
        json!({"status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated node"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated node"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "simulated node"),
                cond("Ready", "True", "KubeletReady", "simulated node (claude-k8s sim-node) is posting ready status"),
            ],
            // Only an InternalIP on loopback: the API server dials it (a Hostname address would be looked up
            // in DNS, and this node's name resolves nowhere).
            "addresses": [{"type": "InternalIP", "address": HOST_IP}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {
                "machineID": format!("sim-{}", self.name), "systemUUID": format!("sim-{}", self.name),
                "bootID": format!("sim-{}-{}", self.name, since.as_second()),
                "kernelVersion": "simulated", "osImage": "claude-k8s sim-node",
                "containerRuntimeVersion": concat!("sim://", env!("CARGO_PKG_VERSION")),
                "kubeletVersion": self.version, "kubeProxyVersion": self.version,
                "operatingSystem": "linux", "architecture": "amd64",
            },
        }})
    }

    fn lease(&self, node_uid: &str, now: Timestamp) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node_uid}],
            },
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                     "renewTime": micro_time(now)},
        })
    }
}

/// metav1.MicroTime: RFC 3339 with microseconds.
fn micro_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// Registers the node (or takes over the existing object of that name), returns its uid.
pub async fn register(
    client: &Client,
    spec: &NodeSpec,
    since: Timestamp,
) -> anyhow::Result<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let object: Node = serde_json::from_value(spec.object())?;
    let node = match nodes.create(&PostParams::default(), &object).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // A previous run of this node: same labels and taint again (a merge patch keeps nothing stale).
            nodes
                .patch(
                    &spec.name,
                    &PatchParams::default(),
                    &Patch::Merge(spec.object()),
                )
                .await
                .with_context(|| format!("update Node {}", spec.name))?
        }
        Err(e) => return Err(e).with_context(|| format!("create Node {}", spec.name)),
    };
    nodes
        .patch_status(
            &spec.name,
            &PatchParams::default(),
            &Patch::Strategic(spec.status(Timestamp::now(), since)),
        )
        .await
        .with_context(|| format!("report the status of Node {}", spec.name))?;
    node.metadata
        .uid
        .context("the API server returned a Node without uid")
}

/// Keeps the node alive: renews its Lease every 10 s and its Ready heartbeat every minute, re-registering the
/// node if someone deleted it. Runs until the process ends.
pub async fn keep_alive(client: Client, spec: NodeSpec, mut uid: String, since: Timestamp) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut last_status = tokio::time::Instant::now();
    loop {
        let now = Timestamp::now();
        let renew = json!({"spec": {"holderIdentity": spec.name, "renewTime": micro_time(now),
                                    "leaseDurationSeconds": LEASE_SECONDS}});
        match leases
            .patch(&spec.name, &PatchParams::default(), &Patch::Merge(renew))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let lease: Lease =
                    serde_json::from_value(spec.lease(&uid, now)).expect("a valid Lease");
                if let Err(e) = leases.create(&PostParams::default(), &lease).await {
                    tracing::warn!(error = %e, "cannot create the node Lease");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the node Lease"),
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = tokio::time::Instant::now();
            let patch = Patch::Strategic(spec.status(now, since));
            match nodes
                .patch_status(&spec.name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    tracing::warn!(node = %spec.name, "the Node was deleted: registering it again");
                    match register(&nodes.clone().into_client(), &spec, since).await {
                        Ok(new_uid) => uid = new_uid,
                        Err(e) => tracing::warn!(error = %e, "cannot register the node again"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot report the node status"),
            }
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NodeSpec {
        NodeSpec {
            name: "sim-0".into(),
            port: 10260,
            pods: 2000,
            cpu: "64".into(),
            memory: "256Gi".into(),
            version: "v1.20.2".into(),
        }
    }

    #[test]
    fn the_node_is_tainted_and_says_where_its_kubelet_listens() {
        let s = spec();
        let o = s.object();
        assert_eq!(o["spec"]["taints"][0]["key"], SIMULATED);
        assert_eq!(o["spec"]["taints"][0]["effect"], "NoSchedule");
        assert_eq!(o["metadata"]["labels"]["kubernetes.io/hostname"], "sim-0");
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let st = &s.status(now, now)["status"];
        assert_eq!(st["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10260);
        assert_eq!(
            st["addresses"],
            json!([{"type": "InternalIP", "address": "127.0.0.1"}])
        );
        assert_eq!(st["capacity"]["pods"], "2000");
        assert_eq!(st["conditions"][3]["type"], "Ready");
        assert_eq!(
            st["conditions"][3]["lastHeartbeatTime"],
            "2026-01-01T00:01:00Z"
        );
        // Round-trips through the typed objects the client sends.
        let _: Node = serde_json::from_value(o).unwrap();
        let lease: Lease = serde_json::from_value(s.lease("uid-1", now)).unwrap();
        assert_eq!(
            lease.spec.unwrap().renew_time.unwrap().0,
            now,
            "MicroTime parses back"
        );
    }
}
