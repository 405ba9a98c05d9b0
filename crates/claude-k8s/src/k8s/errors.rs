//! Kubernetes API errors at create time: what they mean, the server's own words with the fix, and retries with
//! backoff for the ones that pass (B1.7 of the prior art: 429/5xx, a 409 that is not AlreadyExists, a quota
//! 403 while other runs finish, a dropped connection).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

/// What the adapter was doing, for messages and RBAC hints: `create` `jobs` in API group `batch`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub namespace: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Worth another try: 429, 5xx, a conflict that is not AlreadyExists, a transport error.
    Transient,
    /// 403 from a ResourceQuota: may pass when other pods finish, so retried, then reported as such.
    Quota,
    /// 403 from RBAC (or an admission policy): a missing permission; retrying cannot help.
    Forbidden,
    AlreadyExists,
    Other,
}

pub fn kind(e: &kube::Error) -> Kind {
    match e {
        kube::Error::Api(s) => {
            let message = s.message.to_lowercase();
            match (s.code, s.reason.as_str()) {
                (403, _) if message.contains("exceeded quota") => Kind::Quota,
                (403, _) => Kind::Forbidden,
                (409, "AlreadyExists") => Kind::AlreadyExists,
                (409, _) | (429, _) | (500..=599, _) => Kind::Transient,
                _ => Kind::Other,
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => Kind::Transient,
        _ => Kind::Other,
    }
}

/// The server's message with what to do about it; the error code for the result.
pub fn describe(req: &Request, e: &kube::Error) -> (String, Option<String>) {
    let message = format!(
        "cannot {} {} in namespace {}: {}",
        req.verb,
        req.resource,
        req.namespace,
        server_words(e)
    );
    let hint = match kind(e) {
        Kind::Forbidden => Some(format!(
            "the adapter's identity lacks a permission: add to its Role in namespace {} the rule \
             {{apiGroups: [\"{}\"], resources: [\"{}\"], verbs: [\"{}\"]}} (deploy/role.yaml has every rule \
             the adapter needs); an admission policy can also refuse a request with 403",
            req.namespace, req.group, req.resource, req.verb
        )),
        Kind::Quota => Some(format!(
            "a ResourceQuota in namespace {} is used up: wait for other runs to finish, raise the quota, or \
             lower adapterConfig resources",
            req.namespace
        )),
        _ => None,
    };
    (message, hint)
}

/// The HTTP status the API server answered with, if it answered at all.
pub fn status(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// "cannot <what>: <the server's words>", naming the Role when the answer was 403. For requests without a
/// [`Request`] of their own (cleanup, reads); [`describe`] gives the exact rule.
pub fn api_error(what: &str, e: &kube::Error) -> String {
    let words = server_words(e);
    match kind(e) {
        Kind::Forbidden => format!(
            "cannot {what}: {words}; the adapter's service account lacks a permission (deploy/role.yaml)"
        ),
        _ => format!("cannot {what}: {words}"),
    }
}

/// The API server's own words with its status, "etcd leader changed (503 ServiceUnavailable)", or the transport
/// error: the one way every message of the adapter quotes an API error.
pub fn server_words(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

/// Whether the API server answered 404 Not Found.
pub fn is_not_found(e: &kube::Error) -> bool {
    status(e) == Some(404)
}

/// The first wait between tries; it doubles each time: 0.5 s, 1 s, 2 s, 4 s, then 8 s.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Tries `op` up to `attempts` times while it fails with a transient (or quota) error, waiting `base`, doubled
/// each time up to 16 times `base`, between tries and telling `on_retry` about each (the try that failed, its
/// error, the wait). An AlreadyExists after a retried try means the earlier try did create the object (its answer
/// was lost): that counts as success (`Ok(None)`).
pub async fn with_retries<T, F, Fut>(
    attempts: u32,
    base: Duration,
    mut op: F,
    mut on_retry: impl FnMut(u32, &kube::Error, Duration),
) -> Result<Option<T>, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    // Shared by the try and the notification (and Send: the run's future crosses threads).
    let tries = AtomicU32::new(0);
    let policy = ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(base * 16)
        .with_max_times(attempts.saturating_sub(1) as usize);
    let attempt = || {
        let this_try = tries.fetch_add(1, Ordering::Relaxed) + 1;
        let answer = op();
        async move {
            match answer.await {
                Ok(v) => Ok(Some(v)),
                Err(e) if this_try > 1 && kind(&e) == Kind::AlreadyExists => Ok(None),
                Err(e) => Err(e),
            }
        }
    };
    attempt
        .retry(policy)
        .sleep(tokio::time::sleep)
        .when(|e| matches!(kind(e), Kind::Transient | Kind::Quota))
        .notify(|e, wait| on_retry(tries.load(Ordering::Relaxed), e, wait))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            serde_json::from_value(
                json!({"status": "Failure", "code": code, "reason": reason, "message": message}),
            )
            .unwrap(),
        ))
    }

    const MS: Duration = Duration::from_millis(1);

    const REQ: Request = Request {
        verb: "create",
        group: "",
        resource: "secrets",
        namespace: "ns1",
    };

    #[test]
    fn kinds() {
        assert_eq!(kind(&api(503, "ServiceUnavailable", "x")), Kind::Transient);
        assert_eq!(kind(&api(429, "TooManyRequests", "x")), Kind::Transient);
        assert_eq!(
            kind(&api(
                409,
                "Conflict",
                "Operation cannot be fulfilled on resourcequotas"
            )),
            Kind::Transient
        );
        assert_eq!(kind(&api(409, "AlreadyExists", "x")), Kind::AlreadyExists);
        assert_eq!(
            kind(&api(
                403,
                "Forbidden",
                "jobs.batch \"j\" is forbidden: exceeded quota: q, requested: count/jobs.batch=1"
            )),
            Kind::Quota
        );
        assert_eq!(kind(&api(403, "Forbidden", "x")), Kind::Forbidden);
        assert_eq!(kind(&api(422, "Invalid", "x")), Kind::Other);
    }

    #[test]
    fn a_403_names_the_missing_rule_and_keeps_the_servers_words() {
        let server = "secrets is forbidden: User \"limited\" cannot create resource \"secrets\" in API group \"\" in the namespace \"ns1\"";
        let (message, hint) = describe(&REQ, &api(403, "Forbidden", server));
        assert_eq!(
            message,
            format!("cannot create secrets in namespace ns1: {server} (403 Forbidden)")
        );
        let hint = hint.unwrap();
        assert!(
            hint.contains("{apiGroups: [\"\"], resources: [\"secrets\"], verbs: [\"create\"]}"),
            "{hint}"
        );
        let (_, hint) = describe(&REQ, &api(403, "Forbidden", "exceeded quota: q"));
        assert!(hint.unwrap().contains("ResourceQuota"));
        let (message, hint) = describe(&REQ, &api(422, "Invalid", "spec is bad"));
        assert!(message.ends_with("spec is bad (422 Invalid)") && hint.is_none());
        assert_eq!(
            server_words(&api(503, "ServiceUnavailable", "down")),
            "down (503 ServiceUnavailable)"
        );
        assert_eq!(
            api_error(
                "delete Job j",
                &api(403, "Forbidden", "jobs \"j\" is forbidden")
            ),
            "cannot delete Job j: jobs \"j\" is forbidden (403 Forbidden); the adapter's service account \
             lacks a permission (deploy/role.yaml)"
        );
    }

    #[tokio::test]
    async fn transient_errors_are_retried_with_backoff_then_succeed() {
        let calls = AtomicU32::new(0);
        let mut waits = Vec::new();
        let r = with_retries(
            5,
            MS,
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(api(503, "ServiceUnavailable", "etcd leader changed")),
                    1 => Err(api(429, "TooManyRequests", "slow down")),
                    _ => Ok(7),
                }
            },
            |_, _, wait| waits.push(wait),
        )
        .await;
        assert_eq!(r.unwrap(), Some(7));
        assert_eq!(waits, [MS, MS * 2]);
    }

    #[tokio::test]
    async fn the_wait_doubles_up_to_sixteen_times_the_base() {
        let mut tries = Vec::new();
        let mut waits = Vec::new();
        let r: Result<Option<()>, _> = with_retries(
            8,
            MS,
            || async { Err(api(503, "ServiceUnavailable", "down")) },
            |attempt, _, wait| {
                tries.push(attempt);
                waits.push(wait);
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(tries, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            waits,
            [MS, MS * 2, MS * 4, MS * 8, MS * 16, MS * 16, MS * 16]
        );
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried_and_retries_are_bounded() {
        let calls = AtomicU32::new(0);
        let r: Result<Option<()>, _> = with_retries(
            5,
            MS,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(api(403, "Forbidden", "no"))
            },
            |_, _, _| {},
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let calls = AtomicU32::new(0);
        let r: Result<Option<()>, _> = with_retries(
            3,
            MS,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(api(500, "InternalError", "boom"))
            },
            |_, _, _| {},
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn already_exists_after_a_lost_answer_is_success() {
        let calls = AtomicU32::new(0);
        let r: Result<Option<()>, _> = with_retries(
            3,
            MS,
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(api(504, "Timeout", "the request timed out")),
                    _ => Err(api(409, "AlreadyExists", "exists")),
                }
            },
            |_, _, _| {},
        )
        .await;
        assert_eq!(r.unwrap(), None);
        // On the first try, AlreadyExists is an error (someone else's object).
        let r: Result<Option<()>, _> = with_retries(
            3,
            MS,
            || async { Err(api(409, "AlreadyExists", "exists")) },
            |_, _, _| {},
        )
        .await;
        assert!(r.is_err());
    }
}
