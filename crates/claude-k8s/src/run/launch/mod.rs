//! Launch: create the run Secret, owned by the agent's Lease from its creation (the garbage collector removes it
//! once the Lease is released), and the Job (retrying what passes), or take up the adopted Job instead. Either
//! way the run gets a [`JobRef`]: the Job and the selector of its own pods.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, PostParams};
use serde_json::{Value, json};

use crate::confined::SafeDir;
use crate::k8s::errors::{self as kube_errors, api_error};
use crate::k8s::labels;
use crate::run::claim::{Claim, Target};
use crate::run::outcome::{ErrorCode, Failure, failure, failure_with_hint};
use crate::run::plan::RunManifests;
use crate::run::plan::invocation::Invocation;
use crate::run::prepare::Prepared;
use crate::run::prepare::secrets::is_secret_name;

/// A Job the run follows: its name, its uid (the shared watches route its pods and itself by it), and the
/// selector of its own pods (by uid, [`labels::pods_of`]).
#[derive(Debug, Clone)]
pub struct JobRef {
    pub name: String,
    pub uid: String,
    pub pods: String,
    /// The run Secret goes with the agent's Lease (its owner) when the claim is released; otherwise cleanup
    /// deletes it by name (an adopted Job's, or one created without an owner).
    pub secret_owned: bool,
}

impl JobRef {
    /// The Job as an owner (of the run Secret a kept Job takes over), as the Lease's is made
    /// ([`crate::run::claim::guard`]).
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(false),
            block_owner_deletion: Some(false),
        }
    }
}

/// How many times a create is tried when the API server answers with a transient error.
const CREATE_ATTEMPTS: u32 = 5;

/// Creates the planned Job (or takes up the adopted one) of the claim; a failure is the run's result.
pub async fn launch(
    run: &Prepared<'_>,
    claim: &Claim<'_>,
    manifests: RunManifests,
) -> Result<JobRef, Failure> {
    let job = claim.job();
    let owner = claim.secret_owner();
    let secret_owned = owner.is_some() && *claim.target() == Target::Create;
    let uid = match claim.target() {
        Target::Create => {
            confine_view(run).await?;
            create(run, manifests, owner)
                .await?
                .metadata
                .uid
                .unwrap_or_default()
        }
        Target::Adopt { uid, finished } => {
            run.sink.progress(&format!(
                "adopting Job {job} of the same task and session: {}; following it from its first line",
                if *finished {
                    "it finished while no adapter process watched it, its result is read from its pod"
                } else {
                    "its supervising process is gone (a restart) and it is still running"
                }
            ));
            uid.clone()
        }
    };
    Ok(JobRef {
        name: job.to_owned(),
        pods: labels::pods_of(&uid),
        uid,
        secret_owned,
    })
}

/// Checks, right before the Job is created, that every directory the pod will mount is reached from the volume's
/// root through real directories only: the kubelet resolves a `subPath`'s symlinks within the volume, so a link an
/// agent planted in a directory it can write (its workspace, its home) could otherwise swap in another agent's files
/// or Paperclip's. Missing read-write directories (a new agent's home) are made here, as the server's user, so the
/// kubelet does not make them as root. A link planted between this check and the kubelet's mount is the residual
/// race (README, "Security model").
async fn confine_view(run: &Prepared<'_>) -> Result<(), Failure> {
    let mounts = run.view.mounts.clone();
    let home = run.view.home.clone();
    let checked = tokio::task::spawn_blocking(move || {
        for m in &mounts {
            let opened = SafeDir::open(std::path::Path::new(&m.path), !m.read_only).and_then(|dir| {
                // The agent's home is the adapter's: made by a server running as root, it must still be the agent
                // user's to write in.
                if m.path == home {
                    let uid = crate::run::plan::AGENT_UID as u32;
                    dir.give_root_owned_to(uid, uid)?;
                }
                Ok(())
            });
            if let Err(e) = opened {
                return Err(format!(
                    "the {} {} cannot be mounted safely: {e} (an agent may have planted a symlink there); nothing \
                     was created",
                    m.what, m.path
                ));
            }
        }
        Ok(())
    })
    .await;
    match checked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(failure(ErrorCode::VolumePathUnsafe, why)),
        Err(e) => Err(failure(ErrorCode::VolumePathUnsafe, e.to_string())),
    }
}

