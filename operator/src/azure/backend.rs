//! What the controller calls: make a user-assigned identity carry exactly this tenant's
//! desired federated identity credentials, and remove them again.
//!
//! Rules (docs/architecture.md, "Credential backends"):
//! * read before write — list all pages, diff, and PUT only what differs, so a steady state
//!   makes no write calls at all (ARM throttles FIC writes per resource to 0.25/s);
//! * count before create — after the sync the identity may carry at most 20 credentials, ours
//!   and everyone else's; if not, fail before the first write, so nothing is half-applied;
//! * never delete a credential this tenant does not own (judged by its name and subject), never
//!   modify one whose name is not desired, and refuse (rather than "fix") a subject that
//!   someone else already federated;
//! * serialize writes per identity — ARM answers 409 to concurrent FIC writes under one
//!   identity, and two TenantIdentities may share an identity.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use tokio::sync::Mutex;

use super::client::{ArmClient, ArmConfig};
use super::error::ArmError;
use super::metrics::AzureRequestMetrics;
use super::types::{FederatedIdentityCredential, FederatedIdentityCredentialProperties};
use crate::plan::ManagedIdentity;
use tenant_identity_crd::MAX_SUBJECTS;

/// ARM ids are case-insensitive: `RG` and `rg` are the same identity and the same lock.
fn lock_key(identity: &ManagedIdentity) -> String {
    identity.arm_id().to_ascii_lowercase()
}

/// Recognises a tenant's own credentials by what each one is: `(name, subject)` of a credential
/// listed on the identity. The ARM backend's is `names::is_own_credential`, which needs the
/// credential's own subject: a name pattern alone is shared by tenants of other namespaces.
pub type Owns<'a> = dyn Fn(&str, &str) -> bool + Send + Sync + 'a;

/// One credential the tenant wants on the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCredential {
    /// Deterministic name, `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`.
    pub name: String,
    /// Compared and written byte for byte (AKS issuers end in `/`).
    pub issuer: String,
    /// Case-sensitive.
    pub subject: String,
    /// The single audience, e.g. `api://AzureADTokenExchange`.
    pub audience: String,
}

impl DesiredCredential {
    fn properties(&self) -> FederatedIdentityCredentialProperties {
        FederatedIdentityCredentialProperties {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            audiences: vec![self.audience.clone()],
        }
    }

    /// Exactly what Entra compares: issuer byte-for-byte, subject case-sensitively, and the
    /// audience list being exactly `[audience]`.
    fn matches(&self, existing: &FederatedIdentityCredentialProperties) -> bool {
        existing.issuer == self.issuer
            && existing.subject == self.subject
            && existing.audiences.len() == 1
            && existing.audiences[0] == self.audience
    }
}

/// What a sync did to one desired credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialChange {
    /// Already correct; not written.
    Unchanged,
    Created,
    Updated,
}

impl CredentialChange {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialChange::Unchanged => "Unchanged",
            CredentialChange::Created => "Created",
            CredentialChange::Updated => "Updated",
        }
    }
}

/// Outcome of a successful [`ArmBackend::sync`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// PUT + DELETE calls made; 0 in a steady state.
    pub writes: u32,
    /// Every desired credential, in the order given, with what happened to it.
    pub credentials: Vec<(String, CredentialChange)>,
    /// Stale owned credentials that were deleted (absent ones are not listed).
    pub deleted: Vec<String>,
    /// Credentials on the identity after the sync, ours and foreign.
    pub total: usize,
}

/// The ARM backend: a client plus per-identity write locks. Clone it freely; clones share the
/// token cache and the locks.
#[derive(Clone)]
pub struct ArmBackend {
    client: ArmClient,
    /// Lock per identity (lowercased ARM id). Entries nobody holds or waits for are pruned on
    /// each acquisition, so the map stays as small as the set of identities in use.
    locks: Arc<StdMutex<HashMap<String, Arc<Mutex<()>>>>>,
    /// Per identity: ARM asked us to wait (429 `Retry-After`, 409) until then, and what it said.
    /// Reconciles are triggered by many things (our own status write, child events); without
    /// this, any of them would call ARM again before the wait is over.
    hold_off: Arc<StdMutex<HashMap<String, (Instant, ArmError)>>>,
    /// Per identity: its client id and when ARM said so.
    client_ids: Arc<StdMutex<HashMap<String, (Instant, String)>>>,
}

/// How long an identity's client id is trusted without asking ARM again.
pub const CLIENT_ID_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl std::fmt::Debug for ArmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmBackend")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`
pub fn is_valid_credential_name(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=120).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

