//! Azure Resource Manager backend scenarios (issue 4): the operator writes federated credentials
//! through ARM itself, here against the fake ARM and Entra endpoints in `e2e/fake-arm`
//! (`--arm-endpoint`, `--authority-host`, `AZURE_*` workload identity environment).
//!
//! To be added with the ARM integration: credentials created/diffed/deleted in the fake,
//! steady state makes no ARM writes, 20-credential limit, 409/429/5xx mapping to condition
//! reasons, finalizer deletes (or retains with `deletionPolicy: Retain`), and
//! `tenant_identity_azure_requests_total{operation,code}` exported (see `tests/metrics.rs`).
