//! `claude-k8s serve`: the long-lived child of the JS shim, multiplexing runs over JSON Lines on stdio.
//!
//! One reader (stdin), one writer task that alone owns stdout (so lines never interleave), and a task per
//! request. `docs/protocol.md` is the normative description; [`protocol`] holds the wire types.

pub mod mask;
pub mod protocol;
pub mod sink;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::run::{self, Services};
use crate::serve::sink::Sink;
use protocol::{MAX_LINE_BYTES, Message, PROTOCOL_VERSION, Request};

/// How long a shutdown waits for the cleanups of finished runs.
const CLEANUP_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Running executes by id, so a `cancel` finds its run.
type Registry = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// Serves until `shutdown` or stdin EOF. In-flight runs are abandoned without touching their Jobs: a server
/// shutdown is not a cancel, and the Jobs are adopted by the next run.
pub async fn serve(settings: crate::settings::Settings) -> std::io::Result<()> {
    // Before the handshake: a bad policy is a startup error (the shim reports the exit with these words).
    let policy = settings.policy().map_err(std::io::Error::other)?;
    tracing::info!("{}", policy.summary());
    let (tx, rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(write_messages(rx));
    let _ = tx.send(Message::Hello {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION"),
    });

    let services = Arc::new(Services {
        settings,
        policy,
        own_env: crate::run::prepare::secrets::own_env(),
        ..Services::default()
    });
    let registry: Registry = Arc::default();
    let mut lines = FramedRead::new(
        tokio::io::stdin(),
        LinesCodec::new_with_max_length(MAX_LINE_BYTES),
    );
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(line) => line,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                let _ = tx.send(Message::Error {
                    id: None,
                    code: "line_too_long".into(),
                    message: format!("a request line exceeded {MAX_LINE_BYTES} bytes"),
                });
                continue;
            }
            Err(LinesCodecError::Io(e)) => {
                tracing::error!(error = %e, "reading stdin failed");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Shutdown) => break,
            Ok(request) => dispatch(request, &services, &registry, &tx),
            Err(e) => {
                let (id, known) = protocol::salvage(&line);
                let code = if known {
                    "bad_request"
                } else {
                    "unknown_request"
                };
                let _ = tx.send(Message::Error {
                    id,
                    code: code.into(),
                    message: e.to_string(),
                });
            }
        }
    }
    tracing::info!(
        in_flight = registry.lock().map(|r| r.len()).unwrap_or(0),
        "serve stopping; running Jobs are left for adoption"
    );
    // Finished runs may still be removing their Job's pods: give that a bounded moment (runs still going are left
    // for adoption, not waited for).
    services.cleanups.close();
    if tokio::time::timeout(CLEANUP_WAIT, services.cleanups.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "cleanups still running at shutdown; ttlSecondsAfterFinished removes what is left"
        );
    }
    drop(tx);
    // Flush what is already queued (results sent just before shutdown), then exit without waiting for runs.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    Ok(())
}

fn dispatch(
    request: Request,
    services: &Arc<Services>,
    registry: &Registry,
    tx: &mpsc::UnboundedSender<Message>,
) {
    match request {
        Request::Execute { id, params } => {
            let token = CancellationToken::new();
            {
                let mut runs = registry.lock().expect("registry lock");
                if runs.contains_key(&id) {
                    let _ = tx.send(Message::Error {
                        id: Some(id),
                        code: "duplicate_id".into(),
                        message: "an execute with this id is still running".into(),
                    });
                    return;
                }
                runs.insert(id.clone(), token.clone());
            }
            let (services, registry, sink) = (
                services.clone(),
                registry.clone(),
                Sink::new(id.clone(), tx.clone()),
            );
            // The run's span covers every await of the run (a guard held across awaits would not).
            let span = tracing::info_span!("execute", id = %id, run = %params.run_id, agent = %params.agent.id);
            tokio::spawn(
                async move {
                    run::execute(&services, *params, &sink, token).await;
                    registry.lock().expect("registry lock").remove(&id);
                }
                .instrument(span),
            );
        }
        Request::Cancel { id, reason } => {
            if let Some(token) = registry.lock().expect("registry lock").get(&id) {
                tracing::info!(id = %id, reason = ?reason, "cancel requested");
                token.cancel();
            }
        }
        Request::TestEnvironment { id, params } => {
            let (services, sink) = (services.clone(), Sink::new(id, tx.clone()));
            tokio::spawn(async move {
                let result = crate::cli::checks::test_environment(
                    &services.clients,
                    &services.self_pod,
                    &services.settings,
                    &services.policy,
                    &params,
                )
                .await;
                sink.result(serde_json::to_value(result).unwrap_or_default());
            });
        }
        Request::Shutdown => {}
    }
}

async fn write_messages(mut rx: mpsc::UnboundedReceiver<Message>) {
    let mut stdout = tokio::io::stdout();
    while let Some(message) = rx.recv().await {
        let mut line = match serde_json::to_vec(&message) {
            Ok(line) => line,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a message");
                continue;
            }
        };
        line.push(b'\n');
        if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
            // The host is gone; nothing can be delivered any more.
            break;
        }
    }
}
