use super::*;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

fn identity() -> ManagedIdentity {
    ManagedIdentity {
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
        name: "id".into(),
    }
}

fn answer(status: u16, body: &str, retry_after: Option<&str>) -> Answer {
    let mut headers = HeaderMap::new();
    if let Some(v) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from_str(v).expect("header"));
    }
    Answer {
        status: StatusCode::from_u16(status).expect("status"),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn arm_body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

#[test]
fn classification_table() {
    let id = identity();
    let cases = [
        (
            429,
            arm_body("TooManyRequests", "slow"),
            Some("7"),
            "Throttled",
        ),
        (
            500,
            arm_body("InternalServerError", "x"),
            None,
            "ArmUnavailable",
        ),
        (503, String::new(), Some("3"), "ArmUnavailable"),
        (
            403,
            arm_body("AuthorizationFailed", "no"),
            None,
            "AuthorizationFailed",
        ),
        (
            401,
            arm_body("InvalidAuthenticationToken", "no"),
            None,
            "AuthenticationFailed",
        ),
        (
            404,
            arm_body("ParentResourceNotFound", "gone"),
            None,
            "IdentityNotFound",
        ),
        (
            409,
            arm_body(
                "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
                "busy",
            ),
            None,
            "ConcurrentWrite",
        ),
        (
            400,
            arm_body(
                "BadRequest",
                "Issuer and subject combination already exists for this Managed Identity.",
            ),
            None,
            "DuplicateSubject",
        ),
        (
            400,
            arm_body(
                "BadRequest",
                "Federated identity credentials must have exactly 1 audience.",
            ),
            None,
            "InvalidRequest",
        ),
        (
            405,
            arm_body(
                "MethodNotAllowed",
                "The request format was unexpected: Support for federated identity credentials not enabled.",
            ),
            None,
            "InvalidRequest",
        ),
    ];
    for (status, body, retry_after, reason) in cases {
        let err = classify(&id, &answer(status, &body, retry_after));
        assert_eq!(err.reason(), reason, "{status} {body}");
    }
    let err = classify(
        &id,
        &answer(429, &arm_body("TooManyRequests", "slow"), Some("7")),
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    let err = classify(
        &id,
        &answer(
            400,
            &arm_body(
                "BadRequest",
                "Federated Identity Credential name 'x' is invalid.",
            ),
            None,
        ),
    );
    assert_eq!(
        err,
        ArmError::InvalidRequest {
            code: "BadRequest".into(),
            message: "Federated Identity Credential name 'x' is invalid.".into()
        }
    );
    assert!(err.is_terminal());
    // A non-JSON body still yields a readable message.
    let err = classify(&id, &answer(502, "<html>bad gateway</html>", None));
    assert!(err.to_string().contains("bad gateway"), "{err}");
}

#[test]
fn retry_after_seconds_and_http_date() {
    let mut h = HeaderMap::new();
    h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
    assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(120)));
    let future = chrono::Utc::now() + chrono::TimeDelta::seconds(90);
    let date = future.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    h.insert(RETRY_AFTER, HeaderValue::from_str(&date).expect("header"));
    let d = parse_retry_after(&h).expect("date parses");
    assert!(
        d > Duration::from_secs(80) && d <= Duration::from_secs(90),
        "{d:?}"
    );
    h.insert(
        RETRY_AFTER,
        HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
    );
    assert_eq!(parse_retry_after(&h), Some(Duration::ZERO));
    h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
    assert_eq!(parse_retry_after(&h), None);
    assert_eq!(parse_retry_after(&HeaderMap::new()), None);
}

#[test]
fn endpoints_must_be_https_unless_loopback() {
    assert!(parse_endpoint("e", "https://management.azure.com").is_ok());
    assert!(parse_endpoint("e", "http://127.0.0.1:8080").is_ok());
    assert!(parse_endpoint("e", "http://localhost:8080/").is_ok());
    assert!(parse_endpoint("e", "http://[::1]:8080/").is_ok());
    assert!(parse_endpoint("e", "http://management.azure.com").is_err());
    assert!(parse_endpoint("e", "ftp://x").is_err());
    assert!(parse_endpoint("e", "https://x/?a=b").is_err());
    assert!(parse_endpoint("e", "not a url").is_err());
}

