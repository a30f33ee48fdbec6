//! The usual test setup: a cluster, one namespace, one operator (and maybe a fake ARM).

use anyhow::Context as _;

use crate::{
    cluster::Cluster, error::Result, issuer_relay::IssuerRelay, namespace::TestNamespace,
    operator::Operator,
};

/// The usual test setup: a cluster, one namespace, one operator.
pub struct TestEnv {
    pub cluster: Cluster,
    pub ns: TestNamespace,
    pub operator: Operator,
    pub client: kube::Client,
    /// The fake Azure Resource Manager the operator talks to ([`TestEnv::start_with_arm`]).
    pub fake_arm: Option<fake_arm::FakeArm>,
    /// The cluster's issuer as the fake Entra reaches it ([`TestEnv::start_verified`]).
    pub issuer_relay: Option<IssuerRelay>,
}

/// How [`TestEnv::start_verified`] sets up Entra.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerReach {
    /// Entra can fetch the cluster's OIDC discovery document and keys (through the relay).
    Reachable,
    /// Entra cannot (an AKS cluster without the OIDC issuer enabled, say).
    Unreachable,
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
            issuer_relay: None,
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
            issuer_relay: None,
        })
    }

    /// Like [`TestEnv::start_with_arm`], with verification on: the operator runs with
    /// `--verify`, its Entra is the fake's (which verifies every tenant's assertion strictly)
    /// and `--azure-devops-endpoint` points at the fake Azure DevOps. With
    /// [`IssuerReach::Reachable`] the fake Entra fetches the cluster's issuer documents through
    /// an [`IssuerRelay`]; otherwise it cannot reach the issuer at all.
    pub async fn start_verified(
        test: &str,
        reach: IssuerReach,
        operator_args: &[&str],
    ) -> Result<Self> {
        Self::start_verified_with_env(test, reach, operator_args, &[]).await
    }

    /// [`TestEnv::start_verified`] with extra environment variables for the operator (applied
    /// last, e.g. `RUST_LOG`).
    pub async fn start_verified_with_env(
        test: &str,
        reach: IssuerReach,
        operator_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let fake = fake_arm::FakeArm::start()
            .await
            .context("cannot start the fake ARM")?;
        let cluster = Cluster::connect().await?;
        let ns = cluster.namespace(test).await?;
        let relay = IssuerRelay::start(&cluster.client()).await?;
        if reach == IssuerReach::Reachable {
            relay.trust_in(&fake);
        }
        let devops = fake.devops_url();
        let mut args = vec!["--verify", "--azure-devops-endpoint", devops.as_str()];
        args.extend_from_slice(operator_args);
        let arm = crate::operator::ArmSettings::for_fake(&fake);
        let operator = Operator::spawn(&cluster, "operator", &args, Some(arm), env).await?;
        let client = cluster.client();
        Ok(Self {
            cluster,
            ns,
            operator,
            client,
            fake_arm: Some(fake),
            issuer_relay: Some(relay),
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
