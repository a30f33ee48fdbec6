//! `fake-arm --listen 127.0.0.1:0 --url-out PATH [--devops-url-out PATH] [--trusted-client-id ID]...
//! [--trusted-ca-file PEM]... [--insecure-issuer ISSUER=FETCH_BASE]...`: serve the fake ARM +
//! Entra token endpoint and the fake Azure DevOps Git endpoint until SIGINT/SIGTERM. The URLs
//! are written to the files atomically once the sockets are bound, so a test harness can start
//! the process and poll for the files instead of guessing when it is ready.
//!
//! The token endpoint verifies every client assertion (see the library docs); a caller whose
//! assertion is not a real token, such as an operator started with a token file of random
//! content, must be named with `--trusted-client-id`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::Parser;
use fake_arm::{FakeArm, write_url_file};

#[derive(Debug, Parser)]
#[command(
    name = "fake-arm",
    about = "Fake Azure Resource Manager (FICs), Entra token endpoint and Azure DevOps Git endpoint"
)]
struct Args {
    /// Address of the ARM + Entra listener; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the base URL (e.g. http://127.0.0.1:41234) to this file once listening.
    #[arg(long)]
    url_out: Option<PathBuf>,
    /// Address of the Azure DevOps listener; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    devops_listen: SocketAddr,
    /// Write the Azure DevOps base URL to this file once listening.
    #[arg(long)]
    devops_url_out: Option<PathBuf>,
    /// A client id whose client assertion is accepted without being verified (repeatable).
    #[arg(long = "trusted-client-id", value_name = "CLIENT_ID")]
    trusted_client_ids: Vec<String>,
    /// A PEM file of CA certificates trusted for https issuers (repeatable).
    #[arg(long = "trusted-ca-file", value_name = "PEM")]
    trusted_ca_files: Vec<PathBuf>,
    /// `ISSUER=FETCH_BASE`: fetch ISSUER's discovery document from FETCH_BASE, plain http
    /// allowed (repeatable).
    #[arg(long = "insecure-issuer", value_name = "ISSUER=FETCH_BASE")]
    insecure_issuers: Vec<String>,
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
    let fake = FakeArm::start_on_both(args.listen, args.devops_listen).await?;
    for client_id in &args.trusted_client_ids {
        fake.trust_client(client_id);
    }
    for path in &args.trusted_ca_files {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        fake.trust_issuer_ca_pem(&pem)
            .with_context(|| format!("{}", path.display()))?;
    }
    for pair in &args.insecure_issuers {
        // The issuer is a URL with a scheme, so split at the last '=' before the fetch base.
        let (issuer, base) = pair
            .rsplit_once('=')
            .ok_or_else(|| anyhow!("--insecure-issuer {pair}: expected ISSUER=FETCH_BASE"))?;
        fake.allow_insecure_issuer(issuer, base);
    }
    let url = fake.url();
    match &args.url_out {
        Some(path) => write_url_file(path, &url)?,
        None => println!("{url}"),
    }
    match &args.devops_url_out {
        Some(path) => write_url_file(path, &fake.devops_url())?,
        None => println!("{}", fake.devops_url()),
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
