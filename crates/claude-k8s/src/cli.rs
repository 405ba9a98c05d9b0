//! Command line: `serve` for the JS shim, and operator commands.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "claude-k8s",
    version,
    about = "Runs Paperclip's Claude Code agent heartbeats as Kubernetes Jobs"
)]
pub struct Cli {
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
}
