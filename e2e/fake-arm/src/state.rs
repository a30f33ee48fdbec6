//! The fake's shared state: identities and their credentials, issued tokens, counters, pending
//! faults and knobs, behind one mutex. The credential rules ARM enforces on a PUT live here too,
//! because seeding a credential through the admin API must obey them as well.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::{ArmFault, parent_not_found};
use crate::model::{
    CallCounts, DUPLICATE_MESSAGE, FakeConfig, Fault, IdentityRef, LIMIT_ERROR_CODE,
    MAX_CREDENTIALS_PER_IDENTITY, Operation, StoredCredential, TokenRequestRecord,
    limit_error_message,
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

pub(crate) struct FakeState {
    pub(crate) identities: HashMap<String, Identity>,
    pub(crate) tokens: HashSet<String>,
    pub(crate) issued: Vec<String>,
    pub(crate) token_requests: Vec<TokenRequestRecord>,
    pub(crate) calls: CallCounts,
    pub(crate) faults: Vec<Fault>,
    pub(crate) busy_window: Duration,
    pub(crate) page_size: usize,
    pub(crate) token_expires_in: u64,
    pub(crate) base_url: String,
}

pub(crate) struct Shared {
    state: Mutex<FakeState>,
}

impl Shared {
    /// Fresh state for a fake reachable at `base_url` (used in `nextLink`s).
    pub(crate) fn new(base_url: String) -> Shared {
        Shared {
            state: Mutex::new(FakeState {
                identities: HashMap::new(),
                tokens: HashSet::new(),
                issued: Vec::new(),
                token_requests: Vec::new(),
                calls: CallCounts::default(),
                faults: Vec::new(),
                busy_window: Duration::from_millis(50),
                page_size: 0,
                token_expires_in: 3599,
                base_url,
            }),
        }
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
        let created = self.credentials.insert(key, credential.clone()).is_none();
        Ok((created, credential))
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
        let shared = Shared::new("http://fake".into());
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
