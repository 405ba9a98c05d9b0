//! Issue 5 on the real stage: runs that fail before, around or inside the agent end with a distinct
//! `errorCode`, a message in words with a hint, within a bounded time, and leave no Job or pod behind.
//!
//! Time limits are shortened for the serve process through its environment (`CLAUDE_K8S_START_GRACE_SEC`,
//! `CLAUDE_K8S_PENDING_TIMEOUT_SEC`, `CLAUDE_K8S_RESULT_GRACE_SEC`, `CLAUDE_K8S_POD_CREATE_TIMEOUT_SEC`), so the
//! suite stays quick.

mod claude;
mod interrupted;
mod start;
