//! `sim-node`: runs one simulated node until SIGTERM or SIGINT. `test/stage/cluster.sh sim-node up` starts it on
//! the stage; see test/stage/README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use jiff::Timestamp;
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use sim_node::node::{self, NodeSpec};
use sim_node::pods::{Player, Registry};
use sim_node::script::{Defaults, Transcripts};
use sim_node::server;
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(
    name = "sim-node",
    version,
    about = "A simulated Kubernetes node that plays recorded Claude Code transcripts"
)]
struct Args {
    /// Kubeconfig to register and report with (default: KUBECONFIG, then in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The Node's name.
    #[arg(long, default_value = "sim-0")]
    node_name: String,
    /// The kubelet API's address (HTTPS); the Node's InternalIP and kubelet port are taken from it.
    #[arg(long, default_value = "127.0.0.1:10260")]
    listen: SocketAddr,
    /// PEM certificate (chain) of the kubelet API.
    #[arg(long)]
    tls_cert: PathBuf,
    /// PEM private key of the kubelet API.
    #[arg(long)]
    tls_key: PathBuf,
    /// Directory of recorded stream-json transcripts (`<name>.jsonl`), chosen per pod with SIM_TRANSCRIPT.
    #[arg(long)]
    transcripts: PathBuf,
    /// The transcript of pods that name none.
    #[arg(long, default_value = "text-reply")]
    default_transcript: String,
    /// Default milliseconds from a container's start to its first line (SIM_START_MS).
    #[arg(long, default_value_t = 500)]
    start_ms: u64,
    /// Default milliseconds between lines (SIM_LINE_MS).
    #[arg(long, default_value_t = 200)]
    line_ms: u64,
    /// Default milliseconds from the last line to the exit (SIM_EXIT_MS).
    #[arg(long, default_value_t = 100)]
    exit_ms: u64,
    /// How long every pod's init containers take, in milliseconds.
    #[arg(long, default_value_t = 100)]
    init_ms: u64,
    /// Pod capacity.
    #[arg(long, default_value_t = 2000)]
    pods: u32,
    /// CPU capacity (a Kubernetes quantity).
    #[arg(long, default_value = "64")]
    cpu: String,
    /// Memory capacity (a Kubernetes quantity).
    #[arg(long, default_value = "256Gi")]
    memory: String,
    /// Most status writes and deletions in flight at once.
    #[arg(long, default_value_t = 32)]
    max_writes: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIM_NODE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let transcripts = Transcripts::load(&args.transcripts)?;
    anyhow::ensure!(
        transcripts.0.contains_key(&args.default_transcript),
        "--default-transcript {:?} is not in {}",
        args.default_transcript,
        args.transcripts.display()
    );
    let tls = server::tls_config(&args.tls_cert, &args.tls_key)?;
    let listener = server::bind(args.listen).await?;
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc =
                Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    let client = Client::try_from(config)?;
    let version = client
        .apiserver_version()
        .await
        .context("reach the API server")?;

    let spec = NodeSpec {
        name: args.node_name.clone(),
        port: args.listen.port(),
        pods: args.pods,
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        version: version.git_version,
    };
    let since = Timestamp::now();
    let uid = node::register(&client, &spec, since).await?;
    tokio::spawn(node::keep_alive(client.clone(), spec.clone(), uid, since));

    let registry = Arc::new(Registry::default());
    tokio::spawn(server::serve(
        listener,
        tls,
        server::router(registry.clone()),
    ));
    let player = Arc::new(Player {
        client,
        node: args.node_name.clone(),
        transcripts,
        defaults: Defaults {
            transcript: args.default_transcript.clone(),
            start: Duration::from_millis(args.start_ms),
            line_gap: Duration::from_millis(args.line_ms),
            exit_after: Duration::from_millis(args.exit_ms),
        },
        init: Duration::from_millis(args.init_ms),
        writes: Arc::new(Semaphore::new(args.max_writes.max(1))),
        registry: registry.clone(),
    });
    let names = player
        .transcripts
        .0
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    tokio::spawn(player.run());
    tracing::info!(node = %args.node_name, kubelet = %args.listen, transcripts = %names, "simulated node Ready");

    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!(
        pods = registry.len(),
        "stopping (the Node object stays until `cluster.sh sim-node down`)"
    );
    Ok(())
}