fn key(name: &str) -> String {
    // ARM resource names are case-insensitive.
    name.to_ascii_lowercase()
}

fn name_of(c: &FederatedIdentityCredential) -> &str {
    c.name.as_deref().unwrap_or_default()
}

impl ArmBackend {
    pub fn new(config: ArmConfig, metrics: AzureRequestMetrics) -> Result<Self, ArmError> {
        Ok(ArmBackend {
            client: ArmClient::new(&config, metrics)?,
            locks: Arc::new(StdMutex::new(HashMap::new())),
            hold_off: Arc::new(StdMutex::new(HashMap::new())),
            client_ids: Arc::new(StdMutex::new(HashMap::new())),
        })
    }

    /// The underlying client (for diagnostics and tests).
    pub fn client(&self) -> &ArmClient {
        &self.client
    }

    fn lock_for(&self, identity: &ManagedIdentity) -> Arc<Mutex<()>> {
        // Never held across an await and nothing panics under it, so poisoning is impossible
        // in practice; recovering keeps one bug from wedging every reconcile.
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(lock_key(identity)).or_default().clone()
    }

    /// While ARM's requested wait for this identity lasts, answer with its error (remaining
    /// delay as `retry_after`) without calling ARM.
    fn check_hold_off(&self, identity: &ManagedIdentity) -> Result<(), ArmError> {
        let mut hold = self
            .hold_off
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        hold.retain(|_, (until, _)| *until > now);
        match hold.get(&lock_key(identity)) {
            Some((until, error)) => Err(error.with_retry_after(*until - now)),
            None => Ok(()),
        }
    }

    /// Remember a wait ARM asked for (throttling, a concurrent write).
    fn note_hold_off<T>(&self, identity: &ManagedIdentity, result: &Result<T, ArmError>) {
        let Err(error) = result else { return };
        if !matches!(
            error,
            ArmError::Throttled { .. } | ArmError::ConcurrentWrite { .. }
        ) {
            return;
        }
        if let Some(delay) = error.retry_after() {
            self.hold_off
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(lock_key(identity), (Instant::now() + delay, error.clone()));
        }
    }

    /// Make the identity carry exactly `desired` among the names this tenant owns.
    /// `owned_stale` are names this tenant created earlier and no longer wants; they are
    /// deleted. Credentials with any other name are never modified or deleted.
    pub async fn sync(
        &self,
        identity: &ManagedIdentity,
        desired: &[DesiredCredential],
        owned_stale: &[String],
    ) -> Result<SyncReport, ArmError> {
        let stale: HashSet<String> = owned_stale.iter().map(|n| key(n)).collect();
        self.sync_owned(identity, desired, &|name, _| stale.contains(&key(name)))
            .await
    }

    /// Make the identity carry exactly `desired` among the credentials `owns` recognises as
    /// this tenant's (by what they are: name and subject); every other owned one is deleted.
    /// Credentials `owns` does not recognise are never deleted, and modified only when they
    /// carry a desired name.
    pub async fn sync_owned(
        &self,
        identity: &ManagedIdentity,
        desired: &[DesiredCredential],
        owns: &Owns<'_>,
    ) -> Result<SyncReport, ArmError> {
        validate_desired(desired)?;
        self.check_hold_off(identity)?;
        let result = self.sync_locked(identity, desired, owns).await;
        self.note_hold_off(identity, &result);
        result
    }

