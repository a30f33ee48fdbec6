//! Tenant isolation: the operator holds rights over many identities, so a TenantIdentity must not
//! be a way to borrow another tenant's. Pure functions over what the controller's cache holds.

use kube::ResourceExt;
use tenant_identity_crd::{TenantIdentity, reasons};

use crate::plan::SpecError;

/// A clientId belongs to the namespace of its earliest TenantIdentity (creation time, then
/// namespace/name for a stable tie-break). Any TenantIdentity in another namespace is refused.
pub fn claim_conflict<'a>(
    me: &'a TenantIdentity,
    all: impl IntoIterator<Item = &'a TenantIdentity>,
) -> Option<SpecError> {
    let my_ns = me.namespace().unwrap_or_default();
    let key = |ti: &TenantIdentity| {
        (
            ti.creation_timestamp(),
            ti.namespace().unwrap_or_default(),
            ti.name_any(),
        )
    };
    let owner = all
        .into_iter()
        .filter(|ti| {
            ti.spec
                .azure
                .client_id
                .eq_ignore_ascii_case(&me.spec.azure.client_id)
        })
        .chain(std::iter::once(me))
        // Objects not yet persisted (no timestamp) sort last: they are the newest claim.
        .min_by(|a, b| {
            let (ta, na, ma) = key(a);
            let (tb, nb, mb) = key(b);
            match (ta, tb) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
            .then(na.cmp(&nb))
            .then(ma.cmp(&mb))
        })?;
    let owner_ns = owner.namespace().unwrap_or_default();
    (owner_ns != my_ns).then(|| SpecError {
        reason: reasons::IDENTITY_CLAIM_CONFLICT,
        message: format!(
            "clientId {} is already claimed by TenantIdentity {}/{}; an identity can serve one namespace only",
            me.spec.azure.client_id,
            owner_ns,
            owner.name_any()
        ),
    })
}

/// With `--require-namespace-grant`, the namespace must list the clientId in
/// `identity.tenancy.dev/allowed-client-ids` (comma-separated, set by the platform team).
pub fn grant_check(
    client_id: &str,
    namespace: &str,
    grant_annotation: Option<&str>,
) -> Result<(), SpecError> {
    let granted = grant_annotation
        .into_iter()
        .flat_map(|v| v.split(','))
        .any(|g| g.trim().eq_ignore_ascii_case(client_id));
    if granted {
        Ok(())
    } else {
        Err(SpecError {
            reason: reasons::IDENTITY_NOT_GRANTED,
            message: format!(
                "namespace {namespace} does not grant clientId {client_id}: a platform admin must add it to the namespace annotation {}",
                crate::names::GRANT_ANNOTATION
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

    fn ti(ns: &str, name: &str, client: &str, created: Option<i64>) -> TenantIdentity {
        let mut t: TenantIdentity = serde_json::from_value(serde_json::json!({
            "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"azure": {"clientId": client, "identity": {"azureServiceOperator": {"name": "x"}}}}
        }))
        .unwrap();
        t.metadata.creation_timestamp = created.map(|s| Time(Timestamp::from_second(s).unwrap()));
        t
    }

    const C1: &str = "6f1c0000-0000-0000-0000-000000000001";

    #[test]
    fn first_namespace_keeps_the_claim() {
        let a = ti("ns-a", "a", C1, Some(10));
        let b = ti("ns-b", "b", &C1.to_uppercase(), Some(20));
        let all = [a.clone(), b.clone()];
        assert_eq!(claim_conflict(&a, &all), None);
        let err = claim_conflict(&b, &all).expect("later namespace refused");
        assert_eq!(err.reason, "IdentityClaimConflict");
        assert!(err.message.contains("ns-a/a"), "{}", err.message);
    }

    #[test]
    fn same_namespace_may_share_and_new_objects_lose() {
        let a = ti("ns-a", "a", C1, Some(10));
        let a2 = ti("ns-a", "a2", C1, Some(30));
        let fresh = ti("ns-b", "new", C1, None);
        let all = [a.clone(), a2.clone()];
        assert_eq!(claim_conflict(&a2, &all), None);
        assert!(claim_conflict(&fresh, &all).is_some());
        // Once the owner namespace's claims are gone, the next one wins.
        assert_eq!(claim_conflict(&fresh, std::iter::empty()), None);
    }

    #[test]
    fn grants() {
        assert!(grant_check(C1, "ns", Some(&format!("x, {}", C1.to_uppercase()))).is_ok());
        let e = grant_check(C1, "ns", Some("00000000-0000-0000-0000-000000000000")).unwrap_err();
        assert_eq!(e.reason, "IdentityNotGranted");
        assert!(
            e.message
                .contains("identity.tenancy.dev/allowed-client-ids")
        );
        assert!(grant_check(C1, "ns", None).is_err());
    }
}
