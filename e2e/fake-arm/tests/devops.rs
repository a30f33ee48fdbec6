//! The fake Azure DevOps Git endpoint answers `info/refs?service=git-upload-pack` like Azure
//! DevOps: 200 with an upload-pack advertisement only for an Entra token issued for Azure
//! DevOps to a member of the organization; 401 with Azure DevOps' challenges otherwise, and
//! 404 for a repository that does not exist.

mod common;

use base64::Engine as _;
use common::{ARM_SCOPE, AUDIENCE, DEVOPS_SCOPE, Issuer, TENANT, exchange};
use fake_arm::{FakeArm, IDENTITY_TENANT_ID, head_object_id};
use serde_json::{Value, json};

const ISSUER: &str = "https://oidc.test.local/tenant-a/issuer/";
/// Flux's source-controller identity of an ObjectLevel tenant (`<name>-git`).
const SUBJECT: &str = "system:serviceaccount:vcluster-team-a:team-a-git";
const CLIENT_ID: &str = "1e2d3c4b-5a69-4788-9a0b-1c2d3e4f5a6b";

struct Setup {
    fake: FakeArm,
    issuer: Issuer,
}

impl Setup {
    async fn new() -> Setup {
        let fake = FakeArm::start().await.expect("start");
        let issuer = Issuer::start(ISSUER).await;
        issuer.allow_in(&fake);
        fake.register_federated_credential(CLIENT_ID, ISSUER, SUBJECT, AUDIENCE);
        fake.create_devops_repository("contoso", "Platform", "tenant-config");
        Setup { fake, issuer }
    }

    async fn token(&self, scope: &str) -> String {
        let (status, body) = exchange(
            &self.fake,
            CLIENT_ID,
            scope,
            &self.issuer.token(SUBJECT, AUDIENCE),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("token").to_string()
    }

    fn url(&self, org: &str, project: &str, repo: &str) -> String {
        format!(
            "{}/{org}/{project}/_git/{repo}/info/refs?service=git-upload-pack",
            self.fake.devops_url()
        )
    }
}

async fn get(url: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    request.send().await.expect("git request")
}

fn challenges(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect()
}

/// 401 with the three challenges Azure DevOps sends, naming `tenant`, and no body.
async fn assert_unauthenticated(fake: &FakeArm, response: reqwest::Response, tenant: &str) {
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenges(&response),
        vec![
            format!("Bearer authorization_uri={}/{tenant}", fake.url()),
            "Basic realm=\"https://tfsprodcus14.visualstudio.com/\"".to_string(),
            "TFS-Federated".to_string(),
        ]
    );
    assert_eq!(
        response.headers()["x-vss-resourcetenant"],
        tenant,
        "where Git Credential Manager reads the tenant"
    );
    assert!(response.text().await.expect("body").is_empty());
}

/// Azure DevOps' JSON error body: a UTF-8 BOM, then `$id`, `message`, `typeKey`...
async fn service_error(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.expect("body");
    assert!(
        bytes.starts_with("\u{feff}".as_bytes()),
        "a byte order mark first"
    );
    serde_json::from_slice(&bytes[3..]).expect("JSON after the BOM")
}

#[tokio::test]
async fn a_member_with_a_devops_token_gets_the_advertisement() {
    let s = Setup::new().await;
    s.fake.add_devops_member("contoso", CLIENT_ID);
    let token = s.token(DEVOPS_SCOPE).await;
    // Names are case-insensitive, as in Azure DevOps.
    let response = get(
        &s.url("Contoso", "platform", "Tenant-Config"),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/x-git-upload-pack-advertisement"
    );
    let body = response.text().await.expect("body");
    let id = head_object_id("contoso", "platform", "tenant-config");
    let head = format!(
        "{id} HEAD\0multi_ack thin-pack side-band side-band-64k ofs-delta shallow no-progress include-tag multi_ack_detailed no-done symref=HEAD:refs/heads/main agent=git/fake-azure-devops\n"
    );
    let main = format!("{id} refs/heads/main\n");
    assert_eq!(
        body,
        format!(
            "001e# service=git-upload-pack\n0000{:04x}{head}{:04x}{main}0000",
            head.len() + 4,
            main.len() + 4
        )
    );
    // A token as the Basic password works too (Git's credential helpers send it so).
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"));
    let response = get(
        &s.url("contoso", "Platform", "tenant-config"),
        Some(&format!("Basic {basic}")),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(s.fake.calls().git, 2);
}

#[tokio::test]
async fn no_or_an_invalid_token_is_401_with_azure_devops_challenges() {
    let s = Setup::new().await;
    s.fake.add_devops_member("contoso", CLIENT_ID);
    s.fake.create_devops_organization("contoso", TENANT);
    let url = s.url("contoso", "Platform", "tenant-config");
    assert_unauthenticated(&s.fake, get(&url, None).await, TENANT).await;
    assert_unauthenticated(&s.fake, get(&url, Some("Bearer made-up")).await, TENANT).await;
    // A valid Entra token, but for ARM, not Azure DevOps.
    let arm = s.token(ARM_SCOPE).await;
    assert_unauthenticated(
        &s.fake,
        get(&url, Some(&format!("Bearer {arm}"))).await,
        TENANT,
    )
    .await;
    // A revoked token.
    let token = s.token(DEVOPS_SCOPE).await;
    assert_eq!(
        get(&url, Some(&format!("Bearer {token}"))).await.status(),
        200
    );
    s.fake.revoke_tokens();
    assert_unauthenticated(
        &s.fake,
        get(&url, Some(&format!("Bearer {token}"))).await,
        TENANT,
    )
    .await;
    // An organization the fake does not have names the default tenant.
    assert_unauthenticated(
        &s.fake,
        get(&s.url("fabrikam", "p", "r"), None).await,
        IDENTITY_TENANT_ID,
    )
    .await;
}

#[tokio::test]
async fn an_identity_not_in_the_organization_is_401_tf401444() {
    let s = Setup::new().await;
    let token = s.token(DEVOPS_SCOPE).await;
    let url = s.url("contoso", "Platform", "tenant-config");
    let response = get(&url, Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.status(), 401);
    assert_eq!(challenges(&response), vec!["Bearer".to_string()]);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/json; charset=utf-8"
    );
    let message = format!(
        "TF401444: Please sign-in at least once as {TENANT}\\{TENANT}\\{CLIENT_ID} in a web browser to enable access to the service."
    );
    let encoded = response.headers()["x-tfs-serviceerror"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        encoded.starts_with("TF401444%3A%20Please%20sign-in%20"),
        "{encoded}"
    );
    assert_eq!(
        percent_encoding::percent_decode_str(&encoded)
            .decode_utf8()
            .expect("utf-8"),
        message
    );
    assert_eq!(
        service_error(response).await,
        json!({
            "$id": "1",
            "innerException": null,
            "message": message,
            "typeName": "Microsoft.TeamFoundation.Framework.Server.InvalidIdentityException, Microsoft.TeamFoundation.Framework.Server",
            "typeKey": "InvalidIdentityException",
            "errorCode": 0,
            "eventId": 3000,
        })
    );
    // Added, it reads; removed again, it is refused again.
    s.fake
        .add_devops_member("CONTOSO", &CLIENT_ID.to_ascii_uppercase());
    assert_eq!(
        get(&url, Some(&format!("Bearer {token}"))).await.status(),
        200
    );
    assert!(s.fake.remove_devops_member("contoso", CLIENT_ID));
    assert!(!s.fake.remove_devops_member("contoso", CLIENT_ID));
    assert_eq!(
        get(&url, Some(&format!("Bearer {token}"))).await.status(),
        401
    );
}

