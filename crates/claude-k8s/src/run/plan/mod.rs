//! The Job (and its per-run Secret) for one run. Pure: config, pod facts and the invocation in, manifests out.
//!
//! Shape: the run Secret carries the prompt, the run token, the MCP config (it holds Paperclip's bearer tokens) and
//! the agent config's secret env values, so none of them appears in the Job spec. The `claude` container mounts the
//! Secret read-only (an in-memory volume, readable by the agent's group only: it holds nothing claude's own
//! environment does not) and its shell feeds claude the prompt on stdin, so no prompt size meets the 128 KiB
//! argv/env limit; the run token and secret env values reach it as `secretKeyRef`s. A prompt too large for a Secret
//! as it is travels gzipped, and then a `write-prompt` init container (busybox) unpacks it into an emptyDir first
//! ([`PromptDelivery`]): one more container start, which costs the kubelet about a second and a half. The pod sees
//! only its run's directories of the shared volume ([`crate::run::prepare::view`], `volumes`); after any
//! `podSpecPatch` its security context is re-applied ([`reapply_security`]) except where the operator policy allows
//! the loosening.

pub mod attempt;
pub mod invocation;
mod security;
mod volumes;

pub use attempt::{Planned, for_attempt, invocation_for};
use security::container_security;
pub use security::reapply_security;

use std::collections::BTreeMap;
use std::io::Write;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::k8s::labels::{self, RunIdentity};
use crate::policy::PatchRules;
use crate::run::plan::invocation::Invocation;
use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::mcp::MCP_CONFIG_FILE;
use crate::run::prepare::pod_facts::{DATA_MOUNT_PATH, PodFacts, SERVER_SECRET_ENV};
use crate::run::prepare::view::View;

pub const CLAUDE_CONTAINER: &str = "claude";
/// What the claude container's shell prints, on a line of its own followed by claude's exit code, once claude has
/// exited ([`claude_script`]).
pub const EXIT_LINE_PREFIX: &str = "[claude-k8s] claude exited: ";
pub const PROMPT_CONTAINER: &str = "write-prompt";
pub const AGENT_UID: i64 = 1000;
/// Where the `write-prompt` init container unpacks a packed prompt (an emptyDir).
const PROMPT_DIR: &str = "/var/run/claude-k8s/prompt";
/// Where the run Secret's volume is mounted, in the claude container (and the init container, when there is one).
const RUN_SECRET_DIR: &str = "/var/run/claude-k8s/run";
/// The prompt's key in the run Secret, as it is or gzipped.
const PROMPT_KEY: &str = "prompt.txt";
const PACKED_PROMPT_KEY: &str = "prompt.gz";
/// The run Secret's keys that hold the prompt: no secret (Paperclip shows it), so nothing masks its text.
pub const PROMPT_KEYS: [&str; 2] = [PROMPT_KEY, PACKED_PROMPT_KEY];
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
    /// Which directories of the shared volume the pod sees.
    pub view: &'a View,
    /// What the operator policy lets a `podSpecPatch` loosen; everything else is re-applied after it.
    pub patch_rules: &'a PatchRules,
}

#[derive(Debug, Clone)]
pub struct RunManifests {
    pub job: Job,
    pub secret: Secret,
}

/// The Job and its run Secret for one run. Parts: [`run_secret`], [`volumes::volumes`] (with the init script),
/// [`init_container`], [`claude_container`], [`pod_spec`], [`job`].
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

    let (secret, delivery) = run_secret(input, &secret_name, &job_labels)?;
    let volumes = volumes::volumes(input, facts, claim, &secret_name, delivery);
    let init = volumes
        .init
        .map(|(mounts, script)| init_container(config, mounts, script));
    let claude = claude_container(
        input,
        config,
        facts,
        image,
        volumes.claude_mounts,
        &secret_name,
        delivery,
    );
    let ours = pod_spec(config, facts, init, claude, volumes.volumes);
    let pod_spec = match &config.pod_spec_patch {
        Some(patch) => {
            let mut patched = apply_merge_patch(&ours, patch)?;
            reapply_security(&mut patched, &ours, input.patch_rules);
            patched
        }
        None => ours,
    };
    let job = job(input, config, job_name, job_labels, pod_spec);
    Ok(RunManifests { job, secret })
}

/// How the prompt reaches claude's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptDelivery {
    /// As it is in the run Secret, read by claude's shell from the Secret's volume: the pod has one container.
    Direct,
    /// Gzipped in the run Secret (it did not fit as it is) and unpacked by the `write-prompt` init container.
    Unpacked,
}

impl PromptDelivery {
    /// The file claude's shell reads the prompt from.
    fn prompt_file(self) -> String {
        match self {
            PromptDelivery::Direct => format!("{RUN_SECRET_DIR}/{PROMPT_KEY}"),
            PromptDelivery::Unpacked => format!("{PROMPT_DIR}/{PROMPT_KEY}"),
        }
    }
}

/// Where claude reads the MCP config: the run Secret's volume.
pub fn mcp_config_path() -> String {
    format!("{RUN_SECRET_DIR}/{MCP_CONFIG_FILE}")
}

/// The run Secret's key of a secret env value of the agent config.
pub fn env_secret_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        format!("env.{name}")
    } else {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(name.as_bytes());
        let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("env-{hex}")
    }
}

