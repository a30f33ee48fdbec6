//! Does the vcluster really run with the sync rules? Pure: from the vcluster's Flux `HelmRelease`
//! (`helm.toolkit.fluxcd.io/v2`, named like `virtualCluster.name`, read but never written) and
//! the host ServiceAccounts found, to `HostSyncReady`.
//!
//! Publishing the fragment is not enough. The release must take the ConfigMap in `valuesFrom`
//! (key `values.yaml`, merged at the root: no `targetPath`), its own `values` must not set the
//! same keys to something else (Flux's HelmRelease docs: `valuesFrom` entries are merged in the
//! order given, later ones overwriting earlier ones, and always with a lower priority than the
//! inline `spec.values`), and it must be Ready for its current generation (helm-controller's
//! kstatus conditions; `Ready=Unknown` while it installs or upgrades, `Ready=False` when an
//! action failed, `Stalled=True` when it gave up). Some setups cannot carry the identity at all:
//! a chart below 0.21 (vcluster rewrites pod label keys on the host there, so the AKS webhook
//! never sees `azure.workload.identity/use`), multi-namespace mode
//! (`sync.toHost.namespaces.enabled`: host names then differ from the ones federated) and a
//! release installed into another namespace (`spec.targetNamespace`). Only the release's inline
//! `values` are inspected; values from other `valuesFrom` sources (Secrets above all) are never
//! read.

use kube::{ResourceExt, api::DynamicObject};
use serde_json::Value;
use tenant_identity_crd::{Mode, reasons};

use super::{host_service_account, is_current, str_field, sync_rules, upstream_condition};
use crate::{names, plan::Plan, status::PartState};

/// The first vcluster chart that keeps pod label keys unchanged on the host.
pub const MIN_CHART: (u64, u64) = (0, 21);

/// What the reconcile found of the vcluster's HelmRelease.
#[derive(Clone, Copy, Debug)]
pub enum Release<'a> {
    /// No HelmRelease named like the vcluster in its namespace (or the kind is not served).
    Absent,
    /// The operator may not read HelmReleases; the API server's message.
    Unreadable(&'a str),
    Found(&'a DynamicObject),
}

/// The host ServiceAccounts of the plan, split by whether they exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostServiceAccounts {
    /// Found, and our two annotations applied.
    pub annotated: Vec<String>,
    /// Not found: nothing applied (never created).
    pub missing: Vec<String>,
}

/// `HostSyncReady` from the release and the host ServiceAccounts. The release decides first
/// (it explains why ServiceAccounts are missing), then the ServiceAccounts.
pub fn host_sync(plan: &Plan, release: Release<'_>, accounts: &HostServiceAccounts) -> PartState {
    let config_map = names::sync_rules_config_map(&plan.name);
    let checked = match release {
        Release::Found(hr) => match check(plan, hr) {
            Ok(summary) => Some(summary),
            Err(blocked) => return blocked,
        },
        Release::Absent | Release::Unreadable(_) => None,
    };
    if !accounts.missing.is_empty() {
        return missing(plan, accounts, checked.as_deref());
    }
    let applied = format!(
        "workload identity annotations applied to host ServiceAccount(s) {}",
        accounts.annotated.join(", ")
    );
    match (checked, release) {
        (Some(summary), _) => {
            PartState::ready(reasons::HOST_SYNC_APPLIED, format!("{summary}; {applied}"))
        }
        (None, Release::Unreadable(error)) => PartState::ready(
            reasons::SYNC_RULES_UNVERIFIED,
            format!(
                "{applied}; the operator cannot read HelmRelease {}/{} ({error}; grant it list and watch on helmreleases.helm.toolkit.fluxcd.io, chart value rbac.flux), so it cannot check that the vcluster carries the sync rules: {}",
                plan.namespace,
                plan.vcluster,
                verify_by_hand(plan, &config_map)
            ),
        ),
        (None, _) => PartState::ready(
            reasons::SYNC_RULES_UNVERIFIED,
            format!(
                "{applied}; no Flux HelmRelease {}/{} to check that the vcluster carries the sync rules: {}",
                plan.namespace,
                plan.vcluster,
                verify_by_hand(plan, &config_map)
            ),
        ),
    }
}

fn verify_by_hand(plan: &Plan, config_map: &str) -> String {
    format!(
        "verify by hand that the values of release {vc} (helm get values {vc} -n {ns}) include ConfigMap {config_map} key {key} merged at the root, that its chart is {major}.{minor} or later and that sync.toHost.namespaces.enabled is not true",
        vc = plan.vcluster,
        ns = plan.namespace,
        key = sync_rules::VALUES_KEY,
        major = MIN_CHART.0,
        minor = MIN_CHART.1,
    )
}

