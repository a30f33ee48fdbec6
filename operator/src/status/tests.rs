use super::*;
use crate::plan::{Settings, resolve};
use serde_json::json;

fn plan() -> Plan {
    let t: tenant_identity_crd::TenantIdentity = serde_json::from_value(json!({
        "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
        "metadata": {"name": "team-a", "namespace": "vc-team-a"},
        "spec": {"azure": {"clientId": "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f",
            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "identity": {"azureServiceOperator": {"name": "id"}}}}
    }))
    .unwrap();
    resolve(&t, &Settings::default(), "https://issuer/").unwrap()
}

fn observed(plan: &Plan) -> Observed {
    Observed {
        plan: plan.clone(),
        credentials: CredentialsObserved {
            part: PartState::ready("CredentialsReady", "ok"),
            states: vec![(
                plan.subjects[0].credential_name.clone(),
                CredentialState::Ready,
            )],
            written_identities: Vec::new(),
            rewritten: false,
        },
        host_sync: PartState::ready("HostSyncApplied", "ok"),
        git: None,
        verification: Verification {
            identity: PartState::ready("TokenExchangeSucceeded", "exchanged"),
            git: None,
            subjects: vec![(
                plan.subjects[0].credential_name.clone(),
                "TokenExchangeSucceeded".into(),
            )],
            record: None,
            next_check: None,
            request_deferred: false,
        },
    }
}

fn compute(o: &Observed) -> Summary {
    summarize(Outcome::Converged(o), None)
}

fn git(part: PartState, stalled: Option<(String, String)>) -> Option<GitObserved> {
    Some(GitObserved { part, stalled })
}

fn get<'a>(s: &'a Summary, t: &str) -> Option<&'a DesiredCondition> {
    s.conditions.iter().find(|c| c.type_ == t)
}

#[test]
fn all_parts_ready_means_ready_and_nothing_else() {
    let p = plan();
    let s = compute(&observed(&p));
    let ready = get(&s, "Ready").unwrap();
    assert_eq!(ready.status, Status::True);
    assert_eq!(ready.reason, "IdentityReady");
    assert!(get(&s, "Reconciling").is_none());
    assert!(get(&s, "Stalled").is_none());
    assert!(get(&s, "GitSourceReady").is_none(), "no git configured");
    assert_eq!(s.subjects[0].state, "Ready");
}

#[test]
fn waiting_vcluster_reconciles_with_its_reason() {
    let p = plan();
    let mut o = observed(&p);
    o.host_sync = PartState::waiting("VirtualClusterNotFound", "install vcluster");
    let s = compute(&o);
    let ready = get(&s, "Ready").unwrap();
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (Status::False, "VirtualClusterNotFound")
    );
    assert_eq!(ready.message, "install vcluster");
    assert_eq!(get(&s, "Reconciling").unwrap().status, Status::True);
    assert!(get(&s, "Stalled").is_none(), "never both");
    assert_eq!(get(&s, "HostSyncReady").unwrap().status, Status::False);
}

#[test]
fn git_mirrors_flux_and_stall_is_terminal() {
    let p = plan();
    let mut o = observed(&p);
    o.git = git(
        PartState::waiting("AuthenticationFailed", "401 from dev.azure.com"),
        None,
    );
    let s = compute(&o);
    let ready = get(&s, "Ready").unwrap();
    assert_eq!(ready.reason, "GitSourceNotReady");
    assert!(
        ready.message.contains("401 from dev.azure.com"),
        "{}",
        ready.message
    );
    assert_eq!(
        get(&s, "GitSourceReady").unwrap().reason,
        "AuthenticationFailed"
    );
    assert!(get(&s, "Reconciling").is_some());

    o.git = git(
        PartState::failed("FeatureGateDisabled", "enable ObjectLevelWorkloadIdentity"),
        Some((
            "FeatureGateDisabled".into(),
            "enable ObjectLevelWorkloadIdentity".into(),
        )),
    );
    let s = compute(&o);
    let stalled = get(&s, "Stalled").unwrap();
    assert_eq!(
        (stalled.status, stalled.reason.as_str()),
        (Status::True, "FeatureGateDisabled")
    );
    assert!(get(&s, "Reconciling").is_none(), "never both");
    assert_eq!(get(&s, "Ready").unwrap().status, Status::False);
}

