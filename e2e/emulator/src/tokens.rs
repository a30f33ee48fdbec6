//! Service-account tokens: the TokenRequest subresource
//! (`POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`, authentication.k8s.io/v1)
//! issuing RS256-signed JWTs with the claims kube-apiserver puts in them, and the issuer's
//! public key as the JWKS that `/openid/v1/jwks` serves.
//!
//! As kube-apiserver (the service account token REST storage's `Create`, the token request
//! validation, the v1 defaults, and the service account token claims and JWT generator):
//! - `metadata.name` and `metadata.namespace` of the request, when set, must match the URL
//!   (422); the ServiceAccount must exist (404); the response carries its name, namespace and
//!   uid, and the request's creation time;
//! - `spec.audiences` defaults to the API audiences, which default to the issuer;
//!   `spec.expirationSeconds` defaults to 3600 and must be at least 600 and at most 2^32
//!   (422 `TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: ...`);
//! - a Secret in `spec.boundObjectRef` must exist (404) and match a given uid (409); the token
//!   then names it. Pods and Nodes are not served by the emulator, so binding to them is
//!   refused (400), as is any other kind (400, like the real server);
//! - the token: header `alg: RS256` and `kid` (base64url of the SHA-256 of the public key's
//!   DER SubjectPublicKeyInfo); claims `iss` (the issuer), `sub`
//!   (`system:serviceaccount:<ns>:<name>`), `aud` (a string when there is one audience, as
//!   the JWT library kube-apiserver uses writes it), `iat`, `nbf` (now), `exp` (now plus the
//!   expiration), `jti` (a random uuid) and the private `kubernetes.io` claim with
//!   `namespace`, `serviceaccount.{name,uid}` and, when bound, `secret.{name,uid}`;
//! - `status.token` and `status.expirationTimestamp` (now plus the expiration).
//!
//! The key is one 2048-bit RSA key per emulator, generated on first use (the first token
//! request or JWKS fetch: about half a second in a debug build) and kept across restarts,
//! as kube-apiserver's signing key file is.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Cause};
use crate::object;
use crate::ops::Target;
use crate::store::Store;

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";
const DEFAULT_EXPIRATION_SECONDS: i64 = 60 * 60;
/// The shortest expiration kube-apiserver accepts (its `MinTokenAgeSec`).
const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
const KEY_BITS: usize = 2048;

/// The issuer's signing key and the JWKS that publishes it.
pub struct SigningKey {
    encoding: EncodingKey,
    kid: String,
    jwks: Value,
}

impl SigningKey {
    /// A fresh 2048-bit RSA key. CPU-bound: run it off the async workers.
    pub fn generate() -> anyhow::Result<SigningKey> {
        let private = rsa::PrivateKey::new(&mut rand::rng(), KEY_BITS)?;
        let public = private.to_public_key();
        let spki = public.to_public_key_der()?;
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(spki.as_bytes()));
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let jwks = json!({
            "keys": [{
                "use": "sig",
                "kty": "RSA",
                "kid": kid,
                "alg": "RS256",
                "n": b64(&public.n().to_be_bytes()),
                "e": b64(&trim_leading_zeros(&public.e().to_be_bytes())),
            }]
        });
        let der = private.to_pkcs1_der()?;
        Ok(SigningKey {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            kid,
            jwks,
        })
    }

    /// The JWK Set served at `/openid/v1/jwks`.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    fn sign(&self, claims: &Value) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::RS256);
        // kube-apiserver's tokens carry `alg` and `kid` only.
        header.typ = None;
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))
    }
}

/// A big-endian integer without leading zero bytes (JWK's `e` is the minimal encoding).
fn trim_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[first..].to_vec()
}

fn invalid(name: &str, field: &str, value: &str, message: &str) -> ApiError {
    ApiError::invalid(
        KIND,
        GROUP,
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {message}"),
            field: field.into(),
        }],
    )
}

/// `spec.boundObjectRef` resolved: the object the token is bound to.
struct Bound {
    kind: &'static str,
    name: String,
    uid: String,
}

