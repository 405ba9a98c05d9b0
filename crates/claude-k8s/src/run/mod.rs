//! One `execute`, as a straight pipeline: plan → guard → launch → follow → outcome → cleanup.
//!
//! The pure steps live in `plan`, `invocation`, `pod_state`, `stream_json` and `outcome`; this module does the
//! I/O between them. Progress is watched, never polled: a pod watcher, a Job watcher and the log follower feed
//! one `select!` loop, and the run ends on the claude container's terminated state (or a cancel, a timeout, a
//! failure that will not fix itself), never on a log stream ending.
//!
//! Stopping is the adapter's own: at `timeoutSec`, and when claude printed its final `result` line but has not
//! exited `CLAUDE_K8S_RESULT_GRACE_SEC` (10) later, the Job is deleted so the pod gets SIGTERM, then SIGKILL after
//! `graceSec`; the loop keeps reading lines until the container has ended, so its last lines are in the result.
//! A Job or pod deleted by someone else is reported as such after a short bounded wait for claude's exit.
//! Start-up problems fail after `CLAUDE_K8S_START_GRACE_SEC` (30), an unschedulable pod after
//! `CLAUDE_K8S_PENDING_TIMEOUT_SEC` (600), a Job that gets no pod after `CLAUDE_K8S_POD_CREATE_TIMEOUT_SEC` (60),
//! all read from the serve process's environment.

pub mod claim;
pub mod cleanup;
pub mod follow;
pub mod outcome;
pub mod plan;
pub mod prepare;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::k8s::clients::{Clients, KubeCtx};
use crate::k8s::errors as kube_errors;
use crate::k8s::labels::{self, RunIdentity};
use crate::run::claim::guard::{self, AgentLock, GuardError, Verdict};
use crate::run::cleanup::{self as stop, PodsGone};
use crate::run::follow::pod_state::{self, PodFailure};
use crate::run::follow::stream_json::{self, Transcript};
use crate::run::outcome::{ContainerEnd, RunFacts};
use crate::run::plan::invocation::{self, Invocation};
use crate::run::plan::{RunManifests, RunPlanInput};
use crate::run::prepare::capabilities::{self, Capabilities};
use crate::run::prepare::config::AgentConfig;
use crate::run::prepare::introspect::SelfPod;
use crate::run::prepare::pod_facts::PodFacts;
use crate::serve::mask::Masker;
use crate::serve::protocol::ExecuteParams;
use crate::serve::sink::Sink;

/// Shared by every run of a serve process.
#[derive(Default)]
pub struct Services {
    pub clients: Clients,
    pub self_pod: SelfPod,
    /// Jobs that a run of this process follows right now: never adopted by another run of it.
    pub followed: Followed,
    /// Cleanups that run after their result was sent; a shutdown waits for them (bounded).
    pub cleanups: tokio_util::task::TaskTracker,
}

/// The names of the Jobs this process follows.
#[derive(Default)]
pub struct Followed(Mutex<HashSet<String>>);

impl Followed {
    fn snapshot(&self) -> HashSet<String> {
        self.0.lock().expect("followed lock").clone()
    }

    /// Marks `job` as followed until the returned entry is dropped; `None` if another run already follows it.
    fn enter(&self, job: &str) -> Option<FollowedEntry<'_>> {
        self.0
            .lock()
            .expect("followed lock")
            .insert(job.to_owned())
            .then(|| FollowedEntry {
                set: self,
                job: job.to_owned(),
            })
    }
}

struct FollowedEntry<'a> {
    set: &'a Followed,
    job: String,
}

impl Drop for FollowedEntry<'_> {
    fn drop(&mut self) {
        self.set.0.lock().expect("followed lock").remove(&self.job);
    }
}

/// How long the log follower may take to deliver the tail after the container terminated.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the adapter waits for claude to exit after it stopped the Job (timeout, hang after the result),
/// beyond the grace, before it reports without the last lines (cleanup still waits for the pod to be gone).
const STOP_SLACK: Duration = Duration::from_secs(30);
/// How long claude may take to exit after its final `result` line before it is stopped (claude_local's
/// `terminalResultCleanupGraceMs` is 5 s; a pod also flushes its log). `CLAUDE_K8S_RESULT_GRACE_SEC` overrides.
const RESULT_GRACE: Duration = Duration::from_secs(10);

/// The time limits of a run, from the serve process's environment (see docs/protocol.md).
#[derive(Debug, Clone, Copy)]
struct Timing {
    pod: pod_state::Limits,
    result_grace: Duration,
}

impl Timing {
    fn from_env() -> Self {
        Self {
            pod: pod_state::Limits::from_env(),
            result_grace: pod_state::env_secs("CLAUDE_K8S_RESULT_GRACE_SEC")
                .unwrap_or(RESULT_GRACE),
        }
    }
}

/// A failed result that never reached Claude.
pub fn failure(code: &str, message: impl Into<String>) -> Value {
    json!({"exitCode": null, "signal": null, "timedOut": false, "errorCode": code, "errorMessage": message.into()})
}

/// A failed result with a hint: the message ends with it, and `errorMeta.hint` carries it alone.
pub fn failure_with_hint(code: &str, message: &str, hint: &str) -> Value {
    let mut r = failure(code, format!("{message}. Hint: {hint}"));
    r["errorMeta"] = json!({"hint": hint});
    r
}

