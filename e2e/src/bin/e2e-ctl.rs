//! A small kubectl stand-in for `hack/demo.sh` (machines without kubectl). Reads `KUBECONFIG`.
//!
//! ```text
//! e2e-ctl install-crds                 install ours + Flux + ASO CRDs, wait Established
//! e2e-ctl create-namespace NAME...     create namespaces (idempotent)
//! e2e-ctl apply FILE...                server-side apply every document (manager kubectl)
//! e2e-ctl host-sa NAMESPACE VCLUSTER   create vc-workload-<vcluster> as the vcluster Helm release would
//! e2e-ctl vcluster-release NAMESPACE VCLUSTER TENANT [CHART_VERSION]
//!                                      apply the vcluster HelmRelease taking TENANT's sync rules and
//!                                      report it Ready as helm-controller would
//! e2e-ctl vcluster-sync SECONDS NAMESPACE TENANT   create the host ServiceAccounts vcluster syncs
//!                                      from a PerServiceAccount tenant's virtual ones
//! e2e-ctl simulate-ready NAMESPACE TI  mark credentials / GitRepository Ready as ASO / Flux would
//! e2e-ctl converge [--fake-arm URL] SECONDS NAMESPACE/TI...
//!                                      play ASO and Flux until each TenantIdentity is Ready; with
//!                                      --fake-arm, ASO creates each credential in its fake Entra
//! e2e-ctl wait-ready SECONDS NAMESPACE/TI...   wait until each TenantIdentity is Ready
//! e2e-ctl wait-condition [--play-aso URL] SECONDS NAMESPACE/TI TYPE STATUS REASON
//!                                      wait until the condition holds, print its message; with
//!                                      --play-aso, meanwhile play ASO only (credentials created
//!                                      in the fake Entra at URL and marked Ready)
//! e2e-ctl wait-url SECONDS URL                 wait until URL answers 2xx
//! e2e-ctl show                         print TenantIdentities, conditions, subjects, children
//! e2e-ctl issuer                       print the service-account issuer the API server discovers
//! e2e-ctl fake-arm-identity URL SUBSCRIPTION RESOURCE_GROUP NAME [--client-id ID]
//!                                      create an identity in the fake ARM
//! e2e-ctl aso-identity NAMESPACE NAME CLIENT_ID   an ASO UserAssignedIdentity reporting CLIENT_ID
//! e2e-ctl fake-arm-credentials URL SUBSCRIPTION RESOURCE_GROUP NAME  list its federated credentials
//! e2e-ctl fake-devops-repository URL ORG PROJECT REPO   create ORG/PROJECT/_git/REPO in the fake
//!                                      Azure DevOps
//! e2e-ctl fake-devops-member URL ORG CLIENT_ID   add CLIENT_ID to the fake Azure DevOps ORG
//! e2e-ctl fetch-upstream [PATH...]     find (or download into the cache) the pinned upstream files
//! ```
//!
//! The `fake-arm-*`, `fake-devops-*` and `fetch-upstream` commands need no KUBECONFIG; they and
//! `--fake-arm` / `--play-aso` talk to the admin API (`/_fake/`) of the `fake-arm` binary at URL
//! (its ARM listener's base URL, also for the fake Azure DevOps).

use std::{
    path::PathBuf,
    process::ExitCode,
    str::FromStr,
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
};
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::arm::{CallCounts, IdentityRef, StoredCredential};
use tenant_identity_e2e::{
    cluster, objects,
    simulate::{self, Entra},
    wait::{Check, poll_until},
};
use tenant_identity_upstream::{Origin, Resolver};

