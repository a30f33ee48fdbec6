//! No takeover: an object of someone else that already has a child's name is never written, never
//! gets our owner reference (so garbage collection never deletes it with the TenantIdentity), and
//! the TenantIdentity says which object is in the way (`Ready=False, reason=ChildConflict`,
//! `Stalled=True`). Our own children are still adopted after a restart.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::{
    ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, GC_TIMEOUT, TestEnv,
    namespace::random_guid,
    objects::{self, *},
    poll_until, simulate, wait_for, wait_gone,
};

/// The field manager of the platform team that was there first.
const PLATFORM: &str = "platform-team";

/// An object the platform team created under a name the operator derives for a child.
struct Foreign {
    resource: ApiResource,
    name: String,
    manifest: Value,
}

impl Foreign {
    fn new(resource: ApiResource, name: &str, body: Value) -> Self {
        let mut manifest = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {
                "name": name,
                "labels": {"app.kubernetes.io/part-of": "platform", "team": "platform"},
                "annotations": {"platform.example.com/owner": "sre@example.com"},
            },
        });
        if let (Some(m), Value::Object(body)) = (manifest.as_object_mut(), body) {
            m.extend(body);
        }
        Self {
            resource,
            name: name.to_string(),
            manifest,
        }
    }

    fn api(&self, env: &TestEnv) -> kube::Api<DynamicObject> {
        objects::dynamic(&env.client, env.ns(), &self.resource)
    }

    /// Created as the platform team would: server-side apply under its own field manager.
    async fn create(&self, env: &TestEnv) -> DynamicObject {
        self.api(env)
            .patch(
                &self.name,
                &PatchParams::apply(PLATFORM),
                &Patch::Apply(&self.manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("{} {} as {PLATFORM}: {e}", self.resource.kind, self.name))
    }

    /// `Kind ns/name`, as the condition message names it.
    fn display(&self, env: &TestEnv) -> String {
        format!("{} {}/{}", self.resource.kind, env.ns(), self.name)
    }
}

/// Everything of the object a takeover would change: its content, labels, annotations, owner
/// references, uid, and who wrote it (field managers, without timestamps).
fn content(obj: &DynamicObject) -> Value {
    let managers: Vec<Value> = obj
        .managed_fields()
        .iter()
        .map(|m| {
            json!({
                "manager": m.manager,
                "operation": m.operation,
                "subresource": m.subresource,
                "fields": m.fields_v1.as_ref().map(|f| &f.0),
            })
        })
        .collect();
    json!({
        "uid": obj.metadata.uid,
        "generation": obj.metadata.generation,
        "labels": obj.metadata.labels,
        "annotations": obj.metadata.annotations,
        "ownerReferences": obj.metadata.owner_references,
        "finalizers": obj.metadata.finalizers,
        "spec": obj.data.get("spec"),
        "data": obj.data.get("data"),
        "managedFields": managers,
    })
}

