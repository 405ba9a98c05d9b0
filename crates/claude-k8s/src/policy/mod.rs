//! The operator policy: what an agent's `adapterConfig` may ask for, set where only the operator can change it.
//!
//! The agent config is untrusted (board users write it; agents propose it through hire requests), so the fields
//! that widen what a Job pod may do or where its credentials go are refused unless the operator allowed them:
//! `podSpecPatch` (by key, and by content for the dangerous parts, see [`pod_patch`]), `serviceAccountName`,
//! `namespace`, `image`, `initImage`, `kubeconfig`, `paperclipApiUrl`, `instructionsFilePath` outside the agent's
//! own directory, and env names on the deny list. The default allows none of it.
//!
//! Read once when `serve` starts (and by `doctor`) from `CLAUDE_K8S_POLICY` (inline JSON) or the file named by
//! `CLAUDE_K8S_POLICY_FILE` (YAML or JSON, typically a mounted ConfigMap): the Paperclip Deployment's environment.
//! A bad policy is a startup error naming the setting; the file's content is never quoted. The check itself
//! ([`Policy::check`]) is pure and runs right after the config is parsed, before anything else happens.
//! docs/security.md documents every setting with its default.

mod denial;
mod load;
pub mod pattern;
pub mod pod_patch;

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::run::prepare::config::{AgentConfig, DEFAULT_INIT_IMAGE};
use crate::run::prepare::pod_facts::DATA_MOUNT_PATH;
pub use denial::{Denial, Denials, Denied};
pub use load::{PolicyError, from_vars, parse};
use pattern::{Glob, UrlPattern, any_matches, normal_path};
pub use pod_patch::PatchRules;

/// Inline policy JSON, in the Paperclip Deployment's environment.
pub const POLICY_ENV: &str = "CLAUDE_K8S_POLICY";
/// A policy file (YAML or JSON), e.g. mounted from a ConfigMap.
pub const POLICY_FILE_ENV: &str = "CLAUDE_K8S_POLICY_FILE";
/// A policy file larger than this is refused (a policy is a few hundred bytes).
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// Env names an agent config may not set unless the policy takes them off the list (`env.allow`). Each changes
/// where the pod's credentials are sent, which TLS peers it trusts, or which code is loaded into claude and its
/// shell before any of the agent's own permission settings apply (docs/security.md says why each is here).
pub const DEFAULT_ENV_DENY: [&str; 21] = [
    // Where the inherited API key or AWS credentials are sent.
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL",
    "ANTHROPIC_FOUNDRY_BASE_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_*",
    // Every proxy variable, upper or lower case (matching is case-insensitive), NO_PROXY included: they route
    // traffic around or through something the operator did not choose.
    "*_PROXY",
    // Which TLS peers are trusted: with these a proxy or a redirected endpoint reads the traffic.
    "NODE_TLS_REJECT_UNAUTHORIZED",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    // The run token and where it is sent (`paperclipApiUrl` has its own allow-list).
    "PAPERCLIP_API_URL",
    "PAPERCLIP_API_KEY",
    // Where an in-cluster client sends a pod's service-account token.
    "KUBERNETES_*",
    // Code loaded into claude or its shell (PATH picks the `claude` the container's command execs).
    "PATH",
    "NODE_OPTIONS",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "BASH_ENV",
    // Claude's settings and session store: another agent's, once homes are per agent.
    "CLAUDE_CONFIG_DIR",
];

/// Where the policy came from, as error messages name it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Source {
    /// Neither variable set: the built-in default.
    #[default]
    Default,
    Inline,
    File(String),
}

