use super::*;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

fn job(name: &str, task: Option<&str>, session: Option<&str>) -> Job {
    let mut l = BTreeMap::new();
    if let Some(t) = task {
        l.insert(labels::TASK_ID.to_owned(), t.to_owned());
    }
    if let Some(s) = session {
        l.insert(labels::SESSION_ID.to_owned(), s.to_owned());
    }
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(l),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn finished(mut j: Job) -> Job {
    j.status = Some(JobStatus {
        conditions: Some(vec![JobCondition {
            type_: "Complete".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    j
}

fn deleting(mut j: Job) -> Job {
    j.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    j
}

fn reported(mut j: Job) -> Job {
    j.metadata.annotations = Some(BTreeMap::from([(
        RESULT_REPORTED.to_owned(),
        "r0".to_owned(),
    )]));
    j
}

const WANT: Want = Want {
    job_name: "claude-me",
    task_id: Some("T1"),
    session_id: Some("S1"),
};

#[test]
fn nothing_active_is_clear() {
    let none = HashSet::new();
    assert_eq!(decide(&[], &WANT, &none), Verdict::Clear);
    let jobs = [
        finished(job("old", Some("T2"), None)),
        deleting(job("going", Some("T1"), Some("S1"))),
        reported(finished(job("done", Some("T1"), Some("S1")))),
    ];
    assert_eq!(decide(&jobs, &WANT, &none), Verdict::Clear);
}

#[test]
fn a_reported_job_does_not_block_before_it_is_marked_complete() {
    let jobs = [reported(job("kept", Some("T2"), None))];
    assert_eq!(decide(&jobs, &WANT, &HashSet::new()), Verdict::Clear);
}

#[test]
fn another_tasks_active_job_blocks() {
    let jobs = [job("other", Some("T2"), Some("S1"))];
    assert_eq!(
        decide(&jobs, &WANT, &HashSet::new()),
        Verdict::Blocked {
            job: "other".into()
        }
    );
    // Same task, another session: a different conversation; it blocks too.
    let jobs = [job("other", Some("T1"), None)];
    assert_eq!(
        decide(&jobs, &WANT, &HashSet::new()),
        Verdict::Blocked {
            job: "other".into()
        }
    );
}

#[test]
fn the_same_work_whose_supervisor_is_gone_is_adopted() {
    let jobs = [job("orphan", Some("T1"), Some("S1"))];
    assert_eq!(
        decide(&jobs, &WANT, &HashSet::new()),
        Verdict::Adopt {
            job: "orphan".into(),
            uid: "uid-orphan".into(),
            finished: false
        }
    );
    // Followed by a run of this very process: not an orphan, a concurrent duplicate.
    let here = HashSet::from(["orphan".to_owned()]);
    assert_eq!(
        decide(&jobs, &WANT, &here),
        Verdict::Blocked {
            job: "orphan".into()
        }
    );
    // Finished while nobody watched, result not yet reported: recovered.
    let jobs = [finished(job("orphan", Some("T1"), Some("S1")))];
    assert_eq!(
        decide(&jobs, &WANT, &HashSet::new()),
        Verdict::Adopt {
            job: "orphan".into(),
            uid: "uid-orphan".into(),
            finished: true
        }
    );
    // A Job with this run's own name (a replayed execute) is ours whatever its labels.
    let jobs = [job("claude-me", None, None)];
    assert!(matches!(
        decide(&jobs, &WANT, &HashSet::new()),
        Verdict::Adopt { .. }
    ));
}

#[test]
fn agent_level_heartbeats_match_on_absent_task_and_session() {
    let want = Want {
        job_name: "claude-me",
        task_id: None,
        session_id: None,
    };
    let jobs = [job("orphan", None, None)];
    assert!(matches!(
        decide(&jobs, &want, &HashSet::new()),
        Verdict::Adopt { .. }
    ));
    let jobs = [job("other", Some("T1"), None)];
    assert!(matches!(
        decide(&jobs, &want, &HashSet::new()),
        Verdict::Blocked { .. }
    ));
}

#[test]
fn an_active_job_blocks_before_a_finished_one_is_recovered() {
    let jobs = [
        finished(job("orphan", Some("T1"), Some("S1"))),
        job("busy", Some("T9"), None),
    ];
    assert_eq!(
        decide(&jobs, &WANT, &HashSet::new()),
        Verdict::Blocked { job: "busy".into() }
    );
}

fn lease(holder: &str, taken: jiff::Timestamp) -> Lease {
    new_lease("l", "agent", holder, taken)
}

#[test]
fn a_lease_is_held_while_its_job_is_active_or_being_created() {
    let now = jiff::Timestamp::now();
    let l = lease("theirs", now);
    assert_eq!(
        lease_state(&l, None, "mine", now),
        LeaseState::HeldBy("theirs".into())
    );
    assert_eq!(lease_state(&l, None, "theirs", now), LeaseState::Ours);
    let active = job("theirs", None, None);
    let long_ago = now - jiff::SignedDuration::from_secs(3600);
    assert_eq!(
        lease_state(&lease("theirs", long_ago), Some(&active), "mine", now),
        LeaseState::HeldBy("theirs".into())
    );
}

#[test]
fn a_lease_is_stale_once_its_job_ended_or_never_came() {
    let now = jiff::Timestamp::now();
    let l = lease("theirs", now);
    assert_eq!(
        lease_state(&l, Some(&finished(job("theirs", None, None))), "mine", now),
        LeaseState::Stale
    );
    assert_eq!(
        lease_state(&l, Some(&deleting(job("theirs", None, None))), "mine", now),
        LeaseState::Stale
    );
    let later = now + jiff::SignedDuration::from_secs(CREATE_WINDOW.as_secs() as i64 + 1);
    assert_eq!(lease_state(&l, None, "mine", later), LeaseState::Stale);
}
