//! The fake Entra verifies a federated client assertion the way Entra does, and answers every
//! refusal with Entra's body and AADSTS code. Each test exchanges a real RS256-signed,
//! service-account-shaped token (see `common`) over HTTP, as a workload would.

mod common;

use std::time::Duration;

use common::{
    ARM_SCOPE, AUDIENCE, DEVOPS_SCOPE, Issuer, Key, TENANT, assert_entra_error, exchange,
    token_claims,
};
use fake_arm::{
    DEVOPS_RESOURCE, FakeArm, FakeConfig, FederatedCredential, IdentityRef, IssuedToken,
    StoredCredential, aadsts,
};
use serde_json::{Value, json};

/// An AKS-style issuer URL the test issuer is named by (served on 127.0.0.1).
const ISSUER: &str = "https://oidc.test.local/tenant-a/issuer/";
const SUBJECT: &str = "system:serviceaccount:team-a:app";

/// A fake with an ARM identity federating `SUBJECT` of `issuer`, and that issuer reachable.
async fn federated(issuer: &Issuer) -> (FakeArm, IdentityRef, String) {
    let fake = FakeArm::start().await.expect("start");
    let identity = fake.create_identity("sub", "rg", "id-team-a");
    fake.seed_credential(
        &identity,
        StoredCredential::new("fic-app", &issuer.issuer, SUBJECT, AUDIENCE),
    )
    .expect("seed");
    issuer.allow_in(&fake);
    let client_id = fake.client_id(&identity).expect("client id");
    (fake, identity, client_id)
}

#[tokio::test]
async fn a_matching_assertion_gets_a_token_that_names_its_resource_and_identity() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, identity, client_id) = federated(&issuer).await;
    let (status, body) = exchange(
        &fake,
        &client_id,
        ARM_SCOPE,
        &issuer.token(SUBJECT, AUDIENCE),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().expect("token").to_string();
    assert_eq!(
        fake.issued_token(&token),
        Some(IssuedToken {
            tenant: TENANT.to_string(),
            client_id: client_id.clone(),
            resource: "https://management.azure.com".to_string(),
            assertion_issuer: Some(ISSUER.to_string()),
            assertion_subject: Some(SUBJECT.to_string()),
        })
    );
    let claims = token_claims(&token);
    assert_eq!(claims["aud"], "https://management.azure.com");
    assert_eq!(claims["appid"], client_id);
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["oid"], identity.default_principal_id());
    assert!(issuer.fetches() >= 2, "discovery and JWKS were fetched");

    // The ARM token works on ARM; a token for Azure DevOps does not.
    let list = format!(
        "{}/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-team-a/federatedIdentityCredentials?api-version=2024-11-30",
        fake.url()
    );
    let http = reqwest::Client::new();
    let ok = http
        .get(&list)
        .bearer_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(ok.status(), 200);
    let (status, body) = exchange(
        &fake,
        &client_id,
        DEVOPS_SCOPE,
        &issuer.token(SUBJECT, AUDIENCE),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let devops = body["access_token"].as_str().expect("token");
    assert_eq!(
        fake.issued_token(devops).map(|t| t.resource),
        Some(DEVOPS_RESOURCE.to_string())
    );
    let refused = http
        .get(&list)
        .bearer_auth(devops)
        .send()
        .await
        .expect("list");
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationTokenAudience");
    assert_eq!(
        body["error"]["message"],
        format!(
            "The access token has been obtained for wrong audience or resource '{DEVOPS_RESOURCE}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
        )
    );
    assert_eq!(fake.token_requests().len(), 2);
}

#[tokio::test]
async fn an_issuer_no_credential_trusts_is_700211_and_is_never_fetched() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, _, client_id) = federated(&issuer).await;
    let other = Issuer::start("https://oidc.other.local/").await;
    other.allow_in(&fake);
    let (status, body) = exchange(
        &fake,
        &client_id,
        ARM_SCOPE,
        &other.token(SUBJECT, AUDIENCE),
    )
    .await;
    let message = assert_entra_error(status, &body, (401, "invalid_client", 700211));
    assert_eq!(
        message,
        "No matching federated identity record found for presented assertion issuer 'https://oidc.other.local/'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
    );
    assert_eq!(
        other.fetches(),
        0,
        "Entra fetches nothing from an untrusted issuer"
    );
    assert!(fake.issued_tokens().is_empty());
}

