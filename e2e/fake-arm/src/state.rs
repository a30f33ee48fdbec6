//! The fake's shared state: identities and their credentials, the Entra directory (trusted
//! callers, registered applications and their credentials, issuer trust, propagation delays),
//! issued tokens, the Azure DevOps organizations, counters, pending faults and knobs, behind one
//! mutex. The credential rules ARM enforces on a PUT live here too, because seeding a
//! credential through the admin API must obey them as well.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

use crate::entra::{Candidate, IssuerTrust};
use crate::error::{ArmFault, parent_not_found};
use crate::model::{
    ARM_RESOURCES, CallCounts, DUPLICATE_MESSAGE, FakeConfig, Fault, FederatedCredential,
    IdentityRef, IssuedToken, LIMIT_ERROR_CODE, MAX_CREDENTIALS_PER_IDENTITY, Operation,
    StoredCredential, TokenRequestRecord, limit_error_message,
};

/// A user-assigned identity as the fake stores it.
pub(crate) struct Identity {
    pub(crate) reference: IdentityRef,
    /// `properties.clientId`: given when the identity was created, or
    /// [`IdentityRef::default_client_id`].
    pub(crate) client_id: String,
    /// `properties.principalId`: [`IdentityRef::default_principal_id`].
    pub(crate) principal_id: String,
    /// Keyed by lowercased name: ARM resource names are case-insensitive.
    pub(crate) credentials: BTreeMap<String, StoredCredential>,
    /// When each credential (same keys) was created or last changed: Entra sees it only after
    /// the identity's propagation delay.
    pub(crate) written: HashMap<String, Instant>,
    pub(crate) busy_until: Option<Instant>,
}

/// `properties` of a FIC as sent by a client; all optional so the fake can answer missing
/// fields with ARM's validation error instead of a deserialisation failure.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CredentialBody {
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) audiences: Option<Vec<String>>,
}

impl From<StoredCredential> for CredentialBody {
    fn from(credential: StoredCredential) -> Self {
        CredentialBody {
            issuer: Some(credential.issuer),
            subject: Some(credential.subject),
            audiences: Some(credential.audiences),
        }
    }
}

/// A credential registered directly with the fake Entra (the ASO backend's credentials, which
/// the ASO simulation registers), and when.
pub(crate) struct Registered {
    pub(crate) credential: FederatedCredential,
    pub(crate) written_at: Instant,
}

/// The fake Entra's directory and settings.
pub(crate) struct EntraState {
    /// Client ids (lowercased) whose client assertion is accepted without being read.
    pub(crate) trusted_clients: BTreeSet<String>,
    /// Applications registered directly (lowercased client id), with their credentials. ARM
    /// identities are applications too, with the credentials ARM holds.
    pub(crate) applications: BTreeMap<String, Vec<Registered>>,
    /// Per client id (lowercased): how long a written credential stays invisible to Entra.
    pub(crate) propagation: HashMap<String, Duration>,
    pub(crate) trust: IssuerTrust,
    pub(crate) no_match_as_unauthorized: bool,
}

/// An Azure DevOps organization of the fake Git endpoint.
pub(crate) struct Organization {
    /// The name as created (organizations are addressed case-insensitively).
    pub(crate) name: String,
    /// The Entra tenant backing the organization (named in `WWW-Authenticate`).
    pub(crate) tenant_id: String,
    /// Client ids (lowercased) of the service principals and managed identities added to it.
    pub(crate) members: BTreeSet<String>,
    /// `(project, repository)`, lowercased: Azure DevOps names are case-insensitive.
    pub(crate) repositories: BTreeSet<(String, String)>,
}

pub(crate) struct FakeState {
    pub(crate) identities: HashMap<String, Identity>,
    /// Access tokens the fake Entra issued and not revoked, with what each is for.
    pub(crate) tokens: HashMap<String, IssuedToken>,
    pub(crate) issued: Vec<String>,
    pub(crate) token_requests: Vec<TokenRequestRecord>,
    pub(crate) calls: CallCounts,
    pub(crate) faults: Vec<Fault>,
    pub(crate) busy_window: Duration,
    pub(crate) page_size: usize,
    pub(crate) token_expires_in: u64,
    pub(crate) base_url: String,
    pub(crate) entra: EntraState,
    /// Lowercased organization name -> organization.
    pub(crate) devops: BTreeMap<String, Organization>,
}

