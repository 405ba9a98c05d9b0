//! What a run hands Claude besides the prompt, as claude_local does: the prompt bundle (the agent's instructions,
//! the skill-library manifest, the runtime skills) and Paperclip's MCP servers. Prepared once per `execute`, before
//! the resume decision, because the bundle key and the MCP identity gate resume.

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
pub fn prepare(params: &ExecuteParams, config: &AgentConfig) -> Result<Toolkit, BundleError> {
    let mut caps = Toolkit::without_bundle(params);
    caps.notes
        .extend(params.prompt_bundle.warnings.iter().cloned());
    let instructions = config.instructions_file_path.as_deref().and_then(|path| {
        match std::fs::read_to_string(path) {
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
