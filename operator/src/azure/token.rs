//! The operator's own Microsoft Entra token, from its workload identity: the Kubernetes
//! service-account token projected into `AZURE_FEDERATED_TOKEN_FILE` is exchanged for an ARM
//! access token with the OAuth 2.0 client-credentials grant and a client assertion.
//!
//! # Why this is hand-written instead of `azure_identity`
//!
//! `azure_identity`/`azure_core` (checked: 1.0.0 and 1.1.0-beta/1.2.0-beta, the latest on
//! crates.io) send HTTP through `typespec_client_core`, whose only built-in transport is
//! reqwest **0.13** with its `rustls` feature, which selects the **aws-lc-rs** crypto provider
//! (C code built with cmake). The workspace standardises on rustls with `ring` (kube's `ring`
//! feature, reqwest 0.12 `rustls-tls`). Turning off azure_core's default features removes the
//! transport entirely, so using the SDK would mean implementing its `HttpClient` trait over
//! reqwest 0.12 — more code, and more surface, than this exchange, which is one form POST.
//! What we need is small and testable: an authority host that can be `http://127.0.0.1:PORT`
//! in tests, the token file re-read on every refresh (kubelet rotates it), one shared refresh
//! for concurrent callers, and redaction of every secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::error::ArmError;
use super::metrics::{AzureOperation, AzureRequestMetrics};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Refresh at most this long before expiry …
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// … or, for short-lived tokens, this fraction of their lifetime before expiry, so a token is
/// never used in its last moments (requests take time; clocks drift).
const REFRESH_MARGIN_DIVISOR: u32 = 10;

/// An access token. Its `Debug` is redacted and it has no `Display`, so it cannot end up in a
/// log line or an error message by accident.
#[derive(Clone)]
pub struct AccessToken {
    secret: Arc<str>,
}

