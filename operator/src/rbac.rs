//! The Kubernetes API access the operator needs, derived from the child table, so the chart's
//! ClusterRole can be checked against the code (`tenant-identity-operator rbac`).

use serde::Serialize;
use tenant_identity_crd::kinds;

/// One RBAC rule: verbs on a resource of an API group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<&'static str>,
    /// Why the operator needs it.
    #[serde(skip)]
    pub why: &'static str,
}

fn rule(group: &str, resource: &str, verbs: &[&'static str], why: &'static str) -> AccessRule {
    AccessRule {
        api_groups: vec![group.to_string()],
        resources: vec![resource.to_string()],
        verbs: verbs.to_vec(),
        why,
    }
}

/// Every rule the reconcile uses. `require_namespace_grant` adds the namespace read; `verify`
/// (`run --verify`, on by default) adds the TokenRequests of verification.
pub fn required(require_namespace_grant: bool, verify: bool) -> Vec<AccessRule> {
    let mut rules = vec![
        rule(
            "identity.tenancy.dev",
            "tenantidentities",
            &["get", "list", "watch", "patch"],
            "the primary resource; patch adds and removes the finalizer; get reads an object the types cannot decode",
        ),
        rule(
            "identity.tenancy.dev",
            "tenantidentities/status",
            &["patch"],
            "status is server-side applied",
        ),
        rule(
            "events.k8s.io",
            "events",
            &["create"],
            "one Event per Ready transition",
        ),
    ];
    for resource in kinds::owned_resources() {
        rules.push(rule(
            &resource.group,
            &resource.plural,
            &["list", "watch", "create", "patch", "delete"],
            "an owned child kind: applied (create, patch), watched, pruned",
        ));
    }
    let uai = kinds::aso_user_assigned_identity();
    rules.push(rule(
        &uai.group,
        &uai.plural,
        &["list", "watch"],
        "identity binding: the ASO identity's status.clientId must be spec.azure.clientId (watched and cached; a list by name while the cache has not listed)",
    ));
    // The vcluster's host ServiceAccounts are not children, but the operator lists them and
    // patches its two annotations onto them; covered by the ServiceAccount rule above. So is the
    // deploy account kustomize-controller's finalizer looks up (`<name>-deploy` by default):
    // created when missing, owned by the Kustomization (no blockOwnerDeletion, which would need
    // update on kustomizations/finalizers), deleted when the tenant renames it.
    for resource in kinds::observed_resources() {
        rules.push(rule(
            &resource.group,
            &resource.plural,
            &["list", "watch"],
            "an observed kind: watched and cached (a list by name while the cache has not listed), never written",
        ));
    }
    if require_namespace_grant {
        rules.push(rule(
            "",
            "namespaces",
            &["list", "watch"],
            "the grant annotation on tenant namespaces",
        ));
    }
    if verify {
        // What Flux's source-controller holds for object-level workload identity: a token of a
        // tenant's ServiceAccount, requested for the credential's audience.
        rules.push(rule(
            "",
            "serviceaccounts/token",
            &["create"],
            "verification: a TokenRequest for each subject's ServiceAccount, exchanged at Entra as the tenant's pods and Flux would",
        ));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_owned_kind_is_covered() {
        let rules = required(false, false);
        for kind in kinds::ChildKind::all() {
            let r = kind.api_resource();
            assert!(
                rules
                    .iter()
                    .any(|x| x.api_groups == [r.group.clone()] && x.resources == [r.plural.clone()]),
                "{kind:?}"
            );
        }
        for r in kinds::observed_resources() {
            let rule = rules
                .iter()
                .find(|x| x.api_groups == [r.group.clone()] && x.resources == [r.plural.clone()])
                .unwrap_or_else(|| panic!("{} is read", r.kind));
            assert_eq!(rule.verbs, ["list", "watch"], "read only: {}", r.kind);
        }
        assert!(!rules.iter().any(|r| r.resources == ["namespaces"]));
        assert!(
            required(true, false)
                .iter()
                .any(|r| r.resources == ["namespaces"])
        );
    }

    #[test]
    fn token_requests_only_with_verification() {
        let token = |rules: &[AccessRule]| {
            rules
                .iter()
                .filter(|r| r.resources.iter().any(|res| res == "serviceaccounts/token"))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert!(token(&required(false, false)).is_empty());
        assert!(token(&required(true, false)).is_empty());
        for grant in [false, true] {
            let rules = token(&required(grant, true));
            assert_eq!(rules.len(), 1, "{rules:?}");
            assert_eq!(rules[0].api_groups, [""], "core group");
            assert_eq!(rules[0].verbs, ["create"], "create only");
            assert!(!rules[0].why.is_empty());
        }
        // Nothing else changes with verification.
        let mut with = required(false, true);
        with.retain(|r| r.resources != ["serviceaccounts/token"]);
        assert_eq!(with, required(false, false));
    }
}
