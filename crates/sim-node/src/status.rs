//! What a simulated pod is, read once from its object, and the status a kubelet would report at each step of
//! its life. Pure: a Pod in, JSON strategic-merge patches of `pods/status` out.
//!
//! The played container is `claude` (the adapter's), else the pod's first container; every other container
//! runs beside it and ends with it, with exit code 0. Init containers all complete (exit 0) in one step.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::logs::Container;
use crate::script::End;

/// The container the node plays from a transcript when the pod has one of this name.
pub const PLAYED_CONTAINER: &str = "claude";

/// The address of the simulated node and of its host-network pods.
pub const HOST_IP: &str = "127.0.0.1";

#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub host_network: bool,
    /// (name, image) of each init container, in order.
    pub init_containers: Vec<(String, String)>,
    /// (name, image) of each container.
    pub containers: Vec<(String, String)>,
    /// The container that plays a transcript.
    pub played: String,
    /// The played container's literal environment (`value`s only; references are not resolved).
    pub env: BTreeMap<String, String>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let spec = pod.spec.as_ref()?;
        let pair = |c: &k8s_openapi::api::core::v1::Container| {
            (c.name.clone(), c.image.clone().unwrap_or_default())
        };
        let played = spec
            .containers
            .iter()
            .find(|c| c.name == PLAYED_CONTAINER)
            .or(spec.containers.first())?;
        let env = played
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        Some(Self {
            namespace: pod.metadata.namespace.clone()?,
            name: pod.metadata.name.clone()?,
            uid: pod.metadata.uid.clone()?,
            host_network: spec.host_network == Some(true),
            init_containers: spec.init_containers.iter().flatten().map(pair).collect(),
            containers: spec.containers.iter().map(pair).collect(),
            played: played.name.clone(),
            env,
        })
    }

    fn container_id(&self, container: &str) -> String {
        format!("sim://{}/{container}", self.uid)
    }

    fn image_id(image: &str) -> String {
        format!("sim://{image}")
    }

    /// A container status with `state` (and `ready`).
    fn status(&self, (name, image): &(String, String), state: Value, ready: bool) -> Value {
        let started = state.get("running").is_some();
        let mut s = json!({
            "name": name,
            "image": image,
            "imageID": Self::image_id(image),
            "ready": ready,
            "restartCount": 0,
            "started": started,
            "state": state,
        });
        if s["state"].get("waiting").is_none() {
            s["containerID"] = json!(self.container_id(name));
        }
        s
    }

    fn addresses(&self) -> Value {
        let mut s = json!({"hostIP": HOST_IP});
        if self.host_network {
            s["podIP"] = json!(HOST_IP);
            s["podIPs"] = json!([{"ip": HOST_IP}]);
        }
        s
    }
}

/// RFC 3339 with whole seconds, as metav1.Time is written.
fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, at: Timestamp) -> Value {
    let mut c = json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastProbeTime": null,
                       "lastTransitionTime": time(at)});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

fn waiting(reason: &str) -> Value {
    json!({"waiting": {"reason": reason}})
}

/// The pod accepted by the node: its first init container running, the rest waiting (phase Pending).
pub fn pending(info: &PodInfo, now: Timestamp) -> Value {
    let initialized = info.init_containers.is_empty();
    let init: Vec<Value> = info
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let state = if i == 0 {
                json!({"running": {"startedAt": time(now)}})
            } else {
                waiting("PodInitializing")
            };
            info.status(c, state, false)
        })
        .collect();
    let containers: Vec<Value> = info
        .containers
        .iter()
        .map(|c| {
            let reason = if initialized {
                "ContainerCreating"
            } else {
                "PodInitializing"
            };
            info.status(c, waiting(reason), false)
        })
        .collect();
    let mut status = info.addresses();
    status["phase"] = json!("Pending");
    status["startTime"] = json!(time(now));
    status["conditions"] = json!([
        condition(
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            now
        ),
        condition("Ready", false, Some("ContainersNotReady"), now),
        condition("ContainersReady", false, Some("ContainersNotReady"), now),
    ]);
    status["initContainerStatuses"] = json!(init);
    status["containerStatuses"] = json!(containers);
    json!({ "status": status })
}

fn init_done(info: &PodInfo, init_started: Timestamp, started: Timestamp) -> Vec<Value> {
    info.init_containers
        .iter()
        .map(|c| {
            let state = json!({"terminated": {"exitCode": 0, "reason": "Completed",
                "startedAt": time(init_started), "finishedAt": time(started),
                "containerID": info.container_id(&c.0)}});
            info.status(c, state, false)
        })
        .collect()
}

/// Init containers done (exit 0), every container running since `started` (phase Running).
pub fn running(info: &PodInfo, init_started: Timestamp, started: Timestamp) -> Value {
    let containers: Vec<Value> = info
        .containers
        .iter()
        .map(|c| info.status(c, json!({"running": {"startedAt": time(started)}}), true))
        .collect();
    let mut status = info.addresses();
    status["phase"] = json!("Running");
    status["conditions"] = json!([
        condition("Initialized", true, None, started),
        condition("Ready", true, None, started),
        condition("ContainersReady", true, None, started),
    ]);
    status["initContainerStatuses"] = json!(init_done(info, init_started, started));
    status["containerStatuses"] = json!(containers);
    json!({ "status": status })
}