#[test]
fn errors_take_precedence_and_refusals_stall() {
    let failure = Failure {
        reason: "KubernetesApiError".into(),
        message: "connection refused".into(),
        terminal: false,
        credentials: false,
    };
    let s = summarize(Outcome::Failed(&failure), None);
    assert_eq!(get(&s, "Ready").unwrap().reason, "KubernetesApiError");
    assert!(get(&s, "Reconciling").is_some());

    let r = summarize(
        Outcome::Refused(&crate::plan::SpecError {
            reason: "IdentityClaimConflict",
            message: "taken".into(),
        }),
        None,
    );
    assert_eq!(r.conditions[0].reason, "IdentityClaimConflict");
    assert_eq!(r.conditions[1].type_, "Stalled");
    assert!(r.subjects.is_empty());
}

#[test]
fn pending_credentials_listed_per_subject() {
    let p = plan();
    let mut o = observed(&p);
    o.credentials = CredentialsObserved {
        part: PartState::waiting("CredentialsPending", "waiting for ASO"),
        states: Vec::new(),
        written_identities: Vec::new(),
        rewritten: false,
    };
    let s = compute(&o);
    assert_eq!(get(&s, "Ready").unwrap().reason, "CredentialsPending");
    assert_eq!(s.subjects[0].state, "Pending");
    assert_eq!(s.subjects[0].credential_name, p.subjects[0].credential_name);
}

#[test]
fn written_identities_stay_recorded_unless_revoked() {
    let previous = tenant_identity_crd::TenantIdentityStatus {
        written_identities: vec!["/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i".into()],
        ..Default::default()
    };
    let invalid = crate::plan::SpecError::invalid("spec.x: bad");
    let refused = summarize(Outcome::Refused(&invalid), Some(&previous));
    assert_eq!(
        refused.written_identities, previous.written_identities,
        "an invalid spec keeps what was written findable"
    );
    let mismatch = crate::plan::SpecError {
        reason: "IdentityMismatch",
        message: "not yours".into(),
    };
    let revoked = summarize(Outcome::Revoked(&mismatch), Some(&previous));
    assert!(
        revoked.written_identities.is_empty(),
        "revocation removed it all"
    );
    assert_eq!(get(&revoked, "Stalled").unwrap().reason, "IdentityMismatch");
    let failure = Failure {
        reason: "Throttled".into(),
        message: "429".into(),
        terminal: false,
        credentials: true,
    };
    assert_eq!(
        summarize(Outcome::Failed(&failure), Some(&previous)).written_identities,
        previous.written_identities
    );
}

#[test]
fn host_sync_reasons_decide_ready_reconciling_and_stalled() {
    // (HostSyncReady, then Ready, Reconciling, Stalled): a vcluster that cannot carry the rules
    // or a release that does not take them needs a person; Flux rolling the release, or a
    // ServiceAccount not created yet, resolves by itself; without a release the operator cannot
    // check, which does not hold the tenant back.
    let cases = [
        (
            PartState::ready("HostSyncApplied", "ok"),
            true,
            false,
            false,
        ),
        (
            PartState::ready("SyncRulesUnverified", "verify by hand"),
            true,
            false,
            false,
        ),
        (
            PartState::failed("SyncRulesNotReferenced", "add the entry"),
            false,
            false,
            true,
        ),
        (
            PartState::failed("SyncRulesOverridden", "remove it"),
            false,
            false,
            true,
        ),
        (
            PartState::failed("VirtualClusterUnsupported", "upgrade"),
            false,
            false,
            true,
        ),
        (
            PartState::waiting("VirtualClusterUpgrading", "Flux is upgrading"),
            false,
            true,
            false,
        ),
        (
            PartState::waiting("VirtualClusterReleaseFailed", "retrying"),
            false,
            true,
            false,
        ),
        (
            PartState::failed("VirtualClusterReleaseFailed", "retries exceeded"),
            false,
            false,
            true,
        ),
        (
            PartState::waiting("ServiceAccountsNotSynced", "kubectl create serviceaccount"),
            false,
            true,
            false,
        ),
    ];
    let p = plan();
    for (part, ready, reconciling, stalled) in cases {
        let mut o = observed(&p);
        o.host_sync = part.clone();
        let s = compute(&o);
        let r = get(&s, "Ready").unwrap();
        assert_eq!(r.status == Status::True, ready, "{}", part.reason);
        if !ready {
            assert_eq!(
                (r.reason.as_str(), r.message.as_str()),
                (part.reason.as_str(), part.message.as_str())
            );
        }
        assert_eq!(
            get(&s, "Reconciling").is_some(),
            reconciling,
            "{}",
            part.reason
        );
        assert_eq!(get(&s, "Stalled").is_some(), stalled, "{}", part.reason);
        let host = get(&s, "HostSyncReady").unwrap();
        assert_eq!(
            (host.status, host.reason.as_str()),
            (part.status, part.reason.as_str())
        );
    }
}

