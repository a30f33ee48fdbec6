//! `deletionPolicy: Retain` with the Azure Service Operator backend: the FederatedIdentityCredential
//! children are garbage-collected with the tenant, and ASO deletes in Azure what it sees deleted,
//! unless the object carries ASO's reconcile policy `detach-on-delete`. So under Retain every
//! credential object carries it, under Delete none does (server-side apply removes it from the
//! objects in place), and the objects the garbage collector removes carried it to the end.
//!
//! Retain is about the deletion of the TenantIdentity only: a credential the operator deletes
//! itself (a subject removed from the spec, a revocation) must go in Azure too, as with the ARM
//! backend. Those objects say `manage` in their last version, whatever the tenant's policy.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use futures::{StreamExt, stream::BoxStream};
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
    wait_for, wait_gone,
};

const RECONCILE_POLICY: &str = "serviceoperator.azure.com/reconcile-policy";
const DETACH_ON_DELETE: &str = "detach-on-delete";
/// ASO's default policy, spelled out: it wins over a namespace's or the operator's default.
const MANAGE: &str = "manage";

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

/// The credential objects of a tenant as a watch sees them, from before a change until the
/// objects it removes are gone: the last version seen of each removed one is what ASO acts on.
struct CredentialWatch {
    events: BoxStream<'static, watcher::Result<Event<DynamicObject>>>,
    /// The last version seen of every credential still present.
    last: BTreeMap<String, DynamicObject>,
}

impl CredentialWatch {
    /// Start watching the credentials of `tenant`; returns once the initial list is in.
    async fn start(env: &TestEnv, tenant: &str) -> Self {
        let api = dynamic(&env.client, env.ns(), &federated_credential());
        let config = watcher::Config::default().labels(&format!("{TENANT_LABEL}={tenant}"));
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let mut last = BTreeMap::new();
        while let Some(event) = events.next().await {
            match event.expect("the initial list of credentials") {
                Event::InitApply(obj) | Event::Apply(obj) => {
                    last.insert(obj.name_any(), obj);
                }
                Event::InitDone => break,
                Event::Init | Event::Delete(_) => {}
            }
        }
        Self { events, last }
    }

    fn names(&self) -> Vec<String> {
        self.last.keys().cloned().collect()
    }

    /// Follow the watch until every credential in `names` is gone; returns the last version
    /// seen of each.
    async fn removed(
        &mut self,
        names: &BTreeSet<String>,
        timeout: Duration,
    ) -> BTreeMap<String, DynamicObject> {
        let mut removed: BTreeMap<String, DynamicObject> = BTreeMap::new();
        let outcome = tokio::time::timeout(timeout, async {
            let mut relisted = BTreeSet::new();
            while !names.iter().all(|n| removed.contains_key(n)) {
                let Some(event) = self.events.next().await else {
                    break;
                };
                match event {
                    Ok(Event::Apply(obj)) => {
                        self.last.insert(obj.name_any(), obj);
                    }
                    Ok(Event::Delete(obj)) => {
                        let name = obj.name_any();
                        self.last.remove(&name);
                        removed.insert(name, obj);
                    }
                    // A re-list (after a watch error) reports what still exists: a credential
                    // missing from it was deleted while the watch was down, last seen as kept.
                    Ok(Event::Init) => relisted.clear(),
                    Ok(Event::InitApply(obj)) => {
                        relisted.insert(obj.name_any());
                        self.last.insert(obj.name_any(), obj);
                    }
                    Ok(Event::InitDone) => {
                        let gone: Vec<String> = self
                            .last
                            .keys()
                            .filter(|name| !relisted.contains(*name))
                            .cloned()
                            .collect();
                        for name in gone {
                            if let Some(obj) = self.last.remove(&name) {
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
            "timed out after {timeout:?} waiting for {names:?} to go: removed {:?}, still present {:?}",
            removed.keys().collect::<Vec<_>>(),
            self.names()
        );
        removed
    }
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
    let mut watch = CredentialWatch::start(&env, tenant).await;
    assert_eq!(watch.names(), uids.keys().cloned().collect::<Vec<_>>());

    let tis = tenants(&client, &ns);
    tis.delete(tenant, &DeleteParams::default()).await.unwrap();
    wait_gone(&tis, tenant, DEFAULT_TIMEOUT).await.unwrap();
    let all: BTreeSet<String> = uids.keys().cloned().collect();
    let removed = watch.removed(&all, GC_TIMEOUT).await;
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

/// Under Retain, the credentials the operator deletes itself are deleted in Azure: a subject
/// removed from the spec, then a revocation (the namespace grant withdrawn). The last version
/// of each object says `manage`, so ASO sends the DELETE; the credentials still wanted keep
/// `detach-on-delete` meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_aso_credentials_removed_or_revoked_are_deleted_in_azure() {
    let env = TestEnv::start("aso-retain-revoke", &["--require-namespace-grant"])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let tenant = "team-v";
    let client_id = random_guid();
    env.ns
        .annotate(GRANT_ANNOTATION, Some(&client_id))
        .await
        .unwrap();
    // Two credentials: the vcluster workload and the Flux source account.
    let mut spec = with_git(shared_spec(&client_id, "vc-v"), false);
    spec["deletionPolicy"] = json!("Retain");
    create_tenant(&client, &ns, tenant, spec).await.unwrap();
    let uids = wait_policies(&env, tenant, 2, Some(DETACH_ON_DELETE)).await;
    let git_subject = subject(&ns, &git_service_account(tenant));
    let creds = credentials(&client, &ns, tenant).await.unwrap();
    let (git, workload): (BTreeSet<String>, BTreeSet<String>) = uids
        .keys()
        .cloned()
        .partition(|name| creds[name].data["spec"]["subject"] == json!(git_subject));
    assert_eq!((git.len(), workload.len()), (1, 1), "{creds:?}");

    // (1) The git source goes from the spec: its credential object goes, told to go in Azure.
    let mut watch = CredentialWatch::start(&env, tenant).await;
    tenants(&client, &ns)
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"git": null}})),
        )
        .await
        .unwrap();
    for (name, obj) in watch.removed(&git, DEFAULT_TIMEOUT).await {
        assert_eq!(
            policy(&obj),
            Some(MANAGE),
            "{name} (a subject removed from the spec) was deleted without reconcile policy manage: {:?}",
            obj.annotations()
        );
    }
    let kept = wait_policies(&env, tenant, 1, Some(DETACH_ON_DELETE)).await;
    assert_eq!(kept.keys().cloned().collect::<BTreeSet<_>>(), workload);

    // (2) The grant is withdrawn: the tenant is revoked, and so is the credential in Azure.
    env.ns.annotate(GRANT_ANNOTATION, None).await.unwrap();
    for (name, obj) in watch.removed(&workload, DEFAULT_TIMEOUT).await {
        assert_eq!(
            policy(&obj),
            Some(MANAGE),
            "{name} (revoked) was deleted without reconcile policy manage: {:?}",
            obj.annotations()
        );
    }
    wait_for(
        &tenants(&client, &ns),
        tenant,
        "Ready=False reason=IdentityNotGranted",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "Ready", "False", Some("IdentityNotGranted")),
    )
    .await
    .unwrap();
    assert!(credentials(&client, &ns, tenant).await.unwrap().is_empty());

    env.finish().await;
}