    async fn sync_locked(
        &self,
        identity: &ManagedIdentity,
        desired: &[DesiredCredential],
        owns: &Owns<'_>,
    ) -> Result<SyncReport, ArmError> {
        let lock = self.lock_for(identity);
        let _guard = lock.lock().await;

        let existing = self.client.list(identity).await?;
        let existing_by_key: HashMap<String, &FederatedIdentityCredential> =
            existing.iter().map(|c| (key(name_of(c)), c)).collect();
        let desired_keys: HashSet<String> = desired.iter().map(|d| key(&d.name)).collect();
        let owned = |c: &FederatedIdentityCredential| owns(name_of(c), &c.properties.subject);
        let is_ours =
            |c: &FederatedIdentityCredential| desired_keys.contains(&key(name_of(c))) || owned(c);
        let stale: Vec<&FederatedIdentityCredential> = existing
            .iter()
            .filter(|c| !desired_keys.contains(&key(name_of(c))) && owned(c))
            .collect();

        // Someone else's credential already federates one of our subjects: Entra would
        // refuse the PUT, and taking theirs over would be borrowing an identity.
        for d in desired {
            if let Some(foreign) = existing.iter().find(|c| {
                !is_ours(c) && c.properties.issuer == d.issuer && c.properties.subject == d.subject
            }) {
                return Err(ArmError::DuplicateSubject {
                    subject: d.subject.clone(),
                    existing: Some(name_of(foreign).to_string()),
                    message: format!(
                        "credential '{}' on {} already has issuer '{}' and subject '{}'",
                        name_of(foreign),
                        identity.arm_id(),
                        d.issuer,
                        d.subject
                    ),
                });
            }
        }

        let creates = desired
            .iter()
            .filter(|d| !existing_by_key.contains_key(&key(&d.name)))
            .count();
        let total = existing.len() - stale.len() + creates;
        if total > MAX_SUBJECTS {
            return Err(ArmError::CredentialLimitExceeded {
                count: total,
                limit: MAX_SUBJECTS,
            });
        }

        let mut report = SyncReport {
            total,
            ..Default::default()
        };
        // Deletes first: a renamed credential keeps its issuer+subject, and ARM would refuse
        // the new name while the old one still holds the pair; it also keeps the count <= 20
        // at every step, not only at the end.
        for c in stale {
            let name = name_of(c);
            tracing::info!(identity = %identity.arm_id(), credential = name, "deleting stale federated identity credential");
            self.client.delete(identity, name).await?;
            report.writes += 1;
            report.deleted.push(name.to_string());
        }
        for d in desired {
            let state = match existing_by_key.get(&key(&d.name)) {
                Some(c) if d.matches(&c.properties) => CredentialChange::Unchanged,
                found => {
                    let state = if found.is_some() {
                        CredentialChange::Updated
                    } else {
                        CredentialChange::Created
                    };
                    tracing::info!(
                        identity = %identity.arm_id(),
                        credential = %d.name,
                        subject = %d.subject,
                        action = state.as_str(),
                        "writing federated identity credential"
                    );
                    report.writes += 1;
                    if let Err(e) = self.client.put(identity, &d.name, &d.properties()).await {
                        return Err(self.name_duplicate(identity, d, e).await);
                    }
                    state
                }
            };
            report.credentials.push((d.name.clone(), state));
        }
        Ok(report)
    }

    /// ARM's duplicate-subject error does not say which credential holds the pair (it can
    /// happen when another writer raced us after our list); look it up so the condition
    /// message names it. Best effort: if the lookup fails, report without the name.
    async fn name_duplicate(
        &self,
        identity: &ManagedIdentity,
        desired: &DesiredCredential,
        error: ArmError,
    ) -> ArmError {
        let ArmError::DuplicateSubject {
            subject, message, ..
        } = error
        else {
            return error;
        };
        let existing = self.client.list(identity).await.ok().and_then(|all| {
            all.into_iter()
                .find(|c| {
                    key(name_of(c)) != key(&desired.name)
                        && c.properties.issuer == desired.issuer
                        && c.properties.subject == desired.subject
                })
                .and_then(|c| c.name)
        });
        ArmError::DuplicateSubject {
            subject,
            existing,
            message,
        }
    }

    /// Delete these (owned) credentials. An identity or credential that is already gone
    /// counts as deleted, so a finalizer can always complete.
    pub async fn delete(
        &self,
        identity: &ManagedIdentity,
        names: &[String],
    ) -> Result<(), ArmError> {
        if names.is_empty() {
            return Ok(());
        }
        let wanted: HashSet<String> = names.iter().map(|n| key(n)).collect();
        self.delete_owned(identity, &|name, _| wanted.contains(&key(name)))
            .await
    }

    /// Delete every credential on the identity that `owns` recognises as this tenant's.
    pub async fn delete_owned(
        &self,
        identity: &ManagedIdentity,
        owns: &Owns<'_>,
    ) -> Result<(), ArmError> {
        self.check_hold_off(identity)?;
        let result = self.delete_locked(identity, owns).await;
        self.note_hold_off(identity, &result);
        result
    }

