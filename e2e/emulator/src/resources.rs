//! The resource registry: which kinds the emulator serves, at which paths, with which behaviour.
//! Built-in kinds are registered at start; custom resources come and go with their CRDs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::validation::CompiledSchema;

/// A resource's identity independent of version: objects are stored once per (group, plural).
pub type ResKey = (String, String);

#[derive(Debug)]
pub struct VersionDef {
    pub name: String,
    /// `openAPIV3Schema` of a custom resource version, compiled for validation.
    pub schema: Option<Arc<CompiledSchema>>,
}

#[derive(Debug)]
pub struct ResourceDef {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Served versions, in the order discovery should list them (preferred first).
    pub versions: Vec<VersionDef>,
    pub storage_version: String,
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained (custom resources and CRDs).
    pub has_generation: bool,
    /// A custom resource defined by a CRD (validation, pruning, status reset on create).
    pub custom: bool,
}

impl ResourceDef {
    pub fn key(&self) -> ResKey {
        (self.group.clone(), self.plural.clone())
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn storage_api_version(&self) -> String {
        self.api_version(&self.storage_version)
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v.name == version)
    }

    pub fn schema(&self, version: &str) -> Option<&Arc<CompiledSchema>> {
        self.versions
            .iter()
            .find(|v| v.name == version)
            .and_then(|v| v.schema.as_ref())
    }

    /// Rewrites an object's apiVersion to the requested version: versions of one CRD share
    /// storage and convert with `strategy: None`, exactly this.
    pub fn convert(&self, mut obj: Value, version: &str) -> Value {
        if let Some(m) = obj.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                Value::String(self.api_version(version)),
            );
            m.insert("kind".into(), Value::String(self.kind.clone()));
        }
        obj
    }

    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    pub fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.plural == "customresourcedefinitions"
    }
}

/// All served resources, keyed by (group, plural).
#[derive(Debug, Default)]
pub struct Registry {
    defs: BTreeMap<ResKey, Arc<ResourceDef>>,
}

impl Registry {
    pub fn register(&mut self, def: ResourceDef) {
        self.defs.insert(def.key(), Arc::new(def));
    }

    pub fn unregister(&mut self, key: &ResKey) {
        self.defs.remove(key);
    }

    pub fn by_key(&self, key: &ResKey) -> Option<Arc<ResourceDef>> {
        self.defs.get(key).cloned()
    }

    /// The resource served at `/apis/{group}/{version}/{plural}`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .get(&(group.to_string(), plural.to_string()))
            .filter(|d| d.serves(version))
            .cloned()
    }

    /// Groups with their served versions, preferred version first (core group excluded).
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for def in self.defs.values().filter(|d| !d.group.is_empty()) {
            let versions = groups.entry(def.group.clone()).or_default();
            for v in &def.versions {
                if !versions.contains(&v.name) {
                    versions.push(v.name.clone());
                }
            }
        }
        for versions in groups.values_mut() {
            sort_versions(versions);
        }
        groups
    }

    /// Resources served in one group/version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.defs
            .values()
            .filter(|d| d.group == group && d.serves(version))
            .cloned()
            .collect()
    }
}

/// Kubernetes version priority: GA before beta before alpha, higher numbers first, then
/// anything else alphabetically (`v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > foo`).
pub fn sort_versions(versions: &mut [String]) {
    fn rank(v: &str) -> (u8, i64, i64, String) {
        let re = regex::Regex::new(r"^v(\d+)(?:(alpha|beta)(\d+))?$");
        if let Ok(re) = re
            && let Some(c) = re.captures(v)
        {
            let major: i64 = c.get(1).and_then(|m| m.as_str().parse().ok()).unwrap_or(0);
            let minor: i64 = c.get(3).and_then(|m| m.as_str().parse().ok()).unwrap_or(0);
            let stability = match c.get(2).map(|m| m.as_str()) {
                None => 0,
                Some("beta") => 1,
                _ => 2,
            };
            return (stability, -major, -minor, String::new());
        }
        (3, 0, 0, v.to_string())
    }
    versions.sort_by_key(|v| rank(v));
}

fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: Vec::new(),
        categories: Vec::new(),
        versions: vec![VersionDef {
            name: version.into(),
            schema: None,
        }],
        storage_version: version.into(),
        status_subresource: false,
        has_generation: false,
        custom: false,
    }
}

impl ResourceDef {
    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }
}

/// The built-in kinds an operator and its tests use.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::default();
    r.register(
        builtin("", "v1", "namespaces", "Namespace", false)
            .short(&["ns"])
            .with_status(),
    );
    r.register(builtin("", "v1", "configmaps", "ConfigMap", true).short(&["cm"]));
    r.register(builtin("", "v1", "secrets", "Secret", true));
    r.register(builtin("", "v1", "serviceaccounts", "ServiceAccount", true).short(&["sa"]));
    r.register(builtin("events.k8s.io", "v1", "events", "Event", true).short(&["ev"]));
    r.register(builtin(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
    ));
    let mut crd = builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    )
    .short(&["crd", "crds"])
    .with_status();
    crd.has_generation = true;
    r.register(crd);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority() {
        let mut v: Vec<String> = ["v1alpha1", "foo", "v1", "v2", "v1beta1", "v1beta2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sort_versions(&mut v);
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}
