//! Label and annotation keys, and deterministic object names. Pure.
//!
//! Every object the adapter creates carries these labels; they are how the guard, adoption, `jobs` and `gc` find
//! them again. Values are sanitized to what Kubernetes accepts (63 characters of `[A-Za-z0-9._-]`).

use std::collections::BTreeMap;

use kube::core::Selector;
use sha2::{Digest, Sha256};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "claude-k8s";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const COMPONENT_VALUE: &str = "agent-run";
pub const AGENT_ID: &str = "paperclip.io/agent-id";
pub const RUN_ID: &str = "paperclip.io/run-id";
pub const COMPANY_ID: &str = "paperclip.io/company-id";
pub const TASK_ID: &str = "paperclip.io/task-id";
pub const SESSION_ID: &str = "paperclip.io/session-id";
pub const ADAPTER_TYPE: &str = "paperclip.io/adapter-type";
pub const ADAPTER_TYPE_VALUE: &str = "claude_k8s";
pub const AGENT_NAME_ANNOTATION: &str = "paperclip.io/agent-name";
/// Annotation set on a retained Job once its result was reported, so it is never adopted again.
pub const RESULT_REPORTED: &str = "paperclip.io/result-reported-by";

/// The label the Job controller puts on a Job's pods (1.20 has no `batch.kubernetes.io/job-name`).
pub const JOB_NAME: &str = "job-name";
/// The label the Job controller puts on a Job's pods with the Job's uid (1.20 has no
/// `batch.kubernetes.io/controller-uid`).
pub const CONTROLLER_UID: &str = "controller-uid";

/// The selector of one Job object's pods. By uid, not by name: the pods of an earlier Job of the same name (a
/// retried attempt; a finished one still terminating) are never taken for this one's.
pub fn pods_of(job_uid: &str) -> String {
    format!("{CONTROLLER_UID}={job_uid}")
}

/// Label prefixes a user may not set through `adapterConfig.labels`: they would confuse ownership.
const RESERVED_PREFIXES: [&str; 4] = [
    "paperclip.io/",
    "app.kubernetes.io/managed-by",
    "job-name",
    "controller-uid",
];

/// What identifies one run in the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunIdentity {
    pub agent_id: String,
    pub run_id: String,
    pub company_id: String,
    pub task_id: Option<String>,
    pub session_id: Option<String>,
}

/// The Job name for a run: readable prefixes of both ids plus a hash of the pair, well under 63 characters.
pub fn job_name(agent_id: &str, run_id: &str) -> String {
    let hash = Sha256::digest(format!("{agent_id}:{run_id}").as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("claude-{}-{}-{hex}", slug(agent_id, 8), slug(run_id, 8))
}

/// The agent's Lease (the one-Job-per-agent guard): deterministic, so every serve process contends for the same
/// object. A readable prefix of the agent id plus a hash of all of it.
pub fn agent_lease_name(agent_id: &str) -> String {
    let hash = Sha256::digest(format!("agent-lease:{agent_id}").as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("claude-agent-{}-{hex}", slug(agent_id, 8))
}

/// The per-run Secret (prompt, run token) that belongs to a Job.
pub fn run_secret_name(job_name: &str) -> String {
    format!("{job_name}-run")
}

fn slug(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(max)
        .collect();
    if cleaned.is_empty() {
        "x".into()
    } else {
        cleaned
    }
}

/// A label value Kubernetes accepts: at most 63 characters, alphanumerics at both ends, `-_.` inside.
pub fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The labels of a run's Job, pod template and Secret.
pub fn run_labels(id: &RunIdentity) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (COMPONENT.to_owned(), COMPONENT_VALUE.to_owned()),
        (ADAPTER_TYPE.to_owned(), ADAPTER_TYPE_VALUE.to_owned()),
        (AGENT_ID.to_owned(), label_value(&id.agent_id)),
        (RUN_ID.to_owned(), label_value(&id.run_id)),
        (COMPANY_ID.to_owned(), label_value(&id.company_id)),
    ]);
    for (key, value) in [(TASK_ID, &id.task_id), (SESSION_ID, &id.session_id)] {
        if let Some(v) = value.as_deref().map(label_value).filter(|v| !v.is_empty()) {
            labels.insert(key.to_owned(), v);
        }
    }
    labels
}