/// Runs one execute and sends its result through `sink`. The result goes out as soon as it is known: what is
/// left of a normal end's cleanup (the run Secret, waiting for the pods to be gone) happens after it, tracked by
/// `services.cleanups` so a shutdown waits for it.
pub async fn execute(
    services: &Services,
    params: ExecuteParams,
    sink: &Sink,
    cancel: CancellationToken,
) {
    let config = match AgentConfig::parse(&params.config) {
        Ok(c) => c,
        Err(e) => return sink.result(failure("invalid_config", e.to_string())),
    };
    let kube = match services.clients.get(config.kubeconfig.as_deref()).await {
        Ok(k) => k,
        Err(e) => return sink.result(failure("k8s_client_unavailable", e.to_string())),
    };
    let facts = match services.self_pod.facts(&kube).await {
        Ok(f) => f,
        Err(e) => return sink.result(failure("k8s_self_pod_unreadable", e.to_string())),
    };
    // Before anything of the agent is forwarded.
    sink.mask_secrets(Masker::new(known_secrets(&params, &config, &facts)));
    let namespace = config.namespace.clone().unwrap_or_else(|| {
        if facts.namespace.is_empty() {
            kube.default_namespace.clone()
        } else {
            facts.namespace.clone()
        }
    });
    // A bare session id (agent-level heartbeat) is gated on what the session was run with, as full params are.
    let sessions = crate::run::prepare::session_record::dir();
    let params = crate::run::prepare::session_record::with_saved_params(params, |id| {
        crate::run::prepare::session_record::read(&sessions, id)
    });
    // Blocking file I/O on the shared volume (skill trees are copied), off the async workers.
    let (p, c) = (params.clone(), config.clone());
    let caps = match tokio::task::spawn_blocking(move || capabilities::prepare(&p, &c)).await {
        Ok(Ok(caps)) => caps,
        Ok(Err(e)) => return sink.result(failure("prompt_bundle_failed", e.to_string())),
        Err(e) => return sink.result(failure("prompt_bundle_failed", e.to_string())),
    };
    for note in &caps.notes {
        sink.progress(note);
    }
    let run = Run {
        params: &params,
        config: &config,
        facts: &facts,
        kube: &kube,
        namespace: &namespace,
        sink,
        timing: Timing::from_env(),
        followed: &services.followed,
        caps: &caps,
    };

    let resume = match invocation::resumable_session(&params, &config, &caps) {
        Ok(id) => id,
        Err(why) => {
            sink.progress(&why);
            None
        }
    };
    // The agent's Lease, taken by the first attempt and held until the run ends (across a retry).
    let mut lock: Option<AgentLock> = None;
    let first = run.attempt(resume.clone(), false, &cancel, &mut lock).await;
    let unknown_session = resume.is_some()
        && first.container_exit.is_some_and(|code| code != 0)
        && first.transcript.is_unknown_session_error();
    let last = if unknown_session {
        sink.progress(&format!(
            "Claude resume session \"{}\" is unavailable; retrying with a fresh session.",
            resume.unwrap_or_default()
        ));
        // The retry's Job has the same name: the first one must be gone first.
        if let Some(job) = &first.reap {
            run.pods_gone(job).await;
        }
        run.attempt(None, true, &cancel, &mut lock).await
    } else {
        first
    };
    if let Err(e) = crate::run::prepare::session_record::save(&sessions, &last.result) {
        sink.warn(&e);
    }
    // The Job is deleted (or done and kept) by now: the agent's next run may start as soon as it has the result.
    // (A Lease whose Job is already gone would still count as held for a minute, as one being created.)
    if let Some(lock) = lock {
        lock.release().await;
    }
    sink.result(last.result);
    if let Some(job) = &last.reap {
        services
            .cleanups
            .track_future(async {
                let gone = run.pods_gone(job).await;
                if gone != PodsGone::Graceful {
                    tracing::warn!(job = %job.name, ?gone, "the pods of a finished run were slow to go");
                }
            })
            .await;
    }
}

struct Run<'a> {
    params: &'a ExecuteParams,
    config: &'a AgentConfig,
    facts: &'a PodFacts,
    kube: &'a KubeCtx,
    namespace: &'a str,
    sink: &'a Sink,
    timing: Timing,
    followed: &'a Followed,
    caps: &'a Capabilities,
}

struct Attempt {
    result: Value,
    transcript: Transcript,
    container_exit: Option<i32>,
    /// A Job (and run Secret) already deleted whose pods are still to be waited for.
    reap: Option<JobRef>,
}

/// A Job the run follows: its name, and the selector of its own pods (by uid, [`labels::pods_of`]).
#[derive(Debug, Clone)]
struct JobRef {
    name: String,
    pods: String,
}

/// Why following stopped.
enum Stop {
    Ended(ContainerEnd),
    Cancelled,
    /// `timeoutSec` passed; the agent was stopped and its last lines collected.
    TimedOut,
    /// Claude printed its final `result` but did not exit; it was stopped.
    StoppedAfterResult(Option<ContainerEnd>),
    Failed(Failed),
}

/// A run that failed around the agent: a code, words, and what to do.
struct Failed {
    code: &'static str,
    message: String,
    hint: Option<String>,
}

impl Failed {
    fn new(code: &'static str, message: String, hint: Option<&str>) -> Self {
        Self {
            code,
            message,
            hint: hint.map(str::to_owned),
        }
    }
}

/// Why the adapter is stopping the agent itself (the Job is being deleted; the loop waits for the container).
#[derive(Clone, Copy, PartialEq)]
enum Stopping {
    Timeout,
    AfterResult,
}

