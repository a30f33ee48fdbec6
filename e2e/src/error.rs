//! The harness's result type.

/// Result type of the harness; errors carry a message a person can act on.
pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
