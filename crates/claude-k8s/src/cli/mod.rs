//! Command line: `serve` for the JS shim, and operator commands.

pub mod checks;
pub mod doctor;
pub mod log_mask;
pub mod ops;
pub mod permissions;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "claude-k8s",
    version,
    about = "Runs Paperclip's Claude Code agent heartbeats as Kubernetes Jobs"
)]
pub struct Cli {
    /// Timing knobs and the pod to introspect, from the environment.
    #[command(flatten)]
    pub settings: crate::settings::Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the JS shim: JSON Lines on stdin/stdout (docs/protocol.md). Diagnostics go to stderr.
    Serve,
    /// Check the cluster the way testEnvironment does: API, namespace, RBAC, PVC, image, credentials.
    Doctor {
        /// Path to a kubeconfig (default: in-cluster, else KUBECONFIG)
        #[arg(long)]
        kubeconfig: Option<String>,
        /// Namespace the Jobs run in (default: the Paperclip pod's)
        #[arg(long)]
        namespace: Option<String>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// List the adapter's Jobs with their state, agent and run.
    Jobs {
        #[arg(long)]
        kubeconfig: Option<String>,
        /// Only this namespace (default: all the credentials can list)
        #[arg(long, short)]
        namespace: Option<String>,
    },
    /// Print the Claude transcript of a run, by Job name or run id.
    Logs {
        /// Job name or Paperclip run id
        job: String,
        #[arg(long)]
        kubeconfig: Option<String>,
        #[arg(long, short, default_value = "paperclip")]
        namespace: String,
        /// Keep following while the run is going
        #[arg(long, short)]
        follow: bool,
    },
    /// Delete finished Jobs of the adapter and run Secrets whose Job is gone.
    Gc {
        #[arg(long)]
        kubeconfig: Option<String>,
        #[arg(long, short, default_value = "paperclip")]
        namespace: String,
        /// Only print what would be deleted
        #[arg(long)]
        dry_run: bool,
    },
}
