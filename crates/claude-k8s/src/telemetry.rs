//! Diagnostics go to stderr only (stdout belongs to the protocol), filtered by `CLAUDE_K8S_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Colour only on a terminal: under the shim, stderr lines are forwarded into Paperclip's log as text.
pub fn init() {
    let filter =
        EnvFilter::try_from_env("CLAUDE_K8S_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
