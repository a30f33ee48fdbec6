//! Deterministic names. Every name the operator writes is a pure function of the
//! TenantIdentity, so a restart or a second replica never creates a duplicate.

use sha2::{Digest, Sha256};

/// Field manager of every server-side apply, and the label on every child (defined with the
/// child table).
pub use tenant_identity_crd::kinds::{FIELD_MANAGER, TENANT_LABEL};
/// Finalizer guarding cleanup that garbage collection cannot do (host SA annotations, ARM).
pub const FINALIZER: &str = "identity.tenancy.dev/cleanup";
/// Namespace annotation through which the platform team grants client ids to a namespace.
pub const GRANT_ANNOTATION: &str = "identity.tenancy.dev/allowed-client-ids";
/// Flux's "reconcile now" annotation, honoured like Flux controllers do.
pub const REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// Whether `ti` carries a reconcile request (`reconcile.fluxcd.io/requestedAt`) not handled yet:
/// "look again now", so no memo of an earlier look is trusted.
pub fn reconcile_requested(ti: &tenant_identity_crd::TenantIdentity) -> bool {
    use kube::ResourceExt;
    ti.annotations()
        .get(REQUESTED_AT_ANNOTATION)
        .is_some_and(|r| {
            ti.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_ref())
                != Some(r)
        })
}

/// Azure workload identity annotations read by the AKS webhook and by Flux.
pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

const MAX_HOST_NAME: usize = 63;
const HASH_PREFIX_LEN: usize = 52;

/// vcluster's `SafeConcatName`: how a virtual object becomes a host object name in
/// single-namespace mode. Join with `-`; above 63 bytes keep 52 bytes, append `-` and 10 hex
/// chars of the SHA-256 of the whole joined string; finally turn every `.-` into `-`.
pub fn safe_concat_name(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let name = if joined.len() > MAX_HOST_NAME {
        let digest = hex::encode(Sha256::digest(joined.as_bytes()));
        // Names are ASCII (DNS-1123), but never split a UTF-8 sequence on odd input.
        let mut cut = HASH_PREFIX_LEN;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}-{}", &joined[..cut], &digest[..10])
    } else {
        joined
    };
    name.replace(".-", "-")
}

/// The host name of virtual ServiceAccount `namespace/name` of vcluster `vcluster`.
pub fn synced_service_account_name(name: &str, namespace: &str, vcluster: &str) -> String {
    safe_concat_name(&[name, "x", namespace, "x", vcluster])
}

/// vcluster's default host workload ServiceAccount.
pub fn default_workload_service_account(vcluster: &str) -> String {
    format!("vc-workload-{vcluster}")
}

pub fn service_account_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// Federated identity credential name: `<ns>-<name>-<10 hex of sha256(ns/name/subject)>`.
/// Valid for ARM (`^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`) and as a Kubernetes object name, readable
/// in the Azure portal, and unique per subject.
pub fn credential_name(namespace: &str, name: &str, subject: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{namespace}/{name}/{subject}")));
    format!("{}-{}", credential_prefix(namespace, name), &digest[..10])
}

/// `<ns>-<name>`, cut to leave room for `-` and the 10 hex chars within ARM's 120.
fn credential_prefix(namespace: &str, name: &str) -> String {
    let mut prefix = format!("{namespace}-{name}");
    prefix.truncate(109);
    prefix.trim_end_matches('-').to_string()
}

/// Whether a credential on an identity is one this TenantIdentity wrote, judged by what the
/// credential is: its name is exactly the one this tenant derives from the credential's own
/// subject, [`credential_name`]`(namespace, name, subject)` (ARM names compare
/// case-insensitively). The name pattern alone is not enough: namespace `team`'s tenant `a-app`
/// and namespace `team-a`'s tenant `app` share the prefix `team-a-app`, but only the digest of
/// namespace/name/subject the tenant itself would write matches.
pub fn is_own_credential(namespace: &str, name: &str, credential: &str, subject: &str) -> bool {
    has_own_credential_shape(namespace, name, credential)
        && credential.eq_ignore_ascii_case(&credential_name(namespace, name, subject))
}

/// The cheap prefilter of [`is_own_credential`]: the name is exactly `<ns>-<name>-` and 10 hex
/// chars. Never proof of ownership on its own (another namespace's tenant can share the prefix).
fn has_own_credential_shape(namespace: &str, name: &str, credential: &str) -> bool {
    let prefix = credential_prefix(namespace, name);
    credential.len() == prefix.len() + 11
        && credential.is_char_boundary(prefix.len())
        && credential[..prefix.len()].eq_ignore_ascii_case(&prefix)
        && credential[prefix.len()..].starts_with('-')
        && credential[prefix.len() + 1..]
            .chars()
            .all(|c| c.is_ascii_hexdigit())
}

pub fn sync_rules_config_map(name: &str) -> String {
    format!("{name}-vcluster-identity")
}

pub fn git_service_account(name: &str) -> String {
    format!("{name}-git")
}

/// vcluster stores the kubeconfig of release `<vc>` in Secret `vc-<vc>`.
pub fn vcluster_kubeconfig_secret(vcluster: &str) -> String {
    format!("vc-{vcluster}")
}

