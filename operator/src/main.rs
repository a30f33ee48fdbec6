//! Thin entry point: parse flags, wire the layers, run.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::FutureExt;
use kube::{
    Client, CustomResourceExt,
    runtime::events::{Recorder, Reporter},
};
use tenant_identity_crd::TenantIdentity;
use tenant_identity_operator::{
    azure::{ArmBackend, ArmConfig, arm_scope},
    backends::Backends,
    controller::{self, Probes, Services},
    http::{self, Liveness, Readiness},
    issuer::IssuerSource,
    leader::{self, LeaseConfig},
    metrics::Metrics,
    names::FIELD_MANAGER,
    plan::Settings,
    render::{self, RenderOptions},
    telemetry::{self, LogFormat},
    verify::{Verifier, VerifySettings},
};
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "tenant-identity-operator",
    version,
    about = "Microsoft Entra workload identity for vcluster tenants"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the TenantIdentity CustomResourceDefinition as YAML.
    Crd,
    /// Print, offline, every child object for the TenantIdentities in a file.
    Render(RenderArgs),
    /// Print the Kubernetes API access the operator needs, as ClusterRole rules (YAML).
    Rbac {
        /// Include what --require-namespace-grant needs.
        #[arg(long)]
        require_namespace_grant: bool,
        /// Include what verification needs (create on serviceaccounts/token), as `run --verify`
        /// does; `--verify=false` leaves it out.
        #[arg(
            long,
            default_value_t = true,
            action = clap::ArgAction::Set,
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "true"
        )]
        verify: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_bind_address: SocketAddr,
    /// Elect a leader through a Lease; only the leader reconciles.
    #[arg(long, env = "LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "tenant-identity-operator")]
    leader_election_lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// Entra tenant for TenantIdentities that do not set spec.azure.tenantId.
    #[arg(long, env = "AZURE_TENANT_ID")]
    azure_tenant_id: Option<String>,
    /// OIDC issuer for TenantIdentities that do not set spec.azure.issuer (else discovered).
    #[arg(long, env = "OIDC_ISSUER_URL")]
    oidc_issuer_url: Option<String>,
    /// Require the namespace annotation identity.tenancy.dev/allowed-client-ids to list the clientId.
    #[arg(long, env = "REQUIRE_NAMESPACE_GRANT")]
    require_namespace_grant: bool,
    /// Azure Resource Manager endpoint (sovereign clouds, tests).
    #[arg(
        long,
        env = "ARM_ENDPOINT",
        default_value = "https://management.azure.com"
    )]
    arm_endpoint: String,
    /// Entra authority host for the operator's own token exchange.
    #[arg(
        long,
        env = "AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com/"
    )]
    authority_host: String,
    /// api-version for Microsoft.ManagedIdentity federatedIdentityCredentials.
    #[arg(long, env = "ARM_API_VERSION", default_value = "2024-11-30")]
    arm_api_version: String,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Seconds a watch of the API server may keep failing before /healthz reports the process
    /// not alive (the kubelet then restarts it).
    #[arg(long, env = "WATCH_STALL_TIMEOUT_SECONDS", default_value_t = 600)]
    watch_stall_timeout_seconds: u64,
    /// Check each tenant's chain end to end (a TokenRequest exchanged at Entra per subject; the
    /// Flux identity at the git server) and report it in IdentityVerified / GitAccessVerified.
    /// `--verify=false` turns it off (and needs no create on serviceaccounts/token).
    #[arg(
        long,
        env = "VERIFY",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    verify: bool,
    /// How often a verified tenant is checked again (jittered by ±10 % per tenant).
    #[arg(long, env = "VERIFY_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    verify_interval: Duration,
    /// How long after a credential was written a refusal by Entra is reported as Verifying
    /// (Entra can take a minute or two to accept a new credential), not as a failure.
    #[arg(long, env = "VERIFY_GRACE", default_value = "3m", value_parser = humantime::parse_duration)]
    verify_grace: Duration,
    /// Checks in flight at once, across all tenants.
    #[arg(long, env = "VERIFY_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    verify_concurrency: u16,
    /// Reconciles in flight at once: bounds the load on the API server and the connections to it.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_reconciles: u16,
    /// Events for one TenantIdentity closer together than this start one reconcile, not several.
    #[arg(long, env = "RECONCILE_DEBOUNCE", default_value = "100ms", value_parser = humantime::parse_duration)]
    reconcile_debounce: Duration,
    /// Replaces the scheme and host of spec.git.url for the git access check only (proxies,
    /// sovereign clouds, tests), as --arm-endpoint and --authority-host do for ARM and Entra.
    #[arg(long, env = "AZURE_DEVOPS_ENDPOINT")]
    azure_devops_endpoint: Option<String>,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// File with one or more TenantIdentity documents ("-" for stdin).
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// Issuer for TenantIdentities without spec.azure.issuer.
    #[arg(long)]
    issuer: Option<String>,
    /// Tenant for TenantIdentities without spec.azure.tenantId.
    #[arg(long)]
    azure_tenant_id: Option<String>,
    /// Namespace for TenantIdentities without metadata.namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => print_crd(),
        Command::Render(args) => run_render(args),
        Command::Rbac {
            require_namespace_grant,
            verify,
        } => print_rbac(require_namespace_grant, verify),
        Command::Run(args) => run(*args).await,
    };
    if let Err(e) = result {
        // One line a person can act on; the chain is joined, not printed as a backtrace.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn print_crd() -> anyhow::Result<()> {
    print!("{}", serde_yaml::to_string(&TenantIdentity::crd())?);
    Ok(())
}

