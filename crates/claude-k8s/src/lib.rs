//! `claude-k8s`: runs each Claude Code heartbeat of a Paperclip agent as an isolated Kubernetes Job.
//!
//! A run is one pipeline (composed in [`run`]): **plan** (pure: config + the Paperclip pod's facts → Job
//! manifest) → **guard** (one Job per agent) → **launch** → **follow** (pod watch + Job watch + log stream as one
//! event loop) → **outcome** (pure: container state + Claude's stream-json → Paperclip's result) → **cleanup**.
//! The binary serves the npm shim over stdio ([`serve`], `docs/protocol.md`) and doubles as an operator CLI.
//!
//! Pure modules (no I/O, unit-tested without a cluster): [`config`], [`labels`], [`pod_facts`], [`invocation`],
//! [`plan`], [`pod_state`], [`stream_json`], [`outcome`], [`mcp`], [`serve::protocol`]. [`capabilities`] and
//! [`prompt_bundle`] write the run's prompt bundle onto the shared volume.

pub mod capabilities;
pub mod checks;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod events;
pub mod guard;
pub mod introspect;
pub mod invocation;
pub mod kube_ctx;
pub mod kube_errors;
pub mod labels;
pub mod logs;
pub mod mask;
pub mod mcp;
pub mod ops;
pub mod outcome;
pub mod plan;
pub mod pod_facts;
pub mod pod_state;
pub mod prompt_bundle;
pub mod retry_hint;
pub mod run;
pub mod serve;
pub mod session_record;
pub mod sink;
pub mod stop;
pub mod stream_json;
pub mod telemetry;