pub(crate) struct Shared {
    state: Mutex<FakeState>,
}

impl Shared {
    /// Fresh state for a fake reachable at `base_url` (used in `nextLink`s, and accepted as an
    /// ARM resource in token scopes).
    pub(crate) fn new(base_url: String) -> Result<Shared, String> {
        Ok(Shared {
            state: Mutex::new(FakeState {
                identities: HashMap::new(),
                tokens: HashMap::new(),
                issued: Vec::new(),
                token_requests: Vec::new(),
                calls: CallCounts::default(),
                faults: Vec::new(),
                busy_window: Duration::from_millis(50),
                page_size: 0,
                token_expires_in: 3599,
                base_url,
                entra: EntraState {
                    trusted_clients: BTreeSet::new(),
                    applications: BTreeMap::new(),
                    propagation: HashMap::new(),
                    trust: IssuerTrust::new()?,
                    no_match_as_unauthorized: false,
                },
                devops: BTreeMap::new(),
            }),
        })
    }

    /// The state lock is never held across an await and no code path panics while holding
    /// it; recovering from poisoning keeps one failed test from cascading into others.
    pub(crate) fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeState {
    /// Create the identity if it does not exist (keeping an existing one and its credentials).
    /// `client_id` sets its client id, also on an existing identity; `None` leaves an existing
    /// one's as it is and gives a new one [`IdentityRef::default_client_id`].
    pub(crate) fn create_identity(&mut self, reference: IdentityRef, client_id: Option<String>) {
        let identity = self
            .identities
            .entry(reference.key())
            .or_insert_with(|| Identity {
                client_id: reference.default_client_id(),
                principal_id: reference.default_principal_id(),
                reference,
                credentials: BTreeMap::new(),
                written: HashMap::new(),
                busy_until: None,
            });
        if let Some(client_id) = client_id {
            identity.client_id = client_id;
        }
    }

    /// Add a credential as some other actor would: not counted as a call, ignores the busy
    /// window, and validated like an ARM PUT.
    pub(crate) fn seed_credential(
        &mut self,
        reference: &IdentityRef,
        credential: StoredCredential,
    ) -> Result<StoredCredential, ArmFault> {
        let identity = self
            .identities
            .get_mut(&reference.key())
            .ok_or_else(|| parent_not_found(reference, "write"))?;
        let name = credential.name.clone();
        identity
            .apply_put(&name, credential.into())
            .map(|(_, stored)| stored)
    }

    pub(crate) fn apply_config(&mut self, config: &FakeConfig) {
        if let Some(ms) = config.busy_window_ms {
            self.busy_window = Duration::from_millis(ms);
        }
        if let Some(size) = config.page_size {
            self.page_size = size;
        }
        if let Some(secs) = config.token_expires_in {
            self.token_expires_in = secs;
        }
        if let Some(unauthorized) = config.no_match_as_unauthorized {
            self.entra.no_match_as_unauthorized = unauthorized;
        }
    }

    /// The federated credentials of the application `client_id` as Entra sees them now (ARM
    /// identities with that client id, plus directly registered ones), or `None` if the
    /// directory has no such application.
    pub(crate) fn candidates(&self, client_id: &str) -> Option<Vec<Candidate>> {
        let key = client_id.to_ascii_lowercase();
        let delay = self
            .entra
            .propagation
            .get(&key)
            .copied()
            .unwrap_or_default();
        let now = Instant::now();
        let mut known = false;
        let mut out = Vec::new();
        for identity in self.identities.values() {
            if !identity.client_id.eq_ignore_ascii_case(client_id) {
                continue;
            }
            known = true;
            for (name, credential) in &identity.credentials {
                let propagated = identity
                    .written
                    .get(name)
                    .is_none_or(|at| *at + delay <= now);
                for audience in &credential.audiences {
                    out.push(Candidate {
                        credential: FederatedCredential::new(
                            &credential.issuer,
                            &credential.subject,
                            audience,
                        ),
                        propagated,
                    });
                }
            }
        }
        if let Some(registered) = self.entra.applications.get(&key) {
            known = true;
            out.extend(registered.iter().map(|r| Candidate {
                credential: r.credential.clone(),
                propagated: r.written_at + delay <= now,
            }));
        }
        known.then_some(out)
    }

    /// Whether `resource` (a scope without `/.default`) is one the directory can issue tokens
    /// for: ARM (its public identifiers or this fake's own URL) or Azure DevOps.
    pub(crate) fn knows_resource(&self, resource: &str) -> bool {
        self.is_arm_resource(resource)
            || resource.eq_ignore_ascii_case(crate::model::DEVOPS_RESOURCE)
    }

    /// Whether a token for `resource` is one ARM accepts.
    pub(crate) fn is_arm_resource(&self, resource: &str) -> bool {
        let resource = resource.trim_end_matches('/');
        ARM_RESOURCES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(resource))
            || self
                .base_url
                .trim_end_matches('/')
                .eq_ignore_ascii_case(resource)
    }