fn ready_message(ti: &TenantIdentity) -> String {
    condition(ti, "Ready")
        .map(|c| format!("Ready={} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_else(|| "no Ready condition".into())
}

/// The whole scenario: the foreign object first, then the TenantIdentity; the conflict is
/// reported, the object is untouched, and it survives the TenantIdentity's deletion. `ours` is a
/// child the operator creates before it reaches the conflicting one, if any: once garbage
/// collection has deleted it, it has had its chance at the foreign object too.
async fn never_taken_over(
    test: &str,
    tenant: &str,
    spec: Value,
    foreign: Foreign,
    ours: Option<(ApiResource, String)>,
) {
    let env = TestEnv::start(test, &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let before = content(&foreign.create(&env).await);

    create_tenant(&client, &ns, tenant, spec).await.unwrap();
    let tis = tenants(&client, &ns);
    let named = foreign.display(&env);
    let reported = wait_for(
        &tis,
        tenant,
        &format!("Ready=False reason=ChildConflict naming {named}"),
        DEFAULT_TIMEOUT,
        |t| {
            has_condition(t, "Ready", "False", Some("ChildConflict"))
                && condition(t, "Ready").is_some_and(|c| c.message.contains(&named))
        },
    )
    .await;
    let ti = match reported {
        Ok(ti) => ti,
        Err(e) => {
            // Show what became of the foreign object: that is the damage.
            let now = match foreign.api(&env).get_opt(&foreign.name).await {
                Ok(Some(obj)) => format!("{:#}", content(&obj)),
                Ok(None) => "deleted".to_string(),
                Err(e) => format!("cannot read it: {e}"),
            };
            panic!("{e:#}\n{named} before: {before:#}\n{named} now: {now}");
        }
    };
    let message = &condition(&ti, "Ready").unwrap().message;
    assert!(
        message.contains(&format!("managed by {PLATFORM}")) && message.contains("remove or rename"),
        "the message says whose it is and what to do: {message}"
    );
    assert!(
        has_condition(&ti, "Stalled", "True", Some("ChildConflict")),
        "a person must act: {:?}",
        ti.status
    );
    assert!(condition(&ti, "Reconciling").is_none(), "{:?}", ti.status);

    // The children before the conflicting one exist (the operator got that far), and they are
    // ours; the foreign object is exactly as the platform team left it.
    if let Some((resource, name)) = &ours {
        let child = objects::dynamic(&client, &ns, resource)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{} {name}: {e}", resource.kind));
        assert!(controlled_by(&child.metadata, &ti), "{:?}", child.metadata);
    }
    let now = foreign.api(&env).get(&foreign.name).await.unwrap();
    assert_eq!(content(&now), before, "{named} was written by the operator");

    // Deleting the TenantIdentity: garbage collection takes our children, not the foreign one.
    tis.delete(tenant, &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&tis, tenant, DEFAULT_TIMEOUT).await.unwrap();
    if let Some((resource, name)) = &ours {
        wait_gone(&objects::dynamic(&client, &ns, resource), name, GC_TIMEOUT)
            .await
            .unwrap();
    }
    let after = foreign
        .api(&env)
        .get_opt(&foreign.name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{named} was deleted with the TenantIdentity"));
    assert_eq!(
        content(&after),
        before,
        "{named} after the TenantIdentity went"
    );

    env.finish().await;
}

fn sync_rules_resource() -> ApiResource {
    ApiResource::erase::<ConfigMap>(&())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_sync_rules_config_map_is_never_taken_over() {
    let tenant = "team-cm";
    let name = sync_rules_config_map(tenant);
    never_taken_over(
        "takeover-cm",
        tenant,
        shared_spec(&random_guid(), "vc-cm"),
        Foreign::new(
            sync_rules_resource(),
            &name,
            json!({"data": {"values.yaml": "# the platform team's vcluster values\nsync:\n  toHost:\n    ingresses:\n      enabled: true\n"}}),
        ),
        // The ConfigMap is the first child: nothing of ours exists before it.
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_git_service_account_is_never_taken_over() {
    let tenant = "team-sa";
    never_taken_over(
        "takeover-sa",
        tenant,
        with_git(shared_spec(&random_guid(), "vc-sa"), false),
        Foreign::new(
            ApiResource::erase::<ServiceAccount>(&()),
            &git_service_account(tenant),
            // The platform team's own workload identity.
            json!({"metadata": {"annotations": {
                CLIENT_ID_ANNOTATION: "0b4e2a34-8f39-4d8e-9a51-1c1f0c0ffee0",
                TENANT_ID_ANNOTATION: TENANT_ID,
                "platform.example.com/owner": "sre@example.com",
            }}}),
        ),
        Some((sync_rules_resource(), sync_rules_config_map(tenant))),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_git_repository_is_never_taken_over() {
    let tenant = "team-gr";
    never_taken_over(
        "takeover-gitrepo",
        tenant,
        with_git(shared_spec(&random_guid(), "vc-gr"), false),
        Foreign::new(
            git_repository(),
            tenant,
            json!({"spec": {
                "url": "https://github.com/contoso/platform-fleet",
                "interval": "10m",
                "ref": {"branch": "production"},
            }}),
        ),
        Some((
            ApiResource::erase::<ServiceAccount>(&()),
            git_service_account(tenant),
        )),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_kustomization_is_never_taken_over() {
    let tenant = "team-ks";
    never_taken_over(
        "takeover-ks",
        tenant,
        with_git(shared_spec(&random_guid(), "vc-ks"), true),
        Foreign::new(
            kustomization(),
            tenant,
            json!({"spec": {
                "interval": "10m",
                "path": "./platform/infrastructure",
                "prune": false,
                "sourceRef": {"kind": "GitRepository", "name": "platform-fleet"},
            }}),
        ),
        Some((git_repository(), tenant.to_string())),
    )
    .await;
}

/// The operator's entries in a child's managedFields: (operation, subresource).
fn our_entries(obj: &DynamicObject) -> Vec<(String, String)> {
    obj.managed_fields()
        .iter()
        .filter(|m| m.manager.as_deref() == Some(OPERATOR_MANAGER))
        .map(|m| {
            (
                m.operation.clone().unwrap_or_default(),
                m.subresource.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_children_are_adopted_after_a_restart() {
    let mut env = TestEnv::start("takeover-own", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let tenant = "team-own";
    create_tenant(
        &client,
        &ns,
        tenant,
        with_git(shared_spec(&random_guid(), "vc-own"), true),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-own")
        .await
        .unwrap();
    simulate::converge(&client, &ns, tenant, DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let before: BTreeMap<String, String> = children(&client, &ns, tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (format!("{}/{}", c.kind, c.name), c.uid))
        .collect();
    assert_eq!(before.len(), 6, "{before:?}");

    // Created by the operator, every child is held by one server-side apply entry of its field
    // manager, as if the apply had created it: nothing it stops asking for is kept by another.
    poll_until(
        "one Apply entry of the operator per child",
        DEFAULT_TIMEOUT,
        || async {
            let mut seen = Vec::new();
            for resource in child_kinds() {
                let api = objects::dynamic(&client, &ns, &resource);
                for child in children(&client, &ns, tenant).await? {
                    if child.kind == resource.kind {
                        let entries = our_entries(&api.get(&child.name).await?);
                        if entries != [("Apply".to_string(), String::new())] {
                            seen.push(format!("{}/{}: {entries:?}", child.kind, child.name));
                        }
                    }
                }
            }
            Ok(if seen.is_empty() {
                Check::Done(())
            } else {
                Check::NotYet(seen.join("; "))
            })
        },
    )
    .await
    .unwrap();

    // A new operator process adopts them: same objects, Ready again, no conflict.
    env.restart_operator(&[]).await.unwrap();
    let ti = request_reconcile(&client, &ns, tenant, "after-restart", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(is_ready(&ti), "{}", ready_message(&ti));
    let after: BTreeMap<String, String> = children(&client, &ns, tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (format!("{}/{}", c.kind, c.name), c.uid))
        .collect();
    assert_eq!(after, before, "children were recreated, not adopted");

    // And the apply still removes what the plan no longer asks for: Flux's own identity
    // (ControllerLevel) drops the GitRepository's serviceAccountName.
    tenants(&client, &ns)
        .patch(
            tenant,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"git": {"auth": "ControllerLevel"}}})),
        )
        .await
        .unwrap();
    let repo = wait_for(
        &objects::dynamic(&client, &ns, &git_repository()),
        tenant,
        "spec.serviceAccountName removed",
        DEFAULT_TIMEOUT,
        |r| r.data["spec"].get("serviceAccountName").is_none(),
    )
    .await
    .unwrap();
    assert_eq!(repo.data["spec"]["provider"], json!("azure"));
    assert_eq!(
        repo.uid(),
        before.get(&format!("GitRepository/{tenant}")).cloned()
    );

    env.finish().await;
}
