//! Environment checks: `testEnvironment` in Paperclip and `claude-k8s doctor` on the command line run the same
//! list. Each failed check names the fix (the Role rule, the config field, the PVC setting).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;

pub use super::permissions::{PERMISSIONS, Permission};
use crate::k8s::clients::Clients;
use crate::k8s::clients::KubeCtx;
use crate::k8s::errors::{Kind, is_not_found, kind};
use crate::policy::Policy;
use crate::run::outcome::ErrorCode;
use crate::run::plan::invocation::is_loopback_url;
use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::introspect::SelfPod;
use crate::run::prepare::pod_facts::PodFacts;
use crate::serve::protocol::TestEnvironmentParams;
use crate::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub code: String,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub adapter_type: &'static str,
    pub status: &'static str,
    pub checks: Vec<Check>,
    pub tested_at: String,
}

struct Checks(Vec<Check>);

impl Checks {
    fn add(&mut self, code: &str, level: Level, message: impl Into<String>, hint: Option<String>) {
        self.0.push(Check {
            code: code.to_owned(),
            level,
            message: message.into(),
            hint,
        });
    }
}

/// Runs every check with the serve process's clients and self-introspection (or a CLI command's own).
pub async fn test_environment(
    clients: &Clients,
    self_pod: &SelfPod,
    settings: &Settings,
    policy: &Policy,
    params: &TestEnvironmentParams,
) -> TestResult {
    let mut checks = Checks(Vec::new());
    run_checks(clients, self_pod, settings, policy, params, &mut checks).await;
    TestResult {
        adapter_type: "claude_k8s",
        status: overall_status(&checks.0),
        checks: checks.0,
        tested_at: jiff::Timestamp::now().to_string(),
    }
}

/// Paperclip's AdapterEnvironmentTestResult status: `fail` if any check is an error, else `warn` if any warns,
/// else `pass`.
pub fn overall_status(checks: &[Check]) -> &'static str {
    if checks.iter().any(|c| c.level == Level::Error) {
        "fail"
    } else if checks.iter().any(|c| c.level == Level::Warn) {
        "warn"
    } else {
        "pass"
    }
}

async fn run_checks(
    clients: &Clients,
    self_pod: &SelfPod,
    settings: &Settings,
    policy: &Policy,
    params: &TestEnvironmentParams,
    out: &mut Checks,
) {
    let config = match AgentConfig::parse(&params.config) {
        Ok(c) => c,
        Err(e) => {
            return out.add(
                ErrorCode::InvalidConfig.as_str(),
                Level::Error,
                e.to_string(),
                None,
            );
        }
    };
    // Before any client is made: a refused kubeconfig is never read.
    if let Err(denied) = policy.check(&config, None) {
        return out.add(
            ErrorCode::PolicyDenied.as_str(),
            Level::Error,
            denied.to_string(),
            Some(format!(
                "only the operator can allow these, in {}",
                denied.place
            )),
        );
    }
    if policy.whole_volume {
        out.add(
            "whole_volume_mounted",
            Level::Warn,
            format!(
                "the operator policy ({}) sets wholeVolume: every Job pod mounts the whole shared volume \
                 read-write with HOME=/paperclip, so an agent can read Paperclip's .env, secrets master key and \
                 database and every other agent's workspace and Claude sessions",
                policy.source
            ),
            Some(
                "remove `wholeVolume` from the operator policy: each pod then sees only its workspaces, its own \
                 Claude home and its prompt bundle (README, \"Security model\")"
                    .into(),
            ),
        );
    }
    let kube = match clients.get(config.kubeconfig.as_deref()).await {
        Ok(k) => k,
        Err(e) => return out.add("k8s_api_unreachable", Level::Error, e.to_string(), None),
    };
    match kube.client.apiserver_version().await {
        Ok(v) => out.add(
            "k8s_api_reachable",
            Level::Info,
            format!("Kubernetes API reachable (v{}.{})", v.major, v.minor),
            None,
        ),
        Err(e) => {
            return out.add(
                "k8s_api_unreachable",
                Level::Error,
                format!("Kubernetes API not reachable: {e}"),
                Some("check adapterConfig.kubeconfig, or the in-cluster service account".into()),
            );
        }
    }
    let facts = match self_pod.facts(&kube, settings).await {
        Ok(f) => {
            out.add(
                "k8s_self_pod",
                Level::Info,
                format!("read the Paperclip pod {}/{}", f.namespace, f.pod_name),
                None,
            );
            f
        }
        Err(e) => {
            out.add("k8s_self_pod_unreadable", Level::Error, e.to_string(), None);
            PodFacts::default()
        }
    };
    let namespace = crate::run::prepare::namespace(&config, &facts, &kube);
    check_namespace(&kube, &namespace, config.namespace.is_some(), out).await;
    check_inherited_references(&namespace, &facts, out);
    check_permissions(&kube, &namespace, out).await;
    check_pvc(&kube, &namespace, &facts, out).await;
    check_image(&config, &facts, out);
    check_credentials(&config, &facts, out);
    check_api_url(&config, &facts, out);
}

