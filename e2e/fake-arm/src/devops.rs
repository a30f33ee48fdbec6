//! A fake Azure DevOps Git endpoint, on its own listener
//! ([`FakeArm::devops_url`](crate::FakeArm::devops_url)) so a client can swap the scheme and
//! host of a `https://dev.azure.com/{org}/{project}/_git/{repo}` URL for it:
//! `GET /{org}/{project}/_git/{repo}/info/refs?service=git-upload-pack`, the first request of
//! a smart-HTTP clone or fetch. In order:
//!
//! | condition | answer |
//! |---|---|
//! | `service` is not `git-upload-pack` | 400 (the fake serves nothing else; not Azure DevOps' answer) |
//! | no `Authorization`, or a token the fake Entra did not issue for Azure DevOps ([`DEVOPS_RESOURCE`](crate::DEVOPS_RESOURCE)), or revoked | 401 with Azure DevOps' three challenges: `WWW-Authenticate: Bearer authorization_uri=<authority>/<tenant>` (the authority is the fake Entra's URL where Azure DevOps names Entra's), `Basic realm="..."`, `TFS-Federated`, and `X-VSS-ResourceTenant` |
//! | a valid token of an identity that is not a member of the organization | 401, `WWW-Authenticate: Bearer`, `X-TFS-ServiceError` and a JSON body with TF401444 |
//! | a member, but no such project or repository | 404 with TF401019 |
//! | otherwise | 200 `application/x-git-upload-pack-advertisement`: a pkt-line advertisement of `HEAD` and `refs/heads/main` |
//!
//! Sources, in words: the three challenges are what Azure DevOps answers an unauthenticated
//! request with, as quoted by several Azure Artifacts and Azure Repos client projects (npm,
//! sbt), and how Git Credential Manager finds the tenant (`authorization_uri`, else
//! `X-VSS-ResourceTenant`). For an identity not in the organization, the Azure DevOps
//! documentation on service principals and managed identities names TF401444 ("Please sign-in
//! at least once as ... to enable access to the service"): the principal was not added to the
//! organization. The 401 status and the body's shape (UTF-8 BOM, `$id`, `message`, `typeName`,
//! `typeKey`, `errorCode`, `eventId`, and the message URL-encoded in `X-TFS-ServiceError`)
//! follow Azure DevOps' refusal of an Entra bearer token (TF400813) as another project's Azure
//! DevOps test double recorded it from the live service; the `typeName` for TF401444 is not
//! verified. TF401019 and its body are Azure DevOps' answer for a repository that does not
//! exist or is not readable, as recorded there too. The 200 body follows Git's smart HTTP
//! protocol (`gitprotocol-http`).
//!
//! Organization, project and repository names are case-insensitive, like Azure DevOps'.
//! Membership is by client id (the application id of the service principal or managed
//! identity), which is what the token names in `appid`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use crate::model::{DEVOPS_RESOURCE, IDENTITY_TENANT_ID, IssuedToken};
use crate::state::{FakeState, Organization, Shared};

/// The `Basic` realm Azure DevOps names (one of its scale units; any value does for clients).
const BASIC_REALM: &str = "https://tfsprodcus14.visualstudio.com/";

/// What `X-TFS-ServiceError` leaves unencoded (as in the recorded header).
const SERVICE_ERROR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{org}/{project}/_git/{repo}/info/refs", get(info_refs))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not served by the fake Azure DevOps") })
        .with_state(shared)
}

async fn info_refs(
    State(shared): State<Arc<Shared>>,
    Path((org, project, repo)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = shared.lock();
    state.calls.git += 1;
    if query.get("service").map(String::as_str) != Some("git-upload-pack") {
        return (
            StatusCode::BAD_REQUEST,
            "the fake Azure DevOps serves only info/refs?service=git-upload-pack",
        )
            .into_response();
    }
    let org_key = org.to_ascii_lowercase();
    let tenant = state
        .devops
        .get(&org_key)
        .map(|o| o.tenant_id.clone())
        .unwrap_or_else(|| IDENTITY_TENANT_ID.to_string());
    let Some(token) = presented_token(&headers)
        .and_then(|t| state.tokens.get(&t))
        .cloned()
    else {
        return unauthenticated(&state.base_url, &tenant);
    };
    if !token.resource.eq_ignore_ascii_case(DEVOPS_RESOURCE) {
        return unauthenticated(&state.base_url, &tenant);
    }
    let organization = state.devops.get(&org_key);
    let member =
        organization.is_some_and(|o| o.members.contains(&token.client_id.to_ascii_lowercase()));
    if !member {
        return not_a_member(&token);
    }
    let exists = organization.is_some_and(|o| {
        o.repositories
            .contains(&(project.to_ascii_lowercase(), repo.to_ascii_lowercase()))
    });
    if !exists {
        return repository_not_found(&repo);
    }
    advertisement(&org_key, &project, &repo)
}

/// The token of `Authorization: Bearer <token>`, or of `Basic` with the token as password
/// (both are accepted by Azure DevOps for an Entra token).
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        return decoded
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    None
}

