//! The Flux source credential keeps Flux's audience: Flux's Azure provider always asks the API
//! server for tokens with audience `api://AzureADTokenExchange`, so a custom `spec.azure.audience`
//! applies to the workload subjects only.

use serde_json::json;
use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, TestEnv, namespace::random_guid, objects::*, poll_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_audience_is_for_workloads_and_flux_keeps_its_own() {
    let env = TestEnv::start("flux-audience", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());

    create_tenant(
        &client,
        &ns,
        "team-a",
        json!({
            "azure": {
                "clientId": random_guid(),
                "tenantId": TENANT_ID,
                "audience": "api://tenant-a-custom",
                "identity": {"azureServiceOperator": {"name": "team-a-identity"}},
            },
            "git": {"url": "https://dev.azure.com/contoso/team-a/_git/deploy", "auth": "ObjectLevel"},
        }),
    )
    .await
    .unwrap();

    let audiences = poll_until(
        "two FederatedIdentityCredentials (workload and Flux)",
        DEFAULT_TIMEOUT,
        || async {
            let creds = credentials(&client, &ns, "team-a").await?;
            let mut by_subject: Vec<(String, serde_json::Value)> = creds
                .values()
                .map(|c| {
                    (
                        c.data["spec"]["subject"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        c.data["spec"]["audiences"].clone(),
                    )
                })
                .collect();
            by_subject.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(if by_subject.len() == 2 {
                Check::Done(by_subject)
            } else {
                Check::NotYet(format!("{by_subject:?}"))
            })
        },
    )
    .await
    .unwrap();

    assert_eq!(
        audiences,
        vec![
            (
                format!("system:serviceaccount:{ns}:team-a-git"),
                json!([DEFAULT_AUDIENCE])
            ),
            (
                format!("system:serviceaccount:{ns}:vc-workload-team-a"),
                json!(["api://tenant-a-custom"])
            ),
        ],
        "Flux presents only Entra's default audience; the workload uses the custom one"
    );
    env.finish().await;
}
