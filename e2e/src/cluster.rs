//! The cluster under test: a real one through `E2E_KUBECONFIG`, or the embedded emulator.

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use kube_emulator::{AUDIT_DIR_ENV, Emulator, EmulatorConfig};
use tempfile::TempDir;

pub use crate::client::{client_from_kubeconfig, discovered_issuer};
use crate::{
    error::Result,
    manifests,
    namespace::TestNamespace,
    wait::{Check, poll_until},
};

/// Field manager the suite uses for its own writes (CRDs, fixtures).
pub const FIELD_MANAGER: &str = "e2e";
/// Environment variable pointing at the kubeconfig of a real cluster.
pub const KUBECONFIG_ENV: &str = "E2E_KUBECONFIG";
/// Lock serializing test processes that share one real cluster.
const REAL_CLUSTER_LOCK: &str = "tenant-identity-e2e.lock";

/// The repository root (`e2e/..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the emulator records every request, audit-style (one JSON-lines file per test
/// process): the directory [`AUDIT_DIR_ENV`] names (a relative one from the workspace root, as
/// the Makefile and the chart test read it), else `<workspace>/target/e2e-audit`. The
/// chart test reads it to check that the chart grants what the operator did and that each
/// granted verb was used; `make unit` and `make e2e` empty it before the suite runs. Against a
/// real cluster (`E2E_KUBECONFIG`) nothing is recorded.
pub fn audit_dir() -> PathBuf {
    std::env::var_os(AUDIT_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(|d| workspace_root().join(d))
        .unwrap_or_else(|| workspace_root().join("target").join("e2e-audit"))
}

/// The project's vcluster host-name vectors (`operator/tests/data`, committed, so a clone stands
/// on its own; the operator's tests check the copy against the shared one where that exists).
/// Upstream contract files (CRDs) are found by [`tenant_identity_upstream`] (shared checkout,
/// cache or a verified download).
pub fn host_name_vectors_path() -> PathBuf {
    workspace_root()
        .join("operator")
        .join("tests")
        .join("data")
        .join("vcluster-host-names.json")
}

/// The upstream CRDs the suite installs after ours, as paths for [`tenant_identity_upstream`].
/// Flux's HelmRelease is read, never written, by the operator (the vcluster release); the suite
/// plays it ([`crate::simulate`]).
pub const UPSTREAM_CRDS: [&str; 5] = [
    "flux/source.toolkit.fluxcd.io_gitrepositories.yaml",
    "flux/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
    "flux/helm.toolkit.fluxcd.io_helmreleases.yaml",
    "aso/managedidentity.azure.com_federatedidentitycredentials.yaml",
    "aso/managedidentity.azure.com_userassignedidentities.yaml",
];

/// Every CRD the suite needs, ours first. The upstream ones may be downloaded (blocking) when
/// neither the shared checkout nor the cache has them; a file that cannot be had is an error of
/// one line naming it and the command that fetches it.
pub fn crd_files() -> Result<Vec<PathBuf>> {
    let root = workspace_root();
    let ours = root.join("helm/tenant-identity-operator/crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ours)
        .with_context(|| format!("cannot list {}", ours.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no CRD in {}", ours.display());
    }
    for rel in UPSTREAM_CRDS {
        files.push(tenant_identity_upstream::path(rel)?);
    }
    Ok(files)
}

/// A cluster the tests run against.
pub struct Cluster {
    client: Client,
    kubeconfig: PathBuf,
    emulator: Option<Emulator>,
    // Keeps the kubeconfig file alive.
    _dir: Option<TempDir>,
    // Held while a test uses a real cluster.
    _lock: Option<File>,
}

impl Cluster {
    /// Connect (E2E_KUBECONFIG or a fresh emulator) and install every CRD the suite needs.
    pub async fn connect() -> Result<Self> {
        let cluster = match std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(path) => Self::real(PathBuf::from(path)).await?,
            None => Self::emulated().await?,
        };
        install_crds(&cluster.client).await?;
        Ok(cluster)
    }

    async fn real(kubeconfig: PathBuf) -> Result<Self> {
        let lock_path = std::env::temp_dir().join(REAL_CLUSTER_LOCK);
        let lock = tokio::task::spawn_blocking(move || -> Result<File> {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .with_context(|| format!("cannot open {}", lock_path.display()))?;
            file.lock()
                .with_context(|| format!("cannot lock {}", lock_path.display()))?;
            Ok(file)
        })
        .await
        .context("lock task panicked")??;
        let client = client_from_kubeconfig(&kubeconfig).await?;
        Ok(Self {
            client,
            kubeconfig,
            emulator: None,
            _dir: None,
            _lock: Some(lock),
        })
    }

    async fn emulated() -> Result<Self> {
        let emulator = Emulator::start(EmulatorConfig {
            audit_dir: Some(audit_dir()),
            ..EmulatorConfig::default()
        })
        .await
        .context("cannot start the API emulator")?;
        let dir = tempfile::Builder::new()
            .prefix("tenant-identity-e2e-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let kubeconfig = dir.path().join("kubeconfig");
        emulator
            .write_kubeconfig(&kubeconfig)
            .with_context(|| format!("cannot write {}", kubeconfig.display()))?;
        let client = client_from_kubeconfig(&kubeconfig).await?;
        Ok(Self {
            client,
            kubeconfig,
            emulator: Some(emulator),
            _dir: Some(dir),
            _lock: None,
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// True when the tests run against the embedded emulator (for logs only: assertions never
    /// depend on it).
    pub fn is_emulated(&self) -> bool {
        self.emulator.is_some()
    }

    /// The embedded emulator, when the tests run against it: outages and request counts go
    /// through [`crate::control_plane`], which works against real clusters too.
    pub(crate) fn emulator(&self) -> Option<&Emulator> {
        self.emulator.as_ref()
    }

    /// A fresh namespace `e2e-<test>-<random>`, deleted by [`TestNamespace::cleanup`].
    pub async fn namespace(&self, test: &str) -> Result<TestNamespace> {
        TestNamespace::create(
            self.client(),
            self.kubeconfig.clone(),
            !self.is_emulated(),
            test,
        )
        .await
    }

    /// Namespace `<ns>-<suffix>` beside a test's namespace `ns` (so one name is the other's
    /// prefix), deleted by [`TestNamespace::cleanup`].
    pub async fn namespace_beside(&self, ns: &str, suffix: &str) -> Result<TestNamespace> {
        TestNamespace::create_named(
            self.client(),
            self.kubeconfig.clone(),
            !self.is_emulated(),
            format!("{ns}-{suffix}"),
        )
        .await
    }

    /// The OIDC issuer the API server publishes in `/.well-known/openid-configuration`.
    pub async fn discovered_issuer(&self) -> Result<String> {
        discovered_issuer(&self.client).await
    }

    /// Stop the emulator (if any).
    pub async fn shutdown(mut self) {
        if let Some(emulator) = self.emulator.take() {
            emulator.shutdown().await;
        }
    }
}

/// Server-side apply every CRD file and wait until each is `Established=True`.
///
/// A CRD that already exists and was not installed by this suite (a real cluster running Flux
/// or ASO) is left as the cluster has it.
pub async fn install_crds(client: &Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    let ours_dir = workspace_root().join("helm");
    let files = tokio::task::spawn_blocking(crd_files)
        .await
        .context("CRD lookup task panicked")??;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let is_ours = file.starts_with(&ours_dir);
        for doc in manifests::documents(&text)
            .with_context(|| format!("cannot parse {}", file.display()))?
        {
            let mut crd: CustomResourceDefinition = serde_json::from_value(doc)
                .with_context(|| format!("{} is not a CRD", file.display()))?;
            let name = crd.name_any();
            if !is_ours
                && let Some(existing) = api.get_opt(&name).await?
                && !existing
                    .managed_fields()
                    .iter()
                    .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
            {
                // Installed by Flux or ASO themselves. The suite plays those controllers
                // (`simulate`): if they run too, they write the same status conditions (a real
                // source-controller fails to clone the test URLs, ASO tries to reach Azure) and
                // the Ready assertions race them.
                eprintln!(
                    "note: CRD {name} was installed by something else; if its controller runs \
                     in this cluster, scenarios that play Flux/ASO will be flaky"
                );
                names.push(name);
                continue;
            }
            crd.metadata.managed_fields = None;
            crd.metadata.resource_version = None;
            crd.status = None;
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .with_context(|| format!("cannot apply CRD {name} from {}", file.display()))?;
            names.push(name);
        }
    }
    for name in names {
        let api = api.clone();
        poll_until(
            &format!("CRD {name} Established=True"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await?;
                    let conditions = crd
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.clone())
                        .unwrap_or_default();
                    Ok(
                        if conditions
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                        {
                            Check::Done(())
                        } else {
                            Check::NotYet(format!("conditions: {conditions:?}"))
                        },
                    )
                }
            },
        )
        .await?;
    }
    Ok(())
}