#[test]
fn credential_urls_encode_segments() {
    let metrics = AzureRequestMetrics::unregistered().expect("metrics");
    let mut config = ArmConfig::new("c", "t", "/token");
    config.arm_endpoint = "https://management.usgovcloudapi.net/".into();
    let client = ArmClient::new(&config, metrics).expect("client");
    let id = ManagedIdentity {
        subscription_id: "0000".into(),
        resource_group: "rg(1)".into(),
        name: "my id/../x".into(),
    };
    assert_eq!(
        client
            .credential_url(&id, Some("fic-1"))
            .expect("url")
            .as_str(),
        "https://management.usgovcloudapi.net/subscriptions/0000/resourceGroups/rg(1)/providers/Microsoft.ManagedIdentity/userAssignedIdentities/my%20id%2F..%2Fx/federatedIdentityCredentials/fic-1?api-version=2024-11-30"
    );
    // A literal `%2e` stays data (its `%` encoded); `.` and `..`, which no encoding keeps
    // (the URL library drops them, or reads `%2E` as `.`), are refused, never sent shifted.
    let id = ManagedIdentity {
        subscription_id: "0000".into(),
        resource_group: "%2e".into(),
        name: "id".into(),
    };
    assert_eq!(
        client
            .credential_url(&id, Some("%2E%2e"))
            .expect("url")
            .as_str(),
        "https://management.usgovcloudapi.net/subscriptions/0000/resourceGroups/%252e/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id/federatedIdentityCredentials/%252E%252e?api-version=2024-11-30"
    );
    for dots in [".", ".."] {
        let in_group = ManagedIdentity {
            resource_group: dots.into(),
            ..id.clone()
        };
        assert!(
            client.credential_url(&in_group, Some("fic-1")).is_err(),
            "{dots:?}"
        );
        let named = ManagedIdentity {
            name: dots.into(),
            ..id.clone()
        };
        assert!(client.credential_url(&named, None).is_err(), "{dots:?}");
        assert!(client.credential_url(&id, Some(dots)).is_err(), "{dots:?}");
    }
    assert_eq!(
        config.scope(),
        "https://management.usgovcloudapi.net/.default"
    );
}

/// The identity path every case below is built under, with `{g}` for the resource group.
const PREFIX: &str = "https://management.azure.com/subscriptions/0000/resourceGroups/";
const SUFFIX: &str =
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x/federatedIdentityCredentials";

fn client() -> ArmClient {
    let metrics = AzureRequestMetrics::unregistered().expect("metrics");
    ArmClient::new(&ArmConfig::new("c", "t", "/token"), metrics).expect("client")
}

fn in_group(resource_group: &str) -> ManagedIdentity {
    ManagedIdentity {
        subscription_id: "0000".into(),
        resource_group: resource_group.into(),
        name: "id-x".into(),
    }
}

#[test]
fn credential_url_segments_are_kept_never_normalized() {
    let client = client();
    // (resource group, its segment in the URL): each stays one segment, in its place.
    let cases = [
        ("rg", "rg"),
        (".rg", ".rg"),
        ("rg.tenants", "rg.tenants"),
        ("...rg", "...rg"),
        ("%2e", "%252e"),
        ("%2E%2E", "%252E%252E"),
        (".%2e", ".%252e"),
        ("a/../b", "a%2F..%2Fb"),
        ("a\\..\\b", "a%5C..%5Cb"),
        ("rg?api-version=1", "rg%3Fapi-version%3D1"),
        ("rg#x", "rg%23x"),
        (".\t.x", ".%09.x"),
        ("\n..x", "%0A..x"),
        ("ressources-\u{e9}", "ressources-%C3%A9"),
    ];
    for (group, segment) in cases {
        let url = client
            .credential_url(&in_group(group), None)
            .unwrap_or_else(|e| panic!("{group:?}: {e}"));
        assert_eq!(
            url.as_str(),
            format!("{PREFIX}{segment}{SUFFIX}?api-version=2024-11-30"),
            "{group:?}"
        );
        assert_eq!(
            url.path_segments().map(Iterator::count),
            Some(9),
            "{group:?} is one segment"
        );
    }
    let url = client
        .credential_url(&in_group("rg"), Some("%2e%2e"))
        .expect("url");
    assert!(
        url.path()
            .ends_with("/federatedIdentityCredentials/%252e%252e")
    );
}

#[test]
fn credential_url_refuses_segments_no_encoding_can_keep() {
    let client = client();
    let refused = |identity: ManagedIdentity, name: Option<&str>| {
        let err = client
            .credential_url(&identity, name)
            .expect_err(&format!("{identity:?} {name:?}"));
        assert_eq!(err.reason(), "InvalidRequest", "{identity:?}");
        assert!(err.is_terminal());
        err.to_string()
    };
    // `.\t.` would be `..` once the URL library dropped the tab.
    for group in [".", "..", "", "rg.", ".\t."] {
        let message = refused(in_group(group), Some("fic-1"));
        assert!(message.contains("resourceGroup"), "{message}");
        assert!(message.contains(&format!("{group:?}")), "{message}");
    }
    let mut identity = in_group("rg");
    identity.name = "..".into();
    assert!(refused(identity, None).contains("name"));
    let mut identity = in_group("rg");
    identity.subscription_id = ".".into();
    assert!(refused(identity, None).contains("subscriptionId"));
    assert!(refused(in_group("rg"), Some("..")).contains("federated credential name"));
}

#[test]
fn next_link_must_stay_on_the_endpoint() {
    let metrics = AzureRequestMetrics::unregistered().expect("metrics");
    let client = ArmClient::new(&ArmConfig::new("c", "t", "/token"), metrics).expect("client");
    assert!(
        client
            .checked_next_link("https://management.azure.com/subscriptions/x?$skiptoken=1")
            .is_ok()
    );
    let err = client
        .checked_next_link("https://evil.example/subscriptions/x")
        .expect_err("other host");
    assert_eq!(err.reason(), "ArmUnavailable");
}