impl Attempt {
    fn early(result: Value) -> Self {
        Self {
            result,
            transcript: Transcript::default(),
            container_exit: None,
            reap: None,
        }
    }
}

impl Run<'_> {
    async fn attempt(
        &self,
        resume: Option<String>,
        retry_after_unknown: bool,
        cancel: &CancellationToken,
        lock: &mut Option<AgentLock>,
    ) -> Attempt {
        let (params, config, sink) = (self.params, self.config, self.sink);
        let inv = Invocation::build_with(params, config, self.facts, resume.clone(), self.caps);
        let mcp_config = crate::run::prepare::mcp::config_json(
            &self.caps.mcp,
            inv.env_value("PAPERCLIP_API_URL"),
        );
        for note in &inv.notes {
            sink.warn(note);
        }
        let identity = RunIdentity {
            agent_id: params.agent.id.clone(),
            run_id: params.run_id.clone(),
            company_id: params.agent.company_id.clone(),
            task_id: task_id(params),
            session_id: resume.clone(),
        };
        let input = RunPlanInput {
            identity: &identity,
            agent_name: &params.agent.name,
            namespace: self.namespace,
            invocation: &inv,
            auth_token: params.auth_token.as_deref().filter(|t| !t.is_empty()),
            mcp_config: mcp_config.as_deref(),
        };
        let manifests = match plan::plan(&input, config, self.facts) {
            Ok(m) => m,
            Err(e) => return Attempt::early(failure("k8s_plan_failed", e.to_string())),
        };
        let planned_job = manifests.job.metadata.name.clone().unwrap_or_default();

        let jobs: Api<Job> = self.api();
        let want = guard::Want {
            job_name: &planned_job,
            task_id: identity.task_id.as_deref(),
            session_id: identity.session_id.as_deref(),
        };
        let (verdict, listed) = match self.scan(&jobs, &want).await {
            Ok(v) => v,
            Err(result) => return Attempt::early(result),
        };
        let (job_name, adopted) = match verdict {
            Verdict::Clear => (planned_job.clone(), None),
            Verdict::Adopt { job, finished } => {
                let uid = listed
                    .iter()
                    .find(|j| j.metadata.name.as_deref() == Some(job.as_str()))
                    .and_then(|j| j.metadata.uid.clone())
                    .unwrap_or_default();
                (job, Some((finished, uid)))
            }
            Verdict::Blocked { job } => return Attempt::early(self.blocked(&job)),
        };
        // This process's runs never adopt a Job another of its runs follows (that is a duplicate, not an orphan).
        let Some(_following) = self.followed.enter(&job_name) else {
            return Attempt::early(self.blocked(&job_name));
        };
        if let Err(result) = self.hold_lease(lock, &jobs, &job_name).await {
            return Attempt::early(result);
        }
        sink.meta(invocation_meta(&inv, &job_name, self.namespace));
        if cancel.is_cancelled() {
            return Attempt::early(cancelled_result(false));
        }
        // The Job's own pods, by its uid.
        let pods = match adopted {
            None => {
                let uid = match self.launch(&manifests).await {
                    Ok(job) => job.metadata.uid.unwrap_or_default(),
                    Err(result) => return Attempt::early(result),
                };
                labels::pods_of(&uid)
            }
            Some((finished, uid)) => {
                sink.progress(&format!(
                "adopting Job {job_name} of the same task and session: {}; following it from its first line",
                    if finished {
                        "it finished while no adapter process watched it, its result is read from its pod"
                    } else {
                        "its supervising process is gone (a restart) and it is still running"
                    }
                ));
                labels::pods_of(&uid)
            }
        };
        let job = JobRef {
            name: job_name.clone(),
            pods,
        };

        let mut transcript = Transcript::default();
        let stop = self.follow(&job, &mut transcript, cancel).await;
        let run_facts = RunFacts {
            cwd: inv.cwd.clone(),
            configured_model: config.model.clone(),
            bedrock: inv.bedrock,
            has_api_key: has_api_key(config, self.facts),
            fallback_session_id: resume.clone(),
            clear_session: retry_after_unknown,
            job_name: job_name.clone(),
            namespace: self.namespace.to_owned(),
            memory_limit: config.resources.limits_memory.clone(),
            prompt_bundle_key: self.caps.bundle.as_ref().map(|b| b.key.clone()),
            mcp_server_identity: Some(self.caps.mcp_identity.clone()),
        };
        // The Job whose remaining cleanup waits until the result is out (a normal end only).
        let mut reap = None;
        let (result, container_exit) = match stop {
            Stop::Ended(end) => {
                let exit = end.exit_code;
                if self.release_job(&job_name).await {
                    reap = Some(job.clone());
                }
                (outcome::finished(&end, &transcript, &run_facts), Some(exit))
            }
            Stop::StoppedAfterResult(end) => {
                self.cleanup(&job).await;
                let end = end.unwrap_or(ContainerEnd {
                    exit_code: 143,
                    reason: Some("Stopped".into()),
                    ..Default::default()
                });
                let mut r = outcome::finished(&end, &transcript, &run_facts);
                if let Some(Value::Object(rj)) = r.get_mut("resultJson") {
                    rj.insert(
                        "unmanagedBackgroundTask".into(),
                        json!({"stoppedAfterResultSec": self.timing.result_grace.as_secs(), "by": "claude-k8s"}),
                    );
                }
                (r, Some(end.exit_code))
            }
            Stop::Cancelled => {
                sink.progress(&format!("cancelling: deleting Job {job_name}"));
                let gone = self.cleanup(&job).await;
                (cancelled_result(gone != PodsGone::Graceful), None)
            }
            Stop::TimedOut => {
                self.cleanup(&job).await;
                (
                    outcome::timed_out(config.timeout_sec, &transcript, &run_facts),
                    None,
                )
            }
            Stop::Failed(f) => {
                let message = outcome::with_last_lines(&f.message, &transcript);
                sink.warn(&message);
                self.cleanup(&job).await;
                let mut r = match &f.hint {
                    Some(hint) => failure_with_hint(f.code, &message, hint),
                    None => failure(f.code, message),
                };
                r["clearSession"] = json!(retry_after_unknown);
                (r, None)
            }
        };
        Attempt {
            result,
            transcript,
            container_exit,
            reap,
        }
    }

    /// A namespaced API for the run's namespace, on the run's client.
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.kube.client.clone(), self.namespace)
    }

    /// One Job per agent, first from the agent's Jobs ([`guard::decide`]: adopt, block or clear). Fails closed.
    async fn scan(
        &self,
        jobs: &Api<Job>,
        want: &guard::Want<'_>,
    ) -> Result<(Verdict, Vec<Job>), Value> {
        let selector = labels::selector(&[
            (
                labels::AGENT_ID,
                &labels::label_value(&self.params.agent.id),
            ),
            (labels::ADAPTER_TYPE, labels::ADAPTER_TYPE_VALUE),
        ]);
        let list = jobs.list(&ListParams::default().labels(&selector)).await.map_err(|e| {
            failure(
                "k8s_concurrency_guard_unreachable",
                api_error("list the agent's Jobs to check for a running one; refusing to start a second", &e),
            )
        })?;
        let verdict = guard::decide(&list.items, want, &self.followed.snapshot());
        Ok((verdict, list.items))
    }

    /// Then from the agent's Lease, which arbitrates between processes: taken for `job_name` by the first
    /// attempt (the retry of an unknown session follows the same Job name, so it keeps it).
    async fn hold_lease(
        &self,
        lock: &mut Option<AgentLock>,
        jobs: &Api<Job>,
        job_name: &str,
    ) -> Result<(), Value> {
        if lock.is_some() {
            return Ok(());
        }
        let leases: Api<Lease> = self.api();
        match guard::acquire(&leases, jobs, &self.params.agent.id, job_name).await {
            Ok(l) => {
                *lock = Some(l);
                Ok(())
            }
            Err(GuardError::Busy { job }) => Err(self.blocked(&job)),
            Err(e) => Err(failure_with_hint(
                "k8s_concurrency_guard_unreachable",
                &e.to_string(),
                "the one-Job-per-agent guard needs get/create/update/delete on leases.coordination.k8s.io in \
                 the Jobs' namespace (deploy/role.yaml); `claude-k8s doctor` checks it",
            )),
        }
    }

    fn blocked(&self, job: &str) -> Value {
        failure_with_hint(
            "k8s_concurrent_run_blocked",
            &format!(
                "agent already has an active Job {job} in namespace {}; one Job per agent at a time",
                self.namespace
            ),
            "wait for that run to finish, or cancel it in Paperclip; `claude-k8s jobs` lists the agent's Jobs",
        )
    }

    /// Creates the run Secret, then the Job, then makes the Job own the Secret so garbage collection removes it.
    async fn launch(&self, m: &RunManifests) -> Result<Job, Value> {
        let secrets: Api<Secret> = self.api();
        let jobs: Api<Job> = self.api();
        let pp = PostParams::default();
        let secret_name = m.secret.metadata.name.clone().unwrap_or_default();
        let job_name = m.job.metadata.name.clone().unwrap_or_default();
        let request = |resource| kube_errors::Request {
            verb: "create",
            group: if resource == "jobs" { "batch" } else { "" },
            resource,
            namespace: self.namespace,
        };
        let on_retry = |what: &'static str| {
            move |attempt: u32, e: &kube::Error, wait: Duration| {
                self.sink.progress(&format!(
                    "cannot {what} yet ({}); retry {attempt} of {} in {:.1} s",
                    kube_errors::short(e),
                    CREATE_ATTEMPTS - 1,
                    wait.as_secs_f64()
                ));
            }
        };
        let created = kube_errors::with_retries(
            CREATE_ATTEMPTS,
            kube_errors::BACKOFF_BASE,
            || secrets.create(&pp, &m.secret),
            on_retry("create the run Secret"),
        )
        .await;
        if let Err(e) = created {
            return Err(create_failure(
                "k8s_secret_create_failed",
                &request("secrets"),
                &e,
            ));
        }
        let created = kube_errors::with_retries(
            CREATE_ATTEMPTS,
            kube_errors::BACKOFF_BASE,
            || jobs.create(&pp, &m.job),
            on_retry("create the Job"),
        )
        .await;
        let job = match created {
            Ok(Some(job)) => job,
            // An earlier try created it and its answer was lost.
            Ok(None) => match jobs.get(&job_name).await {
                Ok(job) => job,
                Err(e) => {
                    let _ = secrets.delete(&secret_name, &DeleteParams::default()).await;
                    return Err(failure(
                        "k8s_job_create_failed",
                        api_error("read the created Job", &e),
                    ));
                }
            },
            Err(e) => {
                let _ = secrets.delete(&secret_name, &DeleteParams::default()).await;
                return Err(create_failure(
                    "k8s_job_create_failed",
                    &request("jobs"),
                    &e,
                ));
            }
        };
        self.sink.progress(&format!(
            "Job {job_name} created in namespace {}",
            self.namespace
        ));
        let owner = OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: job.metadata.name.clone().unwrap_or_default(),
            uid: job.metadata.uid.clone().unwrap_or_default(),
            controller: Some(false),
            block_owner_deletion: Some(false),
        };
        let patch = json!({"metadata": {"ownerReferences": [owner]}});
        if let Err(e) = secrets
            .patch(&secret_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // Not fatal: cleanup deletes the Secret by name, and `claude-k8s gc` by label.
            tracing::warn!(error = %e, secret = %secret_name, "cannot give the run Secret an owner");
        }
        Ok(job)
    }

    async fn follow(
        &self,
        job: &JobRef,
        transcript: &mut Transcript,
        cancel: &CancellationToken,
    ) -> Stop {
        let job_name = job.name.as_str();
        let pods: Api<Pod> = self.api();
        let jobs: Api<Job> = self.api();
        let selector = job.pods.clone();
        let mut pod_events =
            watcher::watcher(pods.clone(), watcher::Config::default().labels(&selector))
                .default_backoff()
                .boxed();
        let mut job_events = watch_job(jobs, job_name).boxed();
        let (line_tx, mut line_rx) = mpsc::channel::<String>(4096);
        let (terminated_tx, terminated_rx) = watch::channel(false);
        let mut line_tx = Some(line_tx);
        let mut log_task: Option<tokio::task::JoinHandle<u64>> = None;
        let deadline = (self.config.timeout_sec > 0)
            .then(|| Instant::now() + Duration::from_secs(self.config.timeout_sec));
        let mut pending_failure: Option<(PodFailure, Instant)> = None;
        let mut last_progress: Option<String> = None;
        // Set once the Job is being deleted (by the adapter for a timeout or after the result, or by someone
        // else): the loop then waits for the claude container to end, so its last lines arrive, until the time.
        let mut stopping: Option<(Stopping, Instant)> = None;
        // When claude should have exited after its final result line.
        let mut result_at: Option<Instant> = None;
        // Someone else is deleting the pod: when to stop waiting for claude to end.
        let mut pod_deleting: Option<Instant> = None;
        // Until the first pod shows up: when to give up on the Job controller creating one.
        let mut no_pod_until = Some(Instant::now() + self.timing.pod.pod_create_timeout);
        let mut pod_name: Option<String> = None;

        let stop = loop {
            let active = stopping.is_none();
            let failure_at = pending_failure
                .as_ref()
                .filter(|_| active)
                .map(|(f, since)| *since + f.after);
            let give_up_at = stopping.map(|(_, at)| at);
            tokio::select! {
                _ = cancel.cancelled() => break Stop::Cancelled,
                _ = sleep_until(deadline.filter(|_| active)) => {
                    self.sink.progress(&format!(
                        "timed out after {}s: stopping claude (it has {}s to exit), then collecting its last lines",
                        self.config.timeout_sec, self.config.grace_sec
                    ));
                    stopping = Some((Stopping::Timeout, self.begin_stop(job_name).await));
                }
                _ = sleep_until(result_at.filter(|_| active)) => {
                    self.sink.progress(&format!(
                        "claude printed its result but has not exited {}s later (a background process keeps it \
                         running?): stopping it; the run keeps that result",
                        self.timing.result_grace.as_secs()
                    ));
                    stopping = Some((Stopping::AfterResult, self.begin_stop(job_name).await));
                }
                _ = sleep_until(give_up_at) => {
                    let (why, _) = stopping.expect("a give-up time implies stopping");
                    self.sink.warn("claude did not exit in time after the stop; its last lines may be missing");
                    break stopped(why, None);
                }
                _ = sleep_until(no_pod_until.filter(|_| active)) => {
                    break Stop::Failed(self.with_events("Job", job_name, Failed::new(
                        "k8s_pod_not_created",
                        format!(
                            "the Job controller created no pod for Job {job_name} in {}s",
                            self.timing.pod.pod_create_timeout.as_secs()
                        ),
                        Some(&format!(
                            "`kubectl describe job {job_name}` shows why (FailedCreate events): often a missing \
                             adapterConfig.serviceAccountName, a used-up ResourceQuota or an admission policy \
                             refusing the pod"
                        )),
                    )).await);
                }
                _ = sleep_until(pod_deleting.filter(|_| active)) => {
                    break Stop::Failed(self.deleted_externally(job_name, None).await);
                }
                _ = sleep_until(failure_at) => {
                    let (f, _) = pending_failure.take().expect("a deadline implies a failure");
                    let failed = Failed::new(f.code, f.message, Some(&f.hint));
                    break Stop::Failed(match (&pod_name, EVENT_CAUSED.contains(&f.code)) {
                        (Some(pod), true) => self.with_events("Pod", pod, failed).await,
                        _ => failed,
                    });
                }
                Some(line) = line_rx.recv() => {
                    transcript.push_line(&line);
                    self.sink.stdout_line(&line);
                    if let Some(note) = stream_json::progress_note(&line) {
                        self.sink.progress(&note);
                    }
                    result_at = match (transcript.awaiting_exit, result_at) {
                        (true, None) => Some(Instant::now() + self.timing.result_grace),
                        (true, at) => at,
                        (false, _) => None,
                    };
                }
                event = pod_events.next() => match event {
                    Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                        no_pod_until = None;
                        pod_name.clone_from(&pod.metadata.name);
                        let view = pod_state::view(&pod, &self.timing.pod);
                        if view.progress.is_some() && view.progress != last_progress {
                            self.sink.progress(view.progress.as_deref().unwrap_or_default());
                            last_progress = view.progress.clone();
                        }
                        if (view.claude_running || view.claude_end.is_some()) && log_task.is_none() {
                            let name = pod.metadata.name.clone().unwrap_or_default();
                            let tx = line_tx.take().expect("the sender is taken once");
                            log_task = Some(tokio::spawn(crate::run::follow::logs::follow(pods.clone(), name, tx, terminated_rx.clone())));
                        }
                        if let Some(end) = view.claude_end {
                            let _ = terminated_tx.send(true);
                            break match stopping {
                                Some((why, _)) => stopped(why, Some(end)),
                                None if view.deleting => {
                                    Stop::Failed(self.deleted_externally(job_name, Some(&end)).await)
                                }
                                None => Stop::Ended(end),
                            };
                        }
                        if view.deleting && active && pod_deleting.is_none() {
                            pod_deleting = Some(
                                Instant::now()
                                    + Duration::from_secs(self.config.grace_sec).min(Duration::from_secs(10))
                                    + Duration::from_secs(10),
                            );
                            self.sink.progress(&format!(
                                "pod {} is being deleted",
                                pod.metadata.name.as_deref().unwrap_or("?")
                            ));
                        }
                        pending_failure = match (view.failure, pending_failure.take()) {
                            (Some(f), Some((old, since))) if old.code == f.code => Some((f, since)),
                            (Some(f), _) => Some((f, Instant::now())),
                            (None, _) => None,
                        };
                    }
                    Some(Ok(Event::Delete(_))) => {
                        break match stopping {
                            Some((why, _)) => stopped(why, None),
                            None => Stop::Failed(self.deleted_externally(job_name, None).await),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::debug!(error = %e, "pod watch error; the watcher retries"),
                    None => break Stop::Failed(Failed::new("k8s_watch_ended", "the pod watch ended unexpectedly".into(), None)),
                },
                event = job_events.next() => match event {
                    Some(Ok(job)) if stopping.is_none()
                        && job.as_ref().is_none_or(|j| j.metadata.deletion_timestamp.is_some()) =>
                    {
                        // Someone else deleted the Job: its pod is being stopped. Wait (bounded) for claude to
                        // end so its last lines and exit code are part of the report.
                        self.sink.progress(&format!("Job {job_name} was deleted by someone else; waiting for claude to stop"));
                        // Bounded short: the cause is known now; the exit code is only a detail (a slow kubelet
                        // may take long to kill the pod, and cleanup still waits for it to be gone).
                        let give_up = Instant::now()
                            + Duration::from_secs(self.config.grace_sec).min(Duration::from_secs(10))
                            + Duration::from_secs(10);
                        let end_wait = tokio::time::sleep_until(give_up);
                        tokio::pin!(end_wait);
                        // Keep draining lines and pod events until the pod's end, in a small inner loop. A cancel
                        // meanwhile is still a cancel: Paperclip waits for its acknowledgement.
                        let mut cancelled = false;
                        let end = loop {
                            tokio::select! {
                                _ = &mut end_wait => break None,
                                _ = cancel.cancelled() => {
                                    cancelled = true;
                                    break None;
                                }
                                Some(line) = line_rx.recv() => {
                                    transcript.push_line(&line);
                                    self.sink.stdout_line(&line);
                                }
                                event = pod_events.next() => match event {
                                    Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                                        if let Some(end) = pod_state::view(&pod, &self.timing.pod).claude_end {
                                            break Some(end);
                                        }
                                    }
                                    Some(Ok(Event::Delete(_))) | None => break None,
                                    _ => {}
                                },
                            }
                        };
                        let _ = terminated_tx.send(true);
                        if cancelled {
                            break Stop::Cancelled;
                        }
                        break Stop::Failed(job_deleted_failure(job_name, end.as_ref()));
                    }
                    Some(Ok(Some(job))) => {
                        if let Some(reason) = failed_reason(&job) {
                            break Stop::Failed(Failed::new("k8s_job_failed", format!("Job {job_name} failed: {reason}"), None));
                        }
                    }
                    Some(Ok(None)) => {}
                    Some(Err(e)) => tracing::debug!(error = %e, "job watch error; the watcher retries"),
                    None => {}
                },
            }
        };

        // Deliver the log's tail: the follower ends by itself once the container has terminated.
        let _ = terminated_tx.send(true);
        drop(line_tx);
        if let Some(task) = log_task {
            let drain = async {
                while let Some(line) = line_rx.recv().await {
                    transcript.push_line(&line);
                    self.sink.stdout_line(&line);
                }
            };
            if tokio::time::timeout(LOG_DRAIN_TIMEOUT, drain)
                .await
                .is_err()
            {
                self.sink
                    .warn("the log tail did not arrive in time; the transcript may be incomplete");
                task.abort();
            }
        }
        stop
    }

    /// Stops the agent: deletes the Job (Background propagation), so the garbage collector deletes the pod with
    /// its termination grace (`graceSec`): claude gets SIGTERM, then SIGKILL. Returns when to give up waiting.
    async fn begin_stop(&self, job_name: &str) -> Instant {
        self.delete_job(job_name, None).await;
        Instant::now() + Duration::from_secs(self.config.grace_sec) + STOP_SLACK
    }

    /// Deletes the Job with Background propagation (its pods follow through the garbage collector); a Job that
    /// is already gone is fine. `grace` overrides the Job object's own deletion grace.
    async fn delete_job(&self, job_name: &str, grace: Option<u32>) {
        let jobs: Api<Job> = self.api();
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            grace_period_seconds: grace,
            ..Default::default()
        };
        if let Err(e) = jobs.delete(job_name, &dp).await
            && !is_not_found(&e)
        {
            self.sink
                .warn(&api_error(&format!("delete Job {job_name}"), &e));
        }
    }

    /// Adds the object's latest Warning event to a failure's message: the cause Kubernetes recorded only there.
    async fn with_events(&self, kind: &str, name: &str, mut failed: Failed) -> Failed {
        if let Some(event) =
            crate::k8s::events::latest_warning(&self.kube.client, self.namespace, kind, name).await
        {
            failed.message = format!("{}; the {kind}'s latest event: {event}", failed.message);
        }
        failed
    }

    /// The pod went away (or claude was stopped) while nobody in this run asked for it: find out whether the Job
    /// was deleted (then the pod with it) or only the pod.
    async fn deleted_externally(&self, job_name: &str, end: Option<&ContainerEnd>) -> Failed {
        let jobs: Api<Job> = self.api();
        match jobs.get_opt(job_name).await {
            Ok(None) => job_deleted_failure(job_name, end),
            Ok(Some(j)) if j.metadata.deletion_timestamp.is_some() => {
                job_deleted_failure(job_name, end)
            }
            _ => Failed::new(
                "k8s_pod_deleted",
                format!(
                    "the pod of Job {job_name} was deleted by someone else before claude finished{}",
                    end.map(|e| format!(" ({})", outcome::describe_end(e)))
                        .unwrap_or_default()
                ),
                Some(
                    "an operator (kubectl delete pod), a node drain or a controller removed the pod; run the \
                     heartbeat again",
                ),
            ),
        }
    }

    /// The run ended normally: before its result is reported, the Job is deleted (or, with `retainJobs`, marked
    /// as reported), so the agent's next run is not held up by it. What is left to do afterwards, off the result's
    /// path, is [`Run::reap`]; returns whether there is anything.
    async fn release_job(&self, job_name: &str) -> bool {
        if !self.config.retain_jobs {
            self.delete_job(job_name, None).await;
            self.delete_run_secret(job_name).await;
            return true;
        }
        self.sink.progress(&format!(
            "retainJobs is set: Job {job_name} is kept (TTL {}s)",
            self.config.ttl_seconds_after_finished
        ));
        // Its result is reported now: a later run must not adopt it as one that finished unwatched.
        let jobs: Api<Job> = self.api();
        let patch =
            json!({"metadata": {"annotations": {guard::RESULT_REPORTED: self.params.run_id}}});
        if let Err(e) = jobs
            .patch(job_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            self.sink
                .warn(&api_error(&format!("mark Job {job_name} as reported"), &e));
        }
        false
    }

    /// Stops the run now (cancel, timeout, failure): deletes the Job with the configured grace and waits until its
    /// pods are gone, force-deleting a pod that outlives its grace (a stuck kubelet: [`stop`]). Always, whatever
    /// `retainJobs` says: a stopped run must not keep running.
    async fn cleanup(&self, job: &JobRef) -> PodsGone {
        let job_name = job.name.as_str();
        let grace = self.config.grace_sec.min(u32::MAX as u64) as u32;
        self.delete_job(job_name, Some(grace)).await;
        let gone = self.reap(job).await;
        match gone {
            PodsGone::Graceful => {}
            PodsGone::Forced => self.sink.warn(&format!(
                "the pod of Job {job_name} outlived its grace period and was force-deleted"
            )),
            PodsGone::Stuck => self.sink.warn(&format!(
                "pods of Job {job_name} are still present after a force delete"
            )),
        }
        gone
    }

    /// After the Job's deletion: removes the run Secret and waits until the Job's pods are gone.
    async fn reap(&self, job: &JobRef) -> PodsGone {
        self.delete_run_secret(&job.name).await;
        self.pods_gone(job).await
    }

    async fn pods_gone(&self, job: &JobRef) -> PodsGone {
        let pods: Api<Pod> = self.api();
        stop::ensure_pods_gone(&pods, &job.pods, Duration::from_secs(self.config.grace_sec)).await
    }

    /// The Job owns its run Secret (garbage collection removes it too); deleting it by name is quicker and also
    /// covers a Secret whose owner reference could not be set.
    async fn delete_run_secret(&self, job_name: &str) {
        let secrets: Api<Secret> = self.api();
        let _ = secrets
            .delete(&labels::run_secret_name(job_name), &DeleteParams::default())
            .await;
    }
}

