//! What a run hands Claude besides the prompt, as claude_local does: the prompt bundle (the agent's instructions,
//! the skill-library manifest, the runtime skills) and Paperclip's MCP servers. Prepared once per `execute`, before
//! the resume decision, because the bundle key and the MCP identity gate resume.

use crate::confined::{self, FileError};
use crate::policy::Policy;
use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::mcp::{self, McpServer};
use crate::run::prepare::prompt_bundle::{self, BundleError, BundleInput, PromptBundle};
use crate::serve::protocol::ExecuteParams;

#[derive(Debug, Clone, Default)]
pub struct Toolkit {
    /// `None` only where no bundle was prepared (unit tests of the invocation): the configured instructions path
    /// is then passed as is.
    pub bundle: Option<PromptBundle>,
    pub mcp: Vec<McpServer>,
    /// claude_local's `mcpServerIdentity` of [`Self::mcp`].
    pub mcp_identity: String,
    /// Lines for the run log: an unreadable instructions file, unavailable skills, a reused bundle.
    pub notes: Vec<String>,
}

impl Toolkit {
    /// No bundle, and the MCP servers of the params.
    pub fn without_bundle(params: &ExecuteParams) -> Self {
        let mcp = mcp::servers(&params.runtime_mcp_servers);
        Self {
            mcp_identity: mcp::identity(&mcp),
            mcp,
            ..Default::default()
        }
    }
}

/// Reads the instructions file and the skill sources (on the server's filesystem) and writes the bundle onto the
/// shared volume. An unreadable instructions file is a warning, as in claude_local: the run goes on without it.
pub fn prepare(
    params: &ExecuteParams,
    config: &AgentConfig,
    policy: &Policy,
) -> Result<Toolkit, BundleError> {
    let mut caps = Toolkit::without_bundle(params);
    caps.notes
        .extend(params.prompt_bundle.warnings.iter().cloned());
    let instructions = config.instructions_file_path.as_deref().and_then(|path| {
        match read_instructions(path, params, policy) {
            Ok(raw) => Some(prompt_bundle::instructions_with_directive(path, &raw)),
            Err(e) => {
                caps.notes.push(format!(
                    "could not read agent instructions file \"{path}\": {e}; continuing without injected instructions"
                ));
                None
            }
        }
    });
    let text = prompt_bundle::combined_instructions(
        instructions,
        params.prompt_bundle.skill_library_manifest.as_deref(),
    );
    let cache_dir = prompt_bundle::cache_dir(
        params.prompt_bundle.instance_root.as_deref(),
        &params.agent.company_id,
    );
    let (bundle, reused) = prompt_bundle::prepare(&BundleInput {
        instructions: text.as_deref(),
        skills: &params.prompt_bundle.skills,
        cache_dir: &cache_dir,
    })?;
    let skills: Vec<&str> = params
        .prompt_bundle
        .skills
        .iter()
        .map(|s| s.runtime_name.as_str())
        .collect();
    caps.notes.push(format!(
        "prompt bundle {} ({}; skills: {})",
        bundle.root,
        if reused { "reused" } else { "written" },
        if skills.is_empty() {
            "none".to_owned()
        } else {
            skills.join(", ")
        }
    ));
    caps.bundle = Some(bundle);
    Ok(caps)
}

/// Instructions are a regular file of bounded size in the agent's instructions folder: no symlink is followed out
/// of that folder (an agent's `ln -sf /proc/1/environ AGENTS.md` would put the server's environment into its next
/// system prompt), and the file it finally reads must still be where the policy allows instructions.
fn read_instructions(
    path: &str,
    params: &ExecuteParams,
    policy: &Policy,
) -> Result<String, FileError> {
    let file = std::path::Path::new(path);
    let folder = file.parent().unwrap_or(file);
    let (bytes, real) = confined::read_within(file, folder, MAX_INSTRUCTIONS_BYTES)?;
    if !policy.instructions_allowed(&real, &crate::policy::RunScope::of(params)) {
        return Err(FileError::Outside(
            "the places the operator policy allows instructions".into(),
        ));
    }
    String::from_utf8(bytes).map_err(|_| FileError::NotRegular)
}

/// Instructions larger than this are refused (claude_local's are a few KiB).
pub const MAX_INSTRUCTIONS_BYTES: u64 = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The attack of issue 14: the agent replaces its own AGENTS.md with a link to the server's environment.
    #[test]
    fn instructions_never_follow_a_link_out_of_their_folder() {
        let base =
            std::env::temp_dir().join(format!("claude-k8s-instructions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let folder = base.join("companies/co/agents/a1/instructions");
        std::fs::create_dir_all(&folder).unwrap();
        let params: ExecuteParams = serde_json::from_value(json!({
            "runId": "r", "agent": {"id": "a1", "companyId": "co"},
            "promptBundle": {"instanceRoot": base.display().to_string()}
        }))
        .unwrap();
        let policy = Policy::default();
        let file = folder.join("AGENTS.md");
        std::fs::write(folder.join("v2.md"), "# Be kind").unwrap();
        std::os::unix::fs::symlink("v2.md", &file).unwrap();
        assert_eq!(
            read_instructions(&file.display().to_string(), &params, &policy).unwrap(),
            "# Be kind"
        );
        for target in ["/proc/1/environ", "/etc/hostname"] {
            std::fs::remove_file(&file).unwrap();
            std::os::unix::fs::symlink(target, &file).unwrap();
            let err = read_instructions(&file.display().to_string(), &params, &policy).unwrap_err();
            assert!(matches!(err, FileError::Outside(_)), "{target}: {err}");
        }
        // The folder itself swapped for a link out: the file it reaches is outside the agent's directory.
        std::fs::remove_dir_all(&folder).unwrap();
        std::fs::create_dir_all(base.join("secrets")).unwrap();
        std::fs::write(base.join("secrets/master.key"), "KEY").unwrap();
        std::os::unix::fs::symlink(base.join("secrets"), &folder).unwrap();
        let err = read_instructions(
            &folder.join("master.key").display().to_string(),
            &params,
            &policy,
        )
        .unwrap_err();
        assert!(matches!(err, FileError::Outside(_)), "{err}");
        // The error names what is wrong, never what the file holds.
        assert!(!err.to_string().contains("KEY"), "{err}");
        std::fs::remove_dir_all(base).unwrap();
    }
}
