//! One namespace per test, deleted at the end.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tenant_identity_crd::TenantIdentity;

pub use crate::random::{random_guid, random_hex};
use crate::{client::client_from_kubeconfig, error::Result, wait::wait_gone};

/// Label on every namespace the suite creates (to find leftovers on a real cluster).
pub const SUITE_LABEL: &str = "e2e.identity.tenancy.dev/suite";

fn dns_label(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// A namespace owned by one test.
pub struct TestNamespace {
    pub name: String,
    client: Client,
    kubeconfig: PathBuf,
    real_cluster: bool,
    cleaned: bool,
}

impl TestNamespace {
    /// Create `e2e-<test>-<random>` through `client`. `kubeconfig` is kept for the cleanup on
    /// drop, which happens only on a real cluster (`real_cluster`).
    pub(crate) async fn create(
        client: Client,
        kubeconfig: PathBuf,
        real_cluster: bool,
        test: &str,
    ) -> Result<Self> {
        let mut test = dns_label(test);
        test.truncate(40);
        let name = format!("e2e-{}-{}", test.trim_matches('-'), random_hex(6));
        Self::create_named(client, kubeconfig, real_cluster, name).await
    }

    /// Create namespace `name` exactly (a scenario that needs two namespaces whose names are
    /// related, e.g. one the other's prefix), cleaned up like [`TestNamespace::create`]'s.
    pub(crate) async fn create_named(
        client: Client,
        kubeconfig: PathBuf,
        real_cluster: bool,
        name: String,
    ) -> Result<Self> {
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {SUITE_LABEL: "tenant-identity"}},
        }))?;
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("cannot create namespace {name}"))?;
        Ok(Self {
            name,
            client,
            kubeconfig,
            real_cluster,
            cleaned: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Set (or with `None`, remove) an annotation on the namespace.
    pub async fn annotate(&self, key: &str, value: Option<&str>) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.patch(
            &self.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .with_context(|| format!("cannot annotate namespace {}", self.name))?;
        Ok(())
    }

    /// Delete the TenantIdentities (while the operator still runs, so finalizers complete),
    /// then the namespace. Best effort: problems are printed, not raised.
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        if let Err(e) = delete_namespace(&self.client, &self.name, true).await {
            eprintln!("cleanup of namespace {}: {e:#}", self.name);
        }
    }
}

async fn delete_namespace(client: &Client, name: &str, wait_for_tenants: bool) -> Result<()> {
    let tis: Api<TenantIdentity> = Api::namespaced(client.clone(), name);
    if let Ok(list) = tis.list(&ListParams::default()).await {
        for ti in list.items {
            let ti_name = ti.metadata.name.clone().unwrap_or_default();
            let _ = tis.delete(&ti_name, &DeleteParams::default()).await;
            if wait_for_tenants {
                if wait_gone(&tis, &ti_name, Duration::from_secs(15))
                    .await
                    .is_err()
                {
                    // The operator is gone or stuck: do not leave the namespace terminating.
                    let _ = tis
                        .patch(
                            &ti_name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                }
            } else {
                let _ = tis
                    .patch(
                        &ti_name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
            }
        }
    }
    let api: Api<Namespace> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete namespace {name}")),
    }
}

impl Drop for TestNamespace {
    /// A test that failed before `cleanup()` still removes its namespace on a real cluster (the
    /// emulator goes away with the process). Runs on its own thread and runtime with a fresh
    /// client: the test's runtime is busy unwinding.
    fn drop(&mut self) {
        if self.cleaned || !self.real_cluster {
            return;
        }
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let work = async {
                    let client = client_from_kubeconfig(&kubeconfig).await?;
                    delete_namespace(&client, &name, false).await
                };
                match tokio::time::timeout(Duration::from_secs(20), work).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("cleanup of namespace {name}: {e:#}"),
                    Err(_) => eprintln!("cleanup of namespace {name}: timed out"),
                }
            });
        });
        let _ = handle.join();
    }
}
