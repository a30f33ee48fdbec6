//! The fleet: its tenants, their namespaces, what exists before them and what `render` prints
//! for them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _, stream};
use kube::{Client, api::DynamicObject};
use serde::Deserialize as _;
use serde_json::Value;
use tenant_identity_e2e::{Cluster, TestNamespace, namespace::random_guid, objects, simulate};

/// Namespaces the tenants are spread across, for the baseline and for the operator.
pub(crate) const NAMESPACES: usize = 50;
/// Tenants in flight at once, for the bare client and for the bench creating tenants and playing
/// ASO.
pub(crate) const CONCURRENCY: usize = 32;

/// One tenant of a fleet.
#[derive(Clone, Debug)]
pub(crate) struct Tenant {
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) client_id: String,
}

impl Tenant {
    pub(crate) fn spec(&self) -> Value {
        objects::shared_spec(&self.client_id, &self.name)
    }

    pub(crate) fn key(&self) -> (String, String) {
        (self.ns.clone(), self.name.clone())
    }
}

pub(crate) async fn namespaces(
    cluster: &Cluster,
    prefix: &str,
) -> anyhow::Result<Vec<TestNamespace>> {
    stream::iter(0..NAMESPACES)
        .map(|i| async move { cluster.namespace(&format!("{prefix}-{i}")).await })
        .buffered(8)
        .try_collect()
        .await
}

pub(crate) fn fleet(namespaces: &[TestNamespace], n: usize) -> Vec<Tenant> {
    (0..n)
        .map(|i| Tenant {
            ns: namespaces[i % namespaces.len()].name().to_string(),
            name: format!("tenant-{i}"),
            client_id: random_guid(),
        })
        .collect()
}

/// What exists before a tenant: the vcluster's workload ServiceAccount (its Helm release) and
/// the platform team's ASO identity.
pub(crate) async fn prepare(client: &Client, fleet: &[Tenant]) -> anyhow::Result<()> {
    stream::iter(fleet)
        .map(|t| async move {
            simulate::helm_workload_service_account(client, &t.ns, &t.name).await?;
            objects::aso_identity(client, &t.ns, &format!("{}-identity", t.name), &t.client_id)
                .await?;
            anyhow::Ok(())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The objects `tenant-identity-operator render` prints for each tenant of `fleet`, by tenant.
pub(crate) fn render(
    binary: &Path,
    fleet: &[Tenant],
    issuer: &str,
) -> anyhow::Result<HashMap<(String, String), Vec<DynamicObject>>> {
    let mut input = String::new();
    for t in fleet {
        let ti = objects::tenant_identity(&t.ns, &t.name, t.spec())?;
        input.push_str("---\n");
        input.push_str(&serde_yaml::to_string(&ti)?);
    }
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let file: PathBuf = dir.path().join("tenants.yaml");
    std::fs::write(&file, input).with_context(|| format!("cannot write {}", file.display()))?;
    let out = std::process::Command::new(binary)
        .arg("render")
        .arg("-f")
        .arg(&file)
        .arg("--issuer")
        .arg(issuer)
        .output()
        .with_context(|| format!("cannot run {} render", binary.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).context("render printed no UTF-8")?;
    // Each tenant's documents follow its `# TenantIdentity <ns>/<name>: ...` line.
    let mut groups: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TenantIdentity ") {
            let id = rest.split(':').next().unwrap_or_default().to_string();
            groups.push((id, String::new()));
        } else if let Some((_, body)) = groups.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let mut out = HashMap::new();
    for (id, body) in groups {
        let (ns, name) = id
            .split_once('/')
            .with_context(|| format!("render names no namespace/name: {id}"))?;
        let mut docs = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&body) {
            let value = serde_yaml::Value::deserialize(document)?;
            if value.is_null() {
                continue;
            }
            docs.push(serde_yaml::from_value::<DynamicObject>(value)?);
        }
        out.insert((ns.to_string(), name.to_string()), docs);
    }
    anyhow::ensure!(
        out.len() == fleet.len(),
        "render printed {} tenants of {}",
        out.len(),
        fleet.len()
    );
    Ok(out)
}

pub(crate) fn is_service_account(obj: &DynamicObject) -> bool {
    obj.types
        .as_ref()
        .is_some_and(|t| t.kind == "ServiceAccount")
}
