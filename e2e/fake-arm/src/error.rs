//! ARM error bodies (`{"error": {"code", "message"}}`) and the responses for injected faults.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::model::{CONCURRENT_WRITE_CODE, Fault, IdentityRef};

/// An ARM error as the fake answers it (also returned by
/// [`FakeArm::seed_credential`](crate::FakeArm::seed_credential)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ArmFault {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ArmFault {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ArmFault {
            status: status.as_u16(),
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ArmFault {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

/// 404 for a FIC call under an identity that does not exist, as ARM answers for a nested
/// resource whose parent is missing.
pub(crate) fn parent_not_found(identity: &IdentityRef, action: &str) -> ArmFault {
    ArmFault::new(
        StatusCode::NOT_FOUND,
        "ParentResourceNotFound",
        format!(
            "Failed to perform '{action}' on resource(s) of type 'userAssignedIdentities/federatedIdentityCredentials', because the parent resource '{}' could not be found.",
            identity.arm_id()
        ),
    )
}

pub(crate) fn add_retry_after(response: &mut Response, retry_after: Option<&str>) {
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// The ARM answer to an injected `fault` on `path`: the fault's code and message, or the ones
/// ARM uses for that status.
pub(crate) fn fault_response(fault: &Fault, path: &str) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = match status.as_u16() {
        429 => (
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type.".to_string(),
        ),
        403 => (
            "AuthorizationFailed",
            format!(
                "The client does not have authorization to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write' over scope '{path}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        ),
        409 => (
            CONCURRENT_WRITE_CODE,
            "Too many Federated Identity Credentials are written concurrently for the managed identity. Concurrent Federated Identity Credentials writes under the same managed identity are not supported.".to_string(),
        ),
        503 => (
            "ServiceUnavailable",
            "The service is temporarily unavailable.".to_string(),
        ),
        s if s >= 500 => (
            "InternalServerError",
            "Encountered internal server error.".to_string(),
        ),
        _ => ("BadRequest", "Injected fault.".to_string()),
    };
    let mut response = ArmFault {
        status: status.as_u16(),
        code: fault.code.clone().unwrap_or_else(|| code.to_string()),
        message: fault.message.clone().unwrap_or(message),
    }
    .into_response();
    add_retry_after(&mut response, fault.retry_after.as_deref());
    response
}
