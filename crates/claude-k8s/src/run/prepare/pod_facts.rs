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

/// The Paperclip server's own secrets. With one of them an agent could act as the server: mint run tokens for any
/// agent (the JWT secret), sign sessions, open the database, decrypt every company secret. Never inherited; the
/// plan also masks them (empty values) when the server container's `envFrom` may carry them. An operator who wants
/// one in the Job sets it in `adapterConfig.env`.
pub const SERVER_SECRET_ENV: [&str; 6] = [
    "PAPERCLIP_AGENT_JWT_SECRET",
    "BETTER_AUTH_SECRET",
    "DATABASE_URL",
    "PAPERCLIP_SECRETS_MASTER_KEY",
    "PAPERCLIP_SECRETS_MASTER_KEY_FILE",
    "PAPERCLIP_TOOL_ACTION_SIGNING_SECRET",
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
    /// The `subPath` of the claim the Paperclip pod mounts at `/paperclip`, if it mounts only part of it.
    pub data_sub_path: Option<String>,
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

        let data_mount = mounts
            .iter()
            .filter(|m| m.mount_path.trim_end_matches('/') == DATA_MOUNT_PATH)
            .find_map(|m| Some((m, volume_named(&m.name)?.persistent_volume_claim.as_ref()?)));
        let data_claim = data_mount.map(|(_, pvc)| pvc.claim_name.clone());
        let data_sub_path = data_mount
            .and_then(|(m, _)| m.sub_path.clone())
            .filter(|s| !s.trim_matches('/').is_empty());

        let service_account = spec
            .service_account_name
            .clone()
            .or_else(|| spec.service_account.clone())
            .unwrap_or_else(|| "default".into());
        let secret_volumes = mounts
            .iter()
            .filter_map(|m| {
                let v = volume_named(&m.name)?;
                let secret = v.secret.as_ref()?;
                // The server's own service-account token: a Secret volume on clusters with legacy tokens (before
                // 1.24, or a token Secret mounted by hand). Never the agent's.
                if is_service_account_token(m, secret.secret_name.as_deref(), &service_account) {
                    return None;
                }
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
            .filter(|e| {
                !DROPPED_ENV.contains(&e.name.as_str())
                    && !SERVER_SECRET_ENV.contains(&e.name.as_str())
            })
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
            data_sub_path,
            secret_volumes,
            env,
            env_from: container.env_from.unwrap_or_default(),
        }
    }

    /// Secrets and ConfigMaps the inherited volumes, env and envFrom refer to by name: they must exist in the Jobs'
    /// namespace too.
    pub fn referenced_objects(&self) -> (Vec<String>, Vec<String>) {
        let mut secrets = std::collections::BTreeSet::new();
        let mut config_maps = std::collections::BTreeSet::new();
        for (v, _) in &self.secret_volumes {
            if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                secrets.insert(name);
            }
        }
        for e in self.env.iter().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &e.secret_key_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &e.config_map_key_ref {
                config_maps.insert(r.name.clone());
            }
        }
        for e in &self.env_from {
            if let Some(r) = &e.secret_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &e.config_map_ref {
                config_maps.insert(r.name.clone());
            }
        }
        (
            secrets.into_iter().collect(),
            config_maps.into_iter().collect(),
        )
    }

    /// The value of a literal env var of the server container.
    pub fn literal_env(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|e| e.name == name)?.value.as_deref()
    }
}

/// Where Kubernetes mounts a pod's service-account token; a Secret volume there, or one named like the legacy
/// token Secrets of the pod's service account (`<account>-token-<suffix>`), is the server's identity.
const TOKEN_MOUNT_PREFIX: &str = "/var/run/secrets/kubernetes.io/";

fn is_service_account_token(
    mount: &VolumeMount,
    secret_name: Option<&str>,
    service_account: &str,
) -> bool {
    mount.mount_path.starts_with(TOKEN_MOUNT_PREFIX)
        || secret_name.is_some_and(|n| n.starts_with(&format!("{service_account}-token-")))
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
                    {"name": "paperclip-token-7xk2p", "secret": {"secretName": "paperclip-token-7xk2p"}},
                    {"name": "legacy-token", "secret": {"secretName": "paperclip-token-abcde"}},
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
                        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                        {"name": "PAPERCLIP_AGENT_JWT_SECRET", "valueFrom": {"secretKeyRef": {"name": "paperclip-server", "key": "jwt"}}},
                        {"name": "BETTER_AUTH_SECRET", "valueFrom": {"secretKeyRef": {"name": "paperclip-server", "key": "auth"}}},
                        {"name": "DATABASE_URL", "value": "postgres://paperclip:pw@db:5432/paperclip"}
                     ],
                     "envFrom": [{"configMapRef": {"name": "paperclip-config"}}],
                     "volumeMounts": [
                        {"name": "data", "mountPath": "/paperclip"},
                        {"name": "keys", "mountPath": "/etc/keys"},
                        {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
                        {"name": "paperclip-token-7xk2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                        {"name": "legacy-token", "mountPath": "/etc/sa-token"}
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
    fn no_service_account_token_is_inherited_projected_or_legacy_secret() {
        let f = PodFacts::from_pod(&paperclip_pod());
        let names: Vec<_> = f
            .secret_volumes
            .iter()
            .map(|(v, _)| v.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["keys"],
            "neither the projected token nor a legacy token Secret"
        );
        assert!(
            f.secret_volumes
                .iter()
                .all(|(_, m)| !m.mount_path.starts_with("/var/run/secrets/kubernetes.io"))
        );
    }

    #[test]
    fn a_token_secret_of_another_account_at_the_token_path_is_still_dropped() {
        let mut pod = paperclip_pod();
        let spec = pod.spec.as_mut().unwrap();
        spec.service_account_name = None;
        let f = PodFacts::from_pod(&pod);
        // `paperclip-token-7xk2p` is dropped by its mount path; `legacy-token` (mounted elsewhere) is not a
        // token of the pod's account (`default`) any more, so it counts as an ordinary Secret volume.
        let names: Vec<_> = f
            .secret_volumes
            .iter()
            .map(|(v, _)| v.name.as_str())
            .collect();
        assert_eq!(names, ["keys", "legacy-token"]);
    }

    #[test]
    fn referenced_secrets_and_config_maps_are_listed() {
        let f = PodFacts::from_pod(&paperclip_pod());
        let (secrets, config_maps) = f.referenced_objects();
        assert_eq!(secrets, ["paperclip-secrets"]);
        assert_eq!(config_maps, ["paperclip-config"]);
    }

    #[test]
    fn the_servers_own_secrets_are_not_inherited() {
        let f = PodFacts::from_pod(&paperclip_pod());
        for name in SERVER_SECRET_ENV {
            assert!(f.env.iter().all(|e| e.name != name), "{name}");
        }
        let (secrets, _) = f.referenced_objects();
        assert!(!secrets.contains(&"paperclip-server".to_owned()));
    }

    #[test]
    fn a_pod_without_the_volume_has_no_claim() {
        let mut pod = paperclip_pod();
        pod.spec.as_mut().unwrap().containers[1].volume_mounts = None;
        assert_eq!(PodFacts::from_pod(&pod).data_claim, None);
    }
}
