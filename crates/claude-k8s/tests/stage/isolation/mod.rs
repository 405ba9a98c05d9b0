//! Issue 14 on the real stage: a hostile adapterConfig and a hostile agent (through the real claude's Bash tool) get
//! nothing they should not have.
//!
//! * [`refusals`]: each hostile config under the secure default policy fails with `policy_denied`, names the field
//!   and the setting that would allow it, and creates nothing;
//! * [`secrets`]: what an agent prints of its inherited key, its encodings and a config secret leaks nowhere;
//! * [`files`]: a symlink the agent plants in its instructions folder, and skill runtime names that climb, read and
//!   write nothing outside.
//! * [`volume`]: the run's view of the shared volume: nothing of Paperclip's instance root, another agent's
//!   workspace or home; its own, and `--resume`, work; the whole-volume opt-out is a warning.
//!
//! The serve process runs on the host, standing in for the Paperclip pod: it is given that pod's inherited
//! `ANTHROPIC_API_KEY` in its own environment, as the real pod has it, so the adapter can resolve the
//! `secretKeyRef` it sees in the pod spec.

mod files;
mod refusals;
mod secrets;
mod volume;

use crate::support::{RunRecord, World};

/// The stand-in Paperclip pod's `ANTHROPIC_API_KEY` (Secret `paperclip-secrets`, test/stage/cluster/config.yaml).
const STAGE_API_KEY: &str = "sk-ant-test-stage-key";

/// A world whose serve process holds the stand-in pod's inherited key in its own environment (and `extra`), with
/// the stage's policy.
async fn world_with_the_pods_key(extra: &[(&str, &str)]) -> World {
    let mut env = vec![("ANTHROPIC_API_KEY", STAGE_API_KEY)];
    env.extend_from_slice(extra);
    World::start_with_env(&env).await
}

/// Everything a run sent back: its log, result and meta.
fn everything(run: &RunRecord) -> String {
    format!("{}\n{}\n{:?}", run.log_text(), run.result, run.meta)
}
