//! `.../userAssignedIdentities/{i}/federatedIdentityCredentials[/{n}]`: list (paged), get,
//! put and delete, with the busy window that makes overlapping writes to one identity 409.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::path::ArmPath;
use crate::error::{ArmFault, parent_not_found};
use crate::model::{
    CONCURRENT_WRITE_CODE, CREDENTIAL_TYPE, CallCounts, IdentityRef, StoredCredential,
};
use crate::state::{CredentialBody, FakeState, Identity};

/// What an ARM call answers, computed under the state lock.
pub(crate) enum Outcome {
    Now(Response),
    /// A write was applied: hold the response until the identity's busy window has passed, so
    /// the write "takes" that long and an overlapping write sees the identity busy.
    After(Instant, Response),
}

impl From<ArmFault> for Outcome {
    fn from(fault: ArmFault) -> Self {
        Outcome::Now(fault.into_response())
    }
}

#[derive(Debug, Deserialize)]
struct PutBody {
    properties: Option<CredentialBody>,
}

pub(crate) fn list(
    state: &mut FakeState,
    path: &ArmPath,
    query: &HashMap<String, String>,
    api_version: &str,
    raw_path: &str,
) -> Result<Outcome, ArmFault> {
    let page_size = state.page_size;
    let base_url = state.base_url.clone();
    let identity = state
        .identities
        .get(&path.identity.key())
        .ok_or_else(|| parent_not_found(&path.identity, "read"))?;
    let skip = match query.get("$skiptoken") {
        Some(t) => t.parse::<usize>().map_err(|_| {
            ArmFault::new(
                StatusCode::BAD_REQUEST,
                "InvalidSkipToken",
                "The skip token is invalid.",
            )
        })?,
        None => 0,
    };
    let top = match query.get("$top") {
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(ArmFault::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidTopParameter",
                    "The $top parameter must be an integer of at least 1.",
                ));
            }
        },
        None => None,
    };
    let total = identity.credentials.len();
    let take = match (top, page_size) {
        (Some(t), 0) => t,
        (Some(t), p) => t.min(p),
        (None, 0) => total,
        (None, p) => p,
    };
    let value: Vec<serde_json::Value> = identity
        .credentials
        .values()
        .skip(skip)
        .take(take)
        .map(|c| credential_json(&identity.reference, c))
        .collect();
    let next = skip + value.len();
    let mut body = json!({ "value": value });
    if next < total {
        let mut link = format!("{base_url}{raw_path}?api-version={api_version}&$skiptoken={next}");
        if let Some(t) = top {
            link.push_str(&format!("&$top={t}"));
        }
        body["nextLink"] = json!(link);
    }
    Ok(Outcome::Now(Json(body).into_response()))
}

pub(crate) fn get(state: &mut FakeState, path: &ArmPath) -> Result<Outcome, ArmFault> {
    let identity = state
        .identities
        .get(&path.identity.key())
        .ok_or_else(|| parent_not_found(&path.identity, "read"))?;
    let name = path.credential.as_deref().unwrap_or_default();
    let credential = identity
        .credentials
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| {
            ArmFault::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!(
                    "The Resource '{CREDENTIAL_TYPE}/{}/{name}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                    identity.reference.name, identity.reference.resource_group
                ),
            )
        })?;
    Ok(Outcome::Now(
        Json(credential_json(&identity.reference, credential)).into_response(),
    ))
}

/// 409 if another write to this identity is still in flight; otherwise mark it busy.
fn claim_write(
    identity: &mut Identity,
    calls: &mut CallCounts,
    window: Duration,
) -> Result<Instant, ArmFault> {
    let now = Instant::now();
    if identity.busy_until.is_some_and(|until| until > now) {
        calls.conflicts += 1;
        return Err(ArmFault::new(
            StatusCode::CONFLICT,
            CONCURRENT_WRITE_CODE,
            format!(
                "Too many Federated Identity Credentials are written concurrently for the managed identity '{}'. Concurrent Federated Identity Credentials writes under the same managed identity are not supported.",
                identity.reference.arm_id().to_ascii_lowercase()
            ),
        ));
    }
    let until = now + window;
    identity.busy_until = Some(until);
    Ok(until)
}

pub(crate) fn put(state: &mut FakeState, path: &ArmPath, body: &[u8]) -> Result<Outcome, ArmFault> {
    let window = state.busy_window;
    let FakeState {
        identities, calls, ..
    } = state;
    let identity = identities
        .get_mut(&path.identity.key())
        .ok_or_else(|| parent_not_found(&path.identity, "write"))?;
    let name = path.credential.clone().unwrap_or_default();
    let parsed: PutBody = serde_json::from_slice(body).map_err(|e| {
        ArmFault::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    let properties = parsed.properties.unwrap_or_default();
    // Validate before claiming the identity, so a rejected request does not block others.
    identity.validate_put(&name, &properties)?;
    let until = claim_write(identity, calls, window)?;
    let (created, credential) = identity.apply_put(&name, properties)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let response = (
        status,
        Json(credential_json(&identity.reference, &credential)),
    )
        .into_response();
    Ok(Outcome::After(until, response))
}

pub(crate) fn delete(state: &mut FakeState, path: &ArmPath) -> Result<Outcome, ArmFault> {
    let window = state.busy_window;
    let FakeState {
        identities, calls, ..
    } = state;
    let identity = identities
        .get_mut(&path.identity.key())
        .ok_or_else(|| parent_not_found(&path.identity, "delete"))?;
    let key = path
        .credential
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !identity.credentials.contains_key(&key) {
        // The spec's "204: Resource does not exist." Nothing is written, so nothing is busy.
        return Ok(Outcome::Now(StatusCode::NO_CONTENT.into_response()));
    }
    let until = claim_write(identity, calls, window)?;
    identity.credentials.remove(&key);
    identity.written.remove(&key);
    Ok(Outcome::After(until, StatusCode::OK.into_response()))
}

fn credential_json(identity: &IdentityRef, credential: &StoredCredential) -> serde_json::Value {
    json!({
        "id": format!("{}/federatedIdentityCredentials/{}", identity.arm_id(), credential.name),
        "name": credential.name,
        "type": CREDENTIAL_TYPE,
        "properties": {
            "issuer": credential.issuer,
            "subject": credential.subject,
            "audiences": credential.audiences,
        },
    })
}
