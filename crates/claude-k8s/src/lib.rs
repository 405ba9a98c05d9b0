//! `claude-k8s`: runs each Claude Code heartbeat of a Paperclip agent as an isolated Kubernetes Job.
//!
//! A run is one pipeline (composed in [`run`]): **prepare** (config, self-introspection, prompt bundle) →
//! **plan** (pure: config + the Paperclip pod's facts → Job manifest) → **claim** (one Job per agent) →
//! **launch** → **follow** (pod watch + Job watch + log stream as one event loop) → **outcome** (pure: container
//! state + Claude's stream-json → Paperclip's result) → **cleanup**. The binary serves the npm shim over stdio
//! ([`serve`], `docs/protocol.md`) and doubles as an operator CLI ([`cli`]); [`k8s`] holds what every part shares
//! about the cluster (clients, API errors, events, labels).

pub mod cli;
pub mod confined;
pub mod k8s;
pub mod policy;
pub mod run;
pub mod serve;
pub mod settings;
pub mod telemetry;

// Stable paths for the cluster test suites.
pub use cli::checks;
pub use k8s::labels;
