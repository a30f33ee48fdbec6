//! `POST /{tenant}/oauth2/v2.0/token`: the client credentials grant with a federated client
//! assertion, checked in this order (each failure answers with the code in `errors`):
//!
//! 1. the call is counted, an injected [`Operation::Token`] fault is served;
//! 2. the form: required fields, `grant_type`, `client_assertion_type`, a `/.default` scope;
//! 3. a trusted caller ([`FakeArm::trust_client`](crate::FakeArm::trust_client)) gets a token
//!    for any known resource without its assertion being read;
//! 4. the application: an ARM identity or a registered application with this client id
//!    (AADSTS700016), then the resource (AADSTS500011);
//! 5. the assertion: a JWT signed with RS256 carrying `iss`, `sub`, `aud`, `exp` (AADSTS50027,
//!    AADSTS5002730), whose issuer one of the application's credentials trusts (AADSTS700211:
//!    nothing is fetched from an untrusted issuer);
//! 6. the issuer's discovery document and JWKS over HTTP(S) (AADSTS50166), the key named by
//!    `kid` (AADSTS7000272), the signature (AADSTS700027), `exp`/`nbf` (AADSTS700024, no clock
//!    skew allowed);
//! 7. the credential match, propagation included (see `federation::decide`).
//!
//! The state lock is released while the issuer is fetched; the match is decided on the
//! credentials as they are once the fetch is done.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::discovery::Route;
use super::errors::{EntraError, entra_error_body, entra_instant, entra_now};
use super::federation::{decide, trusts_issuer};
use super::jwt::Assertion;
use super::tokens::{mint, resource_of};
use crate::error::add_retry_after;
use crate::model::{IssuedToken, JWT_BEARER, Operation, TokenRequestRecord};
use crate::state::{FakeState, Shared};

/// A request that passed every check that needs no network.
struct Pending {
    tenant: String,
    client_id: String,
    scope: String,
    resource: String,
    raw_assertion: String,
    assertion: Assertion,
    route: Route,
}

enum Step {
    Done(Response),
    Verify(Box<Pending>),
}

pub(crate) async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let pending = match begin(&shared, tenant, form) {
        Step::Done(response) => return response,
        Step::Verify(pending) => pending,
    };
    if let Err(e) = verify(&pending).await {
        return refuse(&pending.client_id, e);
    }
    finish(&shared, *pending)
}

fn refuse(client_id: &str, error: EntraError) -> Response {
    tracing::info!(
        client_id,
        code = error.code,
        status = error.status.as_u16(),
        "fake Entra refused a token request"
    );
    error.into_response()
}

