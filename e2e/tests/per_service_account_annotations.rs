//! Issue 11, item 1: in PerServiceAccount mode the pods get their client id. The AKS webhook
//! reads `azure.workload.identity/client-id` and `tenant-id` from the host ServiceAccount of the
//! host pod; in this mode that is the ServiceAccount vcluster syncs from the virtual one
//! (`SafeConcatName(sa, "x", ns, "x", vc)`). The operator applies exactly those two keys to each
//! once vcluster created it (never creates one, never owns one), says which are missing and how
//! to create them, and releases the keys when a ServiceAccount is no longer federated or the
//! TenantIdentity goes.
//!
//! Before this change nothing wrote the annotations in this mode and `HostSyncReady` was True as
//! soon as the ConfigMap existed: the first wait below (`ServiceAccountsNotSynced`) and every
//! annotation assertion fail there.

use std::collections::BTreeMap;

use kube::{
    ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use tenant_identity_e2e::{
    Cluster, DEFAULT_TIMEOUT, TestEnv, namespace::random_guid, objects::*, simulate, wait_for,
    wait_gone,
};

/// The annotations and labels vcluster's syncer puts on the host ServiceAccount of `ns/name`.
fn synced_metadata(
    vc: &str,
    ns: &str,
    name: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    (
        BTreeMap::from([
            ("vcluster.loft.sh/managed-by".to_string(), vc.to_string()),
            ("vcluster.loft.sh/namespace".to_string(), ns.to_string()),
        ]),
        BTreeMap::from([
            ("vcluster.loft.sh/object-name".to_string(), name.to_string()),
            (
                "vcluster.loft.sh/object-namespace".to_string(),
                ns.to_string(),
            ),
        ]),
    )
}

/// The fields the operator's Apply entry owns on a ServiceAccount, as `managedFields` says.
fn operator_fields(sa: &k8s_openapi::api::core::v1::ServiceAccount) -> Option<serde_json::Value> {
    sa.managed_fields()
        .iter()
        .find(|m| {
            m.manager.as_deref() == Some(OPERATOR_MANAGER)
                && m.operation.as_deref() == Some("Apply")
        })
        .and_then(|m| m.fields_v1.as_ref())
        .map(|f| serde_json::to_value(f).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_host_service_accounts_get_the_identity_annotations() {
    let env = TestEnv::start("per-sa-annotations", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let client_id = random_guid();
    let (app, job) = ("app-x-default-x-vc-p", "job-x-batch-x-vc-p");
    let spec = |accounts: serde_json::Value| {
        json!({
            "virtualCluster": {"name": "vc-p", "mode": "PerServiceAccount", "serviceAccounts": accounts},
            "azure": {
                "clientId": client_id,
                "tenantId": TENANT_ID,
                "identity": {"azureServiceOperator": {"name": "payments-identity"}},
            },
        })
    };
    create_tenant(
        &client,
        &ns,
        "payments",
        spec(
            json!([{"namespace": "default", "name": "app"}, {"namespace": "batch", "name": "job"}]),
        ),
    )
    .await
    .unwrap();
    let tis = tenants(&client, &ns);

    // Nothing synced yet: both are listed, each with the command that creates it.
    let ti = wait_for(
        &tis,
        "payments",
        "HostSyncReady=False reason=ServiceAccountsNotSynced listing both",
        DEFAULT_TIMEOUT,
        |t| {
            has_condition(
                t,
                "HostSyncReady",
                "False",
                Some("ServiceAccountsNotSynced"),
            ) && condition(t, "HostSyncReady").is_some_and(|c| c.message.contains("2 of 2"))
        },
    )
    .await
    .unwrap();
    let message = &condition(&ti, "HostSyncReady").unwrap().message;
    for part in [
        format!("vcluster connect vc-p -n {ns} -- kubectl create serviceaccount app -n default"),
        format!("vcluster connect vc-p -n {ns} -- kubectl create serviceaccount job -n batch"),
        format!("default/app (host {app})"),
        "sync.toHost.serviceAccounts.enabled".to_string(),
    ] {
        assert!(message.contains(&part), "{part:?} in {message}");
    }
    assert!(has_condition(
        &ti,
        "Ready",
        "False",
        Some("ServiceAccountsNotSynced")
    ));
    assert!(
        has_condition(&ti, "Reconciling", "True", None),
        "resolves by itself once the tenant creates them: {:?}",
        ti.status
    );
    assert!(has_finalizer(&ti), "annotations are released on deletion");
    let sas = service_accounts(&client, &ns);
    for host in [app, job] {
        assert!(
            sas.get_opt(host).await.unwrap().is_none(),
            "the operator never creates a synced ServiceAccount ({host})"
        );
    }

    // The tenant creates default/app inside the vcluster; vcluster syncs it to the host.
    simulate::vcluster_synced_service_account(&client, &ns, "vc-p", "default", "app", app)
        .await
        .unwrap();
    let sa = wait_for(
        &sas,
        app,
        "the identity annotations on the synced ServiceAccount",
        DEFAULT_TIMEOUT,
        |sa| sa.annotations().contains_key(CLIENT_ID_ANNOTATION),
    )
    .await
    .unwrap();
    let (labels, mut expected) = synced_metadata("vc-p", "default", "app");
    expected.insert(CLIENT_ID_ANNOTATION.into(), client_id.clone());
    expected.insert(TENANT_ID_ANNOTATION.into(), TENANT_ID.into());
    assert_eq!(
        sa.annotations(),
        &expected,
        "exactly our two keys are added"
    );
    assert_eq!(sa.labels(), &labels, "vcluster's labels are untouched");
    assert!(
        sa.owner_references().is_empty(),
        "never ours: {:?}",
        sa.owner_references()
    );
    let fields = operator_fields(&sa).expect("an Apply entry of the operator");
    assert_eq!(
        fields,
        json!({"f:metadata": {"f:annotations": {
            format!("f:{CLIENT_ID_ANNOTATION}"): {},
            format!("f:{TENANT_ID_ANNOTATION}"): {},
        }}}),
        "the operator owns the two annotations and nothing else"
    );
    let ti = wait_for(
        &tis,
        "payments",
        "HostSyncReady lists only batch/job",
        DEFAULT_TIMEOUT,
        |t| {
            condition(t, "HostSyncReady").is_some_and(|c| {
                c.reason == "ServiceAccountsNotSynced" && c.message.contains("1 of 2")
            })
        },
    )
    .await
    .unwrap();
    let message = &condition(&ti, "HostSyncReady").unwrap().message;
    assert!(
        message.contains("kubectl create serviceaccount job -n batch"),
        "{message}"
    );
    assert!(
        !message.contains("serviceaccount app -n default"),
        "{message}"
    );
    assert!(
        message.contains(&format!("annotations applied to {app}")),
        "{message}"
    );

    // The second one: host sync is done (no HelmRelease to check, so it says so), and with ASO
    // the tenant is Ready.
    simulate::vcluster_synced_service_account(&client, &ns, "vc-p", "batch", "job", job)
        .await
        .unwrap();
    wait_for(
        &sas,
        job,
        "the identity annotations on the second ServiceAccount",
        DEFAULT_TIMEOUT,
        |sa| sa.annotations().get(CLIENT_ID_ANNOTATION) == Some(&client_id),
    )
    .await
    .unwrap();
    wait_for(
        &tis,
        "payments",
        "HostSyncReady=True",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "HostSyncReady", "True", Some("SyncRulesUnverified")),
    )
    .await
    .unwrap();
    let ti = simulate::converge(&client, &ns, "payments", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let mut hosts = ti.status.as_ref().unwrap().host_service_accounts.clone();
    hosts.sort();
    assert_eq!(hosts, vec![app.to_string(), job.to_string()]);

    // A tenant who edits the virtual ServiceAccount's annotation (vcluster syncs it back to the
    // host) gets the operator's value again.
    sas.patch(
        app,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {CLIENT_ID_ANNOTATION: random_guid()}}})),
    )
    .await
    .unwrap();
    wait_for(&sas, app, "the client id restored", DEFAULT_TIMEOUT, |sa| {
        sa.annotations().get(CLIENT_ID_ANNOTATION) == Some(&client_id)
    })
    .await
    .unwrap();

    // batch/job is no longer federated: its keys are released, app keeps them.
    tis.patch(
        "payments",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"virtualCluster": {
            "serviceAccounts": [{"namespace": "default", "name": "app"}],
        }}})),
    )
    .await
    .unwrap();
    let (job_labels, job_annotations) = synced_metadata("vc-p", "batch", "job");
    let released = wait_for(
        &sas,
        job,
        "the annotations released from job",
        DEFAULT_TIMEOUT,
        |sa| !sa.annotations().contains_key(CLIENT_ID_ANNOTATION),
    )
    .await
    .unwrap();
    assert_eq!(
        released.annotations(),
        &job_annotations,
        "vcluster's annotations stay"
    );
    assert_eq!(released.labels(), &job_labels);
    assert!(
        operator_fields(&released).is_none(),
        "nothing of the operator's is left: {:?}",
        released.managed_fields()
    );
    assert_eq!(
        sas.get(app)
            .await
            .unwrap()
            .annotations()
            .get(CLIENT_ID_ANNOTATION),
        Some(&client_id)
    );

    // Deleting the TenantIdentity releases the keys from app too; the ServiceAccounts stay.
    tis.delete("payments", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tis, "payments", DEFAULT_TIMEOUT).await.unwrap();
    let app_sa = wait_for(
        &sas,
        app,
        "the annotations released from app",
        DEFAULT_TIMEOUT,
        |sa| {
            !sa.annotations().contains_key(CLIENT_ID_ANNOTATION)
                && !sa.annotations().contains_key(TENANT_ID_ANNOTATION)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        app_sa.annotations(),
        &synced_metadata("vc-p", "default", "app").1
    );
    assert!(sas.get_opt(job).await.unwrap().is_some(), "never deleted");

    env.finish().await;
}