async fn check_namespace(kube: &KubeCtx, namespace: &str, explicit: bool, out: &mut Checks) {
    match Api::<Namespace>::all(kube.client.clone())
        .get(namespace)
        .await
    {
        Ok(_) => out.add(
            "k8s_namespace_exists",
            Level::Info,
            format!("namespace {namespace} exists"),
            None,
        ),
        Err(e) if is_not_found(&e) => out.add(
            "k8s_namespace_missing",
            Level::Error,
            format!("namespace {namespace} does not exist"),
            Some("create it, or set adapterConfig.namespace to an existing one".into()),
        ),
        Err(e) if kind(&e) == Kind::Forbidden => out.add(
            "k8s_namespace_unverified",
            if explicit { Level::Warn } else { Level::Info },
            format!(
                "cannot read namespace {namespace} to confirm it exists (no `get` on namespaces)"
            ),
            Some(
                "for Jobs in another namespace, bind deploy/clusterrole-cross-namespace.yaml"
                    .into(),
            ),
        ),
        Err(e) => out.add(
            "k8s_namespace_check_failed",
            Level::Warn,
            format!("cannot check namespace {namespace}: {e}"),
            None,
        ),
    }
}

/// Jobs in another namespace than the Paperclip pod inherit its Secret and ConfigMap references by name; the
/// adapter may not read Secrets, so it names what must exist there instead of checking.
fn check_inherited_references(namespace: &str, facts: &PodFacts, out: &mut Checks) {
    if facts.namespace.is_empty() || facts.namespace == namespace {
        return;
    }
    let (secrets, config_maps) = facts.referenced_objects();
    if secrets.is_empty() && config_maps.is_empty() {
        return;
    }
    let mut what = Vec::new();
    if !secrets.is_empty() {
        what.push(format!("Secrets {}", secrets.join(", ")));
    }
    if !config_maps.is_empty() {
        what.push(format!("ConfigMaps {}", config_maps.join(", ")));
    }
    out.add(
        "k8s_inherited_refs_other_namespace",
        Level::Warn,
        format!(
            "Jobs run in namespace {namespace}, the Paperclip pod in {}: the {} it inherits must exist in {namespace} too, or the Job pods cannot start",
            facts.namespace,
            what.join(" and ")
        ),
        Some(format!(
            "copy them into namespace {namespace} (the adapter cannot read Secrets to check), or run the Jobs in {}",
            facts.namespace
        )),
    );
}

