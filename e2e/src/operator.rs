//! The real `tenant-identity-operator run` binary as a child process.

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use fake_arm::FakeArm;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub use crate::exposition::{MetricSample, parse_exposition, sample_names, sum_samples};
use crate::{
    cluster::{Cluster, workspace_root},
    error::Result,
    objects::TENANT_ID,
    random::random_hex,
    wait::{Check, poll_until},
};

/// Binary name inside the target directory.
const BINARY: &str = "tenant-identity-operator";
/// Environment override for the binary's path.
pub const BINARY_ENV: &str = "E2E_OPERATOR_BIN";

/// Where the operator binary is: `E2E_OPERATOR_BIN`, else `$CARGO_TARGET_DIR/debug`, else
/// `<workspace>/target/debug` (`make e2e` builds `--bins` before the tests).
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_relative() {
                workspace_root().join(t)
            } else {
                t
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(BINARY);
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "operator binary not found at {}: run `cargo build -p tenant-identity-operator --bins` first (or set {BINARY_ENV})",
            path.display()
        )
    }
}

/// The operator's own Azure workload identity for the ARM backend (what the AKS webhook
/// injects into its pod), pointed at some ARM and Entra endpoints.
#[derive(Clone, Debug)]
pub struct ArmSettings {
    /// `--arm-endpoint`.
    pub arm_endpoint: String,
    /// `--authority-host`.
    pub authority_host: String,
    /// `AZURE_CLIENT_ID` of the operator's identity.
    pub client_id: String,
    /// `AZURE_TENANT_ID` of the operator's identity.
    pub tenant_id: String,
    /// Content of the file `AZURE_FEDERATED_TOKEN_FILE` points at (a projected SA token).
    pub federated_token: String,
}

/// Client id of the operator's own (fake) workload identity.
pub const OPERATOR_CLIENT_ID: &str = "5b0e6c8a-3f1d-4e2b-9a7c-1d2e3f4a5b6c";

impl ArmSettings {
    /// Settings for the fake ARM + Entra at `fake`, with a fresh random token file content.
    /// The token file is not a real service account token, so the operator's client id is
    /// made a trusted caller of the fake Entra (its assertion is accepted unread); every other
    /// client's assertion is verified.
    pub fn for_fake(fake: &FakeArm) -> Self {
        fake.trust_client(OPERATOR_CLIENT_ID);
        Self::for_url(&fake.url())
    }

    /// Settings for a fake ARM + Entra served at `url` (both endpoints share it). A fake
    /// started as a process must trust [`OPERATOR_CLIENT_ID`] itself (`fake-arm
    /// --trusted-client-id`).
    pub fn for_url(url: &str) -> Self {
        let url = url.trim_end_matches('/');
        ArmSettings {
            arm_endpoint: url.to_string(),
            authority_host: format!("{url}/"),
            client_id: OPERATOR_CLIENT_ID.to_string(),
            tenant_id: TENANT_ID.to_string(),
            // Shaped like a projected service-account JWT; random so a leak is unambiguous.
            federated_token: format!(
                "eyJhbGciOiJSUzI1NiIsImtpZCI6ImUyZSJ9.eyJzdWIiOiJlMmUtJ{}.{}",
                random_hex(24),
                random_hex(43)
            ),
        }
    }
}

fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    listener.local_addr().context("cannot read the port")
}

/// A running operator process.
pub struct Operator {
    name: String,
    child: Option<Child>,
    metrics_addr: SocketAddr,
    log: PathBuf,
    http: reqwest::Client,
    federated_token: Option<String>,
    federated_token_file: Option<PathBuf>,
    _dir: TempDir,
}

impl Operator {
    /// Start `tenant-identity-operator run` against `cluster` and wait until `/readyz` is 200.
    pub async fn start(cluster: &Cluster, extra_args: &[&str]) -> Result<Self> {
        Self::start_named(cluster, "operator", extra_args).await
    }

    /// Like [`Operator::start`]; `name` labels the log output (e.g. the replica identity).
    pub async fn start_named(cluster: &Cluster, name: &str, extra_args: &[&str]) -> Result<Self> {
        Self::spawn(cluster, name, extra_args, None, &[]).await
    }

    /// Like [`Operator::start`], with the ARM backend enabled against `fake`: a federated token
    /// file is written to the operator's temp dir and the process gets the workload identity
    /// environment (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`) plus
    /// `--arm-endpoint` and `--authority-host` pointing at the fake.
    pub async fn start_with_arm(
        cluster: &Cluster,
        fake: &FakeArm,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::start_named_with_arm(cluster, "operator", fake, extra_args).await
    }

    /// Like [`Operator::start_with_arm`]; `name` labels the log output.
    pub async fn start_named_with_arm(
        cluster: &Cluster,
        name: &str,
        fake: &FakeArm,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::spawn(
            cluster,
            name,
            extra_args,
            Some(ArmSettings::for_fake(fake)),
            &[],
        )
        .await
    }

