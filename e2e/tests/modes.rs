//! Each mode end to end: every child appears with the right content, and the TenantIdentity
//! becomes Ready once ASO and Flux report Ready.

use std::collections::BTreeMap;

use k8s_openapi::api::events::v1::Event;
use kube::{Api, ResourceExt, api::ListParams};
use serde_json::{Value, json};
use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, TestEnv,
    cluster::host_name_vectors_path,
    namespace::random_guid,
    objects::{self, *},
    poll_until, simulate, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mode_with_aso_backend() {
    let env = TestEnv::start("shared-aso", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let issuer = env.cluster.discovered_issuer().await.unwrap();
    let client_id = random_guid();

    let ti = create_tenant(
        &client,
        &ns,
        "team-a",
        json!({
            "virtualCluster": {"name": "team-a"},
            "azure": {
                "clientId": client_id,
                "tenantId": TENANT_ID,
                "identity": {"azureServiceOperator": {"name": "team-a-identity"}},
            },
        }),
    )
    .await
    .unwrap();

    // Sync rules: the vcluster.yaml fragment for the Shared workload ServiceAccount.
    let cm = wait_for(
        &config_maps(&client, &ns),
        &sync_rules_config_map("team-a"),
        "the sync-rules ConfigMap",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    assert!(controlled_by(&cm.metadata, &ti), "{:?}", cm.metadata);
    assert_eq!(
        cm.labels().get(TENANT_LABEL).map(String::as_str),
        Some("team-a")
    );
    let values = sync_rules_values(&cm).unwrap();
    assert_eq!(
        values,
        json!({"controlPlane": {"advanced": {"workloadServiceAccount": {
            "enabled": true,
            "name": "vc-workload-team-a",
            "annotations": {CLIENT_ID_ANNOTATION: client_id, TENANT_ID_ANNOTATION: TENANT_ID},
        }}}}),
        "values.yaml of {}",
        cm.name_any()
    );

    // One credential for the host workload ServiceAccount.
    let creds = poll_until(
        "one FederatedIdentityCredential",
        DEFAULT_TIMEOUT,
        || async {
            let creds = credentials(&client, &ns, "team-a").await?;
            Ok(if creds.len() == 1 {
                Check::Done(creds)
            } else {
                Check::NotYet(format!("{:?}", creds.keys().collect::<Vec<_>>()))
            })
        },
    )
    .await
    .unwrap();
    let (fic_name, fic) = creds.iter().next().unwrap();
    assert!(controlled_by(&fic.metadata, &ti));
    let spec = &fic.data["spec"];
    assert_eq!(
        spec["issuer"],
        json!(issuer),
        "issuer byte for byte: {spec}"
    );
    assert_eq!(
        spec["subject"],
        json!(subject(&ns, "vc-workload-team-a")),
        "{spec}"
    );
    assert_eq!(spec["audiences"], json!([DEFAULT_AUDIENCE]), "{spec}");
    assert_eq!(spec["owner"], json!({"name": "team-a-identity"}), "{spec}");
    assert_eq!(spec["azureName"], json!(fic_name), "{spec}");

    // No vcluster yet: the host ServiceAccount does not exist, and the operator does not create it.
    let tis = tenants(&client, &ns);
    let ti = wait_for(
        &tis,
        "team-a",
        "HostSyncReady=False reason=VirtualClusterNotFound",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "HostSyncReady", "False", Some("VirtualClusterNotFound")),
    )
    .await
    .unwrap();
    assert!(
        has_condition(&ti, "Ready", "False", None),
        "{:?}",
        ti.status
    );
    let sas = service_accounts(&client, &ns);
    assert!(
        sas.get_opt("vc-workload-team-a").await.unwrap().is_none(),
        "the operator must never create the vcluster's ServiceAccount"
    );

    // The vcluster Helm release creates it: exactly our two annotations are added.
    simulate::helm_workload_service_account(&client, &ns, "team-a")
        .await
        .unwrap();
    let (helm_labels, mut expected) = simulate::helm_metadata("team-a", &ns);
    expected.insert(CLIENT_ID_ANNOTATION.into(), client_id.clone());
    expected.insert(TENANT_ID_ANNOTATION.into(), TENANT_ID.into());
    let sa = wait_for(
        &sas,
        "vc-workload-team-a",
        "the workload identity annotations",
        DEFAULT_TIMEOUT,
        |sa| sa.annotations().contains_key(CLIENT_ID_ANNOTATION),
    )
    .await
    .unwrap();
    assert_eq!(sa.annotations(), &expected, "annotations of the host SA");
    assert_eq!(sa.labels(), &helm_labels, "Helm's labels are untouched");
    assert!(
        sa.owner_references().is_empty(),
        "the host SA belongs to Helm: {:?}",
        sa.owner_references()
    );

    wait_for(&tis, "team-a", "HostSyncReady=True", DEFAULT_TIMEOUT, |t| {
        has_condition(t, "HostSyncReady", "True", None)
    })
    .await
    .unwrap();

    // ASO reports the credential Ready: the TenantIdentity is Ready for its generation.
    simulate::aso_all_credentials_ready(&client, &ns, "team-a")
        .await
        .unwrap();
    let ti = wait_for(&tis, "team-a", "Ready=True", DEFAULT_TIMEOUT, is_ready)
        .await
        .unwrap();
    let status = ti.status.clone().unwrap();
    assert_eq!(status.observed_generation, ti.metadata.generation);
    assert_eq!(condition(&ti, "Ready").unwrap().reason, "IdentityReady");
    assert!(condition(&ti, "Reconciling").is_none_or(|c| c.status != "True"));
    assert!(condition(&ti, "Stalled").is_none_or(|c| c.status != "True"));
    assert!(has_condition(
        &ti,
        "FederatedCredentialsReady",
        "True",
        None
    ));
    assert_eq!(status.issuer.as_deref(), Some(issuer.as_str()));
    assert_eq!(status.host_service_accounts, vec!["vc-workload-team-a"]);
    assert_eq!(status.subjects.len(), 1, "{:?}", status.subjects);
    assert_eq!(
        status.subjects[0].subject,
        subject(&ns, "vc-workload-team-a")
    );
    assert_eq!(&status.subjects[0].credential_name, fic_name);
    assert_eq!(status.subjects[0].state, "Ready");

    // An Event with the Ready reason, about this object.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    poll_until("an IdentityReady Event", DEFAULT_TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await?;
        let seen: Vec<String> = list
            .items
            .iter()
            .map(|e| {
                format!(
                    "{:?} {:?} {:?}",
                    e.reason,
                    e.regarding.as_ref().and_then(|r| r.name.clone()),
                    e.type_
                )
            })
            .collect();
        Ok(
            if list.items.iter().any(|e| {
                e.reason.as_deref() == Some("IdentityReady")
                    && e.regarding.as_ref().is_some_and(|r| {
                        r.name.as_deref() == Some("team-a")
                            && r.kind.as_deref() == Some("TenantIdentity")
                    })
            }) {
                Check::Done(())
            } else {
                Check::NotYet(format!("{seen:?}"))
            },
        )
    })
    .await
    .unwrap();

    env.finish().await;
}

