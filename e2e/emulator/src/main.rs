//! `kube-emulator --listen 127.0.0.1:0 --kubeconfig-out PATH [--issuer URL]`

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kube_emulator::{Emulator, EmulatorConfig};

/// A Kubernetes API emulator for tests.
#[derive(Parser, Debug)]
#[command(name = "kube-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write a kubeconfig for the emulator once it is listening.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Service-account issuer served in the OIDC discovery document.
    #[arg(long, default_value = "https://oidc.emulator.local/")]
    issuer: String,
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let emulator = Emulator::start(EmulatorConfig {
        issuer: args.issuer,
        bind: args.listen,
        ..Default::default()
    })
    .await?;
    if let Some(path) = &args.kubeconfig_out {
        emulator
            .write_kubeconfig(path)
            .with_context(|| format!("writing kubeconfig to {}", path.display()))?;
        tracing::info!(path = %path.display(), "kubeconfig written");
    }
    tracing::info!(url = %emulator.url(), "kube-emulator ready");
    terminated().await;
    tracing::info!("shutting down");
    emulator.shutdown().await;
    Ok(())
}