/// The release carries the rules and is Ready (a summary), or why not.
fn check(plan: &Plan, hr: &DynamicObject) -> Result<String, PartState> {
    let what = format!("HelmRelease {}/{}", plan.namespace, hr.name_any());
    let chart = chart_version(hr);
    if let Some(version) = &chart
        && let Some(found) = major_minor(version)
        && found < MIN_CHART
    {
        return Err(PartState::failed(
            reasons::VIRTUAL_CLUSTER_UNSUPPORTED,
            format!(
                "{what} deploys vcluster chart {version}: below {}.{} vcluster rewrites pod label keys on the host, so the AKS webhook never sees azure.workload.identity/use and injects no token; upgrade the vcluster to {}.{} or later",
                MIN_CHART.0, MIN_CHART.1, MIN_CHART.0, MIN_CHART.1
            ),
        ));
    }
    if hr
        .data
        .pointer("/spec/values/sync/toHost/namespaces/enabled")
        == Some(&Value::Bool(true))
    {
        return Err(PartState::failed(
            reasons::VIRTUAL_CLUSTER_UNSUPPORTED,
            format!(
                "{what} sets sync.toHost.namespaces.enabled: in multi-namespace mode the host ServiceAccounts are named and placed differently from the ones federated (namespace {}); run the vcluster in single-namespace mode (the default)",
                plan.namespace
            ),
        ));
    }
    if let Some(target) = hr
        .data
        .pointer("/spec/targetNamespace")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && *t != plan.namespace)
    {
        return Err(PartState::failed(
            reasons::VIRTUAL_CLUSTER_UNSUPPORTED,
            format!(
                "{what} installs the vcluster into namespace {target} (spec.targetNamespace): its host ServiceAccounts live there, not in {}; put the TenantIdentity in namespace {target}, or drop spec.targetNamespace",
                plan.namespace
            ),
        ));
    }
    check_reference(plan, hr, &what)?;
    let overridden = overrides(
        &sync_rules::values(plan),
        hr.data.pointer("/spec/values").unwrap_or(&Value::Null),
        "",
    );
    if !overridden.is_empty() {
        let manifests_hint = if overridden
            .iter()
            .any(|p| p.starts_with("experimental.deploy.vcluster.manifests"))
        {
            " (other manifests can go in experimental.deploy.vcluster.manifestsTemplate, which vcluster applies too)"
        } else {
            ""
        };
        return Err(PartState::failed(
            reasons::SYNC_RULES_OVERRIDDEN,
            format!(
                "{what} sets {} in its spec.values, which win over valuesFrom, so the vcluster does not run with the sync rules: remove {} from spec.values{manifests_hint}",
                overridden.join(", "),
                if overridden.len() == 1 { "it" } else { "them" },
            ),
        ));
    }
    readiness(hr, &what)?;
    let generation = hr.metadata.generation.unwrap_or_default();
    Ok(match chart {
        Some(version) => format!(
            "{what} takes ConfigMap {} and is Ready for generation {generation} (vcluster chart {version})",
            names::sync_rules_config_map(&plan.name)
        ),
        None => format!(
            "{what} takes ConfigMap {} and is Ready for generation {generation}",
            names::sync_rules_config_map(&plan.name)
        ),
    })
}

/// `spec.valuesFrom` has the ConfigMap, key `values.yaml` (the default), merged at the root.
fn check_reference(plan: &Plan, hr: &DynamicObject, what: &str) -> Result<(), PartState> {
    let config_map = names::sync_rules_config_map(&plan.name);
    let entries = hr
        .data
        .pointer("/spec/valuesFrom")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let ours: Vec<&Value> = entries
        .iter()
        .filter(|e| str_field(e, "kind") == "ConfigMap" && str_field(e, "name") == config_map)
        .collect();
    let takes_it = ours.iter().any(|e| {
        let key = str_field(e, "valuesKey");
        (key.is_empty() || key == sync_rules::VALUES_KEY) && str_field(e, "targetPath").is_empty()
    });
    if takes_it {
        return Ok(());
    }
    let wrong = ours
        .first()
        .map(|e| {
            format!(
                " (its entry for ConfigMap {config_map} has valuesKey {:?} and targetPath {:?})",
                str_field(e, "valuesKey"),
                str_field(e, "targetPath")
            )
        })
        .unwrap_or_default();
    Err(PartState::failed(
        reasons::SYNC_RULES_NOT_REFERENCED,
        format!(
            "{what} does not take the sync rules{wrong}: add {} to its spec.valuesFrom (helm-controller then upgrades the vcluster with them)",
            sync_rules::values_from_entry_text(plan)
        ),
    ))
}

