//! A small typed client for `federatedIdentityCredentials` under a user-assigned identity:
//! GET, PUT, DELETE and List (following `nextLink`). Every request is authorised with the
//! operator's workload-identity token and recorded in [`AzureRequestMetrics`]. ARM answers are
//! mapped to [`ArmError`] here, once, so the backend and the controller only see reasons.
//!
//! The client does not retry, except once after a 401 with a freshly exchanged token (a
//! revoked or clock-skewed token is fixed by the exchange, not by backoff). Everything else is
//! retried by the controller's requeue, which already has backoff and `Retry-After`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};

use super::error::ArmError;
use super::metrics::{AzureOperation, AzureRequestMetrics};
use super::token::WorkloadIdentityCredential;
use super::types::{
    FederatedIdentityCredential, FederatedIdentityCredentialProperties,
    FederatedIdentityCredentialsListResult, UserAssignedIdentity,
};
use crate::plan::ManagedIdentity;

/// Public Azure cloud ARM endpoint.
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";
/// Public Azure cloud Entra authority.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";
/// Stable api-version with the FIC operations we use (same shape as 2023-01-31, 2026-05-31).
pub const DEFAULT_API_VERSION: &str = "2024-11-30";
/// `InvalidRequest` code for an identity path segment no encoding can keep (`.`, `..`).
pub const INVALID_PATH_SEGMENT: &str = "InvalidResourcePathSegment";
/// Per-request timeout: ARM FIC calls are synchronous and normally take well under a second.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A list longer than this many pages is a loop or a broken server (the limit is 20 FICs).
const MAX_LIST_PAGES: usize = 100;

/// Everything the ARM backend needs. No field is secret: the token file holds the secret and
/// is read only at exchange time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmConfig {
    /// e.g. `https://management.azure.com` (sovereign clouds differ; tests use 127.0.0.1).
    pub arm_endpoint: String,
    /// e.g. `https://login.microsoftonline.com/`.
    pub authority_host: String,
    pub api_version: String,
    /// Client id of the operator's own workload identity.
    pub client_id: String,
    /// Entra tenant of the operator's own workload identity.
    pub tenant_id: String,
    /// Projected service-account token, re-read at every exchange.
    pub token_file: PathBuf,
    pub request_timeout: Duration,
}

impl ArmConfig {
    /// Public-cloud defaults for the given workload identity.
    pub fn new(
        client_id: impl Into<String>,
        tenant_id: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> Self {
        ArmConfig {
            arm_endpoint: DEFAULT_ARM_ENDPOINT.to_string(),
            authority_host: DEFAULT_AUTHORITY_HOST.to_string(),
            api_version: DEFAULT_API_VERSION.to_string(),
            client_id: client_id.into(),
            tenant_id: tenant_id.into(),
            token_file: token_file.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// From the variables the Azure workload identity webhook injects: `AZURE_CLIENT_ID`,
    /// `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE` and optionally `AZURE_AUTHORITY_HOST`.
    pub fn from_env() -> Result<Self, ArmError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ArmError::InvalidConfiguration {
                    message: format!(
                        "environment variable {name} is not set; is the operator pod labelled azure.workload.identity/use=true and its service account annotated with the client id?"
                    ),
                })
        };
        let mut config = ArmConfig::new(
            var("AZURE_CLIENT_ID")?,
            var("AZURE_TENANT_ID")?,
            var("AZURE_FEDERATED_TOKEN_FILE")?,
        );
        if let Ok(host) = var("AZURE_AUTHORITY_HOST") {
            config.authority_host = host;
        }
        Ok(config)
    }

    /// The token scope for this ARM endpoint.
    pub fn scope(&self) -> String {
        arm_scope(&self.arm_endpoint)
    }
}

/// The token scope of an ARM endpoint: `{arm_endpoint}/.default`.
pub fn arm_scope(arm_endpoint: &str) -> String {
    format!("{}/.default", arm_endpoint.trim_end_matches('/'))
}