/// A small kubectl stand-in for hack/demo.sh. Reads KUBECONFIG.
#[derive(Debug, Parser)]
#[command(name = "e2e-ctl")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install our CRD and the Flux and ASO CRDs, wait until each is Established.
    InstallCrds,
    /// Create namespaces (idempotent).
    CreateNamespace {
        #[arg(value_name = "NAME")]
        names: Vec<String>,
    },
    /// Server-side apply every document of each file (field manager kubectl).
    Apply {
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Create vc-workload-<VCLUSTER> in NAMESPACE as the vcluster Helm release would.
    HostSa { namespace: String, vcluster: String },
    /// Apply the vcluster HelmRelease VCLUSTER (valuesFrom: TENANT's sync rules ConfigMap) as the
    /// platform's GitOps would, and report it Ready as helm-controller would.
    VclusterRelease {
        namespace: String,
        vcluster: String,
        tenant: String,
        #[arg(default_value = "0.24.1")]
        chart_version: String,
    },
    /// Create the host ServiceAccounts vcluster syncs from TENANT's virtual ones (PerServiceAccount
    /// mode), once the TenantIdentity reports their names.
    VclusterSync {
        #[arg(value_parser = seconds)]
        seconds: Duration,
        namespace: String,
        tenant: String,
    },
    /// Mark a tenant's credentials and GitRepository Ready as ASO and Flux would.
    SimulateReady { namespace: String, tenant: String },
    /// Play ASO and Flux until each TenantIdentity is Ready.
    Converge {
        /// Base URL of the `fake-arm` binary: ASO creates each credential it marks Ready in
        /// its fake Entra (as Azure would hold it), so that verification can exchange tokens.
        #[arg(long, value_name = "URL")]
        fake_arm: Option<String>,
        #[arg(value_parser = seconds)]
        seconds: Duration,
        #[arg(value_name = "NAMESPACE/TENANT")]
        targets: Vec<Target>,
    },
    /// Wait until each TenantIdentity is Ready.
    WaitReady {
        #[arg(value_parser = seconds)]
        seconds: Duration,
        #[arg(value_name = "NAMESPACE/TENANT")]
        targets: Vec<Target>,
    },
    /// Wait until condition TYPE of a TenantIdentity has STATUS and REASON (for its current
    /// generation), then print the condition's message.
    WaitCondition {
        /// Meanwhile play ASO (not Flux) for the tenant: each of its credentials is created in
        /// the fake Entra of the `fake-arm` binary at URL and marked Ready.
        #[arg(long, value_name = "URL")]
        play_aso: Option<String>,
        #[arg(value_parser = seconds)]
        seconds: Duration,
        #[arg(value_name = "NAMESPACE/TENANT")]
        target: Target,
        #[arg(value_name = "TYPE")]
        type_: String,
        status: String,
        reason: String,
    },
    /// Print the service-account issuer the API server publishes in
    /// /.well-known/openid-configuration.
    Issuer,
    /// Wait until URL answers 2xx.
    WaitUrl {
        #[arg(value_parser = seconds)]
        seconds: Duration,
        url: String,
    },
    /// Print TenantIdentities, their conditions, subjects and children.
    Show,
    /// Create a user-assigned identity in the fake ARM at URL.
    FakeArmIdentity(FakeArmIdentity),
    /// Create ASO UserAssignedIdentity NAME in NAMESPACE reporting CLIENT_ID, as the platform
    /// team and ASO would.
    AsoIdentity {
        namespace: String,
        name: String,
        client_id: String,
    },
    /// List the federated credentials of an identity in the fake ARM at URL.
    FakeArmCredentials(FakeArmIdentity),
    /// Create the repository ORG/PROJECT/_git/REPO in the fake Azure DevOps of the `fake-arm`
    /// binary at URL (and the organization if needed).
    FakeDevopsRepository {
        url: String,
        organization: String,
        project: String,
        repository: String,
    },
    /// Add the identity CLIENT_ID to the organization ORG of the fake Azure DevOps of the
    /// `fake-arm` binary at URL, as an organization administrator would.
    FakeDevopsMember {
        url: String,
        organization: String,
        client_id: String,
    },
    /// Find the pinned upstream files, downloading what is missing into the cache.
    ///
    /// Every pinned file, or the PATHs given (e.g. flux/source.toolkit.fluxcd.io_gitrepositories.yaml);
    /// prints where each one is: shared checkout, cache, or downloaded (verified) into the cache.
    FetchUpstream {
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct FakeArmIdentity {
    /// Base URL of the fake-arm binary.
    url: String,
    subscription: String,
    resource_group: String,
    name: String,
    /// The identity's client id (`fake-arm-identity`; default: one the fake derives).
    #[arg(long)]
    client_id: Option<String>,
}

impl FakeArmIdentity {
    fn split(&self) -> (String, IdentityRef) {
        (
            self.url.trim_end_matches('/').to_string(),
            IdentityRef::new(&self.subscription, &self.resource_group, &self.name),
        )
    }
}

/// `NAMESPACE/TENANT`.
#[derive(Clone, Debug)]
struct Target {
    namespace: String,
    name: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split_once('/')
            .map(|(namespace, name)| Target {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
            .ok_or_else(|| format!("expected NAMESPACE/TENANT, got {s}"))
    }
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse()
        .map(Duration::from_secs)
        .map_err(|e| format!("SECONDS: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn client() -> anyhow::Result<Client> {
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(path) => cluster::client_from_kubeconfig(&PathBuf::from(path)).await,
        None => Client::try_default()
            .await
            .context("cannot build a Kubernetes client"),
    }
}

async fn run(command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::WaitUrl { seconds, url } => wait_url(seconds, &url).await,
        Cmd::FakeArmIdentity(args) => fake_arm_identity(&args).await,
        Cmd::FakeArmCredentials(args) => fake_arm_credentials(&args).await,
        Cmd::AsoIdentity {
            namespace,
            name,
            client_id,
        } => {
            objects::aso_identity(&client().await?, &namespace, &name, &client_id).await?;
            println!(
                "userassignedidentity/{name} ({namespace}) reports clientId {client_id} (as ASO would)"
            );
            Ok(())
        }
        Cmd::FetchUpstream { paths } => fetch_upstream(paths).await,
        Cmd::FakeDevopsRepository {
            url,
            organization,
            project,
            repository,
        } => {
            admin_post(
                &url,
                "devops/repositories",
                &json!({"organization": organization, "project": project, "repository": repository}),
            )
            .await?;
            println!(
                "Azure DevOps repository {organization}/{project}/_git/{repository} created (fake Azure DevOps)"
            );
            Ok(())
        }
        Cmd::FakeDevopsMember {
            url,
            organization,
            client_id,
        } => {
            admin_post(
                &url,
                "devops/members",
                &json!({"organization": organization, "clientId": client_id}),
            )
            .await?;
            println!(
                "client id {client_id} added to the Azure DevOps organization {organization} (Organization settings, Users)"
            );
            Ok(())
        }
        Cmd::Issuer => {
            println!("{}", cluster::discovered_issuer(&client().await?).await?);
            Ok(())
        }
        Cmd::WaitCondition {
            play_aso,
            seconds,
            target,
            type_,
            status,
            reason,
        } => {
            let entra = play_aso.as_deref().map(FakeEntra::new).transpose()?;
            let wanted = Wanted {
                type_,
                status,
                reason,
            };
            wait_condition(&client().await?, seconds, &target, &wanted, entra.as_ref()).await
        }
        Cmd::InstallCrds => cluster::install_crds(&client().await?).await,
        Cmd::CreateNamespace { names } => create_namespaces(&client().await?, &names).await,
        Cmd::Apply { files } => apply(&client().await?, &files).await,
        Cmd::HostSa {
            namespace,
            vcluster,
        } => {
            let client = client().await?;
            let sa =
                simulate::helm_workload_service_account(&client, &namespace, &vcluster).await?;
            println!("serviceaccount/{} created (by helm)", sa.name_any());
            Ok(())
        }
        Cmd::VclusterRelease {
            namespace,
            vcluster,
            tenant,
            chart_version,
        } => {
            let client = client().await?;
            simulate::apply_vcluster_release(
                &client,
                &namespace,
                &vcluster,
                vec![simulate::sync_rules_values_from(&tenant)],
                json!({"sync": {"fromHost": {"nodes": {"enabled": false}}}}),
            )
            .await?;
            println!(
                "helmrelease/{vcluster} ({namespace}) applied, valuesFrom: ConfigMap {}",
                objects::sync_rules_config_map(&tenant)
            );
            simulate::helm_release_ready(&client, &namespace, &vcluster, &chart_version).await?;
            println!(
                "helmrelease/{vcluster} ({namespace}) Ready: vcluster chart {chart_version} (as helm-controller reports it)"
            );
            Ok(())
        }
        Cmd::VclusterSync {
            seconds,
            namespace,
            tenant,
        } => {
            let client = client().await?;
            let api = objects::tenants(&client, &namespace);
            let ti = poll_until(
                &format!("TenantIdentity {namespace}/{tenant} to report its host ServiceAccounts"),
                seconds,
                || async {
                    let ti = api.get(&tenant).await?;
                    let reported = ti
                        .status
                        .as_ref()
                        .is_some_and(|s| !s.host_service_accounts.is_empty());
                    Ok(if reported {
                        Check::Done(ti)
                    } else {
                        Check::NotYet("no status.hostServiceAccounts yet".into())
                    })
                },
            )
            .await?;
            let created =
                simulate::vcluster_syncs_service_accounts(&client, &namespace, &ti).await?;
            for sa in ti
                .status
                .iter()
                .flat_map(|s| s.host_service_accounts.iter())
            {
                println!(
                    "serviceaccount/{sa} ({namespace}) synced from the vcluster (by vcluster)"
                );
            }
            println!("  {created} created");
            Ok(())
        }
        Cmd::SimulateReady {
            namespace: ns,
            tenant,
        } => {
            let client = client().await?;
            let n = simulate::aso_all_credentials_ready(&client, &ns, &tenant).await?;
            println!("  {ns}/{tenant}: {n} FederatedIdentityCredential(s) marked Ready (as ASO)");
            simulate::everything_ready(&client, &ns, &tenant).await?;
            Ok(())
        }
        Cmd::WaitReady { seconds, targets } => {
            wait_ready(&client().await?, seconds, &targets).await
        }
        Cmd::Converge {
            fake_arm,
            seconds,
            targets,
        } => {
            let entra = fake_arm.as_deref().map(FakeEntra::new).transpose()?;
            converge(&client().await?, seconds, targets, entra.as_ref()).await
        }
        Cmd::Show => tenant_identity_e2e::show::show(&client().await?).await,
    }
}

/// Resolve upstream files (every pinned one when `paths` is empty) and say where each is.
async fn fetch_upstream(paths: Vec<String>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let resolver = Resolver::from_env()?;
        let paths = if paths.is_empty() {
            resolver.entries().iter().map(|e| e.path.clone()).collect()
        } else {
            paths
        };
        for rel in paths {
            let found = resolver.locate(&rel)?;
            let origin = match found.origin {
                Origin::Shared => "shared checkout",
                Origin::Cache => "cache",
                Origin::Downloaded => "downloaded, verified, cached",
            };
            println!("{rel}: {} ({origin})", found.path.display());
        }
        Ok(())
    })
    .await
    .context("upstream lookup task panicked")?
}

async fn create_namespaces(client: &Client, names: &[String]) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        api.patch(
            name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            ),
        )
        .await
        .with_context(|| format!("cannot create namespace {name}"))?;
        println!("namespace/{name} created");
    }
    Ok(())
}

