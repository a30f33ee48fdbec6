//! Pure: what an answer of Microsoft Entra or of the git server means for the tenant, and the
//! message a person can act on.
//!
//! Entra's token endpoint answers a refused client-assertion exchange with a JSON body
//! `{error, error_description, error_codes: [..], trace_id, correlation_id, timestamp, ..}`.
//! It is classified by the AADSTS code (`error_codes`, else the `AADSTS<n>:` at the start of
//! `error_description`), never by the HTTP status or `error`: Entra has sent the same code as
//! `invalid_request` and as `invalid_client`, with 400 and with 401 (see the fake Entra's table
//! in `e2e/fake-arm/src/entra/errors.rs`, which cites where each body was seen). The codes are
//! those of the Microsoft identity platform's "authentication and authorization error codes"
//! reference and the workload identity federation troubleshooting guide:
//!
//! | code | meaning | reason |
//! |---|---|---|
//! | 70021 | no matching federated identity record for the assertion (also while a new credential propagates) | FederationMismatch |
//! | 700211 | no credential with the assertion's issuer | FederationMismatch (issuer) |
//! | 700212 | no credential with the assertion's audience | FederationMismatch (audience) |
//! | 700213 | no credential with the assertion's subject | FederationMismatch (subject) |
//! | 7002138 | a subject matches only ignoring case (matching is case-sensitive) | FederationMismatch (subject) |
//! | 50166 | the request to the issuer's OIDC discovery / JWKS endpoint failed | IssuerUnreachable |
//! | 700016 | no application with this client id in the directory | ClientNotFound |
//! | 90002 | the tenant was not found | ClientNotFound |
//! | 900023 | the tenant identifier is neither a GUID nor a domain name | ClientNotFound |
//! | any other | | ExchangeFailed |
//!
//! Messages drop Entra's `Trace ID`, `Correlation ID` and `Timestamp`: they change with every
//! answer, and a message that changes every check would rewrite status every check.

use serde::Deserialize;
use tenant_identity_crd::reasons;

/// Which of the three federation fields Entra's code points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Issuer,
    Subject,
    /// The subject matches only ignoring case.
    SubjectCase,
    Audience,
    /// No record matches all three (70021): Entra does not say which.
    Unspecified,
}

/// Entra's refusal, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntraRefusal {
    /// `FederationMismatch`, `IssuerUnreachable`, `ClientNotFound` or `ExchangeFailed`.
    pub reason: &'static str,
    /// The first AADSTS code, when Entra gave one.
    pub code: Option<u32>,
    /// For `FederationMismatch`: the field the code names.
    pub field: Option<Field>,
    /// `error_description` without its per-answer identifiers (or what the body was).
    pub description: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
}

/// Classify the body of a refused exchange.
pub fn classify_entra(status: u16, body: &[u8]) -> EntraRefusal {
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        return EntraRefusal {
            reason: reasons::EXCHANGE_FAILED,
            code: None,
            field: None,
            description: format!("HTTP {status} without an Entra error body"),
        };
    };
    let description = parsed
        .error_description
        .as_deref()
        .map(without_identifiers)
        .unwrap_or_default();
    let code = parsed
        .error_codes
        .first()
        .and_then(|c| u32::try_from(*c).ok())
        .or_else(|| code_in(&description));
    let (reason, field) = match code {
        Some(70021) => (reasons::FEDERATION_MISMATCH, Some(Field::Unspecified)),
        Some(700211) => (reasons::FEDERATION_MISMATCH, Some(Field::Issuer)),
        Some(700212) => (reasons::FEDERATION_MISMATCH, Some(Field::Audience)),
        Some(700213) => (reasons::FEDERATION_MISMATCH, Some(Field::Subject)),
        Some(7002138) => (reasons::FEDERATION_MISMATCH, Some(Field::SubjectCase)),
        Some(50166) => (reasons::ISSUER_UNREACHABLE, None),
        Some(700016 | 90002 | 900023) => (reasons::CLIENT_NOT_FOUND, None),
        _ => (reasons::EXCHANGE_FAILED, None),
    };
    let description = if description.is_empty() {
        format!(
            "HTTP {status} {}",
            parsed
                .error
                .as_deref()
                .unwrap_or("without error_description")
        )
    } else {
        description
    };
    EntraRefusal {
        reason,
        code,
        field,
        description,
    }
}