#[tokio::test]
async fn issuer_subject_and_audience_are_compared_byte_for_byte() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, _, client_id) = federated(&issuer).await;
    // Without the trailing slash the issuer is another issuer.
    let trimmed = Issuer::start(ISSUER.trim_end_matches('/')).await;
    trimmed.allow_in(&fake);
    let (status, body) = exchange(
        &fake,
        &client_id,
        ARM_SCOPE,
        &trimmed.token(SUBJECT, AUDIENCE),
    )
    .await;
    assert_entra_error(
        status,
        &body,
        (401, "invalid_client", aadsts::NO_MATCHING_ISSUER),
    );

    let other_subject = "system:serviceaccount:team-a:other";
    let (status, body) = exchange(
        &fake,
        &client_id,
        ARM_SCOPE,
        &issuer.token(other_subject, AUDIENCE),
    )
    .await;
    let message = assert_entra_error(status, &body, (401, "invalid_client", 700213));
    assert_eq!(
        message,
        format!(
            "No matching federated identity record found for presented assertion subject '{other_subject}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
        )
    );

    let shouted = "system:serviceaccount:Team-A:app";
    let (status, body) = exchange(
        &fake,
        &client_id,
        ARM_SCOPE,
        &issuer.token(shouted, AUDIENCE),
    )
    .await;
    let message = assert_entra_error(status, &body, (401, "invalid_client", 7002138));
    assert!(
        message.contains("The subject matches with case-insensitive comparison, but not with case-sensitive comparison."),
        "{message}"
    );

    let (status, body) = exchange(
        &fake,
        &client_id,
        ARM_SCOPE,
        &issuer.token(SUBJECT, "api://other-audience"),
    )
    .await;
    let message = assert_entra_error(status, &body, (401, "invalid_client", 700212));
    assert!(
        message.starts_with("No matching federated identity record found for presented assertion audience 'api://other-audience'."),
        "{message}"
    );
    assert!(fake.issued_tokens().is_empty());
}

#[tokio::test]
async fn an_unknown_client_id_is_700016_and_an_unknown_resource_500011() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, _, client_id) = federated(&issuer).await;
    let unknown = "00000000-1111-4222-8333-444444444444";
    let (status, body) =
        exchange(&fake, unknown, ARM_SCOPE, &issuer.token(SUBJECT, AUDIENCE)).await;
    let message = assert_entra_error(status, &body, (400, "unauthorized_client", 700016));
    assert_eq!(
        message,
        format!(
            "Application with identifier '{unknown}' was not found in the directory '{TENANT}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        )
    );
    let (status, body) = exchange(
        &fake,
        &client_id,
        "https://vault.azure.net/.default",
        &issuer.token(SUBJECT, AUDIENCE),
    )
    .await;
    let message = assert_entra_error(status, &body, (400, "invalid_resource", 500011));
    assert!(
        message.starts_with(&format!(
            "The resource principal named https://vault.azure.net was not found in the tenant named {TENANT}."
        )),
        "{message}"
    );
    // Client ids are GUIDs: case does not matter.
    let (status, body) = exchange(
        &fake,
        &client_id.to_ascii_uppercase(),
        ARM_SCOPE,
        &issuer.token(SUBJECT, AUDIENCE),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_credential_is_refused_with_70021_until_it_has_propagated() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, identity, client_id) = federated(&issuer).await;
    fake.set_propagation_delay(&client_id, Duration::from_millis(600));
    fake.seed_credential(
        &identity,
        StoredCredential::new(
            "fic-new",
            &issuer.issuer,
            "system:serviceaccount:team-a:new",
            AUDIENCE,
        ),
    )
    .expect("seed");
    let assertion = issuer.token("system:serviceaccount:team-a:new", AUDIENCE);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &assertion).await;
    let message = assert_entra_error(status, &body, (400, "invalid_request", 70021));
    assert_eq!(
        message,
        format!(
            "No matching federated identity record found for presented assertion. Assertion Issuer: '{ISSUER}'. Assertion Subject: 'system:serviceaccount:team-a:new'. Assertion Audience: '{AUDIENCE}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
        )
    );
    // Entra has answered 70021 as 401 invalid_client too.
    fake.configure(&FakeConfig {
        no_match_as_unauthorized: Some(true),
        ..FakeConfig::default()
    });
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &assertion).await;
    assert_entra_error(status, &body, (401, "invalid_client", 70021));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &assertion).await;
    assert_eq!(status, 200, "propagated: {body}");
}