fn print_rbac(require_namespace_grant: bool, verify: bool) -> anyhow::Result<()> {
    print!(
        "{}",
        serde_yaml::to_string(&tenant_identity_operator::rbac::required(
            require_namespace_grant,
            verify
        ))?
    );
    Ok(())
}

fn run_render(args: RenderArgs) -> anyhow::Result<()> {
    let input = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let options = RenderOptions {
        issuer: args.issuer,
        tenant_id: args.azure_tenant_id,
        namespace: args.namespace,
    };
    let out = render::render(&input, &options).with_context(|| args.file.display().to_string())?;
    print!("{out}");
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    // One TLS crypto provider for the Kubernetes and Azure clients, chosen explicitly so a
    // dependency enabling another one can never leave rustls unable to pick.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new()?);
    let readiness = Readiness::default();
    let liveness = Liveness::default();
    let listener = tokio::net::TcpListener::bind(args.metrics_bind_address)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_bind_address))?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        readiness.clone(),
        liveness.clone(),
    ));

    let client = kube_client(&metrics).await?;
    let identity = args
        .leader_election_identity
        .clone()
        .unwrap_or_else(|| format!("{FIELD_MANAGER}-{}", std::process::id()));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.clone()),
        },
    );
    let arm = arm_backend(&args, &metrics);
    let verifier = Verifier::new(
        client.clone(),
        verification_http()?,
        verify_settings(&args)?,
        metrics.clone(),
    );
    let services = Arc::new(Services {
        client: client.clone(),
        recorder,
        metrics,
        settings: Settings {
            default_tenant_id: args.azure_tenant_id.filter(|t| !t.is_empty()),
            require_namespace_grant: args.require_namespace_grant,
        },
        issuer: IssuerSource::new(args.oidc_issuer_url),
        backends: Backends::new(client.clone(), arm),
        verifier,
        concurrency: args.max_concurrent_reconciles,
        debounce: args.reconcile_debounce,
    });
    let shutdown = shutdown_signal().shared();

    if args.leader_elect {
        // A standby is healthy and ready to take over; it just does not reconcile.
        readiness.set_ready(true);
        let config = LeaseConfig {
            namespace: args.leader_election_namespace,
            name: args.leader_election_lease_name,
            identity,
            duration_seconds: 15,
            grace_seconds: 5,
        };
        let probes = Probes {
            readiness: readiness.clone(),
            liveness,
            stall_timeout: Duration::from_secs(args.watch_stall_timeout_seconds),
        };
        leader::run_as_leader(client, config, shutdown, |stop| {
            let (services, probes) = (services.clone(), probes.clone());
            async move {
                controller::run(services, stop, probes.clone()).await;
                // Back to standby: healthy and ready to take over again.
                probes.readiness.set_ready(true);
            }
        })
        .await
        .context("leader election")?;
    } else {
        let probes = Probes {
            readiness,
            liveness,
            stall_timeout: Duration::from_secs(args.watch_stall_timeout_seconds),
        };
        controller::run(services, shutdown.boxed(), probes).await;
    }
    info!("stopped");
    Ok(())
}