    /// Accept `client_id`'s client assertion without reading it.
    pub(crate) fn trust_client(&mut self, client_id: &str) {
        self.entra
            .trusted_clients
            .insert(client_id.to_ascii_lowercase());
    }

    /// Add the application `client_id` (no credentials) if the directory does not have it.
    pub(crate) fn register_application(&mut self, client_id: &str) {
        self.entra
            .applications
            .entry(client_id.to_ascii_lowercase())
            .or_default();
    }

    /// Remove the registered application `client_id` and its credentials (ARM identities
    /// are removed with their identity); whether it was registered.
    pub(crate) fn remove_application(&mut self, client_id: &str) -> bool {
        self.entra
            .applications
            .remove(&client_id.to_ascii_lowercase())
            .is_some()
    }

    /// The credentials registered for `client_id`, oldest first; `None` if not registered.
    pub(crate) fn registered_credentials(
        &self,
        client_id: &str,
    ) -> Option<Vec<FederatedCredential>> {
        self.entra
            .applications
            .get(&client_id.to_ascii_lowercase())
            .map(|r| r.iter().map(|c| c.credential.clone()).collect())
    }

    /// Register `credential` for `client_id` (registering the application too). Issuer and
    /// subject identify a credential, as in Entra: registering them again with another
    /// audience replaces it; a changed credential propagates anew, an unchanged one does not.
    pub(crate) fn register_credential(&mut self, client_id: &str, credential: FederatedCredential) {
        let registered = self
            .entra
            .applications
            .entry(client_id.to_ascii_lowercase())
            .or_default();
        let existing = registered.iter_mut().find(|r| {
            r.credential.issuer == credential.issuer && r.credential.subject == credential.subject
        });
        match existing {
            Some(r) if r.credential == credential => {}
            Some(r) => {
                r.credential = credential;
                r.written_at = Instant::now();
            }
            None => registered.push(Registered {
                credential,
                written_at: Instant::now(),
            }),
        }
    }

    /// Remove the credential `issuer`+`subject` registered for `client_id`; whether it was.
    pub(crate) fn unregister_credential(
        &mut self,
        client_id: &str,
        issuer: &str,
        subject: &str,
    ) -> bool {
        let Some(registered) = self
            .entra
            .applications
            .get_mut(&client_id.to_ascii_lowercase())
        else {
            return false;
        };
        let before = registered.len();
        registered.retain(|r| !(r.credential.issuer == issuer && r.credential.subject == subject));
        registered.len() != before
    }

    /// How long a credential of `client_id` stays invisible to Entra after it was written.
    pub(crate) fn set_propagation_delay(&mut self, client_id: &str, delay: Duration) {
        self.entra
            .propagation
            .insert(client_id.to_ascii_lowercase(), delay);
    }

    /// Consume one pending fault for `op`, if any.
    pub(crate) fn take_fault(&mut self, op: Operation) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.operation == op && f.count > 0)?;
        let fault = self.faults[index].clone();
        self.faults[index].count -= 1;
        if self.faults[index].count == 0 {
            self.faults.remove(index);
        }
        Some(fault)
    }
}

