use super::*;
use reqwest::header::HeaderValue;

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
        client.credential_url(&id, Some("fic-1")).as_str(),
        "https://management.usgovcloudapi.net/subscriptions/0000/resourceGroups/rg(1)/providers/Microsoft.ManagedIdentity/userAssignedIdentities/my%20id%2F..%2Fx/federatedIdentityCredentials/fic-1?api-version=2024-11-30"
    );
    assert_eq!(
        config.scope(),
        "https://management.usgovcloudapi.net/.default"
    );
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
