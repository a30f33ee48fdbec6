//! The pure reconcile steps for one TenantIdentity: validate (schema + CEL), resolve, build
//! children, compute status. They run on every reconcile, so they must stay far below the cost
//! of one API round trip (~1 ms). Target: < 1 ms per TenantIdentity with 20 subjects.

use criterion::{Criterion, criterion_group, criterion_main};
use kube::Resource;
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_operator::{
    children,
    plan::{self, Settings},
};

fn tenant(subjects: usize) -> TenantIdentity {
    let sas: Vec<_> = (0..subjects)
        .map(|i| json!({"namespace": format!("ns-{i}"), "name": "app"}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
        "metadata": {"name": "team-a", "namespace": "vc-team-a", "uid": "u"},
        "spec": {
            "virtualCluster": {"mode": "PerServiceAccount", "serviceAccounts": sas},
            "azure": {"clientId": "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f",
                      "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                      "identity": {"azureServiceOperator": {"name": "uai"}}},
        }
    }))
    .expect("bench input is valid")
}

fn bench(c: &mut Criterion) {
    let settings = Settings::default();
    for n in [1, 20] {
        let ti = tenant(n);
        let owner = ti.controller_owner_ref(&()).expect("bench input has a uid");
        c.bench_function(&format!("validate+resolve+children/{n}-subjects"), |b| {
            b.iter(|| {
                let plan = plan::resolve(&ti, &settings, "https://issuer/").expect("valid");
                std::hint::black_box(children::owned(&plan, &owner));
            })
        });
    }
    let ti = tenant(20);
    c.bench_function("validate-only/20-subjects", |b| {
        b.iter(|| std::hint::black_box(plan::validate(&ti, &settings)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
