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

mod cli;
mod fake_arm;
mod setup;
mod waiting;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use kube::{Client, ResourceExt};
use serde_json::json;
use tenant_identity_e2e::{
    cluster, objects, simulate,
    wait::{Check, poll_until},
};

use cli::{Cli, Cmd};
use fake_arm::{FakeEntra, admin_post, fake_arm_credentials, fake_arm_identity};
use setup::{apply, create_namespaces, fetch_upstream};
use waiting::{Wanted, converge, wait_condition, wait_ready, wait_url};

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