impl Identity {
    /// ARM's checks for a PUT of credential `name` with `properties` on this identity.
    pub(crate) fn validate_put(
        &self,
        name: &str,
        properties: &CredentialBody,
    ) -> Result<(), ArmFault> {
        let bad = |message: String| ArmFault::new(StatusCode::BAD_REQUEST, "BadRequest", message);
        if !is_valid_credential_name(name) {
            return Err(bad(format!(
                "Federated Identity Credential name '{name}' is invalid."
            )));
        }
        let (Some(issuer), Some(subject), Some(audiences)) = (
            properties.issuer.as_deref(),
            properties.subject.as_deref(),
            properties.audiences.as_ref(),
        ) else {
            return Err(bad(
                "Federated Identity Credential from HTTP body has empty properties".to_string(),
            ));
        };
        if issuer.is_empty() || subject.is_empty() {
            return Err(bad(
                "Federated Identity Credential from HTTP body has empty properties".to_string(),
            ));
        }
        if audiences.len() != 1 || audiences[0].is_empty() {
            return Err(bad(
                "Federated identity credentials must have exactly 1 audience.".to_string(),
            ));
        }
        if !issuer.starts_with("https://") || issuer.len() <= "https://".len() {
            return Err(bad(format!(
                "Federated Identity Credential issuer '{issuer}' is invalid. The issuer must be an https URL."
            )));
        }
        let key = name.to_ascii_lowercase();
        let duplicate = self
            .credentials
            .iter()
            .any(|(k, c)| *k != key && c.issuer == issuer && c.subject == subject);
        if duplicate {
            return Err(bad(DUPLICATE_MESSAGE.to_string()));
        }
        if !self.credentials.contains_key(&key)
            && self.credentials.len() >= MAX_CREDENTIALS_PER_IDENTITY
        {
            return Err(ArmFault::new(
                StatusCode::BAD_REQUEST,
                LIMIT_ERROR_CODE,
                limit_error_message(),
            ));
        }
        Ok(())
    }

    /// Validate and store credential `name`; `true` if it was created rather than updated.
    pub(crate) fn apply_put(
        &mut self,
        name: &str,
        properties: CredentialBody,
    ) -> Result<(bool, StoredCredential), ArmFault> {
        self.validate_put(name, &properties)?;
        let key = name.to_ascii_lowercase();
        // An update keeps the name's original casing, as ARM does for an existing resource.
        let stored_name = self
            .credentials
            .get(&key)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| name.to_string());
        let credential = StoredCredential {
            name: stored_name,
            issuer: properties.issuer.unwrap_or_default(),
            subject: properties.subject.unwrap_or_default(),
            audiences: properties.audiences.unwrap_or_default(),
        };
        let previous = self.credentials.insert(key.clone(), credential.clone());
        let changed = previous.as_ref().is_none_or(|p| {
            (&p.issuer, &p.subject, &p.audiences)
                != (
                    &credential.issuer,
                    &credential.subject,
                    &credential.audiences,
                )
        });
        if changed {
            self.written.insert(key, Instant::now());
        }
        Ok((previous.is_none(), credential))
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`
pub fn is_valid_credential_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=120).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_name_pattern() {
        for ok in [
            "abc",
            "a-_",
            "A1",
            "x".repeat(120).as_str(),
            "tenant-a_default-0",
        ] {
            if ok.len() >= 3 {
                assert!(is_valid_credential_name(ok), "{ok} should be valid");
            }
        }
        for bad in [
            "ab",
            "-abc",
            "_abc",
            "a.bc",
            "a bc",
            "x".repeat(121).as_str(),
            "äbc",
        ] {
            assert!(!is_valid_credential_name(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn creating_an_identity_keeps_it_and_sets_only_a_given_client_id() {
        let shared = Shared::new("http://fake".into()).expect("state");
        let mut s = shared.lock();
        let reference = IdentityRef::new("sub", "rg", "id1");
        s.create_identity(reference.clone(), None);
        let key = reference.key();
        assert_eq!(s.identities[&key].client_id, reference.default_client_id());
        s.seed_credential(
            &reference,
            StoredCredential::new("fic", "https://issuer", "subject", "aud"),
        )
        .expect("seed");
        s.create_identity(reference.clone(), Some("explicit".into()));
        assert_eq!(s.identities[&key].client_id, "explicit");
        s.create_identity(IdentityRef::new("SUB", "RG", "ID1"), None);
        assert_eq!(s.identities[&key].client_id, "explicit", "kept");
        assert_eq!(s.identities[&key].credentials.len(), 1, "credentials kept");
        assert_eq!(s.identities.len(), 1);
    }
}
