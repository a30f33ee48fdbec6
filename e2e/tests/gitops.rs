//! GitOps co-ownership: Flux's kustomize-controller owns the spec (server-side apply), the
//! operator owns the status; neither ever conflicts with the other.

use kube::{
    ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tenant_identity_e2e::{DEFAULT_TIMEOUT, TestEnv, namespace::random_guid, objects::*, simulate};

const APPLIER: &str = "kustomize-controller";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_applied_by_flux_never_conflicts_with_status_writes() {
    let env = TestEnv::start("gitops", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let client_id = random_guid();
    simulate::helm_workload_service_account(&client, &ns, "vc-o")
        .await
        .unwrap();
    let tis = tenants(&client, &ns);
    let manifest = |interval: &str| {
        let mut spec = with_git(shared_spec(&client_id, "vc-o"), false);
        spec["git"]["interval"] = json!(interval);
        json!({
            "apiVersion": "identity.tenancy.dev/v1alpha1",
            "kind": "TenantIdentity",
            "metadata": {
                "name": "team-o",
                "labels": {
                    "kustomize.toolkit.fluxcd.io/name": "tenants",
                    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
                },
            },
            "spec": spec,
        })
    };
    // Flux applies without force: a conflict would surface as a 409 here.
    let flux_apply = PatchParams::apply(APPLIER);

    let mut generation = 0;
    for (round, interval) in ["5m", "6m", "7m", "7m", "5m"].iter().enumerate() {
        let applied = tis
            .patch("team-o", &flux_apply, &Patch::Apply(manifest(interval)))
            .await
            .unwrap_or_else(|e| panic!("apply round {round} by {APPLIER} failed: {e}"));
        let applied_generation = applied.metadata.generation.unwrap();
        assert!(applied_generation >= generation);
        generation = applied_generation;
        let ti = simulate::converge(&client, &ns, "team-o", DEFAULT_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(ti.metadata.generation, Some(generation));
        assert_eq!(
            ti.status.as_ref().unwrap().observed_generation,
            Some(generation)
        );
        // Re-applying what is already there while the operator writes status: still no conflict.
        tis.patch("team-o", &flux_apply, &Patch::Apply(manifest(interval)))
            .await
            .unwrap_or_else(|e| panic!("re-apply round {round} failed: {e}"));
    }

    // Who owns what: the applier the spec, the operator the status (through the subresource).
    let ti = tis.get("team-o").await.unwrap();
    let managed = ti.managed_fields();
    let flux = managed
        .iter()
        .find(|m| m.manager.as_deref() == Some(APPLIER) && m.operation.as_deref() == Some("Apply"))
        .unwrap_or_else(|| panic!("no Apply entry for {APPLIER}: {managed:?}"));
    let flux_fields = serde_json::to_value(&flux.fields_v1).unwrap();
    assert!(flux_fields["f:spec"].is_object(), "{flux_fields}");
    assert!(flux_fields.get("f:status").is_none(), "{flux_fields}");
    let operator_status = managed.iter().find(|m| {
        m.manager.as_deref() == Some(OPERATOR_MANAGER) && m.subresource.as_deref() == Some("status")
    });
    assert!(
        operator_status.is_some(),
        "the operator writes status through the status subresource: {managed:?}"
    );
    assert!(
        !managed.iter().any(|m| {
            m.manager.as_deref() == Some(OPERATOR_MANAGER)
                && serde_json::to_value(&m.fields_v1).unwrap()["f:spec"].is_object()
        }),
        "the operator never writes the spec: {managed:?}"
    );

    // No reconcile of the operator failed on a conflict either.
    let errors = env
        .operator
        .metric_sum("tenant_identity_reconcile_errors_total", &[])
        .await
        .unwrap();
    assert_eq!(errors, 0.0, "operator logs:\n{}", env.operator.logs());

    env.finish().await;
}
