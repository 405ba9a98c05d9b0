//! Follow a run: the pod and Job events, the claude container's log lines, ticks and a cancel feed the state
//! machine of [`machine`], and [`follow`] performs what it asks. Watch, don't poll: the events come from watches
//! ([`watch_run`]) through a plain stream the driver does not own, so one watch can serve many runs.

mod io;
pub mod logs;
pub mod machine;
pub mod pod_state;
pub mod stream_json;

use futures::{Stream, StreamExt, future, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::k8s::events;
use crate::run::cleanup;
use crate::run::launch::JobRef;
use crate::run::prepare::Prepared;
use machine::{Action, Follow, Input};
pub use machine::{Ending, Limits};
use stream_json::Transcript;

/// The pod watch (the Job's own pods, by uid) and the Job watch of one run, as the machine's inputs.
pub fn watch_run(
    run: &Prepared<'_>,
    job: &JobRef,
) -> impl Stream<Item = Input> + Send + Unpin + use<> {
    let pods = watcher::watcher(
        run.api::<Pod>(),
        watcher::Config::default().labels(&job.pods),
    )
    .default_backoff()
    .filter_map(|event| {
        future::ready(match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => Some(Input::Pod(Box::new(pod))),
            Ok(Event::Delete(_)) => Some(Input::PodGone),
            Ok(Event::Init | Event::InitDone) => None,
            Err(e) => {
                tracing::debug!(error = %e, "pod watch error; the watcher retries");
                None
            }
        })
    })
    .chain(stream::once(future::ready(Input::PodWatchEnded)));
    // kube's watch_object says `None` once the Job is gone, also when a Delete event was missed (the Job is not
    // in a relist); the backoff keeps a watch that cannot reconnect (an API server restarting) from retrying in
    // a tight loop.
    let jobs = watcher::watch_object(run.api::<Job>(), &job.name)
        .default_backoff()
        .filter_map(|event| {
            future::ready(match event {
                Ok(Some(job)) => Some(Input::Job(Box::new(job))),
                Ok(None) => Some(Input::JobGone),
                Err(e) => {
                    tracing::debug!(error = %e, "job watch error; the watcher retries");
                    None
                }
            })
        });
    stream::select(pods.boxed(), jobs.boxed())
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
    let (log_end_tx, log_end_rx) = watch::channel(false);
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
                line = next_line(&mut lines) => match line {
                    Some(line) => Input::Line(line),
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
                    log_task = Some(tokio::spawn(logs::follow(
                        run.api(),
                        pod,
                        tx,
                        log_end_rx.clone(),
                        run.settings.log_silence(),
                        max_line,
                    )));
                }
                Action::EndLog => {
                    let _ = log_end_tx.send(true);
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

async fn next_line(lines: &mut Option<logs::Lines>) -> Option<String> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
