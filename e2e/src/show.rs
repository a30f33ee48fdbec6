//! What a user sees of the TenantIdentities of a cluster: `e2e-ctl show`, as `kubectl get ti -A`
//! plus each tenant's conditions, subjects (with what verification found) and children.

use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, ResourceExt, api::ListParams};
use tenant_identity_crd::TenantIdentity;

use crate::objects;

fn age(ti: &TenantIdentity) -> String {
    let Some(created) = ti.metadata.creation_timestamp.as_ref() else {
        return "<unknown>".into();
    };
    let secs = Timestamp::now()
        .as_second()
        .saturating_sub(created.0.as_second())
        .max(0);
    if secs < 120 {
        format!("{secs}s")
    } else {
        format!("{}m", secs / 60)
    }
}

/// Print every TenantIdentity, its conditions, subjects, host ServiceAccounts and children.
pub async fn show(client: &Client) -> anyhow::Result<()> {
    let api: Api<TenantIdentity> = Api::all(client.clone());
    let mut list = api.list(&ListParams::default()).await?.items;
    list.sort_by_key(|t| (t.namespace(), t.name_any()));

    println!("$ kubectl get tenantidentities -A");
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|ti| {
            let ready = objects::condition(ti, "Ready");
            [
                ti.namespace().unwrap_or_default(),
                ti.name_any(),
                ready.map(|c| c.status.clone()).unwrap_or_default(),
                ready.map(|c| c.reason.clone()).unwrap_or_default(),
                format!("{:?}", ti.spec.virtual_cluster.mode),
                age(ti),
            ]
        })
        .collect();
    print_table(
        ["NAMESPACE", "NAME", "READY", "REASON", "MODE", "AGE"],
        &rows,
        "   ",
    );

    for ti in &list {
        let ns = ti.namespace().unwrap_or_default();
        let name = ti.name_any();
        println!("\n$ kubectl describe tenantidentity -n {ns} {name}");
        let status = ti.status.clone().unwrap_or_default();
        println!(
            "  observedGeneration: {} (generation {})",
            status
                .observed_generation
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into()),
            ti.metadata.generation.unwrap_or_default()
        );
        if let Some(issuer) = &status.issuer {
            println!("  issuer: {issuer}");
        }
        println!("  conditions:");
        for c in &status.conditions {
            println!(
                "    {:<27} {:<7} {:<24} {}",
                c.type_, c.status, c.reason, c.message
            );
        }
        if !status.subjects.is_empty() {
            println!("  subjects:");
            for s in &status.subjects {
                println!(
                    "    {:<8} {} -> {}{}{}",
                    s.state,
                    s.subject,
                    s.credential_name,
                    s.verified
                        .as_ref()
                        .map(|v| format!(", verified: {v}"))
                        .unwrap_or_default(),
                    s.message
                        .as_ref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
            }
        }
        if !status.host_service_accounts.is_empty() {
            println!("  host service accounts (azure.workload.identity/client-id):");
            let sas = objects::service_accounts(client, &ns);
            for name in &status.host_service_accounts {
                let annotation = match sas.get_opt(name).await? {
                    Some(sa) => sa
                        .annotations()
                        .get(objects::CLIENT_ID_ANNOTATION)
                        .cloned()
                        .unwrap_or_else(|| "(not annotated)".into()),
                    None => "(does not exist)".into(),
                };
                println!("    {name}: {annotation}");
            }
        }
        let children = objects::children(client, &ns, &name).await?;
        println!("  children (label {}={name}):", objects::TENANT_LABEL);
        if children.is_empty() {
            println!("    (none)");
        }
        for child in objects::kind_names(&children) {
            println!("    {child}");
        }
    }
    Ok(())
}

/// Print `rows` under `header` in columns as wide as their widest cell, separated by `gap`.
pub fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]], gap: &str) {
    let header = header.map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join(gap).trim_end());
    }
}