fn bound_object(store: &Store, namespace: &str, spec: &Value) -> Result<Option<Bound>, ApiError> {
    let Some(reference) = spec.get("boundObjectRef").filter(|r| !r.is_null()) else {
        return Ok(None);
    };
    let field = |k: &str| reference.get(k).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind, name) = (field("apiVersion"), field("kind"), field("name"));
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Secret") => {
            let secret = store
                .registry
                .lookup("", "v1", "secrets")
                .and_then(|res| store.get(&res.key(), namespace, name))
                .ok_or_else(|| ApiError::not_found("", "secrets", name))?;
            let uid = object::uid(secret).to_string();
            let wanted = field("uid");
            if !wanted.is_empty() && wanted != uid {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on Secret \"{name}\": the UID in the bound \
                         object reference ({wanted}) does not match the UID in record. The object \
                         might have been deleted and then recreated"
                    ),
                ));
            }
            Ok(Some(Bound {
                kind: "secret",
                name: name.to_string(),
                uid,
            }))
        }
        ("", "Pod" | "Node") => Err(ApiError::bad_request(format!(
            "binding a token to a {kind} is not supported by kube-emulator (it serves no {kind}s)"
        ))),
        _ => {
            let version = api_version.rsplit('/').next().unwrap_or("");
            let gvk = if group.is_empty() {
                format!("/{version}, Kind={kind}")
            } else {
                format!("{group}/{version}, Kind={kind}")
            };
            Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {gvk}"
            )))
        }
    }
}

/// Answers a TokenRequest for the ServiceAccount `t` names: the TokenRequest with its status.
pub fn create(
    store: &Store,
    key: &SigningKey,
    issuer: &str,
    t: &Target,
    body: Value,
) -> Result<Value, ApiError> {
    let (namespace, name) = (t.namespace.as_deref().unwrap_or(""), t.name());
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != KIND
    {
        return Err(ApiError::bad_request(format!(
            "the body of the request was a {kind}, not a {KIND}"
        )));
    }
    let given = |k: &str| object::meta_str(&body, k).to_string();
    let given_name = given("name");
    if !given_name.is_empty() && given_name != name {
        return Err(invalid(
            name,
            "metadata.name",
            &format!("{given_name:?}"),
            "must match the service account name if specified",
        ));
    }
    let given_namespace = given("namespace");
    if !given_namespace.is_empty() && given_namespace != namespace {
        return Err(invalid(
            name,
            "metadata.namespace",
            &format!("{given_namespace:?}"),
            "must match the service account namespace if specified",
        ));
    }
    let sa = store
        .get(&t.res.key(), namespace, name)
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let sa_uid = object::uid(sa).to_string();

    let mut spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![issuer.to_string()]);
    let expiration = match spec.get("expirationSeconds").filter(|v| !v.is_null()) {
        None => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!("spec.expirationSeconds is not an integer: {v}"))
        })?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            &expiration.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let bound = bound_object(store, namespace, &spec)?;

    let now = chrono::Utc::now();
    let iat = now.timestamp();
    let expires = now + chrono::Duration::seconds(expiration);
    let mut private = json!({
        "namespace": namespace,
        "serviceaccount": {"name": name, "uid": sa_uid},
    });
    if let Some(b) = &bound {
        private[b.kind] = json!({"name": b.name, "uid": b.uid});
    }
    let claims = json!({
        "iss": issuer,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "aud": if audiences.len() == 1 { json!(audiences[0]) } else { json!(audiences) },
        "iat": iat,
        "nbf": iat,
        "exp": iat + expiration,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": private,
    });
    let token = key.sign(&claims)?;

    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(expiration);
    let seconds = chrono::SecondsFormat::Secs;
    Ok(json!({
        "kind": KIND,
        "apiVersion": format!("{GROUP}/v1"),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": sa_uid,
            "creationTimestamp": now.to_rfc3339_opts(seconds, true),
        },
        "spec": spec,
        "status": {
            "token": token,
            "expirationTimestamp": expires.to_rfc3339_opts(seconds, true),
        },
    }))
}