/// `AADSTS700213: ...` → 700213.
fn code_in(description: &str) -> Option<u32> {
    let rest = description.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Entra appends ` Trace ID: … Correlation ID: … Timestamp: …` (after a newline or a space).
fn without_identifiers(description: &str) -> String {
    let cut = description.find("Trace ID:").unwrap_or(description.len());
    description[..cut]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The claims of the token that was presented (read from the token the API server issued).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presented {
    pub issuer: String,
    pub subject: String,
    pub audience: String,
}

/// What the operator wrote into the subject's federated credential.
#[derive(Clone, Copy, Debug)]
pub struct Written<'a> {
    pub credential: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub audience: &'a str,
}

/// The message of `FederationMismatch` for one subject: what was presented, what the credential
/// was written with, which field differs and Entra's own words.
pub fn mismatch_message(
    refusal: &EntraRefusal,
    presented: Option<&Presented>,
    written: Written<'_>,
) -> String {
    let code = refusal
        .code
        .map(|c| format!("AADSTS{c}"))
        .unwrap_or_else(|| "no code".to_string());
    let shown = presented
        .map(|p| {
            format!(
                "presented issuer '{}', subject '{}', audience '{}'",
                p.issuer, p.subject, p.audience
            )
        })
        .unwrap_or_else(|| "the presented token could not be read".to_string());
    let differs = match presented {
        Some(p) if p.issuer != written.issuer => format!(
            "the issuer differs: the cluster issues tokens as '{}' but the credential holds '{}' (spec.azure.issuer, or --oidc-issuer-url, must equal the cluster's issuer byte for byte, trailing slash included)",
            p.issuer, written.issuer
        ),
        Some(p) if p.subject != written.subject => format!(
            "the subject differs: the token is for '{}' but the credential holds '{}'",
            p.subject, written.subject
        ),
        Some(p) if p.audience != written.audience => format!(
            "the audience differs: the token is for '{}' but the credential holds '{}'",
            p.audience, written.audience
        ),
        _ => {
            let field = match refusal.field {
                Some(Field::Issuer) => "the issuer (a trailing slash counts)",
                Some(Field::Subject) => "the subject",
                Some(Field::SubjectCase) => "the case of the subject (matching is case-sensitive)",
                Some(Field::Audience) => "the audience",
                Some(Field::Unspecified) | None => "the issuer, subject or audience",
            };
            format!(
                "the token matches what the operator wrote, so the credential in Azure differs in {field}: it was changed or deleted outside the operator"
            )
        }
    };
    format!(
        "Entra found no federated credential matching the token ({code}): {shown}; credential {} was written with issuer '{}', subject '{}', audience '{}'; {differs}. Entra: {}",
        written.credential, written.issuer, written.subject, written.audience, refusal.description
    )
}

/// The message of the other exchange refusals.
pub fn refusal_message(
    refusal: &EntraRefusal,
    client_id: &str,
    tenant_id: &str,
    issuer: &str,
) -> String {
    match refusal.reason {
        reasons::ISSUER_UNREACHABLE => format!(
            "Entra cannot fetch the OIDC discovery document of issuer '{issuer}' (or its keys): the cluster's OIDC issuer must be enabled and publicly reachable; on AKS run `az aks update --resource-group <group> --name <cluster> --enable-oidc-issuer` and use the URL `az aks show --query oidcIssuerProfile.issuerUrl` prints. Entra: {}",
            refusal.description
        ),
        reasons::CLIENT_NOT_FOUND => format!(
            "Entra knows no application with client id {client_id} in tenant {tenant_id}: check spec.azure.clientId (the managed identity's client id) and spec.azure.tenantId. Entra: {}",
            refusal.description
        ),
        _ => format!(
            "Entra refused the token exchange for client id {client_id}: {}",
            refusal.description
        ),
    }
}

/// What the git server's answer to `GET <url>/info/refs?service=git-upload-pack` means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitAnswer {
    pub reason: &'static str,
    pub message: String,
}