/// helm-controller's Ready condition, about the current generation.
fn readiness(hr: &DynamicObject, what: &str) -> Result<(), PartState> {
    let generation = hr.metadata.generation.unwrap_or_default();
    let ready = upstream_condition(hr, "Ready");
    let said = |c: &Value| format!("{}: {}", str_field(c, "reason"), str_field(c, "message"));
    match &ready {
        Some(c) if is_current(hr, c) && str_field(c, "status") == "True" => Ok(()),
        Some(c) if is_current(hr, c) && str_field(c, "status") == "False" => {
            let stalled = upstream_condition(hr, "Stalled")
                .filter(|s| is_current(hr, s) && str_field(s, "status") == "True");
            let message = format!("{what} is not Ready: {}", said(c));
            Err(match stalled {
                Some(s) => PartState::failed(
                    reasons::VIRTUAL_CLUSTER_RELEASE_FAILED,
                    format!("{message}; Flux stopped retrying ({})", said(&s)),
                ),
                None => PartState::waiting(reasons::VIRTUAL_CLUSTER_RELEASE_FAILED, message),
            })
        }
        other => Err(PartState::waiting(
            reasons::VIRTUAL_CLUSTER_UPGRADING,
            format!(
                "Flux is installing or upgrading {what} (not Ready for generation {generation} yet{})",
                other
                    .as_ref()
                    .map(|c| format!("; {}", said(c)))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// Some host ServiceAccounts do not exist.
fn missing(plan: &Plan, accounts: &HostServiceAccounts, release: Option<&str>) -> PartState {
    let config_map = names::sync_rules_config_map(&plan.name);
    let prefix = release.map(|r| format!("{r}; ")).unwrap_or_default();
    let annotated = if accounts.annotated.is_empty() {
        String::new()
    } else {
        format!("; annotations applied to {}", accounts.annotated.join(", "))
    };
    match plan.mode {
        Mode::Shared => {
            let sa = accounts.missing.join(", ");
            PartState::waiting(
                reasons::VIRTUAL_CLUSTER_NOT_FOUND,
                format!(
                    "{prefix}host ServiceAccount {}/{sa} does not exist: install vcluster {:?} in namespace {} (with the values in ConfigMap {config_map}), or set spec.virtualCluster.workloadServiceAccount",
                    plan.namespace, plan.vcluster, plan.namespace
                ),
            )
        }
        Mode::PerServiceAccount => {
            let each: Vec<String> = accounts
                .missing
                .iter()
                .map(|host| match host_service_account::virtual_of(plan, host) {
                    Some((ns, name)) => format!(
                        "{ns}/{name} (host {host}): vcluster connect {vc} -n {hns} -- kubectl create serviceaccount {name} -n {ns}",
                        vc = plan.vcluster,
                        hns = plan.namespace,
                    ),
                    None => host.clone(),
                })
                .collect();
            PartState::waiting(
                reasons::SERVICE_ACCOUNTS_NOT_SYNCED,
                format!(
                    "{prefix}{} of {} ServiceAccount(s) not synced to the host yet; create them inside the vcluster: {}. If they exist there, vcluster {:?} does not sync ServiceAccounts: it must run with the values in ConfigMap {config_map} (sync.toHost.serviceAccounts.enabled){annotated}",
                    accounts.missing.len(),
                    accounts.missing.len() + accounts.annotated.len(),
                    each.join("; "),
                    plan.vcluster,
                ),
            )
        }
    }
}

/// The chart version the release runs: the latest release in `status.history`, else the last
/// attempted one (`status.lastAttemptedRevision`, `<version>+<digest>` for an OCIRepository
/// chart), else `spec.chart.spec.version` when it names one version (not a range).
pub fn chart_version(hr: &DynamicObject) -> Option<String> {
    let non_empty = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    non_empty(hr.data.pointer("/status/history/0/chartVersion"))
        .or_else(|| non_empty(hr.data.pointer("/status/lastAttemptedRevision")))
        .or_else(|| {
            non_empty(hr.data.pointer("/spec/chart/spec/version")).filter(|v| {
                let v = v.strip_prefix('v').unwrap_or(v);
                v.chars().next().is_some_and(|c| c.is_ascii_digit())
                    && !v.contains([' ', '<', '>', '=', '~', '^', '|', ','])
            })
        })
}

/// `(major, minor)` of a version such as `0.21.3`, `v0.20.0`, `0.22.0-beta.1+abc` or `0.20.x`.
pub fn major_minor(version: &str) -> Option<(u64, u64)> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// The dotted paths of `ours` that `theirs` sets to something else. A map is merged key by key,
/// so only its leaves can be overridden, or the map itself by a non-map (`null` included, which
/// Helm treats as "delete the key").
pub fn overrides(ours: &Value, theirs: &Value, path: &str) -> Vec<String> {
    match (ours, theirs) {
        (Value::Object(ours), Value::Object(theirs)) => ours
            .iter()
            .filter_map(|(k, v)| theirs.get(k).map(|t| (k, v, t)))
            .flat_map(|(k, v, t)| {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                overrides(v, t, &child)
            })
            .collect(),
        // No inline values at all.
        _ if path.is_empty() => Vec::new(),
        (ours, theirs) if ours == theirs => Vec::new(),
        _ => vec![path.to_string()],
    }
}
