//! The requests in flight ([`Registry`], bounded) and their supervision ([`spawn`]): every request gets exactly one
//! answer, also when its task panics (a bug), and what a panicked run had claimed in the cluster is removed, so
//! neither its caller nor its Job is left waiting for nobody.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::run::outcome::{ErrorCode, ExecutionResult, failure};
use crate::serve::sink::Sink;

/// How many ids of answered requests are remembered to refuse their reuse: ids are unique for the child's life
/// (the shim counts them up), and this many cover days of a busy server in a few MiB.
pub const REMEMBERED_IDS: usize = 100_000;

type Requests = Arc<Mutex<Ids>>;

#[derive(Default)]
struct Ids {
    /// In flight, by id (an execute with the token that cancels it).
    running: HashMap<String, Option<CancellationToken>>,
    /// Answered, oldest first.
    done: VecDeque<String>,
    done_set: HashSet<String>,
}

/// The requests that have no answer yet, and the ids of those that had theirs.
#[derive(Clone)]
pub struct Registry {
    requests: Requests,
    limit: usize,
}

/// Whether a request may start.
pub enum Admission {
    Admitted(Entry),
    /// A request with this id is in flight, or was answered.
    Duplicate {
        running: bool,
    },
    /// `limit` requests are in flight already.
    Full {
        limit: usize,
    },
}

/// A request's place in the [`Registry`], given up when it is dropped (its id stays used).
pub struct Entry {
    requests: Requests,
    id: String,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut ids = lock(&self.requests);
        ids.running.remove(&self.id);
        if ids.done_set.insert(self.id.clone()) {
            ids.done.push_back(self.id.clone());
        }
        if ids.done.len() > REMEMBERED_IDS
            && let Some(oldest) = ids.done.pop_front()
        {
            ids.done_set.remove(&oldest);
        }
    }
}

/// The lock, also after a panic elsewhere while it was held (the maps stay consistent: no code that can panic
/// runs while it is held).
fn lock(requests: &Requests) -> MutexGuard<'_, Ids> {
    requests.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub fn new(limit: usize) -> Self {
        Self {
            requests: Arc::default(),
            limit,
        }
    }

    pub fn admit(&self, id: &str, cancel: Option<CancellationToken>) -> Admission {
        let mut ids = lock(&self.requests);
        if ids.running.contains_key(id) {
            return Admission::Duplicate { running: true };
        }
        if ids.done_set.contains(id) {
            return Admission::Duplicate { running: false };
        }
        if ids.running.len() >= self.limit {
            return Admission::Full { limit: self.limit };
        }
        ids.running.insert(id.to_owned(), cancel);
        Admission::Admitted(Entry {
            requests: self.requests.clone(),
            id: id.to_owned(),
        })
    }

    /// The token that cancels the execute `id`, if it is in flight.
    pub fn cancel_token(&self, id: &str) -> Option<CancellationToken> {
        lock(&self.requests).running.get(id).cloned().flatten()
    }

    /// How many requests are in flight.
    pub fn len(&self) -> usize {
        lock(&self.requests).running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a request that failed inside serve is answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// An execute: a failed AdapterExecutionResult, `claude_k8s_internal_error`.
    FailedResult,
    /// Anything else: an `error`, `internal_error`.
    Error,
}

/// Runs `request` as a task of its own and makes sure its caller gets an answer: if the task ends without one (it
/// panicked), its supervisor removes the Job the run had claimed and answers as `answer` says. The request's id
/// stays taken until then.
pub fn spawn(
    request: impl Future<Output = ()> + Send + 'static,
    sink: Sink,
    entry: Entry,
    answer: Answer,
) {
    let task = tokio::spawn(request);
    tokio::spawn(async move {
        let ended = task.await;
        if !sink.answered() {
            let why = match ended {
                Err(e) if e.is_panic() => format!("it panicked: {}", panic_text(e.into_panic())),
                Err(e) => format!("its task ended: {e}"),
                Ok(()) => "it ended without a result".to_owned(),
            };
            tracing::error!(id = %sink.id(), "request failed internally: {why}");
            answer_failed(&sink, &why, answer).await;
        }
        drop(entry);
    });
}

/// The answer of a request that failed inside serve, after removing what its run had claimed.
async fn answer_failed(sink: &Sink, why: &str, answer: Answer) {
    let mut message = format!("claude-k8s failed internally (a bug, please report it): {why}");
    if let Some(claimed) = sink.take_claimed() {
        let job = claimed.job().to_owned();
        message += &match claimed.remove().await {
            Ok(()) => format!("; its Job {job} was stopped and deleted"),
            Err(e) => format!("; its Job {job} could not be deleted ({e}): delete it by hand"),
        };
    }
    match answer {
        Answer::FailedResult => sink.result(ExecutionResult::from(failure(
            ErrorCode::InternalError,
            message,
        ))),
        Answer::Error => sink.error("internal_error", &message),
    }
}