/// The user's extra labels minus the reserved ones; invalid values are sanitized, invalid keys dropped.
pub fn user_labels(extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    extra
        .iter()
        .filter(|(k, _)| !RESERVED_PREFIXES.iter().any(|p| k.starts_with(p)) && is_label_key(k))
        .map(|(k, v)| (k.clone(), label_value(v)))
        .collect()
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a non-empty label value of at most 63 characters.
pub fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && part.ends_with(|c: char| c.is_ascii_alphanumeric())
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// The selector of the objects of one agent (its Jobs, its Lease) by their labels.
pub fn of_agent(agent_id: &str) -> Selector {
    Selector::from_iter([
        (AGENT_ID.to_owned(), label_value(agent_id)),
        (ADAPTER_TYPE.to_owned(), ADAPTER_TYPE_VALUE.to_owned()),
    ])
}

/// The selector of everything the adapter made.
pub fn managed() -> Selector {
    Selector::from_iter([
        (MANAGED_BY, MANAGED_BY_VALUE),
        (ADAPTER_TYPE, ADAPTER_TYPE_VALUE),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_deterministic_short_and_distinct() {
        let a = job_name(
            "0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa",
            "9f1c2d3e-2222-4444-8888-bbbbbbbbbbbb",
        );
        assert_eq!(
            a,
            job_name(
                "0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa",
                "9f1c2d3e-2222-4444-8888-bbbbbbbbbbbb"
            )
        );
        assert!(a.starts_with("claude-0b6f3c1e-9f1c2d3e-"), "{a}");
        assert!(a.len() <= 52, "{a}");
        assert_ne!(
            a,
            job_name(
                "0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa",
                "9f1c2d3e-2222-4444-8888-cccccccccccc"
            )
        );
        assert!(job_name("", "").starts_with("claude-x-x-"));
        assert!(run_secret_name(&a).len() <= 63);
        let lease = agent_lease_name("0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaaa");
        assert!(lease.starts_with("claude-agent-0b6f3c1e-"), "{lease}");
        assert_ne!(
            lease,
            agent_lease_name("0b6f3c1e-1111-4c3a-9d55-aaaaaaaaaaab")
        );
    }

    #[test]
    fn label_values_are_sanitized() {
        assert_eq!(label_value("abc-DEF_1.2"), "abc-DEF_1.2");
        assert_eq!(label_value("--a b/c--"), "a-b-c");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn run_labels_carry_ids_and_skip_empty_ones() {
        let l = run_labels(&RunIdentity {
            agent_id: "a1".into(),
            run_id: "r1".into(),
            company_id: "c1".into(),
            task_id: Some("t1".into()),
            session_id: Some(String::new()),
        });
        assert_eq!(l[AGENT_ID], "a1");
        assert_eq!(l[TASK_ID], "t1");
        assert_eq!(l[MANAGED_BY], "claude-k8s");
        assert_eq!(l[ADAPTER_TYPE], "claude_k8s");
        assert!(!l.contains_key(SESSION_ID));
    }

    #[test]
    fn user_labels_cannot_take_over_ownership() {
        let extra = BTreeMap::from([
            ("team".to_owned(), "core".to_owned()),
            ("paperclip.io/agent-id".to_owned(), "evil".to_owned()),
            ("app.kubernetes.io/managed-by".to_owned(), "me".to_owned()),
            ("bad key!".to_owned(), "x".to_owned()),
        ]);
        let l = user_labels(&extra);
        assert_eq!(l.len(), 1);
        assert_eq!(l["team"], "core");
    }
}
