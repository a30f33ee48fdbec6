use super::answers::*;
use tenant_identity_crd::reasons;

/// Entra's error body as the token endpoint sends it (shape as quoted in the issues cited in
/// `answers`: `error`, `error_description` with the trace identifiers, `error_codes`, ...).
fn body(error: &str, code: u32, text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text} Trace ID: 007fc931-d337-4638-8760-8f5c9c231e00 Correlation ID: bc6ac312-88fd-4b97-8d37-6566985045b9 Timestamp: 2026-12-01 10:30:48Z"
        ),
        "error_codes": [code],
        "timestamp": "2026-12-01 10:30:48Z",
        "trace_id": "007fc931-d337-4638-8760-8f5c9c231e00",
        "correlation_id": "bc6ac312-88fd-4b97-8d37-6566985045b9",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    }))
    .expect("json")
}

const NO_MATCH_SUBJECT: &str = "No matching federated identity record found for presented assertion subject 'system:serviceaccount:team-a:vc-workload-team-a'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation";

#[test]
fn federation_codes_are_mismatches_whatever_the_status_and_error() {
    // 70021 has come as 400 invalid_request and as 401 invalid_client.
    for (status, error) in [(400, "invalid_request"), (401, "invalid_client")] {
        let r = classify_entra(
            status,
            &body(
                error,
                70021,
                "No matching federated identity record found for presented assertion.",
            ),
        );
        assert_eq!(r.reason, reasons::FEDERATION_MISMATCH);
        assert_eq!(r.field, Some(Field::Unspecified));
    }
    for (code, field) in [
        (700211, Field::Issuer),
        (700212, Field::Audience),
        (700213, Field::Subject),
        (7002138, Field::SubjectCase),
    ] {
        let r = classify_entra(401, &body("invalid_client", code, NO_MATCH_SUBJECT));
        assert_eq!(
            (r.reason, r.field, r.code),
            (reasons::FEDERATION_MISMATCH, Some(field), Some(code))
        );
    }
}

#[test]
fn other_codes_are_classified_by_code_not_by_status() {
    let cases = [
        (
            400,
            "invalid_request",
            50166,
            "Request to External OIDC endpoint failed.",
            reasons::ISSUER_UNREACHABLE,
        ),
        (
            400,
            "unauthorized_client",
            700016,
            "Application with identifier 'x' was not found in the directory 'y'.",
            reasons::CLIENT_NOT_FOUND,
        ),
        (
            400,
            "invalid_request",
            90002,
            "Tenant 'y' not found.",
            reasons::CLIENT_NOT_FOUND,
        ),
        (
            400,
            "invalid_request",
            900023,
            "Specified tenant identifier 'y' is neither a valid DNS name, nor a valid external domain.",
            reasons::CLIENT_NOT_FOUND,
        ),
        // The same 400 invalid_request as 50166, another code: not IssuerUnreachable.
        (
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_assertion'.",
            reasons::EXCHANGE_FAILED,
        ),
        (
            503,
            "temporarily_unavailable",
            50196,
            "The server terminated an operation because it encountered a client request loop.",
            reasons::EXCHANGE_FAILED,
        ),
    ];
    for (status, error, code, text, reason) in cases {
        assert_eq!(
            classify_entra(status, &body(error, code, text)).reason,
            reason,
            "{code}"
        );
    }
}

#[test]
fn the_code_is_read_from_the_description_when_error_codes_is_absent() {
    let b = serde_json::to_vec(&serde_json::json!({
        "error": "invalid_client",
        "error_description": format!("AADSTS700213: {NO_MATCH_SUBJECT}"),
    }))
    .expect("json");
    let r = classify_entra(401, &b);
    assert_eq!(
        (r.reason, r.code),
        (reasons::FEDERATION_MISMATCH, Some(700213))
    );
}

#[test]
fn messages_drop_the_identifiers_that_change_with_every_answer() {
    let r = classify_entra(401, &body("invalid_client", 700213, NO_MATCH_SUBJECT));
    assert!(!r.description.contains("Trace ID"), "{}", r.description);
    assert!(!r.description.contains("007fc931"), "{}", r.description);
    assert!(
        r.description
            .starts_with("AADSTS700213: No matching federated identity record")
    );
}

#[test]
fn a_body_that_is_not_entras_is_an_exchange_failure() {
    let r = classify_entra(502, b"<html>Bad Gateway</html>");
    assert_eq!((r.reason, r.code), (reasons::EXCHANGE_FAILED, None));
    assert!(r.description.contains("502"));
}

fn written() -> Written<'static> {
    Written {
        credential: "ti-team-a-0123abcd",
        issuer: "https://oidc.example/tenant/",
        subject: "system:serviceaccount:team-a:vc-workload-team-a",
        audience: "api://AzureADTokenExchange",
    }
}

fn presented(issuer: &str, subject: &str) -> Presented {
    Presented {
        issuer: issuer.into(),
        subject: subject.into(),
        audience: "api://AzureADTokenExchange".into(),
    }
}