/// The content type of a smart-HTTP ref advertisement (git's http-protocol documentation):
/// only that proves the server let the token read the repository.
pub const GIT_ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";

/// Classify by status and content type. Azure DevOps answers a request it does not
/// authenticate with 203 and a sign-in page (reported against its REST API docs,
/// MicrosoftDocs/vsts-rest-api-specs#574), so a 2xx is access only with git's content type.
pub fn classify_git(status: u16, content_type: &str, url: &str, client_id: &str) -> GitAnswer {
    let denied = || {
        format!(
            "{url} answered HTTP {status} to the Flux identity's token: add the service principal of the managed identity with client id {client_id} to the Azure DevOps organization (Organization settings, Users) and give it read access on the project (Reader, or Code: Read on the repository)"
        )
    };
    let (reason, message) = match status {
        200 if content_type.starts_with(GIT_ADVERTISEMENT) => (
            reasons::GIT_ACCESS_GRANTED,
            format!("{url} answered the Flux identity's token"),
        ),
        203 => (reasons::GIT_ACCESS_DENIED, denied()),
        200..=299 => (
            reasons::GIT_CHECK_FAILED,
            format!(
                "{url} answered HTTP {status} with {content_type:?}, not a git ref advertisement; the check is retried"
            ),
        ),
        401 | 403 => (reasons::GIT_ACCESS_DENIED, denied()),
        404 => (
            reasons::REPOSITORY_NOT_FOUND,
            format!(
                "{url} answered HTTP 404: check spec.git.url (organization, project and repository)"
            ),
        ),
        _ => (
            reasons::GIT_CHECK_FAILED,
            format!("{url} answered HTTP {status}; the check is retried"),
        ),
    };
    GitAnswer { reason, message }
}

/// Whether only a person can fix what `reason` reports (Stalled rather than Reconciling). The
/// checks are retried anyway: the fix usually happens in Azure, which no watch sees.
pub fn is_terminal(reason: &str) -> bool {
    matches!(
        reason,
        reasons::FEDERATION_MISMATCH
            | reasons::ISSUER_UNREACHABLE
            | reasons::CLIENT_NOT_FOUND
            | reasons::GIT_ACCESS_DENIED
            | reasons::REPOSITORY_NOT_FOUND
    )
}

/// `<git url>/info/refs?service=git-upload-pack` (what `git clone` asks first), with the scheme,
/// host and port replaced by `endpoint` when one is set (`--azure-devops-endpoint`: proxies,
/// sovereign clouds, tests). User info in the URL is dropped: the token is the credential.
pub fn info_refs_url(
    git_url: &str,
    endpoint: Option<&reqwest::Url>,
) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(git_url)
        .map_err(|e| format!("spec.git.url {git_url:?} is not a URL: {e}"))?;
    if let Some(endpoint) = endpoint {
        let path = format!("{}{}", endpoint.path().trim_end_matches('/'), url.path());
        let mut replaced = endpoint.clone();
        replaced.set_path(&path);
        url = replaced;
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let path = format!("{}/info/refs", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(Some("service=git-upload-pack"));
    url.set_fragment(None);
    Ok(url)
}

/// The `kind` label of `tenant_identity_verifications_total`.
pub const KIND_EXCHANGE: &str = "exchange";
pub const KIND_GIT: &str = "git";

/// Every result a check can count, per kind (the metric's label values).
pub fn results(kind: &str) -> &'static [&'static str] {
    match kind {
        KIND_GIT => &[
            reasons::GIT_ACCESS_GRANTED,
            reasons::GIT_ACCESS_DENIED,
            reasons::REPOSITORY_NOT_FOUND,
            reasons::GIT_CHECK_FAILED,
            reasons::VERIFYING,
        ],
        _ => &[
            reasons::TOKEN_EXCHANGE_SUCCEEDED,
            reasons::FEDERATION_MISMATCH,
            reasons::ISSUER_UNREACHABLE,
            reasons::CLIENT_NOT_FOUND,
            reasons::EXCHANGE_FAILED,
            reasons::VERIFYING,
        ],
    }
}