fn stopped(why: Stopping, end: Option<ContainerEnd>) -> Stop {
    match why {
        Stopping::Timeout => Stop::TimedOut,
        Stopping::AfterResult => Stop::StoppedAfterResult(end),
    }
}

fn job_deleted_failure(job_name: &str, end: Option<&ContainerEnd>) -> Failed {
    Failed::new(
        "k8s_job_deleted_externally",
        format!(
            "Job {job_name} was deleted by someone else before claude finished{}",
            end.map(|e| format!(" ({})", outcome::describe_end(e)))
                .unwrap_or_default()
        ),
        Some(
            "something else deleted the Job: an operator (kubectl delete job), `claude-k8s gc`, or a cleanup \
             policy in the namespace; run the heartbeat again",
        ),
    )
}

fn cancelled_result(forced: bool) -> Value {
    let now = jiff::Timestamp::now().to_string();
    json!({
        "exitCode": null, "signal": null, "timedOut": false,
        "errorCode": "cancelled", "errorMessage": "Cancelled: the Job was deleted",
        "resultJson": {"executionCancellation": {"state": "acknowledged", "acknowledgedAt": now, "forced": forced}}
    })
}

fn invocation_meta(inv: &Invocation, job_name: &str, namespace: &str) -> Value {
    let env: serde_json::Map<String, Value> = inv
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!(if is_secret_name(k) {
                    "***REDACTED***"
                } else {
                    v.as_str()
                }),
            )
        })
        .collect();
    json!({
        "adapterType": labels::ADAPTER_TYPE_VALUE,
        "command": "claude",
        "cwd": inv.cwd,
        "commandArgs": inv.args,
        "commandNotes": [format!("Kubernetes Job {namespace}/{job_name}; prompt on stdin from the run Secret")],
        "env": env,
        "prompt": inv.prompt,
        "promptMetrics": inv.prompt_metrics,
    })
}

pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|w| upper.contains(w))
}

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

/// The values the adapter knows to be secret: the run's token, the MCP servers' tokens, and env values whose name
/// says secret (API keys, tokens, passwords) from the agent config and from the Paperclip pod's own plain env.
fn known_secrets(params: &ExecuteParams, config: &AgentConfig, facts: &PodFacts) -> Vec<String> {
    let mut secrets: Vec<String> = params.auth_token.iter().cloned().collect();
    secrets.extend(
        crate::run::prepare::mcp::servers(&params.runtime_mcp_servers)
            .into_iter()
            .map(|s| s.token)
            .filter(|t| !t.is_empty()),
    );
    let raw_env = params.config.get("env").and_then(Value::as_object);
    for (name, value) in &config.env {
        // A binding Paperclip marks as a secret (anything but `plain`) is one whatever its name.
        let bound_secret = raw_env
            .and_then(|e| e.get(name))
            .and_then(|b| b.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t != "plain");
        if bound_secret || is_secret_name(name) {
            secrets.push(value.clone());
        }
    }
    secrets.extend(
        facts
            .env
            .iter()
            .filter(|e| is_secret_name(&e.name))
            .filter_map(|e| e.value.clone()),
    );
    secrets
}

fn has_api_key(config: &AgentConfig, facts: &PodFacts) -> bool {
    config.env.contains_key("ANTHROPIC_API_KEY")
        || facts.env.iter().any(|e| e.name == "ANTHROPIC_API_KEY")
}

