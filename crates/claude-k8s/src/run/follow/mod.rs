//! Follow a run: its pod's state, the claude container's log, Claude's stream-json.

pub mod logs;
pub mod pod_state;
pub mod stream_json;