/// The Kubernetes client (in-cluster config or KUBECONFIG), naming itself in every request's
/// `User-Agent`, so the API server's audit log and metrics tell the operator's requests apart,
/// and counting its requests.
async fn kube_client(metrics: &Metrics) -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    config.headers.push((
        ::http::header::USER_AGENT,
        ::http::HeaderValue::from_static(concat!(
            "tenant-identity-operator/",
            env!("CARGO_PKG_VERSION")
        )),
    ));
    // Every request is counted by verb (`tenant_identity_api_requests_total`): what the operator
    // costs the API server, visible in production.
    let requests = metrics.api_requests.clone();
    let count =
        tower::util::MapRequestLayer::new(move |request: ::http::Request<kube::client::Body>| {
            let content_type = request
                .headers()
                .get(::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let verb = tenant_identity_operator::metrics::api_verb(
                request.method(),
                request.uri(),
                content_type,
            );
            requests.with_label_values(&[verb]).inc();
            request
        });
    Ok(kube::client::ClientBuilder::try_from(config)
        .context("cannot build a Kubernetes client")?
        .with_layer(&count)
        .build())
}

/// The verification flags, checked: a URL that does not parse is named with its flag.
fn verify_settings(args: &RunArgs) -> anyhow::Result<VerifySettings> {
    let url = |flag: &str, value: &str| {
        reqwest::Url::parse(value).with_context(|| format!("{flag} {value:?} is not a URL"))
    };
    let authority_host = url("--authority-host", &args.authority_host)?;
    if authority_host.cannot_be_a_base() {
        anyhow::bail!(
            "--authority-host {:?} is not a base URL",
            args.authority_host
        );
    }
    let devops_endpoint = args
        .azure_devops_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
        .map(|e| url("--azure-devops-endpoint", e))
        .transpose()?;
    Ok(VerifySettings {
        enabled: args.verify,
        interval: args.verify_interval,
        grace: args.verify_grace,
        concurrency: usize::from(args.verify_concurrency),
        authority_host,
        arm_scope: arm_scope(&args.arm_endpoint),
        devops_endpoint,
    })
}

/// HTTP for the checks: bounded in time, and redirects are answers (Azure DevOps redirects a
/// request it does not accept to a sign-in page), never followed.
fn verification_http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "tenant-identity-operator/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .context("cannot build the HTTP client of verification")
}

/// The ARM backend needs the operator's own workload identity; without it the operator still
/// runs (ASO backend) and managedIdentity tenants report ArmBackendUnavailable.
fn arm_backend(args: &RunArgs, metrics: &Metrics) -> Option<ArmBackend> {
    let mut config = match ArmConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            warn!(reason = e.reason(), error = %e, "ARM backend disabled");
            return None;
        }
    };
    config.arm_endpoint = args.arm_endpoint.clone();
    config.authority_host = args.authority_host.clone();
    config.api_version = args.arm_api_version.clone();
    match ArmBackend::new(config, metrics.azure.clone()) {
        Ok(b) => {
            info!(endpoint = %args.arm_endpoint, "ARM backend enabled");
            Some(b)
        }
        Err(e) => {
            warn!(reason = e.reason(), error = %e, "ARM backend disabled");
            None
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
