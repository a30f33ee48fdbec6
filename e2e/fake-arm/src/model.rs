//! The fake's public data types and the contract constants they are checked against. Plain
//! data: nothing here knows about HTTP or the shared state.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// At most this many federated identity credentials per user-assigned identity (Entra limit).
pub const MAX_CREDENTIALS_PER_IDENTITY: usize = 20;

/// API versions that serve `federatedIdentityCredentials` (stable and preview; 2018-11-30 does not).
pub const SUPPORTED_API_VERSIONS: &[&str] = &[
    "2022-01-31-preview",
    "2023-01-31",
    "2023-07-31-preview",
    "2024-11-30",
    "2025-01-31-preview",
    "2025-05-31-preview",
    "2026-05-31",
];

/// API versions that serve `GET .../userAssignedIdentities/{name}`: every version of the
/// Microsoft.ManagedIdentity API, including the ones without federated identity credentials.
pub const IDENTITY_API_VERSIONS: &[&str] = &[
    "2015-08-31-preview",
    "2018-11-30",
    "2021-09-30-preview",
    "2022-01-31-preview",
    "2023-01-31",
    "2023-07-31-preview",
    "2024-11-30",
    "2025-01-31-preview",
    "2025-05-31-preview",
    "2026-05-31",
];

/// ARM resource type of a federated identity credential.
pub const CREDENTIAL_TYPE: &str =
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials";

/// ARM resource type of a user-assigned identity.
pub const IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

/// `location` of every identity the fake serves (ARM requires one on a tracked resource).
pub const IDENTITY_LOCATION: &str = "eastus";

/// `properties.tenantId` of every identity the fake serves. The fake token endpoint accepts any
/// tenant, so this is only a well-formed UUID, not tied to the tenant a client asks a token of.
pub const IDENTITY_TENANT_ID: &str = "00000000-0000-4000-8000-000000000001";

/// Error code used for the 20-credential limit. NOT VERIFIED against the real service (see the
/// crate docs); ARM uses `BadRequest` for the other documented FIC validation errors.
pub const LIMIT_ERROR_CODE: &str = "BadRequest";

/// Documented message for a duplicate issuer+subject on one identity.
pub const DUPLICATE_MESSAGE: &str =
    "Issuer and subject combination already exists for this Managed Identity.";

/// Error code ARM returns for concurrent FIC writes under one identity (409).
pub const CONCURRENT_WRITE_CODE: &str =
    "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity";

/// Message for the 20-credential limit. NOT VERIFIED against the real service.
pub fn limit_error_message() -> String {
    format!(
        "The number of federated identity credentials for this managed identity cannot exceed {MAX_CREDENTIALS_PER_IDENTITY}."
    )
}

/// The Azure Resource Manager resource identifiers the fake Entra issues ARM tokens for (a
/// scope is `<resource>/.default`), besides the fake's own base URL, which the operator uses
/// as its ARM endpoint in tests. The ARM routes accept only tokens issued for one of these.
pub const ARM_RESOURCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
];

/// The resource (application id) of Azure DevOps: a token for the scope
/// `499b84ac-1321-427f-aa17-267ca6975798/.default` is what the Azure DevOps Git endpoint
/// accepts.
pub const DEVOPS_RESOURCE: &str = "499b84ac-1321-427f-aa17-267ca6975798";

/// `client_assertion_type` of a federated (JWT bearer) client assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The AADSTS codes the fake Entra answers with (in `error_codes`), named. What each means,
/// its status and where the code and text come from: the table in the token endpoint's error
/// module (`src/entra/errors.rs`) and the crate README.
pub mod aadsts {
    /// A required form parameter is missing (or the body is not a form).
    pub const MISSING_PARAMETER: u32 = 900144;
    /// `grant_type` is not `client_credentials`.
    pub const UNSUPPORTED_GRANT_TYPE: u32 = 70003;
    /// The assertion is not a well-formed JWT with `iss`, `sub`, `aud` and `exp` (also: a wrong
    /// `client_assertion_type`).
    pub const INVALID_JWT: u32 = 50027;
    /// The assertion is not signed with RS256.
    pub const UNSUPPORTED_SIGNING_ALGORITHM: u32 = 5002730;
    /// The scope does not end in `/.default`.
    pub const SCOPE_WITHOUT_DEFAULT: u32 = 1002012;
    /// No application (identity) with this client id in the directory.
    pub const APPLICATION_NOT_FOUND: u32 = 700016;
    /// The scope names a resource the directory does not know.
    pub const RESOURCE_NOT_FOUND: u32 = 500011;
    /// No federated credential with the assertion's issuer.
    pub const NO_MATCHING_ISSUER: u32 = 700211;
    /// No federated credential with the assertion's audience (issuer and subject match).
    pub const NO_MATCHING_AUDIENCE: u32 = 700212;
    /// No federated credential with the assertion's subject (the issuer matches).
    pub const NO_MATCHING_SUBJECT: u32 = 700213;
    /// As [`NO_MATCHING_SUBJECT`], but a subject matches when case is ignored.
    pub const SUBJECT_CASE_MISMATCH: u32 = 7002138;
    /// "No matching federated identity record found for presented assertion": the fake answers
    /// it while a matching credential is still propagating.
    pub const NO_MATCHING_FEDERATED_IDENTITY_RECORD: u32 = 70021;
    /// Entra could not fetch or use the issuer's OIDC discovery document or JWKS.
    pub const EXTERNAL_OIDC_ENDPOINT_FAILED: u32 = 50166;
    /// The assertion's `kid` is not in the issuer's JWKS.
    pub const SIGNING_KEY_NOT_FOUND: u32 = 7000272;
    /// The assertion's signature does not verify.
    pub const INVALID_SIGNATURE: u32 = 700027;
    /// The assertion has expired (or is not valid yet).
    pub const ASSERTION_OUTSIDE_VALIDITY: u32 = 700024;