#[test]
fn suspended_from_the_start_is_current_not_in_progress() {
    let s = summarize(Outcome::Suspended, None);
    let ready = get(&s, "Ready").unwrap();
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (Status::False, "Suspended")
    );
    assert!(get(&s, "Reconciling").is_none() && get(&s, "Stalled").is_none());
}

#[test]
fn verification_in_progress_keeps_ready_false_with_reconciling_verifying() {
    let p = plan();
    let mut o = observed(&p);
    o.verification.identity = PartState::unknown("Verifying", "Entra can take a few minutes");
    let s = compute(&o);
    let ready = get(&s, "Ready").unwrap();
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (Status::False, "Verifying")
    );
    assert_eq!(get(&s, "Reconciling").unwrap().reason, "Verifying");
    assert!(get(&s, "Stalled").is_none());
    assert_eq!(get(&s, "IdentityVerified").unwrap().status, Status::Unknown);
}

#[test]
fn a_federation_mismatch_stalls_the_tenant_naming_it() {
    let p = plan();
    let mut o = observed(&p);
    o.verification.identity = PartState::failed("FederationMismatch", "the issuer differs");
    o.verification.subjects[0].1 = "FederationMismatch".into();
    let s = compute(&o);
    assert_eq!(get(&s, "Ready").unwrap().reason, "FederationMismatch");
    assert_eq!(get(&s, "Stalled").unwrap().message, "the issuer differs");
    assert_eq!(
        s.subjects[0].verified.as_deref(),
        Some("FederationMismatch")
    );
}

#[test]
fn verification_off_or_not_applicable_does_not_hold_ready() {
    let p = plan();
    let mut o = observed(&p);
    o.verification.identity = PartState::informational("VerificationDisabled", "--verify=false");
    o.git = git(PartState::ready("Succeeded", "stored artifact"), None);
    o.verification.git = Some(PartState::informational("NotApplicable", "ControllerLevel"));
    let s = compute(&o);
    assert_eq!(get(&s, "Ready").unwrap().status, Status::True);
    let verified = get(&s, "IdentityVerified").unwrap();
    assert_eq!(
        (verified.status, verified.reason.as_str()),
        (Status::Unknown, "VerificationDisabled")
    );
    assert_eq!(
        get(&s, "GitAccessVerified").unwrap().reason,
        "NotApplicable"
    );
    // A carried-over condition keeps not blocking.
    let carried = PartState::carried(Status::Unknown, "VerificationDisabled", "off", false);
    assert!(!carried.blocks);
}

#[test]
fn git_access_denied_blocks_ready_before_fluxs_own_view() {
    let p = plan();
    let mut o = observed(&p);
    // Flux fails to fetch too; the operator's diagnosis is the reason.
    o.git = git(PartState::waiting("AuthenticationFailed", "401"), None);
    o.verification.git = Some(PartState::failed(
        "GitAccessDenied",
        "add the service principal",
    ));
    let s = compute(&o);
    assert_eq!(get(&s, "Ready").unwrap().reason, "GitAccessDenied");
    assert!(get(&s, "Stalled").is_some());
    let types: Vec<&str> = s.conditions.iter().map(|c| c.type_).collect();
    assert_eq!(
        types,
        [
            "Ready",
            "Stalled",
            "HostSyncReady",
            "FederatedCredentialsReady",
            "IdentityVerified",
            "GitAccessVerified",
            "GitSourceReady"
        ]
    );
}

#[test]
fn a_deferred_reconcile_request_stays_pending() {
    let p = plan();
    let mut o = observed(&p);
    assert!(!compute(&o).request_pending);
    o.verification.request_deferred = true;
    assert!(compute(&o).request_pending);
}
