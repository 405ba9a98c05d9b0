//! Test support for the real stage: its facts and clients ([`Stage`]), a driver for the real `claude-k8s serve`
//! ([`Serve`], [`RunRecord`]), the agents' objects in the cluster, and one test's [`World`].

mod objects;
mod record;
mod serve;
mod stage;
mod world;

pub use objects::{agent_selector, the_pod, wait_until};
pub use record::RunRecord;
pub use serve::Serve;
pub use stage::{
    NAMESPACE, RUN_TOKEN, Stage, client_for, repo_root, short_id, stage_env, stage_policy, uuid,
};
pub use world::World;
