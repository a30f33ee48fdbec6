//! End-to-end harness for `tenant-identity-operator`.
//!
//! The suite runs the real operator binary as a process against a kubeconfig:
//! - `E2E_KUBECONFIG=/path/to/kubeconfig`: any conformant cluster (kind, AKS). Tests are
//!   serialized across processes through a file lock, because every test starts its own operator
//!   and operators see every namespace.
//! - unset: each test process starts the in-process API emulator (`kube-emulator`).
//!
//! Assertions are written against Kubernetes semantics only, so the same tests pass unchanged on
//! both. Waiting is always a watch or a bounded poll of a condition with a timeout, never a sleep.
//!
//! ```text
//! make e2e                                     # emulator, one per test process
//! E2E_KUBECONFIG=$HOME/.kube/kind make e2e     # kind / AKS: cluster-admin kubeconfig
//! ```
//! Against a real cluster the suite installs the TenantIdentity CRD (chart copy) and, unless the
//! cluster already has them from elsewhere, the Flux and ASO CRDs from `../shared/upstream/`; it
//! runs the locally built binary (`E2E_OPERATOR_BIN` to override) outside the cluster, so no
//! in-cluster operator of this project may run at the same time. ASO, Flux and the vcluster Helm
//! release are played by the tests ([`simulate`]), so they need not be installed. Azure Resource
//! Manager is played by the fake ARM + Entra token endpoint (`e2e/fake-arm`, [`arm`],
//! [`TestEnv::start_with_arm`]), a local process like the operator, so the ARM scenarios need no
//! Azure subscription either. Each test uses a
//! namespace `e2e-<test>-<random>` labelled `e2e.identity.tenancy.dev/suite` and deletes it.

pub mod arm;
pub mod cluster;
pub mod manifests;
pub mod namespace;
pub mod objects;
pub mod operator;
pub mod simulate;
pub mod wait;

pub use cluster::Cluster;
pub use namespace::TestNamespace;
pub use operator::Operator;
pub use wait::{Check, DEFAULT_TIMEOUT, GC_TIMEOUT, poll_until, wait_for, wait_gone};

use anyhow::Context as _;

/// Result type of the harness; errors carry a message a person can act on.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;

/// The usual test setup: a cluster, one namespace, one operator.
pub struct TestEnv {
    pub cluster: Cluster,
    pub ns: TestNamespace,
    pub operator: Operator,
    pub client: kube::Client,
    /// The fake Azure Resource Manager the operator talks to ([`TestEnv::start_with_arm`]).
    pub fake_arm: Option<fake_arm::FakeArm>,
}

impl TestEnv {
    /// Connect, create namespace `e2e-<test>-<random>`, start the operator with `operator_args`.
    pub async fn start(test: &str, operator_args: &[&str]) -> Result<Self> {
        let cluster = Cluster::connect().await?;
        let ns = cluster.namespace(test).await?;
        let operator = Operator::start(&cluster, operator_args).await?;
        let client = cluster.client();
        Ok(Self {
            cluster,
            ns,
            operator,
            client,
            fake_arm: None,
        })
    }

    /// Like [`TestEnv::start`], plus a fake ARM + Entra token endpoint on 127.0.0.1 that the
    /// operator uses as its ARM backend ([`Operator::start_with_arm`]). Works against a real
    /// cluster too: the operator runs as a local process.
    pub async fn start_with_arm(test: &str, operator_args: &[&str]) -> Result<Self> {
        let fake = fake_arm::FakeArm::start()
            .await
            .context("cannot start the fake ARM")?;
        let cluster = Cluster::connect().await?;
        let ns = cluster.namespace(test).await?;
        let operator = Operator::start_with_arm(&cluster, &fake, operator_args).await?;
        let client = cluster.client();
        Ok(Self {
            cluster,
            ns,
            operator,
            client,
            fake_arm: Some(fake),
        })
    }

    /// The fake ARM of [`TestEnv::start_with_arm`].
    pub fn arm(&self) -> Result<&fake_arm::FakeArm> {
        self.fake_arm
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this TestEnv was started without a fake ARM"))
    }

    /// Restart the operator (crash: SIGKILL) with the same settings as
    /// [`TestEnv::start_with_arm`] (or [`TestEnv::start`] when there is no fake ARM).
    pub async fn restart_operator(&mut self, operator_args: &[&str]) -> Result<()> {
        self.operator.kill().await?;
        self.operator = match &self.fake_arm {
            Some(fake) => Operator::start_with_arm(&self.cluster, fake, operator_args).await?,
            None => Operator::start(&self.cluster, operator_args).await?,
        };
        Ok(())
    }

    /// Namespace name.
    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// Delete the namespace (the operator still runs, so finalizers complete), stop the operator
    /// and the emulator.
    pub async fn finish(self) {
        let Self {
            cluster,
            ns,
            mut operator,
            fake_arm,
            ..
        } = self;
        ns.cleanup().await;
        let _ = operator.stop().await;
        cluster.shutdown().await;
        if let Some(fake) = fake_arm {
            let _ = fake.shutdown().await;
        }
    }
}
