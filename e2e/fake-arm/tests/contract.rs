//! The fake enforces the ARM / Entra contract the operator depends on. These tests talk to it
//! over HTTP exactly as a client would.

use std::time::Duration;

use fake_arm::{
    CONCURRENT_WRITE_CODE, DUPLICATE_MESSAGE, FakeArm, Fault, IDENTITY_LOCATION,
    IDENTITY_TENANT_ID, IDENTITY_TYPE, IdentityRef, MAX_CREDENTIALS_PER_IDENTITY, Operation,
    StoredCredential,
};
use serde_json::{Value, json};

const ISSUER: &str = "https://oidc.prod-aks.azure.com/tenant/issuer/";
const AUD: &str = "api://AzureADTokenExchange";

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The client id of the contract tests' ARM client. Its assertion is not a real token, so the
/// fake trusts it (as the e2e harness trusts the operator's own identity).
const ARM_CLIENT: &str = "client-1";

impl Client {
    async fn new(fake: &FakeArm) -> Client {
        fake.trust_client(ARM_CLIENT);
        let http = reqwest::Client::new();
        let base = fake.url();
        let resp = http
            .post(format!("{base}/tenant-1/oauth2/v2.0/token"))
            .form(&token_form("assertion-1"))
            .send()
            .await
            .expect("token request");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_u64().is_some());
        let token = body["access_token"].as_str().expect("token").to_string();
        Client { http, base, token }
    }

    fn url(&self, id: &IdentityRef, fic: Option<&str>, api: &str) -> String {
        let mut u = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}/federatedIdentityCredentials",
            self.base, id.subscription_id, id.resource_group, id.name
        );
        if let Some(f) = fic {
            u.push('/');
            u.push_str(f);
        }
        if !api.is_empty() {
            u.push_str("?api-version=");
            u.push_str(api);
        }
        u
    }

    /// `GET .../userAssignedIdentities/{name}` (the identity itself).
    fn identity_url(&self, id: &IdentityRef, api: &str) -> String {
        let mut u = format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.base, id.subscription_id, id.resource_group, id.name
        );
        if !api.is_empty() {
            u.push_str("?api-version=");
            u.push_str(api);
        }
        u
    }

    async fn put(&self, id: &IdentityRef, fic: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .put(self.url(id, Some(fic), "2024-11-30"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("put");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp = req.bearer_auth(&self.token).send().await.expect("send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap_or(Value::Null))
    }
}

fn token_form(assertion: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", ARM_CLIENT.to_string()),
        ("scope", "https://management.azure.com/.default".to_string()),
        ("grant_type", "client_credentials".to_string()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
        ),
        ("client_assertion", assertion.to_string()),
    ]
}

fn fic(issuer: &str, subject: &str) -> Value {
    json!({"properties": {"issuer": issuer, "subject": subject, "audiences": [AUD]}})
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn token_endpoint_validates_the_client_assertion_request() {
    let fake = FakeArm::start().await.expect("start");
    let http = reqwest::Client::new();
    let url = format!("{}/tenant-1/oauth2/v2.0/token", fake.url());
    let cases: Vec<(&str, &str, &str)> = vec![
        ("grant_type", "password", "unsupported_grant_type"),
        ("client_assertion_type", "urn:other", "invalid_request"),
        ("client_assertion", "", "invalid_request"),
        ("client_id", "", "invalid_request"),
        ("scope", "https://management.azure.com", "invalid_scope"),
    ];
    for (field, value, error) in cases {
        let mut form = token_form("a");
        for (k, v) in form.iter_mut() {
            if *k == field {
                *v = value.to_string();
            }
        }
        let resp = http.post(&url).form(&form).send().await.expect("send");
        assert_eq!(resp.status(), 400, "{field}={value}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], error, "{field}={value}");
    }
    assert!(fake.issued_tokens().is_empty());
    fake.trust_client(ARM_CLIENT);
    let ok = http
        .post(&url)
        .form(&token_form("the-assertion"))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body["expires_in"], 3599, "default lifetime like Entra's");
    let requests = fake.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].tenant, "tenant-1");
    assert_eq!(requests[0].client_assertion, "the-assertion");
    assert_eq!(fake.calls().token, 6);
}

#[tokio::test]
async fn arm_requires_an_issued_bearer_token() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    let client = Client::new(&fake).await;
    let url = client.url(&id, None, "2024-11-30");
    let resp = client.http.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    let resp = client
        .http
        .get(&url)
        .bearer_auth("made-up")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(error_code(&body), "InvalidAuthenticationToken");
    let (status, _, body) = client.send(client.http.get(&url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], json!([]));
}