/// Where Flux reaches the vcluster API from inside the host cluster.
pub fn vcluster_service_url(vcluster: &str, namespace: &str) -> String {
    format!("https://{vcluster}.{namespace}:443")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Vectors {
        vectors: Vec<Vector>,
    }

    #[derive(Deserialize)]
    struct Vector {
        name: String,
        namespace: String,
        vcluster_name: String,
        host_name: String,
    }

    /// The project's vectors, committed so that a clone stands on its own.
    const VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vcluster-host-names.json"
    );

    /// Where the vectors come from: the shared checkout beside the repository, when there is one.
    const SHARED_VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/vcluster-host-names.json"
    );

    #[test]
    fn the_committed_vectors_are_the_shared_ones() {
        // Only a checkout with the shared folder beside it can compare (CI has one).
        let Ok(shared) = std::fs::read_to_string(SHARED_VECTORS) else {
            return;
        };
        let committed = std::fs::read_to_string(VECTORS).expect("committed vectors");
        assert_eq!(
            committed, shared,
            "operator/tests/data/vcluster-host-names.json differs from shared/vectors: copy it again"
        );
    }

    #[test]
    fn every_upstream_vector_matches() {
        let text = std::fs::read_to_string(VECTORS).expect("committed vectors");
        let vectors: Vectors = serde_json::from_str(&text).unwrap();
        assert!(
            vectors.vectors.len() >= 10,
            "vector file unexpectedly small"
        );
        for v in &vectors.vectors {
            assert_eq!(
                synced_service_account_name(&v.name, &v.namespace, &v.vcluster_name),
                v.host_name,
                "{}/{} in {}",
                v.namespace,
                v.name,
                v.vcluster_name
            );
        }
    }

    #[test]
    fn credential_names_fit_arm_and_kubernetes() {
        let long_ns = "n".repeat(63);
        let long_name = "t".repeat(45);
        for (ns, name) in [("team-a", "team-a"), (long_ns.as_str(), long_name.as_str())] {
            let n = credential_name(ns, name, "system:serviceaccount:x:y");
            assert!(n.len() <= 120 && n.len() >= 3, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
            assert!(n.chars().next().unwrap().is_ascii_alphanumeric());
            assert!(!n.contains("--"), "{n}");
        }
        assert_ne!(
            credential_name("a", "b", "system:serviceaccount:a:x"),
            credential_name("a", "b", "system:serviceaccount:a:X"),
            "subjects are case-sensitive"
        );
    }

    #[test]
    fn own_credentials_are_recognised_by_name_and_subject() {
        let subject = "system:serviceaccount:team-a:x";
        let mine = credential_name("team-a", "app", subject);
        assert!(is_own_credential("team-a", "app", &mine, subject));
        assert!(is_own_credential(
            "team-a",
            "app",
            &mine.to_uppercase(),
            subject
        ));
        assert!(
            !is_own_credential("team-a", "app", &mine, "system:serviceaccount:team-a:y"),
            "our name on a credential of another subject is not ours"
        );
        for foreign in [
            "team-a-app-b-0123456789".to_string(), // tenant "app-b"
            "team-a-app-0123456789".to_string(),   // the pattern, not the digest
            "team-a-ap-0123456789".to_string(),
            "team-a-app-012345678".to_string(),
            "team-a-app-0123456789a".to_string(),
            "team-a-app-012345678g".to_string(),
            "manual-credential".to_string(),
            credential_name("team-a", "app-b", subject),
            credential_name("team-b", "app", subject),
        ] {
            assert!(
                !is_own_credential("team-a", "app", &foreign, subject),
                "{foreign}"
            );
        }
    }

    #[test]
    fn tenants_whose_names_share_a_prefix_never_own_each_others_credentials() {
        // Namespace `team` tenant `a-app` and namespace `team-a` tenant `app`: both prefixes are
        // `team-a-app`, so the shape alone cannot tell them apart.
        let victim_subject = "system:serviceaccount:team-a:vc-workload-app";
        let victims = credential_name("team-a", "app", victim_subject);
        assert!(victims.starts_with("team-a-app-"));
        assert!(has_own_credential_shape("team", "a-app", &victims));
        assert!(!is_own_credential(
            "team",
            "a-app",
            &victims,
            victim_subject
        ));
        assert!(is_own_credential("team-a", "app", &victims, victim_subject));
        let attacker_subject = "system:serviceaccount:team:vc-workload-a-app";
        let attackers = credential_name("team", "a-app", attacker_subject);
        assert!(attackers.starts_with("team-a-app-"));
        assert!(!is_own_credential(
            "team-a",
            "app",
            &attackers,
            attacker_subject
        ));
        assert!(is_own_credential(
            "team",
            "a-app",
            &attackers,
            attacker_subject
        ));
    }

    proptest! {
        #[test]
        fn host_names_are_bounded_and_stable(
            // DNS-1123 subdomains, as the API server allows for ServiceAccount names.
            name in "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?){0,3}",
            ns in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
            vc in "[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?",
        ) {
            let a = synced_service_account_name(&name, &ns, &vc);
            let b = synced_service_account_name(&name, &ns, &vc);
            prop_assert_eq!(&a, &b);
            prop_assert!(a.len() <= 63, "{} is {} bytes", a, a.len());
            prop_assert!(!a.contains(".-"));
            let joined = format!("{name}-x-{ns}-x-{vc}");
            if joined.len() <= 63 {
                prop_assert_eq!(a, joined.replace(".-", "-"));
            }
        }

        #[test]
        fn credential_names_always_valid(
            ns in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
            name in "[a-z0-9]([-a-z0-9]{0,43}[a-z0-9])?",
            subject in "\\PC{0,200}",
        ) {
            let n = credential_name(&ns, &name, &subject);
            prop_assert!(n.len() >= 3 && n.len() <= 120);
            prop_assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert_eq!(n, credential_name(&ns, &name, &subject));
        }
    }
}