/// Parse an endpoint; plain http is allowed only to loopback, because a bearer token must
/// never cross a network unencrypted (tests run fakes on 127.0.0.1).
fn parse_endpoint(what: &str, value: &str) -> Result<Url, ArmError> {
    let invalid = |message: String| ArmError::InvalidConfiguration { message };
    let url = Url::parse(value).map_err(|e| invalid(format!("{what} {value:?}: {e}")))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(invalid(format!(
                "{what} {value:?} must be an https URL (http is allowed only for 127.0.0.1/localhost)"
            )));
        }
    }
    if url.cannot_be_a_base() || url.query().is_some() {
        return Err(invalid(format!(
            "{what} {value:?} must be a base URL without a query"
        )));
    }
    Ok(url)
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    api_version: String,
    credential: WorkloadIdentityCredential,
    metrics: AzureRequestMetrics,
}

/// Typed ARM client for one operator identity. Cheap to clone.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("api_version", &self.inner.api_version)
            .field("credential", &self.inner.credential)
            .finish()
    }
}

impl ArmClient {
    pub fn new(config: &ArmConfig, metrics: AzureRequestMetrics) -> Result<Self, ArmError> {
        let endpoint = parse_endpoint("ARM endpoint", &config.arm_endpoint)?;
        let authority = parse_endpoint("authority host", &config.authority_host)?;
        if config.api_version.trim().is_empty() {
            return Err(ArmError::InvalidConfiguration {
                message: "the ARM api-version must not be empty".to_string(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            // ARM does not redirect FIC calls; following one would resend the bearer token.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "tenant-identity-operator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| ArmError::InvalidConfiguration {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        let credential = WorkloadIdentityCredential::new(
            http.clone(),
            &authority,
            &config.tenant_id,
            &config.client_id,
            &config.scope(),
            &config.token_file,
            metrics.clone(),
        )?;
        Ok(ArmClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                api_version: config.api_version.clone(),
                credential,
                metrics,
            }),
        })
    }

    /// The operator's token source (shared by every request of this client).
    pub fn credential(&self) -> &WorkloadIdentityCredential {
        &self.inner.credential
    }

    /// `.../userAssignedIdentities/{identity}/federatedIdentityCredentials[/{name}]?api-version=`
    ///
    /// Each value becomes exactly one path segment, percent-encoded here (everything but
    /// letters, digits, `-`, `.`, `_`, `~`, `(` and `)`), so none can add a segment or start
    /// the query or fragment (`/`, `?`, `#`, `%`, tab and newline are all encoded). An empty
    /// value, or one ending in `.` (so `.` and `..`), is refused: no encoding carries a dot
    /// segment (a URL parser and RFC 3986 normalisation read `%2E` as `.`), and the URL library
    /// would drop it from the path, which would then address another ARM resource; a trailing
    /// period is what Azure forbids in the names of resource groups, and no subscription,
    /// identity or credential name can have one. The CRD refuses such names before they get
    /// here; this is the last line.
    pub fn credential_url(
        &self,
        identity: &ManagedIdentity,
        name: Option<&str>,
    ) -> Result<Url, ArmError> {
        self.resource_url(identity, Some(name))
    }

    /// `.../userAssignedIdentities/{identity}?api-version=`, built by the same rules.
    pub fn identity_url(&self, identity: &ManagedIdentity) -> Result<Url, ArmError> {
        self.resource_url(identity, None)
    }

