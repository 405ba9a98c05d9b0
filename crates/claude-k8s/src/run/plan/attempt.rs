//! One attempt of a prepared run, planned: Claude's invocation, the run's identity in the cluster, and the Job and
//! run Secret for it. Pure. A run is planned twice only when Claude did not know the resumed session (the retry
//! starts a fresh one).

use serde_json::Value;

use super::invocation::Invocation;
use super::{RunManifests, RunPlanInput, plan};
use crate::k8s::labels::RunIdentity;
use crate::run::outcome::{ErrorCode, Failure, failure};
use crate::run::prepare::{Prepared, mcp};
use crate::serve::protocol::ExecuteParams;

/// What one attempt runs, as the run keeps it while it is followed. The manifests come apart from it
/// ([`for_attempt`]): launch consumes them, so a run does not hold its Job and Secret (tens of KiB, the prompt in
/// it) for its whole life.
pub struct Planned {
    pub invocation: Invocation,
    pub identity: RunIdentity,
    /// The name of the Job this attempt creates (the same for the retry: it follows from the agent and run ids).
    pub job_name: String,
}

impl Planned {
    pub fn job_name(&self) -> &str {
        &self.job_name
    }
}

/// How Claude is invoked in an attempt that resumes `resume` (or starts a fresh session).
pub fn invocation_for(run: &Prepared, resume: Option<String>) -> Invocation {
    Invocation::build_with(
        &run.params,
        &run.config,
        &run.facts,
        resume,
        &run.toolkit,
        &run.view,
    )
}

/// Plans the attempt that runs `invocation`, and the Job and run Secret launch creates for it; a failure is the
/// run's result.
pub fn for_attempt(
    run: &Prepared,
    invocation: Invocation,
) -> Result<(Planned, RunManifests), Failure> {
    let params = &run.params;
    let mcp_config = mcp::config_json(&run.toolkit.mcp, invocation.env_value("PAPERCLIP_API_URL"));
    let identity = RunIdentity {
        agent_id: params.agent.id.clone(),
        run_id: params.run_id.clone(),
        company_id: params.agent.company_id.clone(),
        task_id: task_id(params),
        session_id: invocation.resume_session_id.clone(),
    };
    let input = RunPlanInput {
        identity: &identity,
        agent_name: &params.agent.name,
        namespace: &run.namespace,
        invocation: &invocation,
        auth_token: params.auth_token.as_deref().filter(|t| !t.is_empty()),
        mcp_config: mcp_config.as_deref(),
        view: &run.view,
        patch_rules: &run.patch_rules,
    };
    let manifests = plan(&input, &run.config, &run.facts)
        .map_err(|e| failure(ErrorCode::PlanFailed, e.to_string()))?;
    let job_name = manifests.job.metadata.name.clone().unwrap_or_default();
    let planned = Planned {
        invocation,
        identity,
        job_name,
    };
    Ok((planned, manifests))
}

/// The Paperclip task (issue) the run works on, from its context.
fn task_id(params: &ExecuteParams) -> Option<String> {
    ["taskId", "issueId"]
        .iter()
        .find_map(|k| {
            params
                .context
                .get(*k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_owned)
}
