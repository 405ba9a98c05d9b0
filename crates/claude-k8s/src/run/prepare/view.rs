//! The run's view of the shared volume: which of its directories the Job pod sees, each at the same absolute path
//! as on the server. Pure.
//!
//! By default a pod sees only what its run needs: its workspace directories read-write (Paperclip's
//! `paperclipWorkspace` with its worktree and agent home, any `paperclipWorkspaces`, or the configured `cwd`), the
//! agent's own Claude home read-write (`HOME`: its `~/.claude` sessions, so `--resume` works across runs, and
//! nothing of another agent's), and its prompt bundle, instructions folder and skill sources read-only. Nothing of
//! Paperclip's instance root (`.env`, `config.json`, `db/`, `secrets/`, `data/`, `logs/`) is ever mounted, nor the
//! adapter's own session records. Each directory is a `subPath` mount of the one claim (see `plan::volumes`);
//! launch checks each on the server, right before the Job is created, for a symlink an agent may have planted
//! ([`crate::confined::SafeDir`]).
//!
//! The seed's layout (the whole volume at `/paperclip`, `HOME=/paperclip` shared by every agent) stays available
//! as the operator policy's `wholeVolume: true`, which the environment checks report as a warning.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::policy::pattern::normal_path;
use crate::run::plan::invocation::working_directory;
use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::pod_facts::DATA_MOUNT_PATH;
use crate::run::prepare::prompt_bundle;
use crate::run::prepare::toolkit::Toolkit;
use crate::serve::protocol::ExecuteParams;

/// One directory of the volume the pod sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewMount {
    /// Absolute, in normal form, below `/paperclip`: the same path in the pod as on the server.
    pub path: String,
    pub read_only: bool,
    /// What it is, for messages: "workspace", "Claude home", "prompt bundle", …
    pub what: &'static str,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    /// The seed's layout: the whole volume, `HOME=/paperclip` (operator policy `wholeVolume: true`).
    pub whole: bool,
    /// `HOME` of the claude container.
    pub home: String,
    /// The directories the pod sees (none listed when `whole`).
    pub mounts: Vec<ViewMount>,
    /// Lines for the run log (a workspace that is not on the volume).
    pub notes: Vec<String>,
}

impl View {
    /// The seed's layout.
    pub fn whole_volume() -> Self {
        Self {
            whole: true,
            home: DATA_MOUNT_PATH.into(),
            ..Self::default()
        }
    }

    /// The working directory when the run has no workspace: the volume root in the seed's layout, else the agent's
    /// own home (the volume root is never mounted).
    pub fn fallback_cwd(&self) -> &str {
        if self.whole {
            DATA_MOUNT_PATH
        } else {
            &self.home
        }
    }
}

/// Where the adapter keeps an agent's Claude home: beside its company's prompt bundles (under Paperclip's instance
/// root when that is on the volume, else under `/paperclip/claude-k8s`), one directory per agent.
pub fn home_dir(params: &ExecuteParams) -> String {
    let bundles = prompt_bundle::cache_dir(
        params.prompt_bundle.instance_root.as_deref(),
        &params.agent.company_id,
    );
    let company = bundles.parent().unwrap_or(&bundles);
    let agent = if crate::confined::is_plain_name(&params.agent.id) {
        params.agent.id.as_str()
    } else {
        "_"
    };
    company
        .join("claude-k8s-homes")
        .join(agent)
        .display()
        .to_string()
}

/// A directory the run works in, with the field it came from (as a refusal names it) and whether the agent
/// config chose it (then only the agent's own places, or the policy's `workspaceRoots`, are allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub field: String,
    pub path: String,
    pub from_config: bool,
}

