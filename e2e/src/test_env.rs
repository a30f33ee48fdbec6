//! The usual test setup: a cluster, one namespace, one operator (and maybe a fake ARM).

use anyhow::Context as _;

use crate::{cluster::Cluster, error::Result, namespace::TestNamespace, operator::Operator};

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