async fn apply(client: &Client, files: &[PathBuf]) -> anyhow::Result<()> {
    for file in files {
        let applied =
            tenant_identity_e2e::manifests::apply_file(client, file, "kubectl", None).await?;
        for obj in applied {
            let kind = obj
                .types
                .as_ref()
                .map(|t| t.kind.to_lowercase())
                .unwrap_or_default();
            println!(
                "{kind}/{} serverside-applied ({})",
                obj.name_any(),
                obj.namespace().unwrap_or_default()
            );
        }
    }
    Ok(())
}

async fn wait_ready(client: &Client, timeout: Duration, targets: &[Target]) -> anyhow::Result<()> {
    for Target {
        namespace: ns,
        name,
    } in targets
    {
        let target = format!("{ns}/{name}");
        let api = objects::tenants(client, ns);
        let ti = poll_until(
            &format!("TenantIdentity {target} Ready"),
            timeout,
            || async {
                let ti = api.get(name).await?;
                Ok(if objects::is_ready(&ti) {
                    Check::Done(ti)
                } else {
                    Check::NotYet(condition_text(&ti, "Ready"))
                })
            },
        )
        .await?;
        println!("tenantidentity/{name} ({ns}) is Ready");
        print_verified(&ti);
    }
    Ok(())
}

