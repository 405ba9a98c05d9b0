//! Prepare a run: its config, the cluster client, the Paperclip pod's facts (self-introspection), the secrets to
//! mask, the prompt bundle and MCP servers, and the resume decision. Everything the later stages read comes from
//! here, in a [`Prepared`].

pub mod config;
pub mod introspect;
pub mod mcp;
pub mod pod_facts;
pub mod prompt_bundle;
pub mod secrets;
pub mod session_record;
pub mod toolkit;
pub mod view;

use std::path::PathBuf;
use std::sync::Arc;

use kube::Api;

use crate::k8s::clients::KubeCtx;
use crate::k8s::watches;
use crate::run::Services;
use crate::run::outcome::{ErrorCode, Failure, failure};
use crate::run::plan::invocation;
use crate::serve::mask::Masker;
use crate::serve::protocol::ExecuteParams;
use crate::serve::sink::Sink;
use crate::settings::Settings;
use config::AgentConfig;
use pod_facts::PodFacts;
use toolkit::Toolkit;
use view::View;

/// What a run knows once it is prepared; read by every later stage.
pub struct Prepared<'a> {
    pub params: ExecuteParams,
    pub config: AgentConfig,
    pub facts: PodFacts,
    pub kube: KubeCtx,
    /// The namespace of the run's objects.
    pub namespace: String,
    /// The shared watches of the adapter's pods and Jobs in that namespace (started by the first run there).
    pub watches: Arc<watches::Namespace>,
    pub toolkit: Toolkit,
    /// Which directories of the shared volume the pod sees, and its `HOME`.
    pub view: View,
    /// What the operator policy lets a `podSpecPatch` loosen.
    pub patch_rules: crate::policy::PatchRules,
    /// The saved session this run resumes, if the gating allows it.
    pub resume: Option<String>,
    /// Where the session records live (see [`session_record`]).
    pub sessions: PathBuf,
    pub settings: Settings,
    pub sink: &'a Sink,
}

impl Prepared<'_> {
    /// A namespaced API for the run's namespace, on the run's client.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.kube.client.clone(), &self.namespace)
    }
}

/// Prepares one execute; a failure is the run's result (nothing was created in the cluster).
pub async fn prepare<'a>(
    services: &Services,
    params: ExecuteParams,
    sink: &'a Sink,
) -> Result<Prepared<'a>, Failure> {
    // Before anything of the config is looked at, so that no error of this run can carry a known secret.
    sink.mask_secrets(Masker::new(secrets::before_config(
        &params,
        &services.own_env,
    )));
    let config = AgentConfig::parse(&params.config)
        .map_err(|e| failure(ErrorCode::InvalidConfig, e.to_string()))?;
    // Before anything else: a refused kubeconfig is never read, a refused patch never planned.
    services
        .policy
        .check_run(&params, &config)
        .map_err(|denied| denied.failure())?;
    let kube = services
        .clients
        .get(config.kubeconfig.as_deref())
        .await
        .map_err(|e| failure(ErrorCode::ClientUnavailable, e.to_string()))?;
    let facts = services
        .self_pod
        .facts(&kube, &services.settings)
        .await
        .map_err(|e| failure(ErrorCode::SelfPodUnreadable, e.to_string()))?;
    // Before anything of the agent is forwarded.
    sink.mask_secrets(Masker::new(secrets::of_run(
        &params,
        &facts,
        &services.own_env,
    )));
    let namespace = namespace(&config, &facts, &kube);
    // Started now, so their first list runs while the prompt bundle is written.
    let watches = kube.watches.namespace(&namespace);
    // A bare session id (agent-level heartbeat) is gated on what the session was run with, as full params are.
    let sessions = session_record::dir();
    let params =
        session_record::with_saved_params(params, |id| session_record::read(&sessions, id));
    // Blocking file I/O on the shared volume (skill trees are copied, the agent's home is made), off the async
    // workers.
    let (p, c, pol) = (params.clone(), config.clone(), services.policy.clone());
    let files = tokio::task::spawn_blocking(move || {
        let toolkit = toolkit::prepare(&p, &c, &pol).map_err(|e| e.to_string())?;
        let view = view::of_run(&p, &c, &toolkit, pol.whole_volume);
        Ok::<_, String>((toolkit, view))
    });
    let (toolkit, view) = match files.await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(failure(ErrorCode::PromptBundleFailed, e)),
        Err(e) => return Err(failure(ErrorCode::PromptBundleFailed, e.to_string())),
    };
    for note in toolkit.notes.iter().chain(&view.notes) {
        sink.progress(note);
    }
    let resume =
        invocation::resumable_session(&params, &config, &toolkit, &view).unwrap_or_else(|why| {
            sink.progress(&why);
            None
        });
    let resume = resume.filter(
        |id| match session_record::left_in_the_shared_home(&view, id) {
            Some(why) => {
                sink.progress(&why);
                false
            }
            None => true,
        },
    );
    Ok(Prepared {
        params,
        config,
        facts,
        kube,
        namespace,
        watches,
        toolkit,
        view,
        patch_rules: services.policy.pod_spec_patch.clone(),
        resume,
        sessions,
        settings: services.settings.clone(),
        sink,
    })
}

/// The namespace of the Jobs: the configured one, else the Paperclip pod's, else the client's default.
pub fn namespace(config: &AgentConfig, facts: &PodFacts, kube: &KubeCtx) -> String {
    config
        .namespace
        .clone()
        .or_else(|| (!facts.namespace.is_empty()).then(|| facts.namespace.clone()))
        .unwrap_or_else(|| kube.default_namespace.clone())
}
