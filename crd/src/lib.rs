//! The `TenantIdentity` API: types, schema validation rules and condition helpers. No I/O.

pub mod conditions;
pub mod kinds;
pub mod reasons;
mod types;

#[cfg(test)]
mod limits_test;

pub use types::*;
