//! `fake-arm --listen 127.0.0.1:0 --url-out PATH`: serve the fake ARM + token endpoint until
//! SIGINT/SIGTERM. The URL is written to PATH atomically once the socket is bound, so a test
//! harness can start the process and poll for the file instead of guessing when it is ready.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use fake_arm::{FakeArm, write_url_file};

#[derive(Debug, Parser)]
#[command(
    name = "fake-arm",
    about = "Fake Azure Resource Manager (FICs) and Entra token endpoint"
)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the base URL (e.g. http://127.0.0.1:41234) to this file once listening.
    #[arg(long)]
    url_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let fake = FakeArm::start_on(args.listen).await?;
    let url = fake.url();
    match &args.url_out {
        Some(path) => write_url_file(path, &url)?,
        None => println!("{url}"),
    }
    shutdown_signal().await?;
    fake.shutdown().await
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
