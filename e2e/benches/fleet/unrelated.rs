//! Objects no tenant has anything to do with, as a real cluster has many: ServiceAccounts (the
//! operator watches every one, host ServiceAccounts being the vcluster's) and ConfigMaps (its
//! ConfigMap watch is label-selected, so these must cost nothing). Counts from the environment:
//! `UNRELATED_SERVICE_ACCOUNTS`, `UNRELATED_CONFIG_MAPS` (default 0 each).

use futures::{StreamExt as _, TryStreamExt as _, stream};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::{Api, api::PostParams};
use serde_json::json;
use tenant_identity_e2e::{Cluster, TestNamespace};

/// Objects created at once.
const CONCURRENCY: usize = 32;

pub(crate) struct Unrelated {
    pub(crate) service_accounts: usize,
    pub(crate) config_maps: usize,
}

impl Unrelated {
    pub(crate) fn from_env() -> Self {
        let count = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Unrelated {
            service_accounts: count("UNRELATED_SERVICE_ACCOUNTS"),
            config_maps: count("UNRELATED_CONFIG_MAPS"),
        }
    }

    /// Create them in a namespace of their own (before the operator starts).
    pub(crate) async fn create(&self, cluster: &Cluster) -> anyhow::Result<Option<TestNamespace>> {
        if self.service_accounts == 0 && self.config_maps == 0 {
            return Ok(None);
        }
        let ns = cluster.namespace("fleet-unrelated").await?;
        let client = cluster.client();
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns.name());
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
        stream::iter(0..self.service_accounts)
            .map(|i| {
                let sas = sas.clone();
                async move {
                    let sa: ServiceAccount = serde_json::from_value(json!({
                        "metadata": {"name": format!("unrelated-{i}"),
                            "labels": {"app": "unrelated"},
                            "annotations": {"example.com/owner": "another-team"}}
                    }))?;
                    sas.create(&PostParams::default(), &sa).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        stream::iter(0..self.config_maps)
            .map(|i| {
                let cms = cms.clone();
                async move {
                    let cm: ConfigMap = serde_json::from_value(json!({
                        "metadata": {"name": format!("unrelated-{i}")},
                        "data": {"settings.yaml": "x".repeat(512)}
                    }))?;
                    cms.create(&PostParams::default(), &cm).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(Some(ns))
    }
}