#[tokio::test]
async fn identity_must_exist_first() {
    let fake = FakeArm::start().await.expect("start");
    let client = Client::new(&fake).await;
    let missing = IdentityRef::new("sub", "rg", "nope");
    let (status, body) = client.put(&missing, "fic-1", fic(ISSUER, "s")).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "ParentResourceNotFound");
    let (status, _, body) = client
        .send(client.http.get(client.url(&missing, None, "2024-11-30")))
        .await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "ParentResourceNotFound");
    let (status, _, _) = client
        .send(
            client
                .http
                .delete(client.url(&missing, Some("fic-1"), "2024-11-30")),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn put_get_update_delete_roundtrip_matches_the_examples() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("c267c0e7", "rgName", "identityName");
    let client = Client::new(&fake).await;
    let (status, body) = client
        .put(
            &id,
            "ficResourceName",
            fic(ISSUER, "system:serviceaccount:ns:sa"),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        body["id"],
        "/subscriptions/c267c0e7/resourcegroups/rgName/providers/Microsoft.ManagedIdentity/userAssignedIdentities/identityName/federatedIdentityCredentials/ficResourceName"
    );
    assert_eq!(
        body["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    );
    assert_eq!(body["properties"]["audiences"], json!([AUD]));

    // ARM names are case-insensitive: a PUT with other casing updates the same resource.
    let (status, body) = client
        .put(
            &id,
            "FICRESOURCENAME",
            fic(ISSUER, "system:serviceaccount:ns:other"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "ficResourceName");

    let (status, _, body) = client
        .send(
            client
                .http
                .get(client.url(&id, Some("ficresourcename"), "2023-01-31")),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["properties"]["subject"],
        "system:serviceaccount:ns:other"
    );

    let (status, _, _) = client
        .send(
            client
                .http
                .delete(client.url(&id, Some("ficResourceName"), "2024-11-30")),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = client
        .send(
            client
                .http
                .delete(client.url(&id, Some("ficResourceName"), "2024-11-30")),
        )
        .await;
    assert_eq!(status, 204, "deleting an absent credential is 204");
    let (status, _, body) = client
        .send(
            client
                .http
                .get(client.url(&id, Some("ficResourceName"), "2024-11-30")),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "ResourceNotFound");
    let calls = fake.calls();
    assert_eq!((calls.put, calls.delete, calls.get), (2, 2, 2));
}

#[tokio::test]
async fn put_validation_follows_the_documented_errors() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    let client = Client::new(&fake).await;
    let cases = vec![
        ("ab", fic(ISSUER, "s"), "is invalid"),
        ("-abc", fic(ISSUER, "s"), "is invalid"),
        ("a.bc", fic(ISSUER, "s"), "is invalid"),
        (
            "two-aud",
            json!({"properties": {"issuer": ISSUER, "subject": "s", "audiences": [AUD, "x"]}}),
            "exactly 1 audience",
        ),
        (
            "no-aud",
            json!({"properties": {"issuer": ISSUER, "subject": "s", "audiences": []}}),
            "exactly 1 audience",
        ),
        ("http-issuer", fic("http://issuer.example", "s"), "https"),
        ("no-props", json!({}), "empty properties"),
        (
            "no-subject",
            json!({"properties": {"issuer": ISSUER, "audiences": [AUD]}}),
            "empty properties",
        ),
    ];
    for (name, body, needle) in cases {
        let (status, resp) = client.put(&id, name, body).await;
        assert_eq!(status, 400, "{name}");
        let message = resp["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{name}: {message}");
    }
    assert_eq!(fake.credentials(&id).map(|c| c.len()), Some(0));
    let long = format!("a{}", "b".repeat(119));
    let (status, _) = client.put(&id, &long, fic(ISSUER, "s")).await;
    assert_eq!(status, 201, "120 characters is the maximum and allowed");
}

#[tokio::test]
async fn api_version_must_serve_fics() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    let client = Client::new(&fake).await;
    for (version, status, code) in [
        ("2018-11-30", 400, "InvalidApiVersionParameter"),
        ("", 400, "MissingApiVersionParameter"),
        ("2023-01-31", 200, ""),
        ("2024-11-30", 200, ""),
    ] {
        let (got, _, body) = client
            .send(client.http.get(client.url(&id, None, version)))
            .await;
        assert_eq!(got, status, "{version}");
        assert_eq!(error_code(&body), code, "{version}");
    }
}

#[tokio::test]
async fn duplicate_issuer_and_subject_is_rejected_on_another_name() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    fake.seed_credential(&id, StoredCredential::new("foreign", ISSUER, "sub-1", AUD))
        .expect("seed");
    let client = Client::new(&fake).await;
    let (status, body) = client.put(&id, "mine", fic(ISSUER, "sub-1")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], DUPLICATE_MESSAGE);
    // Subjects are case-sensitive and issuers byte-for-byte: these are different credentials.
    assert_eq!(client.put(&id, "mine", fic(ISSUER, "SUB-1")).await.0, 201);
    let no_slash = ISSUER.trim_end_matches('/');
    assert_eq!(
        client.put(&id, "mine2", fic(no_slash, "sub-1")).await.0,
        201
    );
    // Re-putting the same credential under its own name is fine.
    assert_eq!(
        client.put(&id, "foreign", fic(ISSUER, "sub-1")).await.0,
        200
    );
}

