//! Self-introspection: read the Paperclip pod the adapter runs in, once per serve process, into [`PodFacts`].
//!
//! In a cluster the pod is found from `HOSTNAME` and the service-account namespace file; outside one (tests, a
//! developer's machine) `CLAUDE_K8S_SELF_POD=namespace/name` names a stand-in pod.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::sync::Mutex;

use crate::k8s::clients::KubeCtx;
use crate::run::prepare::pod_facts::PodFacts;
use crate::settings::Settings;

pub const SELF_POD_ENV: &str = "CLAUDE_K8S_SELF_POD";
const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    #[error(
        "cannot tell which pod the adapter runs in: not in a Kubernetes pod ({SA_NAMESPACE_FILE} is missing); set {SELF_POD_ENV}=namespace/name to the Paperclip pod"
    )]
    NotInPod,
    #[error("{SELF_POD_ENV} must be namespace/name, got `{0}`")]
    BadOverride(String),
    #[error(
        "cannot read the Paperclip pod {namespace}/{name}: {source}. The adapter's service account needs `get` on `pods` in namespace {namespace} (see deploy/role.yaml)"
    )]
    Read {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Where the adapter's own pod is.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfPodRef {
    pub namespace: String,
    pub name: String,
}

impl SelfPodRef {
    /// From the settings (`CLAUDE_K8S_SELF_POD`, else `HOSTNAME` and the service-account namespace file).
    pub fn locate(settings: &Settings) -> Result<Self, IntrospectError> {
        if let Some(value) = settings.self_pod.clone() {
            let (namespace, name) = value
                .split_once('/')
                .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
                .ok_or_else(|| IntrospectError::BadOverride(value.clone()))?;
            return Ok(Self {
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        let namespace =
            std::fs::read_to_string(SA_NAMESPACE_FILE).map_err(|_| IntrospectError::NotInPod)?;
        let name = settings.hostname.clone().ok_or(IntrospectError::NotInPod)?;
        Ok(Self {
            namespace: namespace.trim().into(),
            name,
        })
    }
}

/// The facts, read on first use; a failed read is retried by the next run rather than remembered.
#[derive(Default)]
pub struct SelfPod {
    cached: Mutex<Option<PodFacts>>,
}

impl SelfPod {
    pub async fn facts(
        &self,
        kube: &KubeCtx,
        settings: &Settings,
    ) -> Result<PodFacts, IntrospectError> {
        let mut cached = self.cached.lock().await;
        if let Some(facts) = cached.as_ref() {
            return Ok(facts.clone());
        }
        let at = SelfPodRef::locate(settings)?;
        let pod = Api::<Pod>::namespaced(kube.client.clone(), &at.namespace)
            .get(&at.name)
            .await
            .map_err(|source| IntrospectError::Read {
                namespace: at.namespace.clone(),
                name: at.name.clone(),
                source,
            })?;
        let facts = PodFacts::from_pod(&pod);
        tracing::info!(pod = %at.name, namespace = %at.namespace, image = ?facts.image, claim = ?facts.data_claim, "self-introspection done");
        *cached = Some(facts.clone());
        Ok(facts)
    }
}
