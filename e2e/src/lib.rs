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
//! cluster already has them from elsewhere, the Flux and ASO CRDs (pinned upstream files, found by
//! `tenant_identity_upstream`: shared checkout, cache or verified download; see e2e/README.md); it
//! runs the locally built binary (`E2E_OPERATOR_BIN` to override) outside the cluster, so no
//! in-cluster operator of this project may run at the same time. ASO, Flux and the vcluster Helm
//! release are played by the tests ([`simulate`]), so they need not be installed. Azure Resource
//! Manager is played by the fake ARM + Entra token endpoint (`e2e/fake-arm`, [`arm`],
//! [`TestEnv::start_with_arm`]), a local process like the operator, so the ARM scenarios need no
//! Azure subscription either. Each test uses a
//! namespace `e2e-<test>-<random>` labelled `e2e.identity.tenancy.dev/suite` and deletes it.
//!
//! Modules depend on each other without cycles (this root only declares and re-exports):
//! `error`, `random`; `wait` → error; `client` → error; `manifests`, `objects` → error, wait;
//! `simulate`, `arm` → error, objects, wait; `namespace` → error, client, random, wait;
//! `cluster` → error, client, manifests, namespace, wait; `operator` → error, cluster,
//! objects, random, wait; `issuer_relay` → error; `test_env` → error, cluster, issuer_relay,
//! namespace, operator.

pub mod arm;
pub mod client;
pub mod cluster;
pub mod control_plane;
pub mod error;
pub mod exposition;
pub mod issuer_relay;
pub mod manifests;
pub mod namespace;
pub mod objects;
pub mod operator;
pub mod random;
pub mod show;
pub mod simulate;
pub mod test_env;
pub mod wait;

pub use cluster::Cluster;
pub use error::Result;
pub use namespace::TestNamespace;
pub use operator::Operator;
pub use test_env::TestEnv;
pub use wait::{Check, DEFAULT_TIMEOUT, GC_TIMEOUT, poll_until, wait_for, wait_gone};