impl AccessToken {
    /// The bearer token, for the `Authorization` header only.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

struct CachedToken {
    token: AccessToken,
    refresh_at: Instant,
}

/// Exchanges the projected service-account token for ARM access tokens and caches them.
pub struct WorkloadIdentityCredential {
    http: reqwest::Client,
    token_url: Url,
    client_id: String,
    scope: String,
    token_file: PathBuf,
    metrics: AzureRequestMetrics,
    /// Held across the refresh, so concurrent callers wait for one exchange and then share its
    /// result instead of each hitting Entra.
    cache: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for WorkloadIdentityCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadIdentityCredential")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<NumberOrString>,
}

/// Entra v2 answers `expires_in` as a number; v1 and some proxies as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    String(String),
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl WorkloadIdentityCredential {
    /// `authority_host` like `https://login.microsoftonline.com/`; `scope` like
    /// `https://management.azure.com/.default`.
    pub fn new(
        http: reqwest::Client,
        authority_host: &Url,
        tenant_id: &str,
        client_id: &str,
        scope: &str,
        token_file: &Path,
        metrics: AzureRequestMetrics,
    ) -> Result<Self, ArmError> {
        let invalid = |message: String| ArmError::InvalidConfiguration { message };
        if tenant_id.is_empty() || client_id.is_empty() {
            return Err(invalid(
                "the Azure tenant id and client id of the operator's workload identity must be set (AZURE_TENANT_ID, AZURE_CLIENT_ID)".to_string(),
            ));
        }
        let token_url = token_url(authority_host, tenant_id).map_err(invalid)?;
        Ok(WorkloadIdentityCredential {
            http,
            token_url,
            client_id: client_id.to_string(),
            scope: scope.to_string(),
            token_file: token_file.to_path_buf(),
            metrics,
            cache: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a fresh exchange when it is near expiry.
    pub async fn token(&self) -> Result<AccessToken, ArmError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = self.exchange().await?;
        let margin = MAX_REFRESH_MARGIN.min(lifetime / REFRESH_MARGIN_DIVISOR);
        *cache = Some(CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    /// Forget the cached token (ARM said 401), so the next call exchanges again.
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn exchange(&self) -> Result<(AccessToken, Duration), ArmError> {
        let failed = |message: String| ArmError::TokenExchangeFailed { message };
        // Re-read on every exchange: kubelet rotates the projected token (default hourly).
        let assertion = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| {
                failed(format!(
                    "cannot read the federated token file {}: {e}",
                    self.token_file.display()
                ))
            })?;
        let assertion = assertion.trim();
        if assertion.is_empty() {
            return Err(failed(format!(
                "the federated token file {} is empty",
                self.token_file.display()
            )));
        }
        exchange_assertion(
            &self.http,
            &self.token_url,
            &self.client_id,
            &self.scope,
            assertion,
            &self.metrics,
        )
        .await
        .map_err(|e| failed(e.describe(&self.token_url, &self.client_id)))
    }
}

/// Why one client-assertion exchange gave no token.
#[derive(Debug)]
pub enum ExchangeFailure {
    /// Entra could not be reached, or its answer not read.
    Transport(String),
    /// Entra answered an error: the status and its error body (which never echoes the
    /// assertion), for the caller to classify.
    Refused { status: u16, body: Vec<u8> },
    /// A success whose body is not a token.
    Malformed(String),
}

impl ExchangeFailure {
    /// One line for an error message: Entra's `error` and `error_description`.
    pub fn describe(&self, token_url: &Url, client_id: &str) -> String {
        match self {
            ExchangeFailure::Transport(e) => format!("request to {token_url} failed: {e}"),
            ExchangeFailure::Malformed(e) => {
                format!("unexpected token response from Microsoft Entra: {e}")
            }
            ExchangeFailure::Refused { status, body } => {
                let detail = serde_json::from_slice::<TokenErrorResponse>(body)
                    .ok()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.error.unwrap_or_else(|| "error".to_string()),
                            e.error_description.unwrap_or_default()
                        )
                    })
                    .unwrap_or_else(|| format!("HTTP {status}"));
                format!(
                    "Microsoft Entra answered HTTP {status} for client id {client_id}: {detail}"
                )
            }
        }
    }
}

/// `{authority_host}/{tenant}/oauth2/v2.0/token`, the tenant pushed as one path segment so it
/// can never add path components or a query.
pub fn token_url(authority_host: &Url, tenant_id: &str) -> Result<Url, String> {
    let mut url = authority_host.clone();
    url.path_segments_mut()
        .map_err(|()| format!("authority host {authority_host} is not a base URL"))?
        .pop_if_empty()
        .push(tenant_id)
        .extend(["oauth2", "v2.0", "token"]);
    Ok(url)
}

/// The OAuth 2.0 client-credentials grant with a client assertion (a service-account token)
/// at `token_url`: the access token and its lifetime. Counted in the Azure request metrics.
pub async fn exchange_assertion(
    http: &reqwest::Client,
    token_url: &Url,
    client_id: &str,
    scope: &str,
    assertion: &str,
    metrics: &AzureRequestMetrics,
) -> Result<(AccessToken, Duration), ExchangeFailure> {
    let form = [
        ("client_id", client_id),
        ("scope", scope),
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    let started = Instant::now();
    let response = match http.post(token_url.clone()).form(&form).send().await {
        Ok(r) => r,
        Err(e) => {
            metrics.observe(AzureOperation::Token, None, started.elapsed());
            return Err(ExchangeFailure::Transport(e.without_url().to_string()));
        }
    };
    let status = response.status();
    let body = response.bytes().await;
    metrics.observe(
        AzureOperation::Token,
        Some(status.as_u16()),
        started.elapsed(),
    );
    let body = body.map_err(|e| {
        ExchangeFailure::Transport(format!("reading the answer failed: {}", e.without_url()))
    })?;
    if !status.is_success() {
        return Err(ExchangeFailure::Refused {
            status: status.as_u16(),
            body: body.to_vec(),
        });
    }
    // serde's message names the problem (missing field, wrong type), not the values.
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| ExchangeFailure::Malformed(e.to_string()))?;
    if parsed.access_token.is_empty() {
        return Err(ExchangeFailure::Malformed(
            "Microsoft Entra returned an empty access token".to_string(),
        ));
    }
    let lifetime = match parsed.expires_in {
        Some(NumberOrString::Number(n)) => n,
        Some(NumberOrString::String(s)) => s.trim().parse().unwrap_or(0),
        // Without a lifetime, do not cache beyond this call.
        None => 0,
    };
    tracing::debug!(%client_id, expires_in = lifetime, "obtained an Azure access token");
    Ok((
        AccessToken {
            secret: Arc::from(parsed.access_token),
        },
        Duration::from_secs(lifetime),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_debug_is_redacted() {
        let t = AccessToken {
            secret: Arc::from("super-secret"),
        };
        assert_eq!(format!("{t:?}"), "AccessToken(<redacted>)");
    }

    #[test]
    fn token_url_is_built_from_segments() {
        let metrics = AzureRequestMetrics::unregistered().expect("metrics");
        for host in [
            "https://login.microsoftonline.com/",
            "https://login.microsoftonline.com",
        ] {
            let c = WorkloadIdentityCredential::new(
                reqwest::Client::new(),
                &Url::parse(host).expect("url"),
                "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "client",
                "https://management.azure.com/.default",
                Path::new("/var/run/secrets/azure/tokens/azure-identity-token"),
                metrics.clone(),
            )
            .expect("credential");
            assert_eq!(
                c.token_url.as_str(),
                "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
            );
        }
        let c = WorkloadIdentityCredential::new(
            reqwest::Client::new(),
            &Url::parse("https://login.example/").expect("url"),
            "evil/../x?y",
            "client",
            "s",
            Path::new("/t"),
            metrics,
        )
        .expect("credential");
        assert_eq!(
            c.token_url.as_str(),
            "https://login.example/evil%2F..%2Fx%3Fy/oauth2/v2.0/token"
        );
    }

    #[test]
    fn refresh_margin() {
        let m =
            |secs: u64| MAX_REFRESH_MARGIN.min(Duration::from_secs(secs) / REFRESH_MARGIN_DIVISOR);
        assert_eq!(m(3599), Duration::from_secs(300));
        assert_eq!(m(600), Duration::from_secs(60));
        assert_eq!(m(0), Duration::ZERO);
    }
}