    /// The identity (`credentials: None`), its credential collection (`Some(None)`) or one
    /// credential (`Some(Some(name))`).
    fn resource_url(
        &self,
        identity: &ManagedIdentity,
        credentials: Option<Option<&str>>,
    ) -> Result<Url, ArmError> {
        let name = credentials.flatten();
        let values = [
            ("subscriptionId", identity.subscription_id.as_str()),
            ("resourceGroup", identity.resource_group.as_str()),
            ("name", identity.name.as_str()),
        ]
        .into_iter()
        .chain(name.map(|n| ("federated credential name", n)));
        for (what, value) in values {
            if value.is_empty() || value.ends_with('.') {
                return Err(ArmError::InvalidRequest {
                    code: INVALID_PATH_SEGMENT.to_string(),
                    message: format!(
                        "managed identity {what} {value:?} cannot be a segment of an ARM resource path"
                    ),
                });
            }
        }
        let mut path = self.inner.endpoint.path().trim_end_matches('/').to_string();
        let segments = [
            "subscriptions",
            &identity.subscription_id,
            "resourceGroups",
            &identity.resource_group,
            "providers",
            "Microsoft.ManagedIdentity",
            "userAssignedIdentities",
            &identity.name,
        ];
        let tail = credentials
            .map(|name| std::iter::once("federatedIdentityCredentials").chain(name))
            .into_iter()
            .flatten();
        for segment in segments.into_iter().chain(tail) {
            path.push('/');
            push_path_segment(&mut path, segment);
        }
        let mut url = self.inner.endpoint.clone();
        url.set_path(&path);
        // The URL library re-parses the path; it must keep every segment exactly as built.
        if url.path() != path {
            return Err(ArmError::InvalidRequest {
                code: INVALID_PATH_SEGMENT.to_string(),
                message: format!(
                    "the ARM resource path {path:?} would be sent as {:?}",
                    url.path()
                ),
            });
        }
        url.query_pairs_mut()
            .append_pair("api-version", &self.inner.api_version);
        Ok(url)
    }

    /// GET the user-assigned identity itself (its `properties.clientId` binds credentials to
    /// the tenant's client id). A missing identity is [`ArmError::IdentityNotFound`].
    pub async fn get_identity(
        &self,
        identity: &ManagedIdentity,
    ) -> Result<UserAssignedIdentity, ArmError> {
        let url = self.identity_url(identity)?;
        let answer = self
            .send(AzureOperation::Get, Method::GET, url, None)
            .await?;
        if answer.status.is_success() {
            parse_json(&answer.body)
        } else {
            Err(classify(identity, &answer))
        }
    }

    /// GET one credential; `Ok(None)` when it does not exist.
    pub async fn get(
        &self,
        identity: &ManagedIdentity,
        name: &str,
    ) -> Result<Option<FederatedIdentityCredential>, ArmError> {
        let url = self.credential_url(identity, Some(name))?;
        let answer = self
            .send(AzureOperation::Get, Method::GET, url, None)
            .await?;
        match answer.status {
            s if s.is_success() => parse_json(&answer.body).map(Some),
            StatusCode::NOT_FOUND if !is_parent_missing(&answer.body) => Ok(None),
            _ => Err(classify(identity, &answer)),
        }
    }

    /// PUT (create or update) one credential with exactly these properties.
    pub async fn put(
        &self,
        identity: &ManagedIdentity,
        name: &str,
        properties: &FederatedIdentityCredentialProperties,
    ) -> Result<FederatedIdentityCredential, ArmError> {
        let url = self.credential_url(identity, Some(name))?;
        let body = FederatedIdentityCredential {
            properties: properties.clone(),
            ..Default::default()
        };
        let body = serde_json::to_vec(&body).map_err(|e| ArmError::InvalidRequest {
            code: "Serialization".to_string(),
            message: e.to_string(),
        })?;
        let answer = self
            .send(AzureOperation::Put, Method::PUT, url, Some(body))
            .await?;
        if answer.status.is_success() {
            // The answer echoes the resource; if it is unreadable the write still happened.
            return Ok(
                parse_json(&answer.body).unwrap_or(FederatedIdentityCredential {
                    name: Some(name.to_string()),
                    properties: properties.clone(),
                    ..Default::default()
                }),
            );
        }
        Err(match classify(identity, &answer) {
            ArmError::DuplicateSubject { message, .. } => ArmError::DuplicateSubject {
                subject: properties.subject.clone(),
                existing: None,
                message,
            },
            other => other,
        })
    }