#[tokio::test]
async fn at_most_twenty_credentials_per_identity() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    for i in 0..MAX_CREDENTIALS_PER_IDENTITY {
        fake.seed_credential(
            &id,
            StoredCredential::new(format!("fic-{i:02}"), ISSUER, format!("s{i}"), AUD),
        )
        .expect("seed");
    }
    let err = fake
        .seed_credential(&id, StoredCredential::new("fic-extra", ISSUER, "sx", AUD))
        .expect_err("21st is rejected");
    assert_eq!(err.status, 400);
    let client = Client::new(&fake).await;
    let (status, body) = client.put(&id, "fic-extra", fic(ISSUER, "sx")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("20")
    );
    // Updating one of the twenty is not a create and is allowed.
    assert_eq!(
        client.put(&id, "fic-00", fic(ISSUER, "changed")).await.0,
        200
    );
}

#[tokio::test]
async fn overlapping_writes_to_one_identity_get_409() {
    let fake = FakeArm::start().await.expect("start");
    // Long enough that the second request surely arrives while the first is in flight.
    fake.set_busy_window(Duration::from_millis(750));
    let id = fake.create_identity("sub", "rg", "id1");
    let other = fake.create_identity("sub", "rg", "id2");
    let client = Client::new(&fake).await;
    let (a, b, c) = tokio::join!(
        client.put(&id, "fic-a", fic(ISSUER, "a")),
        client.put(&id, "fic-b", fic(ISSUER, "b")),
        client.put(&other, "fic-c", fic(ISSUER, "c")),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [201, 409],
        "one write wins, the overlapping one is refused"
    );
    let loser = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(error_code(loser), CONCURRENT_WRITE_CODE);
    assert_eq!(c.0, 201, "another identity is not blocked");
    assert_eq!(fake.calls().conflicts, 1);
    // Sequential writes after the window never conflict.
    fake.set_busy_window(Duration::from_millis(10));
    assert_eq!(client.put(&id, "fic-d", fic(ISSUER, "d")).await.0, 201);
    assert_eq!(client.put(&id, "fic-e", fic(ISSUER, "e")).await.0, 201);
    assert_eq!(fake.calls().conflicts, 1);
}

#[tokio::test]
async fn injected_faults_are_served_count_times_with_retry_after() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    let client = Client::new(&fake).await;
    fake.inject_fault(Fault::new(Operation::List, 429).times(2).retry_after("7"));
    let url = client.url(&id, None, "2024-11-30");
    for _ in 0..2 {
        let (status, headers, body) = client.send(client.http.get(&url)).await;
        assert_eq!(status, 429);
        assert_eq!(
            headers.get("retry-after").map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
        assert_eq!(error_code(&body), "TooManyRequests");
    }
    assert_eq!(client.send(client.http.get(&url)).await.0, 200);
    assert!(fake.pending_faults().is_empty());
    fake.inject_fault(Fault::new(Operation::Put, 403));
    let (status, body) = client.put(&id, "fic-1", fic(ISSUER, "s")).await;
    assert_eq!((status, error_code(&body)), (403, "AuthorizationFailed"));
    assert_eq!(
        fake.credentials(&id).map(|c| c.len()),
        Some(0),
        "faulted PUT wrote nothing"
    );
    assert_eq!(fake.calls().list, 3);
}