impl Source {
    /// Where an operator sets what a refusal asks for.
    pub fn setting_place(&self) -> String {
        match self {
            Source::Default => {
                format!("{POLICY_ENV} (or the policy file {POLICY_FILE_ENV} names)")
            }
            Source::Inline => POLICY_ENV.to_owned(),
            Source::File(path) => format!("the policy file {path} ({POLICY_FILE_ENV})"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(
                f,
                "the built-in default (neither {POLICY_ENV} nor {POLICY_FILE_ENV} is set)"
            ),
            Source::Inline => write!(f, "{POLICY_ENV}"),
            Source::File(path) => write!(f, "{path} ({POLICY_FILE_ENV})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub source: Source,
    pub pod_spec_patch: PatchRules,
    pub service_account_names: Vec<Glob>,
    pub namespaces: Vec<Glob>,
    pub images: Vec<Glob>,
    pub init_images: Vec<Glob>,
    /// Kubeconfig paths an agent config may name; empty: `kubeconfig` is never read from agent config.
    pub kubeconfigs: Vec<Glob>,
    pub paperclip_api_urls: Vec<UrlPattern>,
    /// Where `instructionsFilePath` may point besides the agent's own directory of the Paperclip instance.
    pub instructions_roots: Vec<Glob>,
    /// Where a run's workspaces may be besides Paperclip's own workspace areas (`workspaceRoots`, path globs of the
    /// directories themselves).
    pub workspace_roots: Vec<Glob>,
    /// The seed's layout: every Job pod mounts the whole shared volume with `HOME=/paperclip` (`wholeVolume`).
    pub whole_volume: bool,
    /// The default deny list plus `env.deny`.
    pub env_deny: Vec<Glob>,
    /// Names taken off the deny list (`env.allow`).
    pub env_allow: Vec<Glob>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            source: Source::Default,
            pod_spec_patch: PatchRules::default(),
            service_account_names: Vec::new(),
            namespaces: Vec::new(),
            images: Vec::new(),
            init_images: Vec::new(),
            kubeconfigs: Vec::new(),
            paperclip_api_urls: Vec::new(),
            instructions_roots: Vec::new(),
            workspace_roots: Vec::new(),
            whole_volume: false,
            env_deny: DEFAULT_ENV_DENY.iter().map(|n| Glob::new(n)).collect(),
            env_allow: Vec::new(),
        }
    }
}

/// The run a config is checked for: what places the agent's own instructions directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunScope<'a> {
    /// Paperclip's instance root as the shim resolved it (`promptBundle.instanceRoot`).
    pub instance_root: Option<&'a str>,
    pub company_id: &'a str,
    pub agent_id: &'a str,
}

impl<'a> RunScope<'a> {
    /// The scope of an execute, from its params.
    pub fn of(params: &'a crate::serve::protocol::ExecuteParams) -> Self {
        Self {
            instance_root: params.prompt_bundle.instance_root.as_deref(),
            company_id: &params.agent.company_id,
            agent_id: &params.agent.id,
        }
    }

    /// `<instance root>/companies/<company>/agents/<agent>`, where Paperclip keeps the agent's managed
    /// instructions; `None` without an instance root or with ids that are not plain names.
    pub fn agent_dir(&self) -> Option<std::path::PathBuf> {
        let root = normal_path(self.instance_root?)?;
        self.plain_ids().then(|| {
            root.join("companies")
                .join(self.company_id)
                .join("agents")
                .join(self.agent_id)
        })
    }
}

impl RunScope<'_> {
    /// Whether the company and agent ids are plain names (Paperclip's are UUIDs), safe as path components.
    pub fn plain_ids(&self) -> bool {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        plain(self.company_id) && plain(self.agent_id)
    }
}

