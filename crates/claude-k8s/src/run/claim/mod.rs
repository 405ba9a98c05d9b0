//! Claim the agent: one Job per agent, with the cluster as the arbiter ([`guard`]). First the agent's Jobs are
//! read ([`guard::decide`]: adopt an orphan of the same work, block, or go ahead), then the agent's Lease is taken
//! for the Job. A [`Claim`] holds the Lease until [`Claim::release`] (dropped without it, it releases in the
//! background) and says what the run launches: a new Job, or the adopted one.

pub mod guard;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ListParams;

use crate::k8s::errors::api_error;
use crate::k8s::labels;
use crate::run::outcome::{ErrorCode, Failure, failure, failure_with_hint};
use crate::run::plan::Planned;
use crate::run::prepare::Prepared;
use guard::{AgentLock, GuardError, Verdict};

/// The names of the Jobs this process follows right now: a run of this process never adopts one of them (that
/// is a duplicate, not an orphan).
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

/// What the claimed run launches.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A new Job, as planned.
    Create,
    /// The agent's orphaned Job of the same work (see [`Verdict::Adopt`]).
    Adopt { uid: String, finished: bool },
}

/// The agent, claimed for one Job.
pub struct Claim<'a> {
    lock: Option<AgentLock>,
    followed: &'a Followed,
    following: Option<FollowedEntry<'a>>,
    job: String,
    target: Target,
}

impl<'a> Claim<'a> {
    /// Claims the agent for the planned Job (or the orphan it adopts instead). A refusal is the run's result:
    /// blocked by another run, or the guard could not be read (it fails closed).
    pub async fn take(
        run: &Prepared<'_>,
        followed: &'a Followed,
        planned: &Planned,
    ) -> Result<Claim<'a>, Failure> {
        let mut claim = Claim {
            lock: None,
            followed,
            following: None,
            job: planned.job_name().to_owned(),
            target: Target::Create,
        };
        claim.check(run, planned).await?;
        let leases = run.api::<Lease>();
        match guard::acquire(&leases, &run.api(), &run.params.agent.id, &claim.job).await {
            Ok(lock) => claim.lock = Some(lock),
            Err(GuardError::Busy { job }) => return Err(blocked(run, &job)),
            Err(e) => {
                return Err(failure_with_hint(
                    ErrorCode::GuardUnreachable,
                    &e.to_string(),
                    ErrorCode::GuardUnreachable.hint().unwrap_or_default(),
                ));
            }
        }
        Ok(claim)
    }

    /// Before the retry of an unknown session (the same Job name): the agent's Jobs are read again, under the
    /// Lease this claim holds.
    pub async fn recheck(&mut self, run: &Prepared<'_>, planned: &Planned) -> Result<(), Failure> {
        self.following = None;
        self.check(run, planned).await
    }

    /// The Job the run follows.
    pub fn job(&self) -> &str {
        &self.job
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The agent's Lease as the owner of the run Secret ([`AgentLock::owner_reference`]).
    pub fn secret_owner(&self) -> Option<OwnerReference> {
        self.lock.as_ref()?.owner_reference()
    }

    /// Gives the agent's Lease up. The run's Job is deleted (or done and kept) by now: the agent's next run may
    /// start as soon as it has the result. (A Lease whose Job is already gone would still count as held for a
    /// minute, as one being created.)
    pub async fn release(mut self) {
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
    }

    /// One Job per agent, first from the agent's Jobs ([`guard::decide`]: adopt, block or clear). Fails closed.
    async fn check(&mut self, run: &Prepared<'_>, planned: &Planned) -> Result<(), Failure> {
        let want = guard::Want {
            job_name: planned.job_name(),
            task_id: planned.identity.task_id.as_deref(),
            session_id: planned.identity.session_id.as_deref(),
        };
        let followed = self.followed.snapshot();
        // The shared Job watch's store answers "clear" (the Lease, taken next from the API server, catches a Job
        // the store has not seen yet). Anything else is decided again on a fresh list: a store a moment behind
        // could still hold the agent's previous Job, which was just removed.
        let stored = stored_agent_jobs(run)
            .await
            .map(|jobs| guard::decide(&jobs, &want, &followed))
            .filter(|v| *v == Verdict::Clear);
        let verdict = match stored {
            Some(verdict) => verdict,
            None => guard::decide(&listed_agent_jobs(run).await?, &want, &followed),
        };
        let (job, target) = match verdict {
            Verdict::Clear => (planned.job_name().to_owned(), Target::Create),
            Verdict::Adopt { job, uid, finished } => (job, Target::Adopt { uid, finished }),
            Verdict::Blocked { job } => return Err(blocked(run, &job)),
        };
        // This process's runs never adopt a Job another of its runs follows.
        self.following = Some(
            self.followed
                .enter(&job)
                .ok_or_else(|| blocked(run, &job))?,
        );
        self.job = job;
        self.target = target;
        Ok(())
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        // A path that did not release (a panic, a cancelled future): give the Lease up in the background.
        if let (Some(lock), Ok(rt)) = (self.lock.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(lock.release());
        }
    }
}

/// How long the guard waits for the shared Job watch's first list before it lists the agent's Jobs itself.
const STORE_SYNC_WAIT: Duration = Duration::from_secs(2);

/// The agent's Jobs in the namespace's shared Job watch, once it is synced (waiting a moment for its first list).
async fn stored_agent_jobs(run: &Prepared<'_>) -> Option<Vec<Job>> {
    let store = &run.watches.jobs;
    if !store.synced() && !store.synced_within(STORE_SYNC_WAIT).await {
        return None;
    }
    let agent = labels::label_value(&run.params.agent.id);
    store.select(|j| {
        j.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::AGENT_ID))
            == Some(&agent)
    })
}

/// The agent's Jobs, listed from the API server; an error refuses the run.
async fn listed_agent_jobs(run: &Prepared<'_>) -> Result<Vec<Job>, Failure> {
    run.api::<Job>()
        .list(&ListParams::default().labels_from(&labels::of_agent(&run.params.agent.id)))
        .await
        .map(|list| list.items)
        .map_err(|e| {
            failure(
                ErrorCode::GuardUnreachable,
                api_error(
                    "list the agent's Jobs to check for a running one; refusing to start a second",
                    &e,
                ),
            )
        })
}

fn blocked(run: &Prepared<'_>, job: &str) -> Failure {
    failure_with_hint(
        ErrorCode::ConcurrentRunBlocked,
        &format!(
            "agent already has an active Job {job} in namespace {}; one Job per agent at a time",
            run.namespace
        ),
        ErrorCode::ConcurrentRunBlocked.hint().unwrap_or_default(),
    )
}