#[tokio::test]
async fn lists_page_with_next_link_and_top() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    for i in 0..12 {
        fake.seed_credential(
            &id,
            StoredCredential::new(format!("fic-{i:02}"), ISSUER, format!("s{i}"), AUD),
        )
        .expect("seed");
    }
    fake.set_page_size(Some(5));
    let client = Client::new(&fake).await;
    let mut url = client.url(&id, None, "2024-11-30");
    let mut sizes = Vec::new();
    let mut names = Vec::new();
    loop {
        let (status, _, body) = client.send(client.http.get(&url)).await;
        assert_eq!(status, 200);
        let value = body["value"].as_array().cloned().unwrap_or_default();
        sizes.push(value.len());
        names.extend(
            value
                .iter()
                .map(|v| v["name"].as_str().unwrap_or("").to_string()),
        );
        match body["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(sizes, vec![5, 5, 2]);
    assert_eq!(names.len(), 12);
    assert_eq!(names[0], "fic-00");
    assert_eq!(names[11], "fic-11");
    assert_eq!(fake.calls().list, 3);

    fake.set_page_size(None);
    let (_, _, body) = client
        .send(
            client
                .http
                .get(format!("{}&$top=4", client.url(&id, None, "2024-11-30"))),
        )
        .await;
    assert_eq!(body["value"].as_array().map(Vec::len), Some(4));
    assert!(body["nextLink"].as_str().unwrap_or("").contains("$top=4"));
}

#[tokio::test]
async fn admin_http_api_mirrors_the_rust_methods() {
    let fake = FakeArm::start().await.expect("start");
    let http = reqwest::Client::new();
    let base = fake.url();
    let resp = http
        .post(format!("{base}/_fake/identities"))
        .json(&json!({"subscriptionId": "sub", "resourceGroup": "rg", "name": "id1"}))
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let resp = http
        .post(format!("{base}/_fake/identities/sub/rg/id1/credentials"))
        .json(&json!({"name": "foreign", "issuer": ISSUER, "subject": "s", "audiences": [AUD]}))
        .send()
        .await
        .expect("seed");
    assert_eq!(resp.status(), 201);
    let creds: Vec<StoredCredential> = http
        .get(format!("{base}/_fake/identities/sub/rg/id1/credentials"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        creds,
        vec![StoredCredential::new("foreign", ISSUER, "s", AUD)]
    );
    let resp = http
        .post(format!("{base}/_fake/faults"))
        .json(&json!({"operation": "put", "status": 503, "retryAfter": "2"}))
        .send()
        .await
        .expect("fault");
    assert_eq!(resp.status(), 204);
    assert_eq!(fake.pending_faults().len(), 1);
    let resp = http
        .put(format!("{base}/_fake/config"))
        .json(&json!({"pageSize": 1, "busyWindowMs": 5, "tokenExpiresIn": 60}))
        .send()
        .await
        .expect("config");
    assert_eq!(resp.status(), 204);
    let client = Client::new(&fake).await;
    let id = IdentityRef::new("sub", "rg", "id1");
    let (status, _) = client.put(&id, "mine", fic(ISSUER, "t")).await;
    assert_eq!(status, 503);
    let calls: Value = http
        .get(format!("{base}/_fake/calls"))
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("json");
    assert_eq!(calls["put"], 1);
    assert_eq!(calls["token"], 1);
    assert_eq!(fake.token_requests().len(), 1);
    let resp = http
        .delete(format!("{base}/_fake/calls"))
        .send()
        .await
        .expect("reset");
    assert_eq!(resp.status(), 204);
    assert_eq!(fake.calls(), Default::default());
    let requests: Value = http
        .get(format!("{base}/_fake/token-requests"))
        .send()
        .await
        .expect("token requests")
        .json()
        .await
        .expect("json");
    assert_eq!(requests.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn binary_writes_its_url_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("url");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-arm"))
        .args(["--listen", "127.0.0.1:0", "--url-out"])
        .arg(&url_file)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fake-arm");
    // Wait for the condition (the URL file appears), bounded so a broken binary fails the test.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Ok(url) = std::fs::read_to_string(&url_file) {
            break url;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fake-arm never wrote its URL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let calls = reqwest::get(format!("{url}/_fake/calls"))
        .await
        .expect("get");
    assert_eq!(calls.status(), 200);
    child.kill().await.expect("kill");
}

// The identity itself: `UserAssignedIdentities_Get` of the ARM ManagedIdentity OpenAPI spec,
// api-version 2026-05-31 (200: `Identity`, otherwise ARM's error body).

const CLIENT_ID: &str = "2f6d3a4e-5b1c-4d7e-9f80-1a2b3c4d5e6f";

#[tokio::test]
async fn identity_get_answers_the_identity_resource() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity_with_client_id("c267c0e7", "rgName", "identityName", CLIENT_ID);
    let client = Client::new(&fake).await;
    let (status, _, body) = client
        .send(client.http.get(client.identity_url(&id, "2026-05-31")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "id": "/subscriptions/c267c0e7/resourcegroups/rgName/providers/Microsoft.ManagedIdentity/userAssignedIdentities/identityName",
            "name": "identityName",
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "location": IDENTITY_LOCATION,
            "tags": {},
            "properties": {
                "tenantId": IDENTITY_TENANT_ID,
                "principalId": id.default_principal_id(),
                "clientId": CLIENT_ID,
            },
        })
    );
    assert_eq!(body["type"], IDENTITY_TYPE);
    assert_eq!(fake.client_id(&id).as_deref(), Some(CLIENT_ID));

    // Names are case-insensitive; the answer keeps the casing the identity was created with.
    let other_casing = IdentityRef::new("C267C0E7", "RGNAME", "IDENTITYNAME");
    let (status, _, upper) = client
        .send(
            client
                .http
                .get(client.identity_url(&other_casing, "2024-11-30")),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(upper, body);

    // Reading an identity is counted on its own; no FIC call and no write.
    let calls = fake.calls();
    assert_eq!(calls.get_identity, 2);
    assert_eq!((calls.get, calls.list, calls.writes()), (0, 0, 0));
}

#[tokio::test]
async fn identity_created_without_a_client_id_gets_a_derived_one() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    let derived = id.default_client_id();
    assert_eq!(fake.client_id(&id).as_deref(), Some(derived.as_str()));
    let client = Client::new(&fake).await;
    let (status, _, body) = client
        .send(client.http.get(client.identity_url(&id, "2026-05-31")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["properties"]["clientId"], derived.as_str());
    // Same identity, same id, in any process: a test can compare without asking the fake.
    assert_eq!(
        derived,
        IdentityRef::new("sub", "rg", "id1").default_client_id()
    );
    let other = fake.create_identity("sub", "rg", "id2");
    assert_ne!(fake.client_id(&other), Some(derived.clone()));
    // Creating it again keeps the identity as it is; giving a client id changes only that.
    fake.seed_credential(&id, StoredCredential::new("fic-1", ISSUER, "s", AUD))
        .expect("seed");
    fake.create_identity("sub", "rg", "id1");
    assert_eq!(fake.client_id(&id).as_deref(), Some(derived.as_str()));
    fake.create_identity_with_client_id("sub", "rg", "id1", CLIENT_ID);
    assert_eq!(fake.client_id(&id).as_deref(), Some(CLIENT_ID));
    assert_eq!(fake.credentials(&id).map(|c| c.len()), Some(1));
}

#[tokio::test]
async fn unknown_identity_get_is_404_resource_not_found() {
    let fake = FakeArm::start().await.expect("start");
    let client = Client::new(&fake).await;
    let missing = IdentityRef::new("sub", "rg", "nope");
    let (status, _, body) = client
        .send(client.http.get(client.identity_url(&missing, "2026-05-31")))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {
            "code": "ResourceNotFound",
            "message": "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/nope' under resource group 'rg' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        }})
    );
    // An identity deleted in Azure is gone for GET too.
    let id = fake.create_identity("sub", "rg", "id1");
    let url = client.identity_url(&id, "2026-05-31");
    assert_eq!(client.send(client.http.get(&url)).await.0, 200);
    assert!(fake.delete_identity(&id));
    assert_eq!(fake.client_id(&id), None);
    let (status, _, body) = client.send(client.http.get(&url)).await;
    assert_eq!((status, error_code(&body)), (404, "ResourceNotFound"));
    assert_eq!(fake.calls().get_identity, 3);
}

#[tokio::test]
async fn identity_get_needs_a_token_and_an_api_version() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    let client = Client::new(&fake).await;
    let url = client.identity_url(&id, "2026-05-31");
    let resp = client.http.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(error_code(&body), "AuthenticationFailed");
    let resp = client
        .http
        .get(&url)
        .bearer_auth("made-up")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(error_code(&body), "InvalidAuthenticationToken");
    fake.revoke_tokens();
    let (status, _, body) = client.send(client.http.get(&url)).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "InvalidAuthenticationToken")
    );
    let client = Client::new(&fake).await;
    for (version, status, code) in [
        ("", 400, "MissingApiVersionParameter"),
        ("1999-01-01", 400, "InvalidApiVersionParameter"),
        // Reading an identity is older than FICs: 2018-11-30 serves it (but not FICs).
        ("2018-11-30", 200, ""),
        ("2024-11-30", 200, ""),
        ("2026-05-31", 200, ""),
    ] {
        let (got, _, body) = client
            .send(client.http.get(client.identity_url(&id, version)))
            .await;
        assert_eq!(got, status, "{version}");
        assert_eq!(error_code(&body), code, "{version}");
    }
    // A missing identity is reported only to an authenticated caller.
    let missing = IdentityRef::new("sub", "rg", "nope");
    let resp = client
        .http
        .get(client.identity_url(&missing, "2026-05-31"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let calls = fake.calls();
    assert_eq!(calls.get_identity, 9, "every identity GET is counted");
    assert_eq!(calls.other, 0);
}

#[tokio::test]
async fn identity_writes_are_not_served() {
    let fake = FakeArm::start().await.expect("start");
    let id = fake.create_identity("sub", "rg", "id1");
    let client = Client::new(&fake).await;
    let url = client.identity_url(&id, "2026-05-31");
    fake.reset_calls();
    for req in [
        client.http.put(&url).json(&json!({"location": "eastus"})),
        client.http.patch(&url).json(&json!({"tags": {}})),
        client.http.delete(&url),
    ] {
        let (status, _, body) = client.send(req).await;
        assert_eq!((status, error_code(&body)), (404, "NotFound"));
    }
    assert_eq!(fake.calls(), Default::default());
    assert!(fake.client_id(&id).is_some(), "still there");
}

#[tokio::test]
async fn admin_http_api_creates_identities_with_a_client_id() {
    let fake = FakeArm::start().await.expect("start");
    let http = reqwest::Client::new();
    let base = fake.url();
    let resp = http
        .post(format!("{base}/_fake/identities"))
        .json(&json!({
            "subscriptionId": "sub", "resourceGroup": "rg", "name": "id1", "clientId": CLIENT_ID,
        }))
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    let id = IdentityRef::new("sub", "rg", "id1");
    assert_eq!(body, json!({"id": id.arm_id(), "clientId": CLIENT_ID}));
    let resp = http
        .post(format!("{base}/_fake/identities"))
        .json(&json!({"subscriptionId": "sub", "resourceGroup": "rg", "name": "id2"}))
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.expect("json");
    let id2 = IdentityRef::new("sub", "rg", "id2");
    assert_eq!(body["clientId"], id2.default_client_id().as_str());
    let client = Client::new(&fake).await;
    let (status, _, body) = client
        .send(client.http.get(client.identity_url(&id, "2026-05-31")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["properties"]["clientId"], CLIENT_ID);
    let calls: Value = http
        .get(format!("{base}/_fake/calls"))
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("json");
    assert_eq!(calls["getIdentity"], 1);
}

#[tokio::test]
async fn binary_trusts_the_named_clients_and_writes_the_devops_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("url");
    let devops_file = dir.path().join("devops-url");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-arm"))
        .args(["--url-out"])
        .arg(&url_file)
        .arg("--devops-url-out")
        .arg(&devops_file)
        .args([
            "--trusted-client-id",
            "operator-client",
            "--insecure-issuer",
            "https://oidc.emulator.local/=http://127.0.0.1:1",
        ])
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fake-arm");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (url, devops) = loop {
        if let (Ok(url), Ok(devops)) = (
            std::fs::read_to_string(&url_file),
            std::fs::read_to_string(&devops_file),
        ) {
            break (url, devops);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fake-arm never wrote its URLs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        devops.starts_with("http://127.0.0.1:") && devops != url,
        "{devops}"
    );
    let http = reqwest::Client::new();
    let token = |client: &'static str| {
        let mut form = token_form("not-a-jwt");
        form[0].1 = client.to_string();
        http.post(format!("{url}/tenant-1/oauth2/v2.0/token"))
            .form(&form)
            .send()
    };
    assert_eq!(token("operator-client").await.expect("token").status(), 200);
    let refused = token("someone-else").await.expect("token");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error_codes"], json!([700016]));
    let issuers: Value = http
        .get(format!("{url}/_fake/entra/insecure-issuers"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        issuers,
        json!({"https://oidc.emulator.local/": "http://127.0.0.1:1"})
    );
    let git = reqwest::get(format!(
        "{devops}/org/p/_git/r/info/refs?service=git-upload-pack"
    ))
    .await
    .expect("git");
    assert_eq!(git.status(), 401);
    child.kill().await.expect("kill");
}