/// The contract that keeps the operator from creating a host ServiceAccount it saw and that was
/// deleted since (or writing to one re-created under its name): its annotation applies name the
/// uid it saw, and the API server refuses such an apply instead of creating (409,
/// k8s.io/apiserver `pkg/endpoints/handlers/patch.go`, `patcher.applyPatch`) or changing
/// another object (422, `pkg/registry/rest/update.go`, `BeforeUpdate`: the uid is immutable).
/// The race itself is the operator's unit test (`controller::host_service_account::tests`);
/// this holds the API server to the answers it relies on, on the emulator and a real cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_naming_the_uid_of_a_deleted_service_account_creates_nothing() {
    let cluster = Cluster::connect().await.unwrap();
    let ns = cluster.namespace("uid-precondition").await.unwrap();
    let (client, ns_name) = (cluster.client(), ns.name().to_string());
    let sas = service_accounts(&client, &ns_name);
    let host = "app-x-default-x-vc-u";
    let apply = |uid: &str| {
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": host, "uid": uid, "annotations": {
                CLIENT_ID_ANNOTATION: random_guid(), TENANT_ID_ANNOTATION: TENANT_ID,
            }},
        })
    };
    let params = PatchParams::apply(OPERATOR_MANAGER).force();

    let synced = simulate::vcluster_synced_service_account(
        &client, &ns_name, "vc-u", "default", "app", host,
    )
    .await
    .unwrap();
    let old_uid = synced.uid().unwrap();
    sas.delete(host, &DeleteParams::default()).await.unwrap();
    wait_gone(&sas, host, DEFAULT_TIMEOUT).await.unwrap();

    let refused = sas
        .patch(host, &params, &Patch::Apply(apply(&old_uid)))
        .await;
    let Err(kube::Error::Api(status)) = refused else {
        panic!("an apply naming a deleted uid must fail: {refused:?}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "Conflict"),
        "{status:?}"
    );
    assert!(
        status.message.contains(&format!(
            "uid mismatch: the provided object specified uid {old_uid}, and no existing object was found"
        )),
        "{status:?}"
    );
    assert!(
        sas.get_opt(host).await.unwrap().is_none(),
        "nothing created"
    );

    // vcluster syncs it again: a new object, which the old uid does not touch.
    let again = simulate::vcluster_synced_service_account(
        &client, &ns_name, "vc-u", "default", "app", host,
    )
    .await
    .unwrap();
    assert_ne!(again.uid(), Some(old_uid.clone()));
    let refused = sas
        .patch(host, &params, &Patch::Apply(apply(&old_uid)))
        .await;
    let Err(kube::Error::Api(status)) = refused else {
        panic!("an apply naming another uid must fail: {refused:?}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    assert!(
        status.message.contains(&format!(
            "metadata.uid: Invalid value: \"{old_uid}\": field is immutable"
        )),
        "{status:?}"
    );
    let now = sas.get(host).await.unwrap();
    assert_eq!(
        now.resource_version(),
        again.resource_version(),
        "unchanged"
    );
    assert!(!now.annotations().contains_key(CLIENT_ID_ANNOTATION));

    // With the uid of the object that is there, the apply writes our two keys.
    let written = sas
        .patch(host, &params, &Patch::Apply(apply(&again.uid().unwrap())))
        .await
        .unwrap();
    assert!(written.annotations().contains_key(CLIENT_ID_ANNOTATION));
    assert_eq!(
        operator_fields(&written),
        Some(json!({"f:metadata": {"f:annotations": {
            format!("f:{CLIENT_ID_ANNOTATION}"): {},
            format!("f:{TENANT_ID_ANNOTATION}"): {},
        }}})),
        "the uid is not an applied field"
    );
    ns.cleanup().await;
}
