//! Environment checks: `testEnvironment` in Paperclip and `claude-k8s doctor` on the command line run the same
//! list. Each failed check names the fix (the Role rule, the config field, the PVC setting).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;

use crate::k8s::clients::KubeCtx;
use crate::run::Services;
use crate::run::plan::invocation::is_loopback_url;
use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::pod_facts::PodFacts;
use crate::serve::protocol::TestEnvironmentParams;

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

/// One permission the adapter uses, as a Role rule would grant it.
pub struct Permission {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
    pub verb: &'static str,
    pub why: &'static str,
}

/// Every permission a run needs in the Jobs' namespace (deploy/role.yaml grants exactly these).
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "create",
        why: "launch a run",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "get",
        why: "follow a run",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "list",
        why: "one Job per agent",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "watch",
        why: "follow a run without polling",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "delete",
        why: "cleanup and cancel",
    },
    Permission {
        group: "batch",
        resource: "jobs",
        subresource: "",
        verb: "patch",
        why: "mark a retained Job's result as reported",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "",
        verb: "get",
        why: "self-introspection",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "",
        verb: "list",
        why: "find the run's pod",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "",
        verb: "watch",
        why: "follow the pod's status",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "",
        verb: "delete",
        why: "force-stop a pod that outlives its grace period",
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: "log",
        verb: "get",
        why: "stream the transcript",
    },
    Permission {
        group: "",
        resource: "secrets",
        subresource: "",
        verb: "create",
        why: "the run Secret (prompt, run token)",
    },
    Permission {
        group: "",
        resource: "secrets",
        subresource: "",
        verb: "patch",
        why: "make the Job own its run Secret",
    },
    Permission {
        group: "",
        resource: "secrets",
        subresource: "",
        verb: "delete",
        why: "remove the run Secret",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        verb: "get",
        why: "one Job per agent: read the agent's Lease",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        verb: "create",
        why: "one Job per agent: take the agent's Lease",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        verb: "update",
        why: "one Job per agent: take over a stale Lease",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        verb: "delete",
        why: "one Job per agent: release the agent's Lease",
    },
    Permission {
        group: "",
        resource: "events",
        subresource: "",
        verb: "list",
        why: "name the cause of a failed start (FailedCreate, FailedMount)",
    },
    Permission {
        group: "",
        resource: "persistentvolumeclaims",
        subresource: "",
        verb: "get",
        why: "check the shared PVC",
    },
];

impl Permission {
    /// The check's code, e.g. `k8s_rbac_pods_log_get`.
    pub fn code(&self) -> String {
        let res = if self.subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}_{}", self.resource, self.subresource)
        };
        format!("k8s_rbac_{}_{}", res.trim_end_matches('s'), self.verb)
    }

    /// The Role rule that grants it, as the fix names it.
    pub fn rule(&self) -> String {
        let res = if self.subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        format!(
            "- apiGroups: [\"{}\"]  resources: [\"{res}\"]  verbs: [\"{}\"]",
            self.group, self.verb
        )
    }
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

