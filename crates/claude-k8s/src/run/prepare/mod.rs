//! Prepare a run: its config, the Paperclip pod's facts (self-introspection), the prompt bundle and MCP servers,
//! and the session record that gates a resume.

pub mod capabilities;
pub mod config;
pub mod introspect;
pub mod mcp;
pub mod pod_facts;
pub mod prompt_bundle;
pub mod session_record;
