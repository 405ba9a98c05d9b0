use std::process::ExitCode;

use clap::Parser;
use claude_k8s::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    claude_k8s::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("claude-k8s: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve => match claude_k8s::serve::serve(cli.settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("claude-k8s serve: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Doctor {
                kubeconfig,
                namespace,
                json,
            } => claude_k8s::cli::doctor::run(&cli.settings, kubeconfig, namespace, json).await,
            Command::Jobs {
                kubeconfig,
                namespace,
            } => claude_k8s::cli::ops::jobs(kubeconfig, namespace).await,
            Command::Logs {
                job,
                kubeconfig,
                namespace,
                follow,
            } => {
                claude_k8s::cli::ops::logs(&cli.settings, kubeconfig, namespace, job, follow).await
            }
            Command::Gc {
                kubeconfig,
                namespace,
                dry_run,
            } => claude_k8s::cli::ops::gc(kubeconfig, namespace, dry_run).await,
        }
    })
}
