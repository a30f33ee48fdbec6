use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::common::eventually;

#[tokio::test]
async fn binary_writes_kubeconfig_and_stops_on_sigterm() {
    crate::common::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-emulator"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
        .arg(&path)
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let yaml = eventually("kubeconfig written", || {
        let path = path.clone();
        async move { std::fs::read_to_string(&path).ok() }
    })
    .await;
    let kc = Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = Client::try_from(config).expect("client");
    let nss: Api<Namespace> = Api::all(client);
    nss.get("default").await.expect("serves the API");

    let pid = child.id().expect("pid");
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
}
