//! No tenant can borrow, take over or orphan what is not its own in Azure:
//! - identity binding: a credential is only ever written to the identity whose client id is
//!   `spec.azure.clientId` (ARM `properties.clientId`, the ASO UserAssignedIdentity's
//!   `status.clientId`, or refused when it cannot be checked);
//! - ownership is proven by the credential itself, never by status: its name must be the one the
//!   tenant derives from (namespace, name, the credential's own subject). A foreign credential
//!   named in status survives, as does one of another namespace's tenant whose names share the
//!   prefix (`<ns>`/`a-app` and `<ns>-a`/`app`); a credential of ours that status does not list
//!   is cleaned up, and a switch of identity cleans the old one;
//! - a tenant refused its identity revokes only what it wrote (`status.writtenIdentities`).

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, GC_TIMEOUT, TestEnv,
    arm::{self, IdentityRef, StoredCredential},
    namespace::{TestNamespace, random_guid},
    objects::*,
    poll_until, simulate, wait_for, wait_gone,
};

/// Issuer passed with `--oidc-issuer-url`.
const AKS_ISSUER: &str = "https://oidc.prod-aks.azure.com/0c5f1b4e-1111-4222-8333-444455556666/";

async fn wait_reason(env: &TestEnv, name: &str, reason: &str) -> TenantIdentity {
    wait_for(
        &tenants(&env.client, env.ns()),
        name,
        &format!("Ready=False reason={reason}"),
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "Ready", "False", Some(reason)),
    )
    .await
    .unwrap()
}

async fn wait_ready(env: &TestEnv, name: &str) -> TenantIdentity {
    wait_for(
        &tenants(&env.client, env.ns()),
        name,
        "Ready=True",
        DEFAULT_TIMEOUT,
        is_ready,
    )
    .await
    .unwrap()
}

