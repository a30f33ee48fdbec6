//! ARM request paths the fake serves. Literal segments match case-insensitively because ARM
//! paths do; every segment is percent-decoded.

use percent_encoding::percent_decode_str;

use crate::model::IdentityRef;

/// `.../userAssignedIdentities/{i}/federatedIdentityCredentials[/{n}]`.
pub(crate) struct ArmPath {
    pub(crate) identity: IdentityRef,
    /// The credential's name; `None` for the collection.
    pub(crate) credential: Option<String>,
}

/// Segments of the identity's own path:
/// `subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{i}`.
const IDENTITY_SEGMENTS: usize = 8;

/// Parse `/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ManagedIdentity/
/// userAssignedIdentities/{i}/federatedIdentityCredentials[/{n}]`.
pub(crate) fn parse_arm_path(path: &str) -> Option<ArmPath> {
    let segments = decoded_segments(path);
    if segments.len() != IDENTITY_SEGMENTS + 1 && segments.len() != IDENTITY_SEGMENTS + 2 {
        return None;
    }
    let identity = identity_prefix(&segments)?;
    if !segments[IDENTITY_SEGMENTS].eq_ignore_ascii_case("federatedIdentityCredentials") {
        return None;
    }
    Some(ArmPath {
        identity,
        credential: segments.get(IDENTITY_SEGMENTS + 1).cloned(),
    })
}

/// Parse `/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ManagedIdentity/
/// userAssignedIdentities/{i}` (the identity itself).
pub(crate) fn parse_identity_path(path: &str) -> Option<IdentityRef> {
    let segments = decoded_segments(path);
    if segments.len() != IDENTITY_SEGMENTS {
        return None;
    }
    identity_prefix(&segments)
}

fn decoded_segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect()
}

/// The identity the first [`IDENTITY_SEGMENTS`] segments address; `None` if a literal segment
/// does not match or any segment is empty.
fn identity_prefix(segments: &[String]) -> Option<IdentityRef> {
    if segments.len() < IDENTITY_SEGMENTS || segments.iter().any(String::is_empty) {
        return None;
    }
    let literal = |i: usize, expected: &str| segments[i].eq_ignore_ascii_case(expected);
    let ok = literal(0, "subscriptions")
        && literal(2, "resourceGroups")
        && literal(4, "providers")
        && literal(5, "Microsoft.ManagedIdentity")
        && literal(6, "userAssignedIdentities");
    ok.then(|| IdentityRef::new(&segments[1], &segments[3], &segments[7]))
}

/// Percent-decode one path segment; malformed escapes are kept as they are and invalid UTF-8
/// becomes U+FFFD.
fn percent_decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_path_parsing_is_case_insensitive_and_decodes() {
        let p = parse_arm_path(
            "/subscriptions/s/resourcegroups/rg%28x%29/providers/microsoft.managedidentity/USERASSIGNEDIDENTITIES/id/federatedidentitycredentials/fic",
        )
        .expect("parses");
        assert_eq!(p.identity, IdentityRef::new("s", "rg(x)", "id"));
        assert_eq!(p.credential.as_deref(), Some("fic"));
        assert!(parse_arm_path("/subscriptions/s/resourceGroups/rg").is_none());
        assert!(
            parse_arm_path(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Other/userAssignedIdentities/i/federatedIdentityCredentials"
            )
            .is_none()
        );
    }

    #[test]
    fn identity_path_parsing() {
        assert_eq!(
            parse_identity_path(
                "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userassignedidentities/id%20x"
            ),
            Some(IdentityRef::new("s", "rg", "id x"))
        );
        for other in [
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i/federatedIdentityCredentials",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Other/userAssignedIdentities/i",
        ] {
            assert!(parse_identity_path(other).is_none(), "{other}");
        }
        assert!(
            parse_arm_path(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i"
            )
            .is_none(),
            "the identity itself is not a FIC path"
        );
    }

    #[test]
    fn percent_decoding_leaves_malformed_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%"), "%");
    }
}