fn unauthenticated(authority: &str, tenant: &str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, Body::empty()).into_response();
    let headers = response.headers_mut();
    for challenge in [
        format!(
            "Bearer authorization_uri={}/{tenant}",
            authority.trim_end_matches('/')
        ),
        format!("Basic realm=\"{BASIC_REALM}\""),
        "TFS-Federated".to_string(),
    ] {
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            headers.append(header::WWW_AUTHENTICATE, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(tenant) {
        headers.insert("x-vss-resourcetenant", value);
    }
    response
}

/// Azure DevOps' JSON error body (with its UTF-8 byte order mark).
fn service_error(
    status: StatusCode,
    message: &str,
    type_name: &str,
    type_key: &str,
    service_error_header: bool,
) -> Response {
    let body = serde_json::json!({
        "$id": "1",
        "innerException": null,
        "message": message,
        "typeName": type_name,
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3000,
    });
    let mut response = (status, format!("\u{feff}{body}")).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if service_error_header
        && let Ok(value) =
            HeaderValue::from_str(&utf8_percent_encode(message, SERVICE_ERROR).to_string())
    {
        headers.insert("x-tfs-serviceerror", value);
    }
    response
}

fn not_a_member(token: &IssuedToken) -> Response {
    let message = format!(
        "TF401444: Please sign-in at least once as {tenant}\\{tenant}\\{client} in a web browser to enable access to the service.",
        tenant = token.tenant,
        client = token.client_id
    );
    let mut response = service_error(
        StatusCode::UNAUTHORIZED,
        &message,
        "Microsoft.TeamFoundation.Framework.Server.InvalidIdentityException, Microsoft.TeamFoundation.Framework.Server",
        "InvalidIdentityException",
        true,
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn repository_not_found(repo: &str) -> Response {
    service_error(
        StatusCode::NOT_FOUND,
        &format!(
            "TF401019: The Git repository with name or identifier {repo} does not exist or you do not have permissions for the operation you are attempting."
        ),
        "Microsoft.TeamFoundation.Git.Server.GitRepositoryNotFoundException, Microsoft.TeamFoundation.Git.Server",
        "GitRepositoryNotFoundException",
        false,
    )
}

/// The object id the fake's advertisement gives `main` (and `HEAD`) of the repository
/// `org/project/repo`: the first 20 bytes, in hex, of SHA-256 over `fake-arm:git:` and the
/// lowercased `org/project/repo`, so it is stable and a test can compute it.
pub fn head_object_id(org: &str, project: &str, repo: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"fake-arm:git:")
        .chain_update(org.to_ascii_lowercase().as_bytes())
        .chain_update(b"/")
        .chain_update(project.to_ascii_lowercase().as_bytes())
        .chain_update(b"/")
        .chain_update(repo.to_ascii_lowercase().as_bytes())
        .finalize();
    digest[..20].iter().map(|b| format!("{b:02x}")).collect()
}

fn pkt_line(line: &str) -> String {
    format!("{:04x}{line}", line.len() + 4)
}

fn advertisement(org: &str, project: &str, repo: &str) -> Response {
    let id = head_object_id(org, project, repo);
    let capabilities = "multi_ack thin-pack side-band side-band-64k ofs-delta shallow no-progress include-tag multi_ack_detailed no-done symref=HEAD:refs/heads/main agent=git/fake-azure-devops";
    let body = [
        pkt_line("# service=git-upload-pack\n"),
        "0000".to_string(),
        pkt_line(&format!("{id} HEAD\0{capabilities}\n")),
        pkt_line(&format!("{id} refs/heads/main\n")),
        "0000".to_string(),
    ]
    .concat();
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-git-upload-pack-advertisement"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

impl FakeState {
    /// The organization `name`, created (backed by `tenant_id`, or [`IDENTITY_TENANT_ID`])
    /// if it does not exist; an existing one keeps its tenant unless `tenant_id` is given.
    pub(crate) fn devops_organization(
        &mut self,
        name: &str,
        tenant_id: Option<&str>,
    ) -> &mut Organization {
        let organization = self
            .devops
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Organization {
                name: name.to_string(),
                tenant_id: IDENTITY_TENANT_ID.to_string(),
                members: BTreeSet::new(),
                repositories: BTreeSet::new(),
            });
        if let Some(tenant_id) = tenant_id {
            organization.tenant_id = tenant_id.to_string();
        }
        organization
    }

    /// Organization name -> (members, `project/repository`s), for the admin API.
    pub(crate) fn devops_summary(&self) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
        self.devops
            .values()
            .map(|o| {
                (
                    o.name.clone(),
                    (
                        o.members.iter().cloned().collect(),
                        o.repositories
                            .iter()
                            .map(|(p, r)| format!("{p}/{r}"))
                            .collect(),
                    ),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkt_lines_count_their_own_length() {
        assert_eq!(
            pkt_line("# service=git-upload-pack\n"),
            "001e# service=git-upload-pack\n"
        );
    }

    #[test]
    fn head_ids_are_stable_case_insensitive_object_ids() {
        let id = head_object_id("Org", "Proj", "Repo");
        assert_eq!(id.len(), 40);
        assert_eq!(id, head_object_id("org", "proj", "repo"));
        assert_ne!(id, head_object_id("org", "proj", "other"));
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(presented_token(&headers).as_deref(), Some("abc"));
        let basic = format!("Basic {}", STANDARD.encode(":abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&basic).expect("header"),
        );
        assert_eq!(presented_token(&headers).as_deref(), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Negotiate x"),
        );
        assert_eq!(presented_token(&headers), None);
    }
}