async fn check_permissions(kube: &KubeCtx, namespace: &str, out: &mut Checks) {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(kube.client.clone());
    let checks = PERMISSIONS.iter().map(|p| {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_owned()),
                    group: Some(p.group.to_owned()),
                    resource: Some(p.resource.to_owned()),
                    subresource: (!p.subresource.is_empty()).then(|| p.subresource.to_owned()),
                    verb: Some(p.verb.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviews = reviews.clone();
        async move { (p, reviews.create(&PostParams::default(), &review).await) }
    });
    for (p, answer) in futures::future::join_all(checks).await {
        let res = if p.subresource.is_empty() {
            p.resource.to_owned()
        } else {
            format!("{}/{}", p.resource, p.subresource)
        };
        let what = format!("{} {res} in namespace {namespace} ({})", p.verb, p.why);
        match answer {
            Ok(r) if review_allows(r.status.as_ref()) => {
                out.add(&p.code(), Level::Info, format!("allowed: {what}"), None)
            }
            Ok(r) => out.add(
                &p.code(),
                Level::Error,
                format!(
                    "denied: {what}{}",
                    r.status.and_then(|s| s.evaluation_error).map(|e| format!(" ({e})")).unwrap_or_default()
                ),
                Some(format!("add this rule to the adapter's Role (deploy/role.yaml): {}", p.rule())),
            ),
            Err(e) => out.add(
                &p.code(),
                Level::Error,
                format!("cannot check {what}: {e}"),
                Some("the adapter needs `create` on selfsubjectaccessreviews (deploy/clusterrole-self-review.yaml)".into()),
            ),
        }
    }
}

/// A review allows only with `allowed` and no evaluation error (an authorizer that could not evaluate every rule
/// may have missed a deny, so that counts as denied); no status at all is denied too.
fn review_allows(
    status: Option<&k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus>,
) -> bool {
    status.is_some_and(|s| s.allowed && s.evaluation_error.as_deref().is_none_or(str::is_empty))
}

async fn check_pvc(kube: &KubeCtx, namespace: &str, facts: &PodFacts, out: &mut Checks) {
    let Some(claim) = &facts.data_claim else {
        return out.add(
            "k8s_pvc_not_detected",
            Level::Error,
            "no PersistentVolumeClaim is mounted at /paperclip in the Paperclip pod",
            Some("mount the shared ReadWriteMany PVC at /paperclip in the Paperclip Deployment (README, PVC)".into()),
        );
    };
    match Api::<PersistentVolumeClaim>::namespaced(kube.client.clone(), namespace)
        .get(claim)
        .await
    {
        Ok(pvc) => {
            let modes = pvc
                .spec
                .as_ref()
                .and_then(|s| s.access_modes.clone())
                .unwrap_or_default();
            let phase = pvc
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if !modes.iter().any(|m| m == "ReadWriteMany") {
                out.add(
                    "k8s_pvc_not_rwx",
                    Level::Error,
                    format!("PVC {claim} has access modes {modes:?}, not ReadWriteMany: Job pods on other nodes cannot mount it"),
                    Some(format!(
                        "access modes cannot be changed on a claim: create a new claim with accessModes: [ReadWriteMany] on a ReadWriteMany-capable StorageClass (NFS, CephFS, EFS, Filestore, Azure Files; deploy/pvc-example.yaml), copy the data over, and mount it at /paperclip in the Paperclip Deployment instead of {claim}"
                    )),
                );
            } else if phase != "Bound" {
                out.add(
                    "k8s_pvc_not_bound",
                    Level::Error,
                    format!("PVC {claim} is {phase}, not Bound"),
                    None,
                );
            } else {
                out.add(
                    "k8s_pvc_rwx",
                    Level::Info,
                    format!("PVC {claim} is Bound and ReadWriteMany"),
                    None,
                );
            }
        }
        Err(e) if is_not_found(&e) => out.add(
            "k8s_pvc_missing",
            Level::Error,
            format!("PVC {claim} does not exist in namespace {namespace}"),
            Some(
                "Jobs must run in the namespace of the shared PVC (adapterConfig.namespace)".into(),
            ),
        ),
        Err(e) => out.add(
            "k8s_pvc_check_failed",
            Level::Warn,
            format!("cannot read PVC {claim}: {e}"),
            None,
        ),
    }
}

