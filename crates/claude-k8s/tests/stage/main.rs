//! End-to-end tests on the real stage: a real Kubernetes (apiserver, controller-manager, scheduler, kubelet on
//! dockerd), the real Claude Code CLI in the agent image, and the project's fake Messages API on 127.0.0.1.
//!
//! They need `make cluster-up` first and are `#[ignore]`d otherwise; `make test-cluster` runs them
//! (test/stage/run-cluster-tests.sh): every module two at a time (each run is a pod on the one node), except
//! `resilience::` (one of its tests restarts the API server) and `cli::` (`gc` deletes every finished Job in the
//! namespace), each one test at a time; `sim_node::` runs pods on the simulated node beside the real one
//! (crates/sim-node). Every run goes through the real `claude-k8s serve` binary as the limited user (least
//! privilege, deploy/role.yaml), with the stand-in "paperclip" pod as the self-introspected pod. A test stands up
//! its [`support::World`] and ends with [`support::World::finish`]: no Job, pod, Lease or run Secret of its agents
//! is left.

mod capabilities;
mod cli;
mod config;
mod containment;
mod failures;
mod isolation;
mod pipeline;
mod resilience;
mod sim_node;
mod support;
