//! Matching a verified assertion against an application's federated identity credentials, as
//! Entra does: issuer, subject and audience compared byte for byte (case-sensitive, no
//! trailing-slash folding), and a credential only counts once it has propagated.

use super::errors::EntraError;
use super::jwt::Assertion;
use crate::model::FederatedCredential;

/// One credential of the application, and whether Entra already sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) credential: FederatedCredential,
    /// False while the credential is within the identity's propagation delay.
    pub(crate) propagated: bool,
}

/// Whether any credential (propagated or not) trusts `issuer`: Entra fetches nothing from an
/// issuer the application does not trust, it answers AADSTS700211 first.
pub(crate) fn trusts_issuer(candidates: &[Candidate], issuer: &str) -> bool {
    candidates.iter().any(|c| c.credential.issuer == issuer)
}

/// Accept `assertion` (already verified) or refuse it with the code Entra uses:
///
/// 1. an exact match that has propagated: accepted;
/// 2. an exact match still propagating: AADSTS70021;
/// 3. among propagated credentials, none with the issuer: AADSTS700211;
/// 4. none with issuer and subject: AADSTS7002138 if a subject matches ignoring case, else
///    AADSTS700213;
/// 5. otherwise the audience is what differs: AADSTS700212.
pub(crate) fn decide(
    candidates: &[Candidate],
    assertion: &Assertion,
    no_match_as_unauthorized: bool,
) -> Result<(), EntraError> {
    let exact = |c: &&Candidate| {
        c.credential.issuer == assertion.issuer
            && c.credential.subject == assertion.subject
            && assertion.audiences.contains(&c.credential.audience)
    };
    if candidates.iter().filter(exact).any(|c| c.propagated) {
        return Ok(());
    }
    if candidates.iter().any(|c| exact(&c)) {
        return Err(EntraError::no_match(
            &assertion.issuer,
            &assertion.subject,
            &assertion.audience_text(),
            no_match_as_unauthorized,
        ));
    }
    let with_issuer: Vec<&FederatedCredential> = candidates
        .iter()
        .filter(|c| c.propagated && c.credential.issuer == assertion.issuer)
        .map(|c| &c.credential)
        .collect();
    if with_issuer.is_empty() {
        return Err(EntraError::issuer_not_found(&assertion.issuer));
    }
    if !with_issuer.iter().any(|c| c.subject == assertion.subject) {
        if with_issuer
            .iter()
            .any(|c| c.subject.to_lowercase() == assertion.subject.to_lowercase())
        {
            return Err(EntraError::subject_case_mismatch(&assertion.subject));
        }
        return Err(EntraError::subject_not_found(&assertion.subject));
    }
    Err(EntraError::audience_not_found(&assertion.audience_text()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    const ISS: &str = "https://oidc.example/issuer/";
    const SUB: &str = "system:serviceaccount:team-a:app";
    const AUD: &str = "api://AzureADTokenExchange";

    fn assertion(iss: &str, sub: &str, aud: &str) -> Assertion {
        let seg = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let t = format!(
            "{}.{}.c2ln",
            seg(json!({"alg": "RS256"})),
            seg(json!({"iss": iss, "sub": sub, "aud": [aud], "exp": 1}))
        );
        Assertion::parse(&t).expect("parses")
    }

    fn candidate(iss: &str, sub: &str, aud: &str, propagated: bool) -> Candidate {
        Candidate {
            credential: FederatedCredential::new(iss, sub, aud),
            propagated,
        }
    }

    fn code(candidates: &[Candidate], a: &Assertion) -> Option<u32> {
        decide(candidates, a, false).err().map(|e| e.code)
    }

    #[test]
    fn each_mismatch_gets_its_code() {
        let a = assertion(ISS, SUB, AUD);
        let ok = candidate(ISS, SUB, AUD, true);
        assert_eq!(code(std::slice::from_ref(&ok), &a), None);
        assert_eq!(code(&[candidate(ISS, SUB, AUD, false)], &a), Some(70021));
        assert_eq!(
            code(
                &[candidate("https://oidc.example/issuer", SUB, AUD, true)],
                &a
            ),
            Some(700211),
            "a trailing slash is part of the issuer"
        );
        assert_eq!(code(&[], &a), Some(700211));
        assert_eq!(
            code(
                &[candidate(
                    ISS,
                    "system:serviceaccount:team-a:other",
                    AUD,
                    true
                )],
                &a
            ),
            Some(700213)
        );
        assert_eq!(
            code(
                &[candidate(
                    ISS,
                    "system:serviceaccount:Team-A:app",
                    AUD,
                    true
                )],
                &a
            ),
            Some(7002138)
        );
        assert_eq!(
            code(&[candidate(ISS, SUB, "api://other", true)], &a),
            Some(700212)
        );
        assert_eq!(
            code(&[candidate(ISS, SUB, AUD, false), ok.clone()], &a),
            None,
            "one propagated exact match is enough"
        );
        assert_eq!(
            code(
                &[
                    candidate(ISS, SUB, AUD, false),
                    candidate(ISS, "x", AUD, true)
                ],
                &a
            ),
            Some(70021),
            "a propagating exact match is 70021, not the other credentials' mismatch"
        );
    }

    #[test]
    fn no_match_status_follows_the_knob() {
        let a = assertion(ISS, SUB, AUD);
        let propagating = [candidate(ISS, SUB, AUD, false)];
        let e = decide(&propagating, &a, false).expect_err("70021");
        assert_eq!((e.status.as_u16(), e.error), (400, "invalid_request"));
        let e = decide(&propagating, &a, true).expect_err("70021");
        assert_eq!((e.status.as_u16(), e.error), (401, "invalid_client"));
        assert!(e.message.contains(&format!("Assertion Issuer: '{ISS}'")));
        assert!(e.message.contains(&format!("Assertion Subject: '{SUB}'")));
        assert!(e.message.contains(&format!("Assertion Audience: '{AUD}'")));
    }

    #[test]
    fn issuer_trust_includes_propagating_credentials() {
        assert!(trusts_issuer(&[candidate(ISS, SUB, AUD, false)], ISS));
        assert!(!trusts_issuer(
            &[candidate(ISS, SUB, AUD, true)],
            "https://other/"
        ));
    }
}
