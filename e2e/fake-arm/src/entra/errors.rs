//! The token endpoint's refusals, each with the HTTP status, OAuth `error` and AADSTS code
//! Entra answers with, in Entra's error body.
//!
//! The body is the shape the Microsoft identity platform documents for token endpoint errors
//! (its "authentication and authorization error codes" reference and the client credentials
//! flow's "error response"): `error`, `error_description` (the AADSTS code and message,
//! followed by `Trace ID`, `Correlation ID` and `Timestamp`), `error_codes` (the AADSTS codes
//! as numbers), `timestamp` (`YYYY-MM-DD HH:MM:SSZ`), `trace_id`, `correlation_id` and
//! `error_uri` (Entra's error lookup page for the code). Clients must classify by
//! `error_codes`, never by the status or `error`: Entra itself has answered the same code with
//! different statuses over time (see 70021 below).
//!
//! | code | status | `error` | when | source of code, status and text |
//! |---|---|---|---|---|
//! | 900144 | 400 | `invalid_request` | a required form field is missing, or the body is not a form | error code reference |
//! | 70003 | 400 | `unsupported_grant_type` | `grant_type` is not `client_credentials` | error code reference |
//! | 50027 | 400 | `invalid_request` | wrong `client_assertion_type`; the assertion is not a JWT, or lacks `iss`, `sub`, `aud` or `exp` | error code reference ("InvalidJwtToken"); text "JWT token is invalid or malformed." as quoted in an openid-client (panva) issue |
//! | 5002730 | 400 | `invalid_request` | the assertion's `alg` is not RS256 | text as quoted in an MSAL.NET issue ("Invalid JWT token. Unsupported key for the signing algorithm.") |
//! | 1002012 | 400 | `invalid_scope` | the scope does not end in `/.default` (client credentials) | Entra's client credentials text (kept from the fake's first version) |
//! | 700016 | 400 | `unauthorized_client` | no application (identity) with this `client_id` | error code reference; text and `error` as quoted in Azure SDK for Python and sample issues |
//! | 500011 | 400 | `invalid_resource` | the scope names a resource the directory does not have | error code reference ("InvalidResourceServicePrincipalNotFound") |
//! | 700211 | 401 | `invalid_client` | no federated credential of the application has the assertion's `iss` | body quoted in an Azure workload identity issue (AKS, 2024) |
//! | 700213 | 401 | `invalid_client` | the issuer matches, the subject matches none | text quoted in Azure login and Azure workload identity issues (2023 to 2025) |
//! | 7002138 | 401 | `invalid_client` | as 700213, but a subject matches ignoring case (matching is case-sensitive) | text quoted in Azure login issues after the case-sensitive matching breaking change |
//! | 700212 | 401 | `invalid_client` | issuer and subject match, the audience does not | code named with 700211/700213 in the workload identity federation troubleshooting; the text is by analogy with those two (not found verbatim) |
//! | 70021 | 400 `invalid_request` (default) or 401 `invalid_client` | | an exact match exists but was written less than the identity's propagation delay ago | 400 body as quoted in the Azure workload identity troubleshooting guide (2022); 401 `invalid_client` as quoted in an External Secrets Operator issue (2023) |
//! | 50166 | 400 | `invalid_request` | the issuer's `/.well-known/openid-configuration` or `jwks_uri` cannot be fetched or used | body quoted in an Azure workload identity issue ("Request to External OIDC endpoint failed.") |
//! | 7000272 | 401 | `invalid_client` | the assertion's `kid` is not in the issuer's JWKS | body quoted in an Azure workload identity issue |
//! | 700027 | 401 | `invalid_client` | the RS256 signature does not verify | error code reference ("Client assertion failed signature validation.") |
//! | 700024 | 401 | `invalid_client` | `exp` has passed or `nbf` is in the future | body quoted in a RisingWave issue (workload identity, 2024) |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::model::aadsts;

/// Where Entra's AADSTS texts point for workload identity federation.
const FEDERATION_DOCS: &str =
    "https://learn.microsoft.com/entra/workload-id/workload-identity-federation";

/// A refusal of the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntraError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) code: u32,
    /// The message after `AADSTS<code>: `.
    pub(crate) message: String,
}