    /// Every code the federation checks answer with when issuer, subject, audience or
    /// propagation do not match (what an operator reports as a federation mismatch).
    pub const FEDERATION_MISMATCH: &[u32] = &[
        NO_MATCHING_FEDERATED_IDENTITY_RECORD,
        NO_MATCHING_ISSUER,
        NO_MATCHING_AUDIENCE,
        NO_MATCHING_SUBJECT,
        SUBJECT_CASE_MISMATCH,
    ];
}

/// One kind of call the fake serves; used for counters and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `GET .../federatedIdentityCredentials/{name}`
    Get,
    /// `PUT .../federatedIdentityCredentials/{name}`
    Put,
    /// `DELETE .../federatedIdentityCredentials/{name}`
    Delete,
    /// `GET .../federatedIdentityCredentials` (each page counts once)
    List,
    /// `POST /{tenant}/oauth2/v2.0/token`
    Token,
}

/// Calls received since start or the last [`FakeArm::reset_calls`](crate::FakeArm::reset_calls),
/// by operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    pub get: u64,
    pub put: u64,
    pub delete: u64,
    pub list: u64,
    pub token: u64,
    /// `GET .../userAssignedIdentities/{name}` (reading the identity itself, not its FICs).
    /// Counted like the other ARM calls: before the token and `api-version` checks.
    #[serde(default)]
    pub get_identity: u64,
    /// Requests to an ARM path with a method the API does not have.
    pub other: u64,
    /// Writes rejected with 409 because another write to the same identity was in flight.
    pub conflicts: u64,
    /// Requests to the fake Azure DevOps Git endpoint (any answer).
    #[serde(default)]
    pub git: u64,
}

impl CallCounts {
    /// PUT + DELETE calls: what "a steady state makes no writes" is asserted on.
    pub fn writes(&self) -> u64 {
        self.put + self.delete
    }

    pub(crate) fn bump(&mut self, op: Operation) {
        match op {
            Operation::Get => self.get += 1,
            Operation::Put => self.put += 1,
            Operation::Delete => self.delete += 1,
            Operation::List => self.list += 1,
            Operation::Token => self.token += 1,
        }
    }
}

/// A fault to return instead of serving the next `count` calls of `operation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub operation: Operation,
    /// HTTP status to answer with (e.g. 429, 503, 403).
    pub status: u16,
    /// How many consecutive calls of `operation` fail (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Value of the `Retry-After` header, verbatim (seconds or an HTTP date).
    #[serde(default)]
    pub retry_after: Option<String>,
    /// ARM error code; a status-appropriate default when absent.
    #[serde(default)]
    pub code: Option<String>,
    /// ARM error message; a status-appropriate default when absent.
    #[serde(default)]
    pub message: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// A fault of `status` for the next call of `operation`.
    pub fn new(operation: Operation, status: u16) -> Self {
        Fault {
            operation,
            status,
            count: 1,
            retry_after: None,
            code: None,
            message: None,
        }
    }

    /// Fail the next `count` calls instead of one.
    pub fn times(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Add a `Retry-After` header (seconds or HTTP date).
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// Set the ARM error code and message.
    pub fn error(mut self, code: impl Into<String>, message: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self.message = Some(message.into());
        self
    }
}

/// A user-assigned managed identity, addressed like ARM addresses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityRef {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
}

impl IdentityRef {
    pub fn new(
        subscription_id: impl Into<String>,
        resource_group: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        IdentityRef {
            subscription_id: subscription_id.into(),
            resource_group: resource_group.into(),
            name: name.into(),
        }
    }

