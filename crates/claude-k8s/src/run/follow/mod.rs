//! Follow a run: the pod and Job events, the claude container's log lines, ticks and a cancel feed the state
//! machine of [`machine`], and [`follow`] performs what it asks. Watch, don't poll: the events come from watches
//! ([`watch_run`]) through a plain stream the driver does not own, so one watch can serve many runs.

mod io;
pub mod logs;
pub mod machine;
pub mod pod_state;
pub mod stream_json;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::k8s::events;
use crate::k8s::watches::Change;
use crate::run::cleanup;
use crate::run::launch::JobRef;
use crate::run::prepare::Prepared;
use logs::{LogEvent, Tail};
use machine::{Action, Follow, Input};
pub use machine::{Ending, Limits};
use stream_json::Transcript;

/// The run's pod and Job events, as the machine's inputs: its share of the namespace's watches
/// ([`crate::k8s::watches`]), by the Job's uid, so the pods of an earlier Job of the same name are never taken for
/// this one's. The shared watches never end; they reconnect by themselves.
pub fn watch_run(
    run: &Prepared<'_>,
    job: &JobRef,
) -> impl Stream<Item = Input> + Send + Unpin + use<> {
    let pods = run
        .watches
        .pods
        .subscribe(&job.uid)
        .map(|change| match change {
            Change::Applied(pod) => Input::Pod(Box::new((*pod).clone())),
            Change::Deleted(_) => Input::PodGone,
        });
    let jobs = run
        .watches
        .jobs
        .subscribe(&job.uid)
        .map(|change| match change {
            Change::Applied(job) => Input::Job(Box::new((*job).clone())),
            Change::Deleted(_) => Input::JobGone,
        });
    stream::select(pods, jobs)
}

/// Follows the run's Job until the machine finishes: `cluster` carries its pod and Job events.
pub async fn follow(
    run: &Prepared<'_>,
    limits: Limits,
    job: &JobRef,
    mut cluster: impl Stream<Item = Input> + Unpin,
    cancel: &CancellationToken,
) -> (Ending, Transcript) {
    let mut machine = Follow::new(&job.name, limits, std::time::Instant::now());
    let mut lines: Option<logs::Lines> = None;
    let mut log_task: Option<tokio::task::JoinHandle<u64>> = None;
    let (tail_tx, tail_rx) = watch::channel(Tail::Follow);
    let mut cancel_seen = false;
    let mut answers = Vec::new();
    loop {
        let input = match answers.pop() {
            Some(answer) => answer,
            None => tokio::select! {
                _ = cancel.cancelled(), if !cancel_seen => {
                    cancel_seen = true;
                    Input::Cancel
                }
                _ = sleep_until(machine.next_deadline()) => Input::Tick,
                Some(input) = cluster.next() => input,
                event = next_event(&mut lines) => match event {
                    Some(LogEvent::Line(line)) => Input::Line(line),
                    Some(LogEvent::Exit(code)) => Input::ExitLine(code),
                    Some(LogEvent::ProbeEnded) => Input::ProbeEnded,
                    None => {
                        lines = None;
                        Input::LogEnded
                    }
                },
            },
        };
        for action in machine.step(input, std::time::Instant::now()) {
            match action {
                Action::Forward(line) => run.sink.stdout_line(&line),
                Action::Progress(text) => run.sink.progress(&text),
                Action::Warn(text) => run.sink.warn(&text),
                Action::FollowLog(pod) => {
                    let max_line = run.settings.max_line_bytes();
                    let (tx, rx) = logs::channel(max_line, run.sink.outbox().clone());
                    lines = Some(rx);
                    log_task = Some(tokio::spawn(logs::follow_run(
                        run.api(),
                        pod,
                        tx,
                        tail_rx.clone(),
                        run.settings.log_silence(),
                        max_line,
                    )));
                }
                Action::EndLog => {
                    tail_tx.send_if_modified(|t| advance(t, Tail::Drain));
                }
                Action::ReadTail => {
                    tail_tx.send_if_modified(|t| advance(t, Tail::Now));
                }
                Action::ProbeExit => {
                    tail_tx.send_if_modified(|t| advance(t, Tail::Probe));
                }
                Action::AbortLog => {
                    if let Some(task) = log_task.take() {
                        task.abort();
                    }
                }
                Action::StopJob => cleanup::remove_job(run, &job.name, None).await,
                Action::FetchEvents { kind, name } => answers.push(Input::Events(
                    events::latest_warning(&run.kube.client, &run.namespace, kind, &name).await,
                )),
                Action::LookUpJob => {
                    let deleted = match run.api::<Job>().get_opt(&job.name).await {
                        Ok(None) => true,
                        Ok(Some(j)) => j.metadata.deletion_timestamp.is_some(),
                        Err(_) => false,
                    };
                    answers.push(Input::JobLookedUp { deleted });
                }
                Action::Finish(ending) => return (ending, machine.into_transcript()),
            }
        }
    }
}

/// Moves the follower's [`Tail`] on to `to`, never back (follow → probe → drain → now); whether it changed.
fn advance(tail: &mut Tail, to: Tail) -> bool {
    let rank = |t: Tail| match t {
        Tail::Follow => 0,
        Tail::Probe => 1,
        Tail::Drain => 2,
        Tail::Now => 3,
    };
    let moved = rank(to) > rank(*tail);
    if moved {
        *tail = to;
    }
    moved
}

async fn next_event(lines: &mut Option<logs::Lines>) -> Option<LogEvent> {
    match lines {
        Some(rx) => rx.recv_event().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