/// The run's working directory and every other workspace Paperclip prepared for it. `fallback` is the working
/// directory when there is none ([`View::fallback_cwd`]).
pub fn workspaces(params: &ExecuteParams, config: &AgentConfig, fallback: &str) -> Vec<Workspace> {
    let cwd = working_directory(params, config, fallback);
    let ws = params
        .context
        .get("paperclipWorkspace")
        .and_then(Value::as_object);
    let field = |k: &str| {
        ws.and_then(|w| w.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let mut out = Vec::new();
    let from_config = config.cwd.as_deref().is_some_and(|c| c == cwd) && field("cwd") != Some(&cwd);
    if cwd != fallback {
        out.push(Workspace {
            field: if from_config {
                "cwd".into()
            } else {
                "context.paperclipWorkspace.cwd".into()
            },
            path: cwd,
            from_config,
        });
    }
    for key in ["worktreePath", "agentHome"] {
        if let Some(p) = field(key) {
            out.push(Workspace {
                field: format!("context.paperclipWorkspace.{key}"),
                path: p.to_owned(),
                from_config: false,
            });
        }
    }
    let more = params
        .context
        .get("paperclipWorkspaces")
        .and_then(Value::as_array);
    for (i, w) in more.into_iter().flatten().enumerate() {
        if let Some(p) = w
            .get("cwd")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            out.push(Workspace {
                field: format!("context.paperclipWorkspaces[{i}].cwd"),
                path: p.to_owned(),
                from_config: false,
            });
        }
    }
    out
}

/// Why a directory may never be mounted, whatever the policy: it is, holds or lies in Paperclip's own data or the
/// adapter's. `None` for a directory that is not one of those.
pub fn never_mounted(path: &Path, instance_root: Option<&str>) -> Option<&'static str> {
    let volume = Path::new(DATA_MOUNT_PATH);
    if path == volume {
        return Some("it is the whole shared volume");
    }
    // The seed's shared Claude home (every agent's sessions) and the adapter's session records.
    for own in [
        volume.join(".claude"),
        volume.join(".claude.json"),
        volume.join("claude-k8s").join("sessions"),
    ] {
        if path.starts_with(&own) || own.starts_with(path) {
            return Some("it holds every agent's Claude sessions or the adapter's session records");
        }
    }
    let root = instance_root
        .and_then(normal_path)
        .unwrap_or_else(|| volume.join("instances").join("default"));
    if root.starts_with(path) {
        return Some("it holds Paperclip's instance root (its .env, config, keys and database)");
    }
    if let Ok(rest) = path.strip_prefix(&root) {
        let first = rest.components().next();
        return match first.and_then(|c| c.as_os_str().to_str()) {
            // Paperclip's workspace areas, and the companies' agents, skills and bundles.
            Some("workspaces" | "projects" | "companies") => None,
            _ => Some("it is Paperclip's own data (.env, config.json, db, secrets, data, logs)"),
        };
    }
    if path.starts_with(volume.join("instances")) {
        return Some("it belongs to another Paperclip instance");
    }
    None
}

/// The run's view: its workspaces (as judged by the policy before), its home, its bundle, instructions folder and
/// skill sources. `whole` is the policy's `wholeVolume`.
pub fn of_run(
    params: &ExecuteParams,
    config: &AgentConfig,
    toolkit: &Toolkit,
    whole: bool,
) -> View {
    if whole {
        return View::whole_volume();
    }
    let home = home_dir(params);
    let mut view = View {
        home: home.clone(),
        ..View::default()
    };
    let instance_root = params.prompt_bundle.instance_root.as_deref();
    let add = |view: &mut View, path: &str, read_only: bool, what: &'static str| {
        let Some(p) = normal_path(path) else { return };
        if !p.starts_with(DATA_MOUNT_PATH) {
            view.notes.push(format!(
                "the {what} {} is not on the shared volume ({DATA_MOUNT_PATH}): the Job pod does not see it",
                p.display()
            ));
            return;
        }
        // Refused before (policy) for workspaces; for the rest a silent skip is the safe side.
        if never_mounted(&p, instance_root).is_some() {
            return;
        }
        view.mounts.push(ViewMount {
            path: p.display().to_string(),
            read_only,
            what,
        });
    };
    for w in workspaces(params, config, &home) {
        add(&mut view, &w.path, false, "workspace");
    }
    add(&mut view, &home, false, "Claude home");
    if let Some(bundle) = &toolkit.bundle {
        add(&mut view, &bundle.root, true, "prompt bundle");
    }
    if let Some(dir) = config
        .instructions_file_path
        .as_deref()
        .and_then(|f| Path::new(f).parent())
    {
        add(
            &mut view,
            &dir.display().to_string(),
            true,
            "instructions folder",
        );
    }
    for skill in &params.prompt_bundle.skills {
        // Skills on the volume are symlinked into the bundle: their sources must be there too.
        if Path::new(&skill.source).starts_with(DATA_MOUNT_PATH) {
            add(&mut view, &skill.source, true, "skill");
        }
    }
    view.mounts = simplified(std::mem::take(&mut view.mounts));
    view
}

/// One mount per directory (read-write wins), and none inside another of the same kind: a read-only mount inside
/// a read-write one stays (it makes that part read-only), a mount inside one of its own mode is redundant.
fn simplified(mounts: Vec<ViewMount>) -> Vec<ViewMount> {
    let mut by_path: Vec<ViewMount> = Vec::new();
    for m in mounts {
        match by_path.iter_mut().find(|o| o.path == m.path) {
            Some(o) => o.read_only &= m.read_only,
            None => by_path.push(m),
        }
    }
    let inside = |a: &str, b: &str| a != b && PathBuf::from(a).starts_with(b);
    let kept: Vec<ViewMount> = by_path
        .iter()
        .filter(|m| {
            !by_path
                .iter()
                .any(|o| inside(&m.path, &o.path) && o.read_only == m.read_only)
        })
        .cloned()
        .collect();
    let mut kept = kept;
    // Outer directories first: the runtime mounts them in this order.
    kept.sort_by_key(|m| (m.path.matches('/').count(), m.path.clone()));
    kept
}

#[cfg(test)]
mod tests;
