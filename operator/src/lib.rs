//! tenant-identity-operator: one `TenantIdentity` gives a vcluster tenant a Microsoft Entra
//! workload identity end to end.
//!
//! Layers (docs/architecture.md): pure core (`names`, `plan`, `children`, `status`,
//! `isolation`: no I/O), Kubernetes and Azure glue (`controller`, `backends`, `azure`, `issuer`,
//! `leader`), process (`metrics`, `http`, `telemetry`, `render`) and a thin `main`.

pub mod azure;
pub mod backends;
pub mod children;
pub mod controller;
pub mod error;
pub mod http;
pub mod isolation;
pub mod issuer;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod rbac;
pub mod read;
pub mod render;
pub mod status;
pub mod telemetry;
pub mod verify;
