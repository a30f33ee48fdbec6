//! Reading ARM's answers: the error envelope, the classification of a failed answer into the
//! error the controller acts on, and `Retry-After`.

use std::time::Duration;

use reqwest::{
    StatusCode,
    header::{HeaderMap, RETRY_AFTER},
};

use super::super::{error::ArmError, types::ErrorResponse};
use crate::plan::ManagedIdentity;

/// ARM error messages are short; cap what we copy from an unexpected body into a condition.
pub(super) const MAX_MESSAGE_CHARS: usize = 512;

/// One HTTP answer, fully read.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ArmError> {
    serde_json::from_slice(body).map_err(|e| ArmError::ArmUnavailable {
        status: None,
        message: format!("ARM returned a response that could not be parsed: {e}"),
        retry_after: None,
    })
}

pub(super) fn error_detail(body: &[u8]) -> (Option<String>, Option<String>) {
    match serde_json::from_slice::<ErrorResponse>(body)
        .ok()
        .and_then(|e| e.error)
    {
        Some(d) => (d.code, d.message),
        None => (None, None),
    }
}

/// ARM answers 404 `ParentResourceNotFound` when the identity itself is missing, and
/// `ResourceNotFound`/`NotFound` when only the credential is.
pub(super) fn is_parent_missing(body: &[u8]) -> bool {
    error_detail(body)
        .0
        .is_some_and(|c| c.eq_ignore_ascii_case("ParentResourceNotFound"))
}

/// ARM's documented answer to a duplicate issuer+subject: 400 "Issuer and subject combination
/// already exists for this Managed Identity." Matched on the text because the code is the
/// generic `BadRequest`.
pub(super) fn is_duplicate_subject(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("issuer and subject") && m.contains("already exist")
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    // A date in the past means "now"; never a negative wait.
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Map a non-success ARM answer to the error the controller acts on.
pub(super) fn classify(identity: &ManagedIdentity, answer: &Answer) -> ArmError {
    let (code, message) = error_detail(&answer.body);
    let status = answer.status;
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&answer.body);
        let text: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
        if text.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            text
        }
    });
    let code = code.unwrap_or_else(|| status.canonical_reason().unwrap_or("Unknown").to_string());
    let retry_after = parse_retry_after(&answer.headers);
    match status.as_u16() {
        401 => ArmError::AuthenticationFailed { message },
        403 => ArmError::AuthorizationFailed { message },
        404 => ArmError::IdentityNotFound {
            identity: identity.arm_id(),
            message,
        },
        409 => ArmError::ConcurrentWrite {
            message,
            retry_after,
        },
        429 => ArmError::Throttled {
            retry_after,
            message,
        },
        400 if is_duplicate_subject(&message) => ArmError::DuplicateSubject {
            subject: String::new(),
            existing: None,
            message,
        },
        400..=499 => ArmError::InvalidRequest { code, message },
        s => ArmError::ArmUnavailable {
            status: Some(s),
            message: format!("{code}: {message}"),
            retry_after,
        },
    }
}
