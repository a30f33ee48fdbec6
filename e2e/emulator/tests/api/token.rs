//! TokenRequest through kube-rs: the token verifies against the JWKS the issuer's discovery
//! document points at, with the claims kube-apiserver issues; defaults, bounds and refusals
//! as the real subresource has them.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::common::{api_error, start};

const ISSUER: &str = "https://oidc.emulator.local/";
const AUDIENCE: &str = "api://AzureADTokenExchange";

async fn get_json(client: &Client, path: &str) -> Value {
    let request = http::Request::get(path).body(Vec::new()).expect("request");
    client.request(request).await.expect("GET")
}

fn token_request(spec: Value) -> TokenRequest {
    serde_json::from_value(json!({"spec": spec})).expect("token request")
}

/// The answer to a TokenRequest as JSON, and its token.
fn answer(issued: &TokenRequest) -> (Value, String) {
    let v = serde_json::to_value(issued).expect("json");
    let token = v["status"]["token"]
        .as_str()
        .expect("status.token")
        .to_string();
    (v, token)
}

/// Verifies `token` with the key the issuer publishes (discovery, then its `jwks_uri`) and
/// returns its header and claims.
async fn verify(
    client: &Client,
    base_url: &str,
    token: &str,
    audience: &str,
) -> Result<(jsonwebtoken::Header, Value), jsonwebtoken::errors::Error> {
    let discovery = get_json(client, "/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], ISSUER);
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
    let path = jwks_uri
        .strip_prefix(base_url)
        .expect("the JWKS is served by the API server");
    assert_eq!(path, "/openid/v1/jwks");
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(get_json(client, path).await).expect("a JWK Set");
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.clone().expect("a kid");
    let jwk = jwks.find(&kid).expect("the token's key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "sub", "aud"]);
    validation.validate_nbf = true;
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation)?;
    Ok((header, data.claims))
}

#[tokio::test]
async fn token_requests_issue_verifiable_service_account_tokens() {
    let (emu, client) = start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "workload"}})).expect("sa");
    let sa = sas.create(&PostParams::default(), &sa).await.expect("sa");

    let issued = sas
        .create_token_request(
            "workload",
            &PostParams::default(),
            &token_request(json!({"audiences": [AUDIENCE], "expirationSeconds": 7200})),
        )
        .await
        .expect("token request");
    let (issued, token) = answer(&issued);
    let (header, claims) = verify(&client, &emu.url(), &token, AUDIENCE)
        .await
        .expect("the token verifies");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.typ, None);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:default:workload");
    assert_eq!(claims["aud"], AUDIENCE, "one audience is a string");
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["nbf"].as_i64().expect("nbf"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!((nbf, exp - iat), (iat, 7200));
    let now = chrono::Utc::now().timestamp();
    assert!((now - 60..=now).contains(&iat), "issued now: {iat}");
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().expect("jti")).is_ok());
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "default", "serviceaccount": {"name": "workload", "uid": sa.uid().expect("uid")}})
    );
    let expires = issued["status"]["expirationTimestamp"]
        .as_str()
        .expect("expiration");
    let expires = chrono::DateTime::parse_from_rfc3339(expires).expect("a timestamp");
    assert_eq!(expires.timestamp(), exp);
    assert_eq!(issued["metadata"]["name"], "workload");
    assert_eq!(issued["metadata"]["namespace"], "default");
    assert_eq!(issued["metadata"]["uid"].as_str(), sa.uid().as_deref());
    assert_eq!(issued["spec"]["expirationSeconds"], 7200);

    // Another audience, or a tampered signature, does not verify.
    assert!(verify(&client, &emu.url(), &token, "other").await.is_err());
    let mut tampered = token.clone();
    let last = tampered.pop().expect("a signature");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(
        verify(&client, &emu.url(), &tampered, AUDIENCE)
            .await
            .is_err()
    );

    // Defaults: the API audiences (the issuer) and an hour. Several audiences are a list.
    let default = sas
        .create_token_request(
            "workload",
            &PostParams::default(),
            &token_request(json!({})),
        )
        .await
        .expect("token request");
    let (default, default_token) = answer(&default);
    assert_eq!(default["spec"]["audiences"], json!([ISSUER]));
    assert_eq!(default["spec"]["expirationSeconds"], 3600);
    let (_, claims) = verify(&client, &emu.url(), &default_token, ISSUER)
        .await
        .expect("verifies");
    assert_eq!(
        claims["exp"]
            .as_i64()
            .map(|e| e - claims["iat"].as_i64().unwrap_or(0)),
        Some(3600)
    );
    let two = sas
        .create_token_request(
            "workload",
            &PostParams::default(),
            &token_request(json!({"audiences": ["a", "b"]})),
        )
        .await
        .expect("token request");
    let (_, claims) = verify(&client, &emu.url(), &answer(&two).1, "b")
        .await
        .expect("verifies");
    assert_eq!(claims["aud"], json!(["a", "b"]));

    // Bound to a Secret: the token names it.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).expect("s");
    let secret = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("s");
    let bound = token_request(json!({
        "audiences": [AUDIENCE],
        "boundObjectRef": {"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": secret.uid()},
    }));
    let bound = sas
        .create_token_request("workload", &PostParams::default(), &bound)
        .await
        .expect("bound token");
    let (_, claims) = verify(&client, &emu.url(), &answer(&bound).1, AUDIENCE)
        .await
        .expect("verifies");
    assert_eq!(
        claims["kubernetes.io"]["secret"],
        json!({"name": "s", "uid": secret.uid().expect("uid")})
    );

    // The key survives a restart, as a signing key file does.
    let before = get_json(&client, "/openid/v1/jwks").await;
    emu.restart(std::time::Duration::ZERO)
        .await
        .expect("restart");
    assert_eq!(get_json(&client, "/openid/v1/jwks").await, before);
    assert!(verify(&client, &emu.url(), &token, AUDIENCE).await.is_ok());
    emu.shutdown().await;
}

#[tokio::test]
async fn token_requests_are_refused_as_kube_apiserver_refuses_them() {
    let (emu, client) = start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let missing = api_error(
        sas.create_token_request("nobody", &PostParams::default(), &token_request(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "serviceaccounts \"nobody\" not found");

    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "workload"}})).expect("sa");
    sas.create(&PostParams::default(), &sa).await.expect("sa");
    let short = api_error(
        sas.create_token_request(
            "workload",
            &PostParams::default(),
            &token_request(json!({"expirationSeconds": 599})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((short.code, short.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        short.message,
        "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid \
         value: 599: may not specify a duration less than 10 minutes"
    );
    let minimum = sas
        .create_token_request(
            "workload",
            &PostParams::default(),
            &token_request(json!({"expirationSeconds": 600})),
        )
        .await
        .expect("ten minutes is the minimum");
    assert_eq!(answer(&minimum).0["spec"]["expirationSeconds"], 600);

    let mut other = token_request(json!({}));
    other.metadata.name = Some("someone-else".into());
    let mismatch = api_error(
        sas.create_token_request("workload", &PostParams::default(), &other)
            .await
            .unwrap_err(),
    );
    assert_eq!(mismatch.code, 422);
    assert!(
        mismatch
            .message
            .contains("metadata.name: Invalid value: \"someone-else\": must match the service account name if specified"),
        "{}",
        mismatch.message
    );

    // Create is the subresource's only verb.
    let request = http::Request::get("/api/v1/namespaces/default/serviceaccounts/workload/token")
        .body(Vec::new())
        .expect("request");
    let e = api_error(client.request::<Value>(request).await.unwrap_err());
    assert_eq!(e.code, 405);
    emu.shutdown().await;
}