#[tokio::test]
async fn an_unknown_repository_is_404_tf401019() {
    let s = Setup::new().await;
    s.fake.add_devops_member("contoso", CLIENT_ID);
    let token = s.token(DEVOPS_SCOPE).await;
    for (project, repo) in [
        ("Platform", "no-such-repo"),
        ("NoSuchProject", "tenant-config"),
    ] {
        let response = get(
            &s.url("contoso", project, repo),
            Some(&format!("Bearer {token}")),
        )
        .await;
        assert_eq!(response.status(), 404);
        assert_eq!(
            service_error(response).await,
            json!({
                "$id": "1",
                "innerException": null,
                "message": format!("TF401019: The Git repository with name or identifier {repo} does not exist or you do not have permissions for the operation you are attempting."),
                "typeName": "Microsoft.TeamFoundation.Git.Server.GitRepositoryNotFoundException, Microsoft.TeamFoundation.Git.Server",
                "typeKey": "GitRepositoryNotFoundException",
                "errorCode": 0,
                "eventId": 3000,
            })
        );
    }
}

#[tokio::test]
async fn only_upload_pack_info_refs_is_served() {
    let s = Setup::new().await;
    s.fake.add_devops_member("contoso", CLIENT_ID);
    let token = s.token(DEVOPS_SCOPE).await;
    let bearer = format!("Bearer {token}");
    let base = format!(
        "{}/contoso/Platform/_git/tenant-config",
        s.fake.devops_url()
    );
    let receive = get(
        &format!("{base}/info/refs?service=git-receive-pack"),
        Some(&bearer),
    )
    .await;
    assert_eq!(receive.status(), 400);
    assert_eq!(
        get(&format!("{base}/info/refs"), Some(&bearer))
            .await
            .status(),
        400
    );
    assert_eq!(
        get(&format!("{base}/HEAD"), Some(&bearer)).await.status(),
        404
    );
}

#[tokio::test]
async fn the_admin_http_api_configures_azure_devops() {
    let s = Setup::new().await;
    let http = reqwest::Client::new();
    let base = s.fake.url();
    let created = http
        .post(format!("{base}/_fake/devops/repositories"))
        .json(&json!({"organization": "fabrikam", "project": "Apps", "repository": "web"}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), 201);
    let tenant = http
        .put(format!("{base}/_fake/devops/organizations/fabrikam"))
        .json(&json!({"tenantId": TENANT}))
        .send()
        .await
        .expect("put");
    assert_eq!(tenant.status(), 204);
    let added = http
        .post(format!("{base}/_fake/devops/members"))
        .json(&json!({"organization": "fabrikam", "clientId": CLIENT_ID}))
        .send()
        .await
        .expect("post");
    assert_eq!(added.status(), 204);
    let summary: Value = http
        .get(format!("{base}/_fake/devops"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        summary["fabrikam"],
        json!({"members": [CLIENT_ID], "repositories": ["apps/web"]})
    );
    let token = s.token(DEVOPS_SCOPE).await;
    let url = s.url("fabrikam", "Apps", "web");
    assert_eq!(
        get(&url, Some(&format!("Bearer {token}"))).await.status(),
        200
    );
    let removed = http
        .delete(format!("{base}/_fake/devops/members"))
        .json(&json!({"organization": "fabrikam", "clientId": CLIENT_ID}))
        .send()
        .await
        .expect("delete");
    assert_eq!(removed.status(), 204);
    let again = http
        .delete(format!("{base}/_fake/devops/members"))
        .json(&json!({"organization": "fabrikam", "clientId": CLIENT_ID}))
        .send()
        .await
        .expect("delete");
    assert_eq!(again.status(), 404);
    assert_eq!(
        get(&url, Some(&format!("Bearer {token}"))).await.status(),
        401
    );
}
