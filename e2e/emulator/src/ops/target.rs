//! What a request addresses, and how it may write.

use std::sync::Arc;

use serde_json::Value;

use crate::error::ApiError;
use crate::managed::ManagerId;
use crate::resources::ResourceDef;

/// What a request addresses.
#[derive(Clone, Debug)]
pub struct Target {
    pub res: Arc<ResourceDef>,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    pub fn is_status(&self) -> bool {
        self.subresource.as_deref() == Some("status")
    }

    pub(super) fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.res.group, &self.res.plural, self.name())
    }

    /// The OpenAPI schema of the addressed version (custom resources only).
    pub(super) fn schema(&self) -> Option<&Value> {
        self.res.schema(&self.version).map(|s| &s.raw)
    }

    /// The managedFields identity of a write through this target.
    pub(super) fn manager(&self, opts: &WriteOptions, operation: &'static str) -> ManagerId {
        ManagerId {
            manager: opts.manager.clone(),
            operation,
            subresource: self.subresource.clone(),
            api_version: self.res.api_version(&self.version),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub manager: String,
    /// Whether `manager` came from the `fieldManager` parameter (required for apply) rather
    /// than from the user agent.
    pub manager_explicit: bool,
    pub force: bool,
    /// `fieldValidation=Strict`: unknown fields of custom resources are an error, not pruned.
    pub strict: bool,
}
