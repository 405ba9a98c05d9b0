//! One `execute`, wired in [`execute`] as the README's "How it works" tells it: prepare → plan → claim →
//! launch → follow → cleanup and outcome, with the retry of a session Claude does not know as a loop around
//! launch..outcome. Each stage is a folder of its own; the pure ones (plan, follow's `pod_state` and
//! `stream_json`, outcome) take no client.

pub mod claim;
pub mod cleanup;
pub mod follow;
pub mod launch;
pub mod outcome;
pub mod plan;
pub mod prepare;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::k8s::clients::Clients;
use crate::serve::protocol::ExecuteParams;
use crate::serve::sink::Sink;
use claim::{Claim, Followed};
use cleanup::PodsGone;
use follow::Ending;
use launch::JobRef;
use outcome::{ExecutionResult, RunFacts};
use plan::{Planned, RunManifests};
use prepare::Prepared;
use prepare::introspect::SelfPod;

/// Shared by every run of a serve process.
#[derive(Default)]
pub struct Services {
    pub clients: Clients,
    pub self_pod: SelfPod,
    /// Jobs that a run of this process follows right now: never adopted by another run of it.
    pub followed: Followed,
    /// Cleanups that run after their result was sent; a shutdown waits for them (bounded).
    pub cleanups: TaskTracker,
    /// Read once when the process started.
    pub settings: crate::settings::Settings,
    /// The operator policy, read once when the process started (from the settings).
    pub policy: crate::policy::Policy,
    /// The serve process's own environment, read once when it started: the values of the Secret env a Job
    /// inherits from the Paperclip pod, which the runs mask ([`prepare::secrets`]).
    pub own_env: Vec<(String, String)>,
}

/// Runs one execute and sends its result through `sink`. The result goes out as soon as it is known: what is
/// left of a normal end's cleanup (waiting for the pods to be gone) happens after it, tracked by
/// `services.cleanups` so a shutdown waits for it.
pub async fn execute(
    services: &Services,
    params: ExecuteParams,
    sink: &Sink,
    cancel: CancellationToken,
) {
    // Prepare: config, cluster client, the Paperclip pod's facts, prompt bundle and MCP servers, resume decision.
    let run = match prepare::prepare(services, params, sink).await {
        Ok(run) => run,
        Err(failed) => return sink.result(ExecutionResult::from(failed)),
    };
    // Plan (pure): Claude's invocation and the Job for it.
    let (mut planned, mut manifests) = match plan_attempt(&run, run.resume.clone()) {
        Ok(planned) => planned,
        Err(failed) => return sink.result(ExecutionResult::from(failed)),
    };
    // Claim: one Job per agent (the agent's Jobs, then its Lease), or adopt an orphan of the same work.
    let mut claim = match Claim::take(&run, &services.followed, &planned).await {
        Ok(claim) => claim,
        Err(refused) => return sink.result(ExecutionResult::from(refused)),
    };
    // Should this run panic before its result, its supervisor removes what it claimed.
    sink.claimed(cleanup::Abandoned::of(&run, claim.job()));
    let mut retry = false;
    let (result, leftover) = loop {
        let attempt = attempt(&run, &claim, &mut planned, manifests, retry, &cancel).await;
        let resumed = planned.invocation.resume_session_id.is_some();
        if retry
            || !attempt
                .ending
                .as_ref()
                .is_some_and(|e| outcome::unknown_session(resumed, e, &attempt.transcript))
        {
            break (attempt.result, attempt.leftover);
        }
        sink.progress(&format!(
            "Claude resume session \"{}\" is unavailable; retrying with a fresh session.",
            planned
                .invocation
                .resume_session_id
                .as_deref()
                .unwrap_or_default()
        ));
        // The retry's Job and Secret have the same names: the first ones must be gone first.
        if let Some(job) = &attempt.leftover {
            cleanup::remove_exited_pods(&run, job).await;
        }
        cleanup::remove_run_secret(&run, claim.job()).await;
        retry = true;
        (planned, manifests) = match plan_attempt(&run, None) {
            Ok(planned) => planned,
            Err(failed) => break (failed.into(), None),
        };
        if let Err(refused) = claim.recheck(&run, &planned).await {
            break (refused.into(), None);
        }
        sink.claimed(cleanup::Abandoned::of(&run, claim.job()));
    };
    if let Err(e) = prepare::session_record::save(&run.sessions, &result.session_record()) {
        sink.warn(&e);
    }
    claim.release().await;
    sink.result(result);
    if let Some(job) = leftover {
        let run = &run;
        services
            .cleanups
            .track_future(async move {
                // Force-deleted soon (claude has exited): only pods that stay are worth a word.
                let gone = cleanup::remove_exited_pods(run, &job).await;
                if gone == PodsGone::Stuck {
                    tracing::warn!(job = %job.name, ?gone, "the pods of a finished run were slow to go");
                }
            })
            .await;
    }
}