    async fn delete_locked(
        &self,
        identity: &ManagedIdentity,
        owns: &Owns<'_>,
    ) -> Result<(), ArmError> {
        let lock = self.lock_for(identity);
        let _guard = lock.lock().await;
        // List first so absent credentials cost no write call (and no 409 risk).
        let existing = match self.client.list(identity).await {
            Ok(existing) => existing,
            Err(ArmError::IdentityNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for c in existing
            .iter()
            .filter(|c| owns(name_of(c), &c.properties.subject))
        {
            let name = name_of(c);
            tracing::info!(identity = %identity.arm_id(), credential = name, "deleting federated identity credential");
            match self.client.delete(identity, name).await {
                Ok(_) | Err(ArmError::IdentityNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The identity's client id, as ARM reports it (`properties.clientId`), cached for
    /// [`CLIENT_ID_TTL`]: a client id never changes while the identity exists, but an identity
    /// deleted and created again under the same name gets a new one, so the cache expires.
    pub async fn client_id(&self, identity: &ManagedIdentity) -> Result<String, ArmError> {
        let key = lock_key(identity);
        let now = Instant::now();
        {
            let mut cache = self
                .client_ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.retain(|_, (at, _)| now.duration_since(*at) < CLIENT_ID_TTL);
            if let Some((_, id)) = cache.get(&key) {
                return Ok(id.clone());
            }
        }
        self.check_hold_off(identity)?;
        let result = self.client.get_identity(identity).await;
        self.note_hold_off(identity, &result);
        let id = result?
            .properties
            .client_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ArmError::ArmUnavailable {
                status: None,
                message: format!(
                    "ARM answered {} without properties.clientId",
                    identity.arm_id()
                ),
                retry_after: None,
            })?;
        self.client_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (now, id.clone()));
        Ok(id)
    }

    /// Forget a cached client id (the identity was not found, say).
    pub fn forget_client_id(&self, identity: &ManagedIdentity) {
        self.client_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&lock_key(identity));
    }
}

/// Defence in depth: the CRD and the planner validate too, but a bad desired set must fail
/// here before any ARM call, with a terminal reason.
fn validate_desired(desired: &[DesiredCredential]) -> Result<(), ArmError> {
    let invalid = |message: String| ArmError::InvalidRequest {
        code: "InvalidDesiredCredential".to_string(),
        message,
    };
    if desired.len() > MAX_SUBJECTS {
        return Err(ArmError::CredentialLimitExceeded {
            count: desired.len(),
            limit: MAX_SUBJECTS,
        });
    }
    let mut names = HashSet::new();
    let mut pairs = HashSet::new();
    for d in desired {
        if !is_valid_credential_name(&d.name) {
            return Err(invalid(format!(
                "credential name '{}' does not match ^[a-zA-Z0-9][a-zA-Z0-9-_]{{2,119}}$",
                d.name
            )));
        }
        if !names.insert(key(&d.name)) {
            return Err(invalid(format!(
                "credential name '{}' is used twice (ARM names are case-insensitive)",
                d.name
            )));
        }
        if !d.issuer.starts_with("https://") || d.subject.is_empty() || d.audience.is_empty() {
            return Err(invalid(format!(
                "credential '{}' needs an https issuer, a subject and an audience",
                d.name
            )));
        }
        if !pairs.insert((d.issuer.as_str(), d.subject.as_str())) {
            return Err(invalid(format!(
                "subject '{}' is desired twice for the same issuer",
                d.subject
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, subject: &str) -> DesiredCredential {
        DesiredCredential {
            name: name.into(),
            issuer: "https://issuer/".into(),
            subject: subject.into(),
            audience: "api://AzureADTokenExchange".into(),
        }
    }

    #[test]
    fn matching_is_exact() {
        let want = d("abc", "system:serviceaccount:ns:sa");
        let mut p = want.properties();
        assert!(want.matches(&p));
        p.issuer = "https://issuer".into();
        assert!(!want.matches(&p), "trailing slash matters");
        p = want.properties();
        p.subject = "system:serviceaccount:ns:SA".into();
        assert!(!want.matches(&p), "subjects are case-sensitive");
        p = want.properties();
        p.audiences.push("other".into());
        assert!(!want.matches(&p), "exactly one audience");
    }

    #[test]
    fn desired_set_validation() {
        assert!(validate_desired(&[d("abc", "s1"), d("abd", "s2")]).is_ok());
        for bad in [
            vec![d("ab", "s")],
            vec![d("abc", "s1"), d("ABC", "s2")],
            vec![d("abc", "s"), d("abd", "s")],
            vec![DesiredCredential {
                issuer: "http://i".into(),
                ..d("abc", "s")
            }],
        ] {
            let err = validate_desired(&bad).expect_err("invalid");
            assert_eq!(err.reason(), "InvalidRequest");
            assert!(err.is_terminal());
        }
        let many: Vec<_> = (0..21)
            .map(|i| d(&format!("c{i:02}"), &format!("s{i}")))
            .collect();
        assert_eq!(
            validate_desired(&many),
            Err(ArmError::CredentialLimitExceeded {
                count: 21,
                limit: 20
            })
        );
    }

    #[test]
    fn lock_keys_are_case_insensitive() {
        let a = ManagedIdentity::new("S", "RG", "Id");
        let b = ManagedIdentity::new("s", "rg", "id");
        assert_eq!(lock_key(&a), lock_key(&b));
    }
}