/// `TYPE=STATUS REASON: message`, or that there is no such condition.
fn condition_text(ti: &TenantIdentity, type_: &str) -> String {
    objects::condition(ti, type_)
        .map(|c| format!("{type_}={} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_else(|| format!("no {type_} condition"))
}

/// The verification conditions of a Ready tenant, one line each.
fn print_verified(ti: &TenantIdentity) {
    for type_ in ["IdentityVerified", "GitAccessVerified"] {
        if let Some(c) = objects::condition(ti, type_) {
            println!("  {type_}={} {}: {}", c.status, c.reason, c.message);
        }
    }
}

async fn converge(
    client: &Client,
    timeout: Duration,
    targets: Vec<Target>,
    entra: Option<&FakeEntra>,
) -> anyhow::Result<()> {
    for Target {
        namespace: ns,
        name,
    } in targets
    {
        let ti = match entra {
            Some(entra) => simulate::converge_in_entra(client, &ns, &name, timeout, entra).await?,
            None => simulate::converge(client, &ns, &name, timeout).await?,
        };
        let subjects = ti
            .status
            .as_ref()
            .map(|s| s.subjects.len())
            .unwrap_or_default();
        println!(
            "tenantidentity/{name} ({ns}) is Ready: {subjects} credential(s) marked Ready as ASO would, GitRepository as Flux would"
        );
        if let Some(entra) = entra {
            entra.print_registered();
        }
        print_verified(&ti);
    }
    Ok(())
}

/// The condition `wait-condition` waits for.
struct Wanted {
    type_: String,
    status: String,
    reason: String,
}

/// ASO reports the credential Ready for its current generation.
fn aso_reports_ready(obj: &DynamicObject) -> bool {
    let generation = obj.metadata.generation.unwrap_or(1);
    obj.data
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "Ready"
                    && c["status"] == "True"
                    && c["observedGeneration"].as_i64() == Some(generation)
            })
        })
}