#[tokio::test]
async fn an_arm_write_propagates_anew_only_when_it_changes_the_credential() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, identity, client_id) = federated(&issuer).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    fake.set_propagation_delay(&client_id, Duration::from_millis(300));
    let old = issuer.token(SUBJECT, AUDIENCE);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &old).await;
    assert_eq!(status, 200, "written 400 ms ago: {body}");
    // The same credential written again: nothing changes for Entra.
    fake.seed_credential(
        &identity,
        StoredCredential::new("fic-app", &issuer.issuer, SUBJECT, AUDIENCE),
    )
    .expect("seed");
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &old).await;
    assert_eq!(status, 200, "{body}");
    // Changed (another subject under the same name): it propagates anew, the old is gone.
    let renamed = "system:serviceaccount:team-a:renamed";
    fake.seed_credential(
        &identity,
        StoredCredential::new("fic-app", &issuer.issuer, renamed, AUDIENCE),
    )
    .expect("seed");
    let new = issuer.token(renamed, AUDIENCE);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &new).await;
    assert_entra_error(status, &body, (400, "invalid_request", 70021));
    // While it propagates the identity has no visible credential (the fake does not keep the
    // old version visible meanwhile).
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &old).await;
    assert_entra_error(status, &body, (401, "invalid_client", 700211));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &old).await;
    assert_entra_error(status, &body, (401, "invalid_client", 700213));
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &new).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_unreachable_or_unusable_issuer_is_50166() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, _, client_id) = federated(&issuer).await;
    let assertion = issuer.token(SUBJECT, AUDIENCE);
    let expect_50166 = |status: u16, body: &Value| {
        let message = assert_entra_error(status, body, (400, "invalid_request", 50166));
        assert_eq!(message, "Request to External OIDC endpoint failed.");
    };

    // Nothing listens where the issuer is fetched from.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    fake.allow_insecure_issuer(ISSUER, &format!("http://{closed_addr}"));
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &assertion).await;
    expect_50166(status, &body);
    issuer.allow_in(&fake);

    // The document names another issuer.
    issuer.serve(|s| s.issuer = "https://oidc.test.local/tenant-b/issuer/".into());
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &assertion).await;
    expect_50166(status, &body);
    issuer.serve(|s| s.issuer = ISSUER.into());

    // No jwks_uri; then a 404.
    issuer.serve(|s| s.with_jwks_uri = false);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &assertion).await;
    expect_50166(status, &body);
    issuer.serve(|s| {
        s.with_jwks_uri = true;
        s.discovery_status = 404;
    });
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &assertion).await;
    expect_50166(status, &body);
    issuer.serve(|s| s.discovery_status = 200);
    let (status, _) = exchange(&fake, &client_id, ARM_SCOPE, &assertion).await;
    assert_eq!(status, 200, "reachable again");
}