/// Every container terminated: the played one with its end, the others with 0 (phase Succeeded or Failed).
pub fn terminated(info: &PodInfo, init_started: Timestamp, started: Timestamp, end: End) -> Value {
    let containers: Vec<Value> = info
        .containers
        .iter()
        .map(|c| {
            let code = if c.0 == info.played { end.exit_code } else { 0 };
            let reason = if code == 0 { "Completed" } else { "Error" };
            let state = json!({"terminated": {"exitCode": code, "reason": reason,
                "startedAt": time(started), "finishedAt": time(end.at),
                "containerID": info.container_id(&c.0)}});
            info.status(c, state, false)
        })
        .collect();
    let mut status = info.addresses();
    status["phase"] = json!(if end.exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    });
    status["conditions"] = json!([
        condition("Ready", false, Some("PodCompleted"), end.at),
        condition("ContainersReady", false, Some("PodCompleted"), end.at),
    ]);
    status["initContainerStatuses"] = json!(init_done(info, init_started, started));
    status["containerStatuses"] = json!(containers);
    json!({ "status": status })
}

/// Where the played container is, according to a pod's status as a previous run of this node left it: lets a
/// restarted node carry on with the pods it had (from `startedAt`, to the second).
pub fn observed(pod: &Pod, info: &PodInfo) -> Option<(Timestamp, Container)> {
    let status = pod.status.as_ref()?;
    let ours = |id: Option<&String>| id.is_some_and(|id| id.starts_with("sim://"));
    let c = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == info.played && ours(c.container_id.as_ref()))?;
    let state = c.state.as_ref()?;
    let init_started = status
        .init_container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.started_at.as_ref())
        .or(status.start_time.as_ref())
        .map_or_else(Timestamp::now, |t| t.0);
    if let Some(t) = &state.terminated {
        let started = t.started_at.as_ref().map_or(init_started, |s| s.0);
        let at = t.finished_at.as_ref().map_or(started, |s| s.0);
        let end = End {
            at,
            exit_code: t.exit_code,
        };
        return Some((init_started, Container::Terminated { started, end }));
    }
    let started = state.running.as_ref()?.started_at.as_ref()?.0;
    Some((init_started, Container::Running { started }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": "paperclip", "name": "job-x-abcde", "uid": "u-1"},
            "spec": {
                "hostNetwork": true,
                "initContainers": [{"name": "write-prompt", "image": "local/busybox:1"}],
                "containers": [
                    {"name": "sidecar", "image": "local/busybox:1"},
                    {"name": "claude", "image": "local/claude-agent:2.1.328",
                     "env": [{"name": "SIM_LINE_MS", "value": "5"},
                             {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
                ]
            }
        }))
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn reads_what_the_node_needs_from_the_pod() {
        let info = PodInfo::from_pod(&pod()).unwrap();
        assert_eq!(info.played, "claude");
        assert_eq!(info.env.len(), 1, "only literal values");
        assert_eq!(info.env["SIM_LINE_MS"], "5");
        assert_eq!(info.init_containers[0].0, "write-prompt");
        let mut other = pod();
        other.spec.as_mut().unwrap().containers.remove(1);
        assert_eq!(PodInfo::from_pod(&other).unwrap().played, "sidecar");
    }

    #[test]
    fn each_step_reports_what_a_kubelet_reports() {
        let info = PodInfo::from_pod(&pod()).unwrap();
        let t0 = ts("2026-01-01T00:00:00.3Z");
        let t1 = ts("2026-01-01T00:00:01.7Z");
        let p = &pending(&info, t0)["status"];
        assert_eq!(p["phase"], "Pending");
        assert_eq!(p["podIP"], HOST_IP);
        assert_eq!(p["startTime"], "2026-01-01T00:00:00Z");
        assert_eq!(
            p["initContainerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            p["containerStatuses"][1]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        assert!(p["containerStatuses"][1].get("containerID").is_none());

        let r = &running(&info, t0, t1)["status"];
        assert_eq!(r["phase"], "Running");
        assert_eq!(
            r["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
        assert_eq!(r["containerStatuses"][1]["name"], "claude");
        assert_eq!(
            r["containerStatuses"][1]["state"]["running"]["startedAt"],
            "2026-01-01T00:00:01Z"
        );
        assert_eq!(r["containerStatuses"][1]["containerID"], "sim://u-1/claude");

        let end = End {
            at: ts("2026-01-01T00:00:09Z"),
            exit_code: 143,
        };
        let f = &terminated(&info, t0, t1, end)["status"];
        assert_eq!(f["phase"], "Failed");
        let claude = &f["containerStatuses"][1]["state"]["terminated"];
        assert_eq!(
            (claude["exitCode"].as_i64(), claude["reason"].as_str()),
            (Some(143), Some("Error"))
        );
        assert_eq!(
            f["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
        let ok = &terminated(
            &info,
            t0,
            t1,
            End {
                exit_code: 0,
                ..end
            },
        )["status"];
        assert_eq!(ok["phase"], "Succeeded");
    }

    #[test]
    fn a_restarted_node_recovers_its_containers_from_their_status() {
        let info = PodInfo::from_pod(&pod()).unwrap();
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T00:00:01Z");
        let mut p = pod();
        assert_eq!(observed(&p, &info), None, "a new pod");
        p.status = serde_json::from_value(running(&info, t0, t1)["status"].clone()).unwrap();
        assert_eq!(
            observed(&p, &info),
            Some((t0, Container::Running { started: t1 }))
        );
        let end = End {
            at: ts("2026-01-01T00:00:05Z"),
            exit_code: 0,
        };
        p.status =
            serde_json::from_value(terminated(&info, t0, t1, end)["status"].clone()).unwrap();
        assert_eq!(
            observed(&p, &info),
            Some((t0, Container::Terminated { started: t1, end }))
        );
    }
}
