//! Claim the agent: one Job per agent, adoption of an orphaned Job of the same work.

pub mod guard;