async fn patch_spec(env: &TestEnv, name: &str, spec: serde_json::Value) {
    tenants(&env.client, env.ns())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": spec})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arm_identity_of_another_client_is_never_written_and_what_existed_is_revoked() {
    let env = TestEnv::start_with_arm("bind-arm", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let fake = env.arm().unwrap();
    let own = arm::create_identity(fake, "id-attacker");
    let victim = arm::create_identity(fake, "id-victim");
    assert_ne!(own.default_client_id(), victim.default_client_id());

    // Bound to its own identity first: credentials are written there.
    create_tenant(
        &env.client,
        env.ns(),
        "attacker",
        arm::shared_spec(&own.default_client_id(), "attacker", &own),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&env.client, env.ns(), "attacker")
        .await
        .unwrap();
    wait_ready(&env, "attacker").await;
    assert_eq!(arm::credentials(fake, &own).unwrap().len(), 1);

    // Its granted client id stays; the identity it names becomes the victim's.
    patch_spec(
        &env,
        "attacker",
        json!({"azure": {"identity": arm::managed_identity(&victim)}}),
    )
    .await;
    let ti = wait_reason(&env, "attacker", "IdentityMismatch").await;
    let ready = condition(&ti, "Ready").unwrap();
    assert!(
        ready.message.contains(&victim.default_client_id())
            && ready.message.contains("spec.azure.clientId"),
        "{}",
        ready.message
    );
    assert!(has_condition(
        &ti,
        "Stalled",
        "True",
        Some("IdentityMismatch")
    ));
    assert!(
        arm::credentials(fake, &victim).unwrap().is_empty(),
        "nothing is ever written to an identity of another client id"
    );
    arm::wait_credentials(
        fake,
        &own,
        "the credential written before, revoked",
        DEFAULT_TIMEOUT,
        |c| c.is_empty(),
    )
    .await
    .unwrap();
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_identity_cleans_the_one_written_before() {
    let env = TestEnv::start_with_arm("switch-identity", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let fake = env.arm().unwrap();
    let first = arm::create_identity(fake, "id-first");
    let second = arm::create_identity(fake, "id-second");
    create_tenant(
        &env.client,
        env.ns(),
        "team-a",
        arm::shared_spec(&first.default_client_id(), "team-a", &first),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&env.client, env.ns(), "team-a")
        .await
        .unwrap();
    wait_ready(&env, "team-a").await;
    assert_eq!(arm::credentials(fake, &first).unwrap().len(), 1);

    // Another identity (and so its client id): the first one must not keep trusting the tenant.
    patch_spec(
        &env,
        "team-a",
        json!({"azure": {
            "clientId": second.default_client_id(),
            "identity": arm::managed_identity(&second),
        }}),
    )
    .await;
    arm::wait_credentials(fake, &second, "the credential", DEFAULT_TIMEOUT, |c| {
        c.len() == 1
    })
    .await
    .unwrap();
    arm::wait_credentials(
        fake,
        &first,
        "no credential left on the identity no longer named",
        DEFAULT_TIMEOUT,
        |c| c.is_empty(),
    )
    .await
    .unwrap();
    let ti = wait_ready(&env, "team-a").await;
    let written = &ti.status.as_ref().unwrap().written_identities;
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].eq_ignore_ascii_case(&second.arm_id()),
        "{written:?}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_is_proven_by_the_credential_never_by_status() {
    let env = TestEnv::start_with_arm("own-by-name", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let identity = arm::create_identity(fake, "id-shared");
    // Someone else's credential on the identity.
    let foreign = StoredCredential::new(
        "platform-break-glass",
        arm::FOREIGN_ISSUER,
        "system:serviceaccount:ops:break-glass",
        DEFAULT_AUDIENCE,
    );
    fake.seed_credential(&identity, foreign.clone()).unwrap();
    // And one of ours that status never listed, for a subject no longer wanted (as a crash
    // between an ARM write and the status write, then the subject's removal, leaves it): an
    // earlier incarnation of the tenant wrote it for vcluster `removed` and was deleted under
    // Retain, so the credential stayed and no status lists it.
    let mut earlier = arm::shared_spec(&identity.default_client_id(), "removed", &identity);
    earlier["deletionPolicy"] = json!("Retain");
    create_tenant(&client, &ns, "team-a", earlier)
        .await
        .unwrap();
    let left = arm::wait_credentials(
        fake,
        &identity,
        "the earlier incarnation's credential",
        DEFAULT_TIMEOUT,
        |c| c.len() == 2,
    )
    .await
    .unwrap();
    let left_by_crash = left.into_iter().find(|c| *c != foreign).unwrap();
    tenants(&client, &ns)
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tenants(&client, &ns), "team-a", GC_TIMEOUT)
        .await
        .unwrap();
    assert!(
        arm::credentials(fake, &identity)
            .unwrap()
            .contains(&left_by_crash)
    );

    create_tenant(
        &client,
        &ns,
        "team-a",
        arm::shared_spec(&identity.default_client_id(), "team-a", &identity),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "team-a")
        .await
        .unwrap();
    wait_ready(&env, "team-a").await;
    let names = |c: &[StoredCredential]| -> Vec<String> {
        let mut n: Vec<String> = c.iter().map(|c| c.name.clone()).collect();
        n.sort();
        n
    };
    let on_identity = arm::wait_credentials(
        fake,
        &identity,
        "the credential left by a crash, removed",
        DEFAULT_TIMEOUT,
        |c| !c.contains(&left_by_crash),
    )
    .await
    .unwrap();
    assert_eq!(
        on_identity.len(),
        2,
        "ours and the foreign one: {:?}",
        names(&on_identity)
    );
    assert!(on_identity.contains(&foreign));

    // Whoever may patch status names the foreign credential as ours; suspended, the operator
    // does not rewrite status before the deletion reads it.
    patch_spec(&env, "team-a", json!({"suspend": true})).await;
    let ti = tenants(&client, &ns).get("team-a").await.unwrap();
    let mut subjects = serde_json::to_value(&ti.status.as_ref().unwrap().subjects).unwrap();
    subjects.as_array_mut().unwrap().push(json!({
        "subject": foreign.subject, "credentialName": foreign.name, "state": "Ready"}));
    tenants(&client, &ns)
        .patch_status(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"subjects": subjects}})),
        )
        .await
        .unwrap();
    tenants(&client, &ns)
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tenants(&client, &ns), "team-a", GC_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        arm::credentials(fake, &identity).unwrap(),
        vec![foreign],
        "only our own credential was deleted"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aso_identity_of_another_client_gets_no_credential_objects() {
    let env = TestEnv::start("bind-aso", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    // The platform team's identity of another tenant, as ASO reports it.
    let victim_client_id = random_guid();
    aso_identity(&client, &ns, "victim-identity", &victim_client_id)
        .await
        .unwrap();
    create_tenant(
        &client,
        &ns,
        "attacker",
        json!({"azure": {
            "clientId": random_guid(),
            "tenantId": TENANT_ID,
            "identity": {"azureServiceOperator": {"name": "victim-identity"}},
        }}),
    )
    .await
    .unwrap();
    let ti = wait_reason(&env, "attacker", "IdentityMismatch").await;
    assert!(
        condition(&ti, "Ready")
            .unwrap()
            .message
            .contains(&victim_client_id)
    );
    assert!(
        credentials(&client, &ns, "attacker")
            .await
            .unwrap()
            .is_empty(),
        "no FederatedIdentityCredential names the victim's identity"
    );

    // An identity ASO has not created in Azure yet cannot be checked: wait, write nothing.
    let pending: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "managedidentity.azure.com/v1api20230131",
        "kind": "UserAssignedIdentity",
        "metadata": {"name": "pending-identity", "namespace": ns},
        "spec": {"location": "westeurope", "owner": {"name": "rg-tenants"}},
    }))
    .unwrap();
    dynamic(&client, &ns, &user_assigned_identity())
        .create(&Default::default(), &pending)
        .await
        .unwrap();
    let mut spec = shared_spec(&random_guid(), "pending");
    spec["azure"]["identity"] = json!({"azureServiceOperator": {"name": "pending-identity"}});
    create_tenant_without_identity(&client, &ns, "pending", spec).await;
    let ti = wait_reason(&env, "pending", "IdentityNotReady").await;
    assert!(has_condition(
        &ti,
        "Reconciling",
        "True",
        Some("IdentityNotReady")
    ));
    assert!(
        credentials(&client, &ns, "pending")
            .await
            .unwrap()
            .is_empty()
    );
    env.finish().await;
}