/// The message a panic carried (a `&str` or a `String`, as `panic!` makes them).
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::outbox;
    use serde_json::Value;

    async fn answers(lines: outbox::Lines) -> Vec<Value> {
        let mut out = Vec::new();
        outbox::write(lines, &mut out).await;
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn settled(registry: &Registry) {
        for _ in 0..500 {
            if registry.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the registry kept {} requests", registry.len());
    }

    #[tokio::test]
    async fn a_panicking_run_gets_one_failed_result_and_frees_its_id_and_others_go_on() {
        let (out, lines) = outbox::outbox(1 << 20);
        let registry = Registry::new(8);
        let admit = |id: &str| match registry.admit(id, Some(CancellationToken::new())) {
            Admission::Admitted(entry) => entry,
            _ => panic!("{id} refused"),
        };
        let (bad, good) = (
            Sink::new("bad".into(), out.clone()),
            Sink::new("good".into(), out.clone()),
        );
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        spawn(
            {
                let bad = bad.clone();
                async move {
                    bad.progress("before the panic");
                    // The bug of a `timeoutSec` of 1e300 before the numeric fields were bounded.
                    let timeout = std::time::Duration::from_secs(u64::MAX);
                    let _deadline = std::time::Instant::now() + timeout;
                }
            },
            bad,
            admit("bad"),
            Answer::FailedResult,
        );
        spawn(
            {
                let good = good.clone();
                async move {
                    let _ = release_rx.await;
                    good.result(serde_json::json!({"exitCode": 0}));
                }
            },
            good,
            admit("good"),
            Answer::FailedResult,
        );
        // The panicked run's id is free again once it is answered; the other run is unaffected.
        for _ in 0..500 {
            if registry.len() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(registry.len(), 1);
        assert!(matches!(
            registry.admit("bad", None),
            Admission::Duplicate { running: false }
        ));
        assert!(matches!(
            registry.admit("good", None),
            Admission::Duplicate { running: true }
        ));
        release_tx.send(()).unwrap();
        settled(&registry).await;
        drop(out);
        let got = answers(lines).await;
        let of = |id: &str| {
            got.iter()
                .filter(|m| m["id"] == id)
                .cloned()
                .collect::<Vec<_>>()
        };
        let bad = of("bad");
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0]["type"], "log");
        assert_eq!(bad[1]["type"], "result");
        assert_eq!(bad[1]["result"]["errorCode"], "claude_k8s_internal_error");
        let message = bad[1]["result"]["errorMessage"].as_str().unwrap();
        assert!(
            message.contains("it panicked: overflow when adding duration to instant"),
            "{message}"
        );
        assert_eq!(
            of("good"),
            vec![serde_json::json!({"type": "result", "id": "good", "result": {"exitCode": 0}})]
        );
    }

    #[tokio::test]
    async fn other_requests_get_an_error_and_a_result_is_never_sent_twice() {
        let (out, lines) = outbox::outbox(1 << 20);
        let registry = Registry::new(2);
        let Admission::Admitted(entry) = registry.admit("t", None) else {
            panic!()
        };
        let sink = Sink::new("t".into(), out.clone());
        spawn(
            async { panic!("test_environment bug") },
            sink,
            entry,
            Answer::Error,
        );
        let Admission::Admitted(entry) = registry.admit("twice", None) else {
            panic!()
        };
        let sink = Sink::new("twice".into(), out.clone());
        spawn(
            {
                let sink = sink.clone();
                async move {
                    sink.result(serde_json::json!({"n": 1}));
                    sink.result(serde_json::json!({"n": 2}));
                    sink.progress("after the result");
                    panic!("after the result");
                }
            },
            sink,
            entry,
            Answer::FailedResult,
        );
        settled(&registry).await;
        drop(out);
        let got = answers(lines).await;
        assert_eq!(got.len(), 2, "{got:?}");
        let t = got.iter().find(|m| m["id"] == "t").unwrap();
        assert_eq!(
            (t["type"].as_str(), t["code"].as_str()),
            (Some("error"), Some("internal_error"))
        );
        let twice = got.iter().find(|m| m["id"] == "twice").unwrap();
        assert_eq!(twice["result"]["n"], 1);
    }

    #[test]
    fn the_registry_refuses_duplicates_and_requests_past_its_limit() {
        let registry = Registry::new(2);
        let a = registry.admit("a", Some(CancellationToken::new()));
        let b = registry.admit("b", None);
        assert!(matches!(
            registry.admit("a", None),
            Admission::Duplicate { running: true }
        ));
        assert!(matches!(
            registry.admit("c", None),
            Admission::Full { limit: 2 }
        ));
        assert!(registry.cancel_token("a").is_some());
        assert!(registry.cancel_token("b").is_none(), "not an execute");
        drop(a);
        assert!(registry.cancel_token("a").is_none(), "answered");
        assert!(matches!(
            registry.admit("a", None),
            Admission::Duplicate { running: false }
        ));
        assert!(matches!(registry.admit("c", None), Admission::Admitted(_)));
        drop(b);
    }

    #[test]
    fn only_the_most_recent_answered_ids_are_remembered() {
        let registry = Registry::new(1);
        for i in 0..=REMEMBERED_IDS {
            let Admission::Admitted(entry) = registry.admit(&i.to_string(), None) else {
                panic!("{i} refused")
            };
            drop(entry);
        }
        assert!(matches!(
            registry.admit("1", None),
            Admission::Duplicate { running: false }
        ));
        assert!(
            matches!(registry.admit("0", None), Admission::Admitted(_)),
            "the oldest is forgotten"
        );
    }
}
