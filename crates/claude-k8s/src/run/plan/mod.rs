//! The Job (and its per-run Secret) for one run. Pure: config, pod facts and the invocation in, manifests out.
//!
//! Shape: a `write-prompt` init container (busybox) unpacks the prompt from the run Secret into an emptyDir; the
//! `claude` container reads it on stdin through `exec`, so Claude's own exit code is the container's (no pipe hides
//! it) and no prompt size meets the 128 KiB argv/env limit. The run token reaches the container as a
//! `secretKeyRef`, so it never appears in the Job spec. The MCP config (it holds Paperclip's bearer tokens) takes
//! the same road: run Secret → init container → an in-memory emptyDir file, mode 0400 for the agent's UID.

pub mod invocation;

use std::collections::BTreeMap;
use std::io::Write;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::k8s::labels::{self, RunIdentity};
use crate::run::plan::invocation::Invocation;
use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::mcp::{MCP_CONFIG_FILE, MCP_DIR};
use crate::run::prepare::pod_facts::{DATA_MOUNT_PATH, PodFacts, SERVER_SECRET_ENV};

pub const CLAUDE_CONTAINER: &str = "claude";
pub const PROMPT_CONTAINER: &str = "write-prompt";
pub const AGENT_UID: i64 = 1000;
const PROMPT_DIR: &str = "/var/run/claude-k8s/prompt";
const RUN_SECRET_DIR: &str = "/var/run/claude-k8s/run";
const PROMPT_KEY: &str = "prompt.gz";
pub const API_KEY_KEY: &str = "paperclip-api-key";
/// Kubernetes refuses Secrets whose data exceed 1 MiB.
const MAX_SECRET_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no image for the claude container: set adapterConfig.image, or run the adapter in a pod whose container it can inherit"
    )]
    NoImage,
    #[error(
        "no PersistentVolumeClaim is mounted at {DATA_MOUNT_PATH} in the Paperclip pod `{pod}`: mount the shared RWX PVC there (see the README's PVC section)"
    )]
    NoDataClaim { pod: String },
    #[error("the prompt is {compressed} bytes even compressed; a run Secret holds at most 1 MiB")]
    PromptTooLarge { compressed: usize },
    #[error("adapterConfig.podSpecPatch does not produce a valid pod spec: {0}")]
    BadPodSpecPatch(String),
}

/// Everything the plan needs about the run besides config and facts.
#[derive(Debug, Clone)]
pub struct RunPlanInput<'a> {
    pub identity: &'a RunIdentity,
    pub agent_name: &'a str,
    pub namespace: &'a str,
    pub invocation: &'a Invocation,
    pub auth_token: Option<&'a str>,
    /// The `--mcp-config` file's content (`mcp::config_json`); it holds tokens, so only the Secret carries it.
    pub mcp_config: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct RunManifests {
    pub job: Job,
    pub secret: Secret,
}