/// What one attempt ended with.
struct Attempt {
    result: ExecutionResult,
    /// How following ended (`None`: it never started).
    ending: Option<Ending>,
    transcript: follow::stream_json::Transcript,
    /// A removed Job whose pods are still to be waited for (a normal end only).
    leftover: Option<JobRef>,
}

impl Attempt {
    fn early(result: ExecutionResult) -> Self {
        Self {
            result,
            ending: None,
            transcript: Default::default(),
            leftover: None,
        }
    }
}

fn plan_attempt(
    run: &Prepared,
    resume: Option<String>,
) -> Result<(Planned, RunManifests), outcome::Failure> {
    let invocation = plan::invocation_for(run, resume);
    for note in &invocation.notes {
        run.sink.warn(note);
    }
    plan::for_attempt(run, invocation)
}

/// Launch → follow → cleanup → outcome, for the claimed Job.
async fn attempt(
    run: &Prepared<'_>,
    claim: &Claim<'_>,
    planned: &mut Planned,
    manifests: RunManifests,
    retry: bool,
    cancel: &CancellationToken,
) -> Attempt {
    run.sink.meta(launch::invocation_meta(
        &planned.invocation,
        claim.job(),
        &run.namespace,
    ));
    // Sent; nothing later reads it (the run Secret carries it to claude), and a run keeps what it still reads.
    planned.invocation.prompt = String::new();
    if cancel.is_cancelled() {
        return Attempt::early(outcome::cancelled(false, jiff::Timestamp::now()));
    }
    let job = match launch::launch(run, claim, manifests).await {
        Ok(job) => job,
        Err(failed) => return Attempt::early(failed.into()),
    };
    let limits = follow::Limits {
        pod: run.settings.pod_limits(),
        result_grace: run.settings.result_grace(),
        grace: std::time::Duration::from_secs(run.config.grace_sec),
        timeout: (run.config.timeout_sec > 0)
            .then(|| std::time::Duration::from_secs(run.config.timeout_sec)),
    };
    let cluster = follow::watch_run(run, &job);
    let (ending, transcript) = follow::follow(run, limits, &job, cluster, cancel).await;
    // Cleanup: claude ended by itself → the Job goes now and its pods after the result; a stopped run's result
    // waits until its pods are gone.
    let (leftover, forced) = match &ending {
        Ending::Exited(_) => (cleanup::after_exit(run, &job).await, false),
        _ => (
            None,
            cleanup::after_stop(run, &job).await != PodsGone::Graceful,
        ),
    };
    let facts = run_facts(run, planned, &job, retry);
    let result = outcome::report(
        &ending,
        &transcript,
        &facts,
        forced,
        run.settings.result_grace().as_secs(),
        run.config.timeout_sec,
        jiff::Timestamp::now(),
    );
    Attempt {
        result,
        ending: Some(ending),
        transcript,
        leftover,
    }
}

/// What the outcome needs to know about the attempt besides how it ended.
fn run_facts(run: &Prepared, planned: &Planned, job: &JobRef, retry: bool) -> RunFacts {
    let has_api_key = run.config.env.contains_key("ANTHROPIC_API_KEY")
        || run.facts.env.iter().any(|e| e.name == "ANTHROPIC_API_KEY");
    RunFacts {
        cwd: planned.invocation.cwd.clone(),
        configured_model: run.config.model.clone(),
        bedrock: planned.invocation.bedrock,
        has_api_key,
        fallback_session_id: planned.invocation.resume_session_id.clone(),
        clear_session: retry,
        job_name: job.name.clone(),
        namespace: run.namespace.clone(),
        memory_limit: run.config.resources.limits_memory.clone(),
        prompt_bundle_key: run.toolkit.bundle.as_ref().map(|b| b.key.clone()),
        mcp_server_identity: Some(run.toolkit.mcp_identity.clone()),
        workspace: outcome::Workspace::from_context(&run.params.context),
        now: jiff::Zoned::now(),
    }
}