impl Policy {
    /// Refuses every field of `config` the policy does not allow. `scope` is the run's (none for the environment
    /// checks, which read no instructions).
    pub fn check(&self, config: &AgentConfig, scope: Option<&RunScope<'_>>) -> Result<(), Denied> {
        let mut out = Denials::default();
        if let Some(patch) = config.pod_spec_patch.as_ref().and_then(Value::as_object) {
            pod_patch::check(
                patch,
                &self.pod_spec_patch,
                &self.images,
                &self.init_images,
                &mut out,
            );
        }
        let mut listed = |field: &str, value: Option<&str>, list: &[Glob], setting: &str| {
            if let Some(v) = value
                && !any_matches(list, v)
            {
                out.push(Denial::top(
                    field,
                    &format!("\"{setting}\": [{}]", quoted(v)),
                ));
            }
        };
        listed(
            "serviceAccountName",
            config.service_account_name.as_deref(),
            &self.service_account_names,
            "serviceAccountNames",
        );
        listed(
            "namespace",
            config.namespace.as_deref(),
            &self.namespaces,
            "namespaces",
        );
        listed("image", config.image.as_deref(), &self.images, "images");
        listed(
            "initImage",
            Some(config.init_image.as_str()).filter(|i| *i != DEFAULT_INIT_IMAGE),
            &self.init_images,
            "initImages",
        );
        if let Some(path) = &config.kubeconfig {
            self.check_kubeconfig(path, &mut out);
        }
        if let Some(url) = &config.paperclip_api_url
            && !self.paperclip_api_urls.iter().any(|p| p.matches(url))
        {
            out.push(Denial::top(
                "paperclipApiUrl",
                &format!("\"paperclipApiUrls\": [{}]", quoted(url)),
            ));
        }
        if let (Some(path), Some(scope)) = (&config.instructions_file_path, scope)
            && !self.instructions_allowed(Path::new(path), scope)
        {
            let field = "instructionsFilePath";
            match normal_path(path) {
                Some(p) => out.push(Denial {
                    why: Some(
                        "it is outside the agent's own directory of the Paperclip instance".into(),
                    ),
                    ..Denial::top(
                        field,
                        &format!(
                            "\"instructionsRoots\": [{}]",
                            quoted(&p.parent().unwrap_or(&p).join("**").to_string_lossy())
                        ),
                    )
                }),
                None => out.push(Denial::never(
                    field,
                    "it must be an absolute path without `.` or `..` components",
                )),
            }
        }
        for name in config.env.keys() {
            if self.env_denied(name) {
                out.push(Denial::top(
                    &format!("env.{}", shown(name)),
                    &format!("\"env\": {{\"allow\": [{}]}}", quoted(name)),
                ));
            }
        }
        if out.0.is_empty() {
            Ok(())
        } else {
            Err(Denied {
                denials: out.0,
                place: self.source.setting_place(),
            })
        }
    }

    /// [`Self::check`] for an execute: the run's scope from its params.
    pub fn check_run(
        &self,
        params: &crate::serve::protocol::ExecuteParams,
        config: &AgentConfig,
    ) -> Result<(), Denied> {
        let scope = RunScope::of(params);
        let mut denied = self.check(config, Some(&scope)).err();
        if !self.whole_volume {
            let mut out = Denials::default();
            self.check_workspaces(params, config, &scope, &mut out);
            if !out.0.is_empty() {
                let d = denied.get_or_insert_with(|| Denied {
                    denials: Vec::new(),
                    place: self.source.setting_place(),
                });
                d.denials.extend(out.0);
            }
        }
        denied.map_or(Ok(()), Err)
    }

    /// Every workspace the run's pod would mount read-write: never Paperclip's own data; from Paperclip's context,
    /// under its workspace areas (`<instance root>/workspaces`, `/projects`); from the agent config, the agent's own
    /// workspace only; anything else needs `workspaceRoots`. A workspace off the shared volume is not mounted at all.
    fn check_workspaces(
        &self,
        params: &crate::serve::protocol::ExecuteParams,
        config: &AgentConfig,
        scope: &RunScope<'_>,
        out: &mut Denials,
    ) {
        use crate::run::prepare::view;
        let home = view::home_dir(params);
        for w in view::workspaces(params, config, &home) {
            let Some(p) = normal_path(&w.path) else {
                out.push(Denial::never(
                    &w.field,
                    "it must be an absolute path without `.` or `..` components",
                ));
                continue;
            };
            if !p.starts_with(DATA_MOUNT_PATH) {
                continue;
            }
            if let Some(why) = view::never_mounted(&p, scope.instance_root) {
                out.push(Denial::never(&w.field, why));
                continue;
            }
            let root = scope.instance_root.and_then(normal_path);
            let paperclips = root.as_ref().is_some_and(|r| {
                if w.from_config {
                    scope.plain_ids() && p.starts_with(r.join("workspaces").join(scope.agent_id))
                } else {
                    p.starts_with(r.join("workspaces")) || p.starts_with(r.join("projects"))
                }
            });
            if !paperclips && !any_matches(&self.workspace_roots, &p.to_string_lossy()) {
                out.push(Denial {
                    why: Some(if w.from_config {
                        "the agent config may name only the agent's own workspace".into()
                    } else {
                        "it is outside Paperclip's workspace areas".into()
                    }),
                    ..Denial::top(
                        &w.field,
                        &format!(
                            "\"workspaceRoots\": [{}]",
                            quoted(&p.parent().unwrap_or(&p).join("*").to_string_lossy())
                        ),
                    )
                });
            }
        }
    }