/// ASO, one round: every credential of `ti` not Ready yet is created in `entra` and marked Ready.
async fn play_aso(client: &Client, ti: &TenantIdentity, entra: &FakeEntra) -> anyhow::Result<()> {
    let ns = ti.namespace().unwrap_or_default();
    for obj in objects::credentials(client, &ns, &ti.name_any())
        .await?
        .values()
    {
        if !aso_reports_ready(obj) {
            simulate::aso_credential_in_entra(entra, &ti.spec.azure.client_id, obj).await?;
            simulate::aso_credential_ready(client, obj).await?;
        }
    }
    Ok(())
}

/// Wait (bounded poll) until the condition holds for the tenant's current generation, playing
/// ASO meanwhile when `entra` is given; print the condition and how long it took.
async fn wait_condition(
    client: &Client,
    timeout: Duration,
    target: &Target,
    wanted: &Wanted,
    entra: Option<&FakeEntra>,
) -> anyhow::Result<()> {
    let Target {
        namespace: ns,
        name,
    } = target;
    let Wanted {
        type_,
        status,
        reason,
    } = wanted;
    let api = objects::tenants(client, ns);
    let started = Instant::now();
    let ti = poll_until(
        &format!("TenantIdentity {ns}/{name} {type_}={status} {reason}"),
        timeout,
        || async {
            let ti = api.get(name).await?;
            let current =
                ti.status.as_ref().and_then(|s| s.observed_generation) == ti.metadata.generation;
            if current && objects::has_condition(&ti, type_, status, Some(reason)) {
                return Ok(Check::Done(ti));
            }
            if let Some(entra) = entra {
                play_aso(client, &ti, entra).await?;
            }
            Ok(Check::NotYet(condition_text(&ti, type_)))
        },
    )
    .await?;
    if let Some(entra) = entra {
        entra.print_registered();
    }
    let message = objects::condition(&ti, type_)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    println!(
        "tenantidentity/{name} ({ns}): {type_}={status} {reason} (waited {}s)",
        started.elapsed().as_secs()
    );
    println!("  message: {message}");
    if let Some(ready) = objects::condition(&ti, "Ready").filter(|_| type_ != "Ready") {
        let said = if ready.message == message {
            " (the same message)".to_string()
        } else {
            format!(": {}", ready.message)
        };
        println!("  Ready={} {}{said}", ready.status, ready.reason);
    }
    Ok(())
}

/// The fake Entra of the `fake-arm` binary, through its admin API: where ASO creates the
/// credentials `converge` / `wait-condition --play-aso` mark Ready, as Azure would hold them.
struct FakeEntra {
    url: String,
    http: reqwest::Client,
    /// What was registered and not printed yet: (client id, subject).
    registered: Mutex<Vec<(String, String)>>,
}