impl EntraError {
    fn new(status: StatusCode, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        EntraError {
            status,
            error,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_form() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            aadsts::MISSING_PARAMETER,
            "The request body must be application/x-www-form-urlencoded.",
        )
    }

    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            aadsts::MISSING_PARAMETER,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    pub(crate) fn unsupported_grant_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            aadsts::UNSUPPORTED_GRANT_TYPE,
            "The app requested an unsupported grant type.",
        )
    }

    pub(crate) fn invalid_assertion_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            aadsts::INVALID_JWT,
            "Invalid client_assertion_type.",
        )
    }

    pub(crate) fn malformed_assertion() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            aadsts::INVALID_JWT,
            "JWT token is invalid or malformed.",
        )
    }

    pub(crate) fn unsupported_algorithm() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            aadsts::UNSUPPORTED_SIGNING_ALGORITHM,
            "Invalid JWT token. Unsupported key for the signing algorithm.",
        )
    }

    pub(crate) fn scope_without_default() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            aadsts::SCOPE_WITHOUT_DEFAULT,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        )
    }

    pub(crate) fn application_not_found(client_id: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            aadsts::APPLICATION_NOT_FOUND,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    }

    pub(crate) fn resource_not_found(resource: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            aadsts::RESOURCE_NOT_FOUND,
            format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        )
    }

    pub(crate) fn issuer_not_found(issuer: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            aadsts::NO_MATCHING_ISSUER,
            format!(
                "No matching federated identity record found for presented assertion issuer '{issuer}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. {FEDERATION_DOCS}"
            ),
        )
    }

    pub(crate) fn subject_not_found(subject: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            aadsts::NO_MATCHING_SUBJECT,
            format!(
                "No matching federated identity record found for presented assertion subject '{subject}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. {FEDERATION_DOCS}"
            ),
        )
    }

    pub(crate) fn subject_case_mismatch(subject: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            aadsts::SUBJECT_CASE_MISMATCH,
            format!(
                "No matching federated identity record found for presented assertion subject '{subject}'. The subject matches with case-insensitive comparison, but not with case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. See documentation at: {FEDERATION_DOCS}."
            ),
        )
    }

    pub(crate) fn audience_not_found(audience: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            aadsts::NO_MATCHING_AUDIENCE,
            format!(
                "No matching federated identity record found for presented assertion audience '{audience}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. {FEDERATION_DOCS}"
            ),
        )
    }

    /// AADSTS70021, answered 400 `invalid_request` or, with `unauthorized`, 401
    /// `invalid_client` (both observed from Entra).
    pub(crate) fn no_match(
        issuer: &str,
        subject: &str,
        audience: &str,
        unauthorized: bool,
    ) -> Self {
        let (status, error) = if unauthorized {
            (StatusCode::UNAUTHORIZED, "invalid_client")
        } else {
            (StatusCode::BAD_REQUEST, "invalid_request")
        };
        Self::new(
            status,
            error,
            aadsts::NO_MATCHING_FEDERATED_IDENTITY_RECORD,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: '{audience}'. {FEDERATION_DOCS}"
            ),
        )
    }

    pub(crate) fn external_oidc_failed() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            aadsts::EXTERNAL_OIDC_ENDPOINT_FAILED,
            "Request to External OIDC endpoint failed.",
        )
    }

    pub(crate) fn signing_key_not_found(kid: &str, issuer: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            aadsts::SIGNING_KEY_NOT_FOUND,
            format!(
                "The certificate with identifier {kid} used to sign the federated credential could not be found in the metadata of identity provider {issuer}. Please validate that your Identity Provider's metadata exposes the key used to sign the incoming token."
            ),
        )
    }

    pub(crate) fn invalid_signature() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            aadsts::INVALID_SIGNATURE,
            "Client assertion failed signature validation.",
        )
    }

    /// `now`, `valid_from` and `expires` as Entra prints them (see [`entra_instant`]).
    pub(crate) fn outside_validity(now: &str, valid_from: &str, expires: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            aadsts::ASSERTION_OUTSIDE_VALIDITY,
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, assertion valid from {valid_from}, expiry time of assertion {expires}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
            ),
        )
    }

    /// The full `error_description`, without the trace suffix.
    pub(crate) fn description(&self) -> String {
        format!("AADSTS{}: {}", self.code, self.message)
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        let description = self.description();
        entra_error_body(self.status, self.error, &description)
    }
}

/// Entra's error body for `error` and `description` (which should start with `AADSTS<code>:`;
/// its code becomes `error_codes`, none if it has none).
pub(crate) fn entra_error_body(status: StatusCode, error: &str, description: &str) -> Response {
    let trace_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let correlation_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let codes: Vec<u32> = leading_code(description).into_iter().collect();
    let mut body = json!({
        "error": error,
        "error_description": format!(
            "{description} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": codes,
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    });
    if let Some(code) = codes.first() {
        body["error_uri"] = json!(format!(
            "https://login.microsoftonline.com/error?code={code}"
        ));
    }
    (status, Json(body)).into_response()
}

/// The number of a leading `AADSTS<digits>:`.
fn leading_code(description: &str) -> Option<u32> {
    let rest = description.strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if rest[digits.len()..].starts_with(':') {
        digits.parse().ok()
    } else {
        None
    }
}

/// An instant as Entra prints it in AADSTS700024: RFC 3339 with seven fractional digits.
pub(crate) fn entra_instant(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .map(|t| format!("{}.0000000Z", t.format("%Y-%m-%dT%H:%M:%S")))
        .unwrap_or_else(|| "0001-01-01T00:00:00.0000000Z".to_string())
}

/// Now as Entra prints it in AADSTS700024.
pub(crate) fn entra_now() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}.{:07}Z",
        now.format("%Y-%m-%dT%H:%M:%S"),
        now.timestamp_subsec_nanos() / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_codes_are_read_only_from_the_prefix() {
        assert_eq!(leading_code("AADSTS70021: No match"), Some(70021));
        assert_eq!(leading_code("AADSTS7000272: x"), Some(7000272));
        assert_eq!(leading_code("AADSTS: x"), None);
        assert_eq!(leading_code("no code AADSTS1: x"), None);
        assert_eq!(leading_code("AADSTS12 x"), None);
    }

    #[test]
    fn instants_have_seven_fractional_digits() {
        assert_eq!(entra_instant(1_717_498_846), "2024-06-04T11:00:46.0000000Z");
        let now = entra_now();
        assert_eq!(now.len(), "2024-06-04T11:40:28.3451933Z".len(), "{now}");
    }
}