    /// Start with explicit ARM settings (`None`: the ARM backend stays disabled) and extra
    /// environment variables (applied last, e.g. `RUST_LOG`).
    pub async fn spawn(
        cluster: &Cluster,
        name: &str,
        extra_args: &[&str],
        arm: Option<ArmSettings>,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let binary = binary()?;
        let dir = tempfile::Builder::new()
            .prefix("tenant-identity-operator-")
            .tempdir()
            .context("cannot create a temp dir")?;
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone().context("cannot share the log file")?;
        let metrics_addr = free_port()?;
        let mut command = Command::new(&binary);
        command
            .arg("run")
            .arg("--metrics-bind-address")
            .arg(metrics_addr.to_string())
            .arg("--log-format")
            .arg("text")
            .env("KUBECONFIG", cluster.kubeconfig())
            .env(
                "RUST_LOG",
                std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            // Settings from the developer's shell must not leak into the process under test.
            .env_remove("OIDC_ISSUER_URL")
            .env_remove("REQUIRE_NAMESPACE_GRANT")
            .env_remove("LEADER_ELECT")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .env_remove("AZURE_CLIENT_ID")
            .env_remove("AZURE_TENANT_ID")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE")
            .env_remove("AZURE_AUTHORITY_HOST")
            .env_remove("ARM_ENDPOINT")
            .env_remove("ARM_API_VERSION")
            .env_remove("VERIFY")
            .env_remove("AZURE_DEVOPS_ENDPOINT");
        // Verification is on by default in the binary; scenarios that are not about it run
        // without it, so their assertions do not depend on Entra. `tests/verification.rs`
        // turns it on (`--verify`, see `TestEnv::start_verified`).
        if !extra_args
            .iter()
            .any(|a| *a == "--verify" || a.starts_with("--verify="))
        {
            command.arg("--verify=false");
        }
        let mut federated_token = None;
        let mut federated_token_file = None;
        if let Some(arm) = &arm {
            let token_file = dir.path().join("azure-identity-token");
            std::fs::write(&token_file, &arm.federated_token)
                .with_context(|| format!("cannot write {}", token_file.display()))?;
            command
                .arg("--arm-endpoint")
                .arg(&arm.arm_endpoint)
                .arg("--authority-host")
                .arg(&arm.authority_host)
                .env("AZURE_CLIENT_ID", &arm.client_id)
                .env("AZURE_TENANT_ID", &arm.tenant_id)
                .env("AZURE_FEDERATED_TOKEN_FILE", &token_file);
            federated_token = Some(arm.federated_token.clone());
            federated_token_file = Some(token_file);
        }
        command
            .envs(env.iter().copied())
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build an HTTP client")?;
        let mut operator = Self {
            name: name.to_string(),
            child: Some(child),
            metrics_addr,
            log,
            http,
            federated_token,
            federated_token_file,
            _dir: dir,
        };
        operator.wait_ready().await?;
        Ok(operator)
    }

    /// The content of the federated token file the operator exchanges for ARM tokens (a
    /// secret: it must never appear in the operator's output).
    pub fn federated_token(&self) -> Option<&str> {
        self.federated_token.as_deref()
    }

    /// Rotate the federated token file as kubelet does for a projected token (new content,
    /// swapped in atomically); returns the new content.
    pub fn rotate_federated_token(&mut self) -> Result<String> {
        let path = self
            .federated_token_file
            .clone()
            .ok_or_else(|| anyhow!("operator {} runs without the ARM backend", self.name))?;
        let token = ArmSettings::for_url("http://unused").federated_token;
        let tmp = path.with_extension("rotating");
        std::fs::write(&tmp, &token).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        self.federated_token = Some(token.clone());
        Ok(token)
    }

    /// The process id while the process runs (for `/proc/<pid>`: RSS, open descriptors).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn metrics_address(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Everything the process wrote so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait until `/readyz` answers 200 (fails at once if the process exits).
    pub async fn wait_ready(&mut self) -> Result<()> {
        let url = format!("http://{}/readyz", self.metrics_addr);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "operator {} exited ({status}) before becoming ready; logs:\n{}",
                    self.name,
                    self.logs()
                );
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "operator {} not ready after 30s; logs:\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        response.text().await.with_context(|| format!("GET {url}"))
    }

    /// Sum of every sample of `metric` whose labels include all of `labels`.
    pub async fn metric_sum(&self, metric: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(sum_samples(&self.metrics().await?, metric, labels))
    }

    /// `tenant_identity_reconcile_total{result="success"}`.
    pub async fn successful_reconciles(&self) -> Result<f64> {
        self.metric_sum("tenant_identity_reconcile_total", &[("result", "success")])
            .await
    }

    /// Wait until `tenant_identity_reconcile_total{result="success"}` exceeds `than`.
    pub async fn wait_reconciles_above(&self, than: f64, timeout: Duration) -> Result<f64> {
        poll_until(
            &format!(
                "operator {} to count more than {than} successful reconciles",
                self.name
            ),
            timeout,
            || async {
                let n = self.successful_reconciles().await?;
                Ok(if n > than {
                    Check::Done(n)
                } else {
                    Check::NotYet(format!("{n}"))
                })
            },
        )
        .await
    }

    /// SIGKILL: no cleanup, no lease release (a crash).
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("cannot kill the operator")?;
        }
        Ok(())
    }

    /// SIGTERM and wait for the process to exit (graceful shutdown).
    pub async fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("operator {} is not running", self.name))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("operator {} already exited", self.name))?;
        let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
        // The pid is our child's and still ours: it has not been waited for.
        kill(pid, Signal::SIGTERM)
            .with_context(|| format!("cannot send SIGTERM to operator {}", self.name))?;
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(status) => status.context("cannot wait for the operator"),
            Err(_) => {
                let _ = child.kill().await;
                bail!(
                    "operator {} did not exit within 30s of SIGTERM; logs:\n{}",
                    self.name,
                    self.logs()
                )
            }
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- operator {} logs ({}) -----\n{}\n----- end of operator {} logs -----",
                self.name,
                self.log.display(),
                self.logs(),
                self.name
            );
        }
    }
}
