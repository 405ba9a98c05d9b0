//! `claude-k8s serve`: the long-lived child of the JS shim, multiplexing runs over JSON Lines on stdio.
//!
//! One reader (stdin), one writer task that alone owns stdout (so lines never interleave; [`outbox`]), and a
//! supervised task per request ([`supervise`]). `docs/protocol.md` is the normative description; [`protocol`]
//! holds the wire types. Nothing one request sends or does stops the others: a bad line is answered and skipped,
//! a run that panics is answered with a failed result, and the requests in flight and the output waiting for the
//! host are bounded.

pub mod framing;
pub mod mask;
pub mod outbox;
pub mod protocol;
pub mod sink;
pub mod supervise;

use std::sync::Arc;

use futures::StreamExt;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::run::{self, Services};
use crate::serve::outbox::Outbox;
use crate::serve::sink::Sink;
use framing::{Frame, RequestLines};
use protocol::{MAX_LINE_BYTES, Message, PROTOCOL_VERSION, Request};
use supervise::{Admission, Answer, Registry};

/// How long a shutdown waits for the cleanups of finished runs.
const CLEANUP_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Serves until `shutdown` or stdin EOF. In-flight runs are abandoned without touching their Jobs: a server
/// shutdown is not a cancel, and the Jobs are adopted by the next run.
pub async fn serve(settings: crate::settings::Settings) -> std::io::Result<()> {
    // Before the handshake: a bad policy is a startup error (the shim reports the exit with these words).
    let policy = settings.policy().map_err(std::io::Error::other)?;
    tracing::info!("{}", policy.summary());
    let (outbox, queued) = outbox::outbox(settings.output_queue_bytes());
    let writer = tokio::spawn(outbox::write(queued, tokio::io::stdout()));
    outbox.send(&Message::Hello {
        protocol: PROTOCOL_VERSION,
        version: env!("CARGO_PKG_VERSION"),
        bedrock: settings.bedrock(),
    });

    let registry = Registry::new(settings.max_runs());
    let services = Arc::new(Services {
        settings,
        policy,
        own_env: crate::run::prepare::secrets::own_env(),
        ..Services::default()
    });
    let mut lines = FramedRead::new(tokio::io::stdin(), RequestLines::new(MAX_LINE_BYTES));
    while let Some(frame) = lines.next().await {
        let line = match frame {
            Ok(Frame::Line(line)) => line,
            Ok(Frame::TooLong { head, len }) => {
                outbox.send(&protocol::salvage(&head).refusal(
                    "line_too_long",
                    format!(
                        "a request line of {len} bytes exceeded the limit of {MAX_LINE_BYTES} bytes and was skipped"
                    ),
                ));
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading stdin failed");
                break;
            }
        };
        if line.trim_ascii().is_empty() {
            continue;
        }
        match parse(&line) {
            Ok(Request::Shutdown) => break,
            Ok(request) => dispatch(request, &services, &registry, &outbox),
            Err(refused) => outbox.send(&refused),
        }
    }
    tracing::info!(
        in_flight = registry.len(),
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
    drop(outbox);
    // Flush what is already queued (results sent just before shutdown), then exit without waiting for runs.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    Ok(())
}

/// A request line, or the `error` that answers it: named by the line's id whenever it can be read, with the
/// problem in words.
pub fn parse(line: &[u8]) -> Result<Request, Message> {
    let text = std::str::from_utf8(line).map_err(|e| {
        protocol::salvage(line).refusal(
            "bad_request",
            format!(
                "the request line is not UTF-8 (byte {} is 0x{:02x})",
                e.valid_up_to(),
                line[e.valid_up_to()]
            ),
        )
    })?;
    serde_json::from_str::<Request>(text).map_err(|e| {
        let salvaged = protocol::salvage(line);
        let is_json = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        let code = if salvaged.known(is_json) {
            "bad_request"
        } else {
            "unknown_request"
        };
        let message = match protocol::lone_surrogate(line) {
            Some(escape) => format!(
                "a lone UTF-16 surrogate escape `{escape}` (strings must be well-formed UTF-16: \
                 docs/protocol.md): {e}"
            ),
            None => e.to_string(),
        };
        salvaged.refusal(code, message)
    })
}

fn dispatch(request: Request, services: &Arc<Services>, registry: &Registry, outbox: &Outbox) {
    match request {
        Request::Execute { id, params } => {
            let token = CancellationToken::new();
            let Some(entry) = admit(registry, &id, Some(token.clone()), outbox) else {
                return;
            };
            let (services, sink) = (services.clone(), Sink::new(id.clone(), outbox.clone()));
            // The run's span covers every await of the run (a guard held across awaits would not).
            let span = tracing::info_span!("execute", id = %id, run = %params.run_id, agent = %params.agent.id);
            let run = {
                let sink = sink.clone();
                async move { run::execute(&services, *params, &sink, token).await }
            };
            supervise::spawn(run.instrument(span), sink, entry, Answer::FailedResult);
        }
        Request::Cancel { id, reason } => {
            if let Some(token) = registry.cancel_token(&id) {
                tracing::info!(id = %id, reason = ?reason, "cancel requested");
                token.cancel();
            }
        }
        Request::TestEnvironment { id, params } => {
            let Some(entry) = admit(registry, &id, None, outbox) else {
                return;
            };
            let (services, sink) = (services.clone(), Sink::new(id, outbox.clone()));
            let test = {
                let sink = sink.clone();
                async move {
                    let result = crate::cli::checks::test_environment(
                        &services.clients,
                        &services.self_pod,
                        &services.settings,
                        &services.policy,
                        &params,
                    )
                    .await;
                    sink.result(result);
                }
            };
            supervise::spawn(test, sink, entry, Answer::Error);
        }
        Request::Shutdown => {}
    }
}

/// Registers a request that will get a result; a duplicate id or one request too many is answered at once.
fn admit(
    registry: &Registry,
    id: &str,
    cancel: Option<CancellationToken>,
    outbox: &Outbox,
) -> Option<supervise::Entry> {
    let refused = match registry.admit(id, cancel) {
        Admission::Admitted(entry) => return Some(entry),
        Admission::Duplicate { .. } => (
            "duplicate_id",
            format!(
                "a request with id `{id}` was sent to this serve process already: ids are unique for the \
                 child's life"
            ),
        ),
        Admission::Full { limit } => (
            "too_many_runs",
            format!(
                "serve already runs {limit} requests (CLAUDE_K8S_MAX_RUNS); `{id}` was refused: retry once some \
                 have finished, or raise the limit"
            ),
        ),
    };
    outbox.send(&Message::Error {
        id: Some(id.to_owned()),
        code: refused.0.into(),
        message: refused.1,
    });
    None
}