/// The run Secret: the prompt (gzipped only if it does not fit as it is), the run token, the MCP config (it holds
/// the servers' tokens) and the agent config's secret env values; and how the prompt is delivered.
fn run_secret(
    input: &RunPlanInput<'_>,
    secret_name: &str,
    job_labels: &BTreeMap<String, String>,
) -> Result<(Secret, PromptDelivery), PlanError> {
    let inv = input.invocation;
    let secret_env: Vec<(String, &str)> = inv
        .secret_env
        .iter()
        .filter_map(|name| Some((env_secret_key(name), inv.env_value(name)?)))
        .collect();
    let token_len = input.auth_token.map_or(0, str::len)
        + input.mcp_config.map_or(0, str::len)
        + secret_env
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let prompt = inv.prompt.as_bytes();
    let (key, prompt, delivery) = if prompt.len() + token_len <= MAX_SECRET_BYTES {
        (PROMPT_KEY, prompt.to_vec(), PromptDelivery::Direct)
    } else {
        let packed = gzip(prompt);
        if packed.len() + token_len > MAX_SECRET_BYTES {
            return Err(PlanError::PromptTooLarge {
                compressed: packed.len(),
            });
        }
        (PACKED_PROMPT_KEY, packed, PromptDelivery::Unpacked)
    };
    let mut secret_data = BTreeMap::from([(key.to_owned(), ByteString(prompt))]);
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
    for (key, value) in secret_env {
        secret_data.insert(key, ByteString(value.as_bytes().to_vec()));
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_owned()),
            namespace: Some(input.namespace.to_owned()),
            labels: Some(job_labels.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(secret_data),
        ..Default::default()
    };
    Ok((secret, delivery))
}

/// `write-prompt`: unpacks a packed prompt from the run Secret.
fn init_container(config: &AgentConfig, mounts: Vec<VolumeMount>, script: String) -> Container {
    Container {
        name: PROMPT_CONTAINER.into(),
        image: Some(config.init_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        command: Some(vec!["sh".into(), "-c".into(), script]),
        volume_mounts: Some(mounts),
        resources: Some(resources("10m", "16Mi", "500m", "64Mi")),
        // It writes only to its emptyDirs.
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            ..container_security()
        }),
        ..Default::default()
    }
}

/// `claude`, with the prompt on stdin.
fn claude_container(
    input: &RunPlanInput<'_>,
    config: &AgentConfig,
    facts: &PodFacts,
    image: String,
    mounts: Vec<VolumeMount>,
    secret_name: &str,
    delivery: PromptDelivery,
) -> Container {
    Container {
        name: CLAUDE_CONTAINER.into(),
        image: Some(image),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            claude_script(&delivery.prompt_file()),
            "claude".into(),
        ]),
        args: Some(input.invocation.args.clone()),
        working_dir: Some(input.invocation.cwd.clone()),
        env: Some(container_env(
            facts,
            input.invocation,
            input.auth_token.is_some(),
            secret_name,
        )),
        env_from: (!facts.env_from.is_empty()).then(|| facts.env_from.clone()),
        volume_mounts: Some(mounts),
        resources: Some(resources(
            &config.resources.requests_cpu,
            &config.resources.requests_memory,
            &config.resources.limits_cpu,
            &config.resources.limits_memory,
        )),
        // claude writes to its HOME (on the volume) and /tmp (an emptyDir), nothing else of the image.
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            ..container_security()
        }),
        ..Default::default()
    }
}

/// The claude container's shell (PID 1): runs claude with the prompt on stdin, passes the kubelet's SIGTERM on to
/// it, waits for it and, once it has exited, prints [`EXIT_LINE_PREFIX`] and its exit code on a line of its own,
/// then exits with that code (128 + the signal when claude was killed by one, as `exec` would have made it). The
/// line tells the adapter the moment claude exited, about a second before the kubelet reports the container's
/// end; the agent can print the same line, so it is only ever a hint (see `follow::machine`). POSIX sh only: the
/// image's shell may be busybox, dash or bash.
fn claude_script(prompt_file: &str) -> String {
    format!(
        "trap 'stop=1; [ -z \"$pid\" ] || kill -TERM \"$pid\" 2>/dev/null' TERM\n\
         claude \"$@\" < {prompt_file} &\n\
         pid=$!\n\
         [ -z \"$stop\" ] || kill -TERM \"$pid\" 2>/dev/null\n\
         while wait \"$pid\"; code=$?; kill -0 \"$pid\" 2>/dev/null; do :; done\n\
         printf '%s%s\\n' '{EXIT_LINE_PREFIX}' \"$code\"\n\
         exit \"$code\"\n"
    )
}

/// The pod: never restarted, UID 1000, no Kubernetes identity unless the operator names one.
fn pod_spec(
    config: &AgentConfig,
    facts: &PodFacts,
    init: Option<Container>,
    claude: Container,
    volumes: Vec<Volume>,
) -> PodSpec {
    PodSpec {
        restart_policy: Some("Never".into()),
        // How long a stopped run (cancel, timeout, cleanup) may take to exit before it is killed.
        termination_grace_period_seconds: Some(config.grace_sec as i64),
        init_containers: init.map(|init| vec![init]),
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
    }
}

/// The Job: one try, a TTL as the cleanup backstop, a deadline only as a backstop for `timeoutSec`.
fn job(
    input: &RunPlanInput<'_>,
    config: &AgentConfig,
    job_name: String,
    job_labels: BTreeMap<String, String>,
    pod_spec: PodSpec,
) -> Job {
    let annotations = BTreeMap::from([(
        labels::AGENT_NAME_ANNOTATION.to_owned(),
        input.agent_name.to_owned(),
    )]);
    Job {
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
    }
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
        let secret = invocation.secret_env.contains(name);
        set(EnvVar {
            name: name.clone(),
            value: (!secret).then(|| value.clone()),
            value_from: secret.then(|| EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret_name.to_owned(),
                    key: env_secret_key(name),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
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
mod tests;
