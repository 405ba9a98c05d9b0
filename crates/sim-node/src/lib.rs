//! `sim-node`: a simulated Kubernetes node for scale tests. It registers a Node beside the real ones (tainted, so
//! only pods that tolerate it land there), keeps it Ready with Lease renewals, plays each pod bound to it from a
//! recorded Claude Code transcript (pod phases and container states through `pods/status`, like a kubelet), and
//! serves the pods' logs to the API server on the kubelet API. The real API server, scheduler and Job
//! controller do everything else. See test/stage/README.md ("The simulated node").

pub mod logs;
pub mod node;
pub mod pods;
pub mod script;
pub mod server;
pub mod status;
