//! CustomResourceDefinitions: turning a CRD object into a served resource, and the status the
//! apiextensions controllers would write (`NamesAccepted`, `Established`, `acceptedNames`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::error::Cause;
use crate::resources::{ResourceDef, VersionDef, sort_versions};
use crate::validation;

/// The finalizer that holds a deleted CRD until its custom resources are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn invalid(field: &str, message: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        message: message.into(),
        field: field.into(),
    }
}

fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: field.into(),
    }
}

/// Builds the resource a CRD defines, or the validation causes that reject it.
pub fn resource_from_crd(crd: &Value) -> Result<ResourceDef, Vec<Cause>> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let group = s(&spec, "group");
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let plural = s(&names, "plural");
    let kind = s(&names, "kind");
    let mut causes = Vec::new();
    if group.is_empty() {
        causes.push(required("spec.group"));
    }
    if plural.is_empty() {
        causes.push(required("spec.names.plural"));
    }
    if kind.is_empty() {
        causes.push(required("spec.names.kind"));
    }
    let expected_name = format!("{plural}.{group}");
    if !plural.is_empty() && !group.is_empty() && crate::object::name(crd) != expected_name {
        causes.push(invalid(
            "metadata.name",
            &format!(
                "Invalid value: \"{}\": must be spec.names.plural+\".\"+spec.group",
                crate::object::name(crd)
            ),
        ));
    }
    let scope = s(&spec, "scope");
    let namespaced = match scope.as_str() {
        "Namespaced" => true,
        "Cluster" => false,
        _ => {
            causes.push(Cause {
                reason: "FieldValueNotSupported".into(),
                message: format!(
                    "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
                ),
                field: "spec.scope".into(),
            });
            true
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(required("spec.versions"));
    }
    let storage: Vec<String> = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&Value::Bool(true)))
        .map(|v| s(v, "name"))
        .collect();
    if !versions.is_empty() && storage.len() != 1 {
        causes.push(invalid(
            "spec.versions",
            "Invalid value: \"array\": must have exactly one version marked as storage version",
        ));
    }
    let mut status_subresource = false;
    let mut served = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if v.get("subresources")
            .and_then(|s| s.get("status"))
            .is_some()
        {
            status_subresource = true;
        }
        if v.get("served") != Some(&Value::Bool(true)) {
            continue;
        }
        let field = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let schema = match v.get("schema").and_then(|s| s.get("openAPIV3Schema")) {
            Some(raw) => match validation::compile(raw, &field) {
                Ok(c) => Some(Arc::new(c)),
                Err(mut c) => {
                    causes.append(&mut c);
                    None
                }
            },
            None => None,
        };
        served.push(VersionDef {
            name: s(v, "name"),
            schema,
        });
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let mut order: Vec<String> = served.iter().map(|v| v.name.clone()).collect();
    sort_versions(&mut order);
    served.sort_by_key(|v| order.iter().position(|o| o == &v.name));
    let strings = |k: &str| -> Vec<String> {
        names
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let singular = match s(&names, "singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    let list_kind = match s(&names, "listKind") {
        x if x.is_empty() => format!("{kind}List"),
        x => x,
    };
    Ok(ResourceDef {
        group,
        plural,
        singular,
        kind,
        list_kind,
        namespaced,
        short_names: strings("shortNames"),
        categories: strings("categories"),
        versions: served,
        storage_version: storage.into_iter().next().unwrap_or_default(),
        status_subresource,
        has_generation: true,
        custom: true,
    })
}

/// The status the apiextensions controllers maintain; transition times are kept from `old`.
pub fn status(crd: &Value, old: Option<&Value>) -> Value {
    let now = crate::object::now();
    let old_time = |t: &str| -> String {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
            })
            .and_then(|c| c.get("lastTransitionTime"))
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| now.clone())
    };
    let mut names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(n) = names.as_object_mut() {
        let kind = n
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        n.entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        n.entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    let mut stored: Vec<String> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(versions) = crd.pointer("/spec/versions").and_then(Value::as_array) {
        for v in versions {
            if v.get("storage") == Some(&Value::Bool(true))
                && let Some(name) = v.get("name").and_then(Value::as_str)
                && !stored.iter().any(|s| s == name)
            {
                stored.push(name.to_string());
            }
        }
    }
    json!({
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": old_time("NamesAccepted"),
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": old_time("Established"),
            }
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    })
}
