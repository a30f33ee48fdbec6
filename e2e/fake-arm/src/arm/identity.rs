//! `GET .../userAssignedIdentities/{name}` (operation `UserAssignedIdentities_Get` of the ARM
//! ManagedIdentity OpenAPI spec, api-version 2026-05-31): 200 with an `Identity` (a
//! `TrackedResource` whose `properties` are `UserAssignedIdentityProperties`), or 404
//! `ResourceNotFound` for an identity the fake does not have.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ArmFault;
use crate::model::{IDENTITY_LOCATION, IDENTITY_TENANT_ID, IDENTITY_TYPE, IdentityRef};
use crate::state::{FakeState, Identity};

pub(crate) fn get(state: &FakeState, reference: &IdentityRef) -> Result<Response, ArmFault> {
    let identity = state
        .identities
        .get(&reference.key())
        .ok_or_else(|| not_found(reference))?;
    Ok(Json(identity_json(identity)).into_response())
}

/// ARM's 404 for a top-level resource that does not exist.
fn not_found(reference: &IdentityRef) -> ArmFault {
    ArmFault::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{IDENTITY_TYPE}/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            reference.name, reference.resource_group
        ),
    )
}

/// The identity as ARM returns it. Only the read-only properties every api-version has are
/// served; the fake has no tags, so `tags` is the empty object ARM returns then.
fn identity_json(identity: &Identity) -> serde_json::Value {
    json!({
        "id": identity.reference.arm_id(),
        "name": identity.reference.name,
        "type": IDENTITY_TYPE,
        "location": IDENTITY_LOCATION,
        "tags": {},
        "properties": {
            "tenantId": IDENTITY_TENANT_ID,
            "principalId": identity.principal_id,
            "clientId": identity.client_id,
        },
    })
}