    /// DELETE one credential; `Ok(false)` when it was already absent (204 or a 404 naming the
    /// credential). A missing identity is [`ArmError::IdentityNotFound`].
    pub async fn delete(&self, identity: &ManagedIdentity, name: &str) -> Result<bool, ArmError> {
        let url = self.credential_url(identity, Some(name))?;
        let answer = self
            .send(AzureOperation::Delete, Method::DELETE, url, None)
            .await?;
        match answer.status {
            StatusCode::NO_CONTENT => Ok(false),
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND if !is_parent_missing(&answer.body) => Ok(false),
            _ => Err(classify(identity, &answer)),
        }
    }

    /// Every credential on the identity, all pages.
    pub async fn list(
        &self,
        identity: &ManagedIdentity,
    ) -> Result<Vec<FederatedIdentityCredential>, ArmError> {
        let mut url = self.credential_url(identity, None)?;
        let mut all = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let answer = self
                .send(AzureOperation::List, Method::GET, url.clone(), None)
                .await?;
            if !answer.status.is_success() {
                return Err(classify(identity, &answer));
            }
            let page: FederatedIdentityCredentialsListResult = parse_json(&answer.body)?;
            all.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                Some(next) => url = self.checked_next_link(&next)?,
                None => return Ok(all),
            }
        }
        Err(ArmError::ArmUnavailable {
            status: None,
            message: format!("the credential list did not end after {MAX_LIST_PAGES} pages"),
            retry_after: None,
        })
    }

    /// `nextLink` is followed with our bearer token, so it must point at the ARM endpoint we
    /// were configured with; anything else would hand the token to another host.
    fn checked_next_link(&self, next: &str) -> Result<Url, ArmError> {
        let url = Url::parse(next).map_err(|e| ArmError::ArmUnavailable {
            status: None,
            message: format!("ARM returned an unparseable nextLink: {e}"),
            retry_after: None,
        })?;
        if url.origin() != self.inner.endpoint.origin() {
            return Err(ArmError::ArmUnavailable {
                status: None,
                message: format!(
                    "ARM returned a nextLink to another host ({}); refusing to send the token there",
                    url.origin().ascii_serialization()
                ),
                retry_after: None,
            });
        }
        Ok(url)
    }

    async fn send(
        &self,
        op: AzureOperation,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ArmError> {
        let mut retried_unauthorized = false;
        loop {
            let token = self.inner.credential.token().await?;
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.secret());
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let started = Instant::now();
            let result = async {
                let response = request.send().await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?.to_vec();
                Ok::<_, reqwest::Error>(Answer {
                    status,
                    headers,
                    body,
                })
            }
            .await;
            let answer = match result {
                Ok(answer) => answer,
                Err(e) => {
                    self.inner.metrics.observe(op, None, started.elapsed());
                    tracing::debug!(operation = op.as_str(), error = %e, "ARM request failed");
                    return Err(ArmError::ArmUnavailable {
                        status: None,
                        message: format!("{} {} failed: {e}", method, url.path()),
                        retry_after: None,
                    });
                }
            };
            self.inner
                .metrics
                .observe(op, Some(answer.status.as_u16()), started.elapsed());
            tracing::debug!(
                operation = op.as_str(),
                status = answer.status.as_u16(),
                path = url.path(),
                "ARM request"
            );
            if answer.status == StatusCode::UNAUTHORIZED && !retried_unauthorized {
                retried_unauthorized = true;
                self.inner.credential.invalidate().await;
                continue;
            }
            return Ok(answer);
        }
    }
}

/// Append `segment` percent-encoded (RFC 3986): unreserved characters and `(` `)` (sub-delims,
/// common in resource group names) stay, every other byte of its UTF-8 becomes `%XX`.
fn push_path_segment(path: &mut String, segment: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~()".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push('%');
            path.push(char::from(HEX[usize::from(byte >> 4)]));
            path.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

mod answer;

pub use answer::parse_retry_after;
use answer::{Answer, classify, is_parent_missing, parse_json};

#[cfg(test)]
mod tests;