#[tokio::test]
async fn plain_http_is_refused_unless_the_issuer_is_allowed_as_insecure() {
    // An issuer whose own URL is http. ARM would refuse it as a credential's issuer, so the
    // credential is registered directly, as for the ASO backend.
    let fake = FakeArm::start().await.expect("start");
    let issuer = Issuer::start_at_own_url().await;
    let client_id = "6a1c2b3d-0000-4000-8000-00000000abcd";
    fake.register_federated_credential(client_id, &issuer.issuer, SUBJECT, AUDIENCE);
    let assertion = issuer.token(SUBJECT, AUDIENCE);
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_entra_error(status, &body, (400, "invalid_request", 50166));
    assert_eq!(issuer.fetches(), 0, "nothing was sent over plain http");
    fake.allow_insecure_issuer(&issuer.issuer, &issuer.issuer);
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_https_issuer_with_a_test_certificate_needs_its_ca() {
    let fake = FakeArm::start().await.expect("start");
    let issuer = Issuer::start_https().await;
    let client_id = "6a1c2b3d-0000-4000-8000-00000000beef";
    fake.register_federated_credential(client_id, &issuer.issuer, SUBJECT, AUDIENCE);
    let assertion = issuer.token(SUBJECT, AUDIENCE);
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_entra_error(status, &body, (400, "invalid_request", 50166));
    assert!(fake.trust_issuer_ca_pem("not a certificate").is_err());
    fake.trust_issuer_ca_pem(issuer.ca_pem.as_deref().expect("pem"))
        .expect("trust");
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_signature_is_checked_with_the_key_the_kid_names() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, _, client_id) = federated(&issuer).await;
    let claims = issuer.claims(SUBJECT, AUDIENCE);

    // A kid the JWKS does not have.
    let unknown_kid = issuer
        .key
        .sign_with_header(json!({"typ": "JWT", "kid": "rotated-away"}), &claims);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &unknown_kid).await;
    let message = assert_entra_error(status, &body, (401, "invalid_client", 7000272));
    assert_eq!(
        message,
        format!(
            "The certificate with identifier rotated-away used to sign the federated credential could not be found in the metadata of identity provider {ISSUER}. Please validate that your Identity Provider's metadata exposes the key used to sign the incoming token."
        )
    );

    // Signed by another key under the served kid.
    let impostor = Key::generate(&issuer.key.kid);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &impostor.sign(&claims)).await;
    let message = assert_entra_error(status, &body, (401, "invalid_client", 700027));
    assert_eq!(message, "Client assertion failed signature validation.");

    // A genuine signature over other claims.
    let genuine = issuer.token(SUBJECT, AUDIENCE);
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let forged = {
        use base64::Engine as _;
        let mut c = claims.clone();
        c["sub"] = json!("system:serviceaccount:kube-system:admin");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    parts[1] = &forged;
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &parts.join(".")).await;
    assert_entra_error(status, &body, (401, "invalid_client", 700027));

    // Without a kid, any key of the JWKS may verify it.
    let no_kid = issuer.key.sign_with_header(json!({"typ": "JWT"}), &claims);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &no_kid).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_assertion_is_700024() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, _, client_id) = federated(&issuer).await;
    let mut claims = issuer.claims(SUBJECT, AUDIENCE);
    claims["iat"] = json!(1_717_488_046);
    claims["nbf"] = json!(1_717_488_046);
    claims["exp"] = json!(1_717_491_646);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &issuer.key.sign(&claims)).await;
    let message = assert_entra_error(status, &body, (401, "invalid_client", 700024));
    assert!(
        message.starts_with("Client assertion is not within its valid time range. Current time: "),
        "{message}"
    );
    assert!(
        message.ends_with(", assertion valid from 2024-06-04T08:00:46.0000000Z, expiry time of assertion 2024-06-04T09:00:46.0000000Z. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."),
        "{message}"
    );
    let mut future = issuer.claims(SUBJECT, AUDIENCE);
    future["nbf"] = json!(chrono::Utc::now().timestamp() + 300);
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &issuer.key.sign(&future)).await;
    assert_entra_error(status, &body, (401, "invalid_client", 700024));
}

#[tokio::test]
async fn a_malformed_or_unsigned_assertion_is_refused_before_any_fetch() {
    let issuer = Issuer::start(ISSUER).await;
    let (fake, _, client_id) = federated(&issuer).await;
    for assertion in ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"] {
        let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, assertion).await;
        let message = assert_entra_error(status, &body, (400, "invalid_request", 50027));
        assert_eq!(message, "JWT token is invalid or malformed.");
    }
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none"})),
        b64(&issuer.claims(SUBJECT, AUDIENCE))
    );
    let (status, body) = exchange(&fake, &client_id, ARM_SCOPE, &unsigned).await;
    let message = assert_entra_error(status, &body, (400, "invalid_request", 5002730));
    assert_eq!(
        message,
        "Invalid JWT token. Unsupported key for the signing algorithm."
    );
    assert_eq!(issuer.fetches(), 0);
}