    fn check_kubeconfig(&self, path: &str, out: &mut Denials) {
        let field = "kubeconfig";
        let Some(normal) = normal_path(path) else {
            return out.push(Denial::never(
                field,
                "it must be an absolute path without `.` or `..` components",
            ));
        };
        if normal.starts_with(DATA_MOUNT_PATH) {
            return out.push(Denial::never(
                field,
                "a kubeconfig on the shared volume, which every agent pod can write, is never read",
            ));
        }
        if !any_matches(&self.kubeconfigs, &normal.to_string_lossy()) {
            out.push(Denial::top(
                field,
                &format!("\"kubeconfigs\": [{}]", quoted(&normal.to_string_lossy())),
            ));
        }
    }

    /// Whether an env name from the agent config is refused: on the deny list and not taken off it.
    pub fn env_denied(&self, name: &str) -> bool {
        let upper = name.to_ascii_uppercase();
        let hit = |list: &[Glob]| {
            list.iter()
                .any(|g| Glob::new(&g.as_str().to_ascii_uppercase()).matches(&upper))
        };
        // The run token is the adapter's alone: no policy hands it to config.
        upper == "PAPERCLIP_API_KEY" || (hit(&self.env_deny) && !hit(&self.env_allow))
    }

    /// Whether the instructions file may be read: under the agent's own directory or an `instructionsRoots`
    /// glob. Lexical; the read itself re-checks the path it actually opened ([`crate::confined`]).
    pub fn instructions_allowed(&self, path: &Path, scope: &RunScope<'_>) -> bool {
        let Some(p) = normal_path(&path.to_string_lossy()) else {
            return false;
        };
        scope.agent_dir().is_some_and(|d| p.starts_with(d))
            || any_matches(&self.instructions_roots, &p.to_string_lossy())
    }

    /// The same policy, also allowing what an operator names on the command line (`doctor --kubeconfig
    /// --namespace`): those are the operator's own choices, not an agent's.
    pub fn with_operator_choices(
        mut self,
        kubeconfig: Option<&str>,
        namespace: Option<&str>,
    ) -> Self {
        if let Some(p) = kubeconfig.and_then(normal_path) {
            self.kubeconfigs.push(Glob::new(&p.to_string_lossy()));
        }
        if let Some(ns) = namespace {
            self.namespaces.push(Glob::new(ns));
        }
        self
    }

    /// A line for `doctor`: where the policy came from and what it widens.
    pub fn summary(&self) -> String {
        let r = &self.pod_spec_patch;
        let list = |v: &[Glob]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.iter().map(Glob::as_str).collect::<Vec<_>>().join(", ")
            }
        };
        format!(
            "operator policy from {}: podSpecPatch keys {}; host namespaces {}; images {}; namespaces {}; \
             service accounts {}; kubeconfigs {}; workspace roots {}; {} env names taken off the deny list; \
             Job pods see {}",
            self.source,
            list(&r.allowed_keys),
            if r.host_namespaces.is_empty() {
                "none".to_owned()
            } else {
                r.host_namespaces.join(", ")
            },
            list(&self.images),
            list(&self.namespaces),
            list(&self.service_account_names),
            list(&self.kubeconfigs),
            list(&self.workspace_roots),
            self.env_allow.len(),
            if self.whole_volume {
                "the whole shared volume (wholeVolume)"
            } else {
                "their run's directories of the shared volume"
            }
        )
    }
}

/// A value from the config inside a message: JSON-quoted and cut short.
fn quoted(s: &str) -> String {
    serde_json::to_string(&shown(s)).unwrap_or_default()
}

fn shown(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() > MAX {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests;