#[test]
fn a_mismatch_names_the_field_that_differs() {
    let refusal = classify_entra(
        401,
        &body(
            "invalid_client",
            700211,
            "No matching federated identity record found for presented assertion issuer 'https://oidc.example/tenant'.",
        ),
    );
    let m = mismatch_message(
        &refusal,
        Some(&presented("https://oidc.example/tenant", written().subject)),
        written(),
    );
    assert!(m.contains("AADSTS700211"), "{m}");
    assert!(m.contains("the issuer differs"), "{m}");
    assert!(
        m.contains("presented issuer 'https://oidc.example/tenant'"),
        "{m}"
    );
    assert!(m.contains("trailing slash"), "{m}");
    assert!(
        m.contains(
            "credential ti-team-a-0123abcd was written with issuer 'https://oidc.example/tenant/'"
        ),
        "{m}"
    );
}

#[test]
fn a_mismatch_with_what_was_written_points_at_azure_and_the_code_s_field() {
    let refusal = classify_entra(401, &body("invalid_client", 7002138, NO_MATCH_SUBJECT));
    let m = mismatch_message(
        &refusal,
        Some(&presented(written().issuer, written().subject)),
        written(),
    );
    assert!(m.contains("changed or deleted outside the operator"), "{m}");
    assert!(m.contains("case of the subject"), "{m}");
    let refusal = classify_entra(401, &body("invalid_client", 700212, NO_MATCH_SUBJECT));
    let m = mismatch_message(&refusal, None, written());
    assert!(m.contains("the audience"), "{m}");
    assert!(m.contains("could not be read"), "{m}");
}

#[test]
fn issuer_unreachable_says_how_to_enable_the_aks_oidc_issuer() {
    let refusal = classify_entra(
        400,
        &body(
            "invalid_request",
            50166,
            "Request to External OIDC endpoint failed.",
        ),
    );
    let m = refusal_message(&refusal, "client", "tenant", "https://oidc.example/");
    assert!(m.contains("--enable-oidc-issuer"), "{m}");
    assert!(m.contains("https://oidc.example/"), "{m}");
}

#[test]
fn git_answers() {
    let git = GIT_ADVERTISEMENT;
    assert_eq!(
        classify_git(200, git, "u", "c").reason,
        reasons::GIT_ACCESS_GRANTED
    );
    for status in [401, 403] {
        let a = classify_git(
            status,
            "text/plain",
            "https://dev.azure.com/o/p/_git/r",
            "c-1",
        );
        assert_eq!(a.reason, reasons::GIT_ACCESS_DENIED);
        assert!(
            a.message.contains("Azure DevOps organization"),
            "{}",
            a.message
        );
        assert!(a.message.contains("c-1"), "{}", a.message);
    }
    // Azure DevOps' sign-in page for a token it does not take.
    assert_eq!(
        classify_git(203, "text/html", "u", "c").reason,
        reasons::GIT_ACCESS_DENIED
    );
    // A 200 that is not git (a proxy's page, say) proves nothing.
    assert_eq!(
        classify_git(200, "text/html", "u", "c").reason,
        reasons::GIT_CHECK_FAILED
    );
    assert_eq!(
        classify_git(404, "", "u", "c").reason,
        reasons::REPOSITORY_NOT_FOUND
    );
    assert_eq!(
        classify_git(302, "", "u", "c").reason,
        reasons::GIT_CHECK_FAILED
    );
    assert_eq!(
        classify_git(500, "", "u", "c").reason,
        reasons::GIT_CHECK_FAILED
    );
}

#[test]
fn info_refs_url_keeps_the_path_and_replaces_scheme_and_host() {
    let url = |git: &str, endpoint: Option<&str>| {
        let endpoint = endpoint.map(|e| reqwest::Url::parse(e).expect("endpoint"));
        info_refs_url(git, endpoint.as_ref()).map(|u| u.to_string())
    };
    assert_eq!(
        url("https://dev.azure.com/org/project/_git/repo", None).as_deref(),
        Ok("https://dev.azure.com/org/project/_git/repo/info/refs?service=git-upload-pack")
    );
    assert_eq!(
        url(
            "https://org@dev.azure.com/org/project/_git/repo",
            Some("http://127.0.0.1:8080")
        )
        .as_deref(),
        Ok("http://127.0.0.1:8080/org/project/_git/repo/info/refs?service=git-upload-pack")
    );
    assert_eq!(
        url(
            "https://dev.azure.com/org/p/_git/r/",
            Some("https://proxy.example/devops/")
        )
        .as_deref(),
        Ok("https://proxy.example/devops/org/p/_git/r/info/refs?service=git-upload-pack")
    );
    assert!(url("not a url", None).is_err());
}

#[test]
fn failures_only_a_person_can_fix_are_terminal() {
    for reason in [
        reasons::FEDERATION_MISMATCH,
        reasons::ISSUER_UNREACHABLE,
        reasons::CLIENT_NOT_FOUND,
        reasons::GIT_ACCESS_DENIED,
        reasons::REPOSITORY_NOT_FOUND,
    ] {
        assert!(is_terminal(reason), "{reason}");
    }
    for reason in [
        reasons::EXCHANGE_FAILED,
        reasons::GIT_CHECK_FAILED,
        reasons::VERIFYING,
    ] {
        assert!(!is_terminal(reason), "{reason}");
    }
}