#[tokio::test]
async fn registered_credentials_serve_the_aso_backend() {
    let issuer = Issuer::start(ISSUER).await;
    let fake = FakeArm::start().await.expect("start");
    issuer.allow_in(&fake);
    let client_id = "3c1f0e2a-7b6d-4c5e-9f8a-0b1c2d3e4f50";
    let assertion = issuer.token(SUBJECT, AUDIENCE);
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_entra_error(status, &body, (400, "unauthorized_client", 700016));

    fake.register_application(client_id);
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_entra_error(status, &body, (401, "invalid_client", 700211));

    fake.register_federated_credential(client_id, ISSUER, SUBJECT, "api://wrong");
    fake.register_federated_credential(client_id, ISSUER, SUBJECT, AUDIENCE);
    assert_eq!(
        fake.registered_federated_credentials(client_id),
        Some(vec![FederatedCredential::new(ISSUER, SUBJECT, AUDIENCE)]),
        "issuer and subject identify a credential"
    );
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_eq!(status, 200, "{body}");

    assert!(fake.unregister_federated_credential(client_id, ISSUER, SUBJECT));
    assert!(!fake.unregister_federated_credential(client_id, ISSUER, SUBJECT));
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_entra_error(status, &body, (401, "invalid_client", 700211));
    assert!(fake.remove_application(client_id));
    let (status, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_entra_error(status, &body, (400, "unauthorized_client", 700016));
}

#[tokio::test]
async fn a_trusted_caller_is_accepted_without_its_assertion_being_read() {
    let fake = FakeArm::start().await.expect("start");
    let operator = "5b0e6c8a-3f1d-4e2b-9a7c-1d2e3f4a5b6c";
    let (status, body) = exchange(&fake, operator, ARM_SCOPE, "random-token-file-content").await;
    assert_entra_error(status, &body, (400, "unauthorized_client", 700016));
    fake.trust_client(operator);
    let arm_endpoint_scope = format!("{}/.default", fake.url());
    let (status, body) = exchange(
        &fake,
        operator,
        &arm_endpoint_scope,
        "random-token-file-content",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(
        fake.issued_token(token),
        Some(IssuedToken {
            tenant: TENANT.to_string(),
            client_id: operator.to_string(),
            resource: fake.url(),
            assertion_issuer: None,
            assertion_subject: None,
        })
    );
    // Even a trusted caller gets only resources the directory knows.
    let (status, body) =
        exchange(&fake, operator, "https://graph.microsoft.com/.default", "x").await;
    assert_entra_error(status, &body, (400, "invalid_resource", 500011));
    assert_eq!(
        fake.token_requests()
            .iter()
            .map(|r| r.client_assertion.as_str())
            .collect::<Vec<_>>(),
        vec!["random-token-file-content"]
    );
}

#[tokio::test]
async fn the_admin_http_api_configures_entra() {
    let issuer = Issuer::start(ISSUER).await;
    let fake = FakeArm::start().await.expect("start");
    let http = reqwest::Client::new();
    let base = fake.url();
    let client_id = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a";
    let status = |r: reqwest::Response| r.status().as_u16();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    assert_eq!(
        status(
            post(
                "/_fake/entra/insecure-issuers",
                json!({"issuer": ISSUER, "fetchBase": issuer.base})
            )
            .await
            .expect("post")
        ),
        204
    );
    let listed: Value = http
        .get(format!("{base}/_fake/entra/insecure-issuers"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!({ ISSUER: issuer.base }));
    let creds = format!("/_fake/entra/applications/{client_id}/federated-credentials");
    assert_eq!(
        status(
            post(
                &creds,
                json!({"issuer": ISSUER, "subject": SUBJECT, "audience": AUDIENCE})
            )
            .await
            .expect("post")
        ),
        201
    );
    let listed: Value = http
        .get(format!("{base}{creds}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed,
        json!([{"issuer": ISSUER, "subject": SUBJECT, "audience": AUDIENCE}])
    );
    let delay = http
        .put(format!(
            "{base}/_fake/entra/applications/{client_id}/propagation-delay"
        ))
        .json(&json!({"milliseconds": 60_000}))
        .send()
        .await
        .expect("put");
    assert_eq!(delay.status(), 204);
    let assertion = issuer.token(SUBJECT, AUDIENCE);
    let (status_code, body) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_entra_error(status_code, &body, (400, "invalid_request", 70021));
    let delay = http
        .put(format!(
            "{base}/_fake/entra/applications/{client_id}/propagation-delay"
        ))
        .json(&json!({"milliseconds": 0}))
        .send()
        .await
        .expect("put");
    assert_eq!(delay.status(), 204);
    let (status_code, _) = exchange(&fake, client_id, ARM_SCOPE, &assertion).await;
    assert_eq!(status_code, 200);
    let removed = http
        .delete(format!("{base}{creds}"))
        .json(&json!({"issuer": ISSUER, "subject": SUBJECT}))
        .send()
        .await
        .expect("delete");
    assert_eq!(removed.status(), 204);
    assert_eq!(
        fake.registered_federated_credentials(client_id),
        Some(vec![])
    );
    let removed = http
        .delete(format!("{base}/_fake/entra/applications/{client_id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(removed.status(), 204);
    assert_eq!(fake.registered_federated_credentials(client_id), None);
    assert_eq!(
        status(
            post("/_fake/entra/applications", json!({"clientId": client_id}))
                .await
                .expect("post")
        ),
        201
    );
    assert_eq!(
        fake.registered_federated_credentials(client_id),
        Some(vec![])
    );
    assert_eq!(
        status(
            post(
                "/_fake/entra/trusted-clients",
                json!({"clientId": "trusted-one"})
            )
            .await
            .expect("post")
        ),
        204
    );
    let (status_code, _) = exchange(&fake, "trusted-one", ARM_SCOPE, "anything").await;
    assert_eq!(status_code, 200);
    let bad_ca = http
        .post(format!("{base}/_fake/entra/trusted-cas"))
        .body("not a certificate")
        .send()
        .await
        .expect("post");
    assert_eq!(bad_ca.status(), 400);
}
