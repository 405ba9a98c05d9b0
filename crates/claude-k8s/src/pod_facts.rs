//! What a Job may inherit from the Paperclip pod, and nothing more. Pure.
//!
//! The whitelist follows the seed README: image, imagePullSecrets, DNS, the PVC mounted at `/paperclip`, secret
//! volumes and env. Everything else on the server pod (its service account token, probes, ports, lifecycle hooks,
//! injected sidecars, nodeName, the Deployment's selector labels) stays behind: it would give the agent the
//! server's identity or traffic.

use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, LocalObjectReference, Pod, PodDNSConfig, Volume, VolumeMount,
};

/// Where the shared volume is mounted, in the server pod and in every Job pod.
pub const DATA_MOUNT_PATH: &str = "/paperclip";

/// Env names never copied: the Job sets its own, or they belong to a parent Claude process.
const DROPPED_ENV: [&str; 6] = [
    "HOME",
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SESSION",
    "CLAUDE_CODE_PARENT_SESSION",
    "PAPERCLIP_API_KEY",
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodFacts {
    pub pod_name: String,
    pub namespace: String,
    pub container_name: String,
    pub image: Option<String>,
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub dns_policy: Option<String>,
    pub dns_config: Option<PodDNSConfig>,
    /// The PVC mounted at `/paperclip`, if any.
    pub data_claim: Option<String>,
    /// Secret volumes and where the server container mounts them.
    pub secret_volumes: Vec<(Volume, VolumeMount)>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<EnvFromSource>,
}

impl PodFacts {
    /// Reads the whitelisted facts from the server's own pod: the container named `paperclip`, else the first.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let container: Container = spec
            .containers
            .iter()
            .find(|c| c.name == "paperclip")
            .or_else(|| spec.containers.first())
            .cloned()
            .unwrap_or_default();
        let volumes = spec.volumes.clone().unwrap_or_default();
        let mounts = container.volume_mounts.clone().unwrap_or_default();
        let volume_named = |name: &str| volumes.iter().find(|v| v.name == name);

        let data_claim = mounts
            .iter()
            .filter(|m| m.mount_path.trim_end_matches('/') == DATA_MOUNT_PATH)
            .find_map(|m| volume_named(&m.name)?.persistent_volume_claim.as_ref())
            .map(|pvc| pvc.claim_name.clone());

        let secret_volumes = mounts
            .iter()
            .filter_map(|m| {
                let v = volume_named(&m.name)?;
                v.secret.as_ref()?;
                let mount = VolumeMount {
                    read_only: Some(true),
                    ..m.clone()
                };
                Some((v.clone(), mount))
            })
            .collect();

        let env = container
            .env
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !DROPPED_ENV.contains(&e.name.as_str()))
            // A resourceFieldRef names the server's container; it would not resolve in the Job.
            .filter(|e| {
                e.value_from
                    .as_ref()
                    .is_none_or(|vf| vf.resource_field_ref.is_none())
            })
            .collect();

        Self {
            pod_name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            container_name: container.name,
            image: container.image,
            image_pull_secrets: spec.image_pull_secrets.unwrap_or_default(),
            dns_policy: spec.dns_policy,
            dns_config: spec.dns_config,
            data_claim,
            secret_volumes,
            env,
            env_from: container.env_from.unwrap_or_default(),
        }
    }

    /// The value of a literal env var of the server container.
    pub fn literal_env(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|e| e.name == name)?.value.as_deref()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real-looking Paperclip pod: an istio sidecar, probes, ports, a token volume, selector labels, nodeName.
    pub fn paperclip_pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "paperclip-7d9f", "namespace": "paperclip",
                         "labels": {"app": "paperclip", "pod-template-hash": "7d9f"}},
            "spec": {
                "nodeName": "node-1",
                "serviceAccountName": "paperclip",
                "imagePullSecrets": [{"name": "regcred"}],
                "dnsPolicy": "None",
                "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["paperclip.svc.cluster.local"]},
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "paperclip-data"}},
                    {"name": "keys", "secret": {"secretName": "paperclip-secrets"}},
                    {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                    {"name": "istio-envoy", "emptyDir": {}}
                ],
                "initContainers": [{"name": "istio-init", "image": "istio/proxyv2"}],
                "containers": [
                    {"name": "istio-proxy", "image": "istio/proxyv2", "ports": [{"containerPort": 15090}]},
                    {"name": "paperclip", "image": "ghcr.io/acme/paperclip:1.2",
                     "ports": [{"containerPort": 3100}],
                     "livenessProbe": {"httpGet": {"path": "/api/health", "port": 3100}},
                     "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
                     "env": [
                        {"name": "PAPERCLIP_API_URL", "value": "http://paperclip.paperclip.svc:3100"},
                        {"name": "HOME", "value": "/root"},
                        {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "paperclip-secrets", "key": "ANTHROPIC_API_KEY"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "paperclip-config", "key": "mode"}}},
                        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}
                     ],
                     "envFrom": [{"configMapRef": {"name": "paperclip-config"}}],
                     "volumeMounts": [
                        {"name": "data", "mountPath": "/paperclip"},
                        {"name": "keys", "mountPath": "/etc/keys"},
                        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                     ]}
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn takes_the_paperclip_container_not_the_sidecar() {
        let f = PodFacts::from_pod(&paperclip_pod());
        assert_eq!(f.container_name, "paperclip");
        assert_eq!(f.image.as_deref(), Some("ghcr.io/acme/paperclip:1.2"));
        assert_eq!(f.namespace, "paperclip");
    }

    #[test]
    fn finds_the_data_claim_secret_volumes_and_dns() {
        let f = PodFacts::from_pod(&paperclip_pod());
        assert_eq!(f.data_claim.as_deref(), Some("paperclip-data"));
        assert_eq!(
            f.secret_volumes.len(),
            1,
            "only the secret volume, not the projected token"
        );
        assert_eq!(f.secret_volumes[0].0.name, "keys");
        assert_eq!(f.secret_volumes[0].1.read_only, Some(true));
        assert_eq!(f.image_pull_secrets[0].name, "regcred");
        assert_eq!(f.dns_policy.as_deref(), Some("None"));
        assert!(f.dns_config.is_some());
    }

    #[test]
    fn env_keeps_literals_and_refs_but_not_home_or_resource_refs() {
        let f = PodFacts::from_pod(&paperclip_pod());
        let names: Vec<_> = f.env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["PAPERCLIP_API_URL", "ANTHROPIC_API_KEY", "MODE"]);
        assert_eq!(
            f.literal_env("PAPERCLIP_API_URL"),
            Some("http://paperclip.paperclip.svc:3100")
        );
        assert_eq!(f.env_from.len(), 1);
    }

    #[test]
    fn a_pod_without_the_volume_has_no_claim() {
        let mut pod = paperclip_pod();
        pod.spec.as_mut().unwrap().containers[1].volume_mounts = None;
        assert_eq!(PodFacts::from_pod(&pod).data_claim, None);
    }
}
