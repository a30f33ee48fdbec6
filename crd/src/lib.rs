//! The `TenantIdentity` API: types, schema validation rules and condition helpers. No I/O.

pub mod conditions;
pub mod kinds;
pub mod reasons;
mod types;

pub use types::*;
