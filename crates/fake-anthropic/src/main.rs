//! `fake-anthropic`: the scripted fake Messages API as a process, for shell and Node tests.
//!
//! Prints the bound URL (`http://127.0.0.1:PORT`) as its first stdout line, optionally writes the
//! port to `--port-file`, logs to stderr (warnings such as unknown paths by default;
//! `RUST_LOG=fake_anthropic=info` or `debug` for every request), and runs until SIGINT or SIGTERM.

use std::path::PathBuf;

use clap::Parser;
use fake_anthropic::FakeAnthropic;
use tokio::io::AsyncWriteExt;

#[derive(Parser, Debug)]
#[command(
    name = "fake-anthropic",
    version,
    about = "A scripted fake of the Anthropic Messages API"
)]
struct Args {
    /// Address to bind; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Write the bound port (just the number and a newline) to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Markers used when a prompt carries none, e.g. "[[fake:text hi]]".
    #[arg(long)]
    script: Option<String>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    // Handle the signals before anyone can learn the port and send one.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let fake = FakeAnthropic::start(&args.listen).await?;
    fake.set_default_script(args.script.as_deref());

    let mut stdout = tokio::io::stdout();
    stdout
        .write_all(format!("{}\n", fake.url()).as_bytes())
        .await?;
    stdout.flush().await?;

    if let Some(path) = &args.port_file {
        // Write then rename, so a reader never sees a half-written file.
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, format!("{}\n", fake.addr().port())).await?;
        tokio::fs::rename(&tmp, path).await?;
    }

    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    fake.shutdown().await;
    Ok(())
}