/// Create a TenantIdentity as is: the identity it names was made by the test.
async fn create_tenant_without_identity(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) {
    let ti = tenant_identity(ns, name, spec).unwrap();
    tenants(client, ns)
        .create(&Default::default(), &ti)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aso_arm_id_cannot_be_checked_without_an_azure_identity() {
    let env = TestEnv::start("aso-armid", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    create_tenant(
        &client,
        &ns,
        "team-a",
        json!({"azure": {
            "clientId": random_guid(),
            "tenantId": TENANT_ID,
            "identity": {"azureServiceOperator": {"armId":
                "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-other/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-other"}},
        }}),
    )
    .await
    .unwrap();
    let ti = wait_reason(&env, "team-a", "IdentityUnverifiable").await;
    assert!(has_condition(
        &ti,
        "Stalled",
        "True",
        Some("IdentityUnverifiable")
    ));
    let found = poll_until("no credential objects", DEFAULT_TIMEOUT, || async {
        let creds = credentials(&client, &ns, "team-a").await?;
        Ok(Check::Done(creds.len()))
    })
    .await
    .unwrap();
    assert_eq!(found, 0);
    env.finish().await;
}

async fn wait_ready_in(client: &kube::Client, ns: &str, name: &str) -> TenantIdentity {
    wait_for(
        &tenants(client, ns),
        name,
        "Ready=True",
        DEFAULT_TIMEOUT,
        is_ready,
    )
    .await
    .unwrap()
}

/// The victim of a name collision: tenant `app` of namespace `<ns>-a`, Ready with its
/// credential on its own identity. Namespace `<ns>` tenant `a-app` has the same credential
/// name prefix, `<ns>-a-app-`: only the 10 hex of sha256(namespace/name/subject) differ.
async fn colliding_victim(env: &TestEnv) -> (TestNamespace, IdentityRef, Vec<StoredCredential>) {
    let fake = env.arm().unwrap();
    let victim_ns = env.cluster.namespace_beside(env.ns(), "a").await.unwrap();
    let victim = arm::create_identity(fake, "id-victim");
    create_tenant(
        &env.client,
        victim_ns.name(),
        "app",
        arm::shared_spec(&victim.default_client_id(), "app", &victim),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&env.client, victim_ns.name(), "app")
        .await
        .unwrap();
    wait_ready_in(&env.client, victim_ns.name(), "app").await;
    let written = arm::credentials(fake, &victim).unwrap();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].name.starts_with(&format!("{}-a-app-", env.ns())),
        "the victim's credential shares the attacker's prefix: {}",
        written[0].name
    );
    (victim_ns, victim, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_colliding_tenant_refused_on_a_foreign_identity_deletes_nothing_there() {
    let env = TestEnv::start_with_arm("collide", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let (victim_ns, victim, before) = colliding_victim(&env).await;

    // Tenant `a-app` of namespace `<ns>`, with its own (granted) client id, names the victim's
    // identity: binding refuses it, and the revocation must not take the victim's credential
    // for its own on the strength of the shared prefix.
    let own = arm::create_identity(fake, "id-attacker");
    create_tenant(
        &client,
        &ns,
        "a-app",
        arm::shared_spec(&own.default_client_id(), "a-app", &victim),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "a-app")
        .await
        .unwrap();
    wait_reason(&env, "a-app", "IdentityMismatch").await;
    assert_eq!(
        arm::credentials(fake, &victim).unwrap(),
        before,
        "the refused tenant's revocation left the victim's credential alone"
    );
    let ti = request_reconcile(&client, &ns, "a-app", "again-1", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(has_condition(
        &ti,
        "Ready",
        "False",
        Some("IdentityMismatch")
    ));
    assert_eq!(arm::credentials(fake, &victim).unwrap(), before);

    // Its deletion (deletionPolicy Delete) tears down nothing of the victim's either.
    tenants(&client, &ns)
        .delete("a-app", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tenants(&client, &ns), "a-app", GC_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(arm::credentials(fake, &victim).unwrap(), before);
    assert!(arm::credentials(fake, &own).unwrap().is_empty());
    victim_ns.cleanup().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_identity_written_into_status_loses_nothing_to_a_colliding_tenant() {
    let env = TestEnv::start_with_arm("collide-status", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let (victim_ns, victim, before) = colliding_victim(&env).await;

    // Tenant `a-app` of `<ns>`, bound to its own identity.
    let own = arm::create_identity(fake, "id-attacker");
    create_tenant(
        &client,
        &ns,
        "a-app",
        arm::shared_spec(&own.default_client_id(), "a-app", &own),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "a-app")
        .await
        .unwrap();
    wait_ready(&env, "a-app").await;
    let mine = arm::credentials(fake, &own).unwrap();
    assert_eq!(mine.len(), 1, "{mine:?}");

    // Whoever may patch its status adds the victim's identity to the identities written to:
    // the next sync looks there for credentials of its own to remove, and finds none.
    let patch_written = || async {
        tenants(&client, &ns)
            .patch_status(
                "a-app",
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"writtenIdentities": [
                    own.arm_id(), victim.arm_id(),
                ]}})),
            )
            .await
            .unwrap();
    };
    patch_written().await;
    request_reconcile(&client, &ns, "a-app", "status-patched", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        arm::credentials(fake, &victim).unwrap(),
        before,
        "a sync never deletes a credential of the same prefix that is not its own"
    );
    assert_eq!(arm::credentials(fake, &own).unwrap(), mine);

    // Suspended (status is then left as it is), patched again and deleted: the teardown
    // looks at the victim's identity too and deletes only its own credential.
    patch_spec(&env, "a-app", json!({"suspend": true})).await;
    patch_written().await;
    tenants(&client, &ns)
        .delete("a-app", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tenants(&client, &ns), "a-app", GC_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(arm::credentials(fake, &victim).unwrap(), before);
    assert!(arm::credentials(fake, &own).unwrap().is_empty());
    victim_ns.cleanup().await;
    env.finish().await;
}

/// An ASO `owner.armId` tenant's FederatedIdentityCredential objects.
fn owner_arm_ids(credentials: &std::collections::BTreeMap<String, DynamicObject>) -> Vec<String> {
    credentials
        .values()
        .filter_map(|o| o.data.pointer("/spec/owner/armId")?.as_str())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aso_arm_id_is_checked_through_arm_when_the_operator_has_an_azure_identity() {
    let env = TestEnv::start_with_arm("aso-armid-arm", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let own = arm::create_identity(fake, "id-own");
    let other = arm::create_identity(fake, "id-other");
    let aso_arm_id_spec = |client_id: &str, vcluster: &str, identity: &IdentityRef| {
        json!({
            "virtualCluster": {"name": vcluster},
            "azure": {
                "clientId": client_id,
                "tenantId": TENANT_ID,
                "identity": {"azureServiceOperator": {"armId": identity.arm_id()}},
            },
        })
    };

    // ARM says the identity's client id is the tenant's: bound, ASO objects name it.
    create_tenant(
        &client,
        &ns,
        "bound",
        aso_arm_id_spec(&own.default_client_id(), "bound", &own),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "bound")
        .await
        .unwrap();
    let objects = poll_until(
        "the bound tenant's credential objects",
        DEFAULT_TIMEOUT,
        || {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                let creds = credentials(&client, &ns, "bound").await?;
                Ok(if creds.is_empty() {
                    Check::NotYet("none yet".to_string())
                } else {
                    Check::Done(creds)
                })
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(owner_arm_ids(&objects), vec![own.arm_id()]);
    assert!(
        arm::credentials(fake, &own).unwrap().is_empty(),
        "ASO writes the credential, not the operator"
    );

    // ARM says it is another client's: refused, and no object names it.
    create_tenant(
        &client,
        &ns,
        "borrower",
        aso_arm_id_spec(&random_guid(), "borrower", &other),
    )
    .await
    .unwrap();
    let ti = wait_reason(&env, "borrower", "IdentityMismatch").await;
    let ready = condition(&ti, "Ready").unwrap();
    assert!(
        ready.message.contains(&other.default_client_id())
            && ready.message.contains("azureServiceOperator.armId"),
        "{}",
        ready.message
    );
    assert!(
        credentials(&client, &ns, "borrower")
            .await
            .unwrap()
            .is_empty(),
        "no FederatedIdentityCredential names the other client's identity"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_refused_its_identity_loses_its_credentials_there_though_status_forgot_them() {
    let env = TestEnv::start_with_arm("refused-forgotten", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let identity = arm::create_identity(fake, "id-once-bound");
    create_tenant(
        &client,
        &ns,
        "team-a",
        arm::shared_spec(&identity.default_client_id(), "team-a", &identity),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "team-a")
        .await
        .unwrap();
    wait_ready(&env, "team-a").await;
    assert_eq!(arm::credentials(fake, &identity).unwrap().len(), 1);

    // Whoever may patch status makes it forget the identity written to (suspended, the
    // operator leaves status as it is); then the tenant switches to a client id of its own that
    // is not the identity's. Binding refuses it, and the credential that trusts the tenant's
    // subject must still go: status is no proof of what was written.
    patch_spec(&env, "team-a", json!({"suspend": true})).await;
    tenants(&client, &ns)
        .patch_status(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"writtenIdentities": [], "subjects": []}})),
        )
        .await
        .unwrap();
    patch_spec(
        &env,
        "team-a",
        json!({"suspend": false, "azure": {"clientId": random_guid()}}),
    )
    .await;
    wait_reason(&env, "team-a", "IdentityMismatch").await;
    arm::wait_credentials(
        fake,
        &identity,
        "the tenant's credential, revoked",
        DEFAULT_TIMEOUT,
        |c| c.is_empty(),
    )
    .await
    .unwrap();
    env.finish().await;
}