pub async fn test_environment(services: &Services, params: &TestEnvironmentParams) -> TestResult {
    let mut checks = Checks(Vec::new());
    run_checks(services, params, &mut checks).await;
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

async fn run_checks(services: &Services, params: &TestEnvironmentParams, out: &mut Checks) {
    let config = match AgentConfig::parse(&params.config) {
        Ok(c) => c,
        Err(e) => return out.add("invalid_config", Level::Error, e.to_string(), None),
    };
    let kube = match services.clients.get(config.kubeconfig.as_deref()).await {
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
    let facts = match services.self_pod.facts(&kube).await {
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
    let namespace = config
        .namespace
        .clone()
        .or_else(|| (!facts.namespace.is_empty()).then(|| facts.namespace.clone()))
        .unwrap_or_else(|| kube.default_namespace.clone());
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
        Err(kube::Error::Api(s)) if s.code == 404 => out.add(
            "k8s_namespace_missing",
            Level::Error,
            format!("namespace {namespace} does not exist"),
            Some("create it, or set adapterConfig.namespace to an existing one".into()),
        ),
        Err(kube::Error::Api(s)) if s.code == 403 => out.add(
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
        Err(kube::Error::Api(s)) if s.code == 404 => out.add(
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
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn permission_codes_and_rules_name_the_fix() {
        let log = PERMISSIONS.iter().find(|p| p.subresource == "log").unwrap();
        assert_eq!(log.code(), "k8s_rbac_pods_log_get");
        assert_eq!(
            log.rule(),
            "- apiGroups: [\"\"]  resources: [\"pods/log\"]  verbs: [\"get\"]"
        );
        let create = &PERMISSIONS[0];
        assert_eq!(create.code(), "k8s_rbac_job_create");
        let codes: std::collections::BTreeSet<String> =
            PERMISSIONS.iter().map(Permission::code).collect();
        assert_eq!(
            codes.len(),
            PERMISSIONS.len(),
            "one distinct code per permission"
        );
    }

    /// The flow-style lists of deploy/role.yaml (`key: ["a", "b"]`), one rule per `- apiGroups:` item.
    fn role_yaml_rules() -> Vec<(String, Vec<String>, Vec<String>)> {
        let text = include_str!("../../../../deploy/role.yaml");
        let list = |line: &str| -> Vec<String> {
            let inner = line
                .split_once('[')
                .and_then(|(_, rest)| rest.rsplit_once(']'))
                .map(|(inner, _)| inner)
                .unwrap_or_else(|| panic!("not a flow list: {line}"));
            inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_matches('"').to_owned())
                .collect()
        };
        let mut rules = Vec::new();
        let mut group = None;
        let mut resources = None;
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let t = line.trim_start_matches(['-', ' ']);
            if let Some(v) = t.strip_prefix("apiGroups:") {
                let groups = list(v);
                assert_eq!(groups.len(), 1, "one API group per rule: {line}");
                group = Some(groups[0].clone());
            } else if let Some(v) = t.strip_prefix("resources:") {
                resources = Some(list(v));
            } else if let Some(v) = t.strip_prefix("verbs:") {
                rules.push((
                    group.take().expect("apiGroups before verbs"),
                    resources.take().expect("resources before verbs"),
                    list(v),
                ));
            }
        }
        rules
    }

    #[test]
    fn deploy_role_grants_exactly_the_checked_permissions() {
        let mut granted = std::collections::BTreeSet::new();
        for (group, resources, verbs) in role_yaml_rules() {
            // Cluster-scoped: a Role cannot grant it (documented there); checked implicitly, since every
            // permission check is a SelfSubjectAccessReview and fails with that hint when it is not allowed.
            if resources == ["selfsubjectaccessreviews"] {
                assert_eq!(
                    (group.as_str(), verbs.as_slice()),
                    ("authorization.k8s.io", &["create".to_owned()][..])
                );
                continue;
            }
            for r in &resources {
                for v in &verbs {
                    assert!(
                        granted.insert((group.clone(), r.clone(), v.clone())),
                        "deploy/role.yaml grants {group}/{r} {v} twice"
                    );
                }
            }
        }
        let checked: std::collections::BTreeSet<_> = PERMISSIONS
            .iter()
            .map(|p| {
                let r = if p.subresource.is_empty() {
                    p.resource.to_owned()
                } else {
                    format!("{}/{}", p.resource, p.subresource)
                };
                (p.group.to_owned(), r, p.verb.to_owned())
            })
            .collect();
        assert_eq!(checked.len(), PERMISSIONS.len());
        assert_eq!(
            granted, checked,
            "deploy/role.yaml and checks::PERMISSIONS must agree exactly"
        );
    }

    #[test]
    fn each_missing_permission_names_a_rule_that_is_in_deploy_role() {
        let rules = role_yaml_rules();
        for p in PERMISSIONS {
            let rule = p.rule();
            let res = rule
                .split("resources: [\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(
                rules.iter().any(|(g, rs, vs)| g == p.group
                    && rs.iter().any(|r| r == res)
                    && vs.iter().any(|v| v == p.verb)),
                "{rule} is not granted by deploy/role.yaml"
            );
        }
    }

    fn facts_with_env(env: Value) -> PodFacts {
        PodFacts {
            namespace: "paperclip".into(),
            env: serde_json::from_value(env).unwrap(),
            ..Default::default()
        }
    }

    fn credentials(config: Value, facts: &PodFacts) -> Check {
        let config = AgentConfig::parse(config.as_object().unwrap()).unwrap();
        let mut out = Checks(Vec::new());
        check_credentials(&config, facts, &mut out);
        assert_eq!(out.0.len(), 1);
        out.0.remove(0)
    }

    #[test]
    fn credentials_check_anthropic_and_bedrock() {
        let key = facts_with_env(json!([{"name": "ANTHROPIC_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]));
        let c = credentials(json!({}), &key);
        assert_eq!(
            (c.code.as_str(), c.level),
            ("claude_api_key_present", Level::Info)
        );
        let c = credentials(json!({}), &PodFacts::default());
        assert_eq!(
            (c.code.as_str(), c.level),
            ("claude_api_key_missing", Level::Error)
        );
        assert!(c.hint.unwrap().contains("ANTHROPIC_API_KEY"));
        let c = credentials(
            json!({"env": {"ANTHROPIC_API_KEY": "sk"}}),
            &PodFacts::default(),
        );
        assert_eq!(c.level, Level::Info);
        let bedrock = facts_with_env(json!([{"name": "CLAUDE_CODE_USE_BEDROCK", "value": "1"},
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "id"}}}]));
        let c = credentials(json!({}), &bedrock);
        assert_eq!(
            (c.code.as_str(), c.level),
            ("claude_bedrock_auth", Level::Info)
        );
        let c = credentials(json!({"env": {"CLAUDE_CODE_USE_BEDROCK": "1"}}), &key);
        assert_eq!(
            (c.code.as_str(), c.level),
            ("claude_bedrock_credentials_missing", Level::Warn),
            "an Anthropic key does not authenticate Bedrock"
        );
        assert!(c.hint.unwrap().contains("AWS_ACCESS_KEY_ID"));
    }

    #[test]
    fn another_namespace_names_the_inherited_objects_to_copy() {
        let facts = facts_with_env(json!([{"name": "ANTHROPIC_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "paperclip-secrets", "key": "k"}}}]));
        let mut out = Checks(Vec::new());
        check_inherited_references("paperclip", &facts, &mut out);
        assert!(out.0.is_empty(), "same namespace: nothing to copy");
        check_inherited_references("agents", &facts, &mut out);
        assert_eq!(out.0.len(), 1);
        let c = &out.0[0];
        assert_eq!(c.level, Level::Warn);
        assert!(
            c.message.contains("Secrets paperclip-secrets"),
            "{}",
            c.message
        );
        assert!(
            c.hint
                .as_ref()
                .unwrap()
                .contains("copy them into namespace agents")
        );
    }

    #[test]
    fn an_evaluation_error_or_a_missing_status_counts_as_denied() {
        let status = |v: Value| serde_json::from_value(v).unwrap();
        assert!(review_allows(Some(&status(json!({"allowed": true})))));
        assert!(review_allows(Some(&status(
            json!({"allowed": true, "evaluationError": ""})
        ))));
        assert!(!review_allows(Some(&status(json!({"allowed": false})))));
        assert!(!review_allows(Some(&status(
            json!({"allowed": true, "evaluationError": "role.rbac.authorization.k8s.io \"x\" not found"})
        ))));
        assert!(!review_allows(None));
    }

    fn check(level: Level) -> Check {
        Check {
            code: "c".into(),
            level,
            message: String::new(),
            hint: None,
        }
    }

    #[test]
    fn status_is_fail_on_any_error_else_warn_on_any_warning_else_pass() {
        use Level::*;
        assert_eq!(overall_status(&[]), "pass");
        assert_eq!(overall_status(&[check(Info), check(Info)]), "pass");
        assert_eq!(overall_status(&[check(Info), check(Warn)]), "warn");
        assert_eq!(
            overall_status(&[check(Warn), check(Error), check(Info)]),
            "fail"
        );
        // The serialized levels are Paperclip's: info, warn, error.
        assert_eq!(
            serde_json::to_value(check(Error)).unwrap()["level"],
            "error"
        );
        assert_eq!(serde_json::to_value(check(Warn)).unwrap()["level"], "warn");
        assert_eq!(serde_json::to_value(check(Info)).unwrap()["level"], "info");
    }
}