pub fn plan(
    input: &RunPlanInput<'_>,
    config: &AgentConfig,
    facts: &PodFacts,
) -> Result<RunManifests, PlanError> {
    let job_name = labels::job_name(&input.identity.agent_id, &input.identity.run_id);
    let secret_name = labels::run_secret_name(&job_name);
    let image = config
        .image
        .clone()
        .or_else(|| facts.image.clone())
        .ok_or(PlanError::NoImage)?;
    let claim = facts
        .data_claim
        .clone()
        .ok_or_else(|| PlanError::NoDataClaim {
            pod: format!("{}/{}", facts.namespace, facts.pod_name),
        })?;

    let mut run_labels = labels::run_labels(input.identity);
    let mut job_labels = labels::user_labels(&config.labels);
    job_labels.append(&mut run_labels);

    let prompt_gz = gzip(input.invocation.prompt.as_bytes());
    let token_len = input.auth_token.map_or(0, str::len) + input.mcp_config.map_or(0, str::len);
    if prompt_gz.len() + token_len > MAX_SECRET_BYTES {
        return Err(PlanError::PromptTooLarge {
            compressed: prompt_gz.len(),
        });
    }
    let mut secret_data = BTreeMap::from([(PROMPT_KEY.to_owned(), ByteString(prompt_gz))]);
    if let Some(token) = input.auth_token {
        secret_data.insert(
            API_KEY_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        );
    }
    if let Some(mcp) = input.mcp_config {
        secret_data.insert(
            MCP_CONFIG_FILE.to_owned(),
            ByteString(mcp.as_bytes().to_vec()),
        );
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            namespace: Some(input.namespace.to_owned()),
            labels: Some(job_labels.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(secret_data),
        ..Default::default()
    };

    let mut volumes = vec![
        Volume {
            name: "paperclip-data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: None,
            }),
            ..Default::default()
        },
        Volume {
            name: "prompt".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "run-secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret_name.clone()),
                // Group-readable so UID 1000 reads it through fsGroup; nothing else in the pod runs.
                default_mode: Some(0o440),
                // Only the init container reads it. Optional, so that once cleanup deleted the Secret the kubelet's
                // periodic volume resync does not fail and stall the pod's termination (seen on 1.20: minutes).
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut claude_mounts = vec![
        VolumeMount {
            name: "paperclip-data".into(),
            mount_path: DATA_MOUNT_PATH.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "prompt".into(),
            mount_path: PROMPT_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    let mut init_mounts = vec![
        VolumeMount {
            name: "prompt".into(),
            mount_path: PROMPT_DIR.into(),
            ..Default::default()
        },
        VolumeMount {
            name: "run-secret".into(),
            mount_path: RUN_SECRET_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    let mut init_script =
        format!("gunzip -c {RUN_SECRET_DIR}/{PROMPT_KEY} > {PROMPT_DIR}/prompt.txt");
    if input.mcp_config.is_some() {
        // In memory, never on the node's disk; gone with the pod. Written by the init container (UID 1000 too).
        volumes.push(Volume {
            name: "mcp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("1Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        });
        init_mounts.push(VolumeMount {
            name: "mcp".into(),
            mount_path: MCP_DIR.into(),
            ..Default::default()
        });
        claude_mounts.push(VolumeMount {
            name: "mcp".into(),
            mount_path: MCP_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
        init_script.push_str(&format!(
            " && (umask 077 && cp {RUN_SECRET_DIR}/{MCP_CONFIG_FILE} {MCP_DIR}/{MCP_CONFIG_FILE}) && chmod 0400 \
             {MCP_DIR}/{MCP_CONFIG_FILE}"
        ));
    }
    for (volume, mount) in &facts.secret_volumes {
        // Our own volume names are fixed; an inherited one that collides is renamed, not dropped.
        let name =
            if ["paperclip-data", "prompt", "run-secret", "mcp"].contains(&volume.name.as_str()) {
                format!("inherited-{}", volume.name)
            } else {
                volume.name.clone()
            };
        volumes.push(Volume {
            name: name.clone(),
            ..volume.clone()
        });
        claude_mounts.push(VolumeMount {
            name,
            ..mount.clone()
        });
    }

    let init = Container {
        name: PROMPT_CONTAINER.into(),
        image: Some(config.init_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        command: Some(vec!["sh".into(), "-c".into(), init_script]),
        volume_mounts: Some(init_mounts),
        resources: Some(resources("10m", "16Mi", "500m", "64Mi")),
        security_context: Some(container_security()),
        ..Default::default()
    };

    let claude = Container {
        name: CLAUDE_CONTAINER.into(),
        image: Some(image),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        // `exec` hands the shell's PID to claude: its exit code and signals are the container's.
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("exec claude \"$@\" < {PROMPT_DIR}/prompt.txt"),
            "claude".into(),
        ]),
        args: Some(input.invocation.args.clone()),
        working_dir: Some(input.invocation.cwd.clone()),
        env: Some(container_env(
            facts,
            input.invocation,
            input.auth_token.is_some(),
            &secret_name,
        )),
        env_from: (!facts.env_from.is_empty()).then(|| facts.env_from.clone()),
        volume_mounts: Some(claude_mounts),
        resources: Some(resources(
            &config.resources.requests_cpu,
            &config.resources.requests_memory,
            &config.resources.limits_cpu,
            &config.resources.limits_memory,
        )),
        security_context: Some(container_security()),
        ..Default::default()
    };

    let mut pod_spec = PodSpec {
        restart_policy: Some("Never".into()),
        // How long a stopped run (cancel, timeout, cleanup) may take to exit before it is killed.
        termination_grace_period_seconds: Some(config.grace_sec as i64),
        init_containers: Some(vec![init]),
        containers: vec![claude],
        volumes: Some(volumes),
        service_account_name: config.service_account_name.clone(),
        // The agent gets no Kubernetes identity unless the operator names one.
        automount_service_account_token: Some(config.service_account_name.is_some()),
        image_pull_secrets: (!facts.image_pull_secrets.is_empty())
            .then(|| facts.image_pull_secrets.clone()),
        dns_policy: facts.dns_policy.clone(),
        dns_config: facts.dns_config.clone(),
        node_selector: (!config.node_selector.is_empty()).then(|| config.node_selector.clone()),
        tolerations: (!config.tolerations.is_empty()).then(|| {
            config
                .tolerations
                .iter()
                .filter_map(|t| serde_json::from_value(t.clone()).ok())
                .collect()
        }),
        security_context: Some(PodSecurityContext {
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            run_as_non_root: Some(true),
            fs_group: Some(AGENT_UID),
            fs_group_change_policy: Some("OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    if let Some(patch) = &config.pod_spec_patch {
        pod_spec = apply_merge_patch(&pod_spec, patch)?;
    }

    let annotations = BTreeMap::from([(
        labels::AGENT_NAME_ANNOTATION.to_owned(),
        input.agent_name.to_owned(),
    )]);
    let job = Job {
        metadata: ObjectMeta {
            name: Some(job_name),
            namespace: Some(input.namespace.to_owned()),
            labels: Some(job_labels.clone()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(config.ttl_seconds_after_finished as i32),
            // The adapter enforces timeoutSec itself; this is only a backstop if the adapter is gone.
            active_deadline_seconds: (config.timeout_sec > 0)
                .then(|| (config.timeout_sec + config.grace_sec + 300) as i64),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels),
                    ..Default::default()
                }),
                spec: Some(pod_spec),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(RunManifests { job, secret })
}

/// Inherited env first, then the run's own; a later name replaces an earlier one in place of appearing twice.
fn container_env(
    facts: &PodFacts,
    invocation: &Invocation,
    with_token: bool,
    secret_name: &str,
) -> Vec<EnvVar> {
    let mut env: Vec<EnvVar> = Vec::new();
    let mut set = |var: EnvVar| {
        env.retain(|e| e.name != var.name);
        env.push(var);
    };
    for var in &facts.env {
        set(var.clone());
    }
    // A Secret in envFrom may hold the server's own secrets; an explicit (empty) env entry takes precedence.
    if facts.env_from.iter().any(|e| e.secret_ref.is_some()) {
        for name in SERVER_SECRET_ENV {
            set(EnvVar {
                name: name.to_owned(),
                value: Some(String::new()),
                value_from: None,
            });
        }
    }
    for (name, value) in &invocation.env {
        set(EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        });
    }
    if with_token {
        set(EnvVar {
            name: "PAPERCLIP_API_KEY".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret_name.to_owned(),
                    key: API_KEY_KEY.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        });
    }
    env
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..Default::default()
    }
}

fn resources(req_cpu: &str, req_mem: &str, lim_cpu: &str, lim_mem: &str) -> ResourceRequirements {
    let q = |a: &str, b: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(a.to_owned())),
            ("memory".to_owned(), Quantity(b.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(q(req_cpu, req_mem)),
        limits: Some(q(lim_cpu, lim_mem)),
        ..Default::default()
    }
}

fn apply_merge_patch(spec: &PodSpec, patch: &serde_json::Value) -> Result<PodSpec, PlanError> {
    let mut value =
        serde_json::to_value(spec).map_err(|e| PlanError::BadPodSpecPatch(e.to_string()))?;
    json_patch::merge(&mut value, patch);
    serde_json::from_value(value).map_err(|e| PlanError::BadPodSpecPatch(e.to_string()))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::prepare::pod_facts::tests::paperclip_pod;
    use crate::serve::protocol::ExecuteParams;
    use serde_json::{Value, json};

    fn manifests(config: Value, prompt: &str) -> Result<RunManifests, PlanError> {
        manifests_with_mcp(config, prompt, None)
    }

    fn manifests_with_mcp(
        config: Value,
        prompt: &str,
        mcp_config: Option<&str>,
    ) -> Result<RunManifests, PlanError> {
        let params: ExecuteParams = serde_json::from_value(json!({
            "runId": "9f1c2d3e-2222-4444-8888-bbbbbbbbbbbb",
            "agent": {"id": "0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa", "companyId": "c0", "name": "Ada"},
            "prompt": {"fresh": prompt},
            "context": {"paperclipWorkspace": {"cwd": "/paperclip/instances/default/workspaces/a", "source": "agent_home"}},
            "paperclipEnv": {"PAPERCLIP_RUN_ID": "9f1c2d3e-2222-4444-8888-bbbbbbbbbbbb"}
        }))
        .unwrap();
        let config = AgentConfig::parse(config.as_object().unwrap()).unwrap();
        let facts = PodFacts::from_pod(&paperclip_pod());
        let inv = Invocation::build(&params, &config, &facts, None);
        let id = RunIdentity {
            agent_id: params.agent.id.clone(),
            run_id: params.run_id.clone(),
            company_id: "c0".into(),
            task_id: Some("t1".into()),
            session_id: None,
        };
        plan(
            &RunPlanInput {
                identity: &id,
                agent_name: "Ada",
                namespace: "paperclip",
                invocation: &inv,
                auth_token: Some("jwt-secret"),
                mcp_config,
            },
            &config,
            &facts,
        )
    }

    fn as_json(job: &Job) -> Value {
        serde_json::to_value(job).unwrap()
    }

    #[test]
    fn job_fields_use_the_exact_kubernetes_names() {
        // 1.20 silently drops unknown fields, so the serialized names are checked here, not on the cluster.
        let j = as_json(&manifests(json!({"timeoutSec": 60}), "hi").unwrap().job);
        assert_eq!(j["apiVersion"], "batch/v1");
        assert_eq!(j["kind"], "Job");
        assert_eq!(j["spec"]["backoffLimit"], 0);
        assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 300);
        assert_eq!(j["spec"]["activeDeadlineSeconds"], 60 + 60 + 300);
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["terminationGracePeriodSeconds"], 60);
        assert_eq!(pod["volumes"][2]["secret"]["optional"], true);
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsUser"], 1000);
        assert_eq!(pod["securityContext"]["runAsGroup"], 1000);
        assert_eq!(pod["securityContext"]["fsGroup"], 1000);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["fsGroupChangePolicy"],
            "OnRootMismatch"
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
        assert_eq!(pod["dnsPolicy"], "None");
        assert_eq!(pod["initContainers"][0]["name"], "write-prompt");
        assert_eq!(pod["initContainers"][0]["image"], "busybox:1.36");
        let c = &pod["containers"][0];
        assert_eq!(c["name"], "claude");
        assert_eq!(c["image"], "ghcr.io/acme/paperclip:1.2");
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["workingDir"], "/paperclip/instances/default/workspaces/a");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(c["resources"]["requests"]["cpu"], "1000m");
        assert_eq!(c["resources"]["limits"]["memory"], "8Gi");
        assert_eq!(
            c["command"][2],
            "exec claude \"$@\" < /var/run/claude-k8s/prompt/prompt.txt"
        );
        assert_eq!(c["args"][0], "--print");
        assert!(
            c.get("ports").is_none()
                && c.get("livenessProbe").is_none()
                && c.get("lifecycle").is_none()
        );
    }

    #[test]
    fn only_the_paperclip_pods_whitelist_is_inherited() {
        let j = as_json(&manifests(json!({}), "hi").unwrap().job);
        let pod = &j["spec"]["template"]["spec"];
        assert!(pod.get("nodeName").is_none());
        assert!(pod.get("serviceAccountName").is_none());
        assert_eq!(
            pod["containers"].as_array().unwrap().len(),
            1,
            "no istio sidecar"
        );
        assert_eq!(
            pod["initContainers"].as_array().unwrap().len(),
            1,
            "no istio-init"
        );
        let volumes: Vec<&str> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            volumes,
            ["paperclip-data", "prompt", "run-secret", "keys"],
            "no token volume, no envoy emptyDir"
        );
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "paperclip-data"
        );
        let labels = j["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .unwrap();
        assert!(!labels.contains_key("app") && !labels.contains_key("pod-template-hash"));
    }

    #[test]
    fn the_token_is_a_secret_ref_and_never_in_the_job() {
        let m = manifests(json!({}), "hi").unwrap();
        let text = serde_json::to_string(&m.job).unwrap();
        assert!(!text.contains("jwt-secret"));
        let env = as_json(&m.job)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
        let key = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "PAPERCLIP_API_KEY")
            .unwrap();
        assert_eq!(key["valueFrom"]["secretKeyRef"]["key"], API_KEY_KEY);
        assert_eq!(
            m.secret.data.as_ref().unwrap()[API_KEY_KEY].0,
            b"jwt-secret"
        );
    }

    #[test]
    fn env_is_deduplicated_with_later_layers_winning() {
        let m = manifests(
            json!({"env": {"ANTHROPIC_API_KEY": "override", "EXTRA": "1"}}),
            "hi",
        )
        .unwrap();
        let env = m.job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let keys: Vec<_> = env
            .iter()
            .filter(|e| e.name == "ANTHROPIC_API_KEY")
            .collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].value.as_deref(), Some("override"));
        assert!(
            env.iter()
                .any(|e| e.name == "MODE" && e.value_from.is_some())
        );
        assert_eq!(
            env.iter()
                .find(|e| e.name == "HOME")
                .unwrap()
                .value
                .as_deref(),
            Some("/paperclip")
        );
    }

    #[test]
    fn a_one_mib_prompt_fits_compressed() {
        let prompt: String = (0..1024 * 1024 / 40)
            .map(|i| format!("line {i:08} of a long task description........\n"))
            .collect();
        assert!(prompt.len() >= 1024 * 1024);
        let m = manifests(json!({}), &prompt).unwrap();
        let gz = &m.secret.data.as_ref().unwrap()[PROMPT_KEY].0;
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
            .unwrap();
        assert_eq!(out, prompt);
    }

    #[test]
    fn pod_spec_patch_is_applied_last() {
        let m = manifests(
            json!({"podSpecPatch": {"hostNetwork": true, "runtimeClassName": "gvisor"}}),
            "hi",
        )
        .unwrap();
        let pod = m.job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.runtime_class_name.as_deref(), Some("gvisor"));
    }

    #[test]
    fn user_labels_and_scheduling_fields() {
        let m = manifests(
            json!({"labels": {"team": "core"}, "nodeSelector": {"pool": "agents"},
                   "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                   "serviceAccountName": "agent-sa"}),
            "hi",
        )
        .unwrap();
        let j = as_json(&m.job);
        assert_eq!(j["metadata"]["labels"]["team"], "core");
        assert_eq!(j["metadata"]["labels"]["paperclip.io/task-id"], "t1");
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["nodeSelector"]["pool"], "agents");
        assert_eq!(pod["tolerations"][0]["key"], "gpu");
        assert_eq!(pod["serviceAccountName"], "agent-sa");
        assert_eq!(pod["automountServiceAccountToken"], true);
    }

    fn pod_of(config: Value) -> Value {
        as_json(&manifests(config, "hi").unwrap().job)["spec"]["template"]["spec"].clone()
    }

    fn both_containers(pod: &Value) -> [&Value; 2] {
        [&pod["initContainers"][0], &pod["containers"][0]]
    }

    // Safe inheritance and the security context, one rule per test, on the real-looking pod of
    // pod_facts::tests::paperclip_pod (istio sidecar and init, probes, ports, lifecycle hook, projected and legacy
    // token volumes, selector labels, nodeName, serviceAccountName).

    #[test]
    fn rule_no_injected_sidecar_or_its_init_container() {
        let pod = pod_of(json!({}));
        let names = |key: &str| -> Vec<String> {
            pod[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("containers"), ["claude"]);
        assert_eq!(names("initContainers"), ["write-prompt"]);
        assert!(!serde_json::to_string(&pod).unwrap().contains("istio"));
    }

    #[test]
    fn mcp_config_travels_in_the_secret_to_an_in_memory_file_only_the_agent_reads() {
        let mcp = r#"{"mcpServers":{"p":{"type":"http","url":"http://x","headers":{"Authorization":"Bearer mcp-tok-1"}}}}"#;
        let m = manifests_with_mcp(json!({}), "hi", Some(mcp)).unwrap();
        assert!(!serde_json::to_string(&m.job).unwrap().contains("mcp-tok-1"));
        assert_eq!(
            m.secret.data.as_ref().unwrap()["mcp-config.json"].0,
            mcp.as_bytes()
        );
        let pod = as_json(&m.job)["spec"]["template"]["spec"].clone();
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "mcp")
            .unwrap()
            .clone();
        assert_eq!(
            vol["emptyDir"],
            json!({"medium": "Memory", "sizeLimit": "1Mi"})
        );
        let script = pod["initContainers"][0]["command"][2].as_str().unwrap();
        assert!(
            script.contains(
                "cp /var/run/claude-k8s/run/mcp-config.json /var/run/claude-k8s/mcp/mcp-config.json"
            ) && script.ends_with("chmod 0400 /var/run/claude-k8s/mcp/mcp-config.json"),
            "{script}"
        );
        let claude_mount = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "mcp")
            .unwrap()
            .clone();
        assert_eq!(
            claude_mount,
            json!({"name": "mcp", "mountPath": "/var/run/claude-k8s/mcp", "readOnly": true})
        );
        // Without MCP servers: no volume, no key, the init script as before.
        let m = manifests(json!({}), "hi").unwrap();
        assert!(
            !m.secret
                .data
                .as_ref()
                .unwrap()
                .contains_key("mcp-config.json")
        );
        let text = serde_json::to_string(&m.job).unwrap();
        assert!(!text.contains("/var/run/claude-k8s/mcp"), "{text}");
    }

    #[test]
    fn rule_no_service_account_token_unless_a_service_account_is_named() {
        let pod = pod_of(json!({}));
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert!(
            pod.get("serviceAccountName").is_none(),
            "not the server's account"
        );
        let text = serde_json::to_string(&pod).unwrap();
        assert!(!text.contains("token"), "no token volume or mount: {text}");
        assert!(!text.contains("/var/run/secrets/kubernetes.io"));
        let named = pod_of(json!({"serviceAccountName": "agent-sa"}));
        assert_eq!(named["serviceAccountName"], "agent-sa");
        assert_eq!(named["automountServiceAccountToken"], true);
    }

    #[test]
    fn rule_no_probes_ports_or_lifecycle_hooks() {
        let pod = pod_of(json!({}));
        for c in both_containers(&pod) {
            for key in [
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
                "ports",
                "lifecycle",
            ] {
                assert!(c.get(key).is_none(), "{key} on {}", c["name"]);
            }
        }
    }

    #[test]
    fn rule_no_node_name_and_no_selector_labels() {
        let j = as_json(&manifests(json!({}), "hi").unwrap().job);
        assert!(j["spec"]["template"]["spec"].get("nodeName").is_none());
        for labels in [
            &j["metadata"]["labels"],
            &j["spec"]["template"]["metadata"]["labels"],
        ] {
            let labels = labels.as_object().unwrap();
            for server_label in ["app", "pod-template-hash"] {
                assert!(!labels.contains_key(server_label), "{server_label}");
            }
        }
        assert!(
            j["spec"].get("selector").is_none(),
            "the Job controller makes its own selector"
        );
    }

    #[test]
    fn rule_whitelisted_facts_are_inherited() {
        let pod = pod_of(json!({}));
        assert_eq!(pod["containers"][0]["image"], "ghcr.io/acme/paperclip:1.2");
        assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
        assert_eq!(pod["dnsPolicy"], "None");
        assert_eq!(pod["dnsConfig"]["nameservers"], json!(["10.0.0.10"]));
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "paperclip-data"
        );
        assert_eq!(
            pod["volumes"][3]["secret"]["secretName"],
            "paperclip-secrets"
        );
        let keys_mount = pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "keys")
            .unwrap();
        assert_eq!(keys_mount["mountPath"], "/etc/keys");
        assert_eq!(
            keys_mount["readOnly"], true,
            "inherited secrets are read-only"
        );
        assert_eq!(
            pod["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            "paperclip-config"
        );
    }

    #[test]
    fn rule_the_servers_own_secrets_never_reach_the_job() {
        let m = manifests(json!({}), "hi").unwrap();
        let text = serde_json::to_string(&m.job).unwrap();
        assert!(
            !text.contains("paperclip-server"),
            "no secretKeyRef to the server's secrets"
        );
        assert!(!text.contains("postgres://"));
        let env = as_json(&m.job)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
        for name in SERVER_SECRET_ENV {
            assert!(
                env.as_array().unwrap().iter().all(|e| e["name"] != name),
                "{name}"
            );
        }
        // A Secret in envFrom might carry them: masked with an empty value.
        let mut facts = PodFacts::from_pod(&paperclip_pod());
        facts
            .env_from
            .push(serde_json::from_value(json!({"secretRef": {"name": "paperclip-env"}})).unwrap());
        let config = AgentConfig::parse(&serde_json::Map::new()).unwrap();
        let inv = Invocation::build(&ExecuteParams::default(), &config, &facts, None);
        let env = container_env(&facts, &inv, false, "s");
        for name in SERVER_SECRET_ENV {
            let entries: Vec<&EnvVar> = env.iter().filter(|e| e.name == name).collect();
            assert_eq!(entries.len(), 1, "{name}");
            assert_eq!(entries[0].value.as_deref(), Some(""), "{name}");
        }
        // An operator can still give one to the agent on purpose.
        let m = manifests(
            json!({"env": {"DATABASE_URL": "postgres://agent-db/x"}}),
            "hi",
        )
        .unwrap();
        let env = as_json(&m.job)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
        let db: Vec<&Value> = env
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "DATABASE_URL")
            .collect();
        assert_eq!(
            db,
            [&json!({"name": "DATABASE_URL", "value": "postgres://agent-db/x"})]
        );
    }

    #[test]
    fn rule_runs_as_non_root_1000_1000() {
        let pod = pod_of(json!({}));
        let sc = &pod["securityContext"];
        assert_eq!(
            (sc["runAsUser"].as_i64(), sc["runAsGroup"].as_i64()),
            (Some(1000), Some(1000))
        );
        assert_eq!(sc["runAsNonRoot"], true);
        for c in both_containers(&pod) {
            assert_eq!(c["securityContext"]["runAsNonRoot"], true, "{}", c["name"]);
        }
    }

    #[test]
    fn rule_no_privilege_escalation() {
        let pod = pod_of(json!({}));
        for c in both_containers(&pod) {
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{}",
                c["name"]
            );
            assert!(c["securityContext"].get("privileged").is_none());
        }
    }

    #[test]
    fn rule_all_capabilities_dropped() {
        let pod = pod_of(json!({}));
        for c in both_containers(&pod) {
            assert_eq!(
                c["securityContext"]["capabilities"],
                json!({"drop": ["ALL"]}),
                "{}",
                c["name"]
            );
        }
    }

    #[test]
    fn rule_seccomp_runtime_default() {
        let pod = pod_of(json!({}));
        assert_eq!(
            pod["securityContext"]["seccompProfile"],
            json!({"type": "RuntimeDefault"})
        );
    }

    #[test]
    fn rule_fs_group_1000_changed_only_on_root_mismatch() {
        let pod = pod_of(json!({}));
        assert_eq!(pod["securityContext"]["fsGroup"], 1000);
        assert_eq!(
            pod["securityContext"]["fsGroupChangePolicy"],
            "OnRootMismatch"
        );
    }

    // One test per Kubernetes field of the config, on the planned Job.

    #[test]
    fn field_image_overrides_the_inherited_one() {
        let pod = pod_of(json!({"image": "registry.example/agent:2"}));
        assert_eq!(pod["containers"][0]["image"], "registry.example/agent:2");
    }

    #[test]
    fn field_image_pull_policy_applies_to_both_containers() {
        for (config, expected) in [
            (json!({}), "IfNotPresent"),
            (json!({"imagePullPolicy": "Always"}), "Always"),
        ] {
            let pod = pod_of(config);
            for c in both_containers(&pod) {
                assert_eq!(c["imagePullPolicy"], expected, "{}", c["name"]);
            }
        }
    }

    #[test]
    fn field_init_image() {
        assert_eq!(
            pod_of(json!({}))["initContainers"][0]["image"],
            "busybox:1.36"
        );
        assert_eq!(
            pod_of(json!({"initImage": "mirror.example/busybox:1"}))["initContainers"][0]["image"],
            "mirror.example/busybox:1"
        );
    }

    #[test]
    fn field_resources_defaults_and_overrides_flat_or_nested() {
        let r = &pod_of(json!({}))["containers"][0]["resources"];
        assert_eq!(
            r,
            &json!({"requests": {"cpu": "1000m", "memory": "2Gi"}, "limits": {"cpu": "4000m", "memory": "8Gi"}})
        );
        let flat =
            pod_of(json!({"resources.requests.cpu": "250m", "resources.limits.memory": "1Gi"}));
        let nested = pod_of(
            json!({"resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}}),
        );
        assert_eq!(
            flat["containers"][0]["resources"],
            nested["containers"][0]["resources"]
        );
        assert_eq!(
            flat["containers"][0]["resources"],
            json!({"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"cpu": "4000m", "memory": "1Gi"}})
        );
    }

    #[test]
    fn field_ttl_timeout_and_grace() {
        let j = as_json(&manifests(json!({}), "hi").unwrap().job);
        assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 300);
        assert!(
            j["spec"].get("activeDeadlineSeconds").is_none(),
            "timeoutSec 0: no deadline"
        );
        assert_eq!(
            j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            60
        );
        let j = as_json(
            &manifests(
                json!({"ttlSecondsAfterFinished": 30, "timeoutSec": 600, "graceSec": 10}),
                "hi",
            )
            .unwrap()
            .job,
        );
        assert_eq!(j["spec"]["ttlSecondsAfterFinished"], 30);
        assert_eq!(j["spec"]["activeDeadlineSeconds"], 600 + 10 + 300);
        assert_eq!(
            j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            10
        );
    }

    #[test]
    fn field_labels_cannot_override_the_adapters_own() {
        let j = as_json(
            &manifests(
                json!({"labels": {"team": "core", "paperclip.io/agent-id": "spoof"}}),
                "hi",
            )
            .unwrap()
            .job,
        );
        for labels in [
            &j["metadata"]["labels"],
            &j["spec"]["template"]["metadata"]["labels"],
        ] {
            assert_eq!(labels["team"], "core");
            assert_eq!(
                labels["paperclip.io/agent-id"],
                "0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa"
            );
        }
    }

    #[test]
    fn field_pod_spec_patch_merges_last_and_null_removes() {
        let pod = pod_of(json!({"podSpecPatch": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
                [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["agents"]}]}]}}},
            "dnsConfig": null,
            "priorityClassName": "agents"
        }}));
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                [0]["matchExpressions"][0]["key"],
            "pool"
        );
        assert!(
            pod.get("dnsConfig").is_none(),
            "null removes an inherited field"
        );
        assert_eq!(pod["priorityClassName"], "agents");
        // Fields the patch does not name keep the plan's values.
        assert_eq!(pod["containers"][0]["name"], "claude");
        let err = manifests(json!({"podSpecPatch": {"containers": "nope"}}), "hi").unwrap_err();
        assert!(matches!(err, PlanError::BadPodSpecPatch(_)), "{err}");
    }

    #[test]
    fn bedrock_aws_env_and_credentials_reach_the_job() {
        let params: ExecuteParams = serde_json::from_value(json!({
            "runId": "r1", "agent": {"id": "a1", "companyId": "c0", "name": "Ada"}, "prompt": {"fresh": "hi"}
        }))
        .unwrap();
        let mut pod = paperclip_pod();
        pod.spec.as_mut().unwrap().containers[1]
            .env
            .as_mut()
            .unwrap()
            .extend(
                serde_json::from_value::<Vec<k8s_openapi::api::core::v1::EnvVar>>(json!([
                    {"name": "CLAUDE_CODE_USE_BEDROCK", "value": "1"},
                    {"name": "AWS_REGION", "value": "us-east-1"},
                    {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "id"}}},
                    {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "secret"}}}
                ]))
                .unwrap(),
            );
        let facts = PodFacts::from_pod(&pod);
        let config = AgentConfig::parse(
            json!({"model": "claude-sonnet-4-6", "env": {"AWS_PROFILE": "agents"}})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let inv = Invocation::build(&params, &config, &facts, None);
        assert!(inv.bedrock);
        let id = RunIdentity::default();
        let m = plan(
            &RunPlanInput {
                identity: &id,
                agent_name: "Ada",
                namespace: "paperclip",
                invocation: &inv,
                auth_token: None,
                mcp_config: None,
            },
            &config,
            &facts,
        )
        .unwrap();
        let c = &as_json(&m.job)["spec"]["template"]["spec"]["containers"][0];
        let var = |n: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == n)
                .cloned()
                .unwrap_or_else(|| panic!("{n} not in the Job env"))
        };
        assert_eq!(var("CLAUDE_CODE_USE_BEDROCK")["value"], "1");
        assert_eq!(var("AWS_REGION")["value"], "us-east-1");
        assert_eq!(
            var("AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"]["name"],
            "aws"
        );
        assert_eq!(
            var("AWS_SECRET_ACCESS_KEY")["valueFrom"]["secretKeyRef"]["key"],
            "secret"
        );
        assert_eq!(var("AWS_PROFILE")["value"], "agents");
        assert!(!c["args"].as_array().unwrap().contains(&json!("--model")));
    }

    #[test]
    fn missing_claim_or_image_are_clear_errors() {
        let config = AgentConfig::parse(&serde_json::Map::new()).unwrap();
        let id = RunIdentity::default();
        let params = ExecuteParams::default();
        let inv = Invocation::build(&params, &config, &PodFacts::default(), None);
        let input = RunPlanInput {
            identity: &id,
            agent_name: "",
            namespace: "ns",
            invocation: &inv,
            auth_token: None,
            mcp_config: None,
        };
        assert!(matches!(
            plan(&input, &config, &PodFacts::default()),
            Err(PlanError::NoImage)
        ));
        let facts = PodFacts {
            image: Some("img".into()),
            pod_name: "p".into(),
            namespace: "ns".into(),
            ..Default::default()
        };
        let err = plan(&input, &config, &facts).unwrap_err();
        assert!(err.to_string().contains("/paperclip"), "{err}");
    }
}