fn failed_reason(job: &Job) -> Option<String> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    let c = conds
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    // BackoffLimitExceeded follows the claude container's own failure, which the pod watch reports better.
    (c.reason.as_deref() != Some("BackoffLimitExceeded")).then(|| {
        format!(
            "{}: {}",
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default()
        )
    })
}

/// Pod failures whose cause is told best by the pod's events (a failed mount, a container that cannot be made).
const EVENT_CAUSED: [&str; 3] = [
    "k8s_pod_start_timeout",
    "k8s_container_create_error",
    "k8s_pod_failed",
];

/// How many times a create is tried when the API server answers with a transient error.
const CREATE_ATTEMPTS: u32 = 5;

/// A failed create: RBAC and quota refusals get their own codes; the server's words and the fix either way.
fn create_failure(code: &str, req: &kube_errors::Request, e: &kube::Error) -> Value {
    let code = match kube_errors::kind(e) {
        kube_errors::Kind::Forbidden => "k8s_forbidden",
        kube_errors::Kind::Quota => "k8s_quota_exceeded",
        _ => code,
    };
    match kube_errors::describe(req, e) {
        (message, Some(hint)) => failure_with_hint(code, &message, &hint),
        (message, None) => failure(code, message),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    kube_errors::status(e) == Some(404)
}

fn api_error(what: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "cannot {what}: {} (the adapter's service account lacks a permission; see deploy/role.yaml)",
            s.message
        ),
        kube::Error::Api(s) => format!("cannot {what}: {} ({} {})", s.message, s.code, s.reason),
        other => format!("cannot {what}: {other}"),
    }
}

/// The Job's state as a stream: `Some(job)` on every change, `None` once it is gone. Like kube's `watch_object`,
/// plus the watcher's backoff: without it, a watch that cannot reconnect (the API server is restarting) retries
/// in a tight loop, hammering the server as it comes back.
fn watch_job(
    jobs: Api<Job>,
    name: &str,
) -> impl futures::Stream<Item = Result<Option<Job>, watcher::Error>> + Send + use<> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher::watcher(jobs, config)
        .default_backoff()
        // Whether the Job was in the latest initial list: if not, it is gone (a Delete event can be missed).
        .scan(false, |seen, event| {
            match &event {
                Ok(Event::Init) => *seen = false,
                Ok(Event::InitApply(_)) => *seen = true,
                _ => {}
            }
            futures::future::ready(Some((*seen, event)))
        })
        .filter_map(|(seen, event)| async move {
            match event {
                Ok(Event::Apply(job) | Event::InitApply(job)) => Some(Ok(Some(job))),
                Ok(Event::Delete(_)) => Some(Ok(None)),
                Ok(Event::InitDone) if !seen => Some(Ok(None)),
                Ok(Event::Init | Event::InitDone) => None,
                Err(e) => Some(Err(e)),
            }
        })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