    /// The identity's ARM resource id (casing as in the service's example responses).
    pub fn arm_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }

    /// The `clientId` the fake gives this identity when it is created without one
    /// ([`FakeArm::create_identity`](crate::FakeArm::create_identity), or the admin API without
    /// `clientId`).
    ///
    /// Derived, so a test can compute it without asking the fake: a name-based UUIDv8
    /// (RFC 9562, section 5.8 and appendix B.2) whose bytes are the first 16 bytes of
    /// SHA-256 over `"fake-arm:clientId:"` followed by the lowercased [`Self::arm_id`], with the
    /// version and variant bits set. ARM ids are case-insensitive, so every casing of one
    /// identity gets the same client id; another subscription, group or name gets another.
    /// (The real service generates a random one; a deleted and re-created identity gets a new
    /// one there, so a test that models that registers the re-created identity with an explicit
    /// client id.)
    pub fn default_client_id(&self) -> String {
        derived_uuid("clientId", self)
    }

    /// The `principalId` the fake gives this identity: derived like
    /// [`Self::default_client_id`], with `"fake-arm:principalId:"` as the prefix.
    pub fn default_principal_id(&self) -> String {
        derived_uuid("principalId", self)
    }

    /// ARM ids are case-insensitive; this is the map key.
    pub(crate) fn key(&self) -> String {
        self.arm_id().to_ascii_lowercase()
    }
}

/// Name-based UUIDv8 of `reference` for one `field` (see [`IdentityRef::default_client_id`]).
fn derived_uuid(field: &str, reference: &IdentityRef) -> String {
    let digest = Sha256::new()
        .chain_update(b"fake-arm:")
        .chain_update(field.as_bytes())
        .chain_update(b":")
        .chain_update(reference.key().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).hyphenated().to_string()
}

/// A federated identity credential as stored by the fake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

impl StoredCredential {
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        subject: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        StoredCredential {
            name: name.into(),
            issuer: issuer.into(),
            subject: subject.into(),
            audiences: vec![audience.into()],
        }
    }
}

/// One request the token endpoint accepted (tests check the assertion was re-read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequestRecord {
    pub tenant: String,
    pub client_id: String,
    pub scope: String,
    pub client_assertion: String,
}

/// What an access token the fake Entra issued is for (see
/// [`FakeArm::issued_token`](crate::FakeArm::issued_token)). The token string itself is
/// JWT-shaped and carries the same facts as claims (`aud`, `appid`, `tid`), but only the fake
/// can tell whether it is valid: it checks its own record, so revocation works.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    /// The tenant of the token endpoint's path.
    pub tenant: String,
    /// The `client_id` the token was issued to.
    pub client_id: String,
    /// The resource the token is for: the scope without `/.default` (and without a trailing
    /// `/`), e.g. `https://management.azure.com` or [`DEVOPS_RESOURCE`].
    pub resource: String,
    /// `iss` of the client assertion it was exchanged for; `None` for a trusted caller
    /// ([`FakeArm::trust_client`](crate::FakeArm::trust_client)), whose assertion is not read.
    pub assertion_issuer: Option<String>,
    /// `sub` of the client assertion it was exchanged for; `None` for a trusted caller.
    pub assertion_subject: Option<String>,
}

/// A federated identity credential as Entra matches it: exactly one audience, and issuer,
/// subject and audience compared byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    pub audience: String,
}

impl FederatedCredential {
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        FederatedCredential {
            issuer: issuer.into(),
            subject: subject.into(),
            audience: audience.into(),
        }
    }
}

/// Knobs, settable over HTTP with `PUT /_fake/config` (absent fields are left unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FakeConfig {
    /// How long a write keeps its identity busy (overlapping writes get 409).
    pub busy_window_ms: Option<u64>,
    /// Serve lists in pages of this size (with `nextLink`); `0` = no paging.
    pub page_size: Option<usize>,
    /// `expires_in` advertised by the token endpoint. Issued tokens stay valid at the fake
    /// regardless, so a test can force client-side refreshes without getting 401s.
    pub token_expires_in: Option<u64>,
    /// Answer AADSTS70021 as `401 invalid_client` (as Entra did in 2023) instead of
    /// `400 invalid_request` (as it did in 2022, the default). Either way the code is in
    /// `error_codes`, which is what a client must read.
    #[serde(default)]
    pub no_match_as_unauthorized: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_case_insensitive_uuids() {
        let a = IdentityRef::new("sub", "rg", "id1");
        let client = a.default_client_id();
        let parsed = uuid::Uuid::parse_str(&client).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(client, a.default_client_id(), "deterministic");
        // The documented derivation, computed independently (Python's hashlib and uuid): any
        // change to it is deliberate and breaks comparisons against ids computed elsewhere.
        assert_eq!(client, "bbfb39ba-d8c2-8622-b536-dd4074f79b97");
        assert_eq!(
            client,
            IdentityRef::new("SUB", "RG", "ID1").default_client_id(),
            "ARM ids are case-insensitive"
        );
        assert_ne!(
            client,
            IdentityRef::new("sub", "rg", "id2").default_client_id()
        );
        assert_ne!(client, a.default_principal_id());
    }
}