impl FakeEntra {
    fn new(url: &str) -> anyhow::Result<Self> {
        Ok(FakeEntra {
            url: url.trim_end_matches('/').to_string(),
            http: http()?,
            registered: Mutex::new(Vec::new()),
        })
    }

    /// Say which credentials were created in Entra since the last call.
    fn print_registered(&self) {
        let registered =
            std::mem::take(&mut *self.registered.lock().unwrap_or_else(|e| e.into_inner()));
        for (client_id, subject) in registered {
            println!("  created in Entra (the fake's) for client id {client_id}: {subject}");
        }
    }
}

impl Entra for FakeEntra {
    fn register_credential<'a>(
        &'a self,
        client_id: &'a str,
        issuer: &'a str,
        subject: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            post_json(
                &self.http,
                &format!(
                    "{}/_fake/entra/applications/{client_id}/federated-credentials",
                    self.url
                ),
                &json!({"issuer": issuer, "subject": subject, "audience": audience}),
            )
            .await?;
            self.registered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((client_id.to_string(), subject.to_string()));
            Ok(())
        })
    }
}

/// POST `body` to `endpoint`; an answer other than 2xx is an error showing it.
async fn post_json(
    http: &reqwest::Client,
    endpoint: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let response = http
        .post(endpoint)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {endpoint}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("POST {endpoint}: {status} {body}");
    }
    Ok(())
}

/// POST `body` to `/_fake/<route>` of the `fake-arm` binary at `url`.
async fn admin_post(url: &str, route: &str, body: &serde_json::Value) -> anyhow::Result<()> {
    let endpoint = format!("{}/_fake/{route}", url.trim_end_matches('/'));
    post_json(&http()?, &endpoint, body).await
}

async fn wait_url(timeout: Duration, url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    poll_until(&format!("{url} to answer 2xx"), timeout, || async {
        let r = http.get(url).send().await?;
        Ok(if r.status().is_success() {
            Check::Done(())
        } else {
            Check::NotYet(r.status().to_string())
        })
    })
    .await
}

fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build an HTTP client")
}

/// Create a user-assigned identity in the fake ARM (as `az identity create` would).
async fn fake_arm_identity(args: &FakeArmIdentity) -> anyhow::Result<()> {
    let (url, identity) = args.split();
    let endpoint = format!("{url}/_fake/identities");
    let mut body = serde_json::to_value(&identity)?;
    if let Some(client_id) = &args.client_id {
        body["clientId"] = json!(client_id);
    }
    post_json(&http()?, &endpoint, &body).await?;
    println!("userAssignedIdentity {} created", identity.arm_id());
    Ok(())
}

/// Print the federated credentials of an identity in the fake ARM, like
/// `az identity federated-credential list -o table`, and the calls the fake served.
async fn fake_arm_credentials(args: &FakeArmIdentity) -> anyhow::Result<()> {
    let (url, identity) = args.split();
    let http = http()?;
    let endpoint = format!(
        "{url}/_fake/identities/{}/{}/{}/credentials",
        identity.subscription_id, identity.resource_group, identity.name
    );
    let response = http
        .get(&endpoint)
        .send()
        .await
        .with_context(|| format!("GET {endpoint}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("GET {endpoint}: {status} {body}");
    }
    let credentials: Vec<StoredCredential> = response
        .json()
        .await
        .with_context(|| format!("GET {endpoint}: unexpected answer"))?;
    println!(
        "$ az identity federated-credential list -g {} --identity-name {} -o table",
        identity.resource_group, identity.name
    );
    let rows: Vec<[String; 4]> = credentials
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.issuer.clone(),
                c.subject.clone(),
                c.audiences.join(","),
            ]
        })
        .collect();
    let header = ["Name", "Issuer", "Subject", "Audiences"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    let calls_url = format!("{url}/_fake/calls");
    let calls: CallCounts = http
        .get(&calls_url)
        .send()
        .await
        .with_context(|| format!("GET {calls_url}"))?
        .json()
        .await
        .with_context(|| format!("GET {calls_url}: unexpected answer"))?;
    println!(
        "  ({} credential(s); ARM calls served so far: {} list, {} get, {} put, {} delete, {} token)",
        credentials.len(),
        calls.list,
        calls.get,
        calls.put,
        calls.delete,
        calls.token
    );
    Ok(())
}
