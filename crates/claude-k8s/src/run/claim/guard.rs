//! One Job per agent, with the cluster as the arbiter.
//!
//! Two Jobs of one agent would write the same Claude session and workspace on the shared volume, so a run
//! starts only when no other run of the agent is active. An in-process lock would not do: two Paperclip
//! replicas run two serve processes. The arbiter is a `coordination.k8s.io` Lease per agent with a
//! deterministic name: creating it is atomic, and whoever creates it (or replaces a stale one, guarded by the
//! Lease's `resourceVersion`) may create the agent's Job. The Lease names its holder Job, so whether it is still
//! held is read from the cluster, not from a renewal loop: it is stale once that Job has finished or is being
//! deleted, or when the Job never appeared within [`CREATE_WINDOW`] of the Lease being taken (its creator died
//! between the two calls).
//!
//! Before the Lease, the agent's Jobs are read once ([`decide`]): a still-running Job of the same task and
//! session that no run in this process follows is adopted (its supervisor died: a serve or Paperclip restart),
//! and so is one that finished while nobody watched; any other active Job blocks. Every error fails closed.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};

use crate::k8s::errors::status;
use crate::k8s::labels::{self, RESULT_REPORTED};

/// How long a Lease whose holder Job does not exist yet still counts as held: covers the create of the run
/// Secret and the Job, with their retries.
pub const CREATE_WINDOW: Duration = Duration::from_secs(60);

/// What the run being started is.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The Job name this run would create.
    pub job_name: &'a str,
    pub task_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

/// What to do about the agent's existing Jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No other run of the agent is active: take the Lease and create a Job.
    Clear,
    /// A Job of the same task and session whose supervisor is gone: follow it instead of starting another
    /// (`finished`: it ended while nobody watched; its result is read from its pod). `uid` selects its pods.
    Adopt {
        job: String,
        uid: String,
        finished: bool,
    },
    /// Another run of the agent is active.
    Blocked { job: String },
}

/// Decides from the agent's Jobs (one list call) and the Jobs this process already follows. Pure.
pub fn decide(jobs: &[Job], want: &Want, followed_here: &HashSet<String>) -> Verdict {
    let live = |j: &&Job| j.metadata.deletion_timestamp.is_none();
    let name = |j: &Job| j.metadata.name.clone().unwrap_or_default();
    let uid = |j: &Job| j.metadata.uid.clone().unwrap_or_default();
    let same_work = |j: &Job| {
        name(j) == want.job_name
            || (label(j, labels::TASK_ID) == want.task_id.map(labels::label_value)
                && label(j, labels::SESSION_ID) == want.session_id.map(labels::label_value))
    };
    // A retained Job whose result was reported is done even before the Job controller marks it Complete.
    let mut active = jobs
        .iter()
        .filter(live)
        .filter(|j| !is_finished(j) && !is_reported(j));
    let mut first_active = None;
    for j in active.by_ref() {
        if same_work(j) && !followed_here.contains(&name(j)) {
            return Verdict::Adopt {
                job: name(j),
                uid: uid(j),
                finished: false,
            };
        }
        first_active.get_or_insert_with(|| name(j));
    }
    if let Some(job) = first_active {
        return Verdict::Blocked { job };
    }
    let unreported = jobs.iter().filter(live).find(|j| {
        is_finished(j) && same_work(j) && !followed_here.contains(&name(j)) && !is_reported(j)
    });
    match unreported {
        Some(j) => Verdict::Adopt {
            job: name(j),
            uid: uid(j),
            finished: true,
        },
        None => Verdict::Clear,
    }
}

fn is_reported(job: &Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(RESULT_REPORTED))
}

fn label(job: &Job, key: &str) -> Option<String> {
    job.metadata.labels.as_ref()?.get(key).cloned()
}

/// Whether the Job reached a terminal condition.
pub fn is_finished(job: &Job) -> bool {
    has_condition(job, "Complete") || has_condition(job, "Failed")
}

/// Whether the Job has condition `type_` with status True.
pub fn has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| conds.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Whether an existing Lease still holds the agent, from its holder Job (absent if not found). Pure.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseState {
    /// Held for the Job this run creates or adopts.
    Ours,
    /// Held by another run's Job (which may still be being created).
    HeldBy(String),
    /// Its holder finished, is being deleted, or never appeared: it may be taken over.
    Stale,
}

pub fn lease_state(
    lease: &Lease,
    holder_job: Option<&Job>,
    my_job: &str,
    now: jiff::Timestamp,
) -> LeaseState {
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    if holder == my_job {
        return LeaseState::Ours;
    }
    match holder_job {
        Some(j) if j.metadata.deletion_timestamp.is_none() && !is_finished(j) => {
            LeaseState::HeldBy(holder)
        }
        Some(_) => LeaseState::Stale,
        None => {
            let taken = spec
                .and_then(|s| s.renew_time.as_ref().or(s.acquire_time.as_ref()))
                .map(|t| t.0);
            match taken {
                Some(t)
                    if now.as_millisecond() - t.as_millisecond()
                        < CREATE_WINDOW.as_millis() as i64 =>
                {
                    LeaseState::HeldBy(holder)
                }
                _ => LeaseState::Stale,
            }
        }
    }
}

