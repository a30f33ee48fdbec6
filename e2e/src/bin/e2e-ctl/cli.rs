//! The command line: `e2e-ctl`'s subcommands and their arguments.

use std::{path::PathBuf, str::FromStr, time::Duration};

use clap::{Args, Parser, Subcommand};
use tenant_identity_e2e::arm::IdentityRef;

/// A small kubectl stand-in for hack/demo.sh. Reads KUBECONFIG.
#[derive(Debug, Parser)]
#[command(name = "e2e-ctl")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
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
pub(crate) struct FakeArmIdentity {
    /// Base URL of the fake-arm binary.
    url: String,
    subscription: String,
    resource_group: String,
    name: String,
    /// The identity's client id (`fake-arm-identity`; default: one the fake derives).
    #[arg(long)]
    pub(crate) client_id: Option<String>,
}

impl FakeArmIdentity {
    pub(crate) fn split(&self) -> (String, IdentityRef) {
        (
            self.url.trim_end_matches('/').to_string(),
            IdentityRef::new(&self.subscription, &self.resource_group, &self.name),
        )
    }
}

/// `NAMESPACE/TENANT`.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) namespace: String,
    pub(crate) name: String,
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
