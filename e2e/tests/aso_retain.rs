//! `deletionPolicy: Retain` with the Azure Service Operator backend: the FederatedIdentityCredential
//! children are garbage-collected with the tenant, and ASO deletes in Azure what it sees deleted,
//! unless the object carries ASO's reconcile policy `detach-on-delete`. So under Retain every
//! credential object carries it, under Delete none does (server-side apply removes it from the
//! objects in place), and the objects the garbage collector removes carried it to the end.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use kube::{
    ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use serde_json::json;
use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, GC_TIMEOUT, TestEnv, namespace::random_guid, objects::*, poll_until,
    wait_gone,
};

const RECONCILE_POLICY: &str = "serviceoperator.azure.com/reconcile-policy";
const DETACH_ON_DELETE: &str = "detach-on-delete";

fn policy(obj: &DynamicObject) -> Option<&str> {
    obj.annotations().get(RECONCILE_POLICY).map(String::as_str)
}

/// Wait until `tenant` has `count` credential objects, each with reconcile policy `want`;
/// returns their uids by name.
async fn wait_policies(
    env: &TestEnv,
    tenant: &str,
    count: usize,
    want: Option<&str>,
) -> BTreeMap<String, String> {
    poll_until(
        &format!("{count} FederatedIdentityCredential(s) with reconcile policy {want:?}"),
        DEFAULT_TIMEOUT,
        || async {
            let creds = credentials(&env.client, env.ns(), tenant).await?;
            let seen: BTreeMap<String, Option<String>> = creds
                .iter()
                .map(|(name, o)| (name.clone(), policy(o).map(str::to_string)))
                .collect();
            Ok(
                if creds.len() == count && seen.values().all(|p| p.as_deref() == want) {
                    Check::Done(
                        creds
                            .iter()
                            .map(|(name, o)| (name.clone(), o.uid().unwrap_or_default()))
                            .collect(),
                    )
                } else {
                    Check::NotYet(format!("{seen:?}"))
                },
            )
        },
    )
    .await
    .unwrap()
}

async fn set_policy(env: &TestEnv, tenant: &str, policy: &str) {
    tenants(&env.client, env.ns())
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deletionPolicy": policy}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_aso_credentials_are_detached_before_garbage_collection() {
    let env = TestEnv::start("aso-retain", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let tenant = "team-r";
    // Two credentials: the vcluster workload and the Flux source account.
    let mut spec = with_git(shared_spec(&random_guid(), "vc-r"), false);
    spec["deletionPolicy"] = json!("Retain");
    create_tenant(&client, &ns, tenant, spec).await.unwrap();

    let uids = wait_policies(&env, tenant, 2, Some(DETACH_ON_DELETE)).await;

    // Retain -> Delete: the annotation goes from every credential, the objects stay the same.
    set_policy(&env, tenant, "Delete").await;
    assert_eq!(
        wait_policies(&env, tenant, 2, None).await,
        uids,
        "updated in place, not re-created"
    );
    // Delete -> Retain: back on every credential.
    set_policy(&env, tenant, "Retain").await;
    assert_eq!(
        wait_policies(&env, tenant, 2, Some(DETACH_ON_DELETE)).await,
        uids
    );

    // Watch the credentials from before the deletion until the garbage collector removed every
    // one, keeping the last version seen of each: that is what ASO would act on.
    let api = dynamic(&client, &ns, &federated_credential());
    let config = watcher::Config::default().labels(&format!("{TENANT_LABEL}={tenant}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut last: BTreeMap<String, DynamicObject> = BTreeMap::new();
    let mut removed: BTreeMap<String, DynamicObject> = BTreeMap::new();
    // The initial list: every credential, as it is now.
    while let Some(event) = events.next().await {
        match event.expect("the initial list of credentials") {
            Event::InitApply(obj) | Event::Apply(obj) => {
                last.insert(obj.name_any(), obj);
            }
            Event::InitDone => break,
            Event::Init | Event::Delete(_) => {}
        }
    }
    assert_eq!(
        last.keys().cloned().collect::<Vec<_>>(),
        uids.keys().cloned().collect::<Vec<_>>()
    );

    let tis = tenants(&client, &ns);
    tis.delete(tenant, &DeleteParams::default()).await.unwrap();
    wait_gone(&tis, tenant, DEFAULT_TIMEOUT).await.unwrap();
    let outcome = tokio::time::timeout(GC_TIMEOUT, async {
        let mut relisted = BTreeSet::new();
        while removed.len() < uids.len() {
            let Some(event) = events.next().await else {
                break;
            };
            match event {
                Ok(Event::Apply(obj)) => {
                    last.insert(obj.name_any(), obj);
                }
                Ok(Event::Delete(obj)) => {
                    let name = obj.name_any();
                    last.remove(&name);
                    removed.insert(name, obj);
                }
                // A re-list (after a watch error) reports what still exists: a credential
                // missing from it was deleted while the watch was down, last seen as kept.
                Ok(Event::Init) => relisted.clear(),
                Ok(Event::InitApply(obj)) => {
                    relisted.insert(obj.name_any());
                    last.insert(obj.name_any(), obj);
                }
                Ok(Event::InitDone) => {
                    let gone: Vec<String> = last
                        .keys()
                        .filter(|name| !relisted.contains(*name))
                        .cloned()
                        .collect();
                    for name in gone {
                        if let Some(obj) = last.remove(&name) {
                            removed.insert(name, obj);
                        }
                    }
                }
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "timed out after {GC_TIMEOUT:?}: removed {:?}, still present {:?}",
        removed.keys().collect::<Vec<_>>(),
        last.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        removed.keys().cloned().collect::<Vec<_>>(),
        uids.keys().cloned().collect::<Vec<_>>(),
        "every credential was garbage-collected"
    );
    for (name, obj) in &removed {
        assert_eq!(
            policy(obj),
            Some(DETACH_ON_DELETE),
            "{name} was deleted without detach-on-delete: {:?}",
            obj.annotations()
        );
        assert_eq!(obj.uid().as_deref(), uids.get(name).map(String::as_str));
    }
    assert!(credentials(&client, &ns, tenant).await.unwrap().is_empty());

    env.finish().await;
}