/// Why the Lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("agent already has an active Job {job}; one Job per agent at a time")]
    Busy { job: String },
    #[error("cannot {what} ({source}); refusing to start a second run of the agent")]
    Unreachable {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("the agent's Lease {lease} changed under us {attempts} times in a row")]
    Contended { lease: String, attempts: u32 },
}

/// The agent's Lease, held by this run until [`AgentLock::release`].
#[derive(Debug)]
pub struct AgentLock {
    api: Api<Lease>,
    name: String,
    uid: Option<String>,
    resource_version: Option<String>,
}

/// Takes the agent's Lease for `holder_job`, or says who holds it. Safe under races between processes.
pub async fn acquire(
    leases: &Api<Lease>,
    jobs: &Api<Job>,
    agent_id: &str,
    holder_job_name: &str,
) -> Result<AgentLock, GuardError> {
    let name = labels::agent_lease_name(agent_id);
    const ATTEMPTS: u32 = 5;
    for _ in 0..ATTEMPTS {
        let now = jiff::Timestamp::now();
        let fresh = new_lease(&name, agent_id, holder_job_name, now);
        match leases.create(&PostParams::default(), &fresh).await {
            Ok(created) => return Ok(lock(leases, name, &created)),
            Err(e) if status(&e) == Some(409) => {}
            Err(source) => {
                return Err(GuardError::Unreachable {
                    what: "create the agent's Lease",
                    source,
                });
            }
        }
        let existing = match leases.get_opt(&name).await {
            Ok(Some(l)) => l,
            // Released between our create and get: try again.
            Ok(None) => continue,
            Err(source) => {
                return Err(GuardError::Unreachable {
                    what: "read the agent's Lease",
                    source,
                });
            }
        };
        let holder = existing
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        let holder_job = if holder.is_empty() || holder == holder_job_name {
            None
        } else {
            jobs.get_opt(&holder)
                .await
                .map_err(|source| GuardError::Unreachable {
                    what: "read the Job holding the agent's Lease",
                    source,
                })?
        };
        match lease_state(&existing, holder_job.as_ref(), holder_job_name, now) {
            LeaseState::Ours => return Ok(lock(leases, name, &existing)),
            LeaseState::HeldBy(job) => return Err(GuardError::Busy { job }),
            LeaseState::Stale => {
                // Take it over only if nobody changed it since we read it (the resourceVersion precondition).
                let mut taken = new_lease(&name, agent_id, holder_job_name, now);
                taken.metadata.resource_version = existing.metadata.resource_version.clone();
                match leases.replace(&name, &PostParams::default(), &taken).await {
                    Ok(replaced) => {
                        tracing::info!(lease = %name, stale_holder = %holder, "took over a stale agent Lease");
                        return Ok(lock(leases, name, &replaced));
                    }
                    // Someone else took it over (409) or released it (404) first: look again.
                    Err(e) if matches!(status(&e), Some(409 | 404)) => continue,
                    Err(source) => {
                        return Err(GuardError::Unreachable {
                            what: "take over the agent's stale Lease",
                            source,
                        });
                    }
                }
            }
        }
    }
    Err(GuardError::Contended {
        lease: name,
        attempts: ATTEMPTS,
    })
}

impl AgentLock {
    /// The Lease as the owner of the run's Secret, set when the Secret is created: the garbage collector deletes the
    /// Secret once the Lease is released, with no request of the run's own (and none to give it an owner later). A
    /// stale Lease taken over keeps its uid, so the Secret of a run whose process died goes when the next run of the
    /// agent releases the Lease (or `claude-k8s gc` deletes the stale Lease). `None` if the API server gave no uid.
    pub fn owner_reference(&self) -> Option<OwnerReference> {
        Some(OwnerReference {
            api_version: "coordination.k8s.io/v1".into(),
            kind: "Lease".into(),
            name: self.name.clone(),
            uid: self.uid.clone()?,
            controller: Some(false),
            block_owner_deletion: Some(false),
        })
    }

    /// Gives the Lease up, unless someone already took it over (the resourceVersion precondition).
    pub async fn release(self) {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: self.resource_version.clone(),
                uid: None,
            }),
            ..Default::default()
        };
        match self.api.delete(&self.name, &dp).await {
            Ok(_) => {}
            Err(e) if matches!(status(&e), Some(404 | 409)) => {}
            // Not fatal: the Lease names a finished Job, so the next run takes it over as stale.
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "cannot release the agent's Lease")
            }
        }
    }
}

fn lock(api: &Api<Lease>, name: String, lease: &Lease) -> AgentLock {
    AgentLock {
        api: api.clone(),
        name,
        uid: lease.metadata.uid.clone(),
        resource_version: lease.metadata.resource_version.clone(),
    }
}

fn new_lease(name: &str, agent_id: &str, holder_job: &str, now: jiff::Timestamp) -> Lease {
    let labels = [
        (labels::MANAGED_BY, labels::MANAGED_BY_VALUE.to_owned()),
        (labels::ADAPTER_TYPE, labels::ADAPTER_TYPE_VALUE.to_owned()),
        (labels::AGENT_ID, labels::label_value(agent_id)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder_job.to_owned()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(CREATE_WINDOW.as_secs() as i32),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests;