fn begin(
    shared: &Shared,
    tenant: String,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Step {
    let mut state = shared.lock();
    state.calls.bump(Operation::Token);
    if let Some(fault) = state.take_fault(Operation::Token) {
        let mut response = entra_error_body(
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            fault.code.as_deref().unwrap_or("temporarily_unavailable"),
            fault
                .message
                .as_deref()
                .unwrap_or("AADSTS50196: injected fault"),
        );
        add_retry_after(&mut response, fault.retry_after.as_deref());
        return Step::Done(response);
    }
    let Ok(Form(form)) = form else {
        return Step::Done(EntraError::not_form().into_response());
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    for required in [
        "grant_type",
        "client_id",
        "scope",
        "client_assertion_type",
        "client_assertion",
    ] {
        if field(required).is_empty() {
            return Step::Done(EntraError::missing_parameter(required).into_response());
        }
    }
    if field("grant_type") != "client_credentials" {
        return Step::Done(EntraError::unsupported_grant_type().into_response());
    }
    if field("client_assertion_type") != JWT_BEARER {
        return Step::Done(EntraError::invalid_assertion_type().into_response());
    }
    let client_id = field("client_id").to_string();
    let scope = field("scope").to_string();
    let Some(resource) = resource_of(&scope).map(str::to_string) else {
        return Step::Done(EntraError::scope_without_default().into_response());
    };
    let raw_assertion = field("client_assertion").to_string();
    if state
        .entra
        .trusted_clients
        .contains(&client_id.to_ascii_lowercase())
    {
        if !state.knows_resource(&resource) {
            let e = EntraError::resource_not_found(&resource, &tenant);
            return Step::Done(refuse(&client_id, e));
        }
        return Step::Done(issue(
            &mut state,
            tenant,
            client_id,
            scope,
            resource,
            raw_assertion,
            None,
        ));
    }
    let Some(candidates) = state.candidates(&client_id) else {
        let e = EntraError::application_not_found(&client_id, &tenant);
        return Step::Done(refuse(&client_id, e));
    };
    if !state.knows_resource(&resource) {
        let e = EntraError::resource_not_found(&resource, &tenant);
        return Step::Done(refuse(&client_id, e));
    }
    let assertion = match Assertion::parse(&raw_assertion) {
        Ok(a) => a,
        Err(e) => return Step::Done(refuse(&client_id, e)),
    };
    if !trusts_issuer(&candidates, &assertion.issuer) {
        let e = EntraError::issuer_not_found(&assertion.issuer);
        return Step::Done(refuse(&client_id, e));
    }
    let route = state.entra.trust.route(&assertion.issuer);
    Step::Verify(Box::new(Pending {
        tenant,
        client_id,
        scope,
        resource,
        raw_assertion,
        assertion,
        route,
    }))
}

/// The checks that need the issuer: keys, signature, validity.
async fn verify(pending: &Pending) -> Result<(), EntraError> {
    let assertion = &pending.assertion;
    let keys = pending.route.fetch_keys().await.map_err(|reason| {
        tracing::warn!(issuer = %assertion.issuer, %reason, "fake Entra cannot use the issuer's OIDC endpoints");
        EntraError::external_oidc_failed()
    })?;
    let verified = match &assertion.kid {
        Some(kid) => {
            let key = keys
                .iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid.as_str()))
                .ok_or_else(|| EntraError::signing_key_not_found(kid, &assertion.issuer))?;
            assertion.verify(key)
        }
        None => keys.iter().any(|k| assertion.verify(k)),
    };
    if !verified {
        return Err(EntraError::invalid_signature());
    }
    let now = chrono::Utc::now().timestamp();
    if now >= assertion.expires || assertion.not_before.is_some_and(|nbf| nbf > now) {
        let valid_from = assertion.not_before.or(assertion.issued_at).unwrap_or(0);
        return Err(EntraError::outside_validity(
            &entra_now(),
            &entra_instant(valid_from),
            &entra_instant(assertion.expires),
        ));
    }
    Ok(())
}

fn finish(shared: &Shared, pending: Pending) -> Response {
    let mut state = shared.lock();
    let Some(candidates) = state.candidates(&pending.client_id) else {
        let e = EntraError::application_not_found(&pending.client_id, &pending.tenant);
        return refuse(&pending.client_id, e);
    };
    if let Err(e) = decide(
        &candidates,
        &pending.assertion,
        state.entra.no_match_as_unauthorized,
    ) {
        return refuse(&pending.client_id, e);
    }
    issue(
        &mut state,
        pending.tenant,
        pending.client_id,
        pending.scope,
        pending.resource,
        pending.raw_assertion,
        Some(&pending.assertion),
    )
}

fn issue(
    state: &mut FakeState,
    tenant: String,
    client_id: String,
    scope: String,
    resource: String,
    client_assertion: String,
    assertion: Option<&Assertion>,
) -> Response {
    let record = IssuedToken {
        tenant: tenant.clone(),
        client_id: client_id.clone(),
        resource,
        assertion_issuer: assertion.map(|a| a.issuer.clone()),
        assertion_subject: assertion.map(|a| a.subject.clone()),
    };
    let principal = state
        .identities
        .values()
        .find(|i| i.client_id.eq_ignore_ascii_case(&client_id))
        .map(|i| i.principal_id.clone());
    let expires_in = state.token_expires_in;
    let token = mint(&record, expires_in, principal.as_deref());
    state.tokens.insert(token.clone(), record);
    state.issued.push(token.clone());
    state.token_requests.push(TokenRequestRecord {
        tenant,
        client_id,
        scope,
        client_assertion,
    });
    Json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
    .into_response()
}