fn check_image(config: &AgentConfig, facts: &PodFacts, out: &mut Checks) {
    match (&config.image, &facts.image) {
        (Some(image), _) => out.add(
            "k8s_image",
            Level::Info,
            format!("agent image (configured): {image}"),
            None,
        ),
        (None, Some(image)) => out.add(
            "k8s_image",
            Level::Info,
            format!("agent image (inherited): {image}"),
            None,
        ),
        (None, None) => out.add(
            "k8s_image_unknown",
            Level::Error,
            "no agent image: none configured and none inherited",
            Some("set adapterConfig.image".into()),
        ),
    }
}

fn check_credentials(config: &AgentConfig, facts: &PodFacts, out: &mut Checks) {
    let has =
        |name: &str| config.env.contains_key(name) || facts.env.iter().any(|e| e.name == name);
    let from_env_from = !facts.env_from.is_empty();
    if has("CLAUDE_CODE_USE_BEDROCK") || has("ANTHROPIC_BEDROCK_BASE_URL") {
        let creds = has("AWS_ACCESS_KEY_ID")
            || has("AWS_PROFILE")
            || has("AWS_WEB_IDENTITY_TOKEN_FILE")
            || has("AWS_BEARER_TOKEN_BEDROCK");
        if creds || from_env_from {
            out.add(
                "claude_bedrock_auth",
                Level::Info,
                "Bedrock selected, AWS credentials present",
                None,
            );
        } else {
            out.add(
                "claude_bedrock_credentials_missing",
                Level::Warn,
                "Bedrock selected but no AWS credentials found in the env",
                Some("set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a web identity) in the Deployment or adapterConfig.env".into()),
            );
        }
    } else if has("ANTHROPIC_API_KEY")
        || has("CLAUDE_CODE_OAUTH_TOKEN")
        || has("ANTHROPIC_AUTH_TOKEN")
    {
        out.add(
            "claude_api_key_present",
            Level::Info,
            "an Anthropic API key reaches the Job",
            None,
        );
    } else if from_env_from {
        out.add(
            "claude_api_key_unverified",
            Level::Warn,
            "no ANTHROPIC_API_KEY named in env; it may come from envFrom",
            None,
        );
    } else {
        out.add(
            "claude_api_key_missing",
            Level::Error,
            "no ANTHROPIC_API_KEY in the Paperclip pod's env or adapterConfig.env",
            Some(
                "add ANTHROPIC_API_KEY from a Secret to the Deployment (README, API Key Secret)"
                    .into(),
            ),
        );
    }
}

fn check_api_url(config: &AgentConfig, facts: &PodFacts, out: &mut Checks) {
    let url = config
        .paperclip_api_url
        .clone()
        .or_else(|| config.env.get("PAPERCLIP_API_URL").cloned())
        .or_else(|| facts.literal_env("PAPERCLIP_API_URL").map(str::to_owned));
    match url {
        Some(u) if is_loopback_url(&u) => out.add(
            "paperclip_api_url_loopback",
            Level::Warn,
            format!("PAPERCLIP_API_URL for pods is {u}, a loopback address: only host-network pods reach it"),
            Some("set adapterConfig.paperclipApiUrl to the in-cluster Service URL".into()),
        ),
        Some(u) => out.add("paperclip_api_url", Level::Info, format!("pods reach Paperclip at {u}"), None),
        None if facts.env.iter().any(|e| e.name == "PAPERCLIP_API_URL") => {
            out.add("paperclip_api_url", Level::Info, "PAPERCLIP_API_URL is inherited from a Secret or ConfigMap", None)
        }
        None => out.add(
            "paperclip_api_url_missing",
            Level::Warn,
            "PAPERCLIP_API_URL is not set for pods: agents cannot call the Paperclip API",
            Some("set adapterConfig.paperclipApiUrl to the in-cluster Service URL, e.g. http://paperclip.paperclip.svc:3100".into()),
        ),
    }
}

#[cfg(test)]
mod tests;