/// Paperclip's AdapterInvocationMeta of the attempt: how claude is invoked, secret env values masked (those of the
/// agent config travel in the run Secret).
pub fn invocation_meta(inv: &Invocation, job_name: &str, namespace: &str) -> Value {
    let env: serde_json::Map<String, Value> = inv
        .env
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!(if is_secret_name(k) || inv.secret_env.contains(k) {
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

/// Creates the run Secret, owned by `owner` (the agent's Lease), then the Job. The Secret exists before the pod
/// that mounts it, and has its owner from the start: no later request gives it one.
async fn create(
    run: &Prepared<'_>,
    manifests: RunManifests,
    owner: Option<OwnerReference>,
) -> Result<Job, Failure> {
    let RunManifests {
        job: planned_job,
        mut secret,
    } = manifests;
    let secrets = run.api::<Secret>();
    let jobs = run.api::<Job>();
    let pp = PostParams::default();
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    let job_name = planned_job.metadata.name.clone().unwrap_or_default();
    let request = |resource| kube_errors::Request {
        verb: "create",
        group: if resource == "jobs" { "batch" } else { "" },
        resource,
        namespace: &run.namespace,
    };
    let on_retry = |what: &'static str| {
        move |attempt: u32, e: &kube::Error, wait: Duration| {
            run.sink.progress(&format!(
                "cannot {what} yet: {}; retry {attempt} of {} in {:.1} s",
                kube_errors::server_words(e),
                CREATE_ATTEMPTS - 1,
                wait.as_secs_f64()
            ));
        }
    };
    secret.metadata.owner_references = owner.map(|o| vec![o]);
    let create_secret = || {
        kube_errors::with_retries(
            CREATE_ATTEMPTS,
            kube_errors::BACKOFF_BASE,
            || secrets.create(&pp, &secret),
            on_retry("create the run Secret"),
        )
    };
    let mut created = create_secret().await;
    if matches!(&created, Err(e) if kube_errors::kind(e) == kube_errors::Kind::AlreadyExists) {
        // The Secret of an earlier attempt with the same Job name (the same run id again), which its Lease's garbage
        // collection has not removed yet. This run holds the agent's claim and no Job of that name exists (the
        // claim would have adopted it), so that Secret is stale: it is replaced.
        let _ = secrets.delete(&secret_name, &DeleteParams::default()).await;
        created = create_secret().await;
    }
    if let Err(e) = created {
        return Err(create_failure(
            ErrorCode::SecretCreateFailed,
            &request("secrets"),
            &e,
        ));
    }
    let created = kube_errors::with_retries(
        CREATE_ATTEMPTS,
        kube_errors::BACKOFF_BASE,
        || jobs.create(&pp, &planned_job),
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
                    ErrorCode::JobCreateFailed,
                    api_error("read the created Job", &e),
                ));
            }
        },
        Err(e) => {
            let _ = secrets.delete(&secret_name, &DeleteParams::default()).await;
            return Err(create_failure(
                ErrorCode::JobCreateFailed,
                &request("jobs"),
                &e,
            ));
        }
    };
    run.sink.progress(&format!(
        "Job {job_name} created in namespace {}",
        run.namespace
    ));
    Ok(job)
}

/// A failed create: RBAC and quota refusals get their own codes; the server's words and the fix either way.
fn create_failure(code: ErrorCode, req: &kube_errors::Request, e: &kube::Error) -> Failure {
    let code = match kube_errors::kind(e) {
        kube_errors::Kind::Forbidden => ErrorCode::Forbidden,
        kube_errors::Kind::Quota => ErrorCode::QuotaExceeded,
        _ => code,
    };
    match kube_errors::describe(req, e) {
        (message, Some(hint)) => failure_with_hint(code, &message, &hint),
        (message, None) => failure(code, message),
    }
}