/// Host names vcluster gives virtual ServiceAccounts (upstream vectors, one of them hashed).
fn host_name_vectors() -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(host_name_vectors_path()).expect("committed vectors");
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (
                s("name"),
                s("namespace"),
                s("vcluster_name"),
                s("host_name"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_service_account_mode() {
    let env = TestEnv::start("per-sa", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let issuer = env.cluster.discovered_issuer().await.unwrap();

    // Two virtual SAs of vcluster "my-vcluster": a short name and one vcluster hashes.
    let vectors: Vec<_> = host_name_vectors()
        .into_iter()
        .filter(|(name, vns, vc, _)| {
            vc == "my-vcluster"
                && vns == "default"
                && name.len() <= 253
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        .collect();
    let hashed = vectors
        .iter()
        .find(|(name, vns, vc, host)| &format!("{name}-x-{vns}-x-{vc}") != host)
        .expect("a hashed vector for my-vcluster")
        .clone();
    let plain = (
        "app",
        "default",
        "my-vcluster",
        "app-x-default-x-my-vcluster",
    );

    let ti = create_tenant(
        &client,
        &ns,
        "payments",
        json!({
            "virtualCluster": {
                "name": "my-vcluster",
                "mode": "PerServiceAccount",
                "serviceAccounts": [
                    {"namespace": plain.1, "name": plain.0},
                    {"namespace": hashed.1, "name": hashed.0},
                ],
            },
            "azure": {
                "clientId": random_guid(),
                "tenantId": TENANT_ID,
                "identity": {"azureServiceOperator": {"name": "payments-identity"}},
            },
        }),
    )
    .await
    .unwrap();

    let mut expected = vec![subject(&ns, plain.3), subject(&ns, &hashed.3)];
    expected.sort();
    let creds = poll_until(
        "one credential per listed ServiceAccount",
        DEFAULT_TIMEOUT,
        || async {
            let creds = credentials(&client, &ns, "payments").await?;
            Ok(if credential_subjects(&creds) == expected {
                Check::Done(creds)
            } else {
                Check::NotYet(format!("{:?}", credential_subjects(&creds)))
            })
        },
    )
    .await
    .unwrap();
    for fic in creds.values() {
        assert!(controlled_by(&fic.metadata, &ti));
        assert_eq!(fic.data["spec"]["issuer"], json!(issuer));
        assert_eq!(fic.data["spec"]["audiences"], json!([DEFAULT_AUDIENCE]));
    }

    let cm = wait_for(
        &config_maps(&client, &ns),
        &sync_rules_config_map("payments"),
        "the sync-rules ConfigMap",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    let values = sync_rules_values(&cm).unwrap();
    assert_eq!(
        values,
        json!({"sync": {"toHost": {
            "serviceAccounts": {"enabled": true},
            "pods": {"useSecretsForSATokens": true},
        }}}),
        "values.yaml"
    );

    // Until vcluster syncs the virtual ServiceAccounts, host sync waits for them; then each host
    // ServiceAccount, under the name vcluster gives it (the upstream vectors), gets the identity
    // annotations the AKS webhook reads.
    let tis = tenants(&client, &ns);
    wait_for(
        &tis,
        "payments",
        "HostSyncReady=False reason=ServiceAccountsNotSynced",
        DEFAULT_TIMEOUT,
        |t| {
            has_condition(
                t,
                "HostSyncReady",
                "False",
                Some("ServiceAccountsNotSynced"),
            )
        },
    )
    .await
    .unwrap();
    let sas = service_accounts(&client, &ns);
    for (name, vns, vc, host) in [
        (
            plain.0.to_string(),
            plain.1.to_string(),
            plain.2.to_string(),
            plain.3.to_string(),
        ),
        hashed.clone(),
    ] {
        simulate::vcluster_synced_service_account(&client, &ns, &vc, &vns, &name, &host)
            .await
            .unwrap();
        wait_for(
            &sas,
            &host,
            "the identity annotations",
            DEFAULT_TIMEOUT,
            |sa| {
                sa.annotations().contains_key(CLIENT_ID_ANNOTATION)
                    && sa.annotations().contains_key(TENANT_ID_ANNOTATION)
            },
        )
        .await
        .unwrap();
    }
    wait_for(
        &tis,
        "payments",
        "HostSyncReady=True",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "HostSyncReady", "True", None),
    )
    .await
    .unwrap();

    simulate::aso_all_credentials_ready(&client, &ns, "payments")
        .await
        .unwrap();
    let ti = wait_for(&tis, "payments", "Ready=True", DEFAULT_TIMEOUT, is_ready)
        .await
        .unwrap();
    let status = ti.status.unwrap();
    let mut hosts = status.host_service_accounts.clone();
    hosts.sort();
    let mut expected_hosts = vec![plain.3.to_string(), hashed.3.clone()];
    expected_hosts.sort();
    assert_eq!(hosts, expected_hosts);
    let states: BTreeMap<String, String> = status
        .subjects
        .iter()
        .map(|s| (s.subject.clone(), s.state.clone()))
        .collect();
    assert_eq!(
        states.keys().cloned().collect::<Vec<_>>(),
        expected,
        "status.subjects"
    );
    assert!(states.values().all(|s| s == "Ready"), "{states:?}");

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_and_deploy() {
    let env = TestEnv::start("git-deploy", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let client_id = random_guid();
    let url = "https://dev.azure.com/contoso/platform/_git/team-b";

    let ti = create_tenant(
        &client,
        &ns,
        "team-b",
        json!({
            "virtualCluster": {"name": "vc-b"},
            "azure": {
                "clientId": client_id,
                "tenantId": TENANT_ID,
                "identity": {"azureServiceOperator": {"name": "team-b-identity"}},
            },
            "git": {
                "url": url,
                "ref": {"branch": "main"},
                "interval": "5m",
                "auth": "ObjectLevel",
                "deploy": {"path": "./clusters/team-b", "prune": true},
            },
        }),
    )
    .await
    .unwrap();

    // The Flux source ServiceAccount, with both annotations Flux requires.
    let git_sa = wait_for(
        &service_accounts(&client, &ns),
        &git_service_account("team-b"),
        "the Flux source ServiceAccount",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    assert!(controlled_by(&git_sa.metadata, &ti));
    assert_eq!(
        git_sa.annotations().get(CLIENT_ID_ANNOTATION),
        Some(&client_id)
    );
    assert_eq!(
        git_sa
            .annotations()
            .get(TENANT_ID_ANNOTATION)
            .map(String::as_str),
        Some(TENANT_ID)
    );

    let repos = objects::dynamic(&client, &ns, &git_repository());
    let repo = wait_for(
        &repos,
        "team-b",
        "the GitRepository",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    assert!(controlled_by(&repo.metadata, &ti));
    let spec = &repo.data["spec"];
    assert_eq!(spec["url"], json!(url), "{spec}");
    assert_eq!(spec["provider"], json!("azure"), "{spec}");
    assert_eq!(spec["serviceAccountName"], json!("team-b-git"), "{spec}");
    assert_eq!(spec["ref"]["branch"], json!("main"), "{spec}");
    assert_eq!(spec["interval"], json!("5m"), "{spec}");

    let kustomizations = objects::dynamic(&client, &ns, &kustomization());
    let ks = wait_for(
        &kustomizations,
        "team-b",
        "the Kustomization",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    assert!(controlled_by(&ks.metadata, &ti));
    let spec = &ks.data["spec"];
    assert_eq!(
        spec["kubeConfig"]["secretRef"],
        json!({"name": "vc-vc-b", "key": "config"}),
        "{spec}"
    );
    assert_eq!(
        spec["sourceRef"],
        json!({"kind": "GitRepository", "name": "team-b"}),
        "{spec}"
    );
    assert_eq!(spec["path"], json!("./clusters/team-b"), "{spec}");
    assert_eq!(spec["prune"], json!(true), "{spec}");

    let cm = wait_for(
        &config_maps(&client, &ns),
        &sync_rules_config_map("team-b"),
        "the sync-rules ConfigMap",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    let values = sync_rules_values(&cm).unwrap();
    assert_eq!(
        values["exportKubeConfig"],
        json!({"server": format!("https://vc-b.{ns}:443")}),
        "{values}"
    );

    // Two subjects: the vcluster workloads and Flux's source ServiceAccount.
    let mut expected = vec![subject(&ns, "vc-workload-vc-b"), subject(&ns, "team-b-git")];
    expected.sort();
    poll_until("two credentials", DEFAULT_TIMEOUT, || async {
        let creds = credentials(&client, &ns, "team-b").await?;
        Ok(if credential_subjects(&creds) == expected {
            Check::Done(())
        } else {
            Check::NotYet(format!("{:?}", credential_subjects(&creds)))
        })
    })
    .await
    .unwrap();

    let children = kind_names(&objects::children(&client, &ns, "team-b").await.unwrap());
    assert_eq!(children.len(), 6, "{children:?}");

    // vcluster installed, ASO and Flux report Ready: the TenantIdentity is Ready.
    simulate::helm_workload_service_account(&client, &ns, "vc-b")
        .await
        .unwrap();
    simulate::everything_ready(&client, &ns, "team-b")
        .await
        .unwrap();
    let tis = tenants(&client, &ns);
    let ti = wait_for(&tis, "team-b", "Ready=True", DEFAULT_TIMEOUT, is_ready)
        .await
        .unwrap();
    assert!(
        has_condition(&ti, "GitSourceReady", "True", None),
        "{:?}",
        ti.status
    );
    assert!(has_condition(&ti, "HostSyncReady", "True", None));
    assert!(has_condition(
        &ti,
        "FederatedCredentialsReady",
        "True",
        None
    ));

    env.finish().await;
}
